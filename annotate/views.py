"""Pages of the annotate app: projects, the pairwise labeling page, import."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from annotate.forms import AdjudicationForm, PairLabelForm
from annotate.job_lifecycle import job_cancel, job_retry
from annotate.labels import presentation_order
from annotate.models import (
    Membership,
    PairItem,
    PairLabel,
    Project,
    StepItem,
    StepLabel,
)
from annotate.quality import disputed_page, project_quality
from annotate.selectors import (
    annotator_progress,
    items_waiting_for,
    job_get_for_user,
    pair_item_get_in_project,
    pair_label_last_for_annotator,
    project_get_for_user,
    project_role_for_user,
    project_stats,
    step_item_get_in_project,
    step_label_last_for_annotator,
)
from annotate.services import (
    item_lease_next,
    item_skip,
    pair_item_adjudicate,
    pair_label_submit,
    step_item_adjudicate,
    step_item_resplit,
    step_label_submit,
)
from annotate.step_quality import step_disputes_page, step_project_quality
from prefdata.steps import first_error, steps_split

SOLUTIONS_PER_PAGE = 50


def page_links(page) -> list:
    """The page numbers a pager shows (the first, the last, two each side of this one, … between), or none
    when there is one page."""
    if page.paginator.num_pages <= 1:
        return []
    return list(page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1))


@login_required
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id)
    role = project_role_for_user(project=project, user=request.user)
    stats = project_stats(project=project, user=request.user)
    is_researcher = role == Membership.Role.RESEARCHER
    solutions = None
    if is_researcher and project.task_kind == Project.TaskKind.STEPS:
        # Every solution, SOLUTIONS_PER_PAGE a page (a page past the last shows the last).
        paginator = Paginator(StepItem.objects.filter(project=project).select_related("prompt").order_by("id"),
                              SOLUTIONS_PER_PAGE)
        solutions = paginator.get_page(request.GET.get("page"))
    pages = page_links(solutions) if solutions is not None else []
    return render(request, "annotate/project_detail.html",
                  {"project": project, "role": role, "stats": stats, "is_researcher": is_researcher,
                   "steps": project.task_kind == Project.TaskKind.STEPS, "solutions": solutions, "pages": pages})


def _page_context(request: HttpRequest, project: Project, item, *, saved: bool) -> dict:
    """What both labeling pages show around the item: progress, a saved confirmation, the empty state."""
    progress = annotator_progress(project=project, user=request.user)
    context = {"project": project, "item": item, "progress": progress, "saved": saved}
    if item is None:
        context["waiting"] = items_waiting_for(project=project)
    return context


def _truncated(completion) -> bool:
    """Whether the model stopped at its length limit (a finish reason "length", as OpenAI-compatible
    servers report it), when the completion's lineage records one."""
    reason = getattr(completion, "finish_reason", "") or (completion.sampling or {}).get("finish_reason", "")
    return reason == "length"


def _item_context(request: HttpRequest, project, item: PairItem | None, *, form: PairLabelForm | None = None,
                  editing: PairLabel | None = None, saved: bool = False) -> dict:
    context = {**_page_context(request, project, item, saved=saved), "editing": editing,
               "form": form or PairLabelForm(criteria=project.criteria)}
    if item is not None:
        order = presentation_order(user_id=request.user.pk, item_id=item.pk)
        left, right = item.completion_a, item.completion_b
        if order == PairLabel.Order.BA:
            left, right = right, left
        context.update(order=order, left=left, right=right, left_truncated=_truncated(left),
                       right_truncated=_truncated(right))
        initial_criteria = {}
        if editing is not None:
            # Show the stored verdict in the sides this annotator saw.
            side = {order[0]: "left", order[1]: "right"}
            context["initial"] = {"choice": side.get(editing.verdict, editing.verdict),
                                  "strength": editing.strength, "rationale": editing.rationale}
            initial_criteria = {k: side.get(v, v) for k, v in editing.criteria.items()}
        context["criteria_rows"] = [(name, f"criterion_{name}", initial_criteria.get(name, ""))
                                    for name in project.criteria]
    return context


def _render_item(request: HttpRequest, context: dict, status: int = 200) -> HttpResponse:
    template = "annotate/annotate.html#item" if request.htmx else "annotate/annotate.html"
    return render(request, template, context, status=status)


