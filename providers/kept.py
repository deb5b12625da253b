"""What the call path reads on every call, kept per worker (aspweb/kept.py): resolved addresses. The
gateway's checked API keys are kept in gateway/kept.py."""

from aspweb.kept import Kept

# Addresses resolved by providers.calls: a provider, model, price, route or deployment changes them (the
# gateway follows its routes and deployments here, gateway/kept.py).
resolutions = Kept("catalog", ttl=60.0)


def connect() -> None:
    from .models import Model, Price, PriceTier, Provider

    resolutions.follow(Provider, Model, Price, PriceTier)
