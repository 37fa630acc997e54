"""The annotation API: everything the pages do, scoped the same way (token or session auth)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import RegexValidator
from django.http import Http404, HttpRequest, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.exceptions import APIException
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import hotpath
from annotate.api_fields import (
    CriteriaNamesField,
    CriteriaVerdictsField,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictFloatField,
    StrictIntegerField,
    not_blank,
)
from annotate.imports import (
    IMPORT_OPTIONS,
    ImportRefused,
    import_job_create,
    import_job_progress,
    import_upload_preview,
)
from annotate.job_lifecycle import job_cancel, job_queue_position, job_retry
from annotate.labels import (
    CORRECTED_STEP_MAX_LENGTH,
    PAIR_LABEL_ANSWER_FIELDS,
    RATIONALE_MAX_LENGTH,
    STEP_INDEX_MAX,
    TIME_SPENT_MAX_MS,
    ShownOrder,
    Strength,
    presentation_order,
)
from annotate.models import ImportJob, Membership, PairItem, PairLabel, Project, StepItem, StepLabel, Verdict
from annotate.quality import disputed_items, project_quality
from annotate.roles import CREATE_PROJECT, permission_require
from annotate.selectors import (
    job_get_for_user,
    jobs_for_project,
    membership_get_in_project,
    pair_item_get_in_project,
    project_get_for_user,
    project_list_for_user,
    project_memberships,
    project_stats,
    step_item_get_in_project,
)
from annotate.services import (
    LEASE_MINUTES_MAX,
    OVERLAP_MAX,
    PROJECT_NAME_MAX_LENGTH,
    MembershipConflict,
    annotator_account_create,
    item_lease_next,
    item_skip,
    membership_invite,
    membership_remove,
    membership_role_change,
    pair_item_adjudicate,
    pair_label_submit,
    project_create,
    project_update,
    step_label_submit,
    user_find,
)
from prefdata.readers import MappingError, formats_for


class ProjectSerializer(serializers.ModelSerializer):
    """A project's settings, with the bounds ``annotate.services.project_settings_clean`` checks."""

    name = StrictCharField(max_length=PROJECT_NAME_MAX_LENGTH, validators=[not_blank])
    guidelines = StrictCharField(required=False, allow_blank=True, trim_whitespace=False, default="")
    task_kind = StrictChoiceField(choices=Project.TaskKind.choices, default=Project.TaskKind.PAIRWISE,
                                  help_text="Fixed once the project has items.")
    overlap = StrictIntegerField(min_value=1, max_value=OVERLAP_MAX, default=1, help_text="Labels needed per item (k).")
    criteria = CriteriaNamesField(required=False, default=list)
    gold_rate = StrictFloatField(min_value=0, max_value=1, default=0.0,
                                 help_text="Share of served items that are gold (honeypot) items.")
    lease_minutes = StrictIntegerField(min_value=1, max_value=LEASE_MINUTES_MAX, default=30,
                                       help_text="An unanswered item returns after this long.")
    prioritize_disagreements = StrictBooleanField(
        default=False, help_text="Serve first the pairs whose AI judgments disagree or flip with the order.")
    step_mode = StrictChoiceField(choices=Project.StepMode.choices, default=Project.StepMode.RATE_ALL,
                                  help_text="Steps projects: rate every step, or stop at the first error.")

    class Meta:
        model = Project
        fields = ["id", "name", "guidelines", "task_kind", "overlap", "criteria", "gold_rate", "lease_minutes",
                  "prioritize_disagreements", "step_mode", "created_at"]
        read_only_fields = ["id", "created_at"]


class ProjectDetailSerializer(ProjectSerializer):
    stats = serializers.DictField(child=serializers.IntegerField(), read_only=True,
                                  help_text="Counts: items, gold, slots, open_slots, labels, prompts, mine.")

    class Meta(ProjectSerializer.Meta):
        fields = [*ProjectSerializer.Meta.fields, "stats"]


