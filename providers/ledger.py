"""What the catalog's pages show from the usage ledger, which sits above the catalog (it records the calls
of the catalog's models): the ledger registers how to read it from its AppConfig.ready (usage/apps.py)."""

from collections.abc import Callable

from .models import Model, Provider

UnpricedModels = Callable[..., list[Model]]
_readers: dict[str, UnpricedModels] = {}


def unpriced_register(reader: UnpricedModels) -> None:
    """`reader(provider=None, model=None)`: the models called while nothing priced them, each with its
    `unpriced_usage` (calls, tokens, first_day, last_day)."""
    _readers["unpriced"] = reader


def unpriced_models(provider: Provider | None = None, model: Model | None = None) -> list[Model]:
    """The catalog's models called while nothing priced them (none without a ledger)."""
    reader = _readers.get("unpriced")
    return reader(provider=provider, model=model) if reader is not None else []
