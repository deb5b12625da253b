"""The playground's tools: models named with their provider, the copy button, the request as code, the
conversation's running cost, bounded titles, and wording."""

import html
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse

from accounts.models import User
from aspweb.money import money
from aspweb.roles import MEMBER
from playground import services, snippets
from playground.models import Answer, Conversation, Turn
from providers.adapters.base import ProviderError
from providers.models import Model, Price, Provider
from tests.conftest import signed_in
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import call, live_server, make_key
from tests.playground_support import API_KEY, answers_of, make_catalog, send_data, start_tags
from usage.models import UsageRecord
from usage.services import usage_record_create

HTMX = {"HX-Request": "true"}


@pytest.fixture
def catalog(upstream: FakeUpstream, db: None) -> tuple[Model, Model]:
    return make_catalog(upstream)


@pytest.fixture
def member(make_user: Callable[..., User]) -> User:
    return make_user("member")


@pytest.fixture
def client(member: User) -> Client:
    return signed_in(member)


def _finished(turn: Turn, model: Model, content: str, **fields: object) -> Answer:
    answer = Answer.objects.create(turn=turn, model=model, model_address=f"{model.provider.name}/{model.name}",
                                   content=content, status=Answer.Status.OK, latency_ms=900, **fields)
    return answer


# -- the provider in every model name ---------------------------------------------------------------


@pytest.fixture
def twins(catalog: tuple[Model, Model], upstream: FakeUpstream) -> tuple[Model, Model]:
    """Two providers, each with a model called fake-small."""
    other = Provider.objects.create(name="edge", kind="openai_compatible", base_url=upstream.openai_base_url,
                                    api_key=API_KEY, max_retries=0)
    ours = Model.objects.create(provider=catalog[0].provider, name="fake-small")
    theirs = Model.objects.create(provider=other, name="fake-small")
    Price.objects.create(model=theirs, input=Decimal("1"), output=Decimal("2"))
    return ours, theirs


def _options(page: str, name: str) -> list[str]:
    select = page.split(f'name="{name}"', 1)[1].split("</select>", 1)[0]
    return [html.unescape(text).strip() for text in re.findall(r"<option[^>]*>([^<]*)</option>", select)]


def test_the_picker_names_each_model_with_its_provider_in_every_select(client: Client,
                                                                       twins: tuple[Model, Model]) -> None:
    page = client.get(reverse("playground")).content.decode()
    for name in ("model", "compare_1", "compare_2", "compare_3"):
        options = _options(page, name)
        assert "lab · fake-small · no price set" in options
        assert "edge · fake-small · $1.00 in / $2.00 out per 1M" in options
        assert len({option.rsplit(" · ", 1)[0] for option in options if "fake-small" in option}) == 2


def test_the_estimate_and_the_pane_head_name_the_provider(client: Client, twins: tuple[Model, Model]) -> None:
    ours, theirs = twins
    estimate = client.post(reverse("playground_estimate"), send_data(ours, theirs, prompt="Hi")).content.decode()
    assert "<strong>lab · fake-small</strong>" in estimate and "<strong>edge · fake-small</strong>" in estimate

    conversation = Conversation.objects.create(user=User.objects.get(email="member@example.com"), title="Twins")
    turn = Turn.objects.create(conversation=conversation, prompt="Hi")
    _finished(turn, ours, "one")
    Answer.objects.create(turn=turn, lane=1, model=theirs, model_address="edge/fake-small", content="two",
                          status=Answer.Status.OK)
    page = client.get(reverse("playground_conversation", args=[conversation.pk])).content.decode()
    heads = re.findall(r'<span class="pane-model" title="([^"]*)">([^<]*)</span>', page)
    assert heads == [("lab/fake-small", "lab · fake-small"), ("edge/fake-small", "edge · fake-small")]

    theirs.delete()  # the answer keeps the address it was asked at
    page = client.get(reverse("playground_conversation", args=[conversation.pk])).content.decode()
    assert '<span class="pane-model" title="edge/fake-small">edge · fake-small</span>' in page


# -- copying an answer --------------------------------------------------------------------------------


