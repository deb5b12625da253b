"""Bad-input fuzzing of /v1/ with hypothesis: bodies drawn from the OpenAPI description's request schemas, the
same bodies with one part swapped for arbitrary JSON, arbitrary JSON, and arbitrary bytes. Whatever comes in,
the answer is never a 5xx, and an error is always in the endpoint's own JSON error shape.

Strings carry what JSON's escapes can smuggle in and PostgreSQL cannot take: NUL characters and lone surrogates
(hypothesis's text leaves surrogates out unless asked). Run on PostgreSQL, these are the inputs that once got a 500.
"""

import json
from typing import Any

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.openapi import DESCRIPTION
from providers.models import Model, Price
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import (
    ANTHROPIC_MODEL,
    OPENAI_MODEL,
    Answer,
    call,
    chat_body,
    make_key,
    make_providers,
    messages_body,
)

EMBED_MODEL = "local/fake-embed"
FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
NAMES = st.sampled_from([OPENAI_MODEL, ANTHROPIC_MODEL, "local/fake-model-b", EMBED_MODEL, "local/nope", "nope",
                         "a/b/c", " "])
NUL_OR_SURROGATE = st.just("\x00") | st.integers(min_value=0xD800, max_value=0xDFFF).map(chr)
# Every character, lone surrogates included.
TEXT = st.text(st.characters(exclude_categories=()), max_size=20)


