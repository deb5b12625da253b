"""Which budgets a call falls under: the one matching rule of the call path's holds and the ledger's charges
(budgets/holds.py), in a few dictionary look-ups however many budgets exist. A budget's scope names one target
column (Budget.COLUMNS: an id, or a tag's or end user's text) and its value; a call offers one value per
column, and one per tag it carries."""

from typing import Any

from .models import Budget

# What hard limits are kept by: (target column, value), or None for a budget on every call.
ScopeKey = tuple[str, Any] | None


def budget_key(budget: Budget) -> ScopeKey:
    column = budget.target_column
    return (column, budget.target_value) if column else None


def call_keys(call: Any) -> list[tuple[str, Any]]:
    """The (target column, value) pairs a call (a usage record, or anything with its ids, `end_user` and
    `tag_list`) can be covered by: one per target column, one per tag."""
    pairs = [(column, getattr(call, column)) for column in Budget.COLUMNS.values() if column != "tag"]
    pairs += [("tag", tag) for tag in call.tag_list]
    return [(column, value) for column, value in pairs if value not in (None, "")]


def covering(budgets: dict[ScopeKey, list[Budget]], call: Any) -> list[Budget]:
    """The budgets of `budgets` (kept by budget_key) that cover `call`, in id order: a look-up per target
    column and tag, whatever the number of budgets."""
    if not budgets:
        return []
    found = list(budgets.get(None, ()))
    for key in call_keys(call):
        found.extend(budgets.get(key, ()))
    return sorted(found, key=lambda budget: budget.pk)
