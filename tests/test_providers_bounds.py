"""Bounds on what an admin sets: a provider's time limit and retries, a model's token counts, a route's
numbers and every name. The same range is enforced by the pages, the model's own validation (the Django
admin), the config import and, for rows written past all of them, the call path itself."""

from collections.abc import Callable
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django import forms
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse

from aspweb.config import ConfigError, config_import, load_yaml
from aspweb.forms import BoundedIntegerField, range_message
from gateway.models import Route
from providers import calls
from providers.adapters.base import ChatRequest, Message, ProviderError
from providers.models import Model, Price, Provider
from tests.fakes.upstream import FakeUpstream


class Sleeps(list):
    """Records the waits between retries instead of waiting them out."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.mark.parametrize("value", ["-5", "0", "601", "999999999", "99999999999999999999999"])
def test_a_bounded_field_words_every_out_of_range_value_alike(value: str) -> None:
    field = BoundedIntegerField(min_value=1, max_value=600)
    with pytest.raises(forms.ValidationError) as caught:
        field.clean(value)
    assert caught.value.messages == ["Enter a number from 1 to 600."]
    assert field.clean("600") == 600 and field.clean("1") == 1
    assert field.widget_attrs(field.widget) == {"min": 1, "max": 600}


def test_range_message_separates_thousands() -> None:
    assert range_message(0, 2_592_000) == "Enter a number from 0 to 2,592,000."


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value", "message"), [
    ("timeout_seconds", 999_999_999, "Enter a number from 1 to 600."),
    ("timeout_seconds", 0, "Enter a number from 1 to 600."),
    ("max_retries", 11, "Enter a number from 0 to 10."),
])
def test_the_model_refuses_absurd_settings(field: str, value: int, message: str) -> None:
    provider = Provider(name="lab", kind="ollama", **{field: value})
    with pytest.raises(ValidationError) as caught:
        provider.full_clean()
    assert caught.value.message_dict[field] == [message]


@pytest.mark.django_db
def test_the_django_admin_refuses_them_with_the_same_words(client_as: Callable[[str], Client]) -> None:
    provider = Provider.objects.create(name="lab", kind="ollama")
    client = client_as("superuser")
    response = client.post(reverse("admin:providers_provider_change", args=[provider.pk]), {
        "name": "lab", "kind": "ollama", "base_url": "", "extra": "{}", "enabled": "on",
        "timeout_seconds": "999999999", "max_retries": "99999999999", "archived_at": "",
        "models-TOTAL_FORMS": "0", "models-INITIAL_FORMS": "0",
    })
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["timeout_seconds"] == ["Enter a number from 1 to 600."]
    assert errors["max_retries"] == ["Enter a number from 0 to 10."]
    provider.refresh_from_db()
    assert (provider.timeout_seconds, provider.max_retries) == (120, 3)


@pytest.mark.django_db
def test_config_import_refuses_them_and_writes_nothing() -> None:
    text = ("providers:\n  - name: lab\n    kind: ollama\n    timeout_seconds: 999999999\n"
            "    max_retries: 99999999999\n    models:\n      - name: m\n        context_window: 0\n"
            "routes:\n  - name: r\n    cache_ttl_seconds: -1\n    deployments:\n"
            "      - {model: lab/m, priority: 5000, weight: 0}\n")
    with pytest.raises(ConfigError) as caught:
        config_import(load_yaml(text, {}), actor="import_config")
    assert caught.value.errors == [
        "providers[0] (lab).timeout_seconds: Enter a number from 1 to 600.",
        "providers[0] (lab).max_retries: Enter a number from 0 to 10.",
        "providers[0] (lab).models[0] (m).context_window: Enter a number from 1 to 100,000,000.",
        "routes[0] (r).cache_ttl_seconds: Enter a number from 0 to 2,592,000.",
        "routes[0] (r).deployments[0].priority: expected a whole number from 0 to 1,000, not 5000",
        "routes[0] (r).deployments[0].weight: expected a whole number from 1 to 1,000, not 0",
    ]
    assert not Provider.objects.exists() and not Route.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("data", "field", "message"), [
    ({"cache_ttl_seconds": "-1"}, "cache_ttl_seconds", "Enter a number from 0 to 2,592,000."),
    ({"cache_ttl_seconds": "9223372036854775808"}, "cache_ttl_seconds", "Enter a number from 0 to 2,592,000."),
    ({"name": "r" * 101}, "name", "Ensure this value has at most 100 characters (it has 101)."),
])
def test_the_route_form_bounds_its_numbers_and_name(admin_client: Client, data: dict, field: str,
                                                    message: str) -> None:
    response = admin_client.post(reverse("route_add"), {"name": "fast", "strategy": "priority", "enabled": "on",
                                                        "cache_ttl_seconds": "0", **data})
    assert response.status_code == 200
    assert response.context["form"].errors[field] == [message]
    assert not Route.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value"), [("priority", "-1"), ("priority", "1001"), ("weight", "0"),
                                              ("weight", "40000")])
def test_the_deployment_form_bounds_priority_and_weight(admin_client: Client, field: str, value: str) -> None:
    route = Route.objects.create(name="fast")
    model = Model.objects.create(provider=Provider.objects.create(name="lab", kind="ollama"), name="m")
    response = admin_client.post(reverse("route_detail", args=[route.pk]),
                                 {"model": model.pk, "priority": "1", "weight": "1", field: value})
    assert response.status_code == 200
    low = 1 if field == "weight" else 0
    assert response.context["form"].errors[field] == [f"Enter a number from {low} to 1,000."]
    assert not route.deployments.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("data", "field", "message"), [
    ({"context_window": "0"}, "context_window", "Enter a number from 1 to 100,000,000."),
    ({"max_output_tokens": "99999999999"}, "max_output_tokens", "Enter a number from 1 to 100,000,000."),
    ({"name": "m" * 201}, "name", "Ensure this value has at most 200 characters (it has 201)."),
    ({"display_name": "d" * 201}, "display_name", "Ensure this value has at most 200 characters (it has 201)."),
    ({"context_window": "200000", "max_output_tokens": "300000"}, "max_output_tokens",
     "Enter at most the context window, 200,000 tokens: an answer shares the window with its prompt."),
])
def test_the_model_form_bounds_token_counts_and_names(admin_client: Client, data: dict, field: str,
                                                      message: str) -> None:
    provider = Provider.objects.create(name="lab", kind="ollama")
    response = admin_client.post(reverse("model_add", args=[provider.pk]), {"name": "m", "enabled": "on", **data})
    assert response.status_code == 200
    assert response.context["form"].errors[field] == [message]
    assert not provider.models.exists()


# -- the call path, for rows written past every form ---------------------------------------------------------


@pytest.fixture
def absurd_provider(upstream: FakeUpstream, transactional_db: None) -> Provider:
    provider = Provider.objects.create(name="lab", kind="openai_compatible", base_url=upstream.openai_base_url,
                                       api_key="sk-lab-0001")
    model = Model.objects.create(provider=provider, name="fake-model-a")
    Price.objects.create(model=model, input=Decimal(1), output=Decimal(2))
    # As an old version or the shell could leave it: no validation on this path.
    Provider.objects.filter(pk=provider.pk).update(timeout_seconds=999_999_999, max_retries=32_767)
    return Provider.objects.get(pk=provider.pk)


def _call(sleeps: Sleeps) -> tuple[calls.CallRecord, ProviderError]:
    record = calls.CallRecord()
    request = ChatRequest(model="lab/fake-model-a", messages=(Message("user", "Say hello"),))

    async def go() -> None:
        async for _ in calls.stream_chat(request, caller=calls.Caller(source="cli"), record=record, sleep=sleeps):
            pass

    with pytest.raises(ProviderError) as caught:
        async_to_sync(go)()
    return record, caught.value


def test_a_row_with_absurd_retries_is_retried_at_most_ten_times(absurd_provider: Provider,
                                                                upstream: FakeUpstream) -> None:
    upstream.mode = "500"
    sleeps = Sleeps()
    record, error = _call(sleeps)
    assert error.kind == "server"
    assert record.attempts == 11 and len(sleeps) == 10
    assert len(upstream.requests) == 11


def test_a_retry_after_past_the_time_limit_is_not_waited_for(absurd_provider: Provider,
                                                             upstream: FakeUpstream) -> None:
    """The row's time limit counts as 600 s: a Retry-After of a day fails the call at once."""
    upstream.set_mode("429", retry_after=86_400)
    sleeps = Sleeps()
    record, error = _call(sleeps)
    assert error.kind == "rate_limit" and "lab is rate limiting requests" in error.message
    assert sleeps == [] and record.attempts == 1


