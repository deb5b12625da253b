"""Prompt and answer logging (usage/bodies.py): off unless turned on (per API key, globally, for the playground),
redacted and capped before it is stored, encrypted at rest, deleted after its retention, read by admins and the
call's owner only (each reading audited), and never in logs, the default CSV or the Django admin."""

import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from accounts.models import AuditEvent, User
from aspweb import settings as settings_module
from gateway.models import ApiKey
from providers import calls
from providers.adapters.base import ChatRequest, Message
from providers.models import Model
from tests.conftest import signed_in
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import OPENAI_MODEL, call, chat_body, live_server, make_key, make_providers
from usage import bodies, journal, services, tasks, writer
from usage.models import CallBody, UsageRecord

CHAT = "/v1/chat/completions"
SECRET_PROMPT = "Summarise the zanzibar quarterly memo"


@pytest.fixture
def models(db: None, upstream: FakeUpstream) -> dict[str, Model]:
    return make_providers(upstream)


def _ask(key: str, text: str = SECRET_PROMPT, **fields: Any) -> UsageRecord:
    body = chat_body(messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}],
                     temperature=0.2, **fields)
    answer = call(CHAT, body, key=key)
    assert answer.status == 200, answer.content
    return UsageRecord.objects.get(request_id=answer.headers["x-request-id"])


def _stored(record: UsageRecord) -> dict[str, Any]:
    return bodies.read(CallBody.objects.get(record=record).content)


# -- redaction and caps -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "kind"), [
    ("my key is sk-proj-abcdefghijklmnop1234567890XYZ ok", "api key"),
    ("anthropic sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv_wxyz-0123", "api key"),
    ("aspweb ask-3f9k2m7q" + "a" * 40, "api key"),
    ("aws AKIAIOSFODNN7EXAMPLE", "api key"),
    ("gh ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "api key"),
    ("google AIzaSyA-1234567890abcdefghijklmnopqrstu", "api key"),
    ("stripe sk_live_51Habcdefghijklmnop", "api key"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "token"),
    ("Authorization: Bearer abcdef0123456789abcdef", "token"),
    ('{"password": "hunter2hunter2"}', "secret"),
    ("client_secret=Zx81kQ0pLm", "secret"),
    ("write to jane.doe+work@example.co.uk please", "e-mail"),
    ("card 4111 1111 1111 1111 exp 12/29", "card number"),
    ("card 5500-0000-0000-0004", "card number"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "private key"),
])
def test_secrets_addresses_and_cards_are_redacted(text: str, kind: str) -> None:
    redacted = bodies.redact(text)
    assert f"[redacted: {kind}]" in redacted
    for secret in ("abcdefghijklmnop", "AbCdEfGh", "aaaaaaaaaa", "IOSFODNN7", "0123456789abcdefghij", "SyA-123",
                   "51Habcdef", "dozjgNry", "abcdef0123456789", "hunter2", "Zx81kQ0pLm", "jane.doe", "1111 1111",
                   "0000-0000", "MIIEowIBAAKCAQEA"):
        assert secret not in redacted


@pytest.mark.parametrize("text", [
    "order 4111 1111 1111 1112 shipped",  # fails the Luhn check: not a card number
    "call me at 555-0100, ticket 123456",
    "the password policy asks for 12 characters",
    "sk-short",
    "an@ sign and user at example dot com",
])
def test_text_that_only_looks_close_is_kept(text: str) -> None:
    assert bodies.redact(text) == text


def test_configured_patterns_are_redacted_too(settings: Any) -> None:
    settings.LOG_BODIES_REDACT_PATTERNS = [r"ACME-\d{6}"]
    assert bodies.redact("customer ACME-123456 asked") == "customer [redacted: pattern] asked"


def test_the_redaction_setting_refuses_what_is_not_a_list_of_patterns() -> None:
    assert settings_module._redact_patterns('["ACME-\\\\d+", "x[yz]"]') == ["ACME-\\d+", "x[yz]"]
    for raw in ("ACME", '"ACME"', '["("]', "[1]", '[""]'):
        with pytest.raises(ImproperlyConfigured, match="ASPWEB_LOG_BODIES_REDACT_PATTERNS"):
            settings_module._redact_patterns(raw)


