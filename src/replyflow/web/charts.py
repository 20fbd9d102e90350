"""Server-rendered SVG charts (no JavaScript, no library): grouped daily bars with axes and accessible labels."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    css_class: str  # the colour lives in app.css (.bar-<name>), not in the markup


@dataclass(frozen=True)
class DayValues:
    day: dt.date
    values: dict[str, int]


def nice_ceiling(value: int, *, ticks: int = 4) -> int:
    """The smallest axis maximum ``ticks × step`` at or above ``value`` with a round step (1, 2 or 5 × 10ⁿ)."""
    magnitude = 1
    while True:
        for step in (magnitude, 2 * magnitude, 5 * magnitude):
            if step * ticks >= value:
                return step * ticks
        magnitude *= 10


def daily_bars(
    days: Sequence[DayValues],
    series: Sequence[Series],
    *,
    title: str,
    width: int = 760,
    height: int = 240,
) -> Markup:
    """Grouped bars per day. Each bar has a <title> (hover and screen readers); the chart has a title and summary."""
    left, right, top, bottom = 40, 10, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((d.values.get(s.key, 0) for d in days for s in series), default=0)
    axis_max = nice_ceiling(peak)
    count = max(len(days), 1)
    slot = plot_w / count
    group_w = slot * 0.78
    bar_w = group_w / max(len(series), 1)
    totals = ", ".join(f"{s.label}: {sum(d.values.get(s.key, 0) for d in days)}" for s in series)
    parts: list[str] = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title chart-desc"'
        ' xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(f"{len(days)} days. Totals: {totals}.")}</desc>',
    ]
    for i in range(5):
        value = axis_max * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        label = f"{value:g}" if value != int(value) else str(int(value))
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}"/>')
    label_every = max(1, math.ceil(count / 8))
    for index, day in enumerate(days):
        x0 = left + slot * index + (slot - group_w) / 2
        for position, s in enumerate(series):
            value = day.values.get(s.key, 0)
            bar_h = plot_h * value / axis_max if axis_max else 0
            x = x0 + bar_w * position
            y = top + plot_h - bar_h
            tooltip = escape(f"{day.day:%d %b}: {value} {s.label.lower()}")
            parts.append(
                f'<rect class="{escape(s.css_class)}" x="{x:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                f'height="{bar_h:.1f}" rx="1.5"><title>{tooltip}</title></rect>'
            )
        # Every few days, plus the last day when it does not crowd the previous label.
        last_fits = index == count - 1 and index % label_every >= label_every / 2
        if index % label_every == 0 or last_fits:
            cx = left + slot * index + slot / 2
            parts.append(f'<text x="{cx:.1f}" y="{height - 8}" text-anchor="middle">{day.day:%d %b}</text>')
    parts.append("</svg>")
    # Every interpolated value above is a number or went through escape(), so the markup is safe as built.
    return Markup("".join(parts))  # noqa: S704
