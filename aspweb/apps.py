from django.apps import AppConfig


class AspwebConfig(AppConfig):
    name = "aspweb"
    verbose_name = "aspweb"

    def ready(self) -> None:
        from . import checks, inline, sqlite  # noqa: F401  (importing checks registers them)

        sqlite.connect()
        inline.connect()
