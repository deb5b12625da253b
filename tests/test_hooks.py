"""What providers is handed by the apps above it (providers/hooks.py): registered by those apps at start-up,
and without them the call path and the catalog still answer plainly."""

import pytest

from gateway import routing
from providers import hooks
from providers.calls import CallError
from usage import unpriced, writer


def test_the_apps_above_register_their_hooks_at_start_up() -> None:
    assert hooks.routes() is routing
    assert hooks.recorder() is writer.usage_record_write
    assert hooks._readers["unpriced"] is unpriced.unpriced_models


def test_without_the_gateway_a_name_without_a_slash_is_not_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks, "_routes", [])
    with pytest.raises(CallError) as refused:
        hooks.routes()
    assert refused.value.code == "not_found"
    assert "PROVIDER/MODEL" in refused.value.message


def test_without_the_ledger_nothing_is_unpriced_and_calls_cannot_be_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks, "_readers", {})
    monkeypatch.setattr(hooks, "_recorder", [])
    assert hooks.unpriced_models() == []
    with pytest.raises(RuntimeError, match="No usage ledger"):
        hooks.recorder()


def test_registering_again_replaces_the_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks, "_routes", [])
    other = object()
    hooks.routes_register(routing)
    hooks.routes_register(other)  # type: ignore[arg-type]
    assert hooks.routes() is other