class PairItemSerializer(serializers.ModelSerializer):
    messages = serializers.JSONField(source="prompt.messages")
    response_a = serializers.CharField(source="completion_a.text")
    response_b = serializers.CharField(source="completion_b.text")

    class Meta:
        model = PairItem
        fields = ["id", "project", "messages", "response_a", "response_b"]


class NextItemSerializer(PairItemSerializer):
    shown_order = serializers.ChoiceField(choices=ShownOrder.choices,
                                          help_text="AB: show A on the left; BA: show B on the left.")

    class Meta(PairItemSerializer.Meta):
        fields = [*PairItemSerializer.Meta.fields, "shown_order"]


class PairLabelInSerializer(serializers.Serializer):
    verdict = StrictChoiceField(choices=Verdict.choices, help_text="About the stored responses A and B.")
    strength = StrictChoiceField(choices=Strength.choices, required=False, allow_null=True,
                                 help_text="Only with a verdict of A or B (dropped otherwise).")
    rationale = StrictCharField(required=False, allow_blank=True, max_length=RATIONALE_MAX_LENGTH, default="")
    time_spent_ms = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=TIME_SPENT_MAX_MS)
    criteria = CriteriaVerdictsField(required=False)


class PairLabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = PairLabel
        fields = list(PAIR_LABEL_ANSWER_FIELDS)


@extend_schema(methods=["GET"], responses=ProjectSerializer(many=True))
@extend_schema(methods=["POST"], request=ProjectSerializer, responses={201: ProjectSerializer})
@api_view(["GET", "POST"])
def project_list(request: Request) -> Response:
    """Your projects; POST creates one, with you as its researcher (researchers only: see ``annotate.roles``)."""
    if request.method == "POST":
        permission_require(user=request.user, permission=CREATE_PROJECT, doing="create projects")
        data = ProjectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_create(created_by=request.user, **data.validated_data)
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)
    return Response(ProjectSerializer(project_list_for_user(user=request.user), many=True).data)


@extend_schema(methods=["GET"], responses=ProjectDetailSerializer)
@extend_schema(methods=["PATCH"], request=ProjectSerializer, responses=ProjectDetailSerializer)
@api_view(["GET", "PATCH"])
def project_detail(request: Request, project_id: int) -> Response:
    """A project and its counts; researchers may PATCH its settings."""
    if request.method == "PATCH":
        project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
        data = ProjectSerializer(project, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = project_update(project=project, **data.validated_data)
    else:
        project = project_get_for_user(user=request.user, project_id=project_id)
    project.stats = project_stats(project=project, user=request.user)
    return Response(ProjectDetailSerializer(project).data)


class StepItemSerializer(serializers.ModelSerializer):
    messages = serializers.JSONField(source="prompt.messages")
    # Left out when the project hides them from annotators.
    reference_answer = serializers.CharField(required=False)
    ground_truth_solution = serializers.CharField(required=False)

    class Meta:
        model = StepItem
        fields = ["id", "project", "messages", "steps", "reference_answer", "ground_truth_solution"]

    def to_representation(self, item: StepItem) -> dict:
        data = super().to_representation(item)
        if not item.project.show_reference:  # hidden from annotators when the project says so
            data.pop("reference_answer")
            data.pop("ground_truth_solution")
        return data


class StepNextItemSerializer(StepItemSerializer):
    mode = serializers.ChoiceField(choices=Project.StepMode.choices, source="project.step_mode",
                                   help_text="rate_all: rate every step; first_error: stop at the first -1.")

    class Meta(StepItemSerializer.Meta):
        fields = [*StepItemSerializer.Meta.fields, "mode"]


class _HotPath:
    """Answers from ``annotate.hotpath`` when it can (PostgreSQL, token auth, a pairwise project,
    plainly valid input), else through DRF as usual: the schema, validation and errors are DRF's."""

    hot: Callable[..., HttpResponse | None]

    def dispatch(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        response = type(self).hot(request, **kwargs)
        return response if response is not None else super().dispatch(request, *args, **kwargs)


class NextItem(_HotPath, APIView):
    hot = staticmethod(hotpath.pair_next)

    @extend_schema(responses={
        200: PolymorphicProxySerializer(component_name="NextItemOrSolution", many=False, resource_type_field_name=None,
                                        serializers=[NextItemSerializer, StepNextItemSerializer]),
        204: OpenApiResponse(description="Nothing left to label.")})
    def get(self, request: Request, project_id: int) -> Response:
        """Lease the next item to label: a pair (with the side order to show it in) or, in a steps
        project, a solution to rate step by step."""
        project = project_get_for_user(user=request.user, project_id=project_id)
        item = item_lease_next(project=project, user=request.user)
        if item is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        if isinstance(item, StepItem):
            item.project = project
            return Response(StepNextItemSerializer(item).data)
        item.shown_order = presentation_order(user_id=request.user.pk, item_id=item.pk)
        return Response(NextItemSerializer(item).data)


next_item = NextItem.as_view()


class StepLabelInSerializer(serializers.Serializer):
    ratings = serializers.ListField(child=StrictIntegerField(allow_null=True, min_value=-1, max_value=1),
                                    help_text="One per step: 1, 0, -1, or null (not labeled).")
    finish_reason = StrictChoiceField(choices=StepLabel.FinishReason.choices, default="solution")
    outcome = StrictChoiceField(choices=StepLabel.Outcome.choices, default="", allow_blank=True)
    flags = serializers.ListField(child=StrictIntegerField(min_value=0, max_value=STEP_INDEX_MAX), default=list,
                                  help_text="Steps flagged for a second look (their indexes).")
    corrected_step_index = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=STEP_INDEX_MAX)
    corrected_step = StrictCharField(required=False, allow_blank=True, default="",
                                     max_length=CORRECTED_STEP_MAX_LENGTH)
    time_spent_ms = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=TIME_SPENT_MAX_MS)


class StepLabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = StepLabel
        fields = ["id", "item", "ratings", "flags", "finish_reason", "outcome", "corrected_step_index",
                  "corrected_step", "time_spent_ms", "created_at", "updated_at"]


@extend_schema(request=StepLabelInSerializer, responses={201: StepLabelSerializer})
@api_view(["POST"])
def step_label_submit_api(request: Request, project_id: int, item_id: int) -> Response:
    """Rate a solution's steps: one of 1, 0, -1 or null per step (null: not labeled)."""
    item = step_item_get_in_project(user=request.user, project_id=project_id, item_id=item_id)
    data = StepLabelInSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    label = step_label_submit(item=item, annotator=request.user, **data.validated_data)
    return Response(StepLabelSerializer(label).data, status=status.HTTP_201_CREATED)


@extend_schema(request=None, responses={204: OpenApiResponse(description="Skipped.")})
@api_view(["POST"])
def step_skip_api(request: Request, project_id: int, item_id: int) -> Response:
    item_skip(item=step_item_get_in_project(user=request.user, project_id=project_id, item_id=item_id),
              user=request.user)
    return Response(status=status.HTTP_204_NO_CONTENT)


def _item_in_project(request: Request, project_id: int, item_id: int) -> PairItem:
    return pair_item_get_in_project(user=request.user, project_id=project_id, item_id=item_id)


class LabelSubmit(_HotPath, APIView):
    hot = staticmethod(hotpath.pair_label)

    @extend_schema(request=PairLabelInSerializer, responses={201: PairLabelSerializer})
    def post(self, request: Request, project_id: int, item_id: int) -> Response:
        """Label (or relabel) an item. The verdict names the stored responses A and B, not screen sides."""
        item = _item_in_project(request, project_id, item_id)
        data = PairLabelInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        label = pair_label_submit(item=item, annotator=request.user,
                                  shown_order=presentation_order(user_id=request.user.pk, item_id=item.pk),
                                  **data.validated_data)
        return Response(PairLabelSerializer(label).data, status=status.HTTP_201_CREATED)


label_submit = LabelSubmit.as_view()