def test_a_finished_answer_has_a_copy_button_holding_its_raw_text(client: Client, member: User,
                                                                  catalog: tuple[Model, Model]) -> None:
    raw = 'Use **bold** & <b>tags</b>\n\n```python\nprint("hi")\n```\n'
    conversation = Conversation.objects.create(user=member, title="Copy")
    turn = Turn.objects.create(conversation=conversation, prompt="Hi")
    _finished(turn, catalog[0], raw)
    pending = Turn.objects.create(conversation=conversation, prompt="Again")
    Answer.objects.create(turn=pending, model=catalog[0], model_address="lab/fake-model-a")
    page = client.get(reverse("playground_conversation", args=[conversation.pk])).content.decode()
    buttons = [attrs for tag, attrs in start_tags(page) if tag == "button" and "data-copy-text" in attrs]
    assert [attrs["data-copy-text"] for attrs in buttons] == [raw]  # the Markdown, not the HTML; none while pending
    assert "<b>tags</b>" not in page  # the raw text is in an attribute, escaped
    scripts = [attrs["src"] for tag, attrs in start_tags(page) if tag == "script" and attrs.get("src")]
    assert any(src.endswith("js/playground-tools.js") for src in scripts)


# -- the request as code -------------------------------------------------------------------------------


def _code(client: Client, data: dict, **headers: str) -> str:
    response = client.post(reverse("playground_code"), data, headers={**HTMX, **headers})
    assert response.status_code == 200
    return response.content.decode()


def _snippet(page: str, n: int, slug: str) -> str:
    match = re.search(rf'<code id="pg-code-{n}-{slug}">(.*?)</code>', page, re.S)
    assert match, page
    return html.unescape(match.group(1))


def _curl_body(curl: str) -> dict:
    words = shlex.split(curl)
    return json.loads(words[words.index("-d") + 1])


@pytest.fixture
def conversation(member: User, catalog: tuple[Model, Model]) -> Conversation:
    """A conversation of one answered turn, sent with a system prompt and parameters."""
    conversation = Conversation.objects.create(user=member, title="Code", system="Be brief", temperature=0.3,
                                               top_p=0.9, max_tokens=200, stop=["END"])
    turn = Turn.objects.create(conversation=conversation, prompt="What is SSE?")
    _finished(turn, catalog[0], "Server-sent events.")
    return conversation


def test_view_code_shows_the_conversation_and_composer_as_curl_python_and_javascript(
    client: Client, catalog: tuple[Model, Model], conversation: Conversation
) -> None:
    cheap, dear = catalog
    data = send_data(cheap, dear, prompt="And \"why\" it's 'useful'?", conversation=conversation.pk,
                     system="Be brief", temperature="0.3", top_p="0.9", stop="END", max_tokens=200)
    page = _code(client, data)
    expected = {
        "model": "lab/fake-model-a",
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "What is SSE?"},
                     {"role": "assistant", "content": "Server-sent events."},
                     {"role": "user", "content": "And \"why\" it's 'useful'?"}],
        "temperature": 0.3, "top_p": 0.9, "max_tokens": 200, "stop": ["END"],
    }
    curl = _snippet(page, 1, "curl")
    assert curl.startswith("curl http://testserver/v1/chat/completions")
    assert 'Authorization: Bearer $ASPWEB_API_KEY' in curl
    assert _curl_body(curl) == expected
    assert _curl_body(_snippet(page, 2, "curl"))["model"] == "lab/fake-model-b"  # one section per compared model

    python = _snippet(page, 1, "python")
    assert 'OpenAI(base_url="http://testserver/v1", api_key=os.environ["ASPWEB_API_KEY"])' in python
    namespace: dict = {}
    calls: list[dict] = []

    class Completions:
        def create(self, **kwargs: object) -> object:
            calls.append(kwargs)
            return type("C", (), {"choices": [type("Ch", (), {"message": type("M", (), {"content": "ok"})})]})

    fake_openai = type(sys)("openai")
    fake_openai.OpenAI = lambda **kwargs: type("Client", (), {"chat": type("Chat", (), {  # type: ignore[attr-defined]
        "completions": Completions()})})
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "openai", fake_openai)
        patch.setenv("ASPWEB_API_KEY", "ask-placeholder")
        exec(compile(python, "snippet.py", "exec"), namespace)  # noqa: S102 - the page's own snippet
    assert calls == [expected]

    javascript = _snippet(page, 1, "javascript")
    assert 'baseURL: "http://testserver/v1"' in javascript and "apiKey: process.env.ASPWEB_API_KEY" in javascript
    body = javascript.split("create(", 1)[1].rsplit(");\nconsole.log", 1)[0]
    assert json.loads(body) == expected

    assert API_KEY not in page and "ask-" not in page.replace("ask-…", "")  # no key, only the placeholder
    assert f'<a href="http://testserver{reverse("apikey_list")}">API keys</a>' in page


