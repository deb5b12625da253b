"""The playground in real Chromium against uvicorn and the fake upstream, which sends a chunk every 0.1 s:
answers grow on screen token by token, a reload or a second tab picks a stream up again, Stop keeps a
partial answer, compared models stream at once, Regenerate keeps the earlier answer as a version."""

import re
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from playwright.sync_api import Locator, Page, expect

from accounts.models import User
from playground.models import Answer
from providers.models import Model, Price
from tests.e2e.conftest import readme_screenshot, watch_console
from tests.fakes.upstream import FakeUpstream
from tests.playground_support import make_catalog

CHUNK_DELAY = 0.1
REPLY = (
    "Server-sent events keep one HTTP response open and write each token as it arrives. "
    "The **playground** shows the text as it streams, then renders the finished answer:\n\n"
    "```python\nasync for chunk in stream:\n    print(chunk)\n```\n"
)
# The length of a pane's streamed text, or null once the pane has finished.
TEXT_LENGTH = """pane => pane.dataset.status === "pending" || pane.dataset.status === "streaming"
    ? pane.querySelector(".answer-text").textContent.length : null"""
TOKENS_IN = re.compile(r"≈(\d+) tokens in")


@pytest.fixture
def catalog(live_server_url: str, upstream: FakeUpstream) -> tuple[Model, Model]:
    models = make_catalog(upstream)
    upstream.reply = REPLY
    upstream.chunk_delay = CHUNK_DELAY
    return models


@pytest.fixture
def member_page(catalog: tuple[Model, Model], make_user: Callable[..., User], sign_in: Callable[..., Page]) -> Page:
    page = sign_in(make_user("member"))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Playground").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Playground")
    return page


def _choose(page: Page, label: str, model: Model) -> None:
    page.get_by_label(label, exact=True).select_option(value=str(model.pk))


def _pane_text_lengths(page: Page, pane: Locator, until: float) -> list[int]:
    """Sample how much text the pane shows, every 40 ms, until it finishes."""
    lengths = []
    while time.monotonic() < until:
        length = pane.evaluate(TEXT_LENGTH)
        if length is None:
            return lengths
        lengths.append(length)
        page.wait_for_timeout(40)
    raise AssertionError(f"the answer did not finish; lengths seen: {lengths}")


def _growth(lengths: list[int]) -> list[int]:
    """The distinct non-empty lengths seen while streaming, in order."""
    seen: list[int] = []
    for length in lengths:
        if length > 0 and (not seen or length != seen[-1]):
            seen.append(length)
    return seen


