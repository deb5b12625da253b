"""Team pages: admins create teams, rename them, set who is in them and delete them."""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from aspweb.roles import ADMIN, role_required

from .models import Team, User
from .teams import NAME_MAX, team_create, team_delete, team_log_bodies_set, team_members_set, team_rename


class TeamForm(forms.Form):
    name = forms.CharField(max_length=NAME_MAX, help_text="Unique, whatever its case.")
    members = forms.ModelMultipleChoiceField(
        User.objects.filter(is_active=True).order_by("email"), required=False,
        widget=forms.CheckboxSelectMultiple, help_text="A person may be in several teams.")
    log_bodies = forms.BooleanField(
        required=False, label="Log prompts and answers",
        help_text="Keep the prompt and answer of every call counted for the team, from its API keys and from the "
                  "playground (redacted, encrypted, deleted after the retention period); only admins and each "
                  "call's owner can read them.")


@role_required(ADMIN)
def team_list(request: HttpRequest) -> HttpResponse:
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = team_create(name=form.cleaned_data["name"], members=form.cleaned_data["members"],
                               log_bodies=form.cleaned_data["log_bodies"], actor=request.user)
        except ValidationError as exc:
            form.add_error("name", exc)
        else:
            messages.success(request, f"Team {team.name} added.")
            return redirect("team_list")
    teams = Team.objects.annotate(member_count=Count("members")).order_by("name")
    return render(request, "accounts/team_list.html", {"teams": teams, "form": form},
                  status=400 if form.is_bound and form.errors else 200)


@role_required(ADMIN)
def team_edit(request: HttpRequest, pk: int) -> HttpResponse:
    team = get_object_or_404(Team, pk=pk)
    form = TeamForm(request.POST or None, initial={"name": team.name, "members": list(team.members.all()),
                                                   "log_bodies": team.log_bodies})
    if request.method == "POST" and form.is_valid():
        try:
            team_rename(team=team, name=form.cleaned_data["name"], actor=request.user)
        except ValidationError as exc:
            form.add_error("name", exc)
        else:
            added, removed = team_members_set(team=team, users=form.cleaned_data["members"], actor=request.user)
            team_log_bodies_set(team=team, on=form.cleaned_data["log_bodies"], actor=request.user)
            messages.success(request, f"Team {team.name} saved ({len(added)} added, {len(removed)} removed).")
            return redirect("team_list")
    return render(request, "accounts/team_form.html", {"team": team, "form": form},
                  status=400 if form.is_bound and form.errors else 200)


@role_required(ADMIN)
@require_POST
def team_remove(request: HttpRequest, pk: int) -> HttpResponse:
    team = get_object_or_404(Team, pk=pk)
    team_delete(team=team, actor=request.user)
    messages.success(request, f"Team {team.name} deleted; its calls keep their costs, without a team.")
    return redirect("team_list")
