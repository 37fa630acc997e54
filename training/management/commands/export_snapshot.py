from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from training.models import DatasetSnapshot
from training.services import snapshot_create, snapshot_path


class Command(BaseCommand):
    help = "Export a project's preferences as an immutable TRL preference JSONL snapshot."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--source", default="human", choices=DatasetSnapshot.Source.values)
        parser.add_argument("--name", default="")

    def handle(self, *args, project, source, name, **options):
        try:
            snapshot = snapshot_create(project=Project.objects.get(name=project), source=source, name=name)
        except (Project.DoesNotExist, ValidationError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(
            f"snapshot #{snapshot.pk} {snapshot.name}: {snapshot.rows} rows, sha256 {snapshot.sha256}, "
            f"{snapshot_path(snapshot=snapshot)}"))