def test_view_code_without_a_prompt_shows_the_last_request_and_follows_the_site_url(
    client: Client, catalog: tuple[Model, Model], conversation: Conversation, settings: pytest.FixtureRequest
) -> None:
    settings.SITE_URL = "https://ai.example.com/"
    page = _code(client, send_data(catalog[0], prompt="", conversation=conversation.pk))
    curl = _snippet(page, 1, "curl")
    assert curl.startswith("curl https://ai.example.com/v1/chat/completions")
    body = _curl_body(curl)
    assert body["messages"] == [{"role": "user", "content": "What is SSE?"}]  # what Regenerate would send
    assert body["max_tokens"] == 256 and "temperature" not in body and "stop" not in body
    # Editing the last prompt: the request replaces that turn.
    page = _code(client, send_data(catalog[0], prompt="Better", conversation=conversation.pk, edit_last="1"))
    assert _curl_body(_snippet(page, 1, "curl"))["messages"] == [{"role": "user", "content": "Better"}]
    page = _code(client, send_data(catalog[0], prompt="", conversation=conversation.pk, edit_last="1"))
    assert _curl_body(_snippet(page, 1, "curl"))["messages"] == [{"role": "user", "content": "What is SSE?"}]


def test_view_code_says_what_it_needs_and_keeps_to_its_owner(client: Client, catalog: tuple[Model, Model],
                                                             make_user: Callable[..., User]) -> None:
    assert "Pick a model and type a prompt" in _code(client, {"prompt": "hi"})
    assert "Pick a model and type a prompt" in _code(client, send_data(catalog[0], prompt=" "))
    other = Conversation.objects.create(user=make_user("member", "other@example.com"), title="Theirs")
    response = client.post(reverse("playground_code"), send_data(catalog[0], conversation=other.pk), headers=HTMX)
    assert response.status_code == 404
    assert client.get(reverse("playground_code")).status_code == 405


@pytest.mark.parametrize("role", ["finance", "admin"])
def test_every_viewer_may_see_the_code(role: str, client_as: Callable[[str], Client],
                                       catalog: tuple[Model, Model]) -> None:
    assert "pg-code-1-python" in _code(client_as(role), send_data(catalog[0]))


def test_the_generated_body_is_what_the_gateway_accepts(client: Client, catalog: tuple[Model, Model],
                                                        conversation: Conversation, upstream: FakeUpstream) -> None:
    page = _code(client, send_data(catalog[0], prompt="Say 'hi'\nplease", conversation=conversation.pk,
                                   system="Be brief", temperature="0.3", top_p="0.9", stop="END", max_tokens=200))
    body = _curl_body(_snippet(page, 1, "curl"))
    _, key = make_key(name="snippet")
    answer = call("/v1/chat/completions", body, key=key)
    assert answer.status == 200, answer.content
    assert json.loads(answer.content)["choices"][0]["message"]["content"] == upstream.reply
    sent = upstream.last_request.body
    assert sent["messages"] == body["messages"] and sent["temperature"] == 0.3 and sent["stop"] == ["END"]


@pytest.fixture
def gateway(upstream: FakeUpstream, transactional_db: None) -> Iterator[str]:
    cache.clear()
    with live_server() as url:
        yield url


