import copy
import random

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Sum
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from annotate.api_errors import ID_MAX
from annotate.api_fields import StrictCharField, StrictChoiceField, StrictFloatField, StrictIntegerField, not_blank
from annotate.models import Membership, PairItem, Project, StepItem
from annotate.roles import permission_require
from annotate.selectors import project_get_for_user
from judges.forms import project_modes
from judges.leaderboard import SOURCES, project_leaderboard
from judges.models import MODE_TEMPLATES, UNPARSED_EXAMPLES, AIJudgment, Judge, JudgeRun, template_check
from judges.reports import judge_report
from judges.selectors import judges_for_project
from judges.services import (
    MAX_NEW_TOKENS_MAX,
    TEMPERATURE_MAX,
    TEMPLATE_MAX_LENGTH,
    VOTES_MAX,
    JudgeTestError,
    judge_preview,
    judge_problems,
    judge_run_create,
    judge_run_estimate,
    judge_save,
    judge_test,
)
from synth.models import Constitution, ModelEndpoint
from synth.selectors import endpoints_usable


@extend_schema(parameters=[OpenApiParameter("source", enum=list(SOURCES), default="human")],
               responses={200: OpenApiTypes.OBJECT})
@api_view(["GET"])
def leaderboard(request: Request, project_id: int) -> Response:
    """Researchers: Bradley-Terry ratings of the models behind the completions, with 95% bootstrap intervals."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    source = request.query_params.get("source", "human")
    if source not in SOURCES:
        raise ValidationError({"source": [f"must be one of {list(SOURCES)}"]})
    return Response({"source": source, "models": project_leaderboard(project=project, source=source)})


_UNPARSED_SCHEMA = {"type": "object", "properties": {
    "answers": {"type": "integer", "description": "Generated answers read by the judge's runs on the project."},
    "unparsed": {"type": "integer", "description": "Those no verdict, score or yes/no was found in (a tie each)."},
    "share": {"type": "number", "nullable": True},
    "examples": {"type": "array", "items": {"type": "string"}, "description": "A few, trimmed: model text."}},
    "required": ["answers", "unparsed", "share", "examples"]}


@extend_schema(responses={200: {"type": "array", "items": {
    "type": "object", "properties": {"judge": {"type": "string"}, "version": {"type": "integer"},
                                     "unparsed": _UNPARSED_SCHEMA},
    "required": ["judge", "version", "unparsed"], "additionalProperties": {}}}})
@api_view(["GET"])
def judge_reports(request: Request, project_id: int) -> Response:
    """Researchers: each judge's agreement with people, position bias, self-consistency, calibration, cost."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    judge_ids = AIJudgment.objects.filter(item__project=project).values_list("judge_id", flat=True).distinct()
    out = []
    for judge in Judge.objects.filter(pk__in=judge_ids):
        report = judge_report(judge=judge, project=project)
        report.pop("calibration_svg")
        out.append({"judge": judge.name, "version": judge.template_version, **report,
                    "unparsed": _unparsed_summary(judge=judge, project=project)})
    return Response(out)


def _unparsed_summary(*, judge: Judge, project: Project) -> dict:
    """Over the judge's runs on the project: generated answers read, those no verdict, score or yes/no was
    found in (each counted as a tie), and a few of them (model text) from the latest runs."""
    runs = JudgeRun.objects.filter(judge=judge, project=project)
    totals = runs.aggregate(answers=Sum("answers"), unparsed=Sum("unparsed"))
    answers, unparsed = totals["answers"] or 0, totals["unparsed"] or 0
    examples: list[str] = []
    for shown in runs.filter(unparsed__gt=0).order_by("-id").values_list("unparsed_examples", flat=True)[:5]:
        examples += shown[: UNPARSED_EXAMPLES - len(examples)]
    return {"answers": answers, "unparsed": unparsed,
            "share": round(unparsed / answers, 4) if answers else None, "examples": examples}


class JudgeRunStartedSerializer(serializers.ModelSerializer):
    class Meta:
        model = JudgeRun
        fields = ["id", "status"]


@extend_schema(request=None, responses={
    202: JudgeRunStartedSerializer,
    400: OpenApiResponse(description="The judge's mode does not fit the project's task kind (`judge`).")})
