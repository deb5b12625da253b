from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage and cost"

    def ready(self) -> None:
        from providers.models import Price, PriceTier

        from .services import price_versions

        price_versions.follow(Price, PriceTier)
