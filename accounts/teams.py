"""Teams and who is in them. Every write goes through these services: the team pages, the config file and
single sign-on (which calls user_teams_sync at every sign-in) all end here, so each change is audited once.

Whether a team's calls log their prompts and answers is read on every call (providers/callbodies.py), on the
event loop: the ids of the teams that do are kept in a row cache (aspweb/rowcache.py) that any write of a
team drops, in every process."""

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from aspweb.rowcache import RowCache

from .audit import audit_log
from .models import Team, User

NAME_MAX = Team._meta.get_field("name").max_length

# The ids of the teams whose calls log their prompts and answers, as one entry, dropped by any write of a team
# (followed from apps.py; teams change seldom).
logging_teams = RowCache("team-logging", ttl=60.0)


def team_logs_bodies(team_id: int) -> bool:
    """Whether the calls counted for the team log their prompts and answers. A hit is a dict lookup (no query):
    run inline, a miss raises NeedsThread (aspweb/inline.py)."""
    return team_id in logging_teams.get("on", _logging_team_ids)


def _logging_team_ids() -> tuple[frozenset[int], None]:
    return frozenset(Team.objects.filter(log_bodies=True).values_list("pk", flat=True)), None


def team_name_clean(name: str) -> str:
    """The name as stored: trimmed, not empty, within the column. Raises ValidationError."""
    cleaned = " ".join(str(name).split())
    if not cleaned:
        raise ValidationError("A team needs a name.")
    if len(cleaned) > NAME_MAX:
        raise ValidationError(f"A team's name has at most {NAME_MAX} characters.")
    return cleaned


def team_get(name: str) -> Team | None:
    """The team of that name, whatever its case."""
    return Team.objects.filter(name__iexact=" ".join(str(name).split())).first()


@transaction.atomic
def team_create(*, name: str, members: Iterable[User] = (), log_bodies: bool = False,
                actor: User | None = None) -> Team:
    """A new team. Raises ValidationError when the name is empty, too long or taken (whatever its case).
    `log_bodies`: the calls counted for it log their prompts and answers."""
    name = team_name_clean(name)
    if Team.objects.filter(name__iexact=name).exists():
        raise ValidationError(f"A team named {name} exists.")
    team = Team.objects.create(name=name, log_bodies=log_bodies)
    people = list(members)
    team.members.set(people)
    audit_log(actor, "team.create", team, members=sorted(user.email for user in people),
              **({"log_bodies": True} if log_bodies else {}))
    return team


@transaction.atomic
def team_log_bodies_set(*, team: Team, on: bool, actor: Any) -> bool:
    """Turn the logging of the team's calls' prompts and answers on or off; False when it already was so."""
    if team.log_bodies == on:
        return False
    team.log_bodies = on
    team.save(update_fields=["log_bodies"])
    audit_log(actor, "team.log_bodies", team, log_bodies={"from": not on, "to": on})
    return True


@transaction.atomic
def team_rename(*, team: Team, name: str, actor: User | None = None) -> Team:
    name = team_name_clean(name)
    if name == team.name:
        return team
    if Team.objects.filter(name__iexact=name).exclude(pk=team.pk).exists():
        raise ValidationError(f"A team named {name} exists.")
    old, team.name = team.name, name
    team.save(update_fields=["name"])
    audit_log(actor, "team.update", team, name={"from": old, "to": name})
    return team


@transaction.atomic
def team_members_set(*, team: Team, users: Iterable[User], actor: User | None = None) -> tuple[list[str], list[str]]:
    """Makes the team's members exactly `users`; returns the e-mail addresses added and removed."""
    added, removed = _exactly(team.members, {user.pk: user for user in users})
    result = sorted(u.email for u in added), sorted(u.email for u in removed)
    if added or removed:
        audit_log(actor, "team.members", team, added=result[0], removed=result[1])
    return result


@transaction.atomic
def team_delete(*, team: Team, actor: User | None = None) -> None:
    audit_log(actor, "team.delete", team)
    team.delete()


@transaction.atomic
def user_teams_sync(*, user: User, team_names: Iterable[str], actor: User | None = None) -> tuple[list[str], list[str]]:
    """Makes the user's teams exactly the named ones (names match whatever their case), creating the teams
    that do not exist yet. Names that are empty or too long are skipped rather than failing a sign-in.
    Returns the names of the teams joined and left."""
    names: dict[str, str] = {}
    for raw in team_names:
        try:
            name = team_name_clean(raw)
        except ValidationError:
            continue
        names.setdefault(name.lower(), name)
    wanted: dict[int, Team] = {}
    for name in names.values():
        # get_or_create retries the read when a concurrent sign-in created the same team first.
        team, created = Team.objects.get_or_create(name__iexact=name, defaults={"name": name})
        if created:
            audit_log(actor, "team.create", team, members=[])
        wanted[team.pk] = team
    joined, left = _exactly(user.teams, wanted)
    result = sorted(t.name for t in joined), sorted(t.name for t in left)
    if joined or left:
        audit_log(actor, "user.teams", user, added=result[0], removed=result[1])
    return result


def _exactly(related: Any, wanted: dict[int, Any]) -> tuple[list[Any], list[Any]]:
    """Make one side of the team membership (a team's members, or a person's teams) hold exactly `wanted`
    (pk -> object); returns the objects added and those removed."""
    current = {obj.pk: obj for obj in related.all()}
    added = [wanted[pk] for pk in wanted.keys() - current.keys()]
    removed = [current[pk] for pk in current.keys() - wanted.keys()]
    if added:
        related.add(*added)
    if removed:
        related.remove(*removed)
    return added, removed
