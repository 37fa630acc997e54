from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotate.models import Membership, Project
from annotate.roles import job_start_permission, permission_require
from annotate.selectors import project_get_for_user
from annotate.views import page_links
from prefdata.verifiers.sandbox import sandbox_status
from synth.models import Constitution, ModelEndpoint, Problem, SynthesisJob, SyntheticRow
from synth.selectors import (
    endpoint_get_for_user,
    endpoints_for_user,
    endpoints_usable,
    synthesis_jobs_for_project,
    synthetic_share,
)
from synth.services import endpoint_check, endpoint_supports_text, synthesis_job_create
from synth.synthesis_params import PARAMS, Param

GENERATORS = (ModelEndpoint.Kind.TRANSFORMERS, ModelEndpoint.Kind.GGUF, ModelEndpoint.Kind.OPENAI)


class SynthesisForm(forms.Form):
    """A job of one kind: the endpoint, the kind's reward model or constitution where it takes one, and the
    kind's params (``synth.synthesis_params``), each with its help text. Field names are the params' own
    (the service names them in its errors); ids carry the kind, since the page shows a form per kind."""

    kind = forms.CharField(widget=forms.HiddenInput, required=False)
    endpoint = forms.ModelChoiceField(queryset=ModelEndpoint.objects.none(), help_text="The model that generates.")

    def __init__(self, *args, kind: str, project: Project, user, **kwargs):
        super().__init__(*args, auto_id=f"id_{kind}_%s", initial={"kind": kind}, **kwargs)
        self.kind = kind
        usable = endpoints_usable(project=project, user=user)
        self.fields["endpoint"].queryset = usable.filter(kind__in=GENERATORS)
        if kind in ("sampling", "best_of_n"):
            self.fields["scorer"] = forms.ModelChoiceField(
                queryset=usable.filter(kind=ModelEndpoint.Kind.SCORER), required=kind == "best_of_n",
                help_text="A reward model that scores each sample" + (" (needed by the scored strategies)."
                                                                       if kind == "sampling" else "."))
        if kind == "constitutional":
            self.fields["constitution"] = forms.ModelChoiceField(
                queryset=Constitution.objects.all(), help_text="Its principles drive the critiques and revisions.")
        for param in PARAMS[kind]:
            if param.name in ("max_new_tokens", "temperature") or kind != "pairs":
                self.fields[param.name] = _param_field(param, usable)
        self.fields["confirm_cost"] = forms.BooleanField(
            required=False, label="Confirm the cost",
            help_text="On a paid endpoint the run's cost is estimated first: tick to start it at that cost.")

    def service_kwargs(self) -> dict:
        data = dict(self.cleaned_data)
        params = {}
        for param in PARAMS[self.kind]:
            if param.name in data:
                value = data.pop(param.name)
                if param.type == "ids":
                    value = [e.pk for e in value]
                if value is not None or param.nullable:
                    params[param.name] = value
        return {"kind": self.kind, "endpoint": data["endpoint"], "scorer": data.get("scorer"),
                "constitution": data.get("constitution"), "confirm_cost": data.get("confirm_cost", False),
                "params": params}


def _param_field(param: Param, endpoints) -> forms.Field:
    common = {"help_text": param.help, "label": param.name.replace("_", " ").capitalize()}
    if param.type == "int":
        return forms.IntegerField(min_value=param.min, max_value=param.max, initial=param.default,
                                  required=not param.nullable, **common)
    if param.type == "float":
        return forms.FloatField(min_value=param.min, max_value=param.max, initial=param.default,
                                required=not param.nullable, **common)
    if param.type == "bool":
        return forms.BooleanField(initial=param.default, required=False, **common)
    if param.type == "choice":
        return forms.ChoiceField(choices=[(c, c.replace("_", " ") or "any") for c in param.choices],
                                 initial=param.default, required="" not in param.choices,
                                 **common)
    if param.type == "choices":
        return forms.MultipleChoiceField(choices=[(c, c.replace("_", " ")) for c in param.choices],
                                         initial=param.default, widget=forms.CheckboxSelectMultiple, **common)
    if param.type == "ids":
        return forms.ModelMultipleChoiceField(queryset=endpoints.filter(kind__in=GENERATORS), required=False,
                                              **common)
    if param.type == "texts":
        return forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, **common)
    return forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, **common)


