"""What a hard limit says when it refuses a call: plain words naming the budget, what is left and what the call
could cost, or the model whose price is missing."""

from decimal import Decimal
from typing import Any

from aspweb.money import money
from providers.hooks import LimitRefused

from .models import Budget


class BudgetExceeded(LimitRefused):
    """A call does not fit in a hard-limit budget. `message` is plain words naming the budget and what is left."""

    code = "budget_exceeded"

    def __init__(self, budget: Budget, remaining: Decimal, cost: Decimal) -> None:
        left = max(remaining, Decimal(0))
        self.budget, self.remaining, self.cost = budget, left, cost
        self.message = (
            f"Budget “{budget.name}” ({budget.target_label}, {budget.period}) has {money(left)} left of "
            f"{money(budget.amount)}, and this call could cost up to {money(cost)}. "
            "Ask a finance user to raise the budget, or use a smaller max_tokens."
        )
        super().__init__(self.message)


class BudgetUnpriced(BudgetExceeded):
    """A hard-limit budget covers a call to a model without a price. Nothing bounds what such a call costs,
    so it is refused rather than let through unseen, until an admin sets the model's price."""

    code = "unpriced"

    def __init__(self, budget: Budget, model: Any) -> None:
        self.budget, self.remaining, self.cost = budget, None, None
        self.message = (
            f"Model {model} has no price, and budget “{budget.name}” ({budget.target_label}, {budget.period}) "
            "is a hard limit: a call whose cost cannot be known in advance is refused. An admin must set the "
            f"model's price in aspweb's catalog (Providers, {model.provider.name}, {model.name}) before it can "
            "be called."
        )
        Exception.__init__(self, self.message)
