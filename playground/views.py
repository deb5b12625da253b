"""The playground: a page that sends prompts, and the async stream each answer arrives through.

Sending (`send`, `regenerate`) is a plain sync view: it saves the turn with one pending answer per model
and returns the turn, whose panes open `answer_stream` with the htmx SSE extension. `answer_stream` is an
async view. The first stream of an answer claims it and starts its generation, a task of the worker
(playground/live.py) that outlives the request; every stream, that one included, follows the generation:
a `text` event with the answer so far when it joins late (a reload, a second tab; it replaces what the
pane shows), `delta` events (escaped text) as the provider sends them, then one `done` event whose HTML
swaps the finished pane (Markdown, metrics) in out of band. A browser going away ends only its stream;
Stop (`answer_stop`) ends the generation, which saves the partial answer as stopped.
"""

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import escape, format_html
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url, reswap, retarget, trigger_client_event

from aspweb import inline
from aspweb.roles import ADMIN, FINANCE, MEMBER, has_role, role_required
from providers import calls
from providers.adapters.base import ChatRequest, ProviderError

from . import live, services
from .forms import ChatForm, RenameForm
from .models import Answer, Conversation, Turn

logger = logging.getLogger(__name__)

# Finance may look (the catalog, prices, estimates); members and admins send prompts.
VIEWERS = (MEMBER, ADMIN, FINANCE)
SENDERS = (MEMBER, ADMIN)
HISTORY_LENGTH = 50
PAGE = "playground/index.html"
# How long Stop waits for the generation to save the partial answer (one on another worker sees Stop
# within live.FLUSH_SECONDS).
STOP_WAIT_SECONDS = 5.0
STOP_POLL_SECONDS = 0.05


def _get_conversation_for_user(pk: int, user: Any) -> Conversation:
    return get_object_or_404(Conversation, pk=pk, user=user)


def _own_answer(request: HttpRequest, pk: int) -> Answer:
    """The signed-in user's answer `pk`, with what its request is built from; 404 for anyone else's."""
    return get_object_or_404(Answer.objects.select_related("turn__conversation", "model__provider"),
                             pk=pk, turn__conversation__user=request.user)


def _teams(user: Any) -> list[Any]:
    """The teams the person may count their calls for (the composer offers them when there are several)."""
    return list(user.teams.order_by("name")) if getattr(user, "is_authenticated", False) else []


def _history(user: Any) -> list[Conversation]:
    return list(Conversation.objects.filter(user=user).only("pk", "title", "updated_at")[:HISTORY_LENGTH])


def _page(request: HttpRequest, conversation: Conversation | None, form: ChatForm | None = None,
          **extra: Any) -> HttpResponse:
    catalog = services.catalog()
    turns = services.transcript(conversation) if conversation else []
    if form is None:
        last_models = [answer.model for answer in turns[-1].shown if answer.model] if turns else []
        initial = ChatForm.initial_for(conversation, last_models) if conversation else {}
        form = ChatForm(initial=initial, catalog=catalog, teams=_teams(request.user))
    return render(request, PAGE, {
        "conversation": conversation, "turns": turns, "form": form, "history": _history(request.user),
        "can_send": has_role(request.user, *SENDERS), "catalog_empty": not catalog, **extra,
    })


@role_required(*VIEWERS)
def index(request: HttpRequest) -> HttpResponse:
    return _page(request, None)


@role_required(*VIEWERS)
def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _page(request, _get_conversation_for_user(pk, request.user))


def _turn_response(request: HttpRequest, turn: Turn, *, created: bool) -> HttpResponse:
    """The turn's HTML for the transcript and, out of band, the composer's conversation id and errors
    (none now), the history list (a new conversation appears in it, a continued one moves to the top), and
    for a new conversation its title."""
    conversation = turn.conversation
    turn = services.transcript_turn(turn)
    context = {"turn": turn, "conversation": conversation, "history": _history(request.user), "oob": True,
               "can_send": True}
    html = render_to_string(f"{PAGE}#turn", context, request)
    html += render_to_string(f"{PAGE}#conversation-id", context, request)
    html += render_to_string(f"{PAGE}#composer-errors", context, request)
    html += render_to_string(f"{PAGE}#history", context, request)
    if created:
        html += render_to_string(f"{PAGE}#head", context, request)
        html += format_html("<title>{} · aspweb</title>", conversation.title)  # htmx retitles the tab
    response = HttpResponse(html)
    if created:
        push_url(response, reverse("playground_conversation", args=[conversation.pk]))
    return response


