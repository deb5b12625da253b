from django.apps import AppConfig


class PlaygroundConfig(AppConfig):
    name = "playground"
    verbose_name = "Playground"

    def ready(self) -> None:
        from usage import sources
        from usage.models import UsageRecord

        from .spent import conversation_url

        # A call's page in the ledger links to the conversation it answered.
        sources.link_register(UsageRecord.Source.PLAYGROUND, conversation_url)
