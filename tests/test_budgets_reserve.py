"""Hard limits through the real call path against the fake upstream: the worst case is reserved before any
provider is contacted, a call that does not fit is refused in plain words, the usage record settles the
reservation in its own transaction, and a call that never records cannot hold money for ever."""

import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connections
from django.utils import timezone

from budgets import services
from budgets.models import BudgetPeriod
from providers import calls
from providers import services as provider_services
from providers.adapters.base import ChatRequest, Message
from providers.models import Model, Price, PriceTier, Provider
from tests import gateway_support
from tests.budgets_support import ON_POSTGRESQL, SQLITE_REASON, make_budget, period_of, spend
from tests.budgets_support import held as held_by
from tests.fakes.upstream import FakeUpstream
from usage.models import DailyUsage, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

CALLER = calls.Caller(source="cli")
PROMPT = "Say hello to the budget"
# The prompt's bound (providers/bounds.py): its 23 UTF-8 bytes, one message's allowance (32) and the
# request's (256).
PROMPT_BOUND = 23 + 32 + 256
INPUT_PRICE, OUTPUT_PRICE = Decimal("1"), Decimal("2")  # per 1M tokens


@pytest.fixture
def model(upstream: FakeUpstream) -> Model:
    provider = Provider.objects.create(name="local", kind="openai_compatible", base_url=upstream.openai_base_url,
                                       api_key="sk-local-0001", max_retries=0)
    model = Model.objects.create(provider=provider, name="fake-model-a")
    Price.objects.create(model=model, input=INPUT_PRICE, output=OUTPUT_PRICE)
    return model


def _request(**kwargs: object) -> ChatRequest:
    return ChatRequest(model="local/fake-model-a", messages=(Message("user", PROMPT),), **kwargs)


def worst_case(output_tokens: int, input_tokens: int = PROMPT_BOUND) -> Decimal:
    """Worked out here independently: the prompt's bound at $1 per 1M plus output at $2 per 1M."""
    return (input_tokens * INPUT_PRICE + output_tokens * OUTPUT_PRICE) / 1_000_000


def _reservations_during(request: ChatRequest, caller: calls.Caller = CALLER) -> tuple[list[Decimal], calls.CallRecord]:
    """Run a call and return the reservations held while its first chunk arrives."""
    record, held = calls.CallRecord(), []

    async def go() -> None:
        async for _ in calls.stream_chat(request, caller=caller, record=record):
            if not held:
                held.extend(await sync_to_async(held_by)(record.request_id))

    async_to_sync(go)()
    return held, record


def test_a_call_reserves_its_worst_case_and_its_usage_record_settles_it(model: Model, upstream: FakeUpstream) -> None:
    budget = make_budget(amount=Decimal(1), hard_limit=True)
    request = _request(max_tokens=100)
    upstream.usage = {"input_tokens": 40, "output_tokens": 25}

    held, record = _reservations_during(request)

    assert held == [worst_case(100)]
    period = period_of(budget)
    row = UsageRecord.objects.get(request_id=record.request_id)
    assert row.cost == Decimal("0.00009")  # 40 x $1 + 25 x $2 per 1M: the real cost replaced the worst case
    assert (period.spent, period.reserved) == (row.cost, 0)
    assert not held_by()


def test_without_max_tokens_the_default_cap_is_reserved_and_sent(model: Model, upstream: FakeUpstream,
                                                                 settings: object) -> None:
    settings.BUDGET_DEFAULT_MAX_TOKENS = 1000
    make_budget(amount=Decimal(1), hard_limit=True)

    held, _ = _reservations_during(_request())

    assert held == [worst_case(1000)]
    # The provider is held to the cap that was reserved: the answer cannot outgrow it.
    assert upstream.last_request.body["max_tokens"] == 1000


def test_without_a_hard_limit_a_request_without_max_tokens_is_sent_as_it_is(model: Model, upstream: FakeUpstream,
                                                                            settings: object) -> None:
    settings.BUDGET_DEFAULT_MAX_TOKENS = 1000
    make_budget(amount=Decimal(1))  # soft: nothing reserved, nothing capped

    calls.complete_chat(_request(), caller=CALLER)

    assert "max_tokens" not in upstream.last_request.body


