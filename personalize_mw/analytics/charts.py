"""Small inline-SVG charts for the report: no scripts, no fonts, no network.

Each function returns one ``<svg>`` element as a string with an explicit
width/height and a viewBox, so the page lays out the same in any browser and
prints. Every text goes through :func:`esc`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#3b6fd8", "#e07b39", "#2f9e77", "#c2417a", "#7a5cc7", "#8c8c2b", "#4aa3b8", "#9a6b4f")
INK, MUTED, GRID = "#1f2430", "#6b7280", "#e5e7eb"
FONT = 'font-family="system-ui,-apple-system,Segoe UI,Roboto,sans-serif"'


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def _step(span: float, count: int = 4) -> float:
    """A round tick step (1, 2, 2.5 or 5 x 10^k) giving about ``count`` intervals over span."""
    raw = span / count if span > 0 else 1.0
    exp = 10 ** math.floor(math.log10(raw))
    return next(m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= raw)


def fmt_amount(value: float) -> str:
    """A count or amount as labels show it: whole above 10, one decimal below (0.3, not a "0")."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.1f}"


def _open(width: int, height: int, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}" {FONT} font-size="12">')


def grouped_bars(categories: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *,
                 label: str, width: int = 860, highlight: str | None = None) -> str:
    """Horizontal bars: one group per category, one bar per series (e.g. attribution model)."""
    bar, gap, left, top = 9, 14, 170, 34
    group_h = bar * len(series) + gap
    height = top + group_h * len(categories) + 26
    top_value = max((v for _, vals in series for v in vals), default=0)
    step = _step(top_value)
    ticks = max(1, math.ceil(top_value / step - 1e-9))
    vmax = step * ticks
    plot_w = width - left - 60
    out = [_open(width, height, label)]
    x: float = left
    for i, (name, _) in enumerate(series):  # legend, spaced by the length of each name
        out.append(f'<rect x="{x}" y="8" width="10" height="10" rx="2" fill="{PALETTE[i % len(PALETTE)]}"/>'
                   f'<text x="{x + 14}" y="17" fill="{INK}">{esc(name)}</text>')
        x += 30 + 7 * len(name)
    for k in range(ticks + 1):
        x = left + plot_w * k / ticks
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 22}" stroke="{GRID}"/>'
                   f'<text x="{x:.1f}" y="{height - 8}" fill="{MUTED}" text-anchor="middle">'
                   f'{fmt_amount(step * k)}</text>')
    for c, category in enumerate(categories):
        y0 = top + c * group_h
        weight = ' font-weight="700"' if category == highlight else ""
        out.append(f'<text x="{left - 8}" y="{y0 + bar * len(series) / 2 + 4:.1f}" fill="{INK}" '
                   f'text-anchor="end"{weight}>{esc(category)}</text>')
        for s, (name, values) in enumerate(series):
            v = values[c]
            w = plot_w * v / vmax
            y = y0 + s * bar
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" rx="1.5" '
                       f'fill="{PALETTE[s % len(PALETTE)]}"><title>{esc(category)} · {esc(name)}: '
                       f'{v:.1f}</title></rect>')
    out.append("</svg>")
    return "".join(out)


