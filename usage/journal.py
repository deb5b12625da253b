"""The ledger's journal: a serving process answers a call once its usage record is journalled, and writes the
record to the database right after, in the writer's next batch (usage/writer.py). In the production profile
the journal is a Redis stream; without Redis (the embedded default) it is a file per process
(usage/journalfile.py). `USAGE_JOURNAL` says which.

Why: committing the record before answering put a thread hop and a database transaction on every call's way
back to its client. Appending to a stream is one round trip from the event loop, and to a file one `write()`;
the batch's commit then happens beside the next calls instead of before this one's answer. No answered call
can be missing from the ledger for that: the record is journalled before the answer leaves, and `replay`
writes every entry that the writer did not, as when its worker died between the answer and the commit: in
Redis, entries older than `USAGE_JOURNAL_GRACE_SECONDS` (the beat, every `USAGE_JOURNAL_REPLAY_SECONDS`); on
disk, the segments of processes that are gone (a serving process as it starts, and the beat where there is
one). Each entry is removed once its record is committed; a record whose request id is in the ledger already
is not written again (the id is unique), so an entry replayed after its own batch committed adds nothing.

What this relies on: Redis keeps what it acknowledged. Run it with append-only persistence (`appendonly yes`,
`appendfsync everysec` or `always`) where records must survive Redis itself restarting (README, "Production").
When the journal cannot be written (Redis does not answer, the disk is full), the call falls back to committing
its record before its answer.

Entries hold ids, not rows: the provider, model, person and API key by primary key; amounts and times as text.
A logged prompt and answer stays out of the journal: the writer's batch has it in memory, and a replayed record
comes without it.
"""

import json
import logging
import time
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model

from aspweb import redisclients
from providers.models import Model

from . import journalfile, services
from .models import UsageRecord

logger = logging.getLogger(__name__)

_RELATED = {"provider": "provider_id", "model": "model_id", "user": "user_id", "api_key": "api_key_id"}
_DECIMALS = ("reported_cost",)
_MAX_REPLAY = 500


def stream() -> str:
    return f"{settings.CACHE_KEY_PREFIX}:ledger:journal"


def encode(fields: dict[str, Any]) -> bytes:
    """A record's fields (usage_record_build's keyword arguments) as a journal entry."""
    entry: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "body":
            continue  # a logged prompt and answer never goes to Redis in clear (usage/bodies.py)
        if name in _RELATED:
            authenticated = name != "user" or getattr(value, "is_authenticated", False)
            entry[_RELATED[name]] = value.pk if value is not None and authenticated else None
        elif isinstance(value, (Decimal, UUID)):
            entry[name] = str(value)
        elif isinstance(value, datetime):
            entry[name] = value.isoformat()
        else:
            entry[name] = value
    return json.dumps(entry, separators=(",", ":")).encode()


def decode(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Journal entries back to record fields, their rows read in one query per kind; an entry whose model is
    gone from the catalog comes back with `model` None."""
    ApiKey = UsageRecord._meta.get_field("api_key").related_model  # the gateway's, above the ledger
    User = get_user_model()
    models = Model.objects.select_related("provider").in_bulk({e["model_id"] for e in entries})
    users = User.objects.in_bulk({e["user_id"] for e in entries if e.get("user_id")})
    keys = ApiKey.objects.in_bulk({e["api_key_id"] for e in entries if e.get("api_key_id")})
    decoded = []
    for entry in entries:
        fields = dict(entry)
        model = models.get(fields.pop("model_id"))
        fields.pop("provider_id")
        fields["model"], fields["provider"] = model, model.provider if model is not None else None
        fields["user"] = users.get(fields.pop("user_id"))
        fields["api_key"] = keys.get(fields.pop("api_key_id"))
        fields["request_id"] = UUID(fields["request_id"])
        fields["created_at"] = datetime.fromisoformat(fields["created_at"])
        for name in _DECIMALS:
            if fields.get(name) is not None:
                fields[name] = Decimal(fields[name])
        decoded.append(fields)
    return decoded


def on_disk() -> bool:
    return settings.USAGE_JOURNAL == "file"


async def append(fields: dict[str, Any]) -> str:
    """Journal a record's fields from the event loop; the entry's id."""
    if on_disk():
        return journalfile.journal().append(encode(fields))
    entry_id = await redisclients.async_client().xadd(stream(), {"r": encode(fields)})
    return entry_id.decode()


def remove(entry_ids: list[str]) -> None:
    """Drop entries whose records are committed."""
    if not entry_ids:
        return
    if on_disk():
        journalfile.journal().remove(entry_ids)
    else:
        redisclients.sync_client().xdel(stream(), *entry_ids)


def pending() -> int:
    """How many entries wait in the journal (on disk: this process's)."""
    if on_disk():
        return journalfile.journal().waiting()
    return int(redisclients.sync_client().xlen(stream()))


def replay(*, grace_seconds: float | None = None) -> int:
    """Write the records of the entries that no writer will write and that are not in the ledger yet, and drop
    those entries: in Redis, the entries older than the grace period; on disk, the segments of processes that
    are gone. Returns how many records it wrote. A record that cannot be written (its model was deleted since)
    is logged with its fields and dropped."""
    if on_disk():
        entries, written = journalfile.replay(_write)
        if entries:
            logger.warning("Replayed %d entries of the ledger's journal: %d records written, %d were in the ledger "
                           "already or could not be written", entries, written, entries - written)
        return written
    grace = settings.USAGE_JOURNAL_GRACE_SECONDS if grace_seconds is None else grace_seconds
    until = int((time.time() - grace) * 1000)
    client = redisclients.sync_client()
    written = 0
    while True:
        rows = client.xrange(stream(), min="-", max=str(until), count=_MAX_REPLAY)
        if not rows:
            return written
        ids = [entry_id.decode() for entry_id, _ in rows]
        now = _write([json.loads(values[b"r"]) for _, values in rows])
        logger.warning("Replayed %d entries of the ledger's journal: %d records written", len(ids), now)
        written += now
        remove(ids)


def _write(entries: list[dict[str, Any]]) -> int:
    """Write the records of the entries that are not in the ledger yet; how many were written."""
    done = {str(request_id) for request_id in UsageRecord.objects.filter(
        request_id__in=[entry["request_id"] for entry in entries]).values_list("request_id", flat=True)}
    todo = decode([entry for entry in entries if entry["request_id"] not in done])
    for fields in [f for f in todo if f["model"] is None]:
        logger.error("Dropped the journalled usage record of call %s: its model is gone from the catalog (%s)",
                     fields["request_id"], {k: v for k, v in fields.items() if k not in ("user", "api_key")})
    todo = [fields for fields in todo if fields["model"] is not None]
    try:
        return len(services.usage_records_create(todo))
    except services.UsageRecordsFailed as failed:
        for n, error in failed.errors.items():
            logger.error("Dropped the journalled usage record of call %s: %r", todo[n]["request_id"], error)
        return sum(record is not None for record in failed.records)
