"""A fake Amazon Bedrock runtime (and the one control-plane call aspweb makes) over real loopback HTTP.

Serves Bedrock's wire format, so that botocore (through aiobotocore) runs as it does in production:
- ``POST /model/{modelId}/converse``: Converse's JSON answer (``output.message.content``, ``stopReason``,
  ``usage`` with ``inputTokens``, ``outputTokens``, ``totalTokens``, ``cacheReadInputTokens``,
  ``cacheWriteInputTokens``, ``metrics.latencyMs``);
- ``POST /model/{modelId}/converse-stream``: ConverseStream's answer as ``application/vnd.amazon.eventstream``:
  binary messages, each a prelude (total length and headers length, 4-byte big-endian integers), the
  prelude's CRC32, headers (name length, name, type 7 = string, value length, value), a JSON payload and
  the message's CRC32; ``:event-type`` messageStart, contentBlockStart (tool use), contentBlockDelta,
  contentBlockStop, messageStop and metadata (with usage), or ``:message-type`` exception with
  ``:exception-type`` for an error inside the stream;
- ``POST /model/{modelId}/invoke``: InvokeModel for the embedding models of ``embedding_models``, in each
  model's own body format (Bedrock's user guide, "Amazon Titan Embeddings G1 - Text" and "Cohere Embed v3 /
  v4"). Amazon Titan Text Embeddings V2 takes ``{"inputText", "dimensions" (1024, 512 or 256), "normalize",
  "embeddingTypes" (["float", "binary"])}`` (G1 ``inputText`` only) and answers ``{"embedding",
  "inputTextTokenCount", "embeddingsByType"}``; Cohere Embed takes ``{"texts" (1 to 96), "input_type"
  (required), "embedding_types", "truncate"}`` (v4 also ``"output_dimension"``: 256, 512, 1024 or 1536) and
  answers ``{"id", "response_type", "texts", "embeddings"}``: ``embeddings_floats`` (a list of vectors)
  without ``embedding_types``, ``embeddings_by_type`` (``{"float": [...]}``) with it. Every answer carries
  the input's token count in ``X-Amzn-Bedrock-Input-Token-Count`` (one token a word, as the fake upstream
  counts; left out when ``send_token_count`` is false). A key the model does not take is a
  ValidationException, as Bedrock answers ("extraneous key [...] is not permitted"). Vectors are the fake
  upstream's ``fake_embedding(text, dimensions)``;
- ``GET /foundation-models``: ListFoundationModels' ``modelSummaries``: ``models``, or ``embedding_models``
  with ``byOutputModality=EMBEDDING``.

Every request must carry a valid SigV4 signature: the fake recomputes it with botocore's own signer from the
same credentials, region and service, and compares. An unknown key id is UnrecognizedClientException, a
signature that does not match InvalidSignatureException (both 403), as AWS answers. Errors are Bedrock's:
the status, an ``x-amzn-ErrorType`` header and ``{"message": ...}``. Behaviour is set by attributes
(``reply``, ``reasoning``, ``tool_use``, ``usage``, ``stop_reason``, ``chunk_delay``, ``models``,
``embedding_models``, ``send_token_count``) and a
queue of one-shot faults (``fail_next``), like the other fakes.
"""

from __future__ import annotations

import binascii
import contextlib
import hmac
import json
import re
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .loopback import LoopbackFake, TrackedHandler
from .upstream import embedding_tokens, fake_embedding

KEY_ID = "AKIAFAKEBEDROCK00001"
SECRET = "fake/secret+key0123456789abcdefghijKLMNOP"
REGION = "us-east-1"
DEFAULT_REPLY = "Hello from the fake Bedrock."
DEFAULT_MODELS = ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "amazon.nova-lite-v1:0",
                  "meta.llama3-3-70b-instruct-v1:0", "mistral.mistral-large-2402-v1:0")
DEFAULT_EMBEDDING_MODELS = ("amazon.titan-embed-text-v2:0", "amazon.titan-embed-text-v1",
                            "cohere.embed-english-v3", "cohere.embed-multilingual-v3", "cohere.embed-v4:0",
                            "us.cohere.embed-v4:0")