def interval_plot(rows: Sequence[tuple[str, float, float, float, float | None, int]], *, label: str,
                  width: int = 560, unit: str = "pp") -> str:
    """A forest plot: per row (label, estimate, low, high, truth or None, call) a dot with its CI bar.

    Values are proportions shown in percentage points; the zero line is drawn, and a
    known truth (simulations) as a hollow diamond. ``call`` (1 up, -1 down, 0 neither) colours
    the row: it comes from the corrected p-value, which a row's own interval may not agree with.
    """
    left, top, row_h = 130, 24, 30
    height = top + row_h * len(rows) + 30
    lo = min([0.0] + [r[2] for r in rows] + [r[4] for r in rows if r[4] is not None])
    hi = max([0.0] + [r[3] for r in rows] + [r[4] for r in rows if r[4] is not None])
    step = _step(hi - lo or 0.01, 5)
    lo, hi = step * math.floor(lo / step - 0.25), step * math.ceil(hi / step + 0.25)
    plot_w = width - left - 20

    def x(v: float) -> float:
        return left + plot_w * (v - lo) / (hi - lo)

    out = [_open(width, height, label)]
    for k in range(round((hi - lo) / step) + 1):
        v = lo + step * k
        out.append(f'<line x1="{x(v):.1f}" y1="{top - 8}" x2="{x(v):.1f}" y2="{height - 24}" stroke="{GRID}"/>'
                   f'<text x="{x(v):.1f}" y="{height - 8}" fill="{MUTED}" text-anchor="middle">'
                   f'{v * 100:+.3g}</text>')
    out.append(f'<line x1="{x(0):.1f}" y1="{top - 8}" x2="{x(0):.1f}" y2="{height - 24}" stroke="{INK}" '
               f'stroke-dasharray="3 3"/>')
    out.append(f'<text x="{width - 20}" y="{top - 12}" fill="{MUTED}" text-anchor="end">'
               f'absolute lift, {esc(unit)} (95 % CI)</text>')
    for i, (name, est, low, high, truth, call) in enumerate(rows):
        y = top + row_h * i + row_h / 2
        color = PALETTE[2] if call > 0 else PALETTE[3] if call < 0 else MUTED
        out.append(f'<text x="{left - 10}" y="{y + 4:.1f}" fill="{INK}" text-anchor="end">{esc(name)}</text>'
                   f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" stroke="{color}" '
                   f'stroke-width="3" stroke-linecap="round"/>'
                   f'<circle cx="{x(est):.1f}" cy="{y:.1f}" r="5" fill="{color}"><title>{esc(name)}: '
                   f'{est * 100:+.2f} pp [{low * 100:+.2f}, {high * 100:+.2f}]</title></circle>')
        if truth is not None:
            tx = x(truth)
            out.append(f'<path d="M{tx:.1f} {y - 7:.1f} L{tx + 6:.1f} {y:.1f} L{tx:.1f} {y + 7:.1f} '
                       f'L{tx - 6:.1f} {y:.1f} Z" fill="none" stroke="{INK}" stroke-width="1.5">'
                       f'<title>true effect {truth * 100:+.1f} pp</title></path>')
    out.append("</svg>")
    return "".join(out)


