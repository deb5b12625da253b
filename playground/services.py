"""The playground's reads and writes: the catalog it offers, conversations, turns and their answers, and
what a prompt would cost before it is sent."""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import Prefetch
from django.utils import timezone

from providers.adapters.base import ChatRequest, Message, ProviderError, Usage, estimate_tokens
from providers.calls import CallError, CallRecord
from providers.models import Model, Price
from usage import pricing

from . import live
from .models import Answer, Conversation, Turn

TITLE_LENGTH = 60
MAX_LANES = 4
# How long a new answer's request waits in the cache for its stream to open (see `requests_store`).
REQUEST_PENDING_SECONDS = 300


@dataclass(frozen=True)
class Params:
    """What a turn is sent with besides the prompt."""

    system: str = ""
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int = 1024
    stop: tuple[str, ...] = ()
    # The team the calls are counted for (one of the person's teams), or None.
    team_id: int | None = None

    @classmethod
    def of(cls, conversation: Conversation) -> "Params":
        return cls(conversation.system, conversation.temperature, conversation.top_p, conversation.max_tokens,
                   tuple(conversation.stop), conversation.team_id)


@dataclass(frozen=True)
class Pending:
    """A claimed answer's request, and the team its call is counted for."""

    request: ChatRequest
    team_id: int | None = None


@dataclass(frozen=True)
class Estimate:
    """The cost range of sending a prompt to one model: all of the input, and from none to all of
    max_tokens of output. `low` and `high` are None when the model has no price."""

    model: Model
    input_tokens: int
    max_output_tokens: int
    low: Decimal | None
    high: Decimal | None


def catalog() -> list[Model]:
    """The models a member may pick: enabled chat models of enabled providers (an embedding model answers no
    prompt), each with `price_now`, the price in force, ordered by provider then name."""
    in_force = Price.objects.filter(effective_from__lte=timezone.now()).order_by("-effective_from", "-id")
    models = list(
        Model.objects.filter(enabled=True, type=Model.Type.CHAT, provider__enabled=True,
                             provider__archived_at__isnull=True)
        .select_related("provider")
        .prefetch_related(Prefetch("prices", queryset=in_force.prefetch_related("tiers"), to_attr="prices_in_force"))
    )
    for model in models:
        model.price_now = model.prices_in_force[0] if model.prices_in_force else None
    return models


def address(model: Model) -> str:
    return f"{model.provider.name}/{model.name}"


# -- conversations -------------------------------------------------------------------------------


def _apply(conversation: Conversation, params: Params) -> None:
    conversation.system = params.system
    conversation.temperature = params.temperature
    conversation.top_p = params.top_p
    conversation.max_tokens = params.max_tokens
    conversation.stop = list(params.stop)
    conversation.team_id = params.team_id


def _answers_create(turn: Turn, models: Sequence[Model], version: int = 1) -> list[Answer]:
    return Answer.objects.bulk_create(
        Answer(turn=turn, lane=lane, version=version, model=model, model_address=address(model))
        for lane, model in enumerate(models)
    )


@transaction.atomic
def turn_create(*, user: Any, conversation: Conversation | None, models: Sequence[Model], params: Params,
                prompt: str) -> Turn:
    """A new turn with one pending answer per model; the first turn starts the conversation."""
    new = conversation is None
    if conversation is None:
        conversation = Conversation(user=user, title=title_for(prompt))
    _apply(conversation, params)
    conversation.save()
    turn = Turn.objects.create(conversation=conversation, prompt=prompt)
    answers = _answers_create(turn, models)
    transaction.on_commit(lambda: requests_store(turn, answers, first=new), robust=True)
    return turn


@transaction.atomic
def turn_redo(*, turn: Turn, models: Sequence[Model], params: Params, prompt: str | None = None) -> Turn:
    """Answer the last turn again. Regenerate (same prompt) adds a version of its answers: the earlier ones
    stay, to compare, and those still being answered are stopped. An edited prompt replaces the turn's
    answers, every version of them (they answered another prompt). Either way the calls made stay in the
    usage ledger."""
    conversation = turn.conversation
    _apply(conversation, params)
    conversation.save()
    old = list(turn.answers.values_list("pk", "version", "status"))
    live_ids = [pk for pk, _, status in old if status in (Answer.Status.PENDING, Answer.Status.STREAMING)]
    if prompt is not None:
        turn.prompt = prompt
        turn.save(update_fields=["prompt"])
        # Their calls were paid for: the conversation's running cost keeps counting them.
        replaced = [str(pk) for pk in turn.answers.filter(request_id__isnull=False).values_list("request_id",
                                                                                               flat=True)]
        if replaced:
            conversation.replaced_calls = [*conversation.replaced_calls, *replaced]
            conversation.save(update_fields=["replaced_calls"])
        turn.answers.all().delete()  # a generation still running finds nothing to save
        version = 1
    else:
        version = max((v for _, v, _ in old), default=0) + 1
        Answer.objects.filter(pk__in=live_ids, status=Answer.Status.PENDING).update(
            status=Answer.Status.STOPPED, finished_at=timezone.now())
    transaction.on_commit(lambda: _forget_pending(live_ids), robust=True)
    transaction.on_commit(lambda: live.stop_many(live_ids), robust=True)
    answers = _answers_create(turn, models, version)
    transaction.on_commit(lambda: requests_store(turn, answers), robust=True)
    return turn