@login_required
def annotate_next(request: HttpRequest, project_id: int, *, saved: bool = False) -> HttpResponse:
    """The next item to label (``saved``: after a submit, which the page confirms)."""
    project = project_get_for_user(user=request.user, project_id=project_id)
    item = item_lease_next(project=project, user=request.user)
    if project.task_kind == Project.TaskKind.STEPS:
        return _render_steps(request, project, item, saved=saved)
    return _render_item(request, _item_context(request, project, item, saved=saved))


@login_required
def annotate_last(request: HttpRequest, project_id: int) -> HttpResponse:
    """Undo / edit: the annotator's last label, shown again with their answer selected."""
    project = project_get_for_user(user=request.user, project_id=project_id)
    if project.task_kind == Project.TaskKind.STEPS:
        step_label = step_label_last_for_annotator(project=project, user=request.user)
        if step_label is None:
            return annotate_next(request, project_id)
        return _render_steps(request, project, step_label.item, editing=step_label)
    label = pair_label_last_for_annotator(project=project, user=request.user)
    if label is None:
        return annotate_next(request, project_id)
    return _render_item(request, _item_context(request, project, label.item, editing=label))


def _render_steps(request: HttpRequest, project: Project, item: StepItem | None, *, editing: StepLabel | None = None,
                  entered: dict | None = None, errors: list[str] | None = None, status: int = 200,
                  saved: bool = False) -> HttpResponse:
    """The steps page. ``entered`` is what a refused submit carried: shown again as it was, with the steps
    still to rate marked, so nothing the annotator did is lost."""
    rows = []
    answer: dict = {}
    if editing is not None:
        answer = {"ratings": editing.ratings, "flags": editing.flags, "finish_reason": editing.finish_reason,
                  "outcome": editing.outcome, "corrected_step_index": editing.corrected_step_index,
                  "corrected_step": editing.corrected_step}
    if entered is not None:
        answer = entered
    if item is not None:
        ratings = answer.get("ratings") or [None] * len(item.steps)
        flags = set(answer.get("flags") or ())
        missing = set(answer.get("missing") or ())
        rows = [{"index": i, "text": text, "rating": ratings[i], "flagged": i in flags, "missing": i in missing}
                for i, text in enumerate(item.steps)]
    context = {**_page_context(request, project, item, saved=saved), "rows": rows, "editing": editing,
               "answer": answer, "errors": errors or [], "finish_reasons": StepLabel.FinishReason.choices,
               "outcomes": StepLabel.Outcome.choices}
    template = "annotate/annotate_steps.html#item" if request.htmx else "annotate/annotate_steps.html"
    return render(request, template, context, status=status)


def _steps_entered(post, n_steps: int) -> dict:
    """What the steps form carried, read leniently (for showing it again, not for storing it)."""
    def as_int(value: str) -> int | None:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    time_spent = post.get("time_spent_ms", "")
    return {"ratings": [as_int(post.get(f"rating_{i}")) for i in range(n_steps)],
            "flags": [i for i in range(n_steps) if post.get(f"flag_{i}")],
            "finish_reason": post.get("finish_reason", ""), "outcome": post.get("outcome", ""),
            "corrected_step_index": as_int(post.get("corrected_step_index")),
            "corrected_step": post.get("corrected_step", ""),
            "time_spent_ms": int(time_spent) if time_spent.isdigit() else None}


def _steps_unrated(ratings: list[int | None], mode: str) -> list[int]:
    """The steps a submit still has to rate: every step, or in first-error mode those up to the first -1."""
    error = first_error(ratings)
    last = error if mode == Project.StepMode.FIRST_ERROR and error is not None else len(ratings) - 1
    return [i for i, r in enumerate(ratings[: last + 1]) if r is None]


