"""With Redis, row caches (aspweb/rowcache.py) hear of changes by a push: Redis pub/sub.

Every process that uses a row cache starts, at its first use, one daemon thread subscribed to the channel
`<ASPWEB_CACHE_PREFIX>:rowcache:<Redis db>` (channels are shared by all of a server's databases). A change
is published there with the cache's name; each listener then moves that cache to a new generation, and
entries made under the old one stop counting. So a hit reads only this process's memory.

Pub/sub delivers only to connected subscribers, so entries are trusted only while the subscription is
confirmed: the version is None (nothing cached, every read goes to the database) from the start until
Redis confirms the subscription, and again from any error or disconnect until a new connection's
subscription is confirmed; every confirmation and every loss moves to a new epoch, and drops all entries.
The listener's connection does not retry on its own (redis-py would reconnect and subscribe again
silently, hiding the messages lost meanwhile): each error ends the connection, and the loop makes a new
one after a pause. A forked process (Celery's prefork pool) inherits no listener: it starts its own.

The process that announces a change moves its own generation at once, before publishing, so that it never
reads its own write from an old entry while its message is on the way; its listener then passes over its own
message (each message names its sender), which would only drop what was read after the write.
"""

import itertools
import logging
import os
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

# Seconds between a lost subscription and the next try; and how long a read waits for a message before
# looking at the stop flag again.
RETRY_SECONDS = 1.0
POLL_SECONDS = 1.0
# A half-open connection is found by a PING this often.
HEALTH_CHECK_SECONDS = 15

# Every row cache made in this process (they register themselves), so that a loss can drop them all.
caches: list[Any] = []

_counter = itertools.count(1)  # next() is atomic: generations and epochs are never repeated


class Bus:
    """This process's listener and what it has heard."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.trusted = False
        self.epoch = 0
        self.generations: dict[str, int] = {}
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()
        self.url: str | None = None
        self.publisher: redis.Redis | None = None
        self.sender = uuid.uuid4().hex  # names this process's messages

    # -- what the caches ask ---------------------------------------------------------------------------

    def version(self, name: str) -> tuple[int, int] | None:
        if self.thread is None:
            self.start()
        # Read in this order: a loss first distrusts, then moves the epoch; a confirmation first moves
        # the epoch, then trusts. A version read across either is one no entry will match later.
        epoch, generation = self.epoch, self.generations.get(name, 0)
        return (epoch, generation) if self.trusted else None

    def announce(self, name: str) -> None:
        self.generations[name] = next(_counter)  # this process: at once
        if self.publisher is None:
            url = _redis_url()
            if url is None:
                return
            self.publisher = redis.Redis.from_url(url)
        self.publisher.publish(channel(), f"{name} {self.sender}")

    # -- the listener ----------------------------------------------------------------------------------

    def start(self) -> None:
        with self.lock:
            if self.thread is not None:
                return
            url = _redis_url()
            if url is None:  # no Redis: nothing is ever trusted
                return
            self.url, self.stop = url, threading.Event()
            self.thread = threading.Thread(target=self._listen, args=(url, channel(), self.stop),
                                           name="aspweb-rowcache-listener", daemon=True)
            self.thread.start()

    def _listen(self, url: str, name: str, stop: threading.Event) -> None:
        while not stop.is_set():
            client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_keepalive=True,
                                          socket_connect_timeout=5, health_check_interval=HEALTH_CHECK_SECONDS,
                                          client_name=f"aspweb-rowcache-{os.getpid()}")
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(name)
                while not stop.is_set():
                    message = pubsub.get_message(timeout=POLL_SECONDS)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self.confirmed()
                    elif message["type"] == "message":
                        self.heard(message["data"])
            except Exception as exc:
                self.lost(exc)
                stop.wait(RETRY_SECONDS)
            finally:
                self.trusted = False
                pubsub.close()
                client.close()

    def confirmed(self) -> None:
        self.epoch = next(_counter)
        _drop_all()
        self.trusted = True

    def heard(self, data: bytes) -> None:
        name, _, sender = data.decode().partition(" ")
        if sender != self.sender:
            self.generations[name] = next(_counter)

    def lost(self, exc: BaseException) -> None:
        if self.trusted:
            logger.warning("Row caches: lost the Redis subscription (%s); reading through until it is back.",
                           type(exc).__name__)
        self.trusted = False
        self.epoch = next(_counter)
        _drop_all()

    def close(self) -> None:
        """Stop listening (tests, a fork): nothing is trusted until the next start."""
        self.trusted = False
        self.epoch = next(_counter)
        self.stop.set()
        self.thread = None
        self.publisher = None


def _drop_all() -> None:
    for cache in caches:
        cache.entries.clear()


def _redis_url() -> str | None:
    return settings.REDIS_URL or None


def channel() -> str:
    db = (urlsplit(settings.REDIS_URL or "").path or "/0").strip("/") or "0"
    return f"{settings.CACHE_KEY_PREFIX}:rowcache:{db}"


bus = Bus()


def version(name: str) -> tuple[int, int] | None:
    return bus.version(name)


def announce(name: str) -> None:
    bus.announce(name)


def _after_fork() -> None:
    """A forked child shares its parent's state but not its thread: it starts a listener of its own."""
    global bus
    bus = Bus()
    _drop_all()


os.register_at_fork(after_in_child=_after_fork)