def test_an_answer_streams_token_by_token_then_renders_with_its_metrics(
    member_page: Page, catalog: tuple[Model, Model], upstream: FakeUpstream
) -> None:
    page = member_page
    cheap, _ = catalog
    _choose(page, "Model", cheap)
    prompt = page.get_by_label("Prompt", exact=True)
    prompt.fill("How do")
    prompt.press("Shift+Enter")  # a new line, not a send
    prompt.type("server-sent events work?")
    assert prompt.input_value() == "How do\nserver-sent events work?"
    # The estimate follows the typing: input at $1/1M, up to 1024 tokens out at $2/1M.
    expect(page.locator("#estimate")).to_contain_text("fake-model-a")
    expect(page.locator("#estimate")).to_contain_text("up to 1,024 out")

    prompt.press("Enter")
    pane = page.locator("article.pane").first
    expect(pane).to_have_attribute("data-status", "pending")
    expect(prompt).to_have_value("")  # emptied for the next prompt
    # The estimate of the next prompt counts the one just sent, though the composer is empty.
    estimate = page.locator("#estimate .estimate")
    expect(estimate).to_contain_text(re.compile(r"≈[1-9]\d* tokens in"))
    sent_tokens = int(TOKENS_IN.search(estimate.inner_text())[1])
    lengths = _pane_text_lengths(page, pane, until=time.monotonic() + 30)

    growth = _growth(lengths)
    assert len(growth) >= 5, f"text should grow chunk by chunk, saw {lengths}"
    assert growth == sorted(growth)
    expect(pane).to_have_attribute("data-status", "ok")
    # While streaming the text was plain; the finished answer is rendered Markdown.
    expect(pane.locator(".answer-body strong")).to_have_text("playground")
    expect(pane.locator(".answer-body pre code")).to_contain_text("async for chunk in stream:")
    assert growth[-1] < len(REPLY) + 5
    metrics = pane.locator("dl.metrics")
    for label in ("Input", "Output", "Cost", "Latency", "TTFT", "Speed"):
        expect(metrics).to_contain_text(label)
    expect(metrics).to_contain_text("tok/s")
    expect(metrics).to_contain_text("$0.0000")
    assert upstream.last_request.body["messages"][-1]["content"] == "How do\nserver-sent events work?"
    # Once answered, the estimate counts the answer too.
    expect(estimate).not_to_contain_text(f"≈{sent_tokens} tokens in")
    assert int(TOKENS_IN.search(estimate.inner_text())[1]) > sent_tokens + 30

    # The conversation is saved and listed; its URL names it.
    expect(page.locator("#pg-history a[aria-current]")).to_have_text("How do server-sent events work?")
    assert "/playground/c/" in page.url

    # A second turn continues the thread; Regenerate answers the last one again.
    prompt.fill("And how does Stop work?")
    prompt.press("Enter")
    expect(page.locator("section.turn")).to_have_count(2)
    expect(page.locator("section.turn").nth(1).locator("article.pane")).to_have_attribute("data-status", "ok",
                                                                                          timeout=20_000)
    readme_screenshot(page, "playground.png")

    # Regenerate keeps the first answer: the turn shows versions, the new one first.
    second = page.locator("section.turn").nth(1)
    first_answer = second.locator("article.pane").get_attribute("id")
    page.get_by_role("button", name="Regenerate").click()
    expect(second.locator("article.pane")).to_have_attribute("data-status", "pending")
    expect(second.locator(".version-label")).to_have_text("2 of 2")
    expect(second.locator("article.pane")).to_have_attribute("data-status", "ok", timeout=20_000)
    assert second.locator("article.pane").get_attribute("id") != first_answer
    assert len(upstream.requests) == 3
    assert [m["role"] for m in upstream.last_request.body["messages"]] == ["user", "assistant", "user"]
    second.get_by_role("button", name="Previous version").click()
    expect(second.locator(".version-label")).to_have_text("1 of 2")
    expect(second.locator("article.pane")).to_have_attribute("id", first_answer)
    expect(second.locator("article.pane .answer-body strong")).to_have_text("playground")
    expect(second.get_by_role("button", name="Previous version")).to_be_disabled()
    second.get_by_role("button", name="Next version").click()
    expect(second.locator(".version-label")).to_have_text("2 of 2")
    expect(second.locator("article.pane")).not_to_have_attribute("id", first_answer)
    assert Answer.objects.filter(status=Answer.Status.OK, cost__gt=0).count() == 3  # every answer kept, priced


def test_stop_keeps_the_partial_answer_marked_stopped(member_page: Page, catalog: tuple[Model, Model],
                                                      upstream: FakeUpstream) -> None:
    page = member_page
    _choose(page, "Model", catalog[0])
    page.get_by_label("Prompt", exact=True).fill("Tell me a long story")
    page.get_by_label("Prompt", exact=True).press("Enter")
    pane = page.locator("article.pane").first
    text = pane.locator(".answer-text")
    expect(text).to_contain_text("Server-sent events keep")  # a few chunks in

    pane.get_by_role("button", name="Stop").click()

    expect(pane).to_have_attribute("data-status", "stopped")
    expect(pane.locator(".mark-stopped")).to_have_text("stopped")
    shown = pane.locator(".answer-body").inner_text()
    answer = Answer.objects.get()
    assert answer.status == Answer.Status.STOPPED
    assert shown.startswith("Server-sent events keep") and len(answer.content) < len(REPLY)
    assert answer.content.startswith(shown.split("\n")[0][:20])
    expect(pane.locator("dl.metrics")).to_contain_text("Latency")
    # Nothing reconnects: the partial answer stays as it was.
    page.wait_for_timeout(1000)
    answer.refresh_from_db()
    assert answer.status == Answer.Status.STOPPED and len(upstream.requests) == 1
    assert upstream.last_request.client_disconnected