@pytest.mark.parametrize(("prompt", "utf8_bytes"), [
    ("a" * 600, 600),  # one letter repeated: 600 tokens at one a byte, 150 at four characters a token
    ("预算" * 100, 600),  # CJK: 3 bytes a character
    ("💸" * 150, 600),  # emoji: 4 bytes each
    ("1234567890" * 60, 600),  # a long digit run
])
def test_the_reservation_bounds_the_prompt_by_its_bytes(model: Model, prompt: str, utf8_bytes: int) -> None:
    make_budget(amount=Decimal(1), hard_limit=True)
    request = ChatRequest(model="local/fake-model-a", messages=(Message("user", prompt),), max_tokens=100)

    held, _ = _reservations_during(request)

    assert held == [worst_case(100, input_tokens=utf8_bytes + 32 + 256)]


@pytest.mark.parametrize(("above", "expected"), [
    (PROMPT_BOUND - 1, (PROMPT_BOUND * 4 + 100 * 8) / Decimal(1_000_000)),  # the bound reaches the tier
    (PROMPT_BOUND, worst_case(100)),  # a tier applies strictly above its threshold: the base prices
])
def test_the_reservation_prices_the_tier_the_bound_reaches(model: Model, above: int, expected: Decimal) -> None:
    PriceTier.objects.create(price=model.prices.get(), above=above, input=Decimal(4), output=Decimal(8))
    make_budget(amount=Decimal(1), hard_limit=True)

    held, _ = _reservations_during(_request(max_tokens=100))

    assert held == [expected]


@pytest.mark.parametrize(("fields", "output_tokens"), [
    ({"name": "claude-sonnet-4-5"}, 64_000),  # the published maximum the preset gives the model
    ({"name": "my-claude", "context_window": 200_000}, 200_000),  # no maximum known: the context window
    ({"name": "my-claude"}, 128_000),  # nothing known: the largest maximum any Claude model publishes
])
def test_a_provider_that_ignores_max_tokens_reserves_the_models_whole_output(fields: dict,
                                                                            output_tokens: int) -> None:
    provider = Provider.objects.create(name="cli", kind="claude_cli")
    model = provider_services.model_add(provider=provider, actor=None, with_default_price=False, **fields)
    Price.objects.create(model=model, input=Decimal(3), output=Decimal(15))
    budget = make_budget(amount=Decimal(10), hard_limit=True)
    request = ChatRequest(model=f"cli/{model.name}", messages=(Message("user", PROMPT),), max_tokens=100)
    record = calls.CallRecord()

    prepared = calls.prepare(request, caller=CALLER, record=record)

    assert prepared.refused is None
    held = held_by()
    assert held == [(PROMPT_BOUND * 3 + output_tokens * 15) / Decimal(1_000_000)]
    # Not made after all: what it held goes back at once.
    calls.release(record)
    assert not held_by() and period_of(budget).reserved == 0


def test_a_call_that_does_not_fit_is_refused_before_any_provider_is_contacted(model: Model,
                                                                                  upstream: FakeUpstream) -> None:
    budget = make_budget("Lab monthly", scope="model", model=model, amount=Decimal("0.001"), hard_limit=True)
    spend(model, "0.0004")
    request = _request(max_tokens=1000)  # could cost about $0.002

    with pytest.raises(calls.CallError) as caught:
        calls.complete_chat(request, caller=CALLER)

    assert caught.value.code == "budget_exceeded"
    assert caught.value.message.startswith("Budget “Lab monthly” (model local/fake-model-a, monthly) has $0.0006 left "
                                           "of $0.001, and this call could cost up to $0.002")
    assert upstream.requests == []
    refused = UsageRecord.objects.get(error_kind="budget_exceeded")
    assert (refused.status, refused.cost, refused.error_message) == ("error", 0, caught.value.message)
    assert (period_of(budget).spent, period_of(budget).reserved) == (Decimal("0.0004"), 0)
    assert not held_by()


def test_reservations_are_all_or_none(model: Model, upstream: FakeUpstream) -> None:
    roomy = make_budget("Everything", amount=Decimal(10), hard_limit=True)
    tight = make_budget("This model", scope="model", model=model, amount=Decimal("0.0001"), hard_limit=True)
    soft = make_budget("Soft", scope="provider", provider=model.provider, amount=Decimal("0.0001"))

    with pytest.raises(calls.CallError, match="This model"):
        calls.complete_chat(_request(max_tokens=1000), caller=CALLER)

    # The roomy budget's hold was rolled back with the tight one's refusal; the soft one holds nothing ever.
    assert [period_of(budget).reserved for budget in [roomy, tight]] == [0, 0]
    assert not BudgetPeriod.objects.filter(budget=soft, reserved__gt=0).exists()
    assert not held_by()
    assert upstream.requests == []