def test_each_side_is_capped_and_marked(settings: Any) -> None:
    settings.LOG_BODIES_MAX_CHARS = 100
    prepared = bodies.prepare({"request": {"system": "s" * 60, "messages": [{"role": "user", "content": "u" * 90}]},
                               "answer": {"text": "a" * 99}})
    data = json.loads(prepared.content)
    assert data["request"]["system"] == "s" * 60
    # 60 of the system prompt, 4 of the role "user": 36 of the message are kept.
    assert data["request"]["messages"][0]["content"] == "u" * 36 + "[… 54 characters not logged]"
    assert data["answer"]["text"] == "a" * 99  # its own allowance
    assert prepared.truncated
    assert not bodies.prepare({"request": {"system": "s" * 100}, "answer": {"text": "a"}}).truncated


def test_a_secret_across_the_cap_is_redacted_whole_and_long_text_costs_little(settings: Any) -> None:
    settings.LOG_BODIES_MAX_CHARS = 100
    key = "sk-proj-" + "k" * 40
    data = json.loads(bodies.prepare({"request": {"system": "x" * 90 + " " + key}}).content)
    assert "kkkk" not in data["request"]["system"] and data["request"]["system"].startswith("x" * 90)
    settings.LOG_BODIES_MAX_CHARS = 32_000
    started = time.perf_counter()
    bodies.prepare({"request": {"system": "a" * 1_000_000}, "answer": {"text": "QUJD" * 250_000}})
    assert bodies.redact("b" * 200_000 + "@example.com")  # a word as long as a pasted blob, then an address
    assert time.perf_counter() - started < 2


def test_text_the_database_cannot_store_is_kept_as_a_replacement_character() -> None:
    data = json.loads(bodies.prepare({"request": {"system": "a\x00b\ud800c"}}).content)
    assert data["request"]["system"] == "a\ufffdb\ufffdc"


# -- turning it on and off -----------------------------------------------------------------------------------


def test_nothing_is_logged_unless_asked(models: dict[str, Model], member_user: User) -> None:
    _ask(make_key(member_user)[1])
    assert UsageRecord.objects.count() == 1 and not CallBody.objects.exists()


def test_a_key_that_logs_keeps_the_prompt_parameters_and_answer_encrypted(
        models: dict[str, Model], member_user: User, upstream: FakeUpstream) -> None:
    key = make_key(member_user, log_bodies=True)[1]
    record = _ask(key, f"{SECRET_PROMPT}; reply to bob@example.com", max_tokens=50)
    data = _stored(record)
    assert data["request"]["system"] == "You are terse."
    assert data["request"]["messages"] == [
        {"role": "user", "content": f"{SECRET_PROMPT}; reply to [redacted: e-mail]"}]
    assert data["request"]["parameters"]["temperature"] == 0.2 and data["request"]["parameters"]["max_tokens"] == 50
    assert data["answer"]["text"] == upstream.reply and data["answer"]["finish_reason"] == "stop"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT content, search_tokens FROM {CallBody._meta.db_table}")  # noqa: S608 - a model name
        (stored, tokens), = cursor.fetchall()
    assert stored.startswith("fernet1:") and "zanzibar" not in stored and "zanzibar" not in tokens
    assert bodies.token("zanzibar") in tokens


def test_tool_calls_and_tools_are_logged(models: dict[str, Model], member_user: User, upstream: FakeUpstream) -> None:
    upstream.tool_call = {"id": "call_1", "name": "get_weather", "arguments": {"city": "Oslo"}}
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    record = _ask(make_key(member_user, log_bodies=True)[1], "Weather in Oslo?", tools=[tool])
    data = _stored(record)
    assert data["request"]["tools"] == [tool]
    (logged,) = data["answer"]["tool_calls"]
    assert logged["name"] == "get_weather" and json.loads(logged["arguments"]) == {"city": "Oslo"}


