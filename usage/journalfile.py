"""The ledger's journal on local disk, for a serving process without Redis (the embedded default): append-only
segment files under DATA_DIR/journal, one set per process, each line a journalled record (journal.encode).

Why a file: committing a call's record in SQLite before answering was most of the embedded default's added
latency (a thread hop and a transaction with its rollup upserts, about 1.4 ms of a 2.3 ms call). A line
written to a file with one `write()` is in the kernel once the call returns, so it outlives the process as a
committed SQLite transaction does (the embedded default runs SQLite with `synchronous=NORMAL`, which does not
flush to disk at each commit either: both survive the process, neither a power cut without the disk's cache
flushed). No library keeps a write-ahead log of this shape, and the part that matters is four system calls.

How entries leave:
- a segment's entries are counted while their records wait for the writer's batch; once none waits, the
  segment is emptied (`ftruncate`), so a process that keeps up keeps one empty file;
- a segment that grew past SEGMENT_BYTES is followed by a new one and deleted once its last record is
  committed;
- a record that failed to be written stays in its segment, and the segment stays on disk.

Each segment is locked (`flock`) by its process for as long as it lives. `replay` takes the segments whose lock
it can take, that is of processes that are gone (killed between an answer and its commit, or stopped with a
record that failed), writes each entry's record unless its request id is in the ledger already, and deletes
the segment. A serving process does so as it starts (aspweb.handler.startup_hooks), so a restarted worker
picks up what its predecessor answered; the beat's journal_replay does so too where there is a beat.
"""

import fcntl
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 1 << 20
SUFFIX = ".journal"


@dataclass
class _Segment:
    path: Path
    fd: int
    size: int = 0
    waiting: int = 0  # entries whose records are not committed yet


class FileJournal:
    """One process's segments. `append` runs on the event loop (one `write()`), `remove` in the writer's thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.segments: dict[str, _Segment] = {}
        self.current: _Segment | None = None
        self.count = 0

    def append(self, entry: bytes) -> str:
        """Write an entry (one line); its id."""
        line = entry + b"\n"
        with self.lock:
            segment = self.current
            if segment is None or segment.size >= SEGMENT_BYTES:
                segment = self.current = self._open()
            written = os.write(segment.fd, line)
            segment.size += written
            if written != len(line):  # a full disk: the line is torn, and the caller commits before answering
                raise OSError(f"The ledger's journal wrote {written} of {len(line)} bytes to {segment.path}")
            segment.waiting += 1
            self.count += 1
            return f"{segment.path.name}:{self.count}"

    def remove(self, entry_ids: list[str]) -> None:
        """The records of these entries are committed."""
        with self.lock:
            for entry_id in entry_ids:
                segment = self.segments.get(entry_id.rsplit(":", 1)[0])
                if segment is not None:
                    segment.waiting -= 1
            for name, segment in list(self.segments.items()):
                if segment.waiting:
                    continue
                if segment is self.current:
                    if segment.size:
                        os.ftruncate(segment.fd, 0)  # O_APPEND: the next line goes to the start again
                        segment.size = 0
                else:
                    segment.path.unlink(missing_ok=True)
                    os.close(segment.fd)
                    del self.segments[name]

    def waiting(self) -> int:
        with self.lock:
            return sum(segment.waiting for segment in self.segments.values())

    def close(self) -> None:
        """At shutdown, after the writer drained: empty segments go; one still holding an entry whose record
        failed stays, unlocked, for the next start's replay."""
        with self.lock:
            for segment in self.segments.values():
                if not segment.waiting:
                    segment.path.unlink(missing_ok=True)
                os.close(segment.fd)
            self.segments, self.current = {}, None

    def _open(self) -> _Segment:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.pid}-{uuid.uuid4().hex}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        segment = self.segments[path.name] = _Segment(path, fd)
        return segment


_journal: FileJournal | None = None
_journal_lock = threading.Lock()


def directory() -> Path:
    return Path(settings.DATA_DIR) / "journal"


def journal() -> FileJournal:
    """This process's journal (a forked child makes its own)."""
    global _journal
    with _journal_lock:
        if _journal is None or _journal.pid != os.getpid() or _journal.directory != directory():
            if _journal is not None and _journal.pid == os.getpid():
                _journal.close()  # DATA_DIR changed (tests)
            _journal = FileJournal(directory())
        return _journal


def close() -> None:
    global _journal
    with _journal_lock:
        if _journal is not None and _journal.pid == os.getpid():
            _journal.close()
        _journal = None


def replay(write: Callable[[list[dict[str, Any]]], int]) -> tuple[int, int]:
    """Hand the entries of every segment no living process holds to `write` (which writes those whose records
    are not in the ledger and returns how many it wrote), then delete the segment. Returns (entries, written).
    A torn last line (the process died inside a write, or the disk was full) is not an entry: its call was
    answered only after its record was committed."""
    entries_seen = written = 0
    folder = directory()
    if not folder.is_dir():
        return 0, 0
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # another process replayed it meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process lives, and its writer is at it
            if not path.exists():
                continue  # replayed and deleted while this process waited for the lock
            with os.fdopen(os.dup(fd), "rb") as stream:
                entries = []
                for line in stream.read().split(b"\n"):
                    try:
                        entries.append(json.loads(line))
                    except ValueError:
                        if line:
                            logger.warning("Skipped a torn line of the ledger's journal in %s", path.name)
            for start in range(0, len(entries), 500):
                written += write(entries[start:start + 500])
            entries_seen += len(entries)
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return entries_seen, written
