"""The gateway's rows read on every call, kept per worker (aspweb/kept.py): checked API keys. Routes and
their deployments are part of the call path's resolutions (providers/kept.py), which follow them from here."""

from aspweb.kept import Kept

# Gateway keys by their hash, with their owner: a key or user changes them, but not a key's last use, which
# the gateway writes once a minute per key (apikeys): a kept one only tells a worker when to write it next.
api_keys = Kept("api-keys", ttl=60.0)


def connect() -> None:
    from accounts.models import User
    from providers import kept as call_path

    from .models import ApiKey, Deployment, Route

    call_path.resolutions.follow(Route, Deployment)
    api_keys.follow(ApiKey, User, unread={ApiKey: ("last_used_at",)})
