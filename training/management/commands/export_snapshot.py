from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from training.models import DatasetSnapshot
from training.services import snapshot_create, snapshot_path


class Command(BaseCommand):
    help = ("Export a project's labels as an immutable JSONL snapshot with a manifest: pairs as TRL preference "
            "rows; step projects as TRL stepwise supervision, PRM800K-like rows or outcome rows.")

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--source", default="human", choices=DatasetSnapshot.Source.values)
        parser.add_argument("--format", default=None, choices=DatasetSnapshot.Format.values,
                            help="default: preference for pairwise projects, stepwise for steps projects")
        parser.add_argument("--neutral", default="positive", choices=["positive", "negative"],
                            help="stepwise: what a 0 (reasonable, no progress) step becomes")
        parser.add_argument("--weighted", action="store_true", help="preference: strength-weighted majority")
        parser.add_argument("--name", default="")

    def handle(self, *args, project, source, format, neutral, weighted, name, **options):
        try:
            obj = Project.objects.get(name=project)
            fmt = format or ("stepwise" if obj.task_kind == Project.TaskKind.STEPS else "preference")
            snapshot = snapshot_create(project=obj, source=source, name=name, fmt=fmt, neutral=neutral,
                                       weighted=weighted)
        except (Project.DoesNotExist, ValidationError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(
            f"snapshot #{snapshot.pk} {snapshot.name}: {snapshot.rows} {snapshot.format} rows, "
            f"sha256 {snapshot.sha256}, {snapshot_path(snapshot=snapshot)}"))
