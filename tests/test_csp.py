"""The Content-Security-Policy: every page sends it, and no template needs what it refuses."""

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

EXPECTED = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'none'"],
    "object-src": ["'none'"],
}
TEMPLATES = Path(settings.BASE_DIR) / "templates"
# What the policy refuses in markup: inline scripts (a <script> without src), inline event handlers,
# javascript: URLs, style attributes and <style> elements.
INLINE = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|javascript:|\sstyle\s*=|<style\b|\bhx-on\b|\bhx-vars\b|js:",
    re.IGNORECASE,
)


def policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in directives}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", "/nope/"])
def test_anonymous_pages_carry_the_policy(client: Client, path: str) -> None:
    assert policy(client.get(path)["Content-Security-Policy"]) == EXPECTED


@pytest.mark.parametrize(("role", "path"), [("member", "/playground/"), ("admin", "/routes/"),
                                            ("finance", "/costs/"), ("admin", "/audit/")])
def test_signed_in_pages_carry_the_policy(client_as: Callable[[str], Client], role: str, path: str) -> None:
    response = client_as(role).get(path)
    assert response.status_code == 200
    assert policy(response["Content-Security-Policy"]) == EXPECTED


def test_htmx_partials_carry_the_policy(client_as: Callable[[str], Client]) -> None:
    response = client_as("member").get("/notifications/bell/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert policy(response["Content-Security-Policy"]) == EXPECTED


def test_htmx_is_told_to_inject_no_style_and_evaluate_nothing(client_as: Callable[[str], Client]) -> None:
    html = client_as("member").get("/").content.decode()
    config = re.search(r"""<meta name="htmx-config" content='([^']*)'>""", html)
    assert config is not None
    assert json.loads(config.group(1)) == {"includeIndicatorStyles": False, "allowEval": False}


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=lambda path: path.name)
def test_no_template_needs_inline_script_or_style(template: Path) -> None:
    assert INLINE.findall(template.read_text()) == []


@pytest.mark.django_db
def test_the_gateways_json_goes_without_the_policy_a_page_needs() -> None:
    from tests.gateway_support import call

    answer = call("/v1/models", method="GET")  # no key: a JSON 401, built by the gateway like every answer of it
    assert answer.status == 401 and answer.headers["content-type"].startswith("application/json")
    assert "content-security-policy" not in answer.headers