def test_edit_and_resend_replaces_the_last_prompt(member_page: Page, catalog: tuple[Model, Model],
                                                  upstream: FakeUpstream) -> None:
    upstream.chunk_delay = 0.0
    page = member_page
    _choose(page, "Model", catalog[0])
    page.get_by_label("Prompt", exact=True).fill("Waht is SSE?")
    page.get_by_label("Prompt", exact=True).press("Enter")
    expect(page.locator("article.pane")).to_have_attribute("data-status", "ok")

    page.get_by_role("button", name="Edit and resend").click()
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("Waht is SSE?")
    expect(page.get_by_text("Editing your last prompt")).to_be_visible()
    page.get_by_label("Prompt", exact=True).fill("What is SSE?")
    page.get_by_label("Prompt", exact=True).press("Enter")

    expect(page.locator(".prompt-text")).to_have_text("What is SSE?")
    expect(page.locator("section.turn")).to_have_count(1)
    expect(page.locator("article.pane")).to_have_attribute("data-status", "ok")
    expect(page.get_by_text("Editing your last prompt")).to_be_hidden()
    assert upstream.last_request.body["messages"] == [{"role": "user", "content": "What is SSE?"}]


def test_compare_streams_two_models_at_once_and_marks_the_cheapest_and_fastest(
    member_page: Page, catalog: tuple[Model, Model], upstream: FakeUpstream
) -> None:
    page = member_page
    cheap, dear = catalog
    _choose(page, "Model", cheap)
    page.get_by_text("Compare with up to 3 more models").click()
    _choose(page, "Model 2", dear)
    page.get_by_label("Prompt", exact=True).fill("Explain server-sent events in two sentences.")
    expect(page.locator("#estimate .estimate")).to_have_count(2)
    page.get_by_label("Prompt", exact=True).press("Enter")

    panes = page.locator("article.pane")
    expect(panes).to_have_count(2)
    both_growing = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lengths = [panes.nth(i).evaluate(TEXT_LENGTH) for i in (0, 1)]
        statuses = [panes.nth(i).get_attribute("data-status") for i in (0, 1)]
        if all(n is not None and 0 < n < len(REPLY) - 20 for n in lengths):
            both_growing = True
        if all(status == "ok" for status in statuses):
            break
        page.wait_for_timeout(50)
    assert both_growing, "both panes should have been streaming at the same time"

    for i in (0, 1):
        expect(panes.nth(i)).to_have_attribute("data-status", "ok")
        metrics = panes.nth(i).locator("dl.metrics")
        for label in ("Input", "Output", "Cost", "Latency", "TTFT", "Speed"):
            expect(metrics).to_contain_text(label)
    expect(panes.nth(0).locator(".mark-cheapest")).to_have_text("cheapest")
    expect(panes.nth(1).locator(".mark-cheapest")).to_have_count(0)
    expect(page.locator(".mark-fastest")).to_have_count(1)
    assert len(upstream.requests) == 2
    # The next prompt's estimate, per model, before it is sent: the conversation so far counts as input.
    page.get_by_label("Prompt", exact=True).fill("Now compare them with WebSockets, with an example of each.")
    estimate = page.locator("#estimate .estimate").first
    expect(estimate).to_contain_text(re.compile(r"≈([6-9]\d|\d{3,}) tokens in"))
    readme_screenshot(page, "playground-compare.png")


def _send(page: Page, model: Model, prompt: str = "Tell me about server-sent events") -> Locator:
    _choose(page, "Model", model)
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_label("Prompt", exact=True).press("Enter")
    return page.locator("article.pane").first


