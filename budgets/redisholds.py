"""Hard limits held in Redis: the production profile's counters of what each hard-limit budget's period has
spent and holds for calls under way, checked and changed by one Lua script per call, on the event loop.

Why Redis rather than the period rows: a reservation made in PostgreSQL is a transaction on the way to the
first token (a thread hop, an UPDATE of the rows every covered call of every worker locks in turn, a commit).
A Lua script runs atomically in Redis, so the check and the hold of all of a call's budgets are one step that
no other call can interleave with: a hard limit holds under any concurrency, across workers and hosts, at the
cost of one round trip that the event loop waits for without a thread.

Keys, all under one hash tag so that they share a slot:
- `<prefix>:{budgets}:period:<id>`: hash `spent` and `held`, integers in units of 1e-10 USD (the ledger's
  places). `spent` starts as the period row's `spent` (loaded on first use, `load`), and grows by each
  covered call's real cost as its usage record is written (`settle`, in the ledger's transaction).
- `<prefix>:{budgets}:hold:<request id>`: hash period key -> amount held for that call; `...:expiring`: the
  holds by expiry (ms), so that those of calls that never recorded (a crashed worker) are given back.
- `<prefix>:{budgets}:loaded`: the loaded period keys, for the sweep.

PostgreSQL stays the ledger and the record of spend: the period row's `spent` is charged in the ledger's
transaction as before (budgets/holds.py); nothing of it lives only in Redis. Redis is charged at most once
per call: a call's cost is added only when its hold is taken (the hold is deleted in the same script), so a
batch written again after a failure, or replayed from the ledger's journal, adds nothing twice. What a crash
or a budget made mid-call can leave Redis short of (a cost never added) is made good by the sweep: `lift`
raises each loaded period's `spent` to the row's, never lowers it. In between, the call's hold, which is at
least its cost, stays until it expires: the counter never shows less than was spent.
Lua compares amounts as doubles: exact below 2^53 units ($900,719.93); above, to a few units of 1e-10 USD.
"""

import time
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal
from typing import Any
from uuid import UUID

from django.conf import settings

from aspweb import redisclients

UNIT = Decimal("1e-10")

_HOLD = """
local amount = tonumber(ARGV[1])
for i = 3, #KEYS do
  local counters = redis.call('HMGET', KEYS[i], 'spent', 'held')
  if not counters[1] then return {-1, i - 3} end
  if tonumber(counters[1]) + tonumber(counters[2] or '0') + amount > tonumber(ARGV[i]) then
    return {0, i - 3, counters[1], counters[2] or '0'}
  end
end
for i = 3, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'held', amount)
  redis.call('HINCRBY', KEYS[2], KEYS[i], amount)
end
redis.call('ZADD', KEYS[1], ARGV[2], KEYS[2])
return {1}
"""

# Gives back the holds named in KEYS[2..]; each of ARGV, from the second on, is a number of period keys
# followed by them and the cost to add to each, taken only when the hold was still there. ARGV[1] empty.
_SETTLE = """
local a = 2
local found = 0
for i = 2, #KEYS do
  local held = redis.call('HGETALL', KEYS[i])
  for j = 1, #held, 2 do
    redis.call('HINCRBY', held[j], 'held', -tonumber(held[j + 1]))
  end
  redis.call('DEL', KEYS[i])
  redis.call('ZREM', KEYS[1], KEYS[i])
  local n = tonumber(ARGV[a] or '0')
  if #held > 0 then
    found = found + 1
    for k = 1, n do
      local period = ARGV[a + 2 * k - 1]
      if redis.call('EXISTS', period) == 1 then
        redis.call('HINCRBY', period, 'spent', ARGV[a + 2 * k])
      end
    end
  end
  a = a + 1 + 2 * n
end
return found
"""

_LOAD = """
redis.call('HSETNX', KEYS[1], 'spent', ARGV[1])
redis.call('HSETNX', KEYS[1], 'held', 0)
redis.call('SADD', KEYS[2], KEYS[1])
return 1
"""

_LIFT = """
for i = 1, #KEYS do
  local spent = tonumber(redis.call('HGET', KEYS[i], 'spent') or '0')
  if tonumber(ARGV[i]) > spent then redis.call('HSET', KEYS[i], 'spent', ARGV[i]) end
end
return 1
"""


def _prefix() -> str:
    return f"{settings.CACHE_KEY_PREFIX}:{{budgets}}"


def period_key(period_id: int) -> str:
    return f"{_prefix()}:period:{period_id}"


def hold_key(request_id: UUID) -> str:
    return f"{_prefix()}:hold:{request_id.hex}"


def _expiring() -> str:
    return f"{_prefix()}:expiring"


def _loaded() -> str:
    return f"{_prefix()}:loaded"


