from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotate.imports import IMPORT_OPTIONS, import_mapping_clean, project_import
from annotate.models import Project
from prefdata.readers import MappingError, ReadError, formats_for
from prefdata.readers.mapped import TARGETS, TEXT_SPLIT_RULES, pairs_parse

FORMATS, STEP_FORMATS = formats_for("pairs"), formats_for("steps")


class Command(BaseCommand):
    help = ("Import items from a file (JSONL, CSV or JSON) into a project, all or nothing; pairs into a "
            "pairwise project, solutions split into steps into a steps project. Pair formats: "
            + "; ".join(f"{k} ({v})" for k, v in FORMATS.items() if k != "auto")
            + ". Step formats: " + "; ".join(f"{k} ({v})" for k, v in STEP_FORMATS.items() if k != "auto") + ". "
            "Any other JSON Lines, JSON array, CSV or Parquet file: map its columns with --map, e.g. LLMBar: "
            "--map prompt=input,response_a=output_1,response_b=output_2,gold=label --gold-values 1=A,2=B.")

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="project name (created if --create)")
        parser.add_argument("--format", default="auto", choices=list(formats_for()))
        parser.add_argument("--create", action="store_true",
                            help="create the project if it does not exist (not kept if the import fails)")
        parser.add_argument("--kind", default="pairwise", choices=Project.TaskKind.values,
                            help="task kind of a project made with --create")
        parser.add_argument(
            "--map", dest="column_map", default="", metavar="FIELD=COLUMN,...",
            help="read the file through a column mapping: field=column pairs, comma-separated; a column may be a "
                 "dotted path into nested JSON (chosen.1.content). Pair fields: "
                 + ", ".join(f"{k}{' (required)' if r else ''}" for k, (r, _) in TARGETS["pairs"].items())
                 + ". Step fields: "
                 + ", ".join(f"{k}{' (required)' if r else ''}" for k, (r, _) in TARGETS["steps"].items()) + ".")
        parser.add_argument(
            "--gold-values", default="", metavar="VALUE=VERDICT,...",
            help="with --map gold=COLUMN: the verdict of each value of the gold column (A, B, tie, both_bad), "
                 "e.g. 1=A,2=B or 0=A,1=B; without it the column must hold the verdicts themselves")
        parser.add_argument("--split", default="blank_lines", choices=TEXT_SPLIT_RULES,
                            help="with --map steps=COLUMN holding text: the rule that splits it into steps")
        for name, (values, description) in IMPORT_OPTIONS.items():
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=values[0], choices=values,
                                help=f"{description} (default: {values[0]})")

    def handle(self, *args, file, project, format, create, kind, column_map, gold_values, split, **options):
        choices = {name: options[name] for name in IMPORT_OPTIONS}
        mapping = None
        try:
            if column_map:
                mapping = {"columns": pairs_parse(column_map), "gold_values": pairs_parse(gold_values),
                           "split": split}
            elif gold_values:
                raise CommandError("--gold-values needs --map (with gold=COLUMN)")
        except MappingError as exc:
            raise CommandError(str(exc)) from None
        try:
            # A project made here is made in the import's transaction: a failed import leaves none.
            with transaction.atomic():
                obj = Project.objects.filter(name=project).first()
                if obj is None:
                    if not create:
                        raise CommandError(f"No project named {project!r} (use --create to make it).")
                    obj = Project.objects.create(name=project, task_kind=kind)
                if mapping is not None:
                    mapping = import_mapping_clean(project=obj, mapping=mapping)
                result = project_import(project=obj, path=file, fmt=format, options=choices, mapping=mapping)
        except (ReadError, MappingError, OSError) as exc:
            raise CommandError(str(exc)) from None
        what = "step items" if obj.task_kind == Project.TaskKind.STEPS else "pairs"
        self.stdout.write(self.style.SUCCESS(
            f"imported {result.items} {what} from {result.rows} records ({result.format}) into {obj.name}"))
        for line in result.summary_lines():
            self.stdout.write(line)
