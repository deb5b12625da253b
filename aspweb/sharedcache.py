"""The shared cache on Redis: Django's RedisCache, refusing to run on the event loop.

Rate-limit counters, the response cache, circuit breakers and the playground's pending requests live in
the shared cache; with Redis each of its calls is a network round trip. Work run inline (aspweb/inline.py)
must not make one on the event loop, so every method here raises NeedsThread when called inline: the work
then starts again in a thread. Settings use this class whenever REDIS_URL is set, and the system check
`shared_cache_refuses_inline` (aspweb/checks.py) fails for any other cache that is not this process's own.
"""

import functools
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.redis import RedisCache

from aspweb import inline

# Every method of Django's RedisCache that talks to Redis (the others, such as get_or_set and decr, call
# these).
NETWORK_METHODS = ("add", "get", "set", "touch", "delete", "get_many", "has_key", "incr", "set_many",
                   "delete_many", "clear")


def _refusing_inline(name: str) -> Callable[..., Any]:
    method = getattr(RedisCache, name)

    @functools.wraps(method)
    def guarded(self: RedisCache, *args: Any, **kwargs: Any) -> Any:
        if inline.running_inline():
            raise inline.NeedsThread(f"the shared cache ({name})")
        return method(self, *args, **kwargs)

    return guarded


class SharedRedisCache(RedisCache):
    pass


for _name in NETWORK_METHODS:
    setattr(SharedRedisCache, _name, _refusing_inline(_name))