@login_required
@require_POST
def steps_submit(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    """Step ratings from the page: rating_<i> in 1 / 0 / -1, flag_<i>, finish reason, outcome."""
    item = step_item_get_in_project(user=request.user, project_id=project_id, item_id=item_id)
    post = request.POST
    entered = _steps_entered(post, len(item.steps))
    try:
        ratings = [int(post[f"rating_{i}"]) if post.get(f"rating_{i}", "") != "" else None
                   for i in range(len(item.steps))]
        index = post.get("corrected_step_index", "")
        label = step_label_submit(
            item=item, annotator=request.user, ratings=ratings, finish_reason=post.get("finish_reason", "solution"),
            outcome=post.get("outcome", ""), flags=[i for i in range(len(item.steps)) if post.get(f"flag_{i}")],
            corrected_step_index=int(index) if index != "" else None,
            corrected_step=post.get("corrected_step", ""),
            time_spent_ms=int(post["time_spent_ms"]) if post.get("time_spent_ms", "").isdigit() else None)
    except ValueError:
        return _render_steps(request, item.project, item, entered=entered, status=422,
                             errors=["Ratings must be 1, 0 or -1."])
    except ValidationError as exc:
        errors = [f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()]
        if "ratings" in exc.message_dict:
            entered["missing"] = _steps_unrated(entered["ratings"], item.project.step_mode)
            if entered["missing"]:  # said in the steps' own numbers, in place of the service's wording
                names = ", ".join(str(i + 1) for i in entered["missing"])
                errors = [f"Not rated yet: step{'s' if len(entered['missing']) > 1 else ''} {names}. Rate "
                          f"{'them' if len(entered['missing']) > 1 else 'it'}, or finish with 'bad problem' or "
                          "'gave up'.", *(e for e in errors if not e.startswith("ratings:"))]
        return _render_steps(request, item.project, item, entered=entered, errors=errors, status=422)
    if request.htmx:
        return annotate_next(request, project_id, saved=True)
    messages.success(request, f"Saved your ratings of solution {label.item_id}.")
    return redirect("annotate:annotate", project_id=project_id)


@login_required
@require_POST
def annotate_submit(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    item = pair_item_get_in_project(user=request.user, project_id=project_id, item_id=item_id)
    project = item.project
    form = PairLabelForm(request.POST, criteria=project.criteria)
    if not form.is_valid():
        return _render_item(request, _item_context(request, project, item, form=form), status=422)
    order = presentation_order(user_id=request.user.pk, item_id=item.pk)
    sides = {"left": order[0], "right": order[1]}
    try:
        pair_label_submit(item=item, annotator=request.user, verdict=sides.get(form.cleaned_data["choice"],
                                                                               form.cleaned_data["choice"]),
                          strength=form.cleaned_data["strength"], rationale=form.cleaned_data["rationale"],
                          shown_order=order, time_spent_ms=form.cleaned_data["time_spent_ms"],
                          criteria={k: sides.get(v, v) for k, v in form.criteria_values().items()})
    except ValidationError as exc:
        form.add_error(None, exc)
        return _render_item(request, _item_context(request, project, item, form=form), status=422)
    if request.htmx:
        return annotate_next(request, project_id, saved=True)
    return redirect("annotate:annotate", project_id=project_id)


@login_required
@require_POST
def annotate_skip(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    """Skip a pair or a solution: it is not served to this annotator again."""
    project = project_get_for_user(user=request.user, project_id=project_id)
    fetch = step_item_get_in_project if project.task_kind == Project.TaskKind.STEPS else pair_item_get_in_project
    item_skip(item=fetch(user=request.user, project_id=project_id, item_id=item_id), user=request.user)
    if request.htmx:
        return annotate_next(request, project_id)
    return redirect("annotate:annotate", project_id=project_id)


@login_required
def quality(request: HttpRequest, project_id: int) -> HttpResponse:
    """The researcher's dashboard: agreement, and for each annotator speed, gold accuracy,
    agreement with the majority and position bias."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    if project.task_kind == Project.TaskKind.STEPS:
        return render(request, "annotate/step_quality.html",
                      {"project": project, "quality": step_project_quality(project=project)})
    return render(request, "annotate/quality.html", {"project": project, "quality": project_quality(project=project)})


@login_required
@require_http_methods(["GET", "POST"])
def review(request: HttpRequest, project_id: int, item_id: int | None = None) -> HttpResponse:
    """Disagreements to adjudicate; the reviewer's verdict becomes the item's final verdict."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    if project.task_kind == Project.TaskKind.STEPS:
        return _review_steps(request, project, item_id)
    if request.method == "POST":
        item = pair_item_get_in_project(user=request.user, project_id=project.pk, item_id=item_id)
        form = AdjudicationForm(request.POST)
        # The page's mode travels with the form, so the answer to htmx is the page's own fragment.
        show_all = request.POST.get("all") == "1"
        if form.is_valid():
            try:
                pair_item_adjudicate(item=item, reviewer=request.user, verdict=form.cleaned_data["verdict"],
                                     strength=form.cleaned_data["strength"])
            except ValidationError as exc:
                form.add_error(None, exc)
        if request.htmx:
            # The decision (or what is missing) replaces the form: the reviewer sees it was taken.
            return render(request, "annotate/review.html#decided",
                          {"project": project, "item": item, "form": form, "show_all": show_all},
                          status=422 if form.errors else 200)
        if form.errors:
            messages.error(request, f"Pair {item.pk}: {' '.join(e for es in form.errors.values() for e in es)}")
        else:
            messages.success(request, f"Pair {item.pk}: final verdict {item.final_verdict}.")
        return redirect(f"{reverse('annotate:review', args=[project.pk])}{'?all=1' if show_all else ''}")
    show_all = request.GET.get("all") == "1"
    page = disputed_page(project=project, include_adjudicated=show_all, number=request.GET.get("page"))
    return render(request, "annotate/review.html", {"project": project, "disputes": page.object_list, "page": page,
                                                    "pages": page_links(page), "show_all": show_all,
                                                    "form": AdjudicationForm()})


def _review_steps(request: HttpRequest, project: Project, item_id: int | None) -> HttpResponse:
    """Solutions people disagree on, every source side by side; the reviewer rates step by step."""
    if request.method == "POST":
        item = step_item_get_in_project(user=request.user, project_id=project.pk, item_id=item_id)
        try:
            ratings = [int(v) if (v := request.POST.get(f"final_{i}", "")) != "" else None
                       for i in range(len(item.steps))]
            step_item_adjudicate(item=item, reviewer=request.user, ratings=ratings,
                                 outcome=request.POST.get("outcome", ""))
        except (ValueError, ValidationError) as exc:
            messages.error(request, f"Solution {item.pk}: {exc}")
        else:
            messages.success(request, f"Solution {item.pk}: final ratings saved.")
        return redirect("annotate:review", project_id=project.pk)
    show_all = request.GET.get("all") == "1"
    page = step_disputes_page(project=project, include_adjudicated=show_all, number=request.GET.get("page"))
    return render(request, "annotate/step_review.html", {
        "project": project, "show_all": show_all, "disputes": page.object_list, "page": page,
        "pages": page_links(page)})


@login_required
@require_http_methods(["GET", "POST"])
def solution_split(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    """Researchers: see how a solution was split into steps and correct it before anyone labels it,
    by re-splitting the original text with a rule or by editing the steps (one per block)."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    item = step_item_get_in_project(user=request.user, project_id=project.pk, item_id=item_id)
    error = ""
    if request.method == "POST":
        rule = request.POST.get("rule", StepItem.SplitRule.GIVEN)
        try:
            if rule == StepItem.SplitRule.GIVEN:
                steps = [s.strip() for s in request.POST.get("steps", "").split("\n---\n")]
            else:
                steps = steps_split(item.solution_text or "\n\n".join(item.steps), rule)
            step_item_resplit(item=item, steps=steps, split_rule=rule)
        except (ValueError, ValidationError) as exc:
            error = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        else:
            messages.success(request, f"Solution {item.pk} now has {len(item.steps)} steps.")
            return redirect("annotate:solution_split", project_id=project.pk, item_id=item.pk)
    return render(request, "annotate/solution_split.html", {
        "project": project, "item": item, "error": error, "rules": StepItem.SplitRule.choices,
        "labeled": StepLabel.objects.filter(item=item).exists(), "steps_text": "\n---\n".join(item.steps)},
        status=422 if error else 200)


@login_required
@require_POST
def job_action(request: HttpRequest, project_id: int, slug: str, job_id: int, action: str) -> HttpResponse:
    """Cancel or retry a job of any kind from its page; back to that page."""
    job = job_get_for_user(user=request.user, project_id=project_id, slug=slug, job_id=job_id)
    if action == "cancel":
        if job.can_cancel:
            job = job_cancel(job=job)
            messages.info(request, f"Cancelled {job}; what it finished is kept.")
        else:
            messages.error(request, f"{job} is {job.get_status_display().lower()}: there is nothing to cancel.")
    else:
        if job.can_retry:
            job = job_retry(job=job, user=request.user)
            messages.success(request, f"Queued {job} again: it resumes where it can.")
        else:
            messages.error(request, f"{job} is {job.get_status_display().lower()}: only a failed or cancelled job "
                                    f"can be retried.")
    return redirect(job.page_url_name, project_id=project_id)
