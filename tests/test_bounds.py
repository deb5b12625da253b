"""The bounds a hard limit reserves on (providers/bounds.py): every byte the model reads plus the documented
allowances (32 a message, 32 a tool call, 256 a request, 48,169 an image, 1,024 for tool instructions), and
the answer's cap; and the maximum output the catalog keeps for the kinds that cannot cap an answer."""

from types import SimpleNamespace

import pytest
from django.test import Client
from django.urls import reverse

from providers import bounds, services
from providers.adapters.base import ChatRequest, ImagePart, Message, TextPart, ToolCall
from providers.models import Provider

MESSAGE, TOOL_CALL, REQUEST, IMAGE, TOOLS = 32, 32, 256, 48_169, 1_024


def _bound(*messages: Message, **fields: object) -> int:
    return bounds.input_token_bound(ChatRequest(model="p/m", messages=messages, **fields))


@pytest.mark.parametrize(("text", "utf8_bytes"), [
    ("hello", 5),
    ("a" * 1000, 1000),  # one letter repeated: a tokenizer may give every byte a token
    ("预算", 6),  # CJK: 3 bytes a character
    ("💸", 4),  # emoji: 4 bytes, one character
    ("é", 2),
    ("", 0),
])
def test_text_counts_its_utf8_bytes(text: str, utf8_bytes: int) -> None:
    assert _bound(Message("user", text)) == utf8_bytes + MESSAGE + REQUEST


def test_the_system_prompt_and_every_message_count() -> None:
    assert _bound(Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Bye"),
                  system="Be brief") == 8 + 2 + 6 + 3 + 3 * MESSAGE + REQUEST


def test_an_image_counts_its_fixed_bound_whatever_its_size_on_the_wire() -> None:
    image = ImagePart("data:image/png;base64," + "A" * 100_000)
    assert _bound(Message("user", (TextPart("What is this?"), image))) == 13 + IMAGE + MESSAGE + REQUEST
    assert _bound(Message("user", (image, image))) == 2 * IMAGE + MESSAGE + REQUEST


def test_tool_calls_and_tool_results_count_with_their_ids() -> None:
    call = ToolCall(id="call_1", name="weather", arguments='{"city":"Zürich"}')  # 18 bytes: ü is 2
    conversation = (Message("user", "Weather?"), Message("assistant", "", tool_calls=(call,)),
                    Message("tool", "12°C", tool_call_id="call_1"))  # 5 bytes: ° is 2

    assert _bound(*conversation) == 8 + (6 + 7 + 18 + TOOL_CALL) + (5 + 6) + 3 * MESSAGE + REQUEST


def test_tools_count_as_indented_json_with_non_ascii_escaped_plus_their_instructions() -> None:
    tool = {"type": "function", "function": {"name": "now", "description": "Zeit für"}}
    rendered = ('{\n'
                '    "type": "function",\n'
                '    "function": {\n'
                '        "name": "now",\n'
                '        "description": "Zeit f\\u00fcr"\n'
                '    }\n'
                '}')

    assert _bound(Message("user", "Time?"), tools=(tool,)) == 5 + len(rendered) + TOOLS + MESSAGE + REQUEST
    assert _bound(Message("user", "Time?"), tools=(tool,), tool_choice="auto") == (
        5 + len(rendered) + TOOLS + len('"auto"') + MESSAGE + REQUEST)


def test_provider_parameters_count_as_json() -> None:
    # A structured-output schema is shown to the model.
    extra = {"response_format": {"type": "json_object"}}
    rendered = ('{\n'
                '    "response_format": {\n'
                '        "type": "json_object"\n'
                '    }\n'
                '}')
    assert _bound(Message("user", "Hi"), extra=extra) == 2 + len(rendered) + MESSAGE + REQUEST


def test_the_output_bound_is_the_requests_cap(settings: object) -> None:
    settings.BUDGET_DEFAULT_MAX_TOKENS = 4096
    model = SimpleNamespace(max_output_tokens=64_000, context_window=200_000)
    request = ChatRequest(model="p/m", messages=(Message("user", "Hi"),))

    assert bounds.output_token_bound(ChatRequest(model="p/m", messages=(), max_tokens=100), model,
                                     caps_output=True) == 100
    assert bounds.output_token_bound(request, model, caps_output=True) == 4096
    thinking = ChatRequest(model="p/m", messages=(), thinking_budget=1000)
    assert bounds.output_token_bound(thinking, model, caps_output=True) == 5096


@pytest.mark.parametrize(("max_output_tokens", "context_window", "expected"), [
    (64_000, 200_000, 64_000),  # the published maximum
    (None, 200_000, 200_000),  # an answer cannot outgrow the context window
    (None, None, 128_000),  # the largest maximum any Claude model publishes
])
def test_where_max_tokens_is_ignored_the_models_whole_output_is_the_bound(
    max_output_tokens: int | None, context_window: int | None, expected: int
) -> None:
    model = SimpleNamespace(max_output_tokens=max_output_tokens, context_window=context_window)
    request = ChatRequest(model="p/m", messages=(), max_tokens=100)  # the Claude CLI does not honour it

    assert bounds.output_token_bound(request, model, caps_output=False) == expected


@pytest.mark.django_db
@pytest.mark.parametrize(("kind", "name", "expected"), [
    ("claude_cli", "claude-sonnet-4-5", 64_000),  # Anthropic's models overview: "Max output 64K tokens"
    ("claude_cli", "claude-opus-4-5", 64_000),
    ("claude_cli", "claude-haiku-4-5", 64_000),
    ("anthropic", "claude-sonnet-4-20250514", 64_000),
    ("openai", "gpt-4o", None),  # not in any preset's table: left for an admin
])
def test_a_preset_model_is_added_with_its_published_maximum_output(kind: str, name: str,
                                                                   expected: int | None) -> None:
    provider = Provider.objects.create(name="p", kind=kind)
    model = services.model_add(provider=provider, name=name, actor=None, with_default_price=False)
    assert model.max_output_tokens == expected


@pytest.mark.django_db
def test_an_admin_sets_a_models_maximum_output_on_its_page(admin_client: Client) -> None:
    provider = Provider.objects.create(name="cli", kind="claude_cli")
    model = services.model_add(provider=provider, name="claude-sonnet-4-5", actor=None, with_default_price=False,
                               max_output_tokens=32_000)
    assert model.max_output_tokens == 32_000  # given, it wins over the preset's

    response = admin_client.post(reverse("model_detail", args=[model.pk]), {
        "model-display_name": "", "model-enabled": "on", "model-context_window": "200000",
        "model-max_output_tokens": "16000",
    })

    assert response.status_code == 302
    model.refresh_from_db()
    assert model.max_output_tokens == 16_000
