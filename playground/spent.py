"""What a conversation has cost so far, read from the usage ledger."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Q, Sum

from usage.models import UsageRecord

from .models import Answer, Conversation


@dataclass(frozen=True)
class Spent:
    """What a conversation's answers cost: `total` in USD, whether any of it is estimated (usage counted
    by aspweb, e.g. for an answer stopped before the provider reported it), and how many of its calls have
    no price (counted apart, never as free)."""

    total: Decimal
    calls: int
    estimated: bool
    unpriced: int


def conversation_spent(conversation: Conversation) -> Spent:
    """The sum of the ledger's cost of each answer the conversation shows (one call each)."""
    answered = Answer.objects.filter(turn__conversation=conversation, request_id__isnull=False)
    totals = UsageRecord.objects.filter(request_id__in=answered.values("request_id")).aggregate(
        total=Sum("cost"), calls=Count("id"), unpriced=Count("id", filter=Q(unpriced=True)),
        estimated=Count("id", filter=Q(usage_estimated=True)))
    return Spent(total=totals["total"] or Decimal(0), calls=totals["calls"], estimated=bool(totals["estimated"]),
                 unpriced=totals["unpriced"])
