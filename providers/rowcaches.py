"""What the call path reads on every call, in row caches of each worker (aspweb/rowcache.py): resolved
addresses. The gateway's checked API keys are cached in gateway/rowcaches.py."""

from aspweb.rowcache import RowCache

# Addresses resolved by providers.calls: a provider, model, price, route or deployment changes them (the
# gateway follows its routes and deployments here, gateway/rowcaches.py).
resolutions = RowCache("catalog", ttl=60.0)


def connect() -> None:
    from .models import Model, Price, PriceTier, Provider

    resolutions.follow(Provider, Model, Price, PriceTier)
