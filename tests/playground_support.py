"""What the playground tests share: a catalog on the fake upstream, and reading server-sent events."""

from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser

from playground.models import Answer
from providers.models import Model, Price, Provider
from tests.fakes.upstream import FakeUpstream

API_KEY = "sk-lab-secret-0001"
REPLY = "Streams arrive **token by token**, and `code` renders once the answer is done."


def make_catalog(upstream: FakeUpstream, *, max_retries: int = 0) -> tuple[Model, Model]:
    """Provider "lab" on the fake upstream with two priced models: a ($1/$2 per 1M) and b ($3/$6)."""
    upstream.api_key = API_KEY
    upstream.reply = REPLY
    provider = Provider.objects.create(name="lab", kind="openai_compatible", base_url=upstream.openai_base_url,
                                       api_key=API_KEY, max_retries=max_retries)
    cheap = Model.objects.create(provider=provider, name="fake-model-a")
    Price.objects.create(model=cheap, input=Decimal("1"), output=Decimal("2"))
    dear = Model.objects.create(provider=provider, name="fake-model-b")
    Price.objects.create(model=dear, input=Decimal("3"), output=Decimal("6"))
    return cheap, dear


def send_data(*models: Model, prompt: str = "Say hello", conversation: int | None = None, **extra: object) -> dict:
    data: dict = {"model": models[0].pk, "max_tokens": 256, "prompt": prompt, **extra}
    for n, model in enumerate(models[1:], start=1):
        data[f"compare_{n}"] = model.pk
    if conversation is not None:
        data["conversation"] = conversation
    return data


@dataclass(frozen=True)
class Event:
    name: str
    data: str


def parse_events(body: str) -> list[Event]:
    """Server-sent events as a browser reads them: `event:` names it, `data:` lines join with newlines."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        events.append(Event(name, "\n".join(data)))
    return events


def answers_of(turn_id: int, version: int | None = None) -> list[Answer]:
    """A turn's answers of `version`, the latest when None, by lane."""
    answers = Answer.objects.filter(turn_id=turn_id)
    if version is None:
        version = max(answers.values_list("version", flat=True), default=1)
    return list(answers.filter(version=version).order_by("lane"))


class _StartTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def start_tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every start tag of `html`, in order, with its attributes."""
    parser = _StartTags()
    parser.feed(html)
    return parser.found