def test_the_python_snippet_runs_against_the_live_gateway(gateway: str, upstream: FakeUpstream,
                                                          make_user: Callable[..., User],
                                                          settings: pytest.FixtureRequest) -> None:
    cheap, _ = make_catalog(upstream)
    Group.objects.get_or_create(name=MEMBER)  # an earlier transactional test's flush may have taken it
    member = make_user("member")
    client = Client()
    client.force_login(member)
    settings.SITE_URL = gateway
    page = _code(client, send_data(cheap, prompt="Say hello", system="Be brief", temperature="0.5"))
    python = _snippet(page, 1, "python")
    _, key = make_key(user=member, name="snippet")
    env = {**os.environ, "ASPWEB_API_KEY": key}
    result = subprocess.run([sys.executable, "-c", python], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == upstream.reply.strip()
    assert upstream.last_request.body["messages"] == [{"role": "system", "content": "Be brief"},
                                                      {"role": "user", "content": "Say hello"}]
    record = UsageRecord.objects.get()
    assert record.source == "gateway" and record.model_name == "fake-model-a"


def test_snippet_literals_survive_quotes_backslashes_and_newlines() -> None:
    body = {"model": "a/b", "messages": [{"role": "user", "content": "It's \"quoted\" \\ and\nnew ${HOME} `x`"}]}
    python = snippets.python(body, "http://h")
    tree = compile(python, "snippet.py", "exec")
    assert tree is not None
    literal = python.split("messages=", 1)[1].rsplit(",\n)", 1)[0]
    assert eval(literal) == body["messages"]  # noqa: S307 - a literal the module wrote
    assert _curl_body(snippets.curl(body, "http://h")) == body  # single quotes escaped for the shell


# -- the running cost -----------------------------------------------------------------------------------


def _record(model: Model, cost: str, **fields: object) -> UsageRecord:
    return usage_record_create(provider=model.provider, model=model, source="playground", status="ok",
                               input_tokens=10, output_tokens=5, **fields) if cost == "unpriced" else \
        UsageRecord.objects.create(provider=model.provider, model=model, provider_name=model.provider.name,
                                   model_name=model.name, source="playground", status="ok", cost=Decimal(cost),
                                   **fields)


def _cost_text(page: str) -> str:
    match = re.search(r'<p id="pg-cost"[^>]*>(.*?)</p>', page, re.S)
    assert match, page
    return " ".join(re.sub(r"<[^>]+>", "", match.group(1)).split())


def test_the_heading_shows_the_sum_of_the_answers_costs_from_the_ledger(
    client: Client, member: User, catalog: tuple[Model, Model], make_user: Callable[..., User]
) -> None:
    cheap, dear = catalog
    conversation = Conversation.objects.create(user=member, title="Costs")
    turn = Turn.objects.create(conversation=conversation, prompt="Hi")
    first, second = _record(cheap, "0.0125"), _record(dear, "1.5")
    # The answer's own cost is not what is summed: the ledger's is.
    _finished(turn, cheap, "a", request_id=first.request_id, cost=Decimal("9"))
    Answer.objects.create(turn=turn, lane=1, model=dear, model_address="lab/fake-model-b", content="b",
                          status=Answer.Status.OK, request_id=second.request_id)
    Answer.objects.create(turn=Turn.objects.create(conversation=conversation, prompt="x"), model=cheap,
                          model_address="lab/fake-model-a")  # pending: no call yet
    _record(cheap, "5")  # another call, not of this conversation
    url = reverse("playground_conversation", args=[conversation.pk])
    assert _cost_text(client.get(url).content.decode()) == f"Spent so far: {money(Decimal('1.5125'))} on 2 answers"

    fragment = client.get(reverse("playground_cost", args=[conversation.pk]), headers=HTMX).content.decode()
    assert _cost_text(fragment) == "Spent so far: $1.51 on 2 answers"
    assert 'hx-trigger="pg:answered"' in fragment and 'hx-swap="outerHTML"' in fragment

    other = Client()
    other.force_login(make_user("member", "other@example.com"))
    assert other.get(reverse("playground_cost", args=[conversation.pk])).status_code == 404


def test_estimated_and_unpriced_calls_are_said(client: Client, member: User, catalog: tuple[Model, Model]) -> None:
    cheap, _ = catalog
    conversation = Conversation.objects.create(user=member, title="Costs")
    turn = Turn.objects.create(conversation=conversation, prompt="Hi")
    _finished(turn, cheap, "a", request_id=_record(cheap, "0.002", usage_estimated=True).request_id)
    assert _cost_text(client.get(reverse("playground_cost", args=[conversation.pk])).content.decode()) == \
        "Spent so far: ≈$0.002 on 1 answer"
    Price.objects.filter(model=cheap).delete()
    unpriced = _record(cheap, "unpriced")
    assert unpriced.unpriced
    Answer.objects.create(turn=turn, lane=1, model=cheap, model_address="lab/fake-model-a", content="b",
                          status=Answer.Status.OK, request_id=unpriced.request_id)
    assert _cost_text(client.get(reverse("playground_cost", args=[conversation.pk])).content.decode()) == \
        "Spent so far: ≈$0.002 on 2 answers, 1 of them unpriced"


def test_an_answer_of_a_model_without_a_price_says_so(client: Client, member: User,
                                                     catalog: tuple[Model, Model]) -> None:
    """Its tokens were counted but nothing priced them: "no price", as the calls list says, not a bare dash."""
    cheap, dear = catalog
    conversation = Conversation.objects.create(user=member, title="Costs")
    turn = Turn.objects.create(conversation=conversation, prompt="Hi")
    _finished(turn, cheap, "a", input_tokens=24, output_tokens=5, cost=None)
    _finished(turn, dear, "b", lane=1, input_tokens=24, output_tokens=5, cost=Decimal("0.0000324"))
    page = client.get(reverse("playground_conversation", args=[conversation.pk])).content.decode()
    costs = re.findall(r"<dt>Cost</dt><dd>(.*?)</dd>", page)
    assert costs == ['<span class="warn">no price</span>', "$0.0000324"]


def test_answers_an_edit_replaced_still_count_in_the_running_cost(client: Client, member: User,
                                                                    catalog: tuple[Model, Model]) -> None:
    cheap, dear = catalog
    conversation = Conversation.objects.create(user=member, title="Costs")
    turn = Turn.objects.create(conversation=conversation, prompt="Hi")
    _finished(turn, cheap, "a", request_id=_record(cheap, "0.0125").request_id)
    _finished(turn, dear, "b", lane=1, request_id=_record(dear, "1.5").request_id)
    Answer.objects.create(turn=turn, model=cheap, model_address="lab/fake-model-a", version=2)  # never started

    response = client.post(reverse("playground_send"), send_data(cheap, prompt="Hello instead",
                                                                  conversation=conversation.pk, edit_last=True),
                           headers=HTMX)
    assert response.status_code == 200
    assert list(turn.answers.values_list("content", flat=True)) == [""]  # the old answers are gone
    assert _cost_text(client.get(reverse("playground_cost", args=[conversation.pk])).content.decode()) == \
        f"Spent so far: {money(Decimal('1.5125'))} on 2 answers (2 replaced by an edit)"


def test_a_claimed_answer_knows_its_call_before_it_ends(member: User, catalog: tuple[Model, Model]) -> None:
    # So an edit that replaces it mid-stream still finds its call in the ledger.
    conversation = Conversation.objects.create(user=member, title="Live")
    turn = Turn.objects.create(conversation=conversation, prompt="Hi")
    first = Answer.objects.create(turn=turn, model=catalog[0], model_address="lab/fake-model-a")
    second = Answer.objects.create(turn=turn, lane=1, model=catalog[1], model_address="lab/fake-model-b")
    ids = uuid.uuid4(), uuid.uuid4()
    assert services.answer_claim(answer_id=first.pk, user=member, request_id=ids[0]) is not None
    assert services.answer_mark_streaming(answer_id=second.pk, request_id=ids[1])
    assert [a.request_id for a in Answer.objects.filter(pk__in=[first.pk, second.pk]).order_by("lane")] == list(ids)


def test_a_new_conversations_heading_starts_at_zero(client: Client, catalog: tuple[Model, Model]) -> None:
    response = client.post(reverse("playground_send"), send_data(catalog[0]), headers=HTMX)
    assert _cost_text(response.content.decode()) == "Nothing spent yet."
    assert reverse("playground") == "/playground/"
    assert 'id="pg-cost"' not in client.get(reverse("playground")).content.decode()  # no conversation yet


# -- titles -----------------------------------------------------------------------------------------------


def test_a_title_too_long_is_refused_with_a_clear_error(client: Client, member: User) -> None:
    conversation = Conversation.objects.create(user=member, title="Short")
    url = reverse("playground_rename", args=[conversation.pk])
    response = client.post(url, {"title": "x" * 300}, headers=HTMX)
    assert response.status_code == 200
    page = response.content.decode()
    assert "A title has at most 120 characters; this one has 300." in page
    assert 'aria-invalid="true"' in page and "<details class=\"pg-manage\" open>" in page
    conversation.refresh_from_db()
    assert conversation.title == "Short"

    response = client.post(url, {"title": "x" * 300})  # without JavaScript: the page, with the error
    assert response.status_code == 400 and "at most 120 characters" in response.content.decode()
    for blank in ("", "  \n "):
        assert "Give the conversation a title." in client.post(url, {"title": blank}, headers=HTMX).content.decode()

    fits = " ".join(["word"] * 24)  # 119 characters once the spaces collapse
    response = client.post(url, {"title": fits.replace(" ", "    ")}, headers=HTMX)
    conversation.refresh_from_db()
    assert conversation.title == fits and "error-text" not in response.content.decode()


def test_titles_carry_their_whole_text_for_the_ellipsis(client: Client, member: User) -> None:
    title = "A long title " * 9
    conversation = Conversation.objects.create(user=member, title=title.strip())
    page = client.get(reverse("playground_conversation", args=[conversation.pk])).content.decode()
    assert f'<h1 title="{title.strip()}">' in page
    assert f'title="{title.strip()}" aria-current="page"' in page  # the history link
    assert 'maxlength="120"' in page


@pytest.mark.django_db(transaction=True)
def test_the_migration_shortens_titles_saved_before_the_limit(make_user: Callable[..., User]) -> None:
    before, after = [("playground", "0002_answer_versions")], [("playground", "0003_conversation_title_max_length")]
    user = make_user("member")
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Old = apps.get_model("playground", "Conversation")
    Old.objects.create(user_id=user.pk, title="y" * 200)
    Old.objects.create(user_id=user.pk, title="z" * 120)
    executor.loader.build_graph()
    executor.migrate(after)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    titles = sorted(Conversation.objects.values_list("title", flat=True))
    assert titles == ["y" * 119 + "…", "z" * 120]


# -- wording ------------------------------------------------------------------------------------------------


def test_the_estimate_counts_one_token_in_the_singular(client: Client, catalog: tuple[Model, Model]) -> None:
    one = client.post(reverse("playground_estimate"), send_data(catalog[0], prompt="Hi")).content.decode()
    assert "≈1 token in," in one
    many = client.post(reverse("playground_estimate"), send_data(catalog[0], prompt="Hi " * 40)).content.decode()
    assert re.search(r"≈\d+ tokens in,", many)


def test_pages_show_no_python_reprs(client: Client, member: User, catalog: tuple[Model, Model]) -> None:
    conversation = Conversation.objects.create(user=member, title="Words")
    turn = Turn.objects.create(conversation=conversation, prompt="Hi")
    Answer.objects.create(turn=turn, model=catalog[0], model_address="lab/fake-model-a", content="",
                          status=Answer.Status.STOPPED, latency_ms=10)
    page = client.get(reverse("playground_conversation", args=[conversation.pk])).content.decode()
    text = re.sub(r"<[^>]+>", " ", page)
    assert not re.search(r"\bNone\b|\bFalse\b|\bTrue\b", text)
    assert not re.search(r"\b1 tokens\b|\d{4}-\d\d-\d\dT\d\d:", text)
    assert answers_of(turn.pk)[0].status == Answer.Status.STOPPED


@pytest.mark.parametrize(("retry_after", "words"), [(1, "Retry in 1 second."), (1.5, "Retry in 1.5 seconds."),
                                                    (7, "Retry in 7 seconds."), (None, "Retry in a minute.")])
def test_a_rate_limit_says_when_to_retry_in_plain_words(retry_after: float | None, words: str) -> None:
    error = ProviderError("rate_limit", "slow down", status=429, retry_after=retry_after)
    assert services.describe_error(error, "lab") == f"lab is rate limiting requests. {words}"


def test_token_counts_are_grouped_in_thousands(client: Client, member: User, catalog: tuple[Model, Model]) -> None:
    conversation = Conversation.objects.create(user=member, title="Big")
    turn = Turn.objects.create(conversation=conversation, prompt="Hi")
    _finished(turn, catalog[0], "a", input_tokens=123456, output_tokens=7890)
    page = client.get(reverse("playground_conversation", args=[conversation.pk])).content.decode()
    assert "<dd>123,456</dd>" in page and "<dd>7,890</dd>" in page
    estimate = client.post(reverse("playground_estimate"), send_data(catalog[0], max_tokens=100000)).content.decode()
    assert "up to 100,000 out" in estimate


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to parse the JavaScript snippet")
def test_the_javascript_snippet_parses_as_an_es_module(tmp_path: Path) -> None:
    body = {"model": "a/b", "messages": [{"role": "user", "content": "It's \"quoted\" \\ and\nnew ${x} `y` \u2028"}],
            "temperature": 0.5, "max_tokens": 10, "stop": ["END"]}
    script = tmp_path / "snippet.mjs"
    script.write_text(snippets.javascript(body, "http://h"))
    result = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    script.write_text(snippets.javascript(body, "http://h").replace("create(", "create(]"))
    assert subprocess.run(["node", "--check", str(script)], capture_output=True, timeout=60).returncode != 0
