"""Form pieces every app shares: whole numbers with bounds, and one way to say a number is out of them.

Every bounded number in aspweb's forms reads the same when it is out of range, whichever side it falls on:
"Enter a number from 1 to 600." (not "greater than or equal to 1" below and a 64-bit limit above). Use
`BoundedIntegerField` in a plain form; in a ModelForm, give the model field `bounded_validators(low, high)`
and set `formfield_callback = bounded_formfield` in its Meta, so the form, the model's own validation (the admin, the
shell's full_clean) and the config import all enforce one range with one message.
"""

from typing import Any

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


def range_message(low: int, high: int) -> str:
    return f"Enter a number from {low:,} to {high:,}."


def bounded_validators(low: int, high: int) -> list[Any]:
    """A model field's validators for `low` <= value <= `high`, with the one message for both sides."""
    message = range_message(low, high)
    return [MinValueValidator(low, message), MaxValueValidator(high, message)]


class BoundedIntegerField(forms.IntegerField):
    """A whole number from `min_value` to `max_value`, both required: any value outside them, however far
    (-5, 0, 99999999999999999999), gets the same "Enter a number from LOW to HIGH." The bounds also reach
    the browser as the input's min and max."""

    def __init__(self, *, min_value: int, max_value: int, **kwargs: Any) -> None:
        message = range_message(min_value, max_value)
        kwargs["error_messages"] = {"min_value": message, "max_value": message, "invalid": "Enter a whole number.",
                                    **(kwargs.get("error_messages") or {})}
        super().__init__(min_value=min_value, max_value=max_value, **kwargs)


def integer_bounds(db_field: Any) -> tuple[int, int] | None:
    """The (low, high) a model's integer field declares with its own validators, or None where it declares
    none on either side (the database's range alone is no bound a person should read)."""
    if not isinstance(db_field, models.IntegerField) or db_field.choices:
        return None
    lows = [v.limit_value for v in db_field._validators if isinstance(v, MinValueValidator)]
    highs = [v.limit_value for v in db_field._validators if isinstance(v, MaxValueValidator)]
    if not lows or not highs:
        return None
    return max(lows), min(highs)


def bounded_formfield(db_field: Any, **kwargs: Any) -> Any:
    """A ModelForm's `formfield_callback`: an integer field with bounds of its own becomes a BoundedIntegerField
    with those bounds; any other field gets its usual form field."""
    bounds = integer_bounds(db_field)
    if bounds is None:
        return db_field.formfield(**kwargs)
    return db_field.formfield(**{"form_class": BoundedIntegerField, "min_value": bounds[0], "max_value": bounds[1],
                                 **kwargs})
