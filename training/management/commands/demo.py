import time

from django.core.management.base import BaseCommand, CommandError

from annotate.job_lifecycle import JobFailed
from annotate.models import PairItem
from synth.models import SynthesisJob
from synth.services import demo_model_ensure, synthesis_job_create
from training.demo import LOGINS, demo_loop, demo_setup


class Command(BaseCommand):
    help = ("Set up the demo project, users and model. With --headless, run the whole loop here "
            "(generate, judge, export, train) with the AI judge standing in for the annotator.")

    def add_arguments(self, parser):
        parser.add_argument("--headless", action="store_true", help="run the whole loop now and exit")
        parser.add_argument("--train-steps", type=int, default=4)
        parser.add_argument("--max-new-tokens", type=int, default=48)

    def handle(self, *args, headless=False, train_steps=4, max_new_tokens=48, **options):
        started = time.monotonic()
        endpoint = demo_model_ensure()
        setup = demo_setup(endpoint=endpoint)
        self.stdout.write(f"demo model: {endpoint.name} ({endpoint.path})")
        self.stdout.write("logins: " + ", ".join(f"{u} / {p}" for u, p in LOGINS.items()))
        if headless:
            try:
                demo_loop(setup=setup, say=self.stdout.write, max_new_tokens=max_new_tokens, train_steps=train_steps)
            except JobFailed as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(self.style.SUCCESS(f"demo loop finished in {time.monotonic() - started:.0f} s"))
            return
        if not PairItem.objects.filter(project=setup.project).exists() and not SynthesisJob.objects.filter(
                project=setup.project).exclude(status=SynthesisJob.Status.FAILED).exists():
            job = synthesis_job_create(project=setup.project, endpoint=endpoint, max_new_tokens=max_new_tokens)
            self.stdout.write(f"queued synthesis job #{job.pk}: the worker generates the pairs to label")
        self.stdout.write(self.style.SUCCESS(f"demo project ready: {setup.project.name}"))
