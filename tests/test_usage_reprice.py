"""Re-pricing: a price correction never changes history by itself; `reprice` (command or admin page) does,
for the range asked, showing the difference, audited, with the rollups following."""

from datetime import UTC, date, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent, User
from providers import services as provider_services
from providers.models import Model, Price, Provider
from tests.usage_support import raw_sums, rollup_sums, write
from usage import services
from usage.models import DailyUsage, UsageRecord

pytestmark = pytest.mark.django_db

MAY = datetime(2025, 5, 1, tzinfo=UTC)


@pytest.fixture
def model(admin_user: User) -> Model:
    provider = Provider.objects.create(name="local", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="fake-model-a")
    Price.objects.create(model=model, effective_from=datetime(2025, 4, 1, tzinfo=UTC), input=Decimal("1"),
                         output=Decimal("2"))
    # One call a day from May 1st to May 10th (UTC noon), 1000 tokens in and out: $0.003 each.
    for day in range(1, 11):
        write(model, created_at=datetime(2025, 5, day, 12, tzinfo=UTC), input_tokens=1000, output_tokens=1000)
    return model


def _correct_price_from_may_6(model: Model, admin_user: User) -> None:
    """The admin finds the real price was $2 / $4 from May 6th on."""
    provider_services.price_set(model=model, prices={"input": Decimal("2"), "output": Decimal("4")},
                                actor=admin_user, effective_from=datetime(2025, 5, 6, tzinfo=UTC))


def _costs() -> list[Decimal]:
    return list(UsageRecord.objects.order_by("created_at").values_list("cost", flat=True))


def test_a_price_correction_alone_changes_no_recorded_cost(model: Model, admin_user: User) -> None:
    before = _costs()
    _correct_price_from_may_6(model, admin_user)
    assert _costs() == before == [Decimal("0.003")] * 10


def test_a_dry_run_shows_the_difference_and_changes_nothing(model: Model, admin_user: User) -> None:
    _correct_price_from_may_6(model, admin_user)
    rollup, audit = rollup_sums(), AuditEvent.objects.count()
    result = services.usage_reprice(model=model, since=MAY, actor=admin_user, dry_run=True)
    assert (result.records, result.changed, result.applied) == (10, 5, False)
    assert (result.old_total, result.new_total, result.delta) == (Decimal("0.03"), Decimal("0.045"),
                                                                  Decimal("0.015"))
    assert _costs() == [Decimal("0.003")] * 10
    assert rollup_sums() == rollup and AuditEvent.objects.count() == audit


def test_repricing_changes_records_and_rollups_and_is_audited(model: Model, admin_user: User,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "REPRICE_BATCH", 3)  # several batches, one partly changed
    _correct_price_from_may_6(model, admin_user)
    new_price = model.prices.get(effective_from=datetime(2025, 5, 6, tzinfo=UTC))
    result = services.usage_reprice(model=model, since=MAY, actor=admin_user)
    assert (result.records, result.changed, result.delta, result.applied) == (10, 5, Decimal("0.015"), True)
    assert _costs() == [Decimal("0.003")] * 5 + [Decimal("0.006")] * 5
    assert set(UsageRecord.objects.filter(created_at__gte=new_price.effective_from)
               .values_list("price", flat=True)) == {new_price.pk}
    assert rollup_sums() == raw_sums()
    assert DailyUsage.objects.get(day=date(2025, 5, 7)).cost == Decimal("0.006")
    event = AuditEvent.objects.get(action="usage.reprice")
    assert (event.actor, event.target_type, event.target_id) == (admin_user, "model", str(model.pk))
    assert event.details == {"since": MAY.isoformat(), "until": "", "records": 10, "changed": 5,
                             "old_total": "0.0300000000", "new_total": "0.0450000000", "delta": "0.0150000000"}
    # Done once: a second run finds nothing to change and writes nothing.
    again = services.usage_reprice(model=model, since=MAY, actor=admin_user)
    assert (again.changed, again.delta) == (0, 0)
    assert AuditEvent.objects.filter(action="usage.reprice").count() == 1


def test_repricing_respects_the_range(model: Model, admin_user: User) -> None:
    _correct_price_from_may_6(model, admin_user)
    result = services.usage_reprice(model=model, since=datetime(2025, 5, 8, tzinfo=UTC),
                                    until=datetime(2025, 5, 9, tzinfo=UTC), actor=admin_user)
    assert (result.records, result.changed) == (1, 1)
    assert _costs() == [Decimal("0.003")] * 7 + [Decimal("0.006")] + [Decimal("0.003")] * 2
    assert rollup_sums() == raw_sums()