@extend_schema(request=None, responses={204: OpenApiResponse(description="Skipped.")})
@api_view(["POST"])
def pair_skip(request: Request, project_id: int, item_id: int) -> Response:
    """Skip an item: it is not served to you again."""
    item_skip(item=_item_in_project(request, project_id, item_id), user=request.user)
    return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(responses=PairLabelSerializer(many=True))
@api_view(["GET"])
def my_labels(request: Request, project_id: int) -> Response:
    """Your own labels in the project, newest first (never other people's)."""
    project = project_get_for_user(user=request.user, project_id=project_id)
    labels = PairLabel.objects.filter(item__project=project, annotator=request.user).order_by("-updated_at")[:500]
    return Response(PairLabelSerializer(labels, many=True).data)


class QueueAheadSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="imports, synthesis, judge-runs or training")
    id = serializers.IntegerField(allow_null=True, help_text="null for a job of another project")
    status = serializers.CharField()
    label = serializers.CharField(help_text='e.g. "import #12 (running, 1,200 done)"')


class QueuePositionSerializer(serializers.Serializer):
    """Where a queued job stands: 1 is the next to start."""

    queue = serializers.CharField(help_text="the Celery queue")
    position = serializers.IntegerField()
    ahead_count = serializers.IntegerField()
    ahead = QueueAheadSerializer(many=True, help_text="the jobs just ahead of it (a few)")
    text = serializers.CharField(help_text='e.g. "waiting: 2nd in the default queue, behind import #12 (running)"')


class ImportJobSerializer(serializers.ModelSerializer):
    rows_read = serializers.SerializerMethodField()
    queue = serializers.SerializerMethodField(help_text="A queued job's place in its queue; null otherwise.")

    class Meta:
        model = ImportJob
        fields = ["id", "file_name", "format", "status", "rows_read", "items", "error", "options", "mapping",
                  "summary", "queue", "created_at", "finished_at"]

    def get_rows_read(self, job: ImportJob) -> int:
        return import_job_progress(job=job)

    @extend_schema_field(QueuePositionSerializer(allow_null=True))
    def get_queue(self, job: ImportJob) -> dict | None:
        position = job_queue_position(job, project_id=job.project_id)
        return position.to_dict() if position else None


class ImportErrorSerializer(serializers.Serializer):
    file = serializers.CharField()
    line = serializers.IntegerField(help_text="1-based line (record, row); 0 for the file as a whole")
    field = serializers.CharField(help_text="the file's column or field, or (file), (json), (format) ...")
    message = serializers.CharField()


class ImportPreviewSerializer(serializers.Serializer):
    """The first rows of an uploaded file, read at once; nothing is queued or kept."""

    container = serializers.CharField(help_text="jsonl, json, csv or parquet")
    detected_format = serializers.CharField(allow_null=True, help_text="a known format, or null: map the columns")
    columns = serializers.ListField(child=serializers.CharField())
    rows = serializers.ListField(child=serializers.DictField(child=serializers.CharField()),
                                 help_text="the first rows, each cell as text cut to 200 characters")
    lines = serializers.ListField(child=serializers.IntegerField())
    values = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                   help_text="column -> the distinct values seen (for a gold value map)")
    suggested = serializers.DictField(child=serializers.CharField(), help_text="a mapping guessed from the names")
    errors = ImportErrorSerializer(many=True)
    records_checked = serializers.IntegerField()


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=list(formats_for()), default="auto")
    mapping = serializers.JSONField(
        required=False, binary=True,
        help_text='A column mapping (JSON): {"columns": {"prompt": "input", "response_a": "output_1", '
                  '"response_b": "output_2", "gold": "label"}, "gold_values": {"1": "A", "2": "B"}}; steps: '
                  'prompt, steps, ratings, reference_answer, model, id, and "split". Checked over the first '
                  "rows before the job is queued.")
    preview = serializers.BooleanField(
        default=False, help_text="Only read the first rows and answer the preview (200): nothing is queued or kept.")
    context_differs = serializers.ChoiceField(choices=IMPORT_OPTIONS["context_differs"][0],
                                              default=IMPORT_OPTIONS["context_differs"][0][0],
                                              help_text=IMPORT_OPTIONS["context_differs"][1])
    identical = serializers.ChoiceField(choices=IMPORT_OPTIONS["identical"][0],
                                        default=IMPORT_OPTIONS["identical"][0][0],
                                        help_text=IMPORT_OPTIONS["identical"][1])