def time_series(days: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, label: str,
                width: int = 860, height: int = 220) -> str:
    """Lines over days (e.g. conversions per goal per day)."""
    left, right, top, bottom = 44, 16, 28, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = max((v for _, vals in series for v in vals), default=0)
    step = _step(top_value) if top_value >= 4 else 1.0  # counts: whole-number gridlines
    lines = max(1, math.ceil(top_value / step - 1e-9))
    vmax = step * lines
    n = max(len(days) - 1, 1)

    def x(i: int) -> float:
        return left + plot_w * (i / n if len(days) > 1 else 0.5)  # a single day in the middle

    out = [_open(width, height, label)]
    for k in range(lines + 1):
        y = top + plot_h * (1 - k / lines)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" fill="{MUTED}" text-anchor="end">'
                   f'{fmt_amount(step * k)}</text>')
    step = max(1, len(days) // 7)
    for i in range(0, len(days), step):
        out.append(f'<text x="{x(i):.1f}" y="{height - 10}" fill="{MUTED}" '
                   f'text-anchor="middle">{esc(days[i][5:])}</text>')
    for s, (name, values) in enumerate(series):
        color = PALETTE[s % len(PALETTE)]
        xy = [(x(i), top + plot_h * (1 - v / vmax)) for i, v in enumerate(values)]
        points = " ".join(f"{px:.1f},{py:.1f}" for px, py in xy)
        out.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2" '
                   f'stroke-linejoin="round"><title>{esc(name)}</title></polyline>'
                   if len(xy) > 1 else  # a line needs two days; one day is a dot
                   f'<circle cx="{xy[0][0]:.1f}" cy="{xy[0][1]:.1f}" r="4" fill="{color}">'
                   f'<title>{esc(name)}: {fmt_amount(values[0])}</title></circle>'
                   f'<rect x="{left + 8 + s * 120}" y="8" width="10" height="10" rx="2" fill="{color}"/>'
                   f'<text x="{left + 22 + s * 120}" y="17" fill="{INK}">{esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def interval_path(points: Sequence[tuple[str, float, float, float]], *, title: str, label: str,
                  truth: float | None = None, call: int = 0, width: int = 420, height: int = 170) -> str:
    """One variant's interval over days: per point (day, estimate, low, high), proportions drawn in pp.

    ``call`` (the corrected readout's verdict today: 1, -1 or 0) colours the path.

    A band from low to high and the estimate as a line; a single day is a dot with its bar. The vertical
    axis spans three times the last interval's width either side of it (and zero): earlier, wider
    intervals are clipped at the plot's edge rather than flattening the days that matter.
    """
    left, right, top, bottom = 46, 12, 24, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    _, _, last_low, last_high = points[-1]
    span = max(last_high - last_low, 1e-4)
    lo = max(min(0.0, *(p[2] for p in points)), last_low - 3 * span, -1.0)
    hi = min(max(0.0, *(p[3] for p in points)), last_high + 3 * span, 1.0)
    if truth is not None:
        lo, hi = min(lo, truth), max(hi, truth)
    if hi - lo < 0.01:  # no variance yet (every visitor converted, or none did): a 1 pp axis, not a division by 0
        lo, hi = lo - 0.005, hi + 0.005
    step = _step(hi - lo, 4)
    lo, hi = step * math.floor(lo / step), step * math.ceil(hi / step)
    n = len(points)

    def x(i: int) -> float:
        return left + plot_w * (i / (n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return top + plot_h * (hi - min(max(v, lo), hi)) / (hi - lo)

    color = PALETTE[2] if call > 0 else PALETTE[3] if call < 0 else PALETTE[0]
    out = [_open(width, height, label),
           f'<text x="{left}" y="14" fill="{INK}" font-weight="600">{esc(title)}</text>'
           f'<text x="{width - right}" y="14" fill="{MUTED}" text-anchor="end">lift, pp (95 %, always valid)</text>']
    for k in range(round((hi - lo) / step) + 1):
        v = lo + step * k
        out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - right}" y2="{y(v):.1f}" stroke="{GRID}"/>'
                   f'<text x="{left - 6}" y="{y(v) + 4:.1f}" fill="{MUTED}" text-anchor="end">{v * 100:+.3g}</text>')
    out.append(f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}" stroke="{INK}" '
               f'stroke-dasharray="3 3"/>')
    every = max(1, math.ceil(n / 6))
    ticks = sorted({0, n - 1, *(i for i in range(0, n, every) if n - 1 - i >= every / 2)})  # no two overlap
    for i in ticks:  # the first and last dates inside the frame, not cut at its edges
        anchor = "middle" if n == 1 or 0 < i < n - 1 else "start" if i == 0 else "end"
        out.append(f'<text x="{x(i):.1f}" y="{height - 8}" fill="{MUTED}" text-anchor="{anchor}">'
                   f'{esc(points[i][0][5:])}</text>')
    if truth is not None:
        out.append(f'<line x1="{left}" y1="{y(truth):.1f}" x2="{width - right}" y2="{y(truth):.1f}" stroke="{INK}" '
                   f'stroke-width="1.5"><title>true effect {truth * 100:+.1f} pp</title></line>')
    if n == 1:
        day, est, low, high = points[0]
        out.append(f'<line x1="{x(0):.1f}" y1="{y(low):.1f}" x2="{x(0):.1f}" y2="{y(high):.1f}" stroke="{color}" '
                   f'stroke-width="3" stroke-linecap="round"/>')
    else:
        band = [f"{x(i):.1f},{y(p[3]):.1f}" for i, p in enumerate(points)]
        band += [f"{x(i):.1f},{y(p[2]):.1f}" for i, p in reversed(list(enumerate(points)))]
        line = " ".join(f"{x(i):.1f},{y(p[1]):.1f}" for i, p in enumerate(points))
        out.append(f'<polygon points="{" ".join(band)}" fill="{color}" fill-opacity="0.18"/>'
                   f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2" '
                   f'stroke-linejoin="round"/>')
    for i, (day, est, low, high) in enumerate(points):  # a dot a day, each with its figures
        out.append(f'<circle cx="{x(i):.1f}" cy="{y(est):.1f}" r="{4 if n == 1 else 2.2}" fill="{color}">'
                   f'<title>{esc(day)}: {est * 100:+.2f} pp [{low * 100:+.2f}, {high * 100:+.2f}]</title></circle>')
    out.append("</svg>")
    return "".join(out)


def funnel(steps: Sequence[tuple[str, int]], *, label: str, width: int = 860) -> str:
    """Centred bars, one per stage, with counts and the share of the first stage."""
    row_h, top = 44, 8
    height = top + row_h * len(steps) + 4
    first = max(steps[0][1], 1) if steps else 1
    out = [_open(width, height, label)]
    centre, max_w = 200 + (width - 320) / 2, width - 320
    for i, (name, count) in enumerate(steps):
        w = max(max_w * count / first, 2) if count else 0.0  # nothing drawn for nobody
        y = top + i * row_h
        out.append(f'<rect x="{centre - w / 2:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 10}" rx="4" '
                   f'fill="{PALETTE[0]}" fill-opacity="{1 - i * 0.15:.2f}"/>'
                   f'<text x="12" y="{y + row_h / 2:.1f}" fill="{INK}">{esc(name)}</text>'
                   f'<text x="{centre + w / 2 + 8:.1f}" y="{y + row_h / 2:.1f}" fill="{INK}" '
                   f'font-weight="600">{count:,} <tspan fill="{MUTED}" font-weight="400">'
                   f'({count / first:.0%})</tspan></text>')
    out.append("</svg>")
    return "".join(out)
