"""Upper bounds on a call's tokens, known before the call is made: a hard-limit budget reserves the cost of
these (providers.calls._reserve), so they must never be below what the provider then bills.

The input bound is the UTF-8 length, in bytes, of everything the model reads, plus fixed allowances for
what a provider adds around it. Byte-level BPE tokenizers (OpenAI's tiktoken encodings, Llama 3, Qwen,
DeepSeek, gpt-oss) make every token of at least one byte of the text, so they cannot produce more tokens
than the text has bytes; SentencePiece with byte fallback (Llama 2, Mistral, Gemma, Gemini) makes every
token of at least one character or one byte, plus a dummy-prefix token at the start of a text, which the
per-message allowance covers. A character of text is at least one byte, so no such tokenizer beats the
bound, whatever the text: one letter repeated, CJK, emoji, digit runs or code. (Anthropic does not publish
its tokenizer; the bound assumes it is of the same kind, as every published tokenizer of a current model
is.)

Guaranteed: for a provider whose tokenizer is of that kind, the prompt it bills (every input token, cached
or not) is at most `input_token_bound(request)`, as long as what it adds on its own stays within the
allowances below: PER_MESSAGE_TOKENS per message (role markers and separators of its chat template),
PER_REQUEST_TOKENS per call (begin-of-text, the answer's priming, a template's own system lines),
PER_TOOL_CALL_TOKENS per tool call, IMAGE_TOKENS per image, and TOOLS_TOKENS once when tools are sent (its
tool-use instructions). Not covered: a server that adds a long system prompt of its own (the Claude CLI would
add Claude Code's to a request without one, so its adapter always sends one), and a tokenizer that normalises
text into longer text (NFKC) before splitting it.

The output bound is the answer's cap: the request's max_tokens where the provider honours it (reasoning
included: Anthropic, OpenAI and Google count it against the cap), or the default cap the call is then sent
with when it sets none; where the provider ignores max_tokens (the Claude CLI), the model's maximum output.
"""

import json
from typing import Any

from django.conf import settings

from .adapters.base import ChatRequest, EmbeddingRequest, ImagePart, Message, TextPart

# Role markers and separators around one message. OpenAI's cookbook counts 3 tokens per message (4 with a
# name); Llama 3's header and end-of-turn are 5 special tokens plus "\n\n"; SentencePiece starts a text with
# one dummy-prefix token; the Claude CLI wraps each earlier turn in tags such as <tool_result>…</tool_result>,
# 30 bytes with their newlines.
PER_MESSAGE_TOKENS = 32
# Around each tool call in the conversation: its template markers (the Claude CLI writes "[called tool NAME
# with ARGUMENTS]" on a line of its own, 20 bytes besides the name and arguments).
PER_TOOL_CALL_TOKENS = 32
# Once per call: begin-of-text, the answer's priming (3 tokens at OpenAI), and the system lines some chat
# templates add on their own: Llama 3.1's knowledge-cutoff and date lines (about 25 tokens), gpt-oss's
# harmony system message (about 60), the Claude CLI's framing of earlier turns (110 bytes).
PER_REQUEST_TOKENS = 256
# One image, however large: the most any provider documents. OpenAI's GPT-4o mini bills 2,833 base tokens
# plus 5,667 per 512-pixel tile, and an image scaled to fit 2048 x 2048 with its short side at most 768
# pixels has at most 4 x 2 tiles: 2,833 + 8 x 5,667. (GPT-4o: 85 + 8 x 170; Claude: about 1,600, images are
# scaled to 1,568 pixels on their long side; Gemini: 258 per 768-pixel tile.)
IMAGE_TOKENS = 48_169
# The tool-use instructions a provider adds when tools are sent. Anthropic's largest documented one is 530
# tokens (Claude 3 Opus, tool_choice auto; 346 for the Claude 4 models); open models' chat templates add
# tool preambles of a few hundred. The definitions themselves are counted as their JSON.
TOOLS_TOKENS = 1_024
# A model's maximum output when neither its catalog row nor its context window says it: the largest any
# Claude model publishes (128K tokens, Claude Opus 4.6 and later), for kinds that cannot cap an answer.
UNKNOWN_MAX_OUTPUT_TOKENS = 128_000


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _json_bytes(value: Any) -> int:
    """The bytes of `value` as JSON, rendered long: indented by four (as chat templates print tool schemas)
    and with non-ASCII escaped (\\uXXXX is longer than the UTF-8 it stands for), so that compact JSON and the
    TypeScript-like signatures some templates print are not longer."""
    return _bytes(json.dumps(value, indent=4, default=str))


def _message_bound(message: Message) -> int:
    parts = (TextPart(message.content),) if isinstance(message.content, str) else message.content
    tokens = PER_MESSAGE_TOKENS + _bytes(message.tool_call_id)
    tokens += sum(IMAGE_TOKENS if isinstance(part, ImagePart) else _bytes(part.text) for part in parts)
    tokens += sum(PER_TOOL_CALL_TOKENS + _bytes(call.id) + _bytes(call.name) + _bytes(call.arguments)
                  for call in message.tool_calls)
    return tokens


def input_token_bound(request: ChatRequest | EmbeddingRequest) -> int:
    """The most prompt tokens the provider can bill for `request`, cached ones included (see the module's
    docstring for exactly what is guaranteed): the bytes of the system prompt, of every message's text,
    tool calls and tool results, of the tool definitions and tool choice as JSON, and of the provider-specific
    parameters as JSON (a structured-output schema among them is shown to the model), plus the allowances.
    For embeddings: the bytes of every input, plus a message's allowance for each (an embedding model's
    begin and end tokens around each text)."""
    if isinstance(request, EmbeddingRequest):
        return sum(PER_MESSAGE_TOKENS + _bytes(text) for text in request.input)
    tokens = PER_REQUEST_TOKENS + _bytes(request.system) + sum(_message_bound(m) for m in request.messages)
    if request.tools:
        tokens += TOOLS_TOKENS + sum(_json_bytes(tool) for tool in request.tools)
    if request.tool_choice is not None:
        tokens += _json_bytes(request.tool_choice)
    if request.extra:
        tokens += _json_bytes(request.extra)
    return tokens


def model_output_limit(model: Any) -> int:
    """The most output tokens one answer of `model` can have: its published maximum, else its context window
    (an answer cannot outgrow it), else UNKNOWN_MAX_OUTPUT_TOKENS."""
    return model.max_output_tokens or model.context_window or UNKNOWN_MAX_OUTPUT_TOKENS


def default_output_cap(request: ChatRequest) -> int:
    """The cap a call under a hard limit is sent with when its request sets none: BUDGET_DEFAULT_MAX_TOKENS
    plus any thinking budget (the Anthropic adapter's own default, so nothing changes there)."""
    return settings.BUDGET_DEFAULT_MAX_TOKENS + (request.thinking_budget or 0)


def output_token_bound(request: ChatRequest | EmbeddingRequest, model: Any, *, caps_output: bool) -> int:
    """The most output tokens (reasoning included) the call can be billed for: the model's whole output
    where the provider ignores max_tokens, else the request's max_tokens, else `default_output_cap`, which
    the call path then sends (providers.calls). An embeddings call has no output tokens."""
    if isinstance(request, EmbeddingRequest):
        return 0
    if not caps_output:
        return model_output_limit(model)
    return request.max_tokens if request.max_tokens is not None else default_output_cap(request)