def _form_errors(request: HttpRequest, form: ChatForm) -> HttpResponse:
    response = render(request, f"{PAGE}#composer-errors", {"form": form})
    return reswap(retarget(response, "#composer-errors"), "outerHTML")


@require_POST
@role_required(*SENDERS)
def send(request: HttpRequest) -> HttpResponse:
    """A new turn, or with edit_last the last prompt edited and sent again (its answers replaced)."""
    form = ChatForm(request.POST, catalog=services.catalog(), teams=_teams(request.user))
    if not form.is_valid():
        return _form_errors(request, form) if request.htmx else _page_with_errors(request, form)
    data = form.cleaned_data
    conversation = _get_conversation_for_user(data["conversation"], request.user) if data["conversation"] else None
    last = services.last_turn(conversation) if conversation and data["edit_last"] else None
    if last is not None:
        turn = services.turn_redo(turn=last, models=form.models, params=form.params, prompt=data["prompt"])
    else:
        turn = services.turn_create(user=request.user, conversation=conversation, models=form.models,
                                    params=form.params, prompt=data["prompt"])
    if not request.htmx:
        return redirect("playground_conversation", pk=turn.conversation_id)
    response = trigger_client_event(_turn_response(request, turn, created=conversation is None), "pg:sent")
    if last is not None:
        reswap(retarget(response, f"#turn-{last.pk}"), "outerHTML")
    return response


def _page_with_errors(request: HttpRequest, form: ChatForm) -> HttpResponse:
    """Without JavaScript: the page again, with the composer's errors."""
    pk = form.cleaned_data.get("conversation")
    return _page(request, _get_conversation_for_user(pk, request.user) if pk else None, form=form)


@require_POST
@role_required(*SENDERS)
def regenerate(request: HttpRequest, pk: int) -> HttpResponse:
    """The last turn answered again, with the models and parameters now in the composer."""
    conversation = _get_conversation_for_user(pk, request.user)
    form = ChatForm(request.POST, catalog=services.catalog(), prompt_required=False, teams=_teams(request.user))
    last = services.last_turn(conversation)
    if last is None:
        return redirect("playground_conversation", pk=conversation.pk)
    if not form.is_valid():
        return _form_errors(request, form) if request.htmx else redirect("playground_conversation", pk=pk)
    turn = services.turn_redo(turn=last, models=form.models, params=form.params)
    if not request.htmx:
        return redirect("playground_conversation", pk=conversation.pk)
    return reswap(retarget(_turn_response(request, turn, created=False), f"#turn-{turn.pk}"), "outerHTML")


@role_required(*VIEWERS)
def turn_version(request: HttpRequest, pk: int, version: int) -> HttpResponse:
    """One version of a turn's answers (Regenerate keeps the earlier ones), for the row's version switch."""
    turn = get_object_or_404(Turn, pk=pk, conversation__user=request.user)
    turn = services.transcript_turn(turn, version)
    if not request.htmx:
        return redirect("playground_conversation", pk=turn.conversation_id)
    return render(request, f"{PAGE}#answers", {"turn": turn, "can_send": has_role(request.user, *SENDERS)})


