from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate.job_lifecycle import JobFailed, job_done_check
from annotate.models import Project
from judges.models import Judge
from judges.services import judge_run_create, judge_run_execute


def one_line(text: str) -> str:
    return " ".join(text.split())


class Command(BaseCommand):
    help = "Run an AI judge over every item of a project it has not judged yet (both orders)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--judge", required=True, help="judge name")

    def handle(self, *args, project, judge, **options):
        try:
            project_obj = Project.objects.get(name=project)
            judge_obj = Judge.objects.get(name=judge)
            run = judge_run_create(judge=judge_obj, project=project_obj, start=False)
        except (Project.DoesNotExist, Judge.DoesNotExist) as exc:
            raise CommandError(str(exc)) from None
        except ValidationError as exc:
            raise CommandError(one_line(" ".join(exc.messages))) from None
        try:
            run = job_done_check(judge_run_execute(run_id=run.pk))
        except JobFailed as exc:
            raise CommandError(str(exc)) from None
        flips = sum(j.flipped for j in judge_obj.judgments.filter(item__project=project_obj))
        self.stdout.write(self.style.SUCCESS(
            f"judge run #{run.pk}: {run.total} items judged, {flips} flip with the order"))
