"""The catalog on a provider's page: the per-model enable switch, the bulk price edit, and what a sync says
it added."""

import re
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent
from providers.models import Model, Price, Provider
from providers.views import SYNC_NAMES_SHOWN
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider() -> Provider:
    return Provider.objects.create(name="lab", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")


def _model(provider: Provider, name: str, **prices: str) -> Model:
    model = Model.objects.create(provider=provider, name=name)
    if prices:
        Price.objects.create(model=model, **{k: Decimal(v) for k, v in prices.items()})
    return model


# -- the enable switch ---------------------------------------------------------------------------------------------


def test_the_switch_turns_a_model_off_in_place_and_is_audited(admin_client: Client, provider: Provider) -> None:
    model = _model(provider, "m")
    response = admin_client.post(reverse("model_set_enabled", args=[model.pk]), {"enabled": "0"},
                                 headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<tr id="model-{model.pk}">')  # the row only
    assert 'aria-checked="false"' in html and 'name="enabled" value="1"' in html
    model.refresh_from_db()
    assert model.enabled is False
    event = AuditEvent.objects.get(action="model.update")
    assert (event.target_id, event.details["enabled"]) == (str(model.pk), False)

    admin_client.post(reverse("model_set_enabled", args=[model.pk]), {"enabled": "1"}, headers={"HX-Request": "true"})
    model.refresh_from_db()
    assert model.enabled is True and AuditEvent.objects.filter(action="model.update").count() == 2


def test_the_switch_without_htmx_goes_back_to_the_catalog(admin_client: Client, provider: Provider) -> None:
    model = _model(provider, "m")
    response = admin_client.post(reverse("model_set_enabled", args=[model.pk]), {"enabled": "0"})
    assert response.status_code == 302
    assert response["Location"] == reverse("provider_detail", args=[provider.pk]) + "#models"
    model.refresh_from_db()
    assert model.enabled is False


def test_the_switch_setting_what_is_already_set_audits_nothing(admin_client: Client, provider: Provider) -> None:
    model = _model(provider, "m")
    admin_client.post(reverse("model_set_enabled", args=[model.pk]), {"enabled": "1"}, headers={"HX-Request": "true"})
    assert not AuditEvent.objects.filter(action="model.update").exists()


def test_the_switch_needs_post_and_a_csrf_token(provider: Provider, admin_user: object) -> None:
    model = _model(provider, "m")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.get(reverse("model_set_enabled", args=[model.pk])).status_code == 405
    assert client.post(reverse("model_set_enabled", args=[model.pk]), {"enabled": "0"}).status_code == 403
    model.refresh_from_db()
    assert model.enabled is True


def test_an_archived_providers_models_have_no_switch(admin_client: Client, provider: Provider) -> None:
    model = _model(provider, "m")
    Provider.objects.filter(pk=provider.pk).update(archived_at="2026-01-01T00:00:00Z", enabled=False)
    html = admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()
    assert reverse("model_set_enabled", args=[model.pk]) not in html
    assert admin_client.post(reverse("model_set_enabled", args=[model.pk]), {"enabled": "0"}).status_code == 404


def test_the_catalog_row_has_the_switch_and_a_checkbox_for_the_bulk_edit(admin_client: Client,
                                                                         provider: Provider) -> None:
    model = _model(provider, "m" * 200)
    html = admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()
    assert f'<input type="checkbox" name="model" value="{model.pk}" form="bulk-prices"' in html
    assert f'action="{reverse("model_bulk_prices", args=[provider.pk])}"' in html
    assert 'role="switch" aria-checked="true"' in html
    # A long name is cut by the stylesheet and whole in the title.
    assert f'class="truncate" href="{reverse("model_detail", args=[model.pk])}" title="{"m" * 200}"' in html


# -- the bulk price edit ------------------------------------------------------------------------------------------


def _bulk(models: list[Model], **prices: str) -> dict[str, object]:
    return {"models": [m.pk for m in models], "price-tiers-TOTAL_FORMS": "1", "price-tiers-INITIAL_FORMS": "0",
            **{f"price-{k}": v for k, v in prices.items()}}


def test_bulk_edit_gives_each_chosen_model_a_new_version_audited_as_one_edit_each(admin_client: Client,
                                                                                 provider: Provider) -> None:
    a, b = _model(provider, "a"), _model(provider, "b", input="1", output="2")
    untouched = _model(provider, "c", input="5", output="6")
    response = admin_client.post(reverse("model_bulk_prices", args=[provider.pk]),
                                 _bulk([a, b], input="0.25", output="1.5", cache_read="0.025",
                                       effective_from="2027-01-01T00:00"))
    assert response.status_code == 302
    assert response["Location"] == reverse("provider_detail", args=[provider.pk]) + "#models"
    for model in (a, b):
        price = model.prices.order_by("-effective_from").first()
        assert (price.input, price.output, price.cache_read, price.cache_write) == (
            Decimal("0.25"), Decimal("1.5"), Decimal("0.025"), None)
        assert price.effective_from.year == 2027 and price.source == Price.Source.ADMIN
    assert b.prices.count() == 2  # the old version is kept
    assert untouched.prices.count() == 1
    events = AuditEvent.objects.filter(action="price.create")
    assert sorted(e.target_label for e in events) == ["lab/a", "lab/b"]
    messages = [str(m) for m in response.wsgi_request._messages]
    assert messages == ["New price version saved for 2 models."]


def test_bulk_edit_with_tiers_adds_them_to_every_version(admin_client: Client, provider: Provider) -> None:
    a, b = _model(provider, "a"), _model(provider, "b")
    data = _bulk([a, b], input="1", output="2")
    data.update({"price-tiers-0-above": "200000", "price-tiers-0-input": "2", "price-tiers-0-output": "4"})
    assert admin_client.post(reverse("model_bulk_prices", args=[provider.pk]), data).status_code == 302
    for model in (a, b):
        assert [(t.above, t.input) for t in model.current_price().tier_list] == [(200000, Decimal(2))]


def test_bulk_edit_says_which_models_already_had_the_prices(admin_client: Client, provider: Provider) -> None:
    a, b = _model(provider, "a", input="1", output="2"), _model(provider, "b")
    response = admin_client.post(reverse("model_bulk_prices", args=[provider.pk]), _bulk([a, b], input="1",
                                                                                         output="2"))
    assert a.prices.count() == 1 and b.prices.count() == 1
    assert [str(m) for m in response.wsgi_request._messages] == [
        "New price version saved for 1 model; 1 already had these prices."]


@pytest.mark.parametrize(("data", "message"), [
    ({"input": "-1", "output": "2"}, "Enter a price from 0 up: prices cannot be negative."),
    ({"input": "1"}, "This field is required."),
])
def test_bulk_edit_checks_prices_as_the_single_form_does(admin_client: Client, provider: Provider, data: dict,
                                                         message: str) -> None:
    a = _model(provider, "a")
    response = admin_client.post(reverse("model_bulk_prices", args=[provider.pk]), _bulk([a], **data))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Price.objects.exists() and not AuditEvent.objects.filter(action="price.create").exists()


def test_bulk_edit_needs_a_model_of_this_provider(admin_client: Client, provider: Provider) -> None:
    other = _model(Provider.objects.create(name="other", kind="ollama"), "x")
    url = reverse("model_bulk_prices", args=[provider.pk])
    html = admin_client.post(url, _bulk([], input="1", output="2")).content.decode()
    assert "Choose at least one model to price." in html
    html = admin_client.post(url, _bulk([other], input="1", output="2")).content.decode()
    assert "One of the chosen models is not in this provider&#x27;s catalog." in html
    assert not Price.objects.exists()


def test_bulk_edit_page_ticks_the_chosen_models_and_prefills_a_shared_price(admin_client: Client,
                                                                            provider: Provider) -> None:
    a, b = _model(provider, "a", input="0.5", output="1"), _model(provider, "b", input="0.5", output="1")
    c = _model(provider, "c")
    url = reverse("model_bulk_prices", args=[provider.pk])
    html = admin_client.get(f"{url}?model={a.pk}&model={b.pk}&model=junk").content.decode()
    assert f'value="{a.pk}" checked' in html and f'value="{b.pk}" checked' in html
    assert f'value="{c.pk}">' in html
    assert 'name="price-input" value="0.5"' in html
    # Priced differently (or not at all): nothing to prefill.
    html = admin_client.get(f"{url}?model={a.pk}&model={c.pk}").content.decode()
    assert 'name="price-input" value=' not in html


# -- what a sync says --------------------------------------------------------------------------------------------


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", html).split())


def test_sync_names_what_it_added_and_links_to_price_the_unpriced(admin_client: Client,
                                                                   upstream: FakeUpstream) -> None:
    upstream.models = ["gpt-4o-mini", "private-a", "private-b"]
    provider = Provider.objects.create(name="oa", kind="openai", base_url=upstream.openai_base_url, api_key="sk-x")
    html = admin_client.post(reverse("provider_sync", args=[provider.pk]), headers={"HX-Request": "true"}
                             ).content.decode()
    assert ("Added 3 models: gpt-4o-mini, private-a, private-b; 2 have no price yet: private-a, private-b. "
            "Set their prices.") in _text(html)
    ids = sorted(Model.objects.filter(name__startswith="private").values_list("pk", flat=True))
    link = reverse("model_bulk_prices", args=[provider.pk]) + f"?model={ids[0]}&amp;model={ids[1]}"
    assert f'<a href="{link}">Set their prices</a>' in html

    html = admin_client.post(reverse("provider_sync", args=[provider.pk]), headers={"HX-Request": "true"}
                             ).content.decode()
    assert "Sync done: no new models." in html


def test_sync_without_htmx_says_the_same_in_the_message(admin_client: Client, upstream: FakeUpstream) -> None:
    upstream.models = ["private-a"]
    provider = Provider.objects.create(name="oa", kind="openai", base_url=upstream.openai_base_url, api_key="sk-x")
    response = admin_client.post(reverse("provider_sync", args=[provider.pk]), follow=True)
    assert ("Added 1 model: private-a; 1 has no price yet: private-a. Set its price."
            in _text(response.content.decode()))


def test_sync_of_many_models_names_the_first_and_counts_the_rest(admin_client: Client,
                                                                 upstream: FakeUpstream) -> None:
    upstream.models = [f"m{i:02}" for i in range(SYNC_NAMES_SHOWN + 3)]
    provider = Provider.objects.create(name="oa", kind="openai", base_url=upstream.openai_base_url, api_key="sk-x")
    html = admin_client.post(reverse("provider_sync", args=[provider.pk]), headers={"HX-Request": "true"}
                             ).content.decode()
    shown = ", ".join(f"m{i:02}" for i in range(SYNC_NAMES_SHOWN))
    assert f"Added {SYNC_NAMES_SHOWN + 3} models: {shown} and 3 more;" in _text(html)


def test_sync_skips_a_listed_id_too_long_for_an_address(admin_client: Client, upstream: FakeUpstream) -> None:
    upstream.models = ["x" * 201, "ok-model"]
    provider = Provider.objects.create(name="oa", kind="openai", base_url=upstream.openai_base_url, api_key="sk-x")
    response = admin_client.post(reverse("provider_sync", args=[provider.pk]), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert list(provider.models.values_list("name", flat=True)) == ["ok-model"]