def conversation_rename(*, conversation: Conversation, title: str) -> None:
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])


def title_for(prompt: str) -> str:
    words = " ".join(prompt.split())
    return words if len(words) <= TITLE_LENGTH else words[: TITLE_LENGTH - 1].rstrip() + "…"


def last_turn(conversation: Conversation) -> Turn | None:
    return conversation.turns.order_by("-id").first()


def transcript(conversation: Conversation) -> list[Turn]:
    answers = Answer.objects.select_related("model__provider")
    turns = list(conversation.turns.prefetch_related(Prefetch("answers", queryset=answers)))
    for turn in turns:
        show_version(turn)
    return turns


def transcript_turn(turn: Turn, version: int | None = None) -> Turn:
    """One turn as the transcript shows it: fresh answers of `version` (the latest when None), the best of
    them marked."""
    answers = Answer.objects.select_related("model__provider")
    turn = Turn.objects.prefetch_related(Prefetch("answers", queryset=answers)).get(pk=turn.pk)
    show_version(turn, version)
    return turn


def latest_version(turn: Turn) -> int:
    return max((answer.version for answer in turn.answers.all()), default=1)


def show_version(turn: Turn, version: int | None = None) -> None:
    """Set what the transcript shows of a turn (answers prefetched): `versions`, how many there are;
    `version`, the one shown (the latest unless another is asked for and exists); `shown`, its answers,
    the best of them marked."""
    turn.versions = latest_version(turn)
    turn.version = version if version is not None and 1 <= version <= turn.versions else turn.versions
    turn.shown = [answer for answer in turn.answers.all() if answer.version == turn.version]
    turn.previous_version = turn.version - 1 if turn.version > 1 else None
    turn.next_version = turn.version + 1 if turn.version < turn.versions else None
    mark_best(turn.shown)


def mark_best(answers: Iterable[Answer]) -> None:
    """Mark the cheapest and the fastest (lowest total latency) of two or more finished answers."""
    finished = [answer for answer in answers if answer.status == Answer.Status.OK]
    for answer in answers:
        answer.cheapest = answer.fastest = False
    priced = [answer for answer in finished if answer.cost is not None]
    if len(priced) >= 2:
        min(priced, key=lambda answer: answer.cost).cheapest = True
    timed = [answer for answer in finished if answer.latency_ms is not None]
    if len(timed) >= 2:
        min(timed, key=lambda answer: answer.latency_ms).fastest = True


# -- the request an answer is streamed with ------------------------------------------------------


def _reply(turn: Turn, lane: int) -> Answer | None:
    """The answer a lane's thread continues from, in the turn's latest version: its own, or the first answer
    with text when that lane had none (the models compared changed between turns)."""
    version = latest_version(turn)
    answers = [answer for answer in turn.answers.all() if answer.content and answer.version == version]
    return next((answer for answer in answers if answer.lane == lane), answers[0] if answers else None)


def history(turns: Iterable[Turn], lane: int, *, answering: bool = False) -> list[Message]:
    """Earlier turns as messages; turns that got no answer with text are left out. With `answering`, a
    turn still being answered counts with its prompt (for an estimate: its answer will be there)."""
    messages: list[Message] = []
    for turn in turns:
        reply = _reply(turn, lane)
        if reply is not None:
            messages += [Message("user", turn.prompt), Message("assistant", reply.content)]
        elif answering and any(answer.is_live for answer in turn.answers.all()):
            messages.append(Message("user", turn.prompt))
    return messages


def chat_request(answer: Answer) -> ChatRequest:
    """The request `answer` (loaded with its turn, conversation and model) is streamed with."""
    return _request(answer, answer.turn, _earlier(answer.turn))


