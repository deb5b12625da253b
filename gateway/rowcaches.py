"""The gateway's rows read on every call, in row caches of each worker (aspweb/rowcache.py): checked API
keys. Routes and their deployments are part of the call path's resolutions (providers/rowcaches.py), which
follow them from here."""

from aspweb.rowcache import RowCache

# Gateway keys by their hash, with their owner: a key or user changes them, but not a key's last use, which
# the gateway writes once a minute per key (apikeys): a cached one only tells a worker when to write it next.
api_keys = RowCache("api-keys", ttl=60.0)


def connect() -> None:
    from accounts.models import User
    from providers import rowcaches as call_path

    from .models import ApiKey, Deployment, Route

    call_path.resolutions.follow(Route, Deployment)
    api_keys.follow(ApiKey, User, unread={ApiKey: ("last_used_at",)})
