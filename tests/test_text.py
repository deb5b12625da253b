"""Text the database cannot store (aspweb/text.py): found in any string, and refused with a 400 naming the field
by every page before a form, a filter or an inline edit looks it up or writes it. On PostgreSQL the pages below
answered a 500 (a NUL in a conversation's title, in the audit log's filter); elsewhere a form error or nothing."""

from collections.abc import Callable

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import AsyncClient, Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import User
from aspweb.text import first_text_problem, text_problem
from gateway.models import ApiKey
from playground.models import Conversation
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import OPENAI_MODEL, make_providers
from tests.usage_support import write
from usage.models import UsageRecord

PAGES = settings(max_examples=50, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize(("value", "problem"), [
    ("plain text, accents é and emoji 🙂", None),
    ("a\x00b", "a NUL character"),
    ("\ud800", "a lone surrogate (U+D800)"),
    ("end\udfff", "a lone surrogate (U+DFFF)"),
    ("\udc80\x00", "a NUL character"),
])
def test_text_problem_names_what_cannot_be_stored(value: str, problem: str | None) -> None:
    assert text_problem(value) == problem


def test_nul_can_be_let_through_and_a_document_is_searched_keys_and_all() -> None:
    assert text_problem("a\x00b", nul=False) is None
    assert first_text_problem({"a": ["ok", {"b\ud801": 1}]}) == (("a", 1, "b\ud801"), "a lone surrogate (U+D801)")
    assert first_text_problem({"a": ["ok", "x\x00"]}, nul=False) is None


@PAGES
@given(text=st.text(max_size=20), at=st.integers(min_value=0, max_value=20))
def test_a_conversation_title_with_a_nul_is_a_400(client_as: Callable[[str], Client], text: str, at: int) -> None:
    client = client_as("member")
    conversation = Conversation.objects.create(user=User.objects.get(email="member@example.com"), title="Kept")
    title = text[:at] + "\x00" + text[at:]
    response = client.post(reverse("playground_rename", args=[conversation.pk]), {"title": title})
    assert response.status_code == 400
    assert "The field 'title' contains a NUL character" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Kept"
    User.objects.all().delete()


@PAGES
@given(text=st.text(max_size=20), at=st.integers(min_value=0, max_value=20),
       page=st.sampled_from(["user_add", "apikey_add", "audit_list", "login"]))
def test_a_nul_in_any_field_of_a_page_is_a_400(client_as: Callable[[str], Client], text: str, at: int,
                                               page: str) -> None:
    client = client_as("admin")
    spoiled = text[:at] + "\x00" + text[at:]
    if page == "audit_list":
        response = client.get(reverse(page), {"type": spoiled})
    else:
        response = client.post(reverse(page), {"name": spoiled, "email": spoiled + "@example.com", "password": "x",
                                                "roles": ["Member"], "allowed_models": ["*"]})
    assert response.status_code == 400, response.content[:300]
    assert not ApiKey.objects.exists() and User.objects.count() == 1
    User.objects.all().delete()


def test_a_nul_in_a_field_name_or_the_address_is_a_400(admin_client: Client) -> None:
    assert admin_client.get(reverse("audit_list"), {"ty\x00pe": "x"}).status_code == 400
    assert admin_client.get("/providers/\x00/").status_code == 400


def test_the_gateway_is_left_to_check_its_own_requests(admin_client: Client) -> None:
    """/v1/ answers in its own JSON error shape, never the pages' plain 400."""
    response = admin_client.get("/v1/models", {"q": "\x00"})
    assert response.status_code == 401 and response["Content-Type"] == "application/json"


def test_clean_text_passes(client_as: Callable[[str], Client]) -> None:
    client = client_as("member")
    conversation = Conversation.objects.create(user=User.objects.get(email="member@example.com"), title="Old")
    client.post(reverse("playground_rename", args=[conversation.pk]), {"title": "New 🙂 é"})
    conversation.refresh_from_db()
    assert conversation.title == "New 🙂 é"


def test_under_asgi_too(db: None) -> None:
    """The check runs on the event loop under ASGI: a form posted there is refused the same way."""
    response = async_to_sync(AsyncClient().post)(reverse("login"), {"username": "a\x00@example.com", "password": "x"})
    assert response.status_code == 400
    assert "The field 'username' contains a NUL character" in response.content.decode()


def test_a_provider_error_message_the_database_cannot_hold_is_recorded_cleaned(db: None,
                                                                                upstream: FakeUpstream) -> None:
    """A provider's words go into the ledger as they come: a NUL or a lone surrogate in them once lost the call's
    record (PostgreSQL refused it; SQLite cannot encode a surrogate)."""
    model = make_providers(upstream)[OPENAI_MODEL]
    record = write(model, status="error", error_kind="server", error_message="bad \x00 byte and \ud800 half")
    assert UsageRecord.objects.get(pk=record.pk).error_message == "bad \ufffd byte and \ufffd half"


@pytest.mark.parametrize("argv", [
    ["apikey", "create", "--name", "ci \udcff"],
    ["apikey", "revoke", "ask-\udcff"],
    ["reprice", "--model", "local/\udcff", "--since", "2026-01-01"],
    ["ask", "hello", "--provider", "lo\udcffcal", "--model", "m"],
])
def test_a_command_argument_of_undecodable_bytes_is_a_command_error(db: None, argv: list[str]) -> None:
    """Python decodes argv bytes that are not UTF-8 as lone surrogates: the command says what is wrong."""
    with pytest.raises(CommandError, match="contains a lone surrogate"):
        call_command(*argv)
    assert not ApiKey.objects.exists()
