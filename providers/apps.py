from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "Providers and models"

    def ready(self) -> None:
        from aspweb import config as config_file

        from . import config, prices, rowcaches
        from .models import Price, PriceTier

        rowcaches.connect()
        prices.price_versions.follow(Price, PriceTier)
        config_file.section_register(config.SECTION)
