from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway: API keys and routes"

    def ready(self) -> None:
        from aspweb import config as config_file
        from aspweb import metrics
        from providers import hooks

        from . import config, routing, rowcaches

        rowcaches.connect()
        config_file.section_register(config.SECTION)
        # The call path sits below the gateway: it resolves a name without a slash through the routes
        # registered here.
        hooks.routes_register(routing)
        metrics.scrape_register(routing.circuit_metrics)
