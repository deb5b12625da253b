"""The playground's tools in Chromium: models named with their provider, copying an answer and a snippet
to the clipboard, the request as code in a dialog, the running cost after each answer, and long titles."""

import json
import shlex
from collections.abc import Callable
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from accounts.models import User
from aspweb.money import money
from playground.models import Answer, Conversation
from providers.models import Model, Price, Provider
from tests.fakes.upstream import FakeUpstream
from tests.playground_support import API_KEY, make_catalog
from usage.models import UsageRecord

REPLY = "Copy **this** answer:\n\n```python\nprint('as Markdown')\n```\n"


@pytest.fixture
def catalog(live_server_url: str, upstream: FakeUpstream) -> tuple[Model, Model]:
    models = make_catalog(upstream)
    upstream.reply = REPLY
    upstream.chunk_delay = 0.0
    return models


@pytest.fixture
def member_page(catalog: tuple[Model, Model], make_user: Callable[..., User], sign_in: Callable[..., Page]) -> Page:
    page = sign_in(make_user("member"), next_path="/playground/")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    return page


def _clipboard(page: Page) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def _send(page: Page, model: Model, prompt: str) -> None:
    page.get_by_label("Model", exact=True).select_option(value=str(model.pk))
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_label("Prompt", exact=True).press("Enter")


def _ledger_total() -> Decimal:
    return sum((record.cost for record in UsageRecord.objects.all()), Decimal(0))


def test_the_picker_tells_two_providers_models_of_one_name_apart(member_page: Page, catalog: tuple[Model, Model],
                                                                 upstream: FakeUpstream) -> None:
    edge = Provider.objects.create(name="edge", kind="openai_compatible", base_url=upstream.openai_base_url,
                                   api_key=API_KEY)
    Model.objects.create(provider=catalog[0].provider, name="fake-small")
    theirs = Model.objects.create(provider=edge, name="fake-small")
    page = member_page
    page.reload()
    picker = page.get_by_label("Model", exact=True)
    picker.select_option(value=str(theirs.pk))
    # A closed select shows only the chosen option's text: it must name the provider.
    assert picker.evaluate("select => select.selectedOptions[0].textContent").startswith("edge · fake-small")
    page.get_by_label("Prompt", exact=True).fill("Hello")
    expect(page.locator("#estimate")).to_contain_text("edge · fake-small")
    page.get_by_label("Prompt", exact=True).press("Enter")
    expect(page.locator(".pane-model")).to_have_text("edge · fake-small")


def test_copy_puts_the_answers_markdown_on_the_clipboard_and_the_cost_follows_each_answer(
    member_page: Page, catalog: tuple[Model, Model]
) -> None:
    page = member_page
    _send(page, catalog[0], "Give me something to copy")
    pane = page.locator("article.pane")
    expect(pane).to_have_attribute("data-status", "ok")
    cost = page.locator("#pg-cost")
    first = _ledger_total()
    assert first > 0
    expect(cost).to_contain_text(f"Spent so far: {money(first)} on 1 answer")

    button = pane.locator("button[data-copy-text]")  # its name changes as it says Copied
    expect(button).to_have_text("Copy")
    button.click()
    expect(button).to_have_text("Copied")
    assert _clipboard(page) == REPLY  # the raw Markdown, not the rendered HTML
    expect(button).to_have_text("Copy", timeout=5000)

    # A second, dearer answer (the other model): the heading adds it up.
    _send(page, catalog[1], "And once more")
    expect(page.locator("article.pane").nth(1)).to_have_attribute("data-status", "ok")
    total = _ledger_total()
    assert total > first
    expect(cost).to_contain_text(f"Spent so far: {money(total)} on 2 answers")
    conversation = Conversation.objects.get()
    assert Answer.objects.filter(turn__conversation=conversation, request_id__isnull=False).count() == 2


