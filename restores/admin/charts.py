"""The overview page's charts: server-rendered inline SVG (no script, no chart library)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from restores.models import Job
from restores.selectors import OverviewBucket

CHART_WIDTH = 560
CHART_HEIGHT = 200
STATUS_COLORS = {
    Job.Status.PENDING: "#8c8c8c",
    Job.Status.PROCESSING: "#2f80c4",
    Job.Status.COMPLETED: "#3c9a5f",
    Job.Status.CANCELLED: "#c77c13",
}
GOOD_COLOR = "#3c9a5f"
BAD_COLOR = "#ba2121"


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return int(step * magnitude)
    return 10 * magnitude  # not reached: 10 times the magnitude is always enough


def _bucket_label(start: datetime, unit: str) -> str:
    return start.strftime("%H:00") if unit == "hour" else start.strftime("%a %d %b")


def svg_column_chart(
    buckets: Sequence[OverviewBucket], *, unit: str, good: str, bad: str, title: str
) -> SafeString:
    """Stacked columns of ``good`` (green) and ``bad`` (red) per hour or day, with a y-axis and a legend."""
    left, right, top, bottom = 48, 8, 26, 22
    plot_w, plot_h = CHART_WIDTH - left - right, CHART_HEIGHT - top - bottom
    ceiling = _nice_ceiling(max((b.good + b.bad for b in buckets), default=0))
    slot = plot_w / max(1, len(buckets))
    bar = max(2.0, slot * 0.72)
    label_every = 1 if len(buckets) <= 12 else 3

    def y(value: float) -> float:
        return top + plot_h - plot_h * value / ceiling

    parts: list[SafeString] = []
    for fraction in (0, 0.5, 1):
        value = ceiling * fraction
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>',
                left,
                CHART_WIDTH - right,
                f"{y(value):.1f}",
                f"{y(value):.1f}",
                left - 6,
                f"{y(value) + 4:.1f}",
                f"{value:,.0f}" if value == int(value) else f"{value:,.1f}",
            )
        )
    for index, bucket in enumerate(buckets):
        x = left + index * slot + (slot - bar) / 2
        label = _bucket_label(bucket.start, unit)
        tip = f"{label}: {bucket.good:,} {good}, {bucket.bad:,} {bad}"
        good_top, bad_top = y(bucket.good), y(bucket.good + bucket.bad)
        parts.append(
            format_html(
                '<g class="column"><title>{}</title>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/></g>',
                tip,
                f"{x:.1f}",
                f"{good_top:.1f}",
                f"{bar:.1f}",
                f"{top + plot_h - good_top:.1f}",
                GOOD_COLOR,
                f"{x:.1f}",
                f"{bad_top:.1f}",
                f"{bar:.1f}",
                f"{good_top - bad_top:.1f}",
                BAD_COLOR,
            )
        )
        if index % label_every == 0:
            parts.append(
                format_html(
                    '<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                    f"{x + bar / 2:.1f}",
                    CHART_HEIGHT - 6,
                    label.split(" ")[0] if unit == "day" else label,
                )
            )
    legend = format_html(
        '<rect x="{}" y="6" width="10" height="10" fill="{}"/><text class="legend" x="{}" y="15">{}</text>'
        '<rect x="{}" y="6" width="10" height="10" fill="{}"/><text class="legend" x="{}" y="15">{}</text>',
        left,
        GOOD_COLOR,
        left + 14,
        good,
        left + 110,
        BAD_COLOR,
        left + 124,
        bad,
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">'
        "<title>{}</title>{}{}</svg>",
        CHART_WIDTH,
        CHART_HEIGHT,
        title,
        title,
        legend,
        format_html_join("", "{}", ((part,) for part in parts)),
    )


def svg_bar_chart(rows: Sequence[tuple[str, int, int, str]], *, title: str, unit: str) -> SafeString:
    """Horizontal bars: (label, value, of which bad, colour); the bad share is drawn in red."""
    left, right, row_h = 150, 90, 26
    height = max(1, len(rows)) * row_h + 8
    plot_w = CHART_WIDTH - left - right
    ceiling = max((value for _, value, _, _ in rows), default=0) or 1
    parts: list[SafeString] = []
    for index, (label, value, bad_value, color) in enumerate(rows):
        y = 4 + index * row_h
        width = plot_w * value / ceiling
        bad_width = plot_w * bad_value / ceiling
        shown = label if len(label) <= 22 else label[:21] + "…"
        tip = f"{label}: {value:,} {unit}" + (f", {bad_value:,} failed" if bad_value else "")
        parts.append(
            format_html(
                '<g class="bar"><title>{}</title>'
                '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
                '<text class="value" x="{}" y="{}">{}</text></g>',
                tip,
                left - 8,
                y + 16,
                shown,
                left,
                y + 3,
                f"{width:.1f}",
                row_h - 8,
                color,
                f"{left + width - bad_width:.1f}",
                y + 3,
                f"{bad_width:.1f}",
                row_h - 8,
                BAD_COLOR,
                f"{left + width + 6:.1f}",
                y + 16,
                f"{value:,}",
            )
        )
    if not rows:
        parts.append(
            format_html('<text class="axis" x="{}" y="20">{}</text>', left, "nothing in this window")
        )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">'
        "<title>{}</title>{}</svg>",
        CHART_WIDTH,
        height,
        title,
        title,
        format_html_join("", "{}", ((part,) for part in parts)),
    )
