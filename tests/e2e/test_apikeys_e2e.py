"""API keys in a real browser: an admin issues a key, it works against the live gateway, then is revoked."""

import re
from collections.abc import Callable

import httpx
from playwright.sync_api import Dialog, Page, expect

from accounts.models import User
from gateway import apikeys
from gateway.models import ApiKey
from tests.e2e.conftest import readme_screenshot
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import make_providers


def test_an_admin_issues_a_key_that_works_until_revoked(make_user: Callable[..., User], sign_in: Callable[..., Page],
                                                        live_server_url: str, upstream: FakeUpstream) -> None:
    make_providers(upstream)
    owner = make_user("member", email="ann@example.com")
    page = sign_in(make_user("admin"))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("API keys")
    page.get_by_role("link", name="New key").click()
    page.get_by_label("Name").fill("billing app")
    page.get_by_label("Owner").select_option(label=owner.email)
    page.get_by_label("local/*").check()
    page.get_by_label("Requests per minute").fill("30")
    page.get_by_role("button", name="Make the key").click()
    raw = page.locator("#new-key").inner_text()
    assert re.fullmatch(r"ask-[a-z0-9]{8}[A-Za-z0-9]{40}", raw)

    answer = httpx.post(f"{live_server_url}/v1/chat/completions", headers={"Authorization": f"Bearer {raw}"},
                        json={"model": "local/fake-model-a", "messages": [{"role": "user", "content": "Hi"}]})
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == upstream.reply
    refused = httpx.post(f"{live_server_url}/v1/chat/completions", headers={"Authorization": f"Bearer {raw}"},
                         json={"model": "claude/fake-model-a", "messages": [{"role": "user", "content": "Hi"}]})
    assert refused.status_code == 403

    page.get_by_role("link", name="Back to API keys").click()
    row = page.get_by_role("row").filter(has_text="billing app")
    expect(row).to_contain_text(raw[:12])
    expect(row).to_contain_text(owner.email)
    expect(row).to_contain_text("30 req/min")
    expect(row.locator("td").nth(8)).to_have_text(re.compile(r"^just now$"))  # after the Team column
    assert raw not in page.content()
    readme_screenshot(page, "apikeys.png")

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke billing app").click()
    expect(page.locator(".messages")).to_contain_text("revoked")
    gone = httpx.get(f"{live_server_url}/v1/models", headers={"Authorization": f"Bearer {raw}"})
    assert gone.status_code == 401 and "revoked" in gone.json()["error"]["message"]


def _page_width(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def test_the_new_key_fits_the_page_and_copies_exactly(make_user: Callable[..., User], sign_in: Callable[..., Page],
                                                      upstream: FakeUpstream) -> None:
    make_providers(upstream)
    page = sign_in(make_user("admin"), next_path="/apikeys/add/")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_label("Name").fill("a script with a rather long name that goes on")
    page.get_by_label("claude/fake-model-a").check()
    page.get_by_role("button", name="Make the key").click()
    key = page.locator("#new-key")
    raw = key.inner_text()
    assert re.fullmatch(r"ask-[a-z0-9]{8}[A-Za-z0-9]{40}", raw)

    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 800})
        assert _page_width(page) <= width, f"the page is wider than a {width} px window"
        # The key stays inside its card, on as many lines as it takes.
        card, box = page.locator("section.card").bounding_box(), key.bounding_box()
        assert box["x"] >= card["x"] and box["x"] + box["width"] <= card["x"] + card["width"]

    example = page.locator("#key-example").inner_text()
    # The example uses the one model this key may use, named as the gateway names it.
    assert '"model": "claude/fake-model-a"' in example and f"Bearer {raw}" in example
    assert "PROVIDER/MODEL" not in example

    page.get_by_role("button", name="Copy the key").click()
    expect(page.get_by_role("button", name="Copy the key")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == raw
    page.get_by_role("button", name="Copy the example").click()
    assert page.evaluate("navigator.clipboard.readText()") == example


def test_revoking_a_key_asks_first(make_user: Callable[..., User], sign_in: Callable[..., Page]) -> None:
    key, _ = apikeys.api_key_create(name="ci <runner>", user=None, actor=None)
    page = sign_in(make_user("admin"), next_path="/apikeys/")
    questions: list[str] = []

    def answer(dialog: Dialog, accept: bool) -> None:
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    page.get_by_role("button", name="Revoke ci <runner>").click()
    expect(page.get_by_role("row").filter(has_text="ci <runner>")).to_contain_text("active")
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None

    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    with page.expect_navigation():
        page.get_by_role("button", name="Revoke ci <runner>").click()
    expect(page.locator(".messages")).to_contain_text(f"Key ci <runner> ({key.prefix}…) revoked")
    question = f"Revoke key ci <runner> ({key.prefix}…)? Whatever uses it is refused from then on."
    assert questions == [question, question]
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