def test_calls_recorded_without_a_price_get_one_from_a_backdated_version(admin_user: User) -> None:
    provider = Provider.objects.create(name="new", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="m")
    record = write(model, created_at=datetime(2025, 5, 2, tzinfo=UTC), input_tokens=1_000_000, output_tokens=0)
    assert (record.price, record.cost) == (None, 0)
    provider_services.price_set(model=model, prices={"input": Decimal("0.5"), "output": Decimal("1")},
                                actor=admin_user, effective_from=MAY)
    result = services.usage_reprice(model=model, since=MAY, actor=admin_user)
    record.refresh_from_db()
    assert (result.changed, record.cost, record.price.input) == (1, Decimal("0.5"), Decimal("0.5"))
    assert rollup_sums() == raw_sums()


def test_an_unpriced_call_priced_later_leaves_the_unpriced_counts(admin_user: User) -> None:
    provider = Provider.objects.create(name="new", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="m")
    record = write(model, created_at=datetime(2025, 5, 2, tzinfo=UTC), input_tokens=300, output_tokens=200)
    assert record.unpriced and DailyUsage.objects.get().unpriced == 1
    assert DailyUsage.objects.get().unpriced_tokens == 500
    provider_services.price_set(model=model, prices={"input": Decimal("1"), "output": Decimal("1")},
                                actor=admin_user, effective_from=MAY)
    services.usage_reprice(model=model, since=MAY, actor=admin_user)
    record.refresh_from_db()
    assert (record.unpriced, record.cost, record.computed_cost) == (False, Decimal("0.0005"), Decimal("0.0005"))
    row = DailyUsage.objects.get()
    assert (row.unpriced, row.unpriced_tokens, row.cost) == (0, 0, Decimal("0.0005"))
    assert rollup_sums() == raw_sums()


def test_a_cached_answer_stays_free_and_calls_without_tokens_are_not_changes(model: Model, admin_user: User) -> None:
    """A response-cache hit called no provider: re-pricing leaves it at $0. An error before anything was
    generated used no tokens: nothing to re-price, so it is no change, even though a correction puts
    another version in force at its time."""
    may_11 = datetime(2025, 5, 11, tzinfo=UTC)
    hit = write(model, created_at=may_11.replace(hour=13), cached=True, input_tokens=1000, output_tokens=1000)
    error = write(model, created_at=may_11.replace(hour=14), status="error", error_kind="server",
                  input_tokens=0, output_tokens=0)
    provider_services.price_set(model=model, prices={"input": Decimal("2"), "output": Decimal("4")},
                                actor=admin_user, effective_from=may_11)
    result = services.usage_reprice(model=model, since=may_11, actor=admin_user)
    assert (result.records, result.changed, result.delta) == (2, 0, 0)
    hit.refresh_from_db()
    error.refresh_from_db()
    assert (hit.cost, hit.price) == (0, None)
    assert error.price.effective_from == datetime(2025, 4, 1, tzinfo=UTC)
    assert not AuditEvent.objects.filter(action="usage.reprice").exists()
    assert rollup_sums() == raw_sums()


def test_the_command_prints_the_difference_and_audits_as_reprice(model: Model, admin_user: User) -> None:
    _correct_price_from_may_6(model, admin_user)
    out = StringIO()
    call_command("reprice", model="local/fake-model-a", since="2025-05-01", dry_run=True, stdout=out)
    text = out.getvalue()
    assert "Calls in range:  10" in text and "Calls changed:   5" in text
    assert "Old total:       $0.03" in text and "New total:       $0.045" in text
    assert "Difference:      +$0.015" in text and "Dry run: nothing was changed." in text
    assert _costs() == [Decimal("0.003")] * 10

    out = StringIO()
    call_command("reprice", model="local/fake-model-a", since="2025-05-01", until="2025-05-07", stdout=out)
    assert "Calls changed:   2" in out.getvalue() and "Re-priced; recorded in the audit log." in out.getvalue()
    event = AuditEvent.objects.get(action="usage.reprice")
    assert (event.actor, event.actor_label, event.details["delta"]) == (None, "reprice", "0.0060000000")
    assert event.details["until"] == "2025-05-08T00:00:00+00:00"  # the last day included, whole