def _earlier(turn: Turn) -> list[Turn]:
    """The conversation's turns before `turn`, with their answers (the history a request carries)."""
    return list(turn.conversation.turns.filter(id__lt=turn.id).prefetch_related("answers"))


def _request(answer: Answer, turn: Turn, earlier: list[Turn]) -> ChatRequest:
    params = Params.of(turn.conversation)
    return ChatRequest(
        model=address(answer.model) if answer.model else answer.model_address,
        messages=(*history(earlier, answer.lane), Message("user", turn.prompt)),
        system=params.system,
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_tokens,
        stop=params.stop,
    )


def _pending_key(answer_id: int) -> str:
    return f"playground:request:{answer_id}"


def _claims_key(answer_id: int) -> str:
    return f"playground:claims:{answer_id}"


def requests_store(turn: Turn, answers: Sequence[Answer], *, first: bool = False) -> None:
    """Build the requests of a turn's new answers as the turn is saved (the conversation so far read once
    for every pane, and not at all for a first turn), and store them in the shared cache with their owner for
    the streams the page opens a moment later, with a count of the streams that claimed each: a stream
    then claims its answer and starts its call without the database (`answer_claim_pending`). A stream that
    finds none (opened later, on another worker without Redis, or after this failed: it runs on commit,
    robust, so that a send never fails for it) claims and builds from the database."""
    earlier = [] if first else _earlier(turn)
    pending: dict[str, Any] = {}
    for answer in answers:
        pending[_pending_key(answer.pk)] = (turn.conversation.user_id, _request(answer, turn, earlier),
                                            turn.conversation.team_id)
        pending[_claims_key(answer.pk)] = 0
    cache.set_many(pending, REQUEST_PENDING_SECONDS)


def prompt_tokens(request: ChatRequest) -> int:
    return estimate_tokens("\n".join(part for part in (request.system, *(m.text for m in request.messages)) if part))


# -- one answer's life ---------------------------------------------------------------------------


def pending_request(*, answer_id: int, user: Any) -> Pending | None:
    """The pending request of `user`'s answer stored in the shared cache (see requests_store), if there is
    one, with its team."""
    stored = cache.get(_pending_key(answer_id))
    if stored is None or stored[0] != user.pk:
        return None
    return Pending(stored[1], stored[2] if len(stored) > 2 else None)


def answer_claim_pending(*, answer_id: int) -> bool | None:
    """Claim an answer whose request is pending in the shared cache: True for the first stream to ask (an
    atomic count in the cache), False for any later one (an EventSource reconnecting). The claimer then marks
    the answer streaming (`answer_mark_streaming`). None when the count has gone: claim from the database."""
    try:
        return cache.incr(_claims_key(answer_id)) == 1
    except ValueError:
        return None


def answer_mark_streaming(*, answer_id: int, request_id: uuid.UUID | None = None) -> bool:
    """Mark an answer claimed from the cache as streaming, with its call's request id; False when it is no
    longer pending (Stop came first, or the turn was answered again): its stream then ends without saving."""
    cache.delete(_pending_key(answer_id))
    return bool(Answer.objects.filter(pk=answer_id, status=Answer.Status.PENDING).update(
        status=Answer.Status.STREAMING, request_id=request_id))


def answer_claim(*, answer_id: int, user: Any, request_id: uuid.UUID | None = None) -> Pending | None:
    """Claim `user`'s pending answer for one stream in the database, with its call's request id, and build
    its request. None when it is not pending: it was answered, stopped, or another stream holds it.
    Answer.DoesNotExist when it is not theirs, or gone."""
    answer = Answer.objects.select_related("turn__conversation", "model__provider").get(
        pk=answer_id, turn__conversation__user=user)
    if not Answer.objects.filter(pk=answer_id, status=Answer.Status.PENDING).update(
            status=Answer.Status.STREAMING, request_id=request_id):
        return None
    return Pending(chat_request(answer), answer.turn.conversation.team_id)


def _forget_pending(answer_ids: Iterable[int]) -> None:
    cache.delete_many([key for pk in answer_ids for key in (_pending_key(pk), _claims_key(pk))])


def answer_release(*, answer_id: int) -> None:
    """Hand a claimed answer back, unasked: its stream ended before it began. The next stream claims it
    from the database."""
    _forget_pending([answer_id])
    Answer.objects.filter(pk=answer_id, status=Answer.Status.STREAMING).update(status=Answer.Status.PENDING)