def spoiled(texts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A text with a NUL or a lone surrogate put somewhere in it."""
    return st.tuples(texts, st.integers(min_value=0, max_value=40), NUL_OR_SURROGATE).map(
        lambda drawn: drawn[0][:drawn[1]] + drawn[2] + drawn[0][drawn[1]:])


MODELS = NAMES | spoiled(NAMES)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DESCRIPTION["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def from_schema(schema: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """Values that fit a JSON schema of the description (the parts of JSON Schema it uses)."""
    schema = _resolve(schema)
    if name == "model":
        return MODELS
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema:
        return st.one_of([from_schema(option, name) for option in schema["oneOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": one}, name) for one in kind])
    if kind == "string" and "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=schema["pattern"].endswith("$"))
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=30)
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum", -(2**40)), max_value=schema.get("maximum", 2**40))
    if kind == "number":
        return st.floats(min_value=schema.get("minimum", -1e6), max_value=schema.get("maximum", 1e6))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), name), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object" and "properties" not in schema:
        return st.dictionaries(TEXT, JSON, max_size=3)
    if kind == "object":
        properties = schema["properties"]
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {key: from_schema(value, key) for key, value in properties.items() if key in required},
            optional={key: from_schema(value, key) for key, value in properties.items() if key not in required},
        )
    return JSON


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    paths = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _paths(item, (*path, index))
    return paths


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    return [_replace(item, rest, new) if index == head else item for index, item in enumerate(value)]


def mutated(body: Any) -> st.SearchStrategy[Any]:
    """The body with one part (anywhere in it) swapped for arbitrary JSON, or dropped."""
    paths = _paths(body)
    swapped = st.tuples(st.sampled_from(paths), JSON).map(lambda pair: _replace(body, pair[0], pair[1]))
    droppable = [path for path in paths if path and isinstance(path[-1], str)]
    if not droppable:
        return swapped
    dropped = st.sampled_from(droppable).map(
        lambda path: _replace(body, path[:-1], {k: v for k, v in _get(body, path[:-1]).items() if k != path[-1]}))
    return swapped | dropped


def _get(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


def bodies(schema_name: str) -> st.SearchStrategy[Any]:
    valid = from_schema({"$ref": f"#/components/schemas/{schema_name}"})
    return valid | valid.flatmap(mutated) | JSON


HEADERS = st.fixed_dictionaries({}, optional={
    "x-aspweb-cache": st.sampled_from(["true", "false", "1", "", "maybe"]),
    "x-aspweb-cache-ttl": st.sampled_from(["1", "300", "0", "-5", "1e3", "x", "99999999999"]),
})


@pytest.fixture
def key(db: None, upstream: FakeUpstream) -> str:
    models = make_providers(upstream)
    embed = Model.objects.create(provider=models[OPENAI_MODEL].provider, name="fake-embed", type="embedding")
    Price.objects.create(model=embed, input=1, output=0)
    return make_key()[1]


def _check(answer: Answer, shape: str) -> None:
    assert answer.status < 500, answer.content[:500]
    if answer.status >= 400:
        error = answer.json
        if shape == "anthropic":
            assert error["type"] == "error" and set(error["error"]) == {"type", "message"}
        else:
            assert set(error["error"]) == {"message", "type", "param", "code"}
        assert error["error"]["message"]
    elif answer.events and shape == "responses":
        name, last = answer.events[-1]
        assert name in ("response.completed", "response.incomplete", "response.failed") and name == last["type"]
        assert [data["sequence_number"] for _, data in answer.events] == list(range(len(answer.events)))
    elif answer.events:
        assert answer.events[-1] in ((None, "[DONE]"), ("message_stop", {"type": "message_stop"}))
    elif answer.json.get("object") == "list":  # embeddings
        assert answer.json["data"] and answer.json["usage"]["prompt_tokens"] >= 0
    else:
        assert answer.json["id"]


@FUZZ
@given(body=bodies("ChatCompletionRequest"), headers=HEADERS)
def test_chat_completions_never_fails_on_bad_input(key: str, body: Any, headers: dict[str, str]) -> None:
    cache.clear()
    _check(call("/v1/chat/completions", body, key=key, headers=headers), "openai")


@FUZZ
@given(body=bodies("MessagesRequest"), headers=HEADERS)
def test_messages_never_fails_on_bad_input(key: str, body: Any, headers: dict[str, str]) -> None:
    cache.clear()
    _check(call("/v1/messages", body, key=key, headers=headers), "anthropic")


@FUZZ
@given(body=bodies("ResponsesRequest"), headers=HEADERS)
def test_responses_never_fails_on_bad_input(key: str, body: Any, headers: dict[str, str]) -> None:
    cache.clear()
    _check(call("/v1/responses", body, key=key, headers=headers), "responses")


@FUZZ
@given(body=bodies("EmbeddingsRequest"), headers=HEADERS)
def test_embeddings_never_fails_on_bad_input(key: str, body: Any, headers: dict[str, str]) -> None:
    cache.clear()
    _check(call("/v1/embeddings", body, key=key, headers=headers), "openai")


def test_the_embeddings_fuzzing_reaches_both_successes_and_refusals(key: str) -> None:
    statuses: set[int] = set()

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(body=from_schema({"$ref": "#/components/schemas/EmbeddingsRequest"}))
    def run(body: Any) -> None:
        statuses.add(call("/v1/embeddings", body, key=key).status)

    run()
    assert 200 in statuses and 400 in statuses


@FUZZ
@given(raw=st.binary(max_size=200) | JSON.map(lambda value: json.dumps(value).encode()),
       path=st.sampled_from(["/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/embeddings"]))
def test_arbitrary_bytes_are_a_400(key: str, raw: bytes, path: str) -> None:
    answer = call(path, raw=raw, key=key)
    _check(answer, "anthropic" if path == "/v1/messages" else "openai")
    assert answer.status == 400


def test_the_fuzzing_reaches_both_successes_and_refusals(key: str) -> None:
    """The strategies are worth their time only if they produce accepted and refused requests alike."""
    statuses: set[int] = set()

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(body=from_schema({"$ref": "#/components/schemas/ChatCompletionRequest"}))
    def run(body: Any) -> None:
        statuses.add(call("/v1/chat/completions", body, key=key).status)

    run()
    assert 200 in statuses and 400 in statuses


def test_the_responses_fuzzing_reaches_both_successes_and_refusals(key: str) -> None:
    statuses: set[int] = set()

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(body=from_schema({"$ref": "#/components/schemas/ResponsesRequest"}))
    def run(body: Any) -> None:
        statuses.add(call("/v1/responses", body, key=key).status)

    run()
    assert 200 in statuses and 400 in statuses


@FUZZ
@given(name=NAMES, spoil=st.integers(min_value=0, max_value=40), bad=NUL_OR_SURROGATE,
       path=st.sampled_from(["/v1/chat/completions", "/v1/messages"]))
def test_a_model_the_database_cannot_hold_is_a_400_naming_it(key: str, name: str, spoil: int, bad: str,
                                                             path: str) -> None:
    """The model is looked up in the database: a NUL or a lone surrogate in it was a 500 on PostgreSQL."""
    model = name[:spoil] + bad + name[spoil:]
    body = chat_body(model) if path == "/v1/chat/completions" else messages_body(model)
    answer = call(path, body, key=key)
    assert answer.status == 400, answer.content[:500]
    if path == "/v1/messages":
        assert answer.json["error"]["type"] == "invalid_request_error"
        assert answer.json["error"]["message"].startswith("model contains")
    else:
        assert answer.json["error"]["param"] == "model" and answer.json["error"]["code"] == "invalid_text"


def _strings(value: Any) -> list[tuple]:
    return [path for path in _paths(value) if isinstance(_get(value, path), str)]


@FUZZ
@given(data=st.data(), schema=st.sampled_from(["ChatCompletionRequest", "MessagesRequest", "ResponsesRequest",
                                                   "EmbeddingsRequest"]),
       surrogate=st.integers(min_value=0xD800, max_value=0xDFFF).map(chr))
def test_a_lone_surrogate_anywhere_is_a_400_naming_where(key: str, data: st.DataObject, schema: str,
                                                         surrogate: str) -> None:
    """No provider can be sent a lone surrogate (it is not Unicode), so it is the client's error, found
    wherever it is in an otherwise valid request."""
    model = EMBED_MODEL if schema == "EmbeddingsRequest" else OPENAI_MODEL
    body = {**data.draw(from_schema({"$ref": f"#/components/schemas/{schema}"})), "model": model}
    # The one surrogate is the test's: a drawn body may hold one of its own already (in a schema's keys).
    assume(not any(0xD800 <= ord(char) <= 0xDFFF for char in json.dumps(body, ensure_ascii=False)))
    where = data.draw(st.sampled_from(_strings(body)))
    # After a space: a high and a low surrogate side by side are a pair, which JSON reads as one character.
    body = _replace(body, where, _get(body, where) + " " + surrogate)
    openai = schema != "MessagesRequest"
    path = {"ChatCompletionRequest": "/v1/chat/completions", "MessagesRequest": "/v1/messages",
            "ResponsesRequest": "/v1/responses", "EmbeddingsRequest": "/v1/embeddings"}[schema]
    answer = call(path, body, key=key)
    assert answer.status == 400, answer.content[:500]
    param = "".join(f"[{part}]" if openai and isinstance(part, int) else f".{part}" for part in where)[1:]
    if openai:
        assert answer.json["error"]["param"] == param
    else:
        assert answer.json["error"]["message"].startswith(f"{param} contains a lone surrogate")


@pytest.mark.parametrize(("path", "body"), [("/v1/chat/completions", chat_body()), ("/v1/messages", messages_body()),
                                            ("/v1/responses", {"model": OPENAI_MODEL, "messages": [{}]})])
def test_a_nul_in_a_prompt_is_passed_on(key: str, path: str, body: dict[str, Any]) -> None:
    """Prompts and tool results are sent to the provider and never stored, so NUL in them is no one's error."""
    body["messages"][0]["content"] = "before\x00after"
    if path == "/v1/responses":
        body["input"] = body.pop("messages")
        body["input"][0]["role"] = "user"
    assert call(path, body, key=key).status == 200
