from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway: API keys and routes"

    def ready(self) -> None:
        from providers import calls

        from . import kept, routing

        kept.connect()
        # The call path sits below the gateway: it resolves a name without a slash through the routes
        # registered here.
        calls.routes_register(routing)
