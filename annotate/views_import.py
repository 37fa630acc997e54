"""The import page: upload a file, see its first rows at once (format, columns, a column mapping checked
over them), then queue its import; the imports of the project with their progress or place in the queue.

POST ``action``:
- ``preview`` (with the file): the upload is kept and its preview shown (``?preview=<token>``);
- ``check`` (htmx, on every change of the mapping form): the preview again, with the mapping's errors;
- ``import``: the previewed file queued, as its detected format or through the mapping, unless its first
  rows fail (shown, nothing queued);
- ``discard``: the previewed file removed;
- none (a plain upload with a format, as before previews): the file queued at once.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotate.forms import ImportForm
from annotate.imports import (
    ImportRefused,
    import_job_create,
    import_job_from_preview,
    import_job_progress,
    import_kind,
    import_preview_discard,
    import_preview_read,
    import_preview_store,
)
from annotate.job_lifecycle import job_queue_position
from annotate.models import ImportJob, Membership, Project
from annotate.selectors import project_get_for_user
from prefdata.readers import MappingError, Preview, formats_for
from prefdata.readers.mapped import TARGETS, TEXT_SPLIT_RULES
from prefdata.records import VERDICTS

GOLD_ROWS_MAX = 20  # value-map rows a form may post


def _mapping_posted(post, kind: str) -> dict:
    """The column mapping of the preview form (``map_<field>``, ``gold_value_<i>`` / ``gold_verdict_<i>``)."""
    columns = {target: post.get(f"map_{target}", "") for target in TARGETS[kind]}
    gold_values = {}
    for i in range(GOLD_ROWS_MAX):
        value, verdict = post.get(f"gold_value_{i}"), post.get(f"gold_verdict_{i}")
        if value is not None and verdict:
            gold_values[value] = verdict
    mapping: dict = {"columns": {k: v for k, v in columns.items() if v}}
    if gold_values and columns.get("gold"):
        mapping["gold_values"] = gold_values
    if kind == "steps":
        mapping["split"] = post.get("split") or "blank_lines"
    return mapping


def _gold_suggest(values: list[str]) -> dict[str, str]:
    """A first guess of the value map: verdicts as written (any case), 1/2 as A/B, model_a/model_b."""
    guess = {}
    for value in values:
        lower = value.lower()
        verdict = next((v for v in VERDICTS if v.lower() == lower), None) or {
            "1": "A", "2": "B", "model_a": "A", "model_b": "B", "a": "A", "b": "B"}.get(lower)
        if verdict:
            guess[value] = verdict
    return guess


def _preview_context(*, project: Project, token: str, preview: Preview, mode: str, mapping: dict | None,
                     fmt: str = "auto", errors: list[dict] | None = None) -> dict:
    kind = import_kind(project)
    columns = (mapping or {}).get("columns") or preview.suggested
    gold_column = columns.get("gold", "")
    gold_values = preview.values.get(gold_column, []) if gold_column else []
    posted_gold = (mapping or {}).get("gold_values") or _gold_suggest(gold_values)
    targets = [{"name": name, "label": what, "required": required, "selected": columns.get(name, "")}
               for name, (required, what) in TARGETS[kind].items()]
    return {
        "token": token, "preview": preview, "mode": mode, "targets": targets, "format": fmt, "gold_for": gold_column,
        "gold_rows": [{"index": i, "value": v, "selected": posted_gold.get(v, "")}
                      for i, v in enumerate(gold_values[:GOLD_ROWS_MAX])],
        "verdicts": VERDICTS, "split_rules": TEXT_SPLIT_RULES,
        "split": (mapping or {}).get("split", "blank_lines"), "steps": kind == "steps",
        "errors": preview.errors if errors is None else errors,
        "preview_rows": list(zip(preview.lines, preview.rows, strict=False)),
    }


def _jobs(project: Project) -> tuple[list[ImportJob], bool]:
    jobs = list(ImportJob.objects.filter(project=project)[:20])
    for job in jobs:
        job.rows_read = import_job_progress(job=job)
        job.queue = job_queue_position(job, project_id=project.pk)
    return jobs, any(j.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING) for j in jobs)


@login_required
@require_http_methods(["GET", "POST"])
def import_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """Upload a file, preview and map it, queue its import; the project's imports with their progress."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    kind = import_kind(project)
    steps = kind == "steps"
    url = reverse("annotate:import", args=[project.pk])
    action = request.POST.get("action", "")
    uploading = request.method == "POST" and action in ("", "preview")
    form = ImportForm(request.POST, request.FILES, steps=steps) if uploading else ImportForm(steps=steps)
    # The preview's form posts the import's choices beside the mapping (no file: it is kept already); its
    # fields are shown as posted, never validated as an upload.
    options_form = ImportForm(request.POST, steps=steps) if request.method == "POST" and not uploading else form
    preview_context: dict | None = None
    status = 200
    if request.method == "POST" and action == "preview" and form.is_valid():
        token = import_preview_store(project=project, upload=form.cleaned_data["file"])
        # The import's choices made on the upload form go along, so the preview's form shows them as chosen.
        query = {"preview": token, "format": form.cleaned_data["format"], **form.options()}
        return redirect(f"{url}?{urlencode(query)}")
    if request.method == "POST" and action in ("check", "import", "discard"):
        token = request.POST.get("token", "")
        if action == "discard":
            import_preview_discard(project=project, token=token)
            return redirect(url)
        mode = "mapping" if request.POST.get("mode") == "mapping" else "format"
        mapping = _mapping_posted(request.POST, kind) if mode == "mapping" else None
        fmt = request.POST.get("format") if request.POST.get("format") in formats_for(kind) else "auto"
        gold_column = (mapping or {}).get("columns", {}).get("gold", "")
        if gold_column and gold_column != request.POST.get("gold_for", ""):
            # The gold column was just chosen: its value map starts from the guess, not from the rows the
            # form showed for another column.
            first = import_preview_read(project=project, token=token)
            guess = _gold_suggest(first.values.get(gold_column, [])) if first else {}
            mapping.pop("gold_values", None)  # type: ignore[union-attr]
            if guess:
                mapping["gold_values"] = guess  # type: ignore[index]
        try:
            preview = import_preview_read(project=project, token=token, mapping=mapping, fmt=fmt)
        except MappingError as exc:  # pragma: no cover - the preview reports mapping errors itself
            preview = Preview(errors=[{"file": "", "line": 0, "field": exc.field, "message": str(exc)}])
        if preview is None:
            messages.error(request, "The uploaded file is no longer kept: upload it again.")
            return redirect(url)
        if action == "import" and not preview.errors:
            try:
                options = {name: request.POST[name] for name in form.option_names if request.POST.get(name)}
                job = import_job_from_preview(project=project, token=token, fmt=fmt, user=request.user,
                                              options=options, mapping=mapping)
            except ImportRefused as exc:
                preview.errors = exc.errors
            except (MappingError, ValueError) as exc:  # a mapping, or an import option, that cannot be used
                preview.errors = [{"file": "", "line": 0, "field": getattr(exc, "field", "(options)"),
                                   "message": str(exc)}]
            else:
                messages.success(request, f"Queued the import of {job.file_name}.")
                return redirect(url)
        preview_context = _preview_context(project=project, token=token, preview=preview, mode=mode,
                                           mapping=mapping, fmt=fmt)
        status = 422 if preview.errors and action == "import" else 200
        if request.htmx:
            return render(request, "annotate/import.html#preview",
                          {"project": project, "url": url, "options_form": options_form, **preview_context},
                          status=status)
    elif request.method == "POST" and action == "" and form.is_valid():
        job = import_job_create(project=project, upload=form.cleaned_data["file"], fmt=form.cleaned_data["format"],
                                user=request.user, options=form.options())
        messages.success(request, f"Queued the import of {job.file_name}.")
        return redirect(url)
    elif request.method == "GET" and request.GET.get("preview"):
        token = request.GET["preview"]
        fmt = request.GET.get("format") if request.GET.get("format") in formats_for(kind) else "auto"
        preview = import_preview_read(project=project, token=token, fmt=fmt)
        if preview is None:
            messages.error(request, "The uploaded file is no longer kept: upload it again.")
            return redirect(url)
        options_form = ImportForm(steps=steps, initial={name: request.GET[name] for name in form.option_names
                                                        if request.GET.get(name)})
        mode = "format" if preview.detected_format else "mapping"
        preview = import_preview_read(project=project, token=token, fmt=fmt, mapping=None if mode == "format" else {
            "columns": preview.suggested, **({"gold_values": g} if (g := _gold_suggest(
                preview.values.get(preview.suggested.get("gold", ""), []))) else {})}) or preview
        preview_context = _preview_context(project=project, token=token, preview=preview, mode=mode, mapping=None,
                                           fmt=fmt)
    jobs, active = _jobs(project)
    context = {"project": project, "form": form, "jobs": jobs, "active": active, "url": url, "steps": steps,
               "formats": {k: v for k, v in formats_for(kind).items() if k != "auto"}, **(preview_context or {})}
    if request.htmx and request.method == "GET":
        return render(request, "annotate/import.html#jobs", context)
    context["options_form"] = options_form
    return render(request, "annotate/import.html", context, status=422 if uploading and form.errors else status)
