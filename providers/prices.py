"""A model's price versions as the call path and the ledger read them: in a row cache of each worker
(aspweb/rowcache.py), and the one in force at a moment."""

import bisect
from datetime import datetime
from operator import attrgetter
from typing import Any

from aspweb.rowcache import RowCache

from .models import Price

# Each model's price versions, in a row cache of each worker, dropped when any price is saved or deleted
# (apps.py): the call path and the ledger's batches price with them without asking the database.
price_versions = RowCache("price-versions", ttl=60.0)


def model_prices(model_id: int) -> list[Any]:
    """The model's price versions in the order Model.price_at reads them (effective_from, then id), cached
    per worker: a query only when they changed or were not read yet."""
    return price_versions.get(model_id, lambda: (
        list(Price.objects.filter(model_id=model_id).prefetch_related("tiers").order_by("effective_from", "id")),
        None))


def price_in_force(prices: list[Any], when: datetime) -> Any:
    """The version in force at `when` among `prices` (ordered as model_prices orders them), as
    Model.price_at picks it: the latest effective at or before `when`, the newest of several at once."""
    position = bisect.bisect_right(prices, when, key=attrgetter("effective_from"))
    return prices[position - 1] if position else None
