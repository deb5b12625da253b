"""What a conversation has cost so far, read from the usage ledger; and the conversation a call of the
ledger answered."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.urls import reverse

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
    replaced: int = 0  # of `calls`, those whose answers an edited prompt replaced


def conversation_spent(conversation: Conversation) -> Spent:
    """The sum of the ledger's cost of each answer the conversation shows (one call each), and of the
    answers an edited prompt replaced: their calls were paid for too."""
    answered = Answer.objects.filter(turn__conversation=conversation, request_id__isnull=False)
    replaced = Q(request_id__in=conversation.replaced_calls)
    totals = UsageRecord.objects.filter(Q(request_id__in=answered.values("request_id")) | replaced).aggregate(
        total=Sum("cost"), calls=Count("id"), unpriced=Count("id", filter=Q(unpriced=True)),
        estimated=Count("id", filter=Q(usage_estimated=True)), replaced=Count("id", filter=replaced))
    return Spent(total=totals["total"] or Decimal(0), calls=totals["calls"], estimated=bool(totals["estimated"]),
                 unpriced=totals["unpriced"], replaced=totals["replaced"])


def conversation_url(record: UsageRecord, user: Any) -> str:
    """The playground conversation a call answered, where it is the viewer's own (a conversation is only
    ever its owner's to open); empty otherwise."""
    if record.source != UsageRecord.Source.PLAYGROUND or record.user_id is None or record.user_id != user.pk:
        return ""
    # Led by the person's own conversations: a handful of rows, whatever the size of the answers table.
    answer = (Answer.objects.filter(turn__conversation__user=user, request_id=record.request_id)
              .values("turn_id", "turn__conversation_id").first())
    if answer is None:  # the conversation was deleted since
        return ""
    return reverse("playground_conversation", args=[answer["turn__conversation_id"]]) + f"#turn-{answer['turn_id']}"