@pytest.mark.parametrize(("options", "words"), [
    ({"model": "nope", "since": "2025-05-01"}, "use PROVIDER/MODEL"),
    ({"model": "ghost/x", "since": "2025-05-01"}, "no provider named 'ghost'"),
    ({"model": "local/x", "since": "2025-05-01"}, "has no model 'x'"),
    ({"model": "local/fake-model-a", "since": "May 1st"}, "is not a date"),
    ({"model": "local/fake-model-a", "since": "2025-05-02", "until": "2025-05-01"}, "--until is before --since"),
])
def test_the_command_refuses_bad_arguments_plainly(model: Model, options: dict, words: str) -> None:
    with pytest.raises(CommandError, match=words):
        call_command("reprice", stdout=StringIO(), **options)


def _admin(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_admins_preview_then_confirm_in_the_ui(model: Model, admin_user: User) -> None:
    client = _admin(admin_user)
    _correct_price_from_may_6(model, admin_user)
    page = client.get(reverse("model_detail", args=[model.pk])).content.decode()
    assert f'action="{reverse("usage_reprice", args=[model.pk])}"' in page

    url = reverse("usage_reprice", args=[model.pk])
    preview = client.get(url, {"since": "2025-05-01", "until": ""})
    html = preview.content.decode()
    assert preview.status_code == 200 and preview.context["preview"].changed == 5
    assert "+$0.015" in html and "Re-price 5 calls" in html
    assert _costs() == [Decimal("0.003")] * 10  # the preview changed nothing

    response = client.post(url, {"since": "2025-05-01", "until": ""})
    assert response.status_code == 302 and response["Location"] == reverse("model_detail", args=[model.pk])
    assert _costs()[-1] == Decimal("0.006")
    assert AuditEvent.objects.get(action="usage.reprice").actor == admin_user
    assert rollup_sums() == raw_sums()
    message = client.get(response["Location"]).content.decode()
    assert "Re-priced 5 of 10 calls" in message and "+$0.015" in message


def test_the_reprice_page_rejects_a_reversed_range(model: Model, admin_user: User) -> None:
    response = _admin(admin_user).post(reverse("usage_reprice", args=[model.pk]), {"since": "2025-05-02",
                                                                              "until": "2025-05-01"})
    assert response.status_code == 200 and "The start date is after the end date." in response.content.decode()
    assert not AuditEvent.objects.filter(action="usage.reprice").exists()


def test_a_price_set_from_now_leaves_earlier_unpriced_calls_and_the_pages_say_how_to_price_them(
        admin_user: User) -> None:
    provider = Provider.objects.create(name="new", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="m")
    write(model, created_at=datetime(2025, 5, 2, 9, tzinfo=UTC), input_tokens=1000, output_tokens=200)
    write(model, created_at=datetime(2025, 5, 3, 9, tzinfo=UTC), input_tokens=500, output_tokens=100)
    client = _admin(admin_user)

    page = client.get(reverse("model_detail", args=[model.pk])).content.decode()
    assert ("2 calls (1,800 tokens) were made without a price, the first on 2025-05-02. A version prices only "
            "calls made while it is in force: to price them, make this one effective from 2025-05-02 or earlier"
            ) in page

    # A version from May 10th prices nothing of before: the preview says so rather than "nothing to re-price".
    provider_services.price_set(model=model, prices={"input": Decimal("1"), "output": Decimal("1")},
                                actor=admin_user, effective_from=datetime(2025, 5, 10, tzinfo=UTC))
    preview = client.get(reverse("usage_reprice", args=[model.pk]), {"since": "2025-05-01", "until": ""})
    assert (preview.context["preview"].unpriced, preview.context["preview"].changed) == (2, 0)
    assert ("2 calls in the range stay without a price: no price version was in force at their time (the first "
            "on 2025-05-02)") in preview.content.decode()

    # Backdated, it prices them, and the pages have nothing more to say.
    provider_services.price_set(model=model, prices={"input": Decimal("1"), "output": Decimal("1")},
                                actor=admin_user, effective_from=datetime(2025, 5, 2, tzinfo=UTC))
    result = services.usage_reprice(model=model, since=MAY, actor=admin_user)
    assert (result.changed, result.unpriced) == (2, 0)
    assert 'id="unpriced-calls"' not in client.get(reverse("model_detail", args=[model.pk])).content.decode()


@pytest.mark.parametrize(("since", "until"), [("0001-01-01", "9999-12-31"), ("0001-01-01", ""),
                                              ("2025-05-01", "9999-12-30")])
def test_the_calendars_ends_are_no_bound_not_a_500(model: Model, admin_user: User, since: str, until: str) -> None:
    client = _admin(admin_user)
    _correct_price_from_may_6(model, admin_user)
    preview = client.get(reverse("usage_reprice", args=[model.pk]), {"since": since, "until": until})
    assert preview.status_code == 200 and preview.context["preview"].changed == 5