def test_a_reload_mid_stream_picks_the_answer_up_again(member_page: Page, catalog: tuple[Model, Model],
                                                       upstream: FakeUpstream) -> None:
    page = member_page
    pane = _send(page, catalog[0])
    expect(pane.locator(".answer-text")).to_contain_text("Server-sent events keep")  # a few chunks in
    expect(page).to_have_url(re.compile(r"/playground/c/\d+/$"))

    page.reload()

    # The text so far at once, then the rest as it comes: the answer is still being generated.
    pane = page.locator("article.pane").first
    expect(pane).to_have_attribute("data-status", "streaming")
    expect(pane.locator(".answer-text")).to_contain_text("Server-sent events keep")
    growth = _growth(_pane_text_lengths(page, pane, until=time.monotonic() + 30))
    assert len(growth) >= 3 and growth == sorted(growth), growth
    expect(pane).to_have_attribute("data-status", "ok")
    expect(pane.locator(".mark-stopped")).to_have_count(0)
    expect(pane.locator(".answer-body pre code")).to_contain_text("async for chunk in stream:")
    answer = Answer.objects.get()
    assert answer.status == Answer.Status.OK and answer.content == REPLY
    assert len(upstream.requests) == 1 and not upstream.last_request.client_disconnected


def test_a_second_tab_follows_the_answer_live(member_page: Page, catalog: tuple[Model, Model],
                                              upstream: FakeUpstream) -> None:
    page = member_page
    pane = _send(page, catalog[0])
    expect(pane.locator(".answer-text")).to_contain_text("Server-sent events keep")
    expect(page).to_have_url(re.compile(r"/playground/c/\d+/$"))

    other = page.context.new_page()
    check = watch_console(other)
    other.goto(page.url)
    other_pane = other.locator("article.pane").first
    expect(other_pane).to_have_attribute("data-status", "streaming")
    growth = _growth(_pane_text_lengths(other, other_pane, until=time.monotonic() + 30))
    assert len(growth) >= 3 and growth == sorted(growth), growth
    for each in (pane, other_pane):
        expect(each).to_have_attribute("data-status", "ok")
        expect(each.locator(".answer-body strong")).to_have_text("playground")
    assert len(upstream.requests) == 1
    other.close()
    check()


def test_stop_all_in_compare_mode_stops_every_pane_cleanly(member_page: Page, catalog: tuple[Model, Model],
                                                           upstream: FakeUpstream) -> None:
    # The page fixture fails the test on any console error, htmx's oobErrorNoTarget among them.
    page = member_page
    cheap, dear = catalog
    _choose(page, "Model", cheap)
    page.get_by_text("Compare with up to 3 more models").click()
    _choose(page, "Model 2", dear)
    page.get_by_label("Prompt", exact=True).fill("Tell me a long story")
    page.get_by_label("Prompt", exact=True).press("Enter")
    panes = page.locator("article.pane")
    for i in (0, 1):
        expect(panes.nth(i).locator(".answer-text")).to_contain_text("Server-sent events keep")

    page.locator("[data-stop-all]").click()

    for i in (0, 1):
        expect(panes.nth(i)).to_have_attribute("data-status", "stopped")
        expect(panes.nth(i).locator(".mark-stopped")).to_have_text("stopped")
    expect(page.locator("[data-stop-all]")).to_be_hidden()
    page.wait_for_timeout(500)  # any late response would have landed
    assert {a.status for a in Answer.objects.all()} == {Answer.Status.STOPPED}
    assert len(upstream.requests) == 2


def test_stop_all_stops_every_one_of_three_panes(member_page: Page, catalog: tuple[Model, Model],
                                                 upstream: FakeUpstream) -> None:
    # Three Stop requests at once: none of them may be dropped while another is in flight.
    page = member_page
    cheap, dear = catalog
    third = Model.objects.create(provider=cheap.provider, name="fake-model-c")
    Price.objects.create(model=third, input=Decimal("2"), output=Decimal("4"))
    page.reload()
    _choose(page, "Model", cheap)
    page.get_by_text("Compare with up to 3 more models").click()
    _choose(page, "Model 2", dear)
    _choose(page, "Model 3", third)
    page.get_by_label("Prompt", exact=True).fill("Tell me a long story")
    page.get_by_label("Prompt", exact=True).press("Enter")
    panes = page.locator("article.pane")
    for i in range(3):
        expect(panes.nth(i).locator(".answer-text")).to_contain_text("Server-sent events keep")

    page.locator("[data-stop-all]").click()

    for i in range(3):
        expect(panes.nth(i)).to_have_attribute("data-status", "stopped")
    page.wait_for_timeout(500)
    assert [a.status for a in Answer.objects.all()] == [Answer.Status.STOPPED] * 3
