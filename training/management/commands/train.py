import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate.job_lifecycle import JobFailed, job_done_check
from synth.models import ModelEndpoint
from training.jobs import training_job_create, training_job_run
from training.ml.registry import METHODS
from training.models import DatasetSnapshot


class Command(BaseCommand):
    help = "Train a model on a snapshot (here, in this process; --queue sends it to the training queue)."

    def add_arguments(self, parser):
        parser.add_argument("--snapshot", type=int, required=True, help="snapshot id")
        parser.add_argument("--endpoint", required=True, help="base model endpoint name")
        parser.add_argument("--method", default="dpo", choices=list(METHODS),
                            help="; ".join(f"{m.name}: {m.label} on {m.consumes} rows" for m in METHODS.values()))
        parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                            help='hyper-parameter, e.g. --set max_steps=20 --set beta=0.1')
        parser.add_argument("--queue", action="store_true", help="queue on the training queue instead")

    def handle(self, *args, snapshot, endpoint, method, set, queue, **options):
        try:
            hyper = {k: json.loads(v) for k, v in (item.split("=", 1) for item in set)}
        except ValueError as exc:
            raise CommandError(f"--set expects KEY=JSON: {exc}") from None
        try:
            snap = DatasetSnapshot.objects.get(pk=snapshot)
            base = ModelEndpoint.objects.get(name=endpoint)
        except (DatasetSnapshot.DoesNotExist, ModelEndpoint.DoesNotExist) as exc:
            raise CommandError(str(exc)) from None
        try:
            job = training_job_create(base_endpoint=base, snapshot=snap, method=method, hyperparameters=hyper,
                                      start=queue)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        if queue:
            self.stdout.write(f"queued training job #{job.pk}")
            return
        try:
            job = job_done_check(training_job_run(job_id=job.pk))
        except JobFailed as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(
            f"training job #{job.pk}: last loss {job.final_loss}, model {job.artifact_path}, "
            f"endpoint {job.result_endpoint.name!r}"))