@api_view(["POST"])
def judge_run_start(request: Request, project_id: int, judge_id: int) -> Response:
    """Researchers: queue a run of a judge over the project's pairs."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    judge = Judge.objects.filter(pk=judge_id).first()
    if judge is None:
        raise NotFound("No such judge.")
    run = judge_run_create(judge=judge, project=project, user=request.user)
    return Response(JudgeRunStartedSerializer(run).data, status=202)


# --- Judges created and changed through the API; a preview of the prompt, a test on one pair, an estimate -------

class JudgeSerializer(serializers.Serializer):
    """A judge as the API shows and takes it: ``template`` is the template of its mode (a judge keeps one per
    mode). The endpoints offered are those the caller may use on the project; the checks are the app's
    (``judges.services.judge_problems``), each error on its field."""

    id = serializers.IntegerField(read_only=True)
    name = StrictCharField(max_length=200, validators=[not_blank])
    endpoint = serializers.PrimaryKeyRelatedField(queryset=ModelEndpoint.objects.none(),
                                                  help_text="An endpoint you may use on the project.")
    mode = StrictChoiceField(choices=Judge.Mode.choices, default=Judge.Mode.PAIRWISE,
                             help_text="It must fit the project's task kind.")
    template = StrictCharField(source="active_template", trim_whitespace=False, max_length=TEMPLATE_MAX_LENGTH,
                               required=False, help_text="The template of the judge's mode (its default if "
                                                         "left out when created).")
    constitution = serializers.PrimaryKeyRelatedField(queryset=Constitution.objects.all(), allow_null=True,
                                                      required=False, default=None)
    principle_use = StrictChoiceField(choices=Judge.PrincipleUse.choices, default=Judge.PrincipleUse.SAMPLE_ONE)
    debiasing = StrictChoiceField(choices=Judge.Debiasing.choices, default=Judge.Debiasing.SWAP_AVERAGE)
    verdict_method = StrictChoiceField(choices=Judge.VerdictMethod.choices, default=Judge.VerdictMethod.LOGPROB)
    votes = StrictIntegerField(min_value=1, max_value=VOTES_MAX, default=1)
    temperature = StrictFloatField(min_value=0.0, max_value=TEMPERATURE_MAX, default=0.0)
    max_new_tokens = StrictIntegerField(min_value=1, max_value=MAX_NEW_TOKENS_MAX, default=256)
    template_version = serializers.IntegerField(read_only=True)

    def __init__(self, *args, project: Project | None = None, user=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        if project is not None and user is not None:
            self.fields["endpoint"].queryset = endpoints_usable(project=project, user=user)

    def validate_mode(self, mode: str) -> str:
        if self.project is not None and mode not in dict(project_modes(self.project)):
            raise serializers.ValidationError(f"A {mode} judge does not fit this {self.project.task_kind} project.")
        return mode

    def judge_build(self, attrs: dict | None = None) -> Judge:
        """The judge with the request's values, not saved (a copy of the stored one, if any)."""
        judge = copy.copy(self.instance) if self.instance is not None else Judge()
        data = dict(attrs if attrs is not None else self.validated_data)
        template = data.pop("active_template", None)
        for name, value in data.items():
            setattr(judge, name, value)
        if template is not None:
            setattr(judge, judge.active_template_field, template)
        return judge

    def validate(self, attrs: dict) -> dict:
        problems = judge_problems(judge=self.judge_build(attrs))
        if problems:
            raise serializers.ValidationError({field: [message] for field, message in problems.items()})
        return attrs


def _judge_in_project(request: Request, project: Project, judge_id: int) -> Judge:
    judge = judges_for_project(project=project, user=request.user).select_related("endpoint").filter(
        pk=judge_id).first()
    if judge is None:
        raise NotFound("No such judge.")
    return judge