# Bedrock's exceptions: status and message, as the service answers them.
ERRORS: dict[str, tuple[int, str]] = {
    "ThrottlingException": (429, "Too many requests, please wait before trying again."),
    "AccessDeniedException": (403, "You don't have access to the model with the specified model ID."),
    "UnrecognizedClientException": (403, "The security token included in the request is invalid."),
    "InvalidSignatureException": (403, "The request signature we calculated does not match the signature you "
                                       "provided. Check your AWS Secret Access Key and signing method."),
    "ValidationException": (400, "The provided model identifier is invalid."),
    "ResourceNotFoundException": (404, "Model not found."),
    "ModelNotReadyException": (429, "Model is not ready for inference."),
    "ServiceUnavailableException": (503, "The service is unavailable. Try again later."),
    "InternalServerException": (500, "The server encountered an internal error."),
    "ModelTimeoutException": (408, "The request took too long to process."),
    "ServiceQuotaExceededException": (400, "Your request exceeds the service quota for your account."),
}
_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream|invoke)$")
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
                   r"/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?Signature=(?P<signature>[0-9a-f]{64})$")


@dataclass(frozen=True)
class Fault:
    """``kind``: "ok"; "cut" (drop the connection after ``cut_after`` stream messages, or mid-answer);
    "slow" (wait ``delay`` seconds between messages or before the answer); an exception's name from
    ERRORS, answered before the stream starts, or, with ``in_stream``, as an exception message after the
    first text."""

    kind: str = "ok"
    delay: float = 0.5
    cut_after: int = 2
    in_stream: bool = False

    def __post_init__(self) -> None:
        if self.kind not in {"ok", "cut", "slow", *ERRORS}:
            raise ValueError(f"unknown fault {self.kind!r}")


@dataclass
class RecordedRequest:
    method: str
    path: str  # percent-decoded
    headers: dict[str, str]
    body: Any
    model: str | None
    signature_ok: bool


