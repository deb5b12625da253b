from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage and cost"

    def ready(self) -> None:
        from aspweb import handler
        from providers import hooks

        from . import unpriced, writer

        # The call path sits below the ledger: it records every call through the writer registered here.
        hooks.recorder_register(writer.usage_record_write)
        if writer.writer_drain not in handler.shutdown_hooks:
            handler.shutdown_hooks.append(writer.writer_drain)
        if writer.journal_recover not in handler.startup_hooks:
            handler.startup_hooks.append(writer.journal_recover)
        hooks.unpriced_register(unpriced.unpriced_models)