@extend_schema(methods=["GET"], responses=JudgeSerializer(many=True))
@extend_schema(methods=["POST"], request=JudgeSerializer, responses={201: JudgeSerializer})
@api_view(["GET", "POST"])
def judges(request: Request, project_id: int) -> Response:
    """Researchers: the judges you may use on the project (GET), or a new one (POST; needs the permission to
    create judges)."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    if request.method == "GET":
        rows = judges_for_project(project=project, user=request.user).order_by("name")
        return Response(JudgeSerializer(rows, many=True).data)
    permission_require(user=request.user, permission="judges.add_judge", doing="create judges")
    serializer = JudgeSerializer(data=request.data, project=project, user=request.user)
    serializer.is_valid(raise_exception=True)
    judge = judge_save(judge=serializer.judge_build(), user=request.user)
    return Response(JudgeSerializer(judge).data, status=201)


@extend_schema(methods=["GET"], responses=JudgeSerializer)
@extend_schema(methods=["PATCH"], request=JudgeSerializer(partial=True), responses=JudgeSerializer)
@api_view(["GET", "PATCH"])
def judge_detail(request: Request, project_id: int, judge_id: int) -> Response:
    """Researchers: a judge (GET), or a change to it (PATCH, the fields given; needs the permission to change
    judges). A change to what it does gives it a new ``template_version``."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    judge = _judge_in_project(request, project, judge_id)
    if request.method == "GET":
        return Response(JudgeSerializer(judge).data)
    permission_require(user=request.user, permission="judges.change_judge", doing="change judges")
    serializer = JudgeSerializer(judge, data=request.data, partial=True, project=project, user=request.user)
    serializer.is_valid(raise_exception=True)
    judge = judge_save(judge=serializer.judge_build(), user=request.user)
    return Response(JudgeSerializer(judge).data)


class PairChoiceSerializer(serializers.Serializer):
    item = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=ID_MAX, default=None,
                              help_text="A pair of the project (a solution in a steps project); null or left "
                                        "out: one drawn at random.")


class JudgePreviewInSerializer(JudgeSerializer, PairChoiceSerializer):
    """A judge as it would be (not saved) and the pair to render its prompts on."""

    name = StrictCharField(max_length=200, required=False, default="preview")
    endpoint = serializers.PrimaryKeyRelatedField(queryset=ModelEndpoint.objects.none(), required=False,
                                                  allow_null=True, default=None)
    template = StrictCharField(source="active_template", trim_whitespace=False, max_length=TEMPLATE_MAX_LENGTH)

    def validate(self, attrs: dict) -> dict:
        error = template_check(attrs["active_template"], spec=MODE_TEMPLATES[attrs.get("mode", Judge.Mode.PAIRWISE)])
        if error:
            raise serializers.ValidationError({"template": [error]})
        return attrs

    def judge_build(self, attrs: dict | None = None) -> Judge:
        data = dict(attrs if attrs is not None else self.validated_data)
        data.pop("item", None)
        data.pop("name", None)
        judge = Judge(name="preview", endpoint=data.pop("endpoint", None), mode=data.pop("mode", Judge.Mode.PAIRWISE))
        template = data.pop("active_template")
        for name, value in data.items():
            setattr(judge, name, value)
        setattr(judge, judge.active_template_field, template)
        return judge


class PromptShownSerializer(serializers.Serializer):
    order = serializers.CharField(help_text='"A first", "B first", "response A", "response B" or "step n".')
    text = serializers.CharField(help_text="The prompt as sent: pair text, untrusted.")


class JudgePreviewSerializer(serializers.Serializer):
    item = serializers.IntegerField()
    prompts = PromptShownSerializer(many=True)


def _item_pick(project: Project, item_id: int | None) -> PairItem | StepItem:
    steps = project.task_kind == Project.TaskKind.STEPS
    items = (StepItem.objects.select_related("prompt") if steps else
             PairItem.objects.select_related("prompt", "completion_a", "completion_b", "project"))
    items = items.filter(project=project)
    if item_id is not None:
        item = items.filter(pk=item_id).first()
        if item is None:
            raise NotFound(f"No pair {item_id} in this project.")
        return item
    count = items.count()
    if not count:
        raise NotFound("The project has no pair yet.")
    return items.order_by("id")[random.randrange(count)]  # noqa: S311 (not a secret)


