import sys
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser

from aspweb.text import storable_argument
from providers import calls
from providers.adapters.base import ChatRequest, Message, ProviderError


class Command(BaseCommand):
    help = (
        "Send one prompt to a provider's model and stream the answer to the terminal, then print tokens, "
        "latency and cost. Use - as the prompt to read it from standard input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prompt", type=storable_argument, help='The prompt, or "-" to read it from standard input.')
        parser.add_argument("--provider", required=True, type=storable_argument, help="The provider's name in aspweb.")
        parser.add_argument("--model", required=True, type=storable_argument,
                            help="The chat model's name in the provider's catalog (an embedding model is refused).")
        parser.add_argument("--system", default="", type=storable_argument, help="A system prompt.")
        parser.add_argument("--max-tokens", type=int, default=None, help="Most output tokens.")
        parser.add_argument("--temperature", type=float, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        prompt = sys.stdin.read() if options["prompt"] == "-" else options["prompt"]
        if not prompt.strip():
            raise CommandError("The prompt is empty.")
        if options["max_tokens"] is not None and options["max_tokens"] < 1:
            raise CommandError("--max-tokens must be at least 1.")
        request = ChatRequest(
            model=options["model"], messages=(Message("user", prompt),), system=options["system"],
            max_tokens=options["max_tokens"], temperature=options["temperature"],
        )
        record = calls.CallRecord()
        try:
            async_to_sync(self._stream)(request, options["provider"], record)
        except (ProviderError, calls.CallError) as exc:
            if record.output_chars:
                self.stdout.write("")
            raise CommandError(exc.message) from None
        self.stdout.write("")
        self.stdout.write(self.style.HTTP_INFO(_summary(record)))

    async def _stream(self, request: ChatRequest, provider: str, record: calls.CallRecord) -> None:
        caller = calls.Caller(source="cli")
        async for chunk in calls.stream_chat(request, caller=caller, provider=provider, record=record):
            if chunk.text:
                self.stdout.write(chunk.text, ending="")
                self.stdout.flush()


def _summary(record: calls.CallRecord) -> str:
    usage = record.usage
    parts = []
    if usage is not None:
        tokens = f"{usage.prompt_tokens} in"
        writes = usage.cache_write_tokens + usage.cache_write_1h_tokens
        if usage.cache_read_tokens or writes:
            tokens += f" ({usage.cache_read_tokens} cache read, {writes} cache write)"
        tokens += f" / {usage.output_tokens} out tokens"
        parts.append(tokens + (" (estimated)" if usage.estimated else ""))
    parts.append(f"{record.latency_ms / 1000:.2f} s" + (f" (first token {record.ttft_ms / 1000:.2f} s)"
                                                        if record.ttft_ms is not None else ""))
    parts.append(f"${record.cost:.6f}" if record.cost is not None else "cost unknown (no price)")
    if record.attempts > 1:
        parts.append(f"{record.attempts} attempts")
    return " · ".join(parts)