def test_view_code_opens_the_request_in_a_dialog_with_copyable_snippets(member_page: Page,
                                                                        catalog: tuple[Model, Model]) -> None:
    page = member_page
    _send(page, catalog[0], "What is SSE?")
    expect(page.locator("article.pane")).to_have_attribute("data-status", "ok")
    page.get_by_label("Prompt", exact=True).fill("And WebSockets?")
    page.get_by_role("button", name="View code").click()

    dialog = page.get_by_role("dialog", name="The request as code")
    expect(dialog).to_be_visible()
    curl = dialog.locator("#pg-code-1-curl")
    expect(curl).to_contain_text("/v1/chat/completions")
    words = shlex.split(curl.inner_text())
    body = json.loads(words[words.index("-d") + 1])
    assert body["model"] == "lab/fake-model-a"
    assert [m["content"] for m in body["messages"]] == ["What is SSE?", REPLY, "And WebSockets?"]

    python = dialog.locator("figure[data-language=python]")
    copy = python.locator("button[data-copy-from]")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert _clipboard(page) == dialog.locator("#pg-code-1-python").text_content()
    assert 'os.environ["ASPWEB_API_KEY"]' in _clipboard(page)
    site = page.url.split("/playground")[0]
    expect(dialog.get_by_role("link", name="API keys")).to_have_attribute("href", f"{site}/apikeys/")

    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    # Opened again after a change, it shows the request as it is now.
    page.get_by_label("Prompt", exact=True).fill("Something else")
    page.get_by_role("button", name="View code").click()
    expect(dialog.locator("#pg-code-1-curl")).to_contain_text("Something else")


def test_a_long_title_keeps_to_one_line_and_an_overlong_one_is_refused(member_page: Page,
                                                                       catalog: tuple[Model, Model]) -> None:
    page = member_page
    _send(page, catalog[0], "Hello")
    expect(page.locator("article.pane")).to_have_attribute("data-status", "ok")
    page.get_by_text("Rename or delete").click()
    title = "A title long enough to need an ellipsis in the heading of the page and in the history " * 2
    title = title.strip()[:120]
    page.get_by_label("Title", exact=True).fill(title)
    page.get_by_role("button", name="Rename").click()

    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_attribute("title", title)
    one_line = heading.evaluate("h => [h.scrollWidth > h.clientWidth, getComputedStyle(h).textOverflow,"
                                " h.getBoundingClientRect().height < 2 * parseFloat(getComputedStyle(h).lineHeight)]")
    assert one_line == [True, "ellipsis", True]
    link = page.locator("#pg-history a[aria-current]")
    expect(link).to_have_attribute("title", title)
    assert link.evaluate("a => a.scrollWidth > a.clientWidth")

    # Past the field's maxlength (pasted by a script, or posted by hand): refused, saying why.
    page.get_by_text("Rename or delete").click()  # the renamed heading came back closed
    page.get_by_label("Title", exact=True).evaluate("input => { input.removeAttribute('maxlength'); "
                                                    "input.value = 'x'.repeat(300); }")
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("alert").filter(has_text="at most 120 characters")).to_be_visible()
    expect(heading).to_have_attribute("title", title)
    assert Conversation.objects.get().title == title


def test_a_stopped_answer_counts_in_the_running_cost(member_page: Page, catalog: tuple[Model, Model],
                                                     upstream: FakeUpstream) -> None:
    upstream.reply = "A long answer, word by word. " * 20
    upstream.chunk_delay = 0.1
    page = member_page
    _send(page, catalog[0], "Tell me a long story")
    pane = page.locator("article.pane")
    expect(pane.locator(".answer-text")).to_contain_text("A long answer")
    expect(page.locator("#pg-cost")).to_have_text("Nothing spent yet.")
    pane.get_by_role("button", name="Stop").click()
    expect(pane).to_have_attribute("data-status", "stopped")
    record = UsageRecord.objects.get()
    assert record.cost > 0
    expect(page.locator("#pg-cost")).to_contain_text(f"{money(record.cost)} on 1 answer")


def test_the_error_box_shows_only_when_there_is_an_error(member_page: Page, catalog: tuple[Model, Model]) -> None:
    page = member_page
    errors = page.locator("#composer-errors")
    expect(errors).to_be_hidden()  # no empty red bar above the models

    cheap, _ = catalog
    page.get_by_label("Model", exact=True).select_option(value=str(cheap.pk))
    page.get_by_text("Compare with up to 3 more models").click()
    page.get_by_label("Model 2", exact=True).select_option(value=str(cheap.pk))
    page.get_by_label("Prompt", exact=True).fill("Twice the same model")
    page.get_by_label("Prompt", exact=True).press("Enter")
    expect(errors).to_be_visible()
    expect(errors).to_contain_text("Pick each model once")

    page.get_by_label("Model 2", exact=True).select_option(value="")
    page.get_by_label("Prompt", exact=True).press("Enter")
    expect(page.locator("article.pane")).to_have_attribute("data-status", "ok")
    expect(errors).to_be_hidden()


