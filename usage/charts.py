"""Charts as SVG drawn on the server: no JavaScript charting library, nothing to load, and they print.

Every mark carries a <title>, which browsers show on hover and screen readers read; the page puts a table
with the same numbers after each chart. Colours are classes (`s0` ... `s7`, in app.css), so the charts
follow the stylesheet. Coordinates are floats: they place pixels, the amounts in titles stay Decimal.
"""

import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from aspweb.money import money

from .dashboards import DailySeries

COLOURS = 8
# Drawing units are about the page's pixels, so that 11 px text looks 11 px.
WIDTH = 1040  # a chart across the page
HALF_WIDTH = 500  # one of two side by side
STACK_HEIGHT = 260
SMALL_HEIGHT = 200  # the requests and latency charts, side by side
AXIS_LEFT, AXIS_BOTTOM, TOP_GAP = 64, 26, 10
BAR_ROW, VALUE_WIDTH, UNPRICED_WIDTH = 26, 80, 70


def colour(index: int) -> str:
    """The CSS class of the index-th series: the legend and the table use it too."""
    return f"s{index % COLOURS}"


# Round steps between two ticks, times a power of ten.
STEPS = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5))
INTERVALS = 4  # at most this many steps up the axis


def axis_ticks(maximum: Decimal | float | int, *, least_step: Decimal | None = None) -> list[Decimal]:
    """The Y axis's ticks, from 0 up to `maximum` or just above: every tick a multiple of one round step
    (1, 2, 2.5 or 5 times a power of ten), the smallest step that reaches `maximum` in at most INTERVALS,
    and as many ticks as that takes. $0.01875 gives $0, $0.005, $0.01, $0.015, $0.02. `least_step`: no
    finer than this (1 for counts: no half request)."""
    top = Decimal(str(maximum)) if isinstance(maximum, float) else Decimal(maximum)
    if top <= 0:
        top = least_step or Decimal(1)
    wanted = top / INTERVALS
    step = next(base.scaleb(power) for power in (wanted.adjusted(), wanted.adjusted() + 1) for base in STEPS
                if base.scaleb(power) >= wanted)
    if least_step is not None:
        step = max(step, least_step)
    count = math.ceil(top / step)
    return [(step * n).normalize() if n else Decimal(0) for n in range(count + 1)]


def _svg(width: int, height: int, title: str, body: SafeString, css: str) -> SafeString:
    return format_html(
        '<svg class="chart {}" viewBox="0 0 {} {}" width="100%" role="img" '
        'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        css, width, height, title, body,
    )


def text(value: object) -> str:
    """`value` escaped for HTML as format_html escapes its arguments (html.escape), without the wrapper for lazy
    strings that makes django.utils.html.escape several times slower: a dashboard writes hundreds of marks,
    cells and options, and through format_html they cost more than its queries."""
    return html.escape(str(value))


