"""The playground's request as code: the same chat completion sent to aspweb's gateway with curl, the
openai Python SDK and the openai npm package, so a member can take what they tried into an application.

The key is never in it: each snippet reads ASPWEB_API_KEY from the environment; the page links to where
keys are made. The model is named as the gateway names it, PROVIDER/MODEL.
"""

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from providers.adapters.base import ChatRequest, Message
from providers.models import Model

from . import services
from .models import Turn

KEY_VARIABLE = "ASPWEB_API_KEY"


@dataclass(frozen=True)
class Snippets:
    """One model's request: its JSON body and the three ways to send it."""

    model: Model
    body: dict[str, Any]
    curl: str
    python: str
    javascript: str

    @property
    def variants(self) -> list[tuple[str, str, str]]:
        """(slug, heading, code) of each way to send it."""
        return [("curl", "curl", self.curl), ("python", "Python (openai)", self.python),
                ("javascript", "JavaScript (openai)", self.javascript)]


def requests_for(*, models: Sequence[Model], params: services.Params, prompt: str,
                 turns: Sequence[Turn]) -> list[ChatRequest]:
    """The request each model would be sent: the conversation so far in its lane, then `prompt`. Without a
    prompt, the last turn's request again (what Regenerate sends); nothing without either."""
    if not prompt.strip():
        if not turns:
            return []
        turns, prompt = turns[:-1], turns[-1].prompt
    return [
        ChatRequest(model=services.address(model), messages=(*services.history(turns, lane), Message("user", prompt)),
                    system=params.system, temperature=params.temperature, top_p=params.top_p,
                    max_tokens=params.max_tokens, stop=params.stop)
        for lane, model in enumerate(models)
    ]


def body_of(chat: ChatRequest) -> dict[str, Any]:
    """The OpenAI chat-completions body the gateway takes for `chat`."""
    messages = [{"role": "system", "content": chat.system}] if chat.system else []
    messages += [{"role": message.role, "content": message.text} for message in chat.messages]
    body: dict[str, Any] = {"model": chat.model, "messages": messages}
    if chat.temperature is not None:
        body["temperature"] = chat.temperature
    if chat.top_p is not None:
        body["top_p"] = chat.top_p
    if chat.max_tokens is not None:
        body["max_tokens"] = chat.max_tokens
    if chat.stop:
        body["stop"] = list(chat.stop)
    return body


def _literal(value: Any, indent: int) -> str:
    """`value` (strings, numbers, lists and dicts of them) as JSON, which is also a Python and a JavaScript
    literal, its lines after the first indented by `indent` spaces."""
    return json.dumps(value, indent=4, ensure_ascii=False).replace("\n", "\n" + " " * indent)


def curl(body: dict[str, Any], base_url: str) -> str:
    return (f"curl {shlex.quote(base_url + '/v1/chat/completions')} \\\n"
            f'  -H "Authorization: Bearer ${KEY_VARIABLE}" \\\n'
            '  -H "Content-Type: application/json" \\\n'
            f"  -d {shlex.quote(json.dumps(body, indent=2, ensure_ascii=False))}")


def python(body: dict[str, Any], base_url: str) -> str:
    arguments = "".join(f"    {name}={_literal(value, 4)},\n" for name, value in body.items())
    return ("# pip install openai\nimport os\n\nfrom openai import OpenAI\n\n"
            f"client = OpenAI(base_url={json.dumps(base_url + '/v1')}, "
            f"api_key=os.environ[{json.dumps(KEY_VARIABLE)}])\n\n"
            f"completion = client.chat.completions.create(\n{arguments})\n"
            "print(completion.choices[0].message.content)\n")


def javascript(body: dict[str, Any], base_url: str) -> str:
    return ("// npm install openai; run as an ES module (a .mjs file), which allows the top-level await\n"
            'import OpenAI from "openai";\n\n'
            f"const client = new OpenAI({{\n  baseURL: {json.dumps(base_url + '/v1')},\n"
            f"  apiKey: process.env.{KEY_VARIABLE},\n}});\n\n"
            f"const completion = await client.chat.completions.create({_literal(body, 0)});\n"
            "console.log(completion.choices[0].message.content);\n")


def snippets(*, models: Sequence[Model], params: services.Params, prompt: str, turns: Sequence[Turn],
             base_url: str) -> list[Snippets]:
    base_url = base_url.rstrip("/")
    result = []
    for model, chat in zip(models, requests_for(models=models, params=params, prompt=prompt, turns=turns),
                           strict=False):
        body = body_of(chat)
        result.append(Snippets(model, body, curl(body, base_url), python(body, base_url),
                               javascript(body, base_url)))
    return result