@login_required
def jobs(request: HttpRequest, project_id: int) -> HttpResponse:
    """Researchers: a form per kind of synthesis job, and the project's jobs with their progress, tokens,
    cost, what was filtered or removed as a duplicate, and the diversity of what they made."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    posted = request.POST.get("kind", SynthesisJob.Kind.PAIRS) if request.method == "POST" else None
    if posted is not None and posted not in PARAMS:
        raise Http404("No such kind of job.")
    forms_by_kind = {kind: SynthesisForm(request.POST if kind == posted else None, kind=kind, project=project,
                                         user=request.user) for kind in PARAMS}
    if posted is not None:
        form = forms_by_kind[posted]
        if form.is_valid():
            try:
                job = synthesis_job_create(project=project, user=request.user, **form.service_kwargs())
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, f"Queued job #{job.pk}: {job.get_kind_display().lower()} "
                                          f"({job.total} to do).")
                return redirect("synth:jobs", project_id=project.pk)
    job_list = list(synthesis_jobs_for_project(project=project)[:50])
    active = any(j.status in (SynthesisJob.Status.QUEUED, SynthesisJob.Status.RUNNING) for j in job_list)
    kinds = [(kind, SynthesisJob.Kind(kind).label, forms_by_kind[kind]) for kind in PARAMS]
    context = {"project": project, "kinds": kinds, "posted": posted or "", "jobs": job_list, "active": active,
               "can_start": request.user.has_perm(job_start_permission(SynthesisJob)),
               "share": synthetic_share(project=project)}
    return render(request, "synth/jobs.html#jobs" if request.htmx else "synth/jobs.html", context)


@login_required
def job_detail(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """Researchers: one synthesis job: its params, counts, diversity, the best-of-N curve with the KL bound
    (inline SVG), and a sample of the rows it made (model text, escaped)."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    job = synthesis_jobs_for_project(project=project).filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    rows = SyntheticRow.objects.filter(job=job).select_related("prompt").order_by("id")[:20]
    context = {"project": project, "job": job, "rows": rows, "counts": sorted((job.stats.get("counts") or {}).items()),
               "curve": curve_svg(job.stats.get("best_of_n") or []),
               "pass_at_k": [(k, v) for k, v in (job.stats.get("pass_at_k") or {}).items() if k.startswith("pass@")],
               "pass_by_problem": list((job.stats.get("pass_at_k_by_problem") or {}).items())[:100],
               "params": sorted((k, v) for k, v in job.params.items() if not k.startswith("_"))}
    return render(request, "synth/job_detail.html", context)


def curve_svg(curve: list[dict], *, width: int = 420, height: int = 220, pad: int = 36) -> dict | None:
    """The best-of-N curve and its KL bound as SVG polylines on two y scales (score left, nats right):
    {"score", "kl", "ticks", ...} of numbers only, for the template to draw. None without a curve."""
    if not curve:
        return None
    ns = [p["n"] for p in curve]
    scores = [p["mean_best"] for p in curve]
    kls = [p["kl_bound"] for p in curve]
    low, high = min(scores), max(scores)
    span = (high - low) or 1.0
    kl_high = max(kls) or 1.0
    n_span = (max(ns) - 1) or 1

    def x(n: int) -> float:
        return round(pad + (n - 1) / n_span * (width - 2 * pad), 1)

    def y(value: float, lo: float, hi: float) -> float:
        return round(height - pad - (value - lo) / (hi - lo) * (height - 2 * pad), 1)

    return {"width": width, "height": height, "pad": pad, "bottom": height - pad, "right": width - pad,
            "score": " ".join(f"{x(n)},{y(s, low, low + span)}" for n, s in zip(ns, scores, strict=True)),
            "kl": " ".join(f"{x(n)},{y(k, 0.0, kl_high)}" for n, k in zip(ns, kls, strict=True)),
            "points": [{"x": x(n), "y": y(s, low, low + span), "n": n, "score": round(s, 4), "kl": round(k, 4)}
                       for n, s, k in zip(ns, scores, kls, strict=True)],
            "low": round(low, 3), "high": round(high, 3), "kl_high": round(kl_high, 3), "n_max": max(ns)}