def _n(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _short_day(day: date) -> str:
    return f"{day:%b} {day.day}"


def _y_axis(ticks: list[Decimal], *, width: int, plot_h: float, label: Callable[[Decimal], str]) -> SafeString:
    """The grid lines and labels of `ticks`, the last at the top of the plot."""
    parts = []
    top = ticks[-1]
    for tick in ticks:
        y = TOP_GAP + plot_h - plot_h * float(tick / top)
        parts.append(f'<line class="grid" x1="{AXIS_LEFT}" x2="{width - 8}" y1="{_n(y)}" y2="{_n(y)}"/><text '
                     f'class="axis" x="{AXIS_LEFT - 6}" y="{_n(y + 4)}" text-anchor="end">{text(label(tick))}</text>')
    return mark_safe("".join(parts))  # noqa: S308 - numbers, and the labels escaped


def _day_labels(days: list[date], *, slot: float, bar: float, height: int, most: int = 10) -> SafeString:
    """A day's short name under every n-th column, at most `most` of them."""
    every = max(1, math.ceil(len(days) / most))
    return mark_safe("".join(  # noqa: S308 - numbers and dates
        f'<text class="axis" x="{_n(AXIS_LEFT + slot * i + slot / 2)}" y="{height - 8}" text-anchor="middle">'
        f'{_short_day(day)}</text>' for i, day in enumerate(days) if i % every == 0))


def calls(count: int) -> str:
    """A count of calls in words: "1 call", "1,234 calls"."""
    return "1 call" if count == 1 else f"{count:,} calls"


def unpriced_note(count: int) -> str:
    """What a day's or a group's amount leaves out, for its title; empty when nothing."""
    return f"; {calls(count)} without a price, not in it" if count else ""


@dataclass(frozen=True)
class _Columns:
    """Where a chart of one column per day puts things: the plot's height, each day's slot, its column's
    width and left edge, and the baseline."""

    plot_h: float
    slot: float
    bar: float
    base: float

    @classmethod
    def of(cls, days: int, *, width: int, height: int) -> "_Columns":
        plot_w, plot_h = width - AXIS_LEFT - 8, height - AXIS_BOTTOM - TOP_GAP
        slot = plot_w / max(days, 1)
        return cls(plot_h=plot_h, slot=slot, bar=max(slot * 0.78, 1.0), base=TOP_GAP + plot_h)

    def slot_x(self, i: int) -> float:
        return AXIS_LEFT + self.slot * i

    def x(self, i: int) -> float:
        return self.slot_x(i) + (self.slot - self.bar) / 2


def stacked_daily_cost(series: DailySeries, *, title: str) -> SafeString:
    """Columns per day, stacked by provider in the legend's order (the most expensive at the bottom). A day
    with calls without a price has a mark under its column, and says so in its title: its amount leaves
    them out."""
    days = series.days
    totals = [series.day_total(day) for day in days]
    ticks = axis_ticks(max(totals, default=Decimal(0)))
    top = float(ticks[-1])
    cols = _Columns.of(len(days), width=WIDTH, height=STACK_HEIGHT)
    plot_h, slot, bar, base = cols.plot_h, cols.slot, cols.bar, cols.base
    parts = [_y_axis(ticks, width=WIDTH, plot_h=plot_h, label=money)]
    names = [text(name) for _, name in series.providers]
    for i, (day, total) in enumerate(zip(days, totals, strict=True)):
        x = cols.x(i)
        y = base
        segments = []
        for index, (pk, _) in enumerate(series.providers):
            amount = series.cost.get((day, pk))
            if not amount:
                continue
            h = plot_h * float(amount) / top
            y -= h
            segments.append(f'<rect class="{colour(index)}" x="{_n(x)}" y="{_n(y)}" width="{_n(bar)}" '
                            f'height="{_n(max(h, 0.5))}"><title>{day.isoformat()} · {names[index]}: '
                            f'{text(money(amount))}</title></rect>')
        unpriced = series.day_activity(day).unpriced
        if unpriced:
            segments.append(f'<circle class="unpriced-mark" cx="{_n(x + bar / 2)}" cy="{_n(base + 6)}" r="3"/>')
        # Hovering the column (between or above segments) still names the day and its total.
        parts.append(f'<g class="day"><title>{day.isoformat()}: {text(money(total))} in all'
                     f'{text(unpriced_note(unpriced))}</title><rect class="hit" x="{_n(cols.slot_x(i))}" '
                     f'y="{TOP_GAP}" width="{_n(slot)}" height="{plot_h}"/>{"".join(segments)}</g>')
    parts.append(_day_labels(days, slot=slot, bar=bar, height=STACK_HEIGHT))
    return _svg(WIDTH, STACK_HEIGHT, title, mark_safe("".join(parts)), "stacked")  # noqa: S308 - escaped above


def _count(tick: Decimal) -> str:
    return f"{int(tick):,}"


def _milliseconds(tick: Decimal) -> str:
    return f"{int(tick):,} ms"


def daily_requests(series: DailySeries, *, title: str, width: int = HALF_WIDTH) -> SafeString:
    """A column of requests per day, its errors the red part at its foot."""
    days = series.days
    activity = [series.day_activity(day) for day in days]
    ticks = axis_ticks(max((a.requests for a in activity), default=0), least_step=Decimal(1))
    top = float(ticks[-1])
    cols = _Columns.of(len(days), width=width, height=SMALL_HEIGHT)
    plot_h, slot, bar, base = cols.plot_h, cols.slot, cols.bar, cols.base
    parts = [_y_axis(ticks, width=width, plot_h=plot_h, label=_count)]
    for i, (day, a) in enumerate(zip(days, activity, strict=True)):
        x = cols.x(i)
        marks = []
        for css, count in (("requests", a.requests), ("failures", a.errors)):
            if count:
                h = plot_h * count / top
                marks.append(f'<rect class="{css}" x="{_n(x)}" y="{_n(base - h)}" width="{_n(bar)}" '
                             f'height="{_n(max(h, 0.5))}"/>')
        errors = f", {a.errors:,} error{'s' if a.errors != 1 else ''}" if a.requests else ""
        parts.append(f'<g class="day"><title>{day.isoformat()}: {a.requests:,} request'
                     f'{"" if a.requests == 1 else "s"}{errors}</title><rect class="hit" x="{_n(cols.slot_x(i))}" '
                     f'y="{TOP_GAP}" width="{_n(slot)}" height="{plot_h}"/>{"".join(marks)}</g>')
    parts.append(_day_labels(days, slot=slot, bar=bar, height=SMALL_HEIGHT, most=6))
    return _svg(width, SMALL_HEIGHT, title, mark_safe("".join(parts)), "requests")  # noqa: S308 - numbers and dates


def daily_latency(series: DailySeries, *, title: str, width: int = HALF_WIDTH) -> SafeString:
    """A column of the average latency per day, over the calls that have one; no column for a day without."""
    days = series.days
    averages = [series.day_activity(day).avg_latency_ms for day in days]
    ticks = axis_ticks(max((a for a in averages if a is not None), default=0), least_step=Decimal(1))
    top = float(ticks[-1])
    cols = _Columns.of(len(days), width=width, height=SMALL_HEIGHT)
    plot_h, slot, bar, base = cols.plot_h, cols.slot, cols.bar, cols.base
    parts = [_y_axis(ticks, width=width, plot_h=plot_h, label=_milliseconds)]
    for i, (day, average) in enumerate(zip(days, averages, strict=True)):
        x = cols.x(i)
        mark = ""
        if average is not None:
            h = plot_h * average / top
            mark = (f'<rect class="{colour(0)}" x="{_n(x)}" y="{_n(base - h)}" width="{_n(bar)}" '
                    f'height="{_n(max(h, 0.5))}"/>')
        said = "no call timed" if average is None else f"{round(average):,} ms on average"
        parts.append(f'<g class="day"><title>{day.isoformat()}: {said}</title><rect class="hit" '
                     f'x="{_n(cols.slot_x(i))}" y="{TOP_GAP}" width="{_n(slot)}" height="{plot_h}"/>{mark}</g>')
    parts.append(_day_labels(days, slot=slot, bar=bar, height=SMALL_HEIGHT, most=6))
    return _svg(width, SMALL_HEIGHT, title, mark_safe("".join(parts)), "latency")  # noqa: S308 - numbers and dates


@dataclass(frozen=True)
class Bar:
    label: str
    value: Decimal
    hover: str  # the <title>: the label with its numbers
    unpriced: int = 0  # calls without a price, which `value` leaves out: marked beside it


def bar_chart(bars: list[Bar], *, title: str, width: int = WIDTH) -> SafeString:
    """Horizontal bars, largest first as given, each with its label and amount beside it. `width`: the
    drawing's own units; pass the share of the page it gets, so that its text keeps the page's size."""
    height = TOP_GAP * 2 + BAR_ROW * max(len(bars), 1)
    top = max((float(b.value) for b in bars), default=0.0) or 1.0
    label_width = round(width * 0.38)
    # Room for " + unpriced" after an amount that leaves calls out.
    room = width - label_width - VALUE_WIDTH - (UNPRICED_WIDTH if any(b.unpriced for b in bars) else 0)
    rows = []
    for i, b in enumerate(bars):
        y = TOP_GAP + BAR_ROW * i
        w = max(room * float(b.value) / top, 1.0 if b.value else 0.0)
        fits = label_width // 7  # characters of 11 px text
        label = b.label if len(b.label) <= fits else b.label[:fits - 1] + "…"
        rows.append((y, w, label, b))
    body = mark_safe("".join(  # noqa: S308 - the texts escaped, the rest numbers
        f'<g class="bar"><title>{text(b.hover)}</title><text class="label" x="{label_width - 8}" '
        f'y="{_n(y + BAR_ROW / 2 + 4)}" text-anchor="end">{text(label)}</text><rect class="{colour(0)}" '
        f'x="{label_width}" y="{_n(y + 3)}" width="{_n(w)}" height="{BAR_ROW - 6}"/><text class="value" '
        f'x="{_n(label_width + w + 6)}" y="{_n(y + BAR_ROW / 2 + 4)}">{_amount(b)}</text></g>'
        for y, w, label, b in rows))
    if not bars:
        body = format_html('<text class="axis" x="{}" y="{}">{}</text>', label_width, TOP_GAP + 16,
                           "Nothing in this range.")
    return _svg(width, height, title, body, "bars")



def _amount(bar: Bar) -> SafeString:
    """A bar's amount, and where it leaves calls without a price out, a mark that says so."""
    if not bar.unpriced:
        return format_html("{}", money(bar.value))
    return format_html('{}<tspan class="unpriced-note"> + unpriced</tspan>', money(bar.value))
