"""What the usage pages share: a form's errors in words, and CSV cells written safely."""

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# Rows read and written per batch by the CSV exports.
EXPORT_BATCH = 2000


def form_errors(form: Any) -> list[str]:
    """A form's errors in the words of the page: each field by its label ("From: Enter a valid date."),
    never by its internal name (`date_from`)."""
    lines = []
    for name, errors in form.errors.items():
        label = form[name].label if name in form.fields else ""
        lines += [f"{label}: {e}" if label else e for e in errors]
    return lines


def parameter_errors(form: Any) -> str:
    """A form's errors for someone who wrote the URL: each field by its query parameter ("from")."""
    return "; ".join(
        f'parameter "{form.add_prefix(name)}": {" ".join(errors)}' if name in form.fields else " ".join(errors)
        for name, errors in form.errors.items())


class Line:
    """csv.writer's file: hands back each line instead of storing it."""

    def write(self, line: str) -> str:
        return line


def csv_cells(row: Iterable[Any]) -> list[str]:
    return [csv_cell(value) for value in row]


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")  # never 1E-7
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    text = str(value)
    # A cell starting like a formula would run as one in a spreadsheet (provider messages, names).
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
