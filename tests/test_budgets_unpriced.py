"""A model without a price under a hard limit: nothing bounds what its call costs, so a hard-limit budget that
covers the call refuses it before any provider is contacted, and says what to do; a soft budget, or no budget,
lets it through (it is then counted apart as unpriced)."""

from collections.abc import Callable
from decimal import Decimal

import pytest

from accounts.models import User
from playground.models import Answer
from providers import calls
from providers.adapters.base import ChatRequest, Message
from providers.models import Model
from tests import gateway_support
from tests.budgets_support import ensure_role_groups, held, make_budget
from tests.fakes.upstream import FakeUpstream
from tests.playground_support import answers_of, send_data
from tests.test_playground_stream import send, stream
from usage.models import UsageRecord

CALLER = calls.Caller(source="cli")


def _refusal(model: Model, budget: str, covers: str) -> str:
    return (f"Model {model.provider.name}/{model.name} has no price, and budget “{budget}” ({covers}, monthly) is a "
            "hard limit: a call whose cost cannot be known in advance is refused. An admin must set the model's "
            f"price in aspweb's catalog (Providers, {model.provider.name}, {model.name}) before it can be called.")


@pytest.fixture
def unpriced(upstream: FakeUpstream, db: None) -> Model:
    return gateway_support.make_providers(upstream)["local/fake-model-b"]


def _request() -> ChatRequest:
    return ChatRequest(model="local/fake-model-b", messages=(Message("user", "Say hello"),), max_tokens=10)


@pytest.mark.django_db(transaction=True)
def test_a_hard_limit_refuses_an_unpriced_model_before_any_provider_is_contacted(unpriced: Model,
                                                                                 upstream: FakeUpstream) -> None:
    make_budget("Lab", scope="model", model=unpriced, amount=Decimal(100), hard_limit=True)

    with pytest.raises(calls.CallError) as caught:
        calls.complete_chat(_request(), caller=CALLER)

    assert caught.value.code == "unpriced"
    assert caught.value.message == _refusal(unpriced, "Lab", "model local/fake-model-b")
    assert upstream.requests == []
    assert not held()
    refused = UsageRecord.objects.get()
    assert (refused.status, refused.error_kind, refused.cost) == ("error", "unpriced", 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("budget", [{"hard_limit": False}, None], ids=["soft budget", "no budget"])
def test_without_a_hard_limit_an_unpriced_model_is_called_and_counted_apart(unpriced: Model, upstream: FakeUpstream,
                                                                            budget: dict | None) -> None:
    if budget is not None:
        make_budget(amount=Decimal("0.000001"), **budget)

    completion, record = calls.complete_chat(_request(), caller=CALLER)

    assert completion.text == upstream.reply and len(upstream.requests) == 1
    row = UsageRecord.objects.get(request_id=record.request_id)
    assert (row.status, row.cost, row.unpriced) == ("ok", 0, True)


@pytest.mark.django_db(transaction=True)
def test_a_priced_model_beside_it_is_not_refused(unpriced: Model, upstream: FakeUpstream) -> None:
    make_budget(amount=Decimal(100), hard_limit=True)

    completion, _ = calls.complete_chat(ChatRequest(model=gateway_support.OPENAI_MODEL, max_tokens=10,
                                                    messages=(Message("user", "Say hello"),)), caller=CALLER)

    assert completion.text == upstream.reply


@pytest.mark.django_db(transaction=True)
def test_the_gateway_answers_403_model_unpriced_in_openai_s_error_shape(unpriced: Model, upstream: FakeUpstream,
                                                                         make_user: Callable[..., User]) -> None:
    _, secret = gateway_support.make_key(make_user("member"))
    make_budget("Team", amount=Decimal(100), hard_limit=True)

    answer = gateway_support.call("/v1/chat/completions",
                                  gateway_support.chat_body("local/fake-model-b", max_tokens=10), key=secret)

    # 403, not 429: no retry helps until an admin sets the price, and the SDKs retry a 429.
    assert answer.status == 403
    assert answer.json == {"error": {"message": _refusal(unpriced, "Team", "every call"),
                                     "type": "permission_error", "param": None, "code": "model_unpriced"}}
    assert upstream.requests == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("keep", [True, False], ids=["stored request", "request built by the stream"])
def test_the_playground_shows_the_refusal_in_the_pane(unpriced: Model, upstream: FakeUpstream,
                                                      make_user: Callable[..., User], keep: bool) -> None:
    ensure_role_groups()
    member = make_user("member")
    make_budget("Team", amount=Decimal(100), hard_limit=True)
    [answer] = answers_of(send(member, send_data(unpriced), keep=keep).pk)

    result = stream(member, answer)

    assert result.deltas == []
    answer.refresh_from_db()
    assert (answer.status, answer.error_kind) == (Answer.Status.ERROR, "unpriced")
    assert answer.error_message == _refusal(unpriced, "Team", "every call")
    assert "has no price" in result.done
    assert upstream.requests == [] and not held()
