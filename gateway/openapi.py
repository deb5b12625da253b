"""The OpenAPI 3.1 description of the gateway, served at /v1/openapi.json. Written by hand, next to the
parsers it describes; the fuzzing tests draw request bodies from these schemas, so the two cannot drift
apart unnoticed."""

from typing import Any

from .cache import MAX_TTL
from .checks import MAX_EMBEDDING_DIMENSIONS, MAX_EMBEDDING_INPUTS, MAX_INT


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_STRING = {"type": "string"}
_TEXT_PART = {"type": "object", "required": ["type", "text"],
              "properties": {"type": {"const": "text"}, "text": _STRING}}
_IMAGE_PART = {
    "type": "object", "required": ["type", "image_url"],
    "properties": {"type": {"const": "image_url"}, "image_url": {
        "type": "object", "required": ["url"],
        "properties": {"url": {"type": "string", "pattern": "^(https?://|data:image/)",
                               "description": "https:// URL or data:image/...;base64,..."},
                       "detail": {"enum": ["auto", "low", "high"]}}}},
}
_TEXT_CONTENT = {"oneOf": [_STRING, {"type": "array", "items": _TEXT_PART}]}
_NAME = {"type": "string", "minLength": 1}
_TOOL_CALL = {
    "type": "object", "required": ["id", "type", "function"],
    "properties": {"id": _NAME, "type": {"const": "function"}, "function": {
        "type": "object", "required": ["name", "arguments"],
        "properties": {"name": _NAME, "arguments": {"type": "string", "description": "JSON text"}}}},
}

