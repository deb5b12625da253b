"""Where a call's page links to what made it (a playground conversation): the apps above the ledger register
a link for their source from their AppConfig.ready, so the ledger names none of them."""

from collections.abc import Callable
from typing import Any

from .models import UsageRecord

# (the call's record, who looks at it) -> the URL of what made the call, or "" when there is none to show.
Link = Callable[[UsageRecord, Any], str]
_links: dict[str, Link] = {}


def link_register(source: str, link: Link) -> None:
    """Link the calls of `source` (a UsageRecord.Source) to what made them."""
    _links[source] = link


def link_for(record: UsageRecord, viewer: Any) -> str:
    link = _links.get(record.source)
    return link(record, viewer) if link is not None else ""
