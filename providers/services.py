"""Writes that cross models, and the provider operations the UI, commands and config import share."""

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_log

from .adapters import get_adapter
from .adapters.base import Connection, Health, ModelInfo, ProviderError, listing_error
from .crypto import reveal
from .kinds import EXTRA_FIELDS, Kind, names_embedding
from .models import MODEL_NAME_MAX, TOKENS_RANGE, Model, Price, PriceTier, Provider

logger = logging.getLogger(__name__)

# Fields whose changes are audited by name (values only where they are not secret).
AUDITED_FIELDS = ("name", "kind", "base_url", "extra", "enabled", "timeout_seconds", "max_retries")


def connection_for(provider: Provider) -> Connection:
    kind = provider.kind_preset
    headers = dict(kind.headers)
    for key, spec in EXTRA_FIELDS.items():
        if spec.header and provider.extra.get(key):
            headers[spec.header] = str(provider.extra[key])
    return Connection(
        kind=provider.kind,
        # Errors name the provider as its admin named it ("lab had a server error (HTTP 500)"): the kind is
        # on the provider's page, and a team with two providers of one kind needs to know which failed.
        label=provider.name,
        base_url=provider.effective_base_url,
        api_key=reveal(provider.api_key),
        extra=dict(provider.extra),
        headers=headers,
        timeout=float(provider.time_limit),
        connect_timeout=float(settings.PROVIDER_CONNECT_TIMEOUT_SECONDS),
    )


def provider_save(*, provider: Provider, actor: Any, changed: list[str] | None = None,
                  key_changed: bool = False) -> Provider:
    """Create or update a provider from a validated form or config entry, and audit it."""
    creating = provider.pk is None
    with transaction.atomic():
        provider.save()
        if creating:
            # The kind as the provider pages name it ("Google Gemini"), not its stored code.
            audit_log(actor, "provider.create", provider, kind=provider.kind_preset.label)
        else:
            fields = [f for f in (changed or []) if f in AUDITED_FIELDS]
            if key_changed:
                fields.append("api_key")
            if fields:
                audit_log(actor, "provider.update", provider, fields=sorted(fields))
    return provider


def provider_set_enabled(*, provider: Provider, enabled: bool, actor: Any) -> None:
    with transaction.atomic():
        provider.enabled = enabled
        provider.save(update_fields=["enabled", "updated_at"])
        audit_log(actor, "provider.enable" if enabled else "provider.disable", provider)


def provider_delete(*, provider: Provider, actor: Any) -> str:
    """Erase a provider, or archive it when the ledger refers to it. Returns "deleted" or "archived"."""
    with transaction.atomic():
        if provider.usage_records.exists():
            provider.archived_at = timezone.now()
            provider.enabled = False
            provider.save(update_fields=["archived_at", "enabled", "updated_at"])
            audit_log(actor, "provider.archive", provider)
            return "archived"
        audit_log(actor, "provider.delete", provider)
        provider.delete()
        return "deleted"


def provider_test(*, provider: Provider, actor: Any) -> Health:
    """Check key and URL against the provider, record the outcome on the provider, and audit it."""
    adapter = get_adapter(provider.kind)
    try:
        health = async_to_sync(adapter.health_check)(connection_for(provider))
    except ProviderError as exc:
        health = Health(False, 0, exc.message)
    provider.last_checked_at = timezone.now()
    provider.last_check_ok = health.ok
    provider.last_check_latency_ms = health.latency_ms if health.ok else None
    provider.last_check_message = health.message[:500]
    with transaction.atomic():
        provider.save(update_fields=["last_checked_at", "last_check_ok", "last_check_latency_ms",
                                     "last_check_message", "updated_at"])
        audit_log(actor, "provider.test", provider, ok=health.ok)
    return health