def answer_finish(*, answer_id: int, status: str, text: str, request: ChatRequest, record: CallRecord,
                  error: BaseException | None = None) -> None:
    """Save how a stream ended. Only a streaming answer is written: one that was regenerated away, or
    marked stopped by a Stop that gave up waiting, stays as it is."""
    usage = record.usage
    fields: dict[str, Any] = {
        "status": status,
        "content": text,
        "finish_reason": record.finish_reason or "",
        "latency_ms": round(record.latency_ms) if record.latency_ms is not None else None,
        "ttft_ms": round(record.ttft_ms) if record.ttft_ms is not None else None,
        "request_id": record.request_id,
        "finished_at": timezone.now(),
    }
    if usage is None and status == Answer.Status.STOPPED:
        # Cut off before the provider reported usage: count what was sent and what arrived, flagged.
        usage = Usage(input_tokens=prompt_tokens(request), output_tokens=estimate_tokens(text), estimated=True)
    if usage is not None:
        cost = record.cost
        if cost is None and record.price is not None:
            cost = pricing.cost(usage, record.price)
        fields.update(
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.output_tokens,
            usage_estimated=usage.estimated,
            cost=cost,
        )
    if error is not None:
        kind = error.kind if isinstance(error, ProviderError) else error.code if isinstance(error, CallError) else ""
        fields.update(error_kind=kind or "internal",
                      error_message=describe_error(error, request.model.partition("/")[0])[:500])
    Answer.objects.filter(pk=answer_id, status=Answer.Status.STREAMING).update(**fields)


def answer_abandon(*, answer_id: int, text: str) -> None:
    """An answer whose generation went with its worker (nothing has been heard of it for a while): stopped,
    with the text that had reached the shared store."""
    Answer.objects.filter(pk=answer_id, status=Answer.Status.STREAMING).update(
        status=Answer.Status.STOPPED, content=text, finished_at=timezone.now())


def answer_settle_stop(*, answer_id: int, give_up: bool) -> bool:
    """For Stop: True once the answer has ended. A pending answer (its stream never opened) is stopped
    here; a streaming one is left to its generation, which saves the partial text once Stop reaches it
    (live.stop), unless `give_up` (the generation is gone too, e.g. its worker died)."""
    stopped = {"status": Answer.Status.STOPPED, "finished_at": timezone.now()}
    if Answer.objects.filter(pk=answer_id, status=Answer.Status.PENDING).update(**stopped):
        _forget_pending([answer_id])  # a stream opening late finds nothing to claim, and asks no provider
        return True
    if give_up:
        Answer.objects.filter(pk=answer_id, status=Answer.Status.STREAMING).update(**stopped)
        return True
    return not Answer.objects.filter(pk=answer_id, status=Answer.Status.STREAMING).exists()


def seconds(amount: float) -> str:
    """"1 second", "7 seconds", "1.5 seconds"."""
    return f"{amount:g} second" if amount == 1 else f"{amount:g} seconds"


def describe_error(error: BaseException, provider: str) -> str:
    """What went wrong, in words a member can act on; never a stack trace or a secret."""
    if isinstance(error, ProviderError):
        if error.kind == "auth":
            return f"{provider} rejected its API key. Ask an admin to check the key of provider {provider}."
        if error.kind == "rate_limit":
            when = f"in {seconds(error.retry_after)}" if error.retry_after else "in a minute"
            return f"{provider} is rate limiting requests. Retry {when}."
        if error.kind == "timeout":
            return f"Timed out: {error.message}"
        return error.message
    if isinstance(error, CallError):
        return error.message
    return "Something went wrong in aspweb while streaming this answer. Try again; if it keeps happening, " \
           "tell an admin."


# -- before sending ------------------------------------------------------------------------------


def estimate(*, models: Sequence[Model], params: Params, prompt: str, turns: Sequence[Turn] = ()) -> list[Estimate]:
    """The cost range per model of sending `prompt` after `turns`: estimated input tokens at the input
    price, plus up to max_tokens at the output price. A turn still being answered counts with its prompt.
    Models need `price_now` (see `catalog`)."""
    estimates = []
    for lane, model in enumerate(models):
        messages = (*history(turns, lane, answering=True), Message("user", prompt))
        tokens = prompt_tokens(ChatRequest(model="", messages=messages, system=params.system))
        low = high = None
        if model.price_now is not None:
            # At the tier the prompt selects, output included (a long prompt makes every token dearer).
            low = pricing.cost(Usage(input_tokens=tokens), model.price_now)
            high = pricing.cost(Usage(input_tokens=tokens, output_tokens=params.max_tokens), model.price_now)
        estimates.append(Estimate(model, tokens, params.max_tokens, low, high))
    return estimates