@extend_schema(methods=["GET"], responses=ImportJobSerializer(many=True))
@extend_schema(methods=["POST"], request={"multipart/form-data": ImportUploadSerializer},
               responses={202: ImportJobSerializer, 200: ImportPreviewSerializer})
@api_view(["GET", "POST"])
@parser_classes([MultiPartParser])
def imports(request: Request, project_id: int) -> Response:
    """Researchers: upload a file to import (a worker imports it, all or nothing), or list imports."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    if request.method == "POST":
        data = ImportUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        kind = "steps" if project.task_kind == Project.TaskKind.STEPS else "pairs"
        if data.validated_data["format"] not in formats_for(kind):  # refused now, not by the worker later
            raise serializers.ValidationError({"format": [
                f"{data.validated_data['format']} is not a format of {kind}: this {project.task_kind} project "
                f"imports {', '.join(formats_for(kind))}"]})
        options = {name: data.validated_data[name] for name in IMPORT_OPTIONS}
        mapping = data.validated_data.get("mapping") or None
        try:
            if data.validated_data["preview"]:
                preview = import_upload_preview(project=project, upload=data.validated_data["file"],
                                                fmt=data.validated_data["format"], mapping=mapping, options=options)
                return Response(ImportPreviewSerializer(preview.to_dict()).data)
            job = import_job_create(project=project, upload=data.validated_data["file"],
                                    fmt=data.validated_data["format"], user=request.user, options=options,
                                    mapping=mapping)
        except MappingError as exc:
            raise serializers.ValidationError({"mapping": [str(exc)]}) from None
        except ImportRefused as exc:  # the first rows failed: nothing queued, nothing kept
            raise serializers.ValidationError({"mapping" if mapping else "file": [
                e["message"] for e in exc.errors]}) from None
        job.refresh_from_db()
        return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
    return Response(ImportJobSerializer(ImportJob.objects.filter(project=project)[:100], many=True).data)


@extend_schema(responses=ImportJobSerializer)
@api_view(["GET"])
def import_detail(request: Request, project_id: int, job_id: int) -> Response:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    job = ImportJob.objects.filter(project=project, pk=job_id).first()
    if job is None:
        raise Http404("No such import.")
    return Response(ImportJobSerializer(job).data)


@extend_schema(responses={200: OpenApiTypes.OBJECT})
@api_view(["GET"])
def quality(request: Request, project_id: int) -> Response:
    """Researchers: agreement (Krippendorff's alpha, Fleiss' kappa) and per-annotator figures."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    data = project_quality(project=project)
    data["annotators"] = [asdict(a) for a in data["annotators"]]
    return Response(data)


class AdjudicateSerializer(serializers.Serializer):
    verdict = StrictChoiceField(choices=Verdict.choices)
    strength = StrictChoiceField(choices=Strength.choices, required=False, allow_null=True)


class AdjudicatedItemSerializer(PairItemSerializer):
    final_verdict = serializers.ChoiceField(choices=Verdict.choices)
    final_strength = serializers.ChoiceField(choices=Strength.choices, allow_null=True)

    class Meta(PairItemSerializer.Meta):
        fields = [*PairItemSerializer.Meta.fields, "final_verdict", "final_strength"]


class DisputeSerializer(serializers.Serializer):
    item = PairItemSerializer()
    labels = serializers.SerializerMethodField()
    final_verdict = serializers.CharField(source="item.final_verdict")

    def get_labels(self, dispute: dict) -> list[dict]:
        return [{"annotator": label.annotator.username, "verdict": label.verdict, "strength": label.strength,
                 "rationale": label.rationale} for label in dispute["labels"]]


