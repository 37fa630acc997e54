import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from prefdata.targets import TARGETS
from training.filters import FILTER_HELP
from training.models import DatasetSnapshot
from training.services import snapshot_create, snapshot_options_parse, snapshot_path


class Command(BaseCommand):
    help = ("Export a project's labels as an immutable JSONL snapshot with a manifest: pairs as TRL preference, "
            "KTO unpaired or SFT rows; step projects as TRL stepwise supervision, PRM800K-like rows or outcome "
            "rows. Filters narrow what is read; a layout writes a load_dataset-ready folder for TRL, OpenRLHF or "
            "verl, split by prompt.")

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--source", default="human", choices=DatasetSnapshot.Source.values)
        parser.add_argument("--format", default=None, choices=DatasetSnapshot.Format.values,
                            help="default: preference for pairwise projects, stepwise for steps projects")
        parser.add_argument("--neutral", default="positive", choices=["positive", "negative"],
                            help="stepwise: what a 0 (reasonable, no progress) step becomes")
        parser.add_argument("--weighted", action="store_true", help="preference: strength-weighted majority")
        parser.add_argument("--both-bad", action="store_true", help="unpaired: both-bad pairs as two bad replies")
        parser.add_argument("--filters", default="", help="a JSON object of filters: "
                            + "; ".join(f"{k}: {v}" for k, v in FILTER_HELP.items()))
        parser.add_argument("--target", default="trl", choices=list(TARGETS))
        parser.add_argument("--file-format", default="", choices=["", "jsonl", "parquet"])
        parser.add_argument("--test-share", type=float, default=0.0,
                            help="hold out this share of prompts as the test split (by a hash of each prompt)")
        parser.add_argument("--seed", type=int, default=0, help="the split's seed")
        parser.add_argument("--name", default="")

    def handle(self, *args, project, source, format, neutral, weighted, both_bad, filters, target, file_format,
               test_share, seed, name, **options):
        try:
            obj = Project.objects.get(name=project)
        except Project.DoesNotExist:
            raise CommandError(f"No project named {project!r}.") from None
        try:
            filters_data = json.loads(filters) if filters else {}
        except ValueError as exc:
            raise CommandError(f"--filters: not JSON ({exc})") from None
        layout = {"target": target, "file_format": file_format}
        if test_share:
            layout.update(split={"train": round(1 - test_share, 6), "test": test_share}, seed=seed)
        data = {"format": format, "source": source, "neutral": neutral, "weighted": weighted, "both_bad": both_bad,
                "filters": filters_data, "layout": layout}
        try:
            snapshot = snapshot_create(project=obj, name=name, **snapshot_options_parse(project=obj, data=data))
        except ValidationError as exc:
            problems = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
            raise CommandError("; ".join(f"{field}: {' '.join(text)}" if field and field != "__all__"
                                         else " ".join(text) for field, text in problems.items())) from None
        self.stdout.write(self.style.SUCCESS(
            f"snapshot #{snapshot.pk} {snapshot.name}: {snapshot.rows} {snapshot.format} rows, "
            f"sha256 {snapshot.sha256}, {snapshot_path(snapshot=snapshot)}"))
        for split, info in (snapshot.manifest.get("splits") or {}).items():
            self.stdout.write(f"  {split}: {info['rows']} rows, {info['file']}")
