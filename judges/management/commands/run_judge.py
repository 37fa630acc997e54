from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from judges.models import Judge, JudgeRun
from judges.services import judge_run_execute


class Command(BaseCommand):
    help = "Run an AI judge over every pair of a project it has not judged yet (both orders)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--judge", required=True, help="judge name")

    def handle(self, *args, project, judge, **options):
        try:
            project_obj = Project.objects.get(name=project)
            judge_obj = Judge.objects.get(name=judge)
        except (Project.DoesNotExist, Judge.DoesNotExist) as exc:
            raise CommandError(str(exc)) from None
        run = JudgeRun.objects.create(judge=judge_obj, project=project_obj)
        run = judge_run_execute(run_id=run.pk)
        flips = sum(j.flipped for j in judge_obj.judgments.filter(item__project=project_obj))
        self.stdout.write(self.style.SUCCESS(
            f"judge run #{run.pk}: {run.total} pairs judged, {flips} flip with the order"))
