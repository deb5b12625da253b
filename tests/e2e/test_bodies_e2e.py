"""Logged prompts and answers in real Chromium: the calls list's search finds a call by a word of its prompt,
and its page shows the conversation and the answer to an admin, under the page's Content-Security-Policy; a
Finance user, who sees the call's cost, is told a body exists and sees none of it."""

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import User
from providers.models import Model, Price, Provider
from usage.services import usage_record_create


def _seed(owner: User) -> None:
    provider = Provider.objects.create(name="labs", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="fast-model")
    Price.objects.create(model=model, effective_from=datetime(2024, 1, 1, tzinfo=UTC), input=Decimal("2"),
                         output=Decimal("8"))
    common = {"provider": provider, "model": model, "status": "ok", "source": "gateway", "user": owner,
              "input_tokens": 20, "output_tokens": 10, "created_at": timezone.now()}
    usage_record_create(**common, body={
        "request": {"system": "Answer in one line.", "parameters": {"temperature": 0.1},
                    "messages": [{"role": "user", "content": "What is the capital of Zanzibar?"}]},
        "answer": {"text": "Zanzibar City, on Unguja.", "finish_reason": "stop"}})
    usage_record_create(**common, body={"request": {"messages": [{"role": "user", "content": "Unrelated words"}]},
                                        "answer": {"text": "Fine."}})


def test_a_call_found_by_its_prompt_shows_its_conversation(page: Page, sign_in: Callable[..., Page],
                                                           make_user: Callable[..., User]) -> None:
    owner = make_user("member", email="owner@example.com")
    _seed(owner)
    sign_in(make_user("admin"))
    page.goto("/calls/")
    expect(page.locator("table.calls tbody tr")).to_have_count(2)
    page.get_by_label("Search").fill("zanzibar")
    page.get_by_label("Search").press("Enter")
    expect(page.locator("table.calls tbody tr")).to_have_count(1)
    page.locator("table.calls tbody tr a").first.click()
    body = page.locator("#call-body")
    expect(body).to_contain_text("Answer in one line.")
    expect(body).to_contain_text("What is the capital of Zanzibar?")
    expect(page.locator("#call-answer")).to_contain_text("Zanzibar City, on Unguja.")


def test_finance_is_told_a_body_exists_and_reads_none_of_it(page: Page, sign_in: Callable[..., Page],
                                                            make_user: Callable[..., User]) -> None:
    _seed(make_user("member", email="owner@example.com"))
    sign_in(make_user("finance"))
    page.goto("/calls/?q=zanzibar")
    expect(page.locator("table.calls tbody tr td.empty")).to_have_count(1)  # no body search for Finance
    page.goto("/calls/")
    page.locator("table.calls tbody tr a").first.click()
    expect(page.locator("#call-body-withheld")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("Zanzibar")