def test_a_soft_budget_is_charged_but_never_refuses(model: Model, upstream: FakeUpstream) -> None:
    soft = make_budget(amount=Decimal("0.00001"))
    upstream.usage = {"input_tokens": 1000, "output_tokens": 1000}

    completion, record = calls.complete_chat(_request(max_tokens=2000), caller=CALLER)

    assert completion.text == upstream.reply
    assert period_of(soft).spent == record.cost == Decimal("0.003") > soft.amount
    assert not held_by()


def test_an_api_key_budget_answers_429_budget_exceeded_at_the_gateway(upstream: FakeUpstream,
                                                                       make_user: object) -> None:
    gateway_support.make_providers(upstream)
    key, secret = gateway_support.make_key(make_user("member"))
    make_budget("Key budget", scope="api_key", api_key=key, amount=Decimal("0.0001"), hard_limit=True)

    answer = gateway_support.call("/v1/chat/completions", gateway_support.chat_body(max_tokens=1000), key=secret)

    assert answer.status == 429
    assert answer.json["error"]["code"] == "budget_exceeded"
    assert "Key budget" in answer.json["error"]["message"]
    assert upstream.requests == []


def test_the_reservation_of_a_call_that_never_recorded_expires(model: Model, upstream: FakeUpstream) -> None:
    budget = make_budget(amount=Decimal("0.003"), hard_limit=True)
    request = _request(max_tokens=1000)
    cost = worst_case(1000)
    # A call that reserved and whose worker died: no usage record will ever settle it.
    crashed = uuid.uuid4()
    services.budget_reserve(request_id=crashed, provider=model.provider, model=model, user=None, api_key=None,
                            cost=cost, ttl=timedelta(minutes=15), now=timezone.now() - timedelta(minutes=20))
    live = uuid.uuid4()
    services.budget_reserve(request_id=live, provider=model.provider, model=model, user=None, api_key=None,
                            cost=Decimal("0.0001"), ttl=timedelta(minutes=15))
    assert period_of(budget).reserved == cost + Decimal("0.0001")

    # Nothing else fits beside the dead call's hold; the refused reservation releases what expired, then fits.
    completion, record = calls.complete_chat(request, caller=CALLER)

    assert completion.text == upstream.reply
    assert not held_by(crashed)
    assert held_by(live)
    period = period_of(budget)
    assert (period.spent, period.reserved) == (record.cost, Decimal("0.0001"))


def test_the_sweep_releases_expired_reservations_and_a_late_record_does_not_release_twice(model: Model) -> None:
    budget = make_budget(amount=Decimal(1), hard_limit=True)
    late = uuid.uuid4()
    services.budget_reserve(request_id=late, provider=model.provider, model=model, user=None, api_key=None,
                            cost=Decimal("0.5"), ttl=timedelta(minutes=15), now=timezone.now() - timedelta(hours=1))
    services.budget_reserve(request_id=uuid.uuid4(), provider=model.provider, model=model, user=None,
                            api_key=None, cost=Decimal("0.25"), ttl=timedelta(minutes=15))

    result = services.budgets_sweep()
    assert result.released == 1
    assert period_of(budget).reserved == Decimal("0.25")
    assert services.budgets_sweep().released == 0

    # The call was only slow after all: its record adds its cost and takes nothing more off `reserved`.
    spend(model, "0.1", request_id=late)
    assert (period_of(budget).spent, period_of(budget).reserved) == (Decimal("0.1"), Decimal("0.25"))


def test_a_budget_made_mid_month_counts_the_month_so_far_and_the_sweep_reconciles(model: Model) -> None:
    spend(model, "0.2")
    spend(model, "0.3")
    budget = make_budget(amount=Decimal(1))
    spend(model, "0.05")
    assert period_of(budget).spent == Decimal("0.55")

    # A counter that drifted (re-pricing, a rebuilt rollup) is set back to the ledger by the sweep.
    BudgetPeriod.objects.filter(budget=budget).update(spent=Decimal("9"), reserved=Decimal("1"))
    assert services.budgets_sweep().reconciled == 1
    assert (period_of(budget).spent, period_of(budget).reserved) == (Decimal("0.55"), 0)
    assert period_of(budget).spent == DailyUsage.objects.get().cost


