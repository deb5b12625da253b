"""The teams section of the config file (aspweb/config.py runs it): teams by name, each with its members
named by e-mail address and whether its calls log their prompts and answers. A file's team holds exactly the
members it lists; what an entry leaves out stays as it is; teams the file does not name, and people's other
teams, are left alone.

    teams:
      - name: Research
        members: [ana@example.com, bo@example.com]
        log_bodies: true
"""

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from aspweb import config

from .models import Team, User
from .teams import team_create, team_log_bodies_set, team_members_set, team_name_clean

TEAM_KEYS = ("name", "members", "log_bodies")


@dataclass
class _TeamPlan:
    name: str
    existing: Team | None
    members: list[User] | None  # None: the file leaves the members as they are
    log_bodies: bool | None = None  # None: the file leaves the switch as it is


def _check(entries: Any, declared: config.Declared, errors: list[str]) -> list[_TeamPlan]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        errors.append(f"teams: expected a list of teams, not {config.type_name(entries)}")
        return []
    plans, seen = [], {}
    for index, entry in enumerate(entries):
        where = config.item_path("teams", index, entry)
        if not isinstance(entry, dict):
            errors.append(f"{where}: expected a mapping (name: ..., members: [...]), not {config.type_name(entry)}")
            continue
        config.check_keys(entry, TEAM_KEYS, where, "team settings are", errors)
        try:
            name = team_name_clean(entry.get("name") if isinstance(entry.get("name"), str) else "")
        except ValidationError as exc:
            errors.append(f"{where}.name: {exc.messages[0]}")
            continue
        if name.lower() in seen:
            errors.append(f"{where}.name: team {name!r} appears twice in the file (also {seen[name.lower()]})")
            continue
        seen[name.lower()] = where
        declared.teams.add(name.lower())
        log_bodies = entry.get("log_bodies")
        if log_bodies is not None and not isinstance(log_bodies, bool):
            errors.append(f"{where}.log_bodies: expected true or false, not {log_bodies!r}")
            continue
        members = None
        if "members" in entry:
            emails = entry["members"]
            if not isinstance(emails, list) or any(not isinstance(e, str) for e in emails):
                errors.append(f"{where}.members: expected a list of e-mail addresses, not {emails!r}")
                continue
            members = []
            for email in emails:
                user = User.objects.filter(email__iexact=email.strip()).first()
                if user is None:
                    errors.append(f"{where}.members: no user {email!r} (add people before naming them in a team)")
                else:
                    members.append(user)
        plans.append(_TeamPlan(name, Team.objects.filter(name__iexact=name).first(), members, log_bodies))
    return plans


def _apply(plans: list[_TeamPlan], actor: Any, report: config.Report) -> None:
    for plan in plans:
        if plan.existing is None:
            team_create(name=plan.name, members=plan.members or [], log_bodies=bool(plan.log_bodies), actor=actor)
            report.created.append(f"team {plan.name}")
            continue
        added, removed = ([], []) if plan.members is None else team_members_set(
            team=plan.existing, users=plan.members, actor=actor)
        changed = ["members"] if added or removed else []
        if plan.log_bodies is not None and team_log_bodies_set(team=plan.existing, on=plan.log_bodies, actor=actor):
            changed.append("prompt logging")
        if changed:
            report.updated.append(f"team {plan.existing.name} ({', '.join(changed)})")
        else:
            report.unchanged.append(f"team {plan.existing.name}")


def _export(placeholders: set[str]) -> list[dict[str, Any]]:
    return [{"name": config.literal(team.name),
             "members": [config.literal(user.email) for user in team.members.order_by("email")],
             "log_bodies": team.log_bodies}
            for team in Team.objects.prefetch_related("members")]


SECTION = config.Section("teams", check=_check, apply=_apply, export=_export)
