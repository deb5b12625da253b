"""Requests- and tokens-per-minute limits of gateway keys: fixed one-minute windows counted in Django's
cache, so that with REDIS_URL every worker and host counts together.

Counters are keyed by the key's prefix and the minute (`gw:rpm:ask-xxxxxxxx:29000000`); they expire
after two minutes. Requests: the counter is incremented when a request is admitted; a request that
would pass the limit is refused (and not counted) until the minute ends. Tokens: before the call, the
request's input is estimated (about four characters a token) and reserved in the minute's counter; the
call is refused when the minute's tokens plus the estimate would pass the limit (a request larger than
the whole limit goes through only in an empty minute, or it could never go through). After the call the
reservation is replaced by the tokens the provider reported, input and output.
"""

import contextlib
import math
import time
from dataclasses import dataclass

from django.core.cache import cache

WINDOW_SECONDS = 60
# Long enough to outlive its window; a settlement arriving later than this is dropped.
COUNTER_TTL = 2 * WINDOW_SECONDS
# Wall-clock time, so that every worker and host agrees on the minute (tests replace it).
clock = time.time


class RateLimited(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass
class Reservation:
    """Tokens reserved for one call, to be settled once its usage is known."""

    counter: str
    tokens: int


def _window(now: float) -> tuple[int, int]:
    """The current window number and the whole seconds until the next one (at least 1)."""
    window = int(now // WINDOW_SECONDS)
    return window, max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))


def _add(counter: str, amount: int) -> int:
    """Add to a counter, creating it when it is missing, and return its new value."""
    if cache.add(counter, amount, COUNTER_TTL):
        return amount
    try:
        return cache.incr(counter, amount)
    except ValueError:  # expired between add and incr
        cache.add(counter, amount, COUNTER_TTL)
        return amount


def _take_back(counter: str, amount: int) -> None:
    with contextlib.suppress(ValueError):  # gone already: nothing to take back
        cache.decr(counter, amount)


def admit(prefix: str, *, rpm: int | None, tpm: int | None, estimate: int) -> Reservation | None:
    """Count one request against the key's limits; RateLimited when it would pass one of them."""
    window, retry_after = _window(clock())
    requests_counter = f"gw:rpm:{prefix}:{window}"
    if rpm is not None and _add(requests_counter, 1) > rpm:
        _take_back(requests_counter, 1)
        raise RateLimited(f"Rate limit reached: this key may make {rpm} requests a minute.", retry_after)
    if tpm is None:
        return None
    tokens_counter = f"gw:tpm:{prefix}:{window}"
    total = _add(tokens_counter, estimate)
    if total > tpm and total > estimate:
        _take_back(tokens_counter, estimate)
        if rpm is not None:
            _take_back(requests_counter, 1)
        raise RateLimited(f"Rate limit reached: this key may use {tpm} tokens a minute "
                          f"({total - estimate} used in this minute, about {estimate} asked).", retry_after)
    return Reservation(tokens_counter, estimate)


def settle(reservation: Reservation, tokens: int) -> None:
    """Replace a reservation by the tokens the call used. When the call ran into a later minute, they
    count in the minute it ended in."""
    window, _ = _window(clock())
    current = f"{reservation.counter.rsplit(':', 1)[0]}:{window}"
    if current == reservation.counter:
        if tokens != reservation.tokens:
            _add(current, tokens - reservation.tokens)
    elif tokens:
        _add(current, tokens)
