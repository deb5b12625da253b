from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage and cost"

    def ready(self) -> None:
        from providers import calls, ledger

        from . import unpriced, writer

        # The call path sits below the ledger: it records every call through the writer registered here.
        calls.recorder_register(writer.usage_record_write)
        ledger.unpriced_register(unpriced.unpriced_models)