@dataclass
class _Config:
    reply: str = DEFAULT_REPLY
    reasoning: str = ""
    tool_use: dict[str, Any] | None = None  # {"toolUseId", "name", "input"}: answer with this call after the text
    stop_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    send_usage: bool = True
    chunk_delay: float = 0.0
    models: tuple[str, ...] = DEFAULT_MODELS
    embedding_models: tuple[str, ...] = DEFAULT_EMBEDDING_MODELS
    send_token_count: bool = True


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of AWS's event-stream encoding, every header a string (type 7)."""
    encoded = b"".join(struct.pack(">B", len(name)) + name.encode() + struct.pack(">BH", 7, len(value.encode()))
                       + value.encode() for name, value in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def _event(event_type: str, payload: dict[str, Any]) -> bytes:
    return event_message({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                         json.dumps(payload).encode())


def _exception(name: str, message: str) -> bytes:
    # Inside a stream the exception's name is the stream member's, in lower camel case.
    return event_message({":exception-type": name[0].lower() + name[1:], ":content-type": "application/json",
                          ":message-type": "exception"}, json.dumps({"message": message}).encode())


class FakeBedrock(LoopbackFake):
    """``key_id``, ``secret`` and ``session_token`` are the only credentials it accepts; ``region`` the only
    region. Point a connection's base URL at ``base_url``."""

    thread_name = "fake-bedrock"

    def __init__(self, *, key_id: str = KEY_ID, secret: str = SECRET, session_token: str = "",
                 region: str = REGION) -> None:
        super().__init__()
        self.key_id, self.secret, self.session_token, self.region = key_id, secret, session_token, region
        self.config = _Config()
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._requests: list[RecordedRequest] = []

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def __getattr__(self, name: str) -> Any:  # fake.reply and the rest read the config
        if name in _Config.__dataclass_fields__:
            return getattr(self.__dict__["config"], name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _Config.__dataclass_fields__:
            setattr(self.config, name, value)
        else:
            super().__setattr__(name, value)

    def fail_next(self, kind: str, **options: Any) -> None:
        with self._lock:
            self._faults.append(Fault(kind, **options))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            return self._requests[-1]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_fault(self) -> Fault:
        with self._lock:
            return self._faults.popleft() if self._faults else Fault()

    def check_signature(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> str | None:
        """None when the request is signed with the fake's credentials, else the exception AWS would name."""
        match = _AUTH.match(headers.get("authorization", ""))
        if match is None or "x-amz-date" not in headers:
            return "MissingAuthenticationTokenException"
        if match["key"] != self.key_id or headers.get("x-amz-security-token", "") != self.session_token:
            return "UnrecognizedClientException"
        service = "bedrock"  # the signing name of both bedrock-runtime and bedrock
        if match["region"] != self.region or match["service"] != service:
            return "InvalidSignatureException"
        signed = match["signed"].split(";")
        request = AWSRequest(method=method, url=f"http://{headers.get('host', '')}{raw_path}", data=body,
                             headers={name: headers[name] for name in signed if name in headers})
        request.context["timestamp"] = headers["x-amz-date"]
        signer = SigV4Auth(Credentials(self.key_id, self.secret, self.session_token or None), service, self.region)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        stamp = datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        fresh = abs((datetime.now(UTC) - stamp).total_seconds()) < 15 * 60
        return None if hmac.compare_digest(expected, match["signature"]) and fresh else "InvalidSignatureException"


def _prompt_text(body: dict[str, Any]) -> str:
    texts = [block.get("text", "") for block in body.get("system") or [] if isinstance(block, dict)]
    for message in body.get("messages") or []:
        texts.extend(block.get("text", "") for block in message.get("content") or [] if isinstance(block, dict))
    return "".join(texts)


def _keys(body: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("#: expected type: JSONObject")
    for name in body:
        if name not in allowed:
            raise ValueError(f"#: extraneous key [{name}] is not permitted")
    for name in sorted(required - set(body)):
        raise ValueError(f"#: required key [{name}] not found")
    return body


def _titan_body(model: str, body: Any) -> tuple[dict[str, Any], int]:
    """Titan Text Embeddings: one `inputText`; V2 also `dimensions`, `normalize` and `embeddingTypes`."""
    v2 = "titan-embed-text-v2" in model
    body = _keys(body, {"inputText", "dimensions", "normalize", "embeddingTypes"} if v2 else {"inputText"},
                 {"inputText"})
    text = body["inputText"]
    if not isinstance(text, str) or not text:
        raise ValueError("#/inputText: expected minLength: 1")
    dimensions = body.get("dimensions", 1024 if v2 else 1536)
    if v2 and dimensions not in (256, 512, 1024):
        raise ValueError(f"#/dimensions: {dimensions} is not a valid enum value")
    if not isinstance(body.get("normalize", True), bool):
        raise ValueError("#/normalize: expected type: Boolean")
    types = body.get("embeddingTypes", ["float"])
    if not isinstance(types, list) or not types or not set(types) <= {"float", "binary"}:
        raise ValueError("#/embeddingTypes: expected a list of float and binary")
    vector = fake_embedding(text, dimensions)
    by_type: dict[str, Any] = {"float": vector} if "float" in types or not v2 else {}
    if "binary" in types:
        by_type["binary"] = [int(value > 0) for value in vector]
    answer: dict[str, Any] = {"embedding": vector, "inputTextTokenCount": embedding_tokens(text)}
    if v2:
        answer["embeddingsByType"] = by_type
    return answer, embedding_tokens(text)


def _cohere_body(model: str, body: Any) -> tuple[dict[str, Any], int]:
    """Cohere Embed v3 and v4: up to 96 `texts` of one `input_type`; v4 also `output_dimension`."""
    v4 = "embed-v4" in model
    allowed = {"texts", "input_type", "embedding_types", "truncate", "images"}
    body = _keys(body, allowed | {"output_dimension", "max_tokens", "inputs"} if v4 else allowed, {"input_type"})
    texts = body.get("texts")
    if not isinstance(texts, list) or not 1 <= len(texts) <= 96 or not all(isinstance(t, str) for t in texts):
        raise ValueError("#/texts: expected an array of 1 to 96 strings")
    if body["input_type"] not in ("search_document", "search_query", "classification", "clustering"):
        raise ValueError(f"#/input_type: {body['input_type']} is not a valid enum value")
    if body.get("truncate", "NONE") not in (("NONE", "LEFT", "RIGHT") if v4 else ("NONE", "START", "END")):
        raise ValueError(f"#/truncate: {body['truncate']} is not a valid enum value")
    dimensions = body.get("output_dimension", 1536 if v4 else 1024)
    if dimensions not in (256, 512, 1024, 1536):
        raise ValueError(f"#/output_dimension: {dimensions} is not a valid enum value")
    types = body.get("embedding_types")
    if types is not None and (not isinstance(types, list) or not set(types) <= {"float", "int8", "uint8", "binary",
                                                                                   "ubinary"}):
        raise ValueError("#/embedding_types: expected a list of float, int8, uint8, binary and ubinary")
    vectors = [fake_embedding(text, dimensions) for text in texts]
    answer: dict[str, Any] = {"id": "00000000-0000-0000-0000-0000000000e1", "texts": texts}
    if types is None:
        answer.update(response_type="embeddings_floats", embeddings=vectors)
    else:
        by_type: dict[str, Any] = {}
        if "float" in types:
            by_type["float"] = vectors
        if "int8" in types:
            by_type["int8"] = [[round(value * 127) for value in vector] for vector in vectors]
        answer.update(response_type="embeddings_by_type", embeddings=by_type)
    return answer, sum(embedding_tokens(text) for text in texts)


class _Handler(TrackedHandler):
    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionError:
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake: FakeBedrock = self.server.fake
        raw_path = urlsplit(self.path).path
        path = unquote(raw_path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        raw = self.rfile.read(int(headers.get("content-length") or 0))
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        route = _PATH.match(path) if self.command == "POST" else None
        refused = fake.check_signature(self.command, self.path, headers, raw)
        fake._record(RecordedRequest(self.command, path, headers, body, route["model"] if route else None,
                                     refused is None))
        if refused:
            self._error(refused, 403, ERRORS.get(refused, (403, "Missing Authentication Token"))[1])
            return
        config = _Config(**vars(fake.config))
        if self.command == "GET" and raw_path.startswith("/foundation-models"):
            embedding = parse_qs(urlsplit(self.path).query).get("byOutputModality") == ["EMBEDDING"]
            self._send_json({"modelSummaries": [
                {"modelId": model, "modelName": f"Fake {model}", "providerName": model.split(".")[-2].title(),
                 "outputModalities": ["EMBEDDING" if embedding else "TEXT"],
                 "responseStreamingSupported": not embedding,
                 "inferenceTypesSupported": ["ON_DEMAND"]}
                for model in (config.embedding_models if embedding else config.models)]})
            return
        if route is None:
            self._error("UnknownOperationException", 404, f"Unknown operation {self.command} {path}")
            return
        fault = fake._next_fault()
        if fault.kind in ERRORS and not fault.in_stream:
            self._error(fault.kind, *ERRORS[fault.kind])
            return
        if route["op"] == "invoke":
            self._invoke(route["model"], body, config)
        elif not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            self._error("ValidationException", 400, "A conversation must start with a user message.")
        elif route["model"] not in config.models:
            self._error("ValidationException", 400, "The provided model identifier is invalid.")
        elif route["op"] == "converse-stream":
            self._stream(body, config, fault)
        else:
            self._answer(body, config, fault)

    def _usage(self, body: dict[str, Any], config: _Config, output: int) -> dict[str, Any]:
        usage = {"inputTokens": max(1, len(_prompt_text(body)) // 4), "outputTokens": output, **config.usage}
        usage.setdefault("totalTokens", sum(usage.get(name, 0) for name in (
            "inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")))
        return usage

    def _stop_reason(self, config: _Config) -> str:
        return config.stop_reason or ("tool_use" if config.tool_use else "end_turn")

    def _answer(self, body: dict[str, Any], config: _Config, fault: Fault) -> None:
        content: list[dict[str, Any]] = []
        if config.reasoning:
            content.append({"reasoningContent": {"reasoningText": {"text": config.reasoning}}})
        content.append({"text": config.reply})
        if config.tool_use:
            content.append({"toolUse": config.tool_use})
        answer: dict[str, Any] = {"output": {"message": {"role": "assistant", "content": content}},
                                  "stopReason": self._stop_reason(config), "metrics": {"latencyMs": 12}}
        if config.send_usage:
            answer["usage"] = self._usage(body, config, len(re.findall(r"\S+", config.reply)))
        if fault.kind == "slow":
            self.server.fake._sleep(fault.delay)
        self._send_json(answer, cut=fault.kind == "cut")

    def _messages(self, body: dict[str, Any], config: _Config, fault: Fault) -> list[bytes]:
        words = re.findall(r"\S+\s*|\s+", config.reply)
        messages = [_event("messageStart", {"role": "assistant"})]
        index = 0
        if config.reasoning:
            messages.append(_event("contentBlockDelta", {"contentBlockIndex": index, "delta": {
                "reasoningContent": {"text": config.reasoning}}}))
            messages.append(_event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        for position, word in enumerate(words):
            # "p" is the padding Bedrock adds to each event against length side channels.
            messages.append(_event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": word},
                                                         "p": "abcdefgh"[: position % 8]}))
            if position == 0 and fault.in_stream:
                messages.append(_exception(fault.kind, ERRORS[fault.kind][1]))
        messages.append(_event("contentBlockStop", {"contentBlockIndex": index}))
        if config.tool_use:
            index += 1
            use = config.tool_use
            messages.append(_event("contentBlockStart", {"contentBlockIndex": index, "start": {
                "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
            text = json.dumps(use.get("input", {})) if use.get("input") else ""
            for piece in (text[: len(text) // 2], text[len(text) // 2:]):
                if piece:
                    messages.append(_event("contentBlockDelta", {"contentBlockIndex": index,
                                                                 "delta": {"toolUse": {"input": piece}}}))
            messages.append(_event("contentBlockStop", {"contentBlockIndex": index}))
        messages.append(_event("messageStop", {"stopReason": self._stop_reason(config)}))
        if config.send_usage:
            messages.append(_event("metadata", {"usage": self._usage(body, config, len(words)),
                                                "metrics": {"latencyMs": 12}}))
        return messages

    def _stream(self, body: dict[str, Any], config: _Config, fault: Fault) -> None:
        delay = fault.delay if fault.kind == "slow" else config.chunk_delay
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        self.end_headers()
        for position, message in enumerate(self._messages(body, config, fault)):
            if fault.kind == "cut" and position >= fault.cut_after:
                self._abort()
                return
            if position:
                self.server.fake._sleep(delay)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(message), message))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _invoke(self, model: str, body: Any, config: _Config) -> None:
        if model not in config.embedding_models:
            self._error("ValidationException", 400, "The provided model identifier is invalid.")
            return
        family = _titan_body if "titan-embed" in model else _cohere_body
        try:
            answer, tokens = family(model, body)
        except ValueError as exc:
            self._error("ValidationException", 400, f"Malformed input request: {exc}, please reformat your input "
                                                    "and try again.")
            return
        headers = {"X-Amzn-Bedrock-Input-Token-Count": str(tokens)} if config.send_token_count else {}
        self._send_json(answer, headers={"X-Amzn-Bedrock-Invocation-Latency": "12", **headers})

    def _error(self, code: str, status: int, message: str) -> None:
        data = json.dumps({"message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, payload: Any, *, cut: bool = False, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if cut:
            self.wfile.write(data[: len(data) // 2])
            self._abort()
            return
        self.wfile.write(data)

    def _abort(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
