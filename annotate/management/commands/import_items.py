from django.core.management.base import BaseCommand, CommandError

from annotate.importers import FORMATS, ImportError_, items_import
from annotate.models import Project


class Command(BaseCommand):
    help = "Import pair items from a file (JSONL, CSV or JSON) into a project, all or nothing. Formats: " + "; ".join(
        f"{k} ({v})" for k, v in FORMATS.items())

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="project name (created if --create)")
        parser.add_argument("--format", default="auto", choices=list(FORMATS))
        parser.add_argument("--create", action="store_true", help="create the project if it does not exist")

    def handle(self, *args, file, project, format, create, **options):
        obj = Project.objects.filter(name=project).first()
        if obj is None:
            if not create:
                raise CommandError(f"No project named {project!r} (use --create to make it).")
            obj = Project.objects.create(name=project)
        try:
            result = items_import(project=obj, path=file, fmt=format)
        except (ImportError_, OSError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"imported {result.items} pairs ({result.format}) into {obj.name}"))