@require_POST
@role_required(*SENDERS)
def rename(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _get_conversation_for_user(pk, request.user)
    form = RenameForm(request.POST)
    if form.is_valid():
        services.conversation_rename(conversation=conversation, title=form.cleaned_data["title"])
    elif not request.htmx:
        response = _page(request, conversation, rename_form=form)
        response.status_code = 400
        return response
    if not request.htmx:
        return redirect("playground_conversation", pk=conversation.pk)
    # Refused, the heading comes back with the error under the title field (a 200: htmx swaps it).
    context = {"conversation": conversation, "history": _history(request.user), "oob": True, "can_send": True,
               "rename_form": None if form.is_valid() else form}
    return HttpResponse(render_to_string(f"{PAGE}#head", context, request)
                        + render_to_string(f"{PAGE}#history", context, request)
                        + format_html("<title>{} · aspweb</title>", conversation.title))  # htmx retitles the tab


@require_POST
@role_required(*SENDERS)
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    _get_conversation_for_user(pk, request.user).delete()
    if request.htmx:
        return HttpResponseClientRedirect(reverse("playground"))
    return redirect("playground")


@require_POST
@role_required(*VIEWERS)
def estimate(request: HttpRequest) -> HttpResponse:
    """The cost range of the prompt being typed, per selected model (the composer asks as you type)."""
    form = ChatForm(request.POST, catalog=services.catalog(), prompt_required=False, teams=_teams(request.user))
    estimates: list[services.Estimate] = []
    if form.is_valid():
        estimates = services.estimate(models=form.models, params=form.params, prompt=form.cleaned_data["prompt"],
                                      turns=composer_turns(form, request.user, edit_needs_prompt=False))
    return render(request, f"{PAGE}#estimate", {"estimates": estimates})


def composer_turns(form: ChatForm, user: Any, *, edit_needs_prompt: bool) -> list[Turn]:
    """The earlier turns a valid composer's request carries: its conversation's (the person's own, else
    404), less the last one when the prompt is an edit of it (for the View code snippets, only once the
    edit has a prompt: an empty edit box shows the last turn's request)."""
    data = form.cleaned_data
    if not data["conversation"]:
        return []
    conversation = _get_conversation_for_user(data["conversation"], user)
    turns = list(conversation.turns.prefetch_related("answers"))
    if data["edit_last"] and (data["prompt"].strip() or not edit_needs_prompt):
        turns = turns[:-1]
    return turns


# -- streaming -----------------------------------------------------------------------------------


def sse_event(name: str, data: str) -> str:
    """One server-sent event; every line of `data` gets its own data: field (the browser joins them)."""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return f"event: {name}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def _final_html(answer_id: int) -> str:
    """The finished pane, out of band; once every pane of a compared turn (of the answer's version) has
    finished, the whole row, with the cheapest and fastest marked. For its owner, who streams and stops it:
    a member or an admin."""
    answer = Answer.objects.select_related("turn").filter(pk=answer_id).first()
    if answer is None:  # its prompt was edited and sent again while it streamed
        return ""
    turn = services.transcript_turn(answer.turn, answer.version)
    answers = turn.shown
    if len(answers) > 1 and all(a.is_finished for a in answers):
        return render_to_string(f"{PAGE}#answers", {"turn": turn, "answers_oob": True, "can_send": True})
    answer = next(a for a in answers if a.pk == answer_id)
    return render_to_string(f"{PAGE}#pane", {"answer": answer, "pane_oob": True, "can_send": True})


def _finish(answer_id: int, **outcome: Any) -> str:
    services.answer_finish(answer_id=answer_id, **outcome)
    return _final_html(answer_id)


@dataclass
class _Claim:
    """An answer claimed for its stream, and its call prepared."""

    answer_id: int
    caller: calls.Caller
    record: calls.CallRecord
    chat: ChatRequest | None  # None: not pending (finished, stopped, or streaming elsewhere)
    prepared: calls.Prepared | None
    marked: bool  # False: claimed from the cache; the stream marks it streaming in the database


def _claim(request: HttpRequest, pk: int) -> _Claim:
    """Claim the signed-in user's answer `pk` and prepare its call, in role_required's fetch: on the event
    loop when the answer's request is pending in a shared cache of this process's memory (the embedded default;
    aspweb/inline.py), else in the sign-in check's thread hop. 404
    for anyone else's answer."""
    record = calls.CallRecord()
    pending = services.pending_request(answer_id=pk, user=request.user)
    if pending is not None:
        chat, caller = pending.request, _caller(request.user, pending)
        # Resolved before claiming: what needs the database starts this again in a thread before the claim,
        # which must be counted once. Reserved after it, by the winner only: a second stream for the answer
        # (opened twice, or a fast reconnect) holds nothing.
        resolved = calls.resolve(chat, caller=caller, record=record)
        won = services.answer_claim_pending(answer_id=pk)
        if won:
            return _Claim(pk, caller, record, chat, calls.reserve(resolved, chat, caller=caller, record=record),
                          marked=False)
        if won is not None:
            return _Claim(pk, caller, record, None, None, marked=False)
    if inline.running_inline():
        raise inline.NeedsThread("the answer's request")
    try:
        pending = services.answer_claim(answer_id=pk, user=request.user, request_id=record.request_id)
    except Answer.DoesNotExist:
        raise Http404("No such answer.") from None
    caller = _caller(request.user, pending)
    chat = pending.request if pending is not None else None
    prepared = calls.prepare(chat, caller=caller, record=record) if chat is not None else None
    return _Claim(pk, caller, record, chat, prepared, marked=True)


def _caller(user: Any, pending: services.Pending | None) -> calls.Caller:
    return calls.Caller(source="playground", user=user, team_id=pending.team_id if pending is not None else None)


async def _generate(claim: _Claim, generation: live.Generation) -> None:
    """The answer's call, its text handed to the generation's followers as it arrives, then saved. Runs as
    a task of the worker (live.start): the browser that opened the stream may leave, and it goes on."""
    answer_id, chat, record = claim.answer_id, claim.chat, claim.record
    assert chat is not None
    # Claimed from the cache, the answer is marked streaming in the database once the first token is on its
    # way (the thread's work would hold up the first token for the interpreter), or before saving. The
    # saves wait for it, and save nothing when the answer was no longer pending: Stop came first.
    marking: asyncio.Future[bool] | None = None

    def mark() -> asyncio.Future[bool] | None:
        nonlocal marking
        if marking is None and not claim.marked:
            marking = asyncio.ensure_future(sync_to_async(services.answer_mark_streaming)(
                answer_id=answer_id, request_id=record.request_id))
        return marking

    async def save(**outcome: Any) -> None:
        if (pending := mark()) is not None:
            await pending
        # Rendered as it is saved, in the same trip to the database: the streams of this worker end with it.
        generation.final_html = await sync_to_async(_finish)(answer_id, text=generation.text, request=chat,
                                                             record=record, **outcome)

    loop = asyncio.get_running_loop()
    error: BaseException | None = None
    try:
        stream = calls.stream_chat(chat, caller=claim.caller, record=record, prepared=claim.prepared)
        async with contextlib.aclosing(stream) as chunks:
            async for chunk in chunks:
                if marking is not None and marking.done() and not marking.result():
                    break  # stopped or answered again before the stream began: nothing here is saved
                if chunk.text:
                    generation.push(chunk.text)
                    if marking is None and not claim.marked:
                        # After the streams woken by the token have sent it: the thread this starts
                        # (perhaps a new one) would hold it up.
                        loop.call_soon(mark)
    except asyncio.CancelledError:
        # Stop: keep what arrived, marked stopped. Shielded, so the save completes even as the
        # cancellation unwinds.
        await asyncio.shield(save(status=Answer.Status.STOPPED))
        raise
    except (ProviderError, calls.CallError) as exc:
        error = exc
    except Exception as exc:
        logger.exception("Playground answer %s failed while streaming", answer_id)
        error = exc
    await save(status=Answer.Status.ERROR if error is not None else Answer.Status.OK, error=error)


async def _follow_here(generation: live.Generation, *, joined: bool) -> AsyncIterator[str]:
    """A generation of this worker: what it has so far as one `text` event when the stream joins late
    (`joined`), then each new part as a `delta`."""
    late = joined
    async for parts in generation.follow():
        if late:
            yield sse_event("text", escape("".join(parts)))
            late = False
        else:
            for part in parts:
                yield sse_event("delta", escape(part))


def _status(answer_id: int) -> str | None:
    return Answer.objects.filter(pk=answer_id).values_list("status", flat=True).first()


async def _follow_shared(answer_id: int) -> AsyncIterator[str]:
    """A generation of another worker, through the shared store: the text so far as one `text` event, then
    what each batch adds. Ends with the generation, or when its answer has finished; when nothing is heard
    of it (live.quiet_limit, live.STALE_SECONDS), its worker went with it (a restart): the answer is saved
    as stopped with the text that reached the store."""
    seen, text, quiet_since, first = 0, [], time.monotonic(), True
    while True:
        meta, new = await live.shared_read(answer_id, seen)
        if meta is not None:
            seen = meta.batches
        if new or (first and meta is not None):
            text.append(new)
            yield sse_event("text" if first else "delta", escape(new))
            first = False
        if meta is not None and meta.done:
            return
        if meta is None or meta.stale:
            if await sync_to_async(_status)(answer_id) not in (Answer.Status.PENDING, Answer.Status.STREAMING):
                return
            if (meta is not None and meta.stale) or time.monotonic() - quiet_since >= live.quiet_limit():
                await sync_to_async(services.answer_abandon)(answer_id=answer_id, text="".join(text))
                return
        else:
            quiet_since = time.monotonic()
        await asyncio.sleep(live.POLL_SECONDS)


async def _answer_events(claim: _Claim) -> AsyncIterator[str]:
    answer_id, generation = claim.answer_id, None
    if claim.chat is not None:
        generation = live.start(answer_id, functools.partial(_generate, claim))
        events = _follow_here(generation, joined=False)
    elif (generation := live.local(answer_id)) is not None:
        events = _follow_here(generation, joined=True)
    elif await sync_to_async(_status)(answer_id) in (Answer.Status.PENDING, Answer.Status.STREAMING):
        events = _follow_shared(answer_id)
    else:
        events = None
    if events is not None:
        async with contextlib.aclosing(events):
            async for event in events:
                yield event
    final = generation.final_html if generation is not None else None
    yield sse_event("done", final if final is not None else await sync_to_async(_final_html)(answer_id))


class _AnswerEvents:
    """The claimed answer's events, started at the first read. Closed unread (the browser left as the
    response began), the answer goes back to pending, and is streamed when the page opens it again; its
    call's reservation is given back."""

    def __init__(self, claim: _Claim) -> None:
        self.claim = claim
        self.events: AsyncIterator[str] | None = None

    def __aiter__(self) -> "_AnswerEvents":
        return self

    async def __anext__(self) -> str:
        if self.events is None:
            self.events = _answer_events(self.claim)
        return await anext(self.events)

    def close(self) -> None:  # Django calls it, in a thread, when the response is done with
        if self.events is None and self.claim.chat is not None:
            services.answer_release(answer_id=self.claim.answer_id)
            calls.release(self.claim.record)


@role_required(*SENDERS, fetch=_claim)
async def answer_stream(request: HttpRequest, claim: _Claim, pk: int) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_AnswerEvents(claim), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies such as nginx: pass each event on at once
    return response


@require_POST
@role_required(*SENDERS, fetch=_own_answer)
async def answer_stop(request: HttpRequest, answer: Answer, pk: int) -> HttpResponse:
    """Stop the answer's generation, wherever it runs (the page closed its EventSource first); wait for it to
    save the partial answer, then return the stopped pane (out of band)."""
    await sync_to_async(live.stop)(answer.pk)
    give_up_at = time.monotonic() + STOP_WAIT_SECONDS
    settle = sync_to_async(services.answer_settle_stop)
    while not await settle(answer_id=answer.pk, give_up=time.monotonic() > give_up_at):
        await asyncio.sleep(STOP_POLL_SECONDS)
    return HttpResponse(await sync_to_async(_final_html)(answer.pk))