@extend_schema(request=JudgePreviewInSerializer, responses=JudgePreviewSerializer)
@api_view(["POST"])
def judge_preview_api(request: Request, project_id: int) -> Response:
    """Researchers: the prompts a judge (as given, not saved) sends for a pair of the project: both orders of
    a pairwise judge that swaps, each response of a pointwise one. Nothing is sent to a model."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    serializer = JudgePreviewInSerializer(data=request.data, project=project, user=request.user)
    serializer.is_valid(raise_exception=True)
    item = _item_pick(project, serializer.validated_data.get("item"))
    return Response({"item": item.pk, "prompts": judge_preview(judge=serializer.judge_build(), item=item)})


class TestOrderSerializer(serializers.Serializer):
    order = serializers.CharField()
    prompt = serializers.CharField()
    raw = serializers.CharField(help_text="What the model answered (untrusted), or its log-probabilities.")
    verdict = serializers.CharField(help_text="A, B or tie, about the stored responses.")
    prob_a = serializers.FloatField(allow_null=True)


class JudgeTestSerializer(serializers.Serializer):
    item = serializers.IntegerField(source="item_id")
    orders = TestOrderSerializer(many=True)
    verdict = serializers.CharField(help_text="After debiasing: A, B or tie.")
    probability = serializers.FloatField(help_text="P(A better) after debiasing.")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.FloatField(allow_null=True, help_text="Null: the endpoint has no prices.")
    seconds = serializers.FloatField()
    votes = serializers.ListField(child=serializers.CharField())
    principles = serializers.ListField(child=serializers.CharField())


@extend_schema(request=PairChoiceSerializer, responses={
    200: JudgeTestSerializer,
    409: OpenApiResponse(description="The judge cannot be tested as it is stored (a step judge, a method its "
                                     "endpoint lacks), or its endpoint failed or did not answer in time: `detail` "
                                     "says why, in one line.")})
@api_view(["POST"])
def judge_test_api(request: Request, project_id: int, judge_id: int) -> Response:
    """Researchers: run a judge on one pair now (both orders, as a run would) and answer what each order said,
    the combined verdict, tokens and cost. Nothing is stored: reports never count a test."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    judge = _judge_in_project(request, project, judge_id)
    serializer = PairChoiceSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    item = _item_pick(project, serializer.validated_data.get("item"))
    try:
        result = judge_test(judge=judge, item=item, user=request.user)
    except DjangoValidationError as exc:  # what the stored judge is (a step judge, a method its endpoint lacks)
        return Response({"detail": " ".join(m for ms in exc.message_dict.values() for m in ms)}, status=409)
    except JudgeTestError as exc:
        # 409: the request was fine, but the judge's endpoint as configured does not answer (a 5xx would say
        # this platform failed; the API's other refusals that depend on stored state are 400 and 409 too).
        return Response({"detail": str(exc)}, status=409)
    return Response(JudgeTestSerializer(result).data)


class RunEstimateSerializer(serializers.Serializer):
    items = serializers.IntegerField(help_text="Pairs (or solutions) the judge's version has not judged yet.")
    orders = serializers.IntegerField()
    principles = serializers.IntegerField()
    votes = serializers.IntegerField()
    prompts = serializers.IntegerField()
    samples = serializers.IntegerField()
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField(help_text="Estimated from the template's and the pairs' lengths.")
    completion_tokens = serializers.IntegerField()
    completion_tokens_upper_bound = serializers.BooleanField(help_text="Generate method: at most max_new_tokens.")
    chars_per_token = serializers.IntegerField()
    cost = serializers.FloatField(allow_null=True, help_text="Null: the endpoint has no prices.")
    cost_note = serializers.CharField()
    seconds_per_request = serializers.FloatField(allow_null=True)
    seconds = serializers.FloatField(allow_null=True, help_text="Null: no run on the endpoint finished yet.")
    time_note = serializers.CharField()
    max_cost_per_run = serializers.FloatField(allow_null=True)


@extend_schema(responses=RunEstimateSerializer)
@api_view(["GET"])
def judge_run_estimate_api(request: Request, project_id: int, judge_id: int) -> Response:
    """Researchers: before a run, its pairs, requests (pairs x orders x principles x votes), tokens, cost (from
    the endpoint's prices) and time (from the endpoint's observed time per request)."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    judge = _judge_in_project(request, project, judge_id)
    return Response(RunEstimateSerializer(judge_run_estimate(judge=judge, project=project)).data)