@pytest.mark.skipif(not ON_POSTGRESQL, reason=SQLITE_REASON)
def test_fifty_concurrent_calls_against_a_budget_for_ten(model: Model, upstream: FakeUpstream) -> None:
    request = _request(max_tokens=500)
    cost = worst_case(500)
    # The fake reports the worst case as the real usage, so no finished call leaves room for another.
    upstream.usage = {"input_tokens": PROMPT_BOUND, "output_tokens": 500}
    upstream.chunk_delay = 0.01
    budget = make_budget(amount=cost * 10, hard_limit=True)
    callers = 50
    start = threading.Barrier(callers)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            start.wait()
            calls.complete_chat(request, caller=CALLER)
            outcomes.append("ok")
        except calls.CallError as exc:
            outcomes.append(exc.code)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert sorted(set(outcomes)) == ["budget_exceeded", "ok"]
    assert outcomes.count("ok") == 10
    assert outcomes.count("budget_exceeded") == 40
    assert len(upstream.requests) == 10  # the refused 40 never reached the provider
    period = period_of(budget)
    recorded = sum(r.cost for r in UsageRecord.objects.filter(status="ok"))
    assert period.spent == recorded <= budget.amount + cost
    assert period.reserved == 0 and not held_by()
    assert UsageRecord.objects.filter(error_kind="budget_exceeded").count() == 40


# Prompts whose tokens outnumber the four-characters-a-token estimate, each of exactly 600 UTF-8 bytes.
ADVERSARIAL = (
    "a" * 600,  # one letter repeated: 150 tokens by the estimate, up to 600 for a byte-level tokenizer
    "预算" * 100,  # CJK: 200 characters, 3 bytes each
    "💸" * 150,  # emoji: 150 characters, 4 bytes each
    "1234567890" * 60,  # a long digit run
    "for(i=0;i<n;i++){a[i]^=b[i];}\n" * 20,  # code
)
ADVERSARIAL_BOUND = 600 + 32 + 256  # the bytes, one message's allowance and the request's


@pytest.mark.skipif(not ON_POSTGRESQL, reason=SQLITE_REASON)
def test_fifty_concurrent_gateway_calls_with_adversarial_prompts_stay_within_the_hard_limit(
    upstream: FakeUpstream, make_user: object
) -> None:
    assert {len(prompt.encode("utf-8")) for prompt in ADVERSARIAL} == {600}
    model = gateway_support.make_providers(upstream)[gateway_support.OPENAI_MODEL]
    model.prices.all().delete()
    Price.objects.create(model=model, input=Decimal("0.1"), output=Decimal("0.2"))
    _, secret = gateway_support.make_key(make_user("member"))
    budget = make_budget(amount=Decimal("0.002"), hard_limit=True)
    # Every prompt billed as a real tokenizer at its worst could bill it, one token a byte, with every
    # template allowance used up too, and every answer as long as its cap.
    upstream.usage = {"input_tokens": ADVERSARIAL_BOUND, "output_tokens": 50}
    upstream.chunk_delay = 0.01
    worst = (ADVERSARIAL_BOUND * Decimal("0.1") + 50 * Decimal("0.2")) / 1_000_000  # $0.0000988 a call
    callers = 50
    start = threading.Barrier(callers)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def caller(n: int) -> None:
        body = {"model": gateway_support.OPENAI_MODEL, "max_tokens": 50,
                "messages": [{"role": "user", "content": ADVERSARIAL[n % len(ADVERSARIAL)]}]}
        try:
            start.wait()
            answer = gateway_support.call("/v1/chat/completions", body, key=secret)
            statuses.append(answer.status)
            if answer.status == 429:
                assert answer.json["error"]["code"] == "budget_exceeded"
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert len(statuses) == callers and set(statuses) == {200, 429}
    period = period_of(budget)
    ok = UsageRecord.objects.filter(status="ok")
    assert period.spent == sum(record.cost for record in ok) <= budget.amount
    # Each call really cost its reservation, so exactly as many fit as twenty worst cases do in $0.002.
    assert statuses.count(200) == ok.count() == len(upstream.requests) == 20
    assert all(record.cost == worst for record in ok)
    assert period.reserved == 0 and not held_by()