def test_the_compare_pickers_share_a_row_and_on_a_phone_fit_the_screen(member_page: Page,
                                                                       catalog: tuple[Model, Model]) -> None:
    page = member_page
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_text("Compare with up to 3 more models").click()
    second, third = (page.get_by_label(f"Model {n}", exact=True).bounding_box() for n in (2, 3))
    assert second["y"] == third["y"] and third["x"] > second["x"] + second["width"]

    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_label("Model 4", exact=True)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_the_model_picker_shows_a_long_choice_whole(catalog: tuple[Model, Model], make_user: Callable[..., User],
                                                   sign_in: Callable[..., Page]) -> None:
    """A real provider's and model's names with the price make a long choice: the picker is wide enough to show
    it, not cut at "per 1"."""
    provider = Provider.objects.create(name="openai-production", kind="openai_compatible",
                                       base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="gpt-4.1-mini-2025-04-14")
    Price.objects.create(model=model, input=Decimal("0.4"), output=Decimal("1.6"))
    page = sign_in(make_user("member"), next_path="/playground/")
    page.set_viewport_size({"width": 1280, "height": 900})
    picker = page.get_by_label("Model", exact=True)
    picker.select_option(value=str(model.pk))
    # The chosen text's width in the picker's font, against the room the picker gives it (its arrow aside).
    text, room = picker.evaluate("""s => {
        const probe = document.createElement("span");
        probe.textContent = s.selectedOptions[0].text;
        probe.style.font = getComputedStyle(s).font;
        probe.style.whiteSpace = "pre";
        document.body.append(probe);
        const width = probe.getBoundingClientRect().width;
        probe.remove();
        return [width, s.clientWidth - 24];
    }""")
    assert text <= room, f"the choice needs {text:.0f} px, the picker gives it {room} px"
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_renaming_retitles_the_browser_tab(member_page: Page, catalog: tuple[Model, Model]) -> None:
    page = member_page
    _send(page, catalog[0], "Hello")
    expect(page.locator("article.pane")).to_have_attribute("data-status", "ok")
    expect(page).to_have_title("Hello · aspweb")
    page.get_by_text("Rename or delete").click()
    page.get_by_label("Title", exact=True).fill("Q3 <plans> & notes")
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Q3 <plans> & notes")
    expect(page).to_have_title("Q3 <plans> & notes · aspweb")


def test_a_long_prompt_scrolls_in_its_bubble(member_page: Page, catalog: tuple[Model, Model]) -> None:
    page = member_page
    _send(page, catalog[0], "\n".join(f"Line {n} of a pasted document." for n in range(400)))
    expect(page.locator("article.pane")).to_have_attribute("data-status", "ok")
    text = page.locator(".prompt-text")
    height, scrolls = text.evaluate("t => [t.getBoundingClientRect().height, t.scrollHeight > t.clientHeight]")
    assert height < 500 and scrolls
    expect(page.locator("article.pane")).to_be_in_viewport()


def test_on_a_phone_the_history_scrolls_away_instead_of_covering_the_answers(
        member_page: Page, catalog: tuple[Model, Model]) -> None:
    page = member_page
    page.set_viewport_size({"width": 390, "height": 844})
    _send(page, catalog[0], "\n".join(f"Line {n}" for n in range(30)))
    expect(page.locator("article.pane")).to_have_attribute("data-status", "ok")
    side = page.locator(".pg-side")
    page.evaluate("window.scrollTo(0, 0)")
    top = side.evaluate("s => s.getBoundingClientRect().top")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_function("window.scrollY > 200")
    scrolled = page.evaluate("window.scrollY")
    assert side.evaluate("s => s.getBoundingClientRect().top") == pytest.approx(top - scrolled, abs=1)


def test_on_a_phone_a_long_history_leaves_room_for_the_composer(member_page: Page,
                                                                catalog: tuple[Model, Model]) -> None:
    page = member_page
    member = User.objects.get()
    for n in range(30):
        Conversation.objects.create(user=member, title=f"Conversation {n}")
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    history = page.locator("#pg-history")
    expect(history.get_by_role("link")).to_have_count(30)
    assert history.evaluate("h => h.getBoundingClientRect().height") <= 0.3 * 844 + 1
    assert page.get_by_label("Prompt", exact=True).evaluate("p => p.getBoundingClientRect().top") < 2 * 844
