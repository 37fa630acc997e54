from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from synth.models import Problem
from synth.problems import problems_import


class Command(BaseCommand):
    help = ("Import problems with verifiable answers (JSON Lines, JSON array or Parquet) into a project's problem "
            "bank, all or nothing: GSM8K/MATH-like question and answer (a GSM8K answer's '#### 42' is the final "
            "answer), MBPP/HumanEval-like prompt with tests, test_list or test, and entry_point.")

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="the project's name")
        parser.add_argument("--tags", default="", help="tags added to every problem, comma-separated: a,b")
        parser.add_argument("--split", default=None, choices=Problem.Split.values,
                            help="the split of every problem (default: each record's own, else train)")

    def handle(self, *args, file, project, tags, split, **options):
        found = Project.objects.filter(name=project).first()
        if found is None:
            raise CommandError(f"No project named {project!r}.")
        try:
            summary = problems_import(project=found, path=file, tags=[t for t in tags.split(",") if t.strip()],
                                      split=split)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        except OSError as exc:
            raise CommandError(f"{file}: {exc.strerror or exc}") from None
        self.stdout.write(self.style.SUCCESS(
            f"Imported {summary.count} problems into {found.name} ({summary.math} math, {summary.code} code)."))
