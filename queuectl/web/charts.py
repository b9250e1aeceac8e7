"""The overview's history chart as server-rendered SVG: stacked bars, axes and a legend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

from queuectl.stats import Range

# the drawing, in viewBox units (the CSS scales it to the page's width)
WIDTH, HEIGHT = 720, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 26, 22  # margins: counts left, legend top, times below


def count_axis(tallest: int) -> tuple[int, int]:
    """(top, step) of the count axis: the step a 1, 2 or 5 times a power of ten, at most
    four steps up to a top at or above the tallest bar, so every gridline is a round count."""
    if tallest <= 1:
        return 1, 1
    wanted = tallest / 4
    magnitude = int(10 ** max(math.floor(math.log10(wanted)), 0))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= wanted)
    return math.ceil(tallest / step) * step, step


def history_svg(bars: Sequence[tuple[int, int, int]], rng: Range) -> Markup:
    """Stacked bars (succeeded over failed) per slice, a count axis with gridlines, a time
    axis with ticks at round UTC times, and a legend with the range's totals."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top, step = count_axis(max([ok + bad for _, ok, bad in bars] + [1]))
    slot_w = plot_w / max(len(bars), 1)
    bar_w = max(slot_w * 0.8, 1.0)
    base = TOP + plot_h
    total_ok = sum(ok for _, ok, _ in bars)
    total_bad = sum(bad for _, _, bad in bars)
    per = rng.per
    out = [
        f'<svg class="chart" id="throughput" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'data-range="{rng.key}" aria-label="attempts finished per {per} over the last '
        f'{escape(rng.label)}: {total_ok} succeeded, {total_bad} failed">'
    ]
    # the count axis: a gridline and a label at every step, 0 to the top
    for value in range(0, top + 1, step):
        y = base - plot_h * value / top
        out.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
            f'<text class="axis-label" x="{LEFT - 4}" y="{y + 3:.1f}" '
            f'text-anchor="end">{value}</text>'
        )
    for i, (start, ok, bad) in enumerate(bars):
        x = LEFT + i * slot_w + (slot_w - bar_w) / 2
        h_ok, h_bad = plot_h * ok / top, plot_h * bad / top
        if bad:
            out.append(
                f'<rect class="bad" x="{x:.1f}" y="{base - h_bad:.1f}" width="{bar_w:.1f}" '
                f'height="{h_bad:.1f}"><title>{bad} failed</title></rect>'
            )
        if ok:
            out.append(
                f'<rect class="ok" x="{x:.1f}" y="{base - h_bad - h_ok:.1f}" '
                f'width="{bar_w:.1f}" height="{h_ok:.1f}"><title>{ok} succeeded</title></rect>'
            )
        if start % rng.tick_s == 0:
            tick_x = LEFT + i * slot_w
            label = datetime.fromtimestamp(start, UTC).strftime(rng.tick_format)
            out.append(
                f'<line class="tick" x1="{tick_x:.1f}" y1="{base}" x2="{tick_x:.1f}" '
                f'y2="{base + 4}"/><text class="axis-label tick-label" x="{tick_x:.1f}" '
                f'y="{base + 15}" text-anchor="middle">{label}</text>'
            )
    out.append(
        f'<line class="axis" x1="{LEFT}" y1="{base + 0.5}" x2="{WIDTH - RIGHT}" '
        f'y2="{base + 0.5}"/>'
        f'<text class="axis-label" x="{LEFT}" y="12">attempts per {per} · times UTC</text>'
        f'<g class="legend"><rect class="ok" x="{WIDTH - 230}" y="4" width="10" height="10"/>'
        f'<text class="legend-label" x="{WIDTH - 216}" y="13">succeeded {total_ok}</text>'
        f'<rect class="bad" x="{WIDTH - 120}" y="4" width="10" height="10"/>'
        f'<text class="legend-label" x="{WIDTH - 106}" y="13">failed {total_bad}</text></g>'
        "</svg>"
    )
    return Markup("".join(out))  # noqa: S704  (numbers and escaped labels only)