def default_price(kind: Kind, model_name: str, when: datetime | None = None,
                  model_type: str = Model.Type.CHAT) -> dict[str, Any] | None:
    """Prices per 1M tokens from genai-prices' offline data (Price.as_dict's shape, tiers included), or
    None where it has none. An embedding model bills input only: where genai-prices names no output price
    for it, output costs 0 (an embedding call has no output tokens).

    genai-prices' `cache_write_mtok` is the 5-minute write (or a provider's only duration) and
    `cache_write_1h_mtok` the 1-hour write. A price of its may be tiered by the prompt's size; each tier
    here holds every class's price from that threshold on (a class without tiers keeps its base price)."""
    if kind.free:
        return {**dict.fromkeys(Price.PRICE_FIELDS, Decimal(0)), "tiers": []}
    info = _prices_model(kind, model_name)
    if info is None:
        return None
    prices = info.get_prices(when or datetime.now(tz=UTC))
    keys = {"input": "input_mtok", "output": "output_mtok", "cache_read": "cache_read_mtok",
            "cache_write": "cache_write_mtok", "cache_write_1h": "cache_write_1h_mtok"}
    values = {name: getattr(prices, key, None) for name, key in keys.items()}
    if getattr(prices, "cache_write_5m_mtok", None) is not None:  # the 5-minute write, where named apart
        values["cache_write"] = prices.cache_write_5m_mtok
    if model_type == Model.Type.EMBEDDING and values["output"] is None:
        values["output"] = 0
    if values["input"] is None or values["output"] is None:
        return None

    def at(value: Any, tokens: int | None) -> Decimal | None:
        """The price of one class for a prompt above `tokens` (None: the base)."""
        if value is None:
            return None
        applied = getattr(value, "base", value)
        for tier in getattr(value, "tiers", ()):
            if tokens is not None and tokens >= tier.start:
                applied = tier.price
        return _price_places(Decimal(str(applied)))

    thresholds = sorted({tier.start for value in values.values() for tier in getattr(value, "tiers", ())})
    return {
        **{name: at(value, None) for name, value in values.items()},
        "tiers": [{"above": start, **{name: at(value, start) for name, value in values.items()}}
                  for start in thresholds],
    }


def _price_places(value: Decimal) -> Decimal:
    """A price as a version stores it: at most Price's places (a few published prices, such as $1/12 per
    1M tokens, have endless ones)."""
    places = Decimal(1).scaleb(-Price._meta.get_field("input").decimal_places)
    return value.quantize(places) if value.as_tuple().exponent < places.as_tuple().exponent else value


def _prices_model(kind: Kind, model_name: str) -> Any:
    """genai-prices' model for a catalog model of `kind`, or None."""
    if not kind.prices_provider:
        return None
    from genai_prices.data_snapshot import get_snapshot

    provider_id, ref = kind.prices_aliases.get(
        model_name, (kind.prices_provider, model_name.removeprefix(kind.prices_model_prefix)))
    try:
        return get_snapshot().find_provider_model(ref, None, provider_id, None)[1]
    except LookupError:
        return None


def default_context_window(kind: Kind, model_name: str) -> int | None:
    info = _prices_model(kind, model_name)
    return info.context_window if info is not None else None


def price_set(*, model: Model, prices: dict[str, Any], actor: Any, source: str = Price.Source.ADMIN,
              effective_from: datetime | None = None) -> Price | None:
    """Add a price version unless it equals the one in force then. `prices`: Price.as_dict's shape (a
    missing class is empty; `tiers`, optional, a list of {"above": tokens, class: price, ...}). Returns
    the new version or None."""
    effective_from = effective_from or timezone.now()
    tiers = sorted(({"above": int(tier["above"]), **{name: tier.get(name) for name in Price.PRICE_FIELDS}}
                    for tier in prices.get("tiers") or ()), key=lambda tier: tier["above"])
    values = {name: prices.get(name) for name in Price.PRICE_FIELDS}
    with transaction.atomic():
        current = model.price_at(effective_from)
        if current is not None and current.as_dict() == {**values, "tiers": tiers}:
            return None
        price = Price.objects.create(
            model=model, effective_from=effective_from, source=source,
            created_by=actor if getattr(actor, "is_authenticated", False) else None, **values,
        )
        PriceTier.objects.bulk_create([PriceTier(price=price, **tier) for tier in tiers])
        audit_log(actor, "price.create", model, target_label=str(model),
                  effective_from=effective_from.isoformat(),
                  **{k: str(v) if v is not None else None for k, v in values.items()},
                  tiers=[{k: str(v) if v is not None else None for k, v in tier.items()} for tier in tiers])
    return price


def prices_set(*, models: list[Model], prices: dict[str, Any], actor: Any,
               effective_from: datetime | None = None) -> list[Model]:
    """One price version for each of `models` (the bulk edit): each through price_set, so each is validated,
    compared with its own version in force and audited as a single edit is, all in one transaction.
    Returns the models that got a new version (not those whose version in force was equal already)."""
    effective_from = effective_from or timezone.now()
    with transaction.atomic():
        return [model for model in models
                if price_set(model=model, prices=prices, actor=actor, effective_from=effective_from) is not None]