@extend_schema(responses=DisputeSerializer(many=True))
@api_view(["GET"])
def disputes(request: Request, project_id: int) -> Response:
    """Researchers: pairs whose labels disagree and have no final verdict yet."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    return Response(DisputeSerializer(disputed_items(project=project), many=True).data)


@extend_schema(request=AdjudicateSerializer, responses=AdjudicatedItemSerializer)
@api_view(["POST"])
def adjudicate(request: Request, project_id: int, item_id: int) -> Response:
    """Researchers: set a pair's final verdict."""
    project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    item = _item_in_project(request, project_id, item_id)
    data = AdjudicateSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    item = pair_item_adjudicate(item=item, reviewer=request.user, **data.validated_data)
    return Response(AdjudicatedItemSerializer(item).data)


class JobSerializer(serializers.Serializer):
    """A background job of any kind: an import, a synthesis job, a judge run, a training job."""

    kind = serializers.CharField(source="slug", help_text="imports, synthesis, judge-runs or training")
    id = serializers.IntegerField()
    name = serializers.CharField(source="__str__")
    status = serializers.CharField()
    progress = serializers.IntegerField()
    total = serializers.IntegerField()
    error = serializers.CharField()
    attempt = serializers.IntegerField(help_text="Starts so far: 1, and one more each time it was resumed after "
                                                 "its worker stopped.")
    max_attempts = serializers.IntegerField()
    worker = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField(source="is_stale", help_text="Running, but its worker stopped renewing its "
                                                                  "lease: a live worker will resume it.")
    can_cancel = serializers.BooleanField()
    can_retry = serializers.BooleanField()


@extend_schema(responses=JobSerializer(many=True))
@api_view(["GET"])
def jobs(request: Request, project_id: int) -> Response:
    """Researchers: the project's background jobs of every kind, newest first."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    return Response(JobSerializer(jobs_for_project(project=project), many=True).data)


@extend_schema(responses=JobSerializer)
@api_view(["GET"])
def job_detail(request: Request, project_id: int, slug: str, job_id: int) -> Response:
    """Researchers: one job, with its status and progress."""
    job = job_get_for_user(user=request.user, project_id=project_id, slug=slug, job_id=job_id)
    return Response(JobSerializer(job).data)


@extend_schema(request=None, responses={200: JobSerializer, 409: OpenApiResponse(description="Not queued or running.")})
@api_view(["POST"])
def job_cancel_api(request: Request, project_id: int, slug: str, job_id: int) -> Response:
    """Researchers: cancel a queued or running job; a running one stops at its next check (an import stores
    nothing; other jobs keep what they finished)."""
    job = job_get_for_user(user=request.user, project_id=project_id, slug=slug, job_id=job_id)
    if not job.can_cancel:
        return Response({"detail": f"The job is {job.status}: there is nothing to cancel."},
                        status=status.HTTP_409_CONFLICT)
    return Response(JobSerializer(job_cancel(job=job)).data)


@extend_schema(request=None,
               responses={200: JobSerializer, 409: OpenApiResponse(description="Not failed or cancelled.")})
@api_view(["POST"])
def job_retry_api(request: Request, project_id: int, slug: str, job_id: int) -> Response:
    """Researchers: queue a failed or cancelled job again; it resumes where it can."""
    job = job_get_for_user(user=request.user, project_id=project_id, slug=slug, job_id=job_id)
    if not job.can_retry:
        return Response({"detail": f"The job is {job.status}: only a failed or cancelled job can be retried."},
                        status=status.HTTP_409_CONFLICT)
    return Response(JobSerializer(job_retry(job=job, user=request.user)).data)


# --- Members ------------------------------------------------------------------------------------------------


class MemberSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(read_only=True, help_text="The account's id: the key of .../members/<id>/.")
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.CharField(source="user.email", read_only=True)
    role = serializers.ChoiceField(choices=Membership.Role.choices)

    class Meta:
        model = Membership
        fields = ["user_id", "username", "email", "role"]


class MemberAddSerializer(serializers.Serializer):
    user = StrictCharField(max_length=254, validators=[not_blank], help_text="An existing account's username or email.")
    role = StrictChoiceField(choices=Membership.Role.choices, default=Membership.Role.ANNOTATOR)


class MemberRoleSerializer(serializers.Serializer):
    role = StrictChoiceField(choices=Membership.Role.choices, help_text="The last researcher stays one.")


class AccountCreateSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150, validators=[RegexValidator(r"^[\w.@+-]+$")],
                               help_text="Letters, digits and @ . + - _ (Django's usernames).")
    role = StrictChoiceField(choices=Membership.Role.choices, default=Membership.Role.ANNOTATOR)


class AccountCreatedSerializer(MemberSerializer):
    password = serializers.CharField(read_only=True, help_text="The account's generated password, answered this "
                                                               "once: it is stored only hashed.")

    class Meta(MemberSerializer.Meta):
        fields = [*MemberSerializer.Meta.fields, "password"]


def _researcher_project(request: Request, project_id: int) -> Project:
    return project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Refused because of what is stored."
    default_code = "conflict"


@contextmanager
def _conflicts_as_409() -> Iterator[None]:
    """A member already, a username taken, the last researcher: 409, with the service's message."""
    try:
        yield
    except MembershipConflict as exc:
        raise Conflict(exc.messages[0]) from None


