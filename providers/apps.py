from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "Providers and models"

    def ready(self) -> None:
        from aspweb import config as config_file

        from . import config, kept, prices
        from .models import Price, PriceTier

        kept.connect()
        prices.price_versions.follow(Price, PriceTier)
        config_file.section_register(config.SECTION)