def units(amount: Decimal, *, up: bool = False) -> int:
    return int(amount.quantize(UNIT, rounding=ROUND_UP if up else None).scaleb(10))


def amount(value: Any) -> Decimal:
    return Decimal(int(value)).scaleb(-10)


@dataclass(frozen=True)
class Outcome:
    """A hold's answer: held; or `unloaded` (the index of a period Redis does not know yet: load it and try
    again); or `short` (the index of the first period it does not fit in, with that period's counters)."""

    held: bool
    unloaded: int | None = None
    short: int | None = None
    spent: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)


def _hold_call(period_ids: list[int], limits: list[Decimal], request_id: UUID, cost: Decimal,
               expires_at: float) -> tuple[list[str], list[Any]]:
    keys = [_expiring(), hold_key(request_id), *(period_key(pk) for pk in period_ids)]
    args = [units(cost, up=True), int(expires_at * 1000), *(units(limit) for limit in limits)]
    return keys, args


def _outcome(answer: list[Any]) -> Outcome:
    if int(answer[0]) == 1:
        return Outcome(True)
    if int(answer[0]) == -1:
        return Outcome(False, unloaded=int(answer[1]))
    return Outcome(False, short=int(answer[1]), spent=amount(answer[2]), reserved=amount(answer[3]))


def hold(period_ids: list[int], limits: list[Decimal], request_id: UUID, cost: Decimal,
         expires_at: float) -> Outcome:
    """Hold `cost` on every period, all or none, where each one's spent + held + cost stays within its limit."""
    keys, args = _hold_call(period_ids, limits, request_id, cost, expires_at)
    client = redisclients.sync_client()
    return _outcome(client.register_script(_HOLD)(keys=keys, args=args))


async def ahold(period_ids: list[int], limits: list[Decimal], request_id: UUID, cost: Decimal,
                expires_at: float) -> Outcome:
    """`hold`, on the event loop."""
    keys, args = _hold_call(period_ids, limits, request_id, cost, expires_at)
    client = redisclients.async_client()
    return _outcome(await client.register_script(_HOLD)(keys=keys, args=args))


def load(spent: dict[int, Decimal]) -> None:
    """Start periods' counters from their rows' `spent` (period id -> spent), unless another worker just did."""
    script = redisclients.sync_client().register_script(_LOAD)
    for period_id, value in spent.items():
        script(keys=[period_key(period_id), _loaded()], args=[units(value)])


def settle(calls: list[tuple[UUID, dict[int, Decimal]]]) -> int:
    """Give back each call's holds and add its costs (period id -> cost), taken only where the call still held
    something: so that a call settled twice is charged once. Returns how many calls held something."""
    if not calls:
        return 0
    keys, args = [_expiring()], [""]
    for request_id, costs in calls:
        keys.append(hold_key(request_id))
        args.append(len(costs))
        for period_id, cost in costs.items():
            args += [period_key(period_id), units(cost)]
    return int(redisclients.sync_client().register_script(_SETTLE)(keys=keys, args=args))


def release(request_ids: list[UUID]) -> int:
    """Give back what these calls hold, charging nothing. Returns how many held something."""
    return settle([(request_id, {}) for request_id in request_ids])


def release_expired(now: float | None = None) -> int:
    """Give back the holds past their expiry (calls that never recorded). Returns how many."""
    client = redisclients.sync_client()
    expired = client.zrangebyscore(_expiring(), "-inf", int((now or time.time()) * 1000), start=0, num=1000)
    if expired:
        client.register_script(_SETTLE)(keys=[_expiring(), *expired], args=[""])
    return len(expired)


def loaded_periods() -> list[int]:
    """The ids of the periods Redis holds counters for."""
    keys = redisclients.sync_client().smembers(_loaded())
    return sorted(int(key.decode().rsplit(":", 1)[1]) for key in keys)


def lift(spent: dict[int, Decimal]) -> None:
    """Raise each period's `spent` to at least the given amount (its row's), never lower it."""
    if spent:
        redisclients.sync_client().register_script(_LIFT)(
            keys=[period_key(pk) for pk in spent], args=[units(value) for value in spent.values()])


def counters(period_id: int) -> tuple[Decimal, Decimal] | None:
    """A period's (spent, held) in Redis; None when not loaded."""
    values = redisclients.sync_client().hmget(period_key(period_id), "spent", "held")
    if values[0] is None:
        return None
    return amount(values[0]), amount(values[1] or 0)


def forget(period_ids: list[int]) -> None:
    """Drop the counters of periods that are gone."""
    if period_ids:
        client = redisclients.sync_client()
        keys = [period_key(pk) for pk in period_ids]
        client.delete(*keys)
        client.srem(_loaded(), *keys)
