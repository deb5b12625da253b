"""Charts as SVG drawn on the server: no JavaScript charting library, nothing to load, and they print.

Every mark carries a <title>, which browsers show on hover and screen readers read; the page puts a table
with the same numbers after each chart. Colours are classes (`s0` ... `s7`, in app.css), so the charts
follow the stylesheet. Coordinates are floats: they place pixels, the amounts in titles stay Decimal.
"""

import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from providers.templatetags.money import money

from .dashboards import DailySeries

COLOURS = 8
# Drawing units are about the page's pixels, so that 11 px text looks 11 px.
WIDTH = 1040  # a chart across the page
HALF_WIDTH = 500  # one of two side by side
STACK_HEIGHT = 260
AXIS_LEFT, AXIS_BOTTOM, TOP_GAP = 64, 26, 10
BAR_ROW, VALUE_WIDTH = 26, 80


def colour(index: int) -> str:
    """The CSS class of the index-th series: the legend and the table use it too."""
    return f"s{index % COLOURS}"


def nice_ceiling(value: float) -> float:
    """The axis top: 1, 2, 2.5 or 5 times a power of ten, at or above value."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def _svg(width: int, height: int, title: str, body: SafeString, css: str) -> SafeString:
    return format_html(
        '<svg class="chart {}" viewBox="0 0 {} {}" width="100%" role="img" '
        'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        css, width, height, title, body,
    )


def _n(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _short_day(day: date) -> str:
    return f"{day:%b} {day.day}"


def stacked_daily_cost(series: DailySeries, *, title: str) -> SafeString:
    """Columns per day, stacked by provider in the legend's order (the most expensive at the bottom)."""
    days = series.days
    totals = [series.day_total(day) for day in days]
    top = nice_ceiling(float(max(totals, default=Decimal(0))))
    plot_w, plot_h = WIDTH - AXIS_LEFT - 8, STACK_HEIGHT - AXIS_BOTTOM - TOP_GAP
    slot = plot_w / max(len(days), 1)
    bar = max(slot * 0.78, 1.0)
    parts = SafeString()
    for tick in range(5):
        amount = top * tick / 4
        y = TOP_GAP + plot_h - plot_h * tick / 4
        parts += (format_html(
            '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/><text class="axis" x="{}" y="{}" '
            'text-anchor="end">{}</text>',
            AXIS_LEFT, WIDTH - 8, _n(y), _n(y), AXIS_LEFT - 6, _n(y + 4), money(Decimal(str(amount))),
        ))
    every = max(1, math.ceil(len(days) / 10))
    for i, (day, total) in enumerate(zip(days, totals, strict=True)):
        x = AXIS_LEFT + slot * i + (slot - bar) / 2
        y = TOP_GAP + plot_h
        segments = SafeString()
        for index, (pk, name) in enumerate(series.providers):
            amount = series.cost.get((day, pk))
            if not amount:
                continue
            h = plot_h * float(amount) / top
            y -= h
            segments += (format_html(
                '<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{} · {}: {}</title></rect>',
                colour(index), _n(x), _n(y), _n(bar), _n(max(h, 0.5)), day.isoformat(), name, money(amount),
            ))
        # Hovering the column (between or above segments) still names the day and its total.
        parts += (format_html(
            '<g class="day"><title>{}: {} in all</title><rect class="hit" x="{}" y="{}" width="{}" height="{}"/>{}</g>',
            day.isoformat(), money(total), _n(AXIS_LEFT + slot * i), TOP_GAP, _n(slot), plot_h, segments,
        ))
        if i % every == 0:
            parts += (format_html(
                '<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                _n(x + bar / 2), STACK_HEIGHT - 8, _short_day(day),
            ))
    return _svg(WIDTH, STACK_HEIGHT, title, parts, "stacked")


@dataclass(frozen=True)
class Bar:
    label: str
    value: Decimal
    hover: str  # the <title>: the label with its numbers


def bar_chart(bars: list[Bar], *, title: str, width: int = WIDTH) -> SafeString:
    """Horizontal bars, largest first as given, each with its label and amount beside it. `width`: the
    drawing's own units; pass the share of the page it gets, so that its text keeps the page's size."""
    height = TOP_GAP * 2 + BAR_ROW * max(len(bars), 1)
    top = max((float(b.value) for b in bars), default=0.0) or 1.0
    label_width = round(width * 0.38)
    room = width - label_width - VALUE_WIDTH
    rows = []
    for i, b in enumerate(bars):
        y = TOP_GAP + BAR_ROW * i
        w = max(room * float(b.value) / top, 1.0 if b.value else 0.0)
        fits = label_width // 7  # characters of 11 px text
        label = b.label if len(b.label) <= fits else b.label[:fits - 1] + "…"
        rows.append((y, w, label, b))
    body = format_html_join(
        "",
        '<g class="bar"><title>{}</title><text class="label" x="{}" y="{}" text-anchor="end">{}</text>'
        '<rect class="{}" x="{}" y="{}" width="{}" height="{}"/><text class="value" x="{}" y="{}">{}</text></g>',
        ((b.hover, label_width - 8, _n(y + BAR_ROW / 2 + 4), label, colour(0), label_width, _n(y + 3), _n(w),
          BAR_ROW - 6, _n(label_width + w + 6), _n(y + BAR_ROW / 2 + 4), money(b.value))
         for y, w, label, b in rows),
    )
    if not bars:
        body = format_html('<text class="axis" x="{}" y="{}">{}</text>', label_width, TOP_GAP + 16,
                           "Nothing in this range.")
    return _svg(width, height, title, body, "bars")