def model_set_enabled(*, model: Model, enabled: bool, actor: Any) -> None:
    """Turn a catalog model on or off (the catalog's toggle), audited as a model update."""
    if model.enabled != enabled:
        model_update(model=model, changed={"enabled": enabled}, actor=actor)


def model_add(*, provider: Provider, name: str, actor: Any, display_name: str = "",
              context_window: int | None = None, max_output_tokens: int | None = None, enabled: bool = True,
              with_default_price: bool = True, type: str = Model.Type.CHAT) -> Model:
    """Add a model to the catalog with genai-prices' default price when it knows one, and the maximum output
    its kind's preset publishes (hard-limit budgets reserve it where answers cannot be capped).

    Callers that set the price themselves (config import) pass with_default_price=False, so the history
    does not start with a version that is superseded at once.
    """
    kind = provider.kind_preset
    with transaction.atomic():
        model = Model.objects.create(
            provider=provider, name=name, display_name=display_name, enabled=enabled, type=type,
            context_window=context_window or default_context_window(kind, name),
            max_output_tokens=max_output_tokens or kind.max_output_tokens.get(name),
        )
        audit_log(actor, "model.create", model)
        defaults = default_price(kind, name, model_type=type) if with_default_price else None
        if defaults is not None:
            price_set(model=model, prices=defaults, actor=actor,
                      source=Price.Source.FREE if kind.free else Price.Source.DEFAULT)
    return model


def model_update(*, model: Model, changed: dict[str, Any], actor: Any) -> None:
    editable = {k: v for k, v in changed.items()
                if k in ("display_name", "type", "enabled", "context_window", "max_output_tokens")}
    if not editable:
        return
    with transaction.atomic():
        for name, value in editable.items():
            setattr(model, name, value)
        model.save(update_fields=[*editable, "updated_at"])
        audit_log(actor, "model.update", model, **editable)


def listed_type(kind: Kind, info: ModelInfo) -> str:
    """A listed model's type: an embedding model where the listing says so, where it is one of the kind's
    preset embedding models, or where its id clearly names one; a chat model otherwise."""
    if info.type == Model.Type.EMBEDDING or info.id in kind.embedding_models or names_embedding(info.id):
        return Model.Type.EMBEDDING
    return Model.Type.CHAT


def models_sync(*, provider: Provider, actor: Any) -> tuple[list[str], list[str]]:
    """Add the models the provider lists (or, for providers without a listing, the preset's).

    Returns (added, already_known). Models the provider no longer lists are kept: usage and prices
    point at them, and an admin may disable them.
    """
    adapter = get_adapter(provider.kind)
    connection = connection_for(provider)
    try:
        listed: list[ModelInfo] = async_to_sync(adapter.list_models)(connection)
    except ProviderError as exc:
        # A server without a model listing answers 404; the preset's list stands in for it.
        if exc.kind != "model_not_found" or not provider.kind_preset.models:
            raise listing_error(exc, connection) from None
        listed = []
    kind = provider.kind_preset
    if not listed:
        listed = [ModelInfo(name) for name in kind.models]
        listed += [ModelInfo(name, type=Model.Type.EMBEDDING) for name in kind.embedding_models]
    known = set(provider.models.values_list("name", flat=True))
    added = []
    with transaction.atomic():
        for info in listed:
            if info.id in known:
                continue
            if not info.id or len(info.id) > MODEL_NAME_MAX:
                # No address could name it (PROVIDER/MODEL is bounded); a listing's oddity, not a model.
                logger.warning("Sync of %s skipped a listed model id of %d characters", provider.name, len(info.id))
                continue
            low, high = TOKENS_RANGE
            window = info.context_window
            context = window if isinstance(window, int) and low <= window <= high else None
            model_add(provider=provider, name=info.id, actor=actor,
                      display_name=(info.display_name or "")[:MODEL_NAME_MAX],
                      context_window=context, type=listed_type(kind, info))
            known.add(info.id)
            added.append(info.id)
        audit_log(actor, "provider.sync_models", provider, added=len(added))
    return added, sorted(known - set(added))