_SCHEMAS: dict[str, Any] = {
    "ChatMessage": {
        "description": "system and developer messages join the system prompt, in their order.",
        "oneOf": [
            {"type": "object", "required": ["role", "content"],
             "properties": {"role": {"enum": ["system", "developer"]}, "content": _TEXT_CONTENT, "name": _STRING}},
            {"type": "object", "required": ["role", "content"],
             "properties": {"role": {"const": "user"}, "name": _STRING, "content": {"oneOf": [
                 _STRING, {"type": "array", "minItems": 1, "items": {"oneOf": [_TEXT_PART, _IMAGE_PART]}}]}}},
            {"type": "object", "required": ["role"],
             "description": "content, tool_calls or both.",
             "properties": {"role": {"const": "assistant"}, "content": {"oneOf": [_TEXT_CONTENT, {"type": "null"}]},
                            "tool_calls": {"type": "array", "items": _TOOL_CALL}}},
            {"type": "object", "required": ["role", "tool_call_id", "content"],
             "properties": {"role": {"const": "tool"}, "tool_call_id": {"type": "string", "minLength": 1},
                            "content": _TEXT_CONTENT}},
        ],
    },
    "Tool": {
        "type": "object", "required": ["type", "function"],
        "properties": {"type": {"const": "function"}, "function": {
            "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "description": _STRING,
                           "parameters": {"type": "object"}, "strict": {"type": "boolean"}}}},
    },
    "ChatCompletionRequest": {
        "type": "object", "required": ["model", "messages"], "additionalProperties": False,
        "properties": {
            "model": {"type": "string", "minLength": 1, "description": "A route name or PROVIDER/MODEL."},
            "messages": {"type": "array", "minItems": 1, "items": _ref("ChatMessage")},
            "stream": {"type": "boolean"},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}},
                               "description": "Only with stream: true. include_usage: the last chunk carries "
                                              "the usage, whatever the provider sent."},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_INT},
            "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_INT},
            "stop": {"oneOf": [_STRING, {"type": "array", "items": {"type": "string", "minLength": 1},
                                         "maxItems": 4}]},
            "n": {"const": 1, "description": "Only 1: several answers per request are not supported."},
            "tools": {"type": "array", "items": _ref("Tool"), "maxItems": 128},
            "tool_choice": {"description": "Other than none, only with tools.", "oneOf": [
                {"enum": ["none", "auto", "required"]}, {
                "type": "object", "required": ["type", "function"],
                "properties": {"type": {"const": "function"},
                               "function": {"type": "object", "required": ["name"],
                                            "properties": {"name": _NAME}}}}]},
            "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
            "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
            "seed": {"type": "integer"},
            "logit_bias": {"type": "object", "additionalProperties": {"type": "number"}},
            "response_format": {"type": "object", "required": ["type"],
                                "properties": {"type": {"enum": ["text", "json_object", "json_schema"]},
                                               "json_schema": {"type": "object"}}},
            "reasoning_effort": {"enum": ["minimal", "low", "medium", "high"]},
            "verbosity": {"enum": ["low", "medium", "high"]},
            "logprobs": {"const": False},
            "modalities": {"type": "array", "items": {"const": "text"}, "minItems": 1, "maxItems": 1},
            "user": {"type": "string", "maxLength": 128,
                     "description": "The end user the call is for: recorded in the usage ledger, never sent on."},
            "metadata": {"type": "object", "maxProperties": 16, "additionalProperties": {"type": "string",
                                                                                       "maxLength": 512},
                         "description": "Labels; `tags` (\"a,b\": at most 10 tags of 64 characters) tags the "
                                        "call. Sent on only to providers that accept it."},
            "store": {"type": "boolean"},
            "service_tier": _STRING,
            "parallel_tool_calls": {"type": "boolean"},
            "safety_identifier": _STRING,
            "prompt_cache_key": _STRING,
        },
    },
    "ChatCompletion": {
        "type": "object",
        "properties": {
            "id": _STRING, "object": {"const": "chat.completion"}, "created": {"type": "integer"},
            "model": _STRING,
            "choices": {"type": "array", "items": {"type": "object", "properties": {
                "index": {"type": "integer"}, "finish_reason": {"enum": ["stop", "length", "tool_calls",
                                                                         "content_filter"]},
                "message": {"type": "object", "properties": {
                    "role": {"const": "assistant"}, "content": {"type": ["string", "null"]},
                    "tool_calls": {"type": "array", "items": _TOOL_CALL}}}}}},
            "usage": _ref("Usage"),
        },
    },
    "Usage": {
        "type": "object",
        "properties": {
            "prompt_tokens": {"type": "integer", "description": "Cached tokens included."},
            "completion_tokens": {"type": "integer", "description": "Reasoning tokens included."},
            "total_tokens": {"type": "integer"},
            "prompt_tokens_details": {"type": "object", "properties": {"cached_tokens": {"type": "integer"}}},
            "completion_tokens_details": {"type": "object",
                                          "properties": {"reasoning_tokens": {"type": "integer"}}},
        },
    },
    "AnthropicContentBlock": {"oneOf": [
        _TEXT_PART,
        {"type": "object", "required": ["type", "source"], "description": "In user turns.",
         "properties": {"type": {"const": "image"}, "source": {"oneOf": [
             {"type": "object", "required": ["type", "media_type", "data"],
              "properties": {"type": {"const": "base64"},
                             "media_type": {"enum": ["image/jpeg", "image/png", "image/gif", "image/webp"]},
                             "data": {"type": "string", "minLength": 1}}},
             {"type": "object", "required": ["type", "url"],
              "properties": {"type": {"const": "url"}, "url": {"type": "string", "pattern": "^https?://"}}}]}}},
        {"type": "object", "required": ["type", "id", "name", "input"], "description": "In assistant turns.",
         "properties": {"type": {"const": "tool_use"}, "id": {"type": "string", "minLength": 1},
                        "name": {"type": "string", "minLength": 1}, "input": {"type": "object"}}},
        {"type": "object", "required": ["type", "tool_use_id"], "description": "In user turns.",
         "properties": {"type": {"const": "tool_result"}, "tool_use_id": {"type": "string", "minLength": 1},
                        "content": _TEXT_CONTENT, "is_error": {"type": "boolean"}}},
        {"type": "object", "required": ["type", "thinking"], "description": "In assistant turns; dropped.",
         "properties": {"type": {"const": "thinking"}, "thinking": _STRING, "signature": _STRING}},
    ]},
    "MessagesRequest": {
        "type": "object", "required": ["model", "max_tokens", "messages"], "additionalProperties": False,
        "properties": {
            "model": {"type": "string", "minLength": 1, "description": "A route name or PROVIDER/MODEL."},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_INT},
            "messages": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["role", "content"],
                "properties": {"role": {"enum": ["user", "assistant"]},
                               "content": {"oneOf": [_STRING, {"type": "array", "minItems": 1,
                                                               "items": _ref("AnthropicContentBlock")}]}}}},
            "system": {"oneOf": [_STRING, {"type": "array", "items": _TEXT_PART}]},
            "stop_sequences": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "top_k": {"type": "integer", "minimum": 0},
            "stream": {"type": "boolean"},
            "tools": {"type": "array", "items": {
                "type": "object", "required": ["name", "input_schema"],
                "properties": {"name": _NAME, "description": _STRING, "input_schema": {"type": "object"}}}},
            "tool_choice": {"type": "object", "required": ["type"],
                            "properties": {"type": {"enum": ["auto", "any", "none", "tool"]}, "name": _NAME},
                            "description": "name: the tool, with type tool."},
            "thinking": {"type": "object", "required": ["type"],
                         "properties": {"type": {"enum": ["enabled", "disabled"]},
                                        "budget_tokens": {"type": "integer", "minimum": 1024,
                                                          "description": "With enabled; less than max_tokens."}}},
            "metadata": {"type": "object", "additionalProperties": False,
                         "properties": {"user_id": {"type": "string", "maxLength": 128,
                                                    "description": "The end user, recorded in the usage ledger."}}},
            "service_tier": _STRING,
        },
    },
    "Message": {
        "type": "object",
        "properties": {
            "id": _STRING, "type": {"const": "message"}, "role": {"const": "assistant"}, "model": _STRING,
            "content": {"type": "array", "items": _ref("AnthropicContentBlock")},
            "stop_reason": {"enum": ["end_turn", "max_tokens", "tool_use", "refusal"]},
            "usage": {"type": "object", "properties": {
                name: {"type": "integer"} for name in ("input_tokens", "output_tokens",
                                                       "cache_creation_input_tokens", "cache_read_input_tokens")}},
        },
    },
    "ResponsesInputItem": {
        "description": "A message (easy input: role and content), a function call the model made, or its output. "
                       "system and developer messages join instructions; reasoning items are dropped.",
        "oneOf": [
            {"type": "object", "required": ["role", "content"],
             "properties": {"type": {"const": "message"}, "role": {"enum": ["user", "system", "developer"]},
                            "content": {"oneOf": [_STRING, {"type": "array", "minItems": 1, "items": {"oneOf": [
                                {"type": "object", "required": ["type", "text"],
                                 "properties": {"type": {"const": "input_text"}, "text": _STRING}},
                                {"type": "object", "required": ["type", "image_url"],
                                 "properties": {"type": {"const": "input_image"},
                                                "image_url": {"type": "string", "pattern": "^(https?://|data:image/)"},
                                                "detail": {"enum": ["auto", "low", "high"]}}}]}}]}}},
            {"type": "object", "required": ["role", "content"],
             "properties": {"type": {"const": "message"}, "role": {"const": "assistant"},
                            "content": {"oneOf": [_STRING, {"type": "array", "items": {
                                "type": "object", "required": ["type", "text"],
                                "properties": {"type": {"const": "output_text"}, "text": _STRING}}}]}}},
            {"type": "object", "required": ["type", "call_id", "name", "arguments"],
             "properties": {"type": {"const": "function_call"}, "call_id": _NAME,
                            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                            "arguments": {"type": "string", "description": "JSON text"}}},
            {"type": "object", "required": ["type", "call_id", "output"],
             "properties": {"type": {"const": "function_call_output"}, "call_id": _NAME, "output": _STRING}},
        ],
    },
    "ResponsesRequest": {
        "type": "object", "required": ["model", "input"], "additionalProperties": False,
        "description": "aspweb keeps no conversation state: previous_response_id, conversation and store: true "
                       "are refused (400); send the conversation so far as input.",
        "properties": {
            "model": {"type": "string", "minLength": 1, "description": "A route name or PROVIDER/MODEL."},
            "input": {"oneOf": [_STRING, {"type": "array", "minItems": 1, "items": _ref("ResponsesInputItem")}]},
            "instructions": _STRING,
            "max_output_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_INT},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "stream": {"type": "boolean"},
            "store": {"const": False, "description": "Only false, or left out."},
            "tools": {"type": "array", "items": {
                "type": "object", "required": ["type", "name"],
                "properties": {"type": {"const": "function"},
                               "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                               "description": _STRING, "parameters": {"type": "object"},
                               "strict": {"type": "boolean"}}}},
            "tool_choice": {"oneOf": [{"enum": ["none", "auto", "required"]},
                                      {"type": "object", "required": ["type", "name"],
                                       "properties": {"type": {"const": "function"}, "name": _NAME}}]},
            "parallel_tool_calls": {"type": "boolean"},
            "reasoning": {"type": "object", "properties": {
                "effort": {"enum": ["none", "minimal", "low", "medium", "high", "xhigh"]},
                "summary": {"enum": ["auto", "concise", "detailed"]}},
                "description": "effort: OpenAI's reasoning_effort, or a thinking budget on Anthropic models."},
            "user": {"type": "string", "maxLength": 128, "description": "The end user, recorded in the ledger."},
            "metadata": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 512},
                         "description": "At most 16 pairs; tags: comma-separated tags of the call."},
        },
    },
    "Response": {
        "type": "object",
        "properties": {
            "id": _STRING, "object": {"const": "response"}, "model": _STRING,
            "status": {"enum": ["completed", "incomplete", "failed"]},
            "output": {"type": "array", "items": {"type": "object", "properties": {
                "type": {"enum": ["reasoning", "message", "function_call"]}}}},
            "usage": {"type": "object", "properties": {
                "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
                "input_tokens_details": {"type": "object", "properties": {"cached_tokens": {"type": "integer"}}},
                "output_tokens_details": {"type": "object",
                                          "properties": {"reasoning_tokens": {"type": "integer"}}}}},
        },
    },
    "EmbeddingsRequest": {
        "type": "object", "required": ["model", "input"], "additionalProperties": False,
        "properties": {
            "model": {"type": "string", "minLength": 1,
                      "description": "A route name or PROVIDER/MODEL of an embedding model."},
            "input": {"oneOf": [{"type": "string", "minLength": 1},
                                {"type": "array", "minItems": 1, "maxItems": MAX_EMBEDDING_INPUTS,
                                 "items": {"type": "string", "minLength": 1}}],
                      "description": "A text, or texts to embed in one call. Token arrays are not supported."},
            "dimensions": {"type": "integer", "minimum": 1, "maximum": MAX_EMBEDDING_DIMENSIONS,
                           "description": "Sent on to the provider; models that cannot shorten their vectors "
                                          "refuse it (a 400)."},
            "encoding_format": {"enum": ["float", "base64"],
                                "description": "base64: each vector as the base64 text of its little-endian "
                                               "float32 values. float by default."},
            "user": {"type": "string", "maxLength": 128,
                     "description": "The end user the call is for: recorded in the usage ledger."},
            "metadata": {"type": "object", "maxProperties": 16, "additionalProperties": {"type": "string",
                                                                                       "maxLength": 512},
                         "description": "Labels; `tags` (\"a,b\") tags the call. Not sent on."},
        },
    },
    "EmbeddingList": {
        "type": "object",
        "properties": {
            "object": {"const": "list"}, "model": _STRING,
            "data": {"type": "array", "items": {"type": "object", "properties": {
                "object": {"const": "embedding"}, "index": {"type": "integer"},
                "embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}}, _STRING]}}}},
            "usage": {"type": "object", "properties": {"prompt_tokens": {"type": "integer"},
                                                       "total_tokens": {"type": "integer"}}},
        },
    },
    "ModelList": {
        "type": "object",
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
            "type": "object", "properties": {"id": _STRING, "object": {"const": "model"},
                                             "created": {"type": "integer"}, "owned_by": _STRING,
                                             "model_type": {"enum": ["chat", "embedding"],
                                                            "description": "aspweb's: what the model answers."}}}}},
    },
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
            "message": _STRING, "type": _STRING, "param": {"type": ["string", "null"]},
            "code": {"type": ["string", "null"]}}}},
    },
    "AnthropicError": {
        "type": "object", "required": ["type", "error"],
        "properties": {"type": {"const": "error"}, "error": {"type": "object", "required": ["type", "message"],
                                                              "properties": {"type": _STRING, "message": _STRING}}},
    },
}