def test_a_retry_after_within_the_time_limit_is_waited_for(absurd_provider: Provider, upstream: FakeUpstream) -> None:
    upstream.fail_next("429", retry_after=599)
    sleeps = Sleeps()
    record = calls.CallRecord()
    request = ChatRequest(model="lab/fake-model-a", messages=(Message("user", "Say hello"),))

    async def go() -> None:
        async for _ in calls.stream_chat(request, caller=calls.Caller(source="cli"), record=record, sleep=sleeps):
            pass

    async_to_sync(go)()
    assert sleeps == [599.0] and record.status == "ok"


def test_the_connection_and_the_time_limit_message_use_the_bounded_limit(absurd_provider: Provider) -> None:
    from providers.services import connection_for

    assert connection_for(absurd_provider).timeout == 600.0
    assert (absurd_provider.time_limit, absurd_provider.retry_limit) == (600, 10)


# -- upgrading ---------------------------------------------------------------------------------------------------

BEFORE = [("providers", "0006_bounded_numbers_and_names")]
AFTER = [("providers", "0007_clamp_out_of_range_settings")]


@pytest.mark.django_db(transaction=True)
def test_upgrading_brings_absurd_rows_within_the_ranges() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    OldProvider, OldModel, OldRoute, OldDeployment = (apps.get_model("providers", name) for name in
                                                      ("Provider", "Model", "Route", "Deployment"))
    absurd = OldProvider.objects.create(name="absurd", kind="ollama", timeout_seconds=999_999_999, max_retries=32_767)
    sane = OldProvider.objects.create(name="sane", kind="ollama", timeout_seconds=45, max_retries=2)
    zero = OldModel.objects.create(provider=absurd, name="zero", context_window=0, max_output_tokens=2_000_000_000)
    known = OldModel.objects.create(provider=sane, name="known", context_window=128_000, max_output_tokens=None)
    route = OldRoute.objects.create(name="r", cache_ttl_seconds=2_000_000_000)
    deployment = OldDeployment.objects.create(route=route, model=known, priority=30_000, weight=0)

    executor.loader.build_graph()
    executor.migrate(AFTER)

    values = lambda model, pk, *fields: tuple(  # noqa: E731
        model.objects.filter(pk=pk).values_list(*fields).get())
    assert values(OldProvider, absurd.pk, "timeout_seconds", "max_retries") == (600, 10)
    assert values(OldProvider, sane.pk, "timeout_seconds", "max_retries") == (45, 2)
    assert values(OldModel, zero.pk, "context_window", "max_output_tokens") == (None, 100_000_000)
    assert values(OldModel, known.pk, "context_window", "max_output_tokens") == (128_000, None)
    assert values(OldRoute, route.pk, "cache_ttl_seconds") == (2_592_000,)
    assert values(OldDeployment, deployment.pk, "priority", "weight") == (1_000, 1)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db
def test_config_import_refuses_names_longer_than_an_address_takes() -> None:
    text = (f"providers:\n  - name: {'p' * 65}\n    kind: ollama\n    models:\n      - name: {'m' * 201}\n"
            f"routes:\n  - name: {'r' * 101}\n")
    with pytest.raises(ConfigError) as caught:
        config_import(load_yaml(text, {}), actor="import_config")
    assert caught.value.errors == [
        f"providers[0] ({'p' * 65}).name: Ensure this value has at most 64 characters (it has 65).",
        f"providers[0] ({'p' * 65}).models[0] ({'m' * 201}).name: Ensure this value has at most 200 characters "
        "(it has 201).",
        f"routes[0] ({'r' * 101}).name: Ensure this value has at most 100 characters (it has 101).",
    ]