def test_the_global_setting_logs_every_gateway_call_and_the_playground_apart(
        models: dict[str, Model], member_user: User, settings: Any) -> None:
    settings.LOG_BODIES = True
    record = _ask(make_key(member_user)[1])
    assert CallBody.objects.filter(record=record).exists()
    request = ChatRequest(model="fake-model-a", messages=(Message("user", "playground words"),))
    caller = calls.Caller(source="playground", user=member_user)
    _, played = calls.complete_chat(request, caller=caller, provider="local")
    assert not CallBody.objects.filter(record__request_id=played.request_id).exists()
    settings.LOG_BODIES, settings.LOG_BODIES_PLAYGROUND = False, True
    _, played = calls.complete_chat(request, caller=caller, provider="local")
    body = _stored(UsageRecord.objects.get(request_id=played.request_id))
    assert body["request"]["messages"][0]["content"] == "playground words"


def test_the_key_form_and_the_command_turn_it_on(models: dict[str, Model], admin_user: User) -> None:
    client = signed_in(admin_user)
    page = client.get("/apikeys/add/").content.decode()
    assert "Log prompts and answers" in page
    client.post("/apikeys/add/", {"name": "logged app", "log_bodies": "on"})
    client.post("/apikeys/add/", {"name": "quiet app"})
    assert ApiKey.objects.get(name="logged app").log_bodies and not ApiKey.objects.get(name="quiet app").log_bodies
    call_command("apikey", "create", "--name", "cli logged", "--log-bodies", stdout=StringIO(), stderr=StringIO())
    call_command("apikey", "create", "--name", "cli quiet", stdout=StringIO(), stderr=StringIO())
    assert ApiKey.objects.get(name="cli logged").log_bodies and not ApiKey.objects.get(name="cli quiet").log_bodies


def test_the_command_turns_it_on_and_off_for_an_existing_key(models: dict[str, Model], member_user: User) -> None:
    key, raw = make_key(member_user, name="app")
    out = StringIO()
    call_command("apikey", "log-bodies", key.prefix, "on", stdout=out)
    assert "now logs" in out.getvalue()
    _ask(raw)  # the key's cached row follows the change
    assert CallBody.objects.count() == 1
    listing = StringIO()
    call_command("apikey", "list", stdout=listing)
    assert listing.getvalue().rstrip().endswith("logs prompts and answers")
    out = StringIO()
    call_command("apikey", "log-bodies", key.prefix, "off", stdout=out)
    call_command("apikey", "log-bodies", key.prefix, "off", stdout=out)
    assert "now does not log" in out.getvalue() and "already does not log" in out.getvalue()
    _ask(raw)
    assert CallBody.objects.count() == 1
    event = AuditEvent.objects.filter(action="apikey.log_bodies").latest("id")
    assert event.details == {"log_bodies": {"from": True, "to": False}}


def test_the_journal_never_holds_a_body(models: dict[str, Model]) -> None:
    model = models[OPENAI_MODEL]
    entry = journal.encode({"provider": model.provider, "model": model, "source": "gateway", "status": "ok",
                            "body": {"request": {"system": SECRET_PROMPT}, "answer": {}}})
    assert b"zanzibar" not in entry and b"body" not in entry


def test_bodies_are_rotated_to_a_new_encryption_key(models: dict[str, Model], member_user: User,
                                                    settings: Any) -> None:
    old, new = list(settings.ENCRYPTION_KEYS), Fernet.generate_key().decode()
    record = _ask(make_key(member_user, log_bodies=True)[1])
    settings.ENCRYPTION_KEYS = [new, *old]
    call_command("rotate_encryption_key", stdout=StringIO(), stderr=StringIO())
    settings.ENCRYPTION_KEYS = [new]
    assert _stored(record)["request"]["messages"][0]["content"] == SECRET_PROMPT


# -- retention --------------------------------------------------------------------------------------------


