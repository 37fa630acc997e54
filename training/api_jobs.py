"""The API of training jobs: list and create (checked before they are queued), one job with its progress,
metrics, evaluation, log tail and endpoint, cancel and retry."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from annotate.api_fields import StrictBooleanField, StrictCharField, StrictIntegerField
from annotate.job_lifecycle import job_cancel, job_retry
from annotate.models import Membership
from annotate.roles import job_start_permission, permission_require
from annotate.selectors import project_get_for_user
from judges.models import Judge
from synth.selectors import endpoints_usable
from training.jobs import (
    MAX_PROCESSES,
    MAX_WIN_RATE_PROMPTS,
    training_job_create,
    training_job_get_for_user,
    training_job_hyperparameters,
    training_job_log_tail,
    training_job_timing,
)
from training.ml.registry import METHODS
from training.models import DatasetSnapshot, TrainingJob


class TrainingJobInSerializer(serializers.Serializer):
    method = StrictCharField(help_text="A training method: " + ", ".join(METHODS) + ".")
    snapshot = StrictIntegerField(help_text="The id of a snapshot of this project, of the rows the method trains on.")
    base_endpoint = StrictIntegerField(help_text="The id of the model endpoint to start from (local weights).")
    hyperparameters = serializers.DictField(required=False, default=dict,
                                            help_text="Only what differs from the method's defaults.")
    accelerate_config = StrictCharField(
        required=False, allow_blank=True, max_length=500, default="",
        help_text="Path of an accelerate or DeepSpeed config on the training worker; blank: one plain process.")
    num_processes = StrictIntegerField(required=False, default=1, min_value=1, max_value=MAX_PROCESSES,
                                       help_text="Processes (GPUs) accelerate starts.")
    win_rate_judge = StrictIntegerField(
        required=False, allow_null=True, default=None,
        help_text="Policy methods: the id of a judge that compares the trained model's answers with the base "
                  "model's on held-out prompts, in both orders (evaluation.win_rate); null: none.")
    win_rate_prompts = StrictIntegerField(required=False, default=50, min_value=1, max_value=MAX_WIN_RATE_PROMPTS,
                                          help_text="The most held-out prompts the win rate is measured on.")
    start = StrictBooleanField(default=True, help_text="Queue it at once (else it waits for a retry).")


def _ref(obj, **extra) -> dict | None:
    return None if obj is None else {"id": obj.pk, "name": obj.name, **extra}


class TrainingJobSerializer(serializers.ModelSerializer):
    """A training job as listed: no metrics, log or evaluation (the job's own address has them)."""

    method_label = serializers.CharField(source="get_method_display", read_only=True)
    snapshot = serializers.SerializerMethodField()
    base_endpoint = serializers.SerializerMethodField()
    win_rate_judge = serializers.SerializerMethodField(
        help_text="The judge of the win rate against the base model (its result: evaluation.win_rate).")
    result_endpoint = serializers.SerializerMethodField(
        help_text="The endpoint it registered: kind transformers (a policy), scorer (a reward model) or "
                  "step_scorer (a process reward model).")
    final_loss = serializers.FloatField(read_only=True, allow_null=True)
    can_cancel = serializers.BooleanField(read_only=True)
    can_retry = serializers.BooleanField(read_only=True)

    class Meta:
        model = TrainingJob
        fields = ["id", "method", "method_label", "status", "progress", "total", "snapshot", "base_endpoint",
                  "hyperparameters", "accelerate_config", "num_processes", "win_rate_judge", "win_rate_prompts",
                  "attempt", "worker", "error", "final_loss", "result_endpoint", "created_at", "started_at",
                  "finished_at", "can_cancel", "can_retry"]

    def get_snapshot(self, job: TrainingJob) -> dict:
        return _ref(job.snapshot, rows=job.snapshot.rows, sha256=job.snapshot.sha256)

    def get_base_endpoint(self, job: TrainingJob) -> dict:
        return _ref(job.base_endpoint, kind=job.base_endpoint.kind)

    def get_win_rate_judge(self, job: TrainingJob) -> dict | None:
        return _ref(job.win_rate_judge)

    def get_result_endpoint(self, job: TrainingJob) -> dict | None:
        return _ref(job.result_endpoint, kind=job.result_endpoint.kind if job.result_endpoint else None,
                    path=job.artifact_path)


class TrainingJobDetailSerializer(TrainingJobSerializer):
    effective_hyperparameters = serializers.SerializerMethodField(
        help_text="What the script runs with: the method's defaults, then the job's own values.")
    timing = serializers.SerializerMethodField(
        help_text="elapsed_s since its first start (to its end once ended), steps_per_s, eta_s (running only).")
    log_tail = serializers.SerializerMethodField(help_text="The last lines of its log.")
    evaluation = serializers.JSONField(
        read_only=True, help_text="What was measured after training on the snapshot's test split, and, with a "
                                  "win-rate judge, win_rate: {wins, losses, ties, n, rate (a tie counts half), "
                                  "judge, prompts_from} (or {error} when the comparison failed).")

    class Meta(TrainingJobSerializer.Meta):
        fields = [*TrainingJobSerializer.Meta.fields, "effective_hyperparameters", "timing", "metrics",
                  "evaluation", "log_tail"]

    def get_effective_hyperparameters(self, job: TrainingJob) -> dict:
        return {name: value for name, value, _, _ in training_job_hyperparameters(job=job)}

    def get_timing(self, job: TrainingJob) -> dict:
        timing = training_job_timing(job=job)
        return {"elapsed_s": timing.elapsed_s, "steps_per_s": timing.steps_per_s, "eta_s": timing.eta_s}

    def get_log_tail(self, job: TrainingJob) -> str:
        return training_job_log_tail(job=job)


def _jobs_of(project) -> list[TrainingJob]:
    return (TrainingJob.objects.filter(snapshot__project=project).defer("metrics", "log", "evaluation")
            .select_related("snapshot", "base_endpoint", "result_endpoint", "win_rate_judge"))


@extend_schema(methods=["GET"], responses=TrainingJobSerializer(many=True))
@extend_schema(methods=["POST"], request=TrainingJobInSerializer, responses={
    201: TrainingJobDetailSerializer,
    400: OpenApiResponse(description="A field is wrong: the method, the snapshot (of another kind of rows, or "
                                     "not of this project), the base endpoint, a hyper-parameter, the launch."),
    403: OpenApiResponse(description="Not a researcher of the project, or without the permission to start "
                                     "training; or the endpoint is kept to other projects or researchers.")})
@api_view(["GET", "POST"])
def training_jobs(request: Request, project_id: int) -> Response:
    """Researchers: the project's training jobs, newest first; POST creates one, checked against its method
    (the snapshot's kind of rows, each hyper-parameter) before it is queued on the training queue."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    if request.method == "GET":
        return Response(TrainingJobSerializer(_jobs_of(project), many=True).data)
    permission_require(user=request.user, permission=job_start_permission(TrainingJob), doing="start training jobs")
    data = TrainingJobInSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    given = data.validated_data
    snapshot = DatasetSnapshot.objects.filter(pk=given["snapshot"], project=project).defer("manifest").first()
    if snapshot is None:
        raise ValidationError({"snapshot": f"No snapshot {given['snapshot']} in this project."})
    endpoint = endpoints_usable(project=project, user=request.user).filter(pk=given["base_endpoint"]).first()
    if endpoint is None:
        raise ValidationError({"base_endpoint": f"No endpoint {given['base_endpoint']} that this project and you "
                                                f"may use."})
    if endpoint.kind == endpoint.Kind.OPENAI:
        raise ValidationError({"base_endpoint": f"The endpoint {endpoint.name!r} is an HTTP server: there are no "
                                                f"weights to train."})
    judge = None
    if given["win_rate_judge"] is not None:
        judge = Judge.objects.select_related("endpoint").filter(pk=given["win_rate_judge"]).first()
        if judge is None or not endpoints_usable(project=project, user=request.user).filter(
                pk=judge.endpoint_id).exists():
            raise ValidationError({"win_rate_judge": f"No judge {given['win_rate_judge']} that this project and "
                                                     f"you may use."})
    job = training_job_create(method=given["method"], snapshot=snapshot, base_endpoint=endpoint,
                              hyperparameters=given["hyperparameters"], accelerate_config=given["accelerate_config"],
                              num_processes=given["num_processes"], win_rate_judge=judge,
                              win_rate_prompts=given["win_rate_prompts"], start=given["start"])
    return Response(TrainingJobDetailSerializer(job).data, status=status.HTTP_201_CREATED)


@extend_schema(responses=TrainingJobDetailSerializer)
@api_view(["GET"])
def training_job_detail(request: Request, project_id: int, job_id: int) -> Response:
    """Researchers: one training job, with its progress and timing, its metrics so far (one entry per logged
    step, written while it runs), its evaluation on the snapshot's test split, its log tail and the endpoint
    it registered."""
    job = training_job_get_for_user(user=request.user, project_id=project_id, job_id=job_id)
    return Response(TrainingJobDetailSerializer(job).data)


@extend_schema(request=None, responses={200: TrainingJobDetailSerializer,
                                        409: OpenApiResponse(description="Not queued or running.")})
@api_view(["POST"])
def training_job_cancel_api(request: Request, project_id: int, job_id: int) -> Response:
    """Researchers: cancel a queued or running training job; its trainer is stopped (its process group
    killed), its log and metrics so far are kept and no endpoint is registered."""
    job = training_job_get_for_user(user=request.user, project_id=project_id, job_id=job_id)
    if not job.can_cancel:
        return Response({"detail": f"The job is {job.status}: there is nothing to cancel."},
                        status=status.HTTP_409_CONFLICT)
    job_cancel(job=job)
    return Response(TrainingJobDetailSerializer(training_job_get_for_user(
        user=request.user, project_id=project_id, job_id=job_id)).data)


@extend_schema(request=None, responses={200: TrainingJobDetailSerializer,
                                        409: OpenApiResponse(description="Not failed or cancelled.")})
@api_view(["POST"])
def training_job_retry_api(request: Request, project_id: int, job_id: int) -> Response:
    """Researchers with the permission to start training: queue a failed or cancelled job again; it resumes
    from its last checkpoint when its configuration is unchanged."""
    job = training_job_get_for_user(user=request.user, project_id=project_id, job_id=job_id)
    if not job.can_retry:
        return Response({"detail": f"The job is {job.status}: only a failed or cancelled job can be retried."},
                        status=status.HTTP_409_CONFLICT)
    job_retry(job=job, user=request.user)
    return Response(TrainingJobDetailSerializer(training_job_get_for_user(
        user=request.user, project_id=project_id, job_id=job_id)).data)
