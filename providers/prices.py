"""A model's price versions as the call path and the ledger read them: kept per worker (aspweb/kept.py),
and the one in force at a moment."""

import bisect
from datetime import datetime
from operator import attrgetter
from typing import Any

from aspweb.kept import Kept

from .models import Price

# Each model's price versions, kept per worker and dropped when any price is saved or deleted (apps.py):
# the call path and the ledger's batches price with them without asking the database.
price_versions = Kept("price-versions", ttl=60.0)


def model_prices(model_id: int, current: str | None = None) -> list[Any]:
    """The model's price versions in the order Model.price_at reads them (effective_from, then id), kept
    per worker: a query only when they changed or were not read yet. `current`: the store's version,
    when the caller already has it."""
    return price_versions.get(model_id, current or price_versions.version(), lambda: (
        list(Price.objects.filter(model_id=model_id).prefetch_related("tiers").order_by("effective_from", "id")),
        None))


def price_in_force(prices: list[Any], when: datetime) -> Any:
    """The version in force at `when` among `prices` (ordered as model_prices orders them), as
    Model.price_at picks it: the latest effective at or before `when`, the newest of several at once."""
    position = bisect.bisect_right(prices, when, key=attrgetter("effective_from"))
    return prices[position - 1] if position else None