def test_retention_deletes_expired_bodies_only(models: dict[str, Model], member_user: User, settings: Any) -> None:
    settings.LOG_BODIES_RETENTION_DAYS = 7
    key = make_key(member_user, log_bodies=True)[1]
    old, new = _ask(key), _ask(key)
    CallBody.objects.filter(record=old).update(created_at=timezone.now() - timedelta(days=7, minutes=1))
    CallBody.objects.filter(record=new).update(created_at=timezone.now() - timedelta(days=6, hours=23))
    tasks.call_bodies_expire()
    assert list(CallBody.objects.values_list("record", flat=True)) == [new.pk]
    assert UsageRecord.objects.count() == 2  # the ledger keeps every call
    assert services.call_bodies_expire(now=timezone.now() + timedelta(days=1)) == 1
    assert "usage.tasks.call_bodies_expire" in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}


# -- who reads it --------------------------------------------------------------------------------------------


@pytest.fixture
def logged(models: dict[str, Model], member_user: User) -> UsageRecord:
    return _ask(make_key(member_user, log_bodies=True)[1])


def _views() -> int:
    return AuditEvent.objects.filter(action="callbody.view").count()


def test_admins_and_the_owner_read_the_body_and_each_reading_is_audited(
        logged: UsageRecord, admin_user: User, member_user: User) -> None:
    url = f"/calls/{logged.request_id}/"
    for reader, views in ((admin_user, 1), (member_user, 2), (admin_user, 3)):
        html = signed_in(reader).get(url).content.decode()
        assert 'id="call-body"' in html and SECRET_PROMPT in html and "You are terse." in html
        assert _views() == views
    event = AuditEvent.objects.filter(action="callbody.view").latest("id")
    assert event.actor == admin_user and event.target_label == str(logged.request_id)


def test_nobody_else_reads_it(logged: UsageRecord, finance_user: User, make_user: Callable[..., User]) -> None:
    url = f"/calls/{logged.request_id}/"
    html = signed_in(finance_user).get(url).content.decode()  # Finance sees every call's cost, not its words
    assert 'id="call-body-withheld"' in html and SECRET_PROMPT not in html and "terse" not in html
    assert signed_in(make_user("member", "other@example.com")).get(url).status_code == 404
    assert _views() == 0


def test_a_call_without_a_body_says_nothing_of_one(models: dict[str, Model], admin_user: User,
                                                   member_user: User) -> None:
    record = _ask(make_key(member_user)[1])
    html = signed_in(admin_user).get(f"/calls/{record.request_id}/").content.decode()
    assert 'id="call-body' not in html and _views() == 0


# -- never where it should not be -----------------------------------------------------------------------------


