"""Ledger tasks: thin, each calls one service. Run by `celery -A aspweb worker -B` in the production profile."""

from celery import shared_task

from aspweb import redisclients

from . import journal, services


@shared_task(ignore_result=True)
def journal_replay() -> None:
    """The beat's pass over the ledger's journal: records answered but never committed (a worker died) are
    written. Nothing to do without Redis: records are then committed before their answers."""
    if redisclients.configured():
        journal.replay()


@shared_task(ignore_result=True)
def call_bodies_expire() -> None:
    """The beat's hourly pass: logged prompts and answers past their retention are deleted."""
    services.call_bodies_expire()
