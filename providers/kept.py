"""What the call path reads on every call, kept per worker (aspweb/kept.py): resolved addresses and
checked API keys."""

from aspweb.kept import Kept

# Addresses resolved by providers.calls: a provider, model, price, route or deployment changes them.
resolutions = Kept("catalog", ttl=60.0)
# Gateway keys by their hash, with their owner: a key or user changes them, but not a key's last use, which
# the gateway writes once a minute per key (apikeys): a kept one only tells a worker when to write it next.
api_keys = Kept("api-keys", ttl=60.0)


def connect() -> None:
    from accounts.models import User

    from .models import ApiKey, Deployment, Model, Price, PriceTier, Provider, Route

    resolutions.follow(Provider, Model, Price, PriceTier, Route, Deployment)
    api_keys.follow(ApiKey, User, unread={ApiKey: ("last_used_at",)})