def test_a_body_is_in_no_log_line(models: dict[str, Model], member_user: User, caplog: pytest.LogCaptureFixture,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    key = make_key(member_user, log_bodies=True)[1]
    _ask(key)

    def broken(**fields: Any) -> Any:
        raise RuntimeError("the ledger is down")

    # A record that cannot be written is logged with the call's record: never its prompt or answer.
    monkeypatch.setattr(writer, "usage_records_create", lambda specs: [broken(**spec) for spec in specs])
    call(CHAT, chat_body(messages=[{"role": "user", "content": SECRET_PROMPT}]), key=key)
    assert "Could not write the usage record" in caplog.text
    assert "zanzibar" not in caplog.text.lower() and "terse" not in caplog.text


def _export(user: User, query: str = "") -> str:
    response = signed_in(user).get(f"/calls/export.csv{query}")
    assert response.status_code == 200

    async def collect() -> list[bytes]:
        return [part async for part in response.streaming_content]

    return b"".join(async_to_sync(collect)()).decode()


def test_the_csv_has_bodies_only_when_asked_and_only_readable_ones(
        logged: UsageRecord, admin_user: User, finance_user: User) -> None:
    plain = _export(admin_user)
    assert "zanzibar" not in plain and "prompt_json" not in plain
    assert not AuditEvent.objects.filter(action="callbody.export").exists()
    full = _export(admin_user, "?bodies=1")
    header, row = full.splitlines()[:2]
    assert header.endswith("prompt_json,answer_json") and SECRET_PROMPT in row
    assert AuditEvent.objects.filter(action="callbody.export", actor=admin_user).count() == 1
    finance = _export(finance_user, "?bodies=1")
    assert "prompt_json" in finance and "zanzibar" not in finance and finance.splitlines()[1].endswith(",,")


def test_the_django_admin_lists_no_body(logged: UsageRecord, make_user: Callable[..., User]) -> None:
    root = make_user("superuser")
    client = signed_in(root)
    listing = client.get("/django-admin/usage/usagerecord/")
    assert listing.status_code == 200 and "zanzibar" not in listing.content.decode()
    change = client.get(f"/django-admin/usage/usagerecord/{logged.pk}/change/").content.decode()
    assert "zanzibar" not in change
    assert client.get("/django-admin/usage/callbody/").status_code == 404


# -- search ------------------------------------------------------------------------------------------------


def _found(user: User, q: str) -> set[str]:
    html = signed_in(user).get("/calls/", {"q": q}).content.decode()
    return {record.request_id.hex for record in UsageRecord.objects.all() if f"/calls/{record.request_id}/" in html}


def test_calls_are_found_by_words_of_their_bodies_request_id_and_error(
        models: dict[str, Model], admin_user: User, member_user: User, finance_user: User,
        upstream: FakeUpstream) -> None:
    key = make_key(member_user, log_bodies=True)[1]
    memo, other = _ask(key), _ask(key, "Translate the invoice into French")
    upstream.fail_next(400)
    failed = call(CHAT, chat_body(messages=[{"role": "user", "content": "x"}]), key=key)
    failing = UsageRecord.objects.get(request_id=failed.headers["x-request-id"])
    assert failing.status == "error" and failing.error_message
    assert _found(admin_user, "ZANZIBAR memo") == {memo.request_id.hex}  # whole words, any case, every one
    assert _found(admin_user, "zanzibar invoice") == set()
    assert _found(admin_user, "zanzi") == set()
    assert _found(member_user, "invoice") == {other.request_id.hex}  # the owner's own
    assert _found(finance_user, "invoice") == set()  # Finance lists every call, but reads no one's body
    assert _found(finance_user, str(other.request_id)) == {other.request_id.hex}
    words = failing.error_message.split()[:2]
    assert _found(finance_user, " ".join(words)) == {failing.request_id.hex}


def test_a_member_finds_nothing_in_anothers_bodies(models: dict[str, Model], member_user: User,
                                                   make_user: Callable[..., User]) -> None:
    _ask(make_key(member_user, log_bodies=True)[1])
    other = make_user("member", "other@example.com")
    assert _found(other, "zanzibar") == set()


# -- the ledger's journal ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the server answers from its own threads: data is committed
def test_answered_before_its_record_the_body_is_committed_with_it_and_never_journalled(
        settings: Any, upstream: FakeUpstream, make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Any) -> None:
    settings.USAGE_WRITE_BEHIND = True
    settings.DATA_DIR = tmp_path  # the journal's files, where Redis does not hold it
    make_providers(upstream)
    key = make_key(make_user("member"), log_bodies=True)[1]
    appended: list[bytes] = []
    append = journal.append

    async def watched(fields: dict[str, Any]) -> str:
        appended.append(journal.encode(fields))
        return await append(fields)

    monkeypatch.setattr(journal, "append", watched)
    with live_server() as base:
        answer = httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                            json=chat_body(messages=[{"role": "user", "content": SECRET_PROMPT}]), timeout=10)
        assert answer.status_code == 200
        deadline = time.monotonic() + 10
        while not CallBody.objects.exists():
            assert time.monotonic() < deadline, "the body was not written"
            time.sleep(0.02)
    assert len(appended) == 1 and b"zanzibar" not in appended[0]
    record = UsageRecord.objects.get(request_id=answer.headers["x-request-id"])
    assert _stored(record)["request"]["messages"][0]["content"] == SECRET_PROMPT