_CALL_HEADERS = {
    "x-request-id": {"description": "The call's id in aspweb's usage ledger.", "schema": _STRING},
    "x-aspweb-provider": {"description": "The provider that answered.", "schema": _STRING},
    "x-aspweb-model": {"description": "The provider's model that answered.", "schema": _STRING},
    "x-aspweb-cost": {"description": "The call's cost in USD. Not sent on streams, nor on embeddings passed on "
                                     "as the provider sends them: the cost is known only once the answer has "
                                     "gone (the usage ledger has it).", "schema": _STRING},
    "x-aspweb-cache": {"description": "hit or miss, when the response cache was asked for.", "schema": _STRING},
}
_REQUEST_HEADERS = [
    {"name": "x-aspweb-cache", "in": "header", "schema": {"enum": ["true", "false"]},
     "description": "true: answer identical requests from the cache; false: never, even on a route that caches."},
    {"name": "x-aspweb-cache-ttl", "in": "header", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TTL},
     "description": "Seconds to keep this answer (300 by default); also turns the cache on."},
    {"name": "x-aspweb-tags", "in": "header", "schema": _STRING,
     "description": "Tags of the call, comma-separated (at most 10, of 64 characters), added to the body's."},
    {"name": "x-aspweb-end-user", "in": "header", "schema": {"type": "string", "maxLength": 128},
     "description": "The end user the call is for, when the body names none."},
]


