"""What the call path reads on every call, in row caches of each worker (aspweb/rowcache.py): resolved
addresses and checked API keys."""

from aspweb.rowcache import RowCache

# Addresses resolved by providers.calls: a provider, model, price, route or deployment changes them.
resolutions = RowCache("catalog", ttl=60.0)
# Gateway keys by their hash, with their owner: a key or user changes them, but not a key's last use, which
# the gateway writes once a minute per key (apikeys): a cached one only tells a worker when to write it next.
api_keys = RowCache("api-keys", ttl=60.0)


def connect() -> None:
    from accounts.models import User

    from .models import ApiKey, Deployment, Model, Price, PriceTier, Provider, Route

    resolutions.follow(Provider, Model, Price, PriceTier, Route, Deployment)
    api_keys.follow(ApiKey, User, unread={ApiKey: ("last_used_at",)})