@login_required
@require_http_methods(["GET", "POST"])
def endpoints(request: HttpRequest) -> HttpResponse:
    """Researchers: the model endpoints, what each server supports, and a check of a connection."""
    endpoint_list = list(endpoints_for_user(user=request.user))
    if request.method == "POST":
        chosen = request.POST.get("endpoint", "")
        if not chosen.isdigit():
            raise Http404("No such endpoint.")
        endpoint = endpoint_get_for_user(user=request.user, endpoint_id=int(chosen))
        permission_require(user=request.user, permission="synth.change_modelendpoint", doing="check endpoints")
        try:
            endpoint_check(endpoint=endpoint)
        except ValidationError as exc:
            messages.error(request, f"{endpoint.name}: {' '.join(exc.messages)}")
        else:
            messages.success(request, f"{endpoint.name}: {endpoint_supports_text(endpoint=endpoint)}.")
        return redirect("synth:endpoints")
    rows = [(endpoint, endpoint_supports_text(endpoint=endpoint)) for endpoint in endpoint_list]
    return render(request, "synth/endpoints.html", {
        "rows": rows, "can_check": request.user.has_perm("synth.change_modelendpoint")})


PROBLEMS_PER_PAGE = 50


class ProblemUploadForm(forms.Form):
    file = forms.FileField(help_text="JSON Lines, a JSON array or Parquet: question/answer (GSM8K, MATH) or "
                                     "prompt with tests, test_list or test and entry_point (MBPP, HumanEval).")
    tags = forms.CharField(required=False, help_text="Tags added to every problem, comma-separated.")
    split = forms.ChoiceField(choices=[("", "each record's own (else train)"), *Problem.Split.choices],
                              required=False)


@login_required
@require_http_methods(["GET", "POST"])
def problems(request: HttpRequest, project_id: int) -> HttpResponse:
    """Researchers: the project's problem bank, filtered by tag, split, kind and text, paged; an upload form
    that imports a file all or nothing (its first bad record named by line and field)."""
    from django.core.paginator import Paginator

    from synth.problems import problems_filter, problems_tags, problems_upload, tags_parse

    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    form = ProblemUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            tags = tags_parse(form.cleaned_data["tags"] or None)
            summary = problems_upload(project=project, upload=form.cleaned_data["file"], tags=tags,
                                      split=form.cleaned_data["split"] or None)
        except ValueError as exc:
            form.add_error("tags", str(exc))
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else "file", errors)
        else:
            messages.success(request, f"Imported {summary.count} problems ({summary.math} math, {summary.code} code).")
            return redirect("synth:problems", project_id=project.pk)
    filters = {name: request.GET.get(name, "").strip()[:200] for name in ("tag", "split", "kind", "q")}
    if filters["split"] not in ("", *Problem.Split.values):
        filters["split"] = ""
    if filters["kind"] not in ("", "math", "code"):
        filters["kind"] = ""
    page = Paginator(problems_filter(project=project, **filters), PROBLEMS_PER_PAGE).get_page(request.GET.get("page"))
    query = urlencode({k: v for k, v in filters.items() if v})
    context = {"project": project, "page": page, "pages": page_links(page), "filters": filters, "form": form,
               "query": query + "&" if query else "", "filtered": bool(query),
               "tags": problems_tags(project=project), "splits": Problem.Split.choices,
               "sandbox": None if request.htmx else sandbox_status()}
    return render(request, "synth/problems.html#list" if request.htmx else "synth/problems.html", context)
