"""Pages that set a project up: a new project (with a live preview of its guidelines) and its members."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from annotate.forms import AccountCreateForm, MemberInviteForm, MemberRoleForm, ProjectForm
from annotate.models import Membership, Project
from annotate.roles import CREATE_PROJECT, permission_require
from annotate.selectors import (
    membership_get_in_project,
    project_create_allowed,
    project_get_for_user,
    project_list_with_progress,
    project_memberships,
    project_role_for_user,
)
from annotate.services import (
    annotator_account_create,
    membership_invite,
    membership_remove,
    membership_role_change,
    project_create,
)


def _errors_to_form(form: forms.Form, exc: ValidationError) -> None:
    """A service's ValidationError shown next to the form's fields (or above the form for the others)."""
    for field, field_messages in exc.message_dict.items():
        for message in field_messages:
            form.add_error(field if field in form.fields else None, message)


@login_required
def project_list(request: HttpRequest) -> HttpResponse:
    """The user's projects with their progress: labels done of those needed for researchers, what is left
    to them for annotators."""
    return render(request, "annotate/project_list.html",
                  {"rows": project_list_with_progress(user=request.user),
                   "can_create": project_create_allowed(user=request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    """Researchers: create a project; its creator becomes its researcher and goes on to its members."""
    permission_require(user=request.user, permission=CREATE_PROJECT, doing="create projects")
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = project_create(created_by=request.user, **form.project_fields())
        except ValidationError as exc:
            _errors_to_form(form, exc)
        else:
            messages.success(request, f"Created {project.name}. Add the people who will label it.")
            return redirect("annotate:project_members", project_id=project.pk)
    return render(request, "annotate/project_new.html", {"form": form}, status=422 if form.errors else 200)


@login_required
@require_POST
def guidelines_preview(request: HttpRequest) -> HttpResponse:
    """The guidelines as annotators will see them: markdown through the sanitizing ``markdown`` filter."""
    permission_require(user=request.user, permission=CREATE_PROJECT, doing="create projects")
    return render(request, "annotate/project_new.html#preview", {"guidelines": request.POST.get("guidelines", "")})


def _members_page(request: HttpRequest, project: Project, *, invite_form: MemberInviteForm | None = None,
                  account_form: AccountCreateForm | None = None, created: dict | None = None,
                  status: int = 200) -> HttpResponse:
    memberships = list(project_memberships(project=project))
    researchers = sum(m.role == Membership.Role.RESEARCHER for m in memberships)
    rows = [(m, MemberRoleForm(initial={"role": m.role}, prefix=f"m{m.user_id}"),
             m.role == Membership.Role.RESEARCHER and researchers == 1) for m in memberships]
    context = {"project": project, "rows": rows, "created": created,
               "invite_form": invite_form or MemberInviteForm(),
               "account_form": account_form or AccountCreateForm()}
    template = "annotate/project_members.html#members" if request.htmx else "annotate/project_members.html"
    response = render(request, template, context, status=status)
    if created:
        add_never_cache_headers(response)  # the password on this page is shown once: never kept by a cache
    return response


@login_required
@require_http_methods(["GET", "POST"])
def project_members(request: HttpRequest, project_id: int) -> HttpResponse:
    """Researchers of the project: its members; invite an existing account or create an annotator's."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    if request.method != "POST":
        return _members_page(request, project)
    if request.POST.get("action") == "create":
        account_form = AccountCreateForm(request.POST)
        if account_form.is_valid():
            try:
                membership, password = annotator_account_create(project=project, **account_form.cleaned_data)
            except ValidationError as exc:
                _errors_to_form(account_form, exc)
            else:
                # Rendered, not redirected: the password must not travel in a message stored in a cookie.
                return _members_page(request, project, status=201, created={
                    "username": membership.user.get_username(), "password": password, "role": membership.role})
        return _members_page(request, project, account_form=account_form, status=422)
    invite_form = MemberInviteForm(request.POST)
    if invite_form.is_valid():
        try:
            membership = membership_invite(project=project, identifier=invite_form.cleaned_data["user"],
                                           role=invite_form.cleaned_data["role"])
        except ValidationError as exc:
            _errors_to_form(invite_form, exc)
        else:
            messages.success(request, f"Added {membership.user.get_username()} as {membership.get_role_display()}.")
            return redirect("annotate:project_members", project_id=project.pk)
    return _members_page(request, project, invite_form=invite_form, status=422)


@login_required
@require_POST
def member_role(request: HttpRequest, project_id: int, user_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    membership = membership_get_in_project(project=project, user_id=user_id)
    form = MemberRoleForm(request.POST, prefix=f"m{user_id}")
    try:
        if not form.is_valid():
            raise ValidationError({"role": "choose annotator or researcher"})
        membership_role_change(membership=membership, role=form.cleaned_data["role"])
    except ValidationError as exc:
        messages.error(request, f"{membership.user.get_username()}: {exc.messages[0]}")
    else:
        messages.success(request, f"{membership.user.get_username()} is now {membership.get_role_display().lower()}.")
    return _after_member_change(request, project)


@login_required
@require_POST
def member_remove(request: HttpRequest, project_id: int, user_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    membership = membership_get_in_project(project=project, user_id=user_id)
    name = membership.user.get_username()
    try:
        membership_remove(membership=membership)
    except ValidationError as exc:
        messages.error(request, f"{name}: {exc.messages[0]}")
    else:
        messages.success(request, f"Removed {name} from the project (their labels stay).")
    return _after_member_change(request, project)


def _after_member_change(request: HttpRequest, project: Project) -> HttpResponse:
    """Back to the members, or, for a researcher who just stepped down or left, where they still may go."""
    role = project_role_for_user(project=project, user=request.user)
    if role != Membership.Role.RESEARCHER:
        url = (reverse("annotate:project_detail", args=[project.pk]) if role
               else reverse("annotate:project_list"))
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    if request.htmx:
        return _members_page(request, project)
    return redirect("annotate:project_members", project_id=project.pk)
