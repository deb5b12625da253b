from django.apps import AppConfig


class ReconcileConfig(AppConfig):
    name = "reconcile"
    verbose_name = "Reconciliation with the providers' reports"

    def ready(self) -> None:
        from aspweb import config as config_file

        from . import config

        config_file.provider_part_register(config.PART)
