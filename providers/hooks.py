"""What the call path and the catalog are handed by the apps above them, each registered from that app's
AppConfig.ready, so that providers imports none of them: the gateway's routes (gateway/apps.py), the
ledger's recorder of calls and its reader of unpriced calls (usage/apps.py), and the limits on spend a
call is held against (budgets/apps.py)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .models import Model, Price, Provider

# -- routes ---------------------------------------------------------------------------------------


class Routes(Protocol):
    """What the call path asks of routes (a public name served by one of several catalog models, its
    deployments): the gateway's, which sit above the call path and register themselves from its
    AppConfig.ready (gateway/apps.py, gateway/routing.py). A deployment has `pk` and `model`."""

    def resolve(self, name: str) -> tuple[Any, list[Any]]:
        """The route named `name` and its deployments that can serve; CallError when there are none."""

    def order(self, route: Any, deployments: list[Any], prices: dict[int, Price | None] | None = None) -> list[Any]:
        """The deployments in the order to try them."""

    def admit(self, model_id: int) -> bool:
        """Whether a deployment of this model may be tried now (its circuit breaker)."""

    def record_failure(self, model_id: int) -> None: ...

    def record_success(self, model_id: int) -> None: ...

    def latency_observe(self, model_id: int, latency_ms: float) -> None: ...

    def circuit(self, model_id: int) -> Any:
        """The circuit breaker's state of this model, with `retry_in` seconds."""


_routes: list[Routes] = []


def routes_register(routes: Routes) -> None:
    """Make `routes` the ones a name without a slash resolves through (one set; registering again replaces)."""
    _routes[:] = [routes]


def routes() -> Routes:
    if not _routes:
        from .calls import CallError

        raise CallError("not_found", "Routes are not installed: call a model as PROVIDER/MODEL.")
    return _routes[0]


# -- the ledger -----------------------------------------------------------------------------------


class Recorder(Protocol):
    """Writes one call's usage record (usage_record_create's arguments) and returns the row, with its `price`
    and `cost`: the ledger's, which sits above the call path and registers it from its AppConfig.ready
    (usage/apps.py)."""

    def __call__(self, **fields: Any) -> Awaitable[Any]: ...


_recorder: list[Recorder] = []


def recorder_register(recorder: Recorder) -> None:
    """Make `recorder` the writer of every call's usage record (one; registering again replaces it)."""
    _recorder[:] = [recorder]


def recorder() -> Recorder:
    if not _recorder:
        raise RuntimeError("No usage ledger is installed to record calls in.")
    return _recorder[0]


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


# -- limits on spend -------------------------------------------------------------------------------


class LimitRefused(Exception):
    """A limit on spend refuses a call before any provider is contacted. Limits raise a subclass of it (a
    budget's hard limit: budgets.services.BudgetExceeded) with `code`, the CallError code the refusal becomes,
    and `message`, plain words for the caller."""

    code: Literal["budget_exceeded", "unpriced"] = "budget_exceeded"
    message: str = ""


@dataclass(frozen=True)
class CallLimit:
    """A limit on spend that holds a call's worst case before it starts, registered here by the app that
    keeps it (budgets, in its AppConfig.ready): so that the call path need not know that app.

    - covers(provider=, model=, user=, api_key=): whether the limit covers such a call; from memory, no query.
    - reserve(record=, provider=, model=, user=, api_key=, price=, input_tokens=, output_tokens=,
      timeout_seconds=): hold the worst case (price None: the model has none); truthy when something was
      held; raises LimitRefused. `record.held` is the limit's memory of what this call already holds.
    - areserve(...): the same, awaited on the event loop (a thread where it needs one).
    - release(request_id=): give back what the call holds, when it will not be made after all.
    The ledger's transaction settles what was held (usage.signals.records_written)."""

    covers: Callable[..., bool]
    reserve: Callable[..., Any]
    areserve: Callable[..., Awaitable[Any]]
    release: Callable[..., Any]


_limits: list[CallLimit] = []


def limits_register(limit: CallLimit) -> None:
    """Add `limit` to the limits every call is held against (once: registering it again changes nothing)."""
    if limit not in _limits:
        _limits.append(limit)


def limits() -> list[CallLimit]:
    return _limits