_CONFLICT = "A member already, a username taken, or the project's last researcher."


@extend_schema(methods=["GET"], responses=MemberSerializer(many=True))
@extend_schema(methods=["POST"], request=MemberAddSerializer,
               responses={201: MemberSerializer, 409: OpenApiResponse(description=_CONFLICT)})
@api_view(["GET", "POST"])
def members(request: Request, project_id: int) -> Response:
    """Researchers: the project's members; POST adds an existing account (by username or email; none that
    matches: 404)."""
    project = _researcher_project(request, project_id)
    if request.method == "POST":
        data = MemberAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = user_find(identifier=data.validated_data["user"])
        except DjangoValidationError as exc:
            raise Http404(exc.messages[0]) from None
        with _conflicts_as_409():
            membership = membership_invite(project=project, identifier=user.get_username(),
                                           role=data.validated_data["role"])
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)
    return Response(MemberSerializer(project_memberships(project=project), many=True).data)


@extend_schema(request=AccountCreateSerializer,
               responses={201: AccountCreatedSerializer, 409: OpenApiResponse(description=_CONFLICT)})
@api_view(["POST"])
def member_account_create(request: Request, project_id: int) -> Response:
    """Researchers: create an account (no staff, no permissions) with a generated password and make it a
    member, an annotator by default. The answer carries the password, this once."""
    project = _researcher_project(request, project_id)
    data = AccountCreateSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    with _conflicts_as_409():
        membership, password = annotator_account_create(project=project, **data.validated_data)
    membership.password = password
    response = Response(AccountCreatedSerializer(membership).data, status=status.HTTP_201_CREATED)
    response["Cache-Control"] = "no-store"
    return response


@extend_schema(methods=["GET"], responses=MemberSerializer)
@extend_schema(methods=["PATCH"], request=MemberRoleSerializer,
               responses={200: MemberSerializer, 409: OpenApiResponse(description=_CONFLICT)})
@extend_schema(methods=["DELETE"], responses={204: OpenApiResponse(description="Removed; their labels stay."),
                                              409: OpenApiResponse(description=_CONFLICT)})
@api_view(["GET", "PATCH", "DELETE"])
def member_detail(request: Request, project_id: int, user_id: int) -> Response:
    """Researchers: one member; PATCH changes the role, DELETE removes them (never the last researcher: 409)."""
    membership = membership_get_in_project(project=_researcher_project(request, project_id), user_id=user_id)
    if request.method == "PATCH":
        data = MemberRoleSerializer(data=request.data, partial=True)  # PATCH: nothing given, nothing changed
        data.is_valid(raise_exception=True)
        if "role" in data.validated_data:
            with _conflicts_as_409():
                membership = membership_role_change(membership=membership, role=data.validated_data["role"])
    elif request.method == "DELETE":
        with _conflicts_as_409():
            membership_remove(membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(MemberSerializer(membership).data)