def _errors(schema: str) -> dict[str, Any]:
    described = {
        "400": "Bad JSON or parameters, or the provider refused the request as invalid.",
        "401": "No key, or an unknown, revoked or expired key.",
        "403": "The key may not use this model, or an admin disabled it.",
        "404": "Unknown model.",
        "429": "The key's rate limit or the provider's; see Retry-After.",
        "502": "The provider failed or refused aspweb's credentials.",
        "503": "The provider is overloaded.",
        "504": "The provider did not answer in time.",
    }
    return {status: {"description": text, "content": {"application/json": {"schema": _ref(schema)}}}
            for status, text in described.items()}


def _call(summary: str, request: str, answer: str, error: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "parameters": _REQUEST_HEADERS,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
        "responses": {
            "200": {"description": "The answer; a text/event-stream of events when stream is true.",
                    "headers": _CALL_HEADERS,
                    "content": {"application/json": {"schema": _ref(answer)}, "text/event-stream": {}}},
            **_errors(error),
        },
    }}


DESCRIPTION: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "aspweb gateway",
        "version": "1",
        "description": "OpenAI- and Anthropic-compatible endpoints over every provider configured in aspweb. "
                       "Authenticate with an aspweb API key (ask-...), as a Bearer token or in x-api-key.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}, {"apiKey": []}],
    "paths": {
        "/v1/chat/completions": _call("OpenAI chat completions", "ChatCompletionRequest", "ChatCompletion", "Error"),
        "/v1/messages": _call("Anthropic messages", "MessagesRequest", "Message", "AnthropicError"),
        "/v1/responses": _call("OpenAI Responses API (stateless)", "ResponsesRequest", "Response", "Error"),
        "/v1/embeddings": {"post": {
            "summary": "OpenAI embeddings, of embedding models (model_type embedding in /v1/models).",
            "parameters": _REQUEST_HEADERS[2:],  # attribution; the response cache does not apply
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("EmbeddingsRequest")}}},
            "responses": {
                "200": {"description": "The vectors, in the order of the inputs: the provider's answer as it sent it "
                                       "where it answered OpenAI's shape in the encoding asked for (its model the "
                                       "provider's name), else written by aspweb.",
                        "headers": {name: header for name, header in _CALL_HEADERS.items() if name != "x-aspweb-cache"},
                        "content": {"application/json": {"schema": _ref("EmbeddingList")}}},
                **_errors("Error"),
            },
        }},
        "/v1/models": {"get": {
            "summary": "The models (PROVIDER/MODEL) and routes the key may use. In Anthropic's shape when the "
                       "request has an anthropic-version header.",
            "responses": {"200": {"description": "The list.",
                                  "content": {"application/json": {"schema": _ref("ModelList")}}},
                          "401": _errors("Error")["401"]},
        }},
        "/v1/models/{model_id}": {"get": {
            "summary": "One model or route the key may use.",
            "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": _STRING,
                            "description": "PROVIDER/MODEL (the slash stays as it is) or a route name."}],
            "responses": {"200": {"description": "The model."}, "401": _errors("Error")["401"],
                          "404": _errors("Error")["404"]},
        }},
        "/v1/openapi.json": {"get": {"summary": "This description.", "security": [],
                                     "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    },
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        },
    },
}
