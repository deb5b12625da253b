"""What a call is attributed to besides its person and key: its team, its tags and its end user (the
application's own customer or user). The bounds and the one way of reading tags and end-user ids, shared by
the gateway (headers, OpenAI's `metadata` and `user`, Anthropic's `metadata.user_id`), the ledger and the
budgets.

Tags are lower-cased, trimmed, de-duplicated and sorted, so that "Prod" and "prod " are one tag and a call's
tags read the same wherever they came from. End-user ids are kept as sent (trimmed): they are the
application's own identifiers."""

from collections.abc import Iterable

from django.db.models import Q

TAGS_MAX = 10  # tags on one call
TAG_LENGTH_MAX = 64
END_USER_LENGTH_MAX = 128
# A record's tags as stored: joined by commas, which no tag holds.
TAGS_FIELD_LENGTH = TAGS_MAX * (TAG_LENGTH_MAX + 1)


class AttributionError(ValueError):
    """A tag or end-user id out of bounds; `param` names where it came from."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message, self.param = message, param


def _printable(value: str) -> bool:
    return value.isprintable()


def tags_parse(values: Iterable[str], param: str) -> tuple[str, ...]:
    """Tags from comma-separated strings: each trimmed and lower-cased, empty pieces skipped, duplicates
    dropped, sorted. Raises AttributionError past TAGS_MAX tags or TAG_LENGTH_MAX characters, or on
    characters that are not printable."""
    tags: set[str] = set()
    for value in values:
        for piece in value.split(","):
            tag = piece.strip().lower()
            if not tag:
                continue
            if len(tag) > TAG_LENGTH_MAX:
                raise AttributionError(f"A tag has at most {TAG_LENGTH_MAX} characters; {tag[:20]!r}… has "
                                       f"{len(tag)}.", param)
            if not _printable(tag):
                raise AttributionError("A tag holds printable characters only.", param)
            tags.add(tag)
    if len(tags) > TAGS_MAX:
        raise AttributionError(f"A call has at most {TAGS_MAX} tags; this one has {len(tags)}.", param)
    return tuple(sorted(tags))


def tags_merge(*groups: tuple[str, ...], param: str) -> tuple[str, ...]:
    """Tags from several places (a header and the body) as one call's: bounded together."""
    return tags_parse([",".join(tags) for tags in groups], param)


def end_user_clean(value: str, param: str) -> str:
    """An end-user id as stored: trimmed, at most END_USER_LENGTH_MAX printable characters ("" for none)."""
    value = value.strip()
    if len(value) > END_USER_LENGTH_MAX:
        raise AttributionError(f"An end-user id has at most {END_USER_LENGTH_MAX} characters; this one has "
                               f"{len(value)}.", param)
    if not _printable(value):
        raise AttributionError("An end-user id holds printable characters only.", param)
    return value


def tags_text(tags: Iterable[str]) -> str:
    """Tags as a record stores them (and the CSV shows them): comma-separated."""
    return ",".join(tags)


def tags_of(text: str) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


def tag_q(tag: str, field: str = "tags") -> Q:
    """The records carrying `tag` (their stored comma-separated tags hold it as a whole piece)."""
    return (Q(**{field: tag}) | Q(**{f"{field}__startswith": f"{tag},"}) | Q(**{f"{field}__endswith": f",{tag}"})
            | Q(**{f"{field}__contains": f",{tag},"}))
