from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from synth.models import ModelEndpoint
from synth.services import endpoint_use_check
from training.loop import step_labels_from_scorer, step_scorer_source_name


class Command(BaseCommand):
    help = ("Label the steps of a steps project with a step-scorer endpoint (a trained process reward model): "
            "one AI label per solution next to people's, named after the endpoint. Solutions it labelled "
            "already are skipped, so a second run labels only the new ones.")

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="the steps project's name")
        parser.add_argument("--endpoint", required=True, help="the step-scorer endpoint's name")
        parser.add_argument("--threshold", type=float, default=0.5,
                            help="a step is +1 when P(right) >= threshold, -1 when below 1 - threshold, else 0 "
                                 "(0.5 to 1; default 0.5: no neutral)")

    def handle(self, *args, project, endpoint, threshold=0.5, **options):
        found = Project.objects.filter(name=project).first()
        if found is None:
            raise CommandError(f"No project named {project!r}.")
        scorer = ModelEndpoint.objects.filter(name=endpoint).first()
        if scorer is None:
            raise CommandError(f"No endpoint named {endpoint!r}.")
        try:
            endpoint_use_check(endpoint=scorer, project=found, user=None)
            labelled = step_labels_from_scorer(project=found, endpoint=scorer, threshold=threshold,
                                               progress=lambda n: self.stdout.write(f"{n} solutions labelled"))
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(
            f"{labelled} solutions of {found.name!r} labelled as {step_scorer_source_name(endpoint=scorer)!r}"))
