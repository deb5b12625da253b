from django.apps import AppConfig


class AspwebConfig(AppConfig):
    name = "aspweb"
    verbose_name = "aspweb"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
