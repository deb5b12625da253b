"""API keys in a real browser: an admin issues a key, it works against the live gateway, then is revoked."""

import re
from collections.abc import Callable

import httpx
from playwright.sync_api import Page, expect

from accounts.models import User
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
    expect(row.locator("td").nth(6)).to_have_text(re.compile(r"^(now|\d+ seconds? ago|a second ago)$"))
    assert raw not in page.content()
    readme_screenshot(page, "apikeys.png")

    row.get_by_role("button", name="Revoke billing app").click()
    expect(page.locator(".messages")).to_contain_text("revoked")
    gone = httpx.get(f"{live_server_url}/v1/models", headers={"Authorization": f"Bearer {raw}"})
    assert gone.status_code == 401 and "revoked" in gone.json()["error"]["message"]
