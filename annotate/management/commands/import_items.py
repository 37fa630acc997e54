from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotate.imports import IMPORT_OPTIONS, project_import
from annotate.models import Project
from prefdata.readers import ReadError, formats_for

FORMATS, STEP_FORMATS = formats_for("pairs"), formats_for("steps")


class Command(BaseCommand):
    help = ("Import items from a file (JSONL, CSV or JSON) into a project, all or nothing; pairs into a "
            "pairwise project, solutions split into steps into a steps project. Pair formats: "
            + "; ".join(f"{k} ({v})" for k, v in FORMATS.items() if k != "auto")
            + ". Step formats: " + "; ".join(f"{k} ({v})" for k, v in STEP_FORMATS.items() if k != "auto") + ".")

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="project name (created if --create)")
        parser.add_argument("--format", default="auto", choices=list(formats_for()))
        parser.add_argument("--create", action="store_true",
                            help="create the project if it does not exist (not kept if the import fails)")
        parser.add_argument("--kind", default="pairwise", choices=Project.TaskKind.values,
                            help="task kind of a project made with --create")
        for name, (values, description) in IMPORT_OPTIONS.items():
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=values[0], choices=values,
                                help=f"{description} (default: {values[0]})")

    def handle(self, *args, file, project, format, create, kind, **options):
        choices = {name: options[name] for name in IMPORT_OPTIONS}
        try:
            # A project made here is made in the import's transaction: a failed import leaves none.
            with transaction.atomic():
                obj = Project.objects.filter(name=project).first()
                if obj is None:
                    if not create:
                        raise CommandError(f"No project named {project!r} (use --create to make it).")
                    obj = Project.objects.create(name=project, task_kind=kind)
                result = project_import(project=obj, path=file, fmt=format, options=choices)
        except (ReadError, OSError) as exc:
            raise CommandError(str(exc)) from None
        what = "step items" if obj.task_kind == Project.TaskKind.STEPS else "pairs"
        self.stdout.write(self.style.SUCCESS(
            f"imported {result.items} {what} from {result.rows} records ({result.format}) into {obj.name}"))
        for line in result.summary_lines():
            self.stdout.write(line)
