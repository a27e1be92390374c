"""Small inline-SVG charts for the HTML report: no plotting library, no script.

Each function returns one ``<svg>`` element as text. Every drawn value is given by the
caller (the report's numbers), and the chart keeps it in a ``data-*`` attribute of the
element that draws it, so a reader (or a test) can check the figure against the report.
Long series are thinned to the minimum and maximum per horizontal pixel, which keeps
every peak and trough a screen can show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

import numpy as np

#: Series colours (colour-blind safe, Okabe & Ito 2008).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def _d(v: float) -> str:
    """A value for a ``data-*`` attribute: exact (``repr`` of the float)."""
    return repr(float(v))


def _fmt(v: float) -> str:
    """A coordinate, short."""
    return f"{v:.1f}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (1, 2 or 5 times a power of ten) spanning [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + 1e-9 * step:
        out.append(round(v, 12))
        v += step
    return out


def _label(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def thin(x: np.ndarray, y: np.ndarray, n_px: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``2 n_px`` points: per pixel column, the minimum and the maximum, in time
    order (NaN gaps are kept as breaks)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.size <= 2 * n_px:
        return x, y
    edges = np.linspace(x[0], x[-1], n_px + 1)
    col = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_px - 1)
    keep = np.zeros(x.size, bool)
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    ends = np.r_[starts[1:], x.size]
    for a, b in zip(starts, ends, strict=True):
        seg = y[a:b]
        ok = np.isfinite(seg)
        if not ok.all():
            keep[a + np.flatnonzero(~ok)[:1]] = True  # one NaN keeps the break
        if ok.any():
            idx = np.flatnonzero(ok)
            keep[a + idx[np.argmin(seg[ok])]] = True
            keep[a + idx[np.argmax(seg[ok])]] = True
    return x[keep], y[keep]


@dataclass
class Frame:
    """A plotting area: data ranges mapped onto an SVG of ``width`` x ``height`` px."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = 760
    height: int = 260
    left: int = 60
    right: int = 20
    top: int = 16
    bottom: int = 42
    parts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.x1 > self.x0:
            self.x0, self.x1 = self.x0 - 0.5, self.x0 + 0.5
        if not self.y1 > self.y0:
            self.y0, self.y1 = self.y0 - 0.5, self.y0 + 0.5

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        return self.height - self.top - self.bottom

    def px(self, x) -> np.ndarray:
        return self.left + (np.asarray(x, float) - self.x0) / (self.x1 - self.x0) * self.plot_w

    def py(self, y) -> np.ndarray:
        return self.top + (self.y1 - np.asarray(y, float)) / (self.y1 - self.y0) * self.plot_h

    def axes(
        self,
        xlabel: str,
        ylabel: str,
        xticks: Sequence[float] | None = None,
        xtick_labels: Sequence[str] | None = None,
    ) -> None:
        """Frame, grid, ticks and axis labels."""
        L, T, W, H = self.left, self.top, self.plot_w, self.plot_h
        p = self.parts
        p.append(f'<rect x="{L}" y="{T}" width="{W}" height="{H}" class="plot-bg"/>')
        for v in nice_ticks(self.y0, self.y1):
            y = float(self.py(v))
            p.append(f'<line x1="{L}" x2="{L + W}" y1="{_fmt(y)}" y2="{_fmt(y)}" class="grid"/>')
            p.append(
                f'<text x="{L - 6}" y="{_fmt(y + 4)}" class="tick" text-anchor="end">'
                f"{_label(v)}</text>"
            )
        xs = list(xticks) if xticks is not None else nice_ticks(self.x0, self.x1, 8)
        labels = list(xtick_labels) if xtick_labels is not None else [_label(v) for v in xs]
        for v, lab in zip(xs, labels, strict=True):
            x = float(self.px(v))
            p.append(
                f'<line x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{T + H}" y2="{T + H + 4}" class="axis"/>'
            )
            p.append(
                f'<text x="{_fmt(x)}" y="{T + H + 16}" class="tick" text-anchor="middle">'
                f"{escape(lab)}</text>"
            )
        p.append(f'<rect x="{L}" y="{T}" width="{W}" height="{H}" class="frame"/>')
        p.append(
            f'<text x="{L + W / 2:.1f}" y="{self.height - 6}" class="axis-label" '
            f'text-anchor="middle">{escape(xlabel)}</text>'
        )
        p.append(
            f'<text transform="translate(14,{T + H / 2:.1f}) rotate(-90)" '
            f'class="axis-label" text-anchor="middle">{escape(ylabel)}</text>'
        )

    def clip_id(self, fig_id: str) -> str:
        return f"clip-{fig_id}"

    def svg(self, fig_id: str, title: str, legend: Sequence[tuple[str, str]] = ()) -> str:
        """The finished ``<svg>`` (with a legend of (colour, name) pairs, top right)."""
        leg = []
        x = self.left + self.plot_w - 8
        for color, name in reversed(list(legend)):
            w = 7 * len(name) + 22
            x -= w
            leg.append(
                f'<rect x="{x:.0f}" y="{self.top + 6}" width="10" height="10" '
                f'fill="{color}"/><text x="{x + 14:.0f}" y="{self.top + 15}" '
                f'class="legend">{escape(name)}</text>'
            )
        clip = (
            f'<clipPath id="{self.clip_id(fig_id)}"><rect x="{self.left}" y="{self.top}" '
            f'width="{self.plot_w}" height="{self.plot_h}"/></clipPath>'
        )
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(fig_id)}" role="img" '
            f'viewBox="0 0 {self.width} {self.height}" width="{self.width}" '
            f'height="{self.height}"><title>{escape(title)}</title><defs>{clip}</defs>'
            + "".join(self.parts)
            + "".join(leg)
            + "</svg>"
        )


def _path(f: Frame, x: np.ndarray, y: np.ndarray) -> str:
    """SVG path data; NaN breaks the line."""
    px, py = f.px(x), f.py(y)
    out, pen = [], False
    for a, b in zip(px, py, strict=True):
        if not (math.isfinite(a) and math.isfinite(b)):
            pen = False
            continue
        out.append(f"{'L' if pen else 'M'}{a:.1f},{b:.1f}")
        pen = True
    return "".join(out)


@dataclass
class Line:
    """One series of a line chart."""

    x: np.ndarray
    y: np.ndarray
    name: str
    color: str = PALETTE[0]
    markers: bool = False
    dash: str = ""


@dataclass
class Span:
    """A shaded interval of x (e.g. a train, an exercise)."""

    a: float
    b: float
    color: str
    name: str = ""
    opacity: float = 0.18


@dataclass
class HLine:
    """A horizontal reference line (e.g. a threshold, a band edge)."""

    y: float
    name: str
    color: str = "#444444"
    dash: str = "6 4"


def line_chart(
    fig_id: str,
    title: str,
    lines: Sequence[Line],
    xlabel: str,
    ylabel: str,
    *,
    spans: Sequence[Span] = (),
    hlines: Sequence[HLine] = (),
    events: Sequence[tuple[float, str]] = (),
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    width: int = 760,
    height: int = 260,
    xticks: Sequence[float] | None = None,
    xtick_labels: Sequence[str] | None = None,
    x_offset: float = 0.0,
    event_color: str = "#B00020",
) -> str:
    """A line chart with shaded spans, horizontal reference lines and event ticks.

    ``x_offset`` is subtracted from x for the tick labels only (e.g. LSL times shown as s
    from the recording start, while the ``data-*`` attributes keep the LSL times).

    Each series is a ``<path class="series" data-name=... data-n=...>`` (``data-n``: the
    points given, before thinning); markers are ``<circle class="point" data-x data-y>``;
    spans are ``<rect class="span" data-a data-b>``; reference lines are ``<line
    class="ref" data-y>``; events are ``<line class="event" data-t>``.
    """
    xs = [np.asarray(s.x, float) for s in lines]
    ys = [np.asarray(s.y, float) for s in lines]
    x_range, y_range = _data_ranges(lines, xs, ys, spans, hlines, x_range, y_range)
    f = Frame(*x_range, *y_range, width=width, height=height)
    if xticks is None and x_offset:
        rel = nice_ticks(f.x0 - x_offset, f.x1 - x_offset, 8)
        xticks, xtick_labels = [v + x_offset for v in rel], [_label(v) for v in rel]
    f.axes(xlabel, ylabel, xticks, xtick_labels)
    clip = f'clip-path="url(#{f.clip_id(fig_id)})"'
    _draw_spans(f, spans, clip)
    _draw_ref_lines(f, hlines)
    _draw_events(f, events, clip, event_color)
    for s, x, y in zip(lines, xs, ys, strict=True):
        _draw_series(f, s, x, y, clip)
    legend = [(s.color, s.name) for s in lines if s.name]
    return f.svg(fig_id, title, legend)


def _data_ranges(
    lines: Sequence[Line],
    xs: list[np.ndarray],
    ys: list[np.ndarray],
    spans: Sequence[Span],
    hlines: Sequence[HLine],
    x_range: tuple[float, float] | None,
    y_range: tuple[float, float] | None,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The x and y ranges of a line chart: those given, else the data's, padded."""
    allx = np.concatenate([*xs, [sp.a for sp in spans], [sp.b for sp in spans], np.zeros(0)])
    ally = np.concatenate([*ys, [h.y for h in hlines], np.zeros(0)])
    allx, ally = allx[np.isfinite(allx)], ally[np.isfinite(ally)]
    if x_range is None:
        x_range = (float(allx.min()), float(allx.max())) if allx.size else (0.0, 1.0)
        if any(s.markers for s in lines):  # a point on the frame would be cut in half
            pad = 0.04 * (x_range[1] - x_range[0]) or 0.5
            x_range = (x_range[0] - pad, x_range[1] + pad)
    if y_range is None:
        if ally.size:
            lo, hi = float(ally.min()), float(ally.max())
            pad = 0.06 * (hi - lo) if hi > lo else 1.0
            y_range = (lo - pad, hi + pad)
        else:
            y_range = (0.0, 1.0)
    return x_range, y_range


def _draw_spans(f: Frame, spans: Sequence[Span], clip: str) -> None:
    """Shaded ``<rect class="span">`` intervals, cut to the frame."""
    for sp in spans:
        a, b = float(f.px(max(sp.a, f.x0))), float(f.px(min(sp.b, f.x1)))
        f.parts.append(
            f'<rect class="span" data-a="{_d(sp.a)}" data-b="{_d(sp.b)}" '
            f'data-name="{escape(sp.name)}" x="{a:.1f}" y="{f.top}" width="{max(b - a, 0.8):.1f}" '
            f'height="{f.plot_h}" fill="{sp.color}" fill-opacity="{sp.opacity}" {clip}/>'
        )


def _draw_ref_lines(f: Frame, hlines: Sequence[HLine]) -> None:
    """Labelled horizontal ``<line class="ref">`` reference lines."""
    for h in hlines:
        y = float(f.py(h.y))
        f.parts.append(
            f'<line class="ref" data-y="{_d(h.y)}" data-name="{escape(h.name)}" x1="{f.left}" '
            f'x2="{f.left + f.plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{h.color}" '
            f'stroke-dasharray="{h.dash}"/><text x="{f.left + 4}" y="{y - 3:.1f}" '
            f'class="ref-label">{escape(h.name)}</text>'
        )


def _draw_events(
    f: Frame, events: Sequence[tuple[float, str]], clip: str, event_color: str
) -> None:
    """Vertical ``<line class="event">`` ticks with the event's name as tooltip."""
    for t, name in events:
        x = float(f.px(t))
        f.parts.append(
            f'<line class="event" data-t="{_d(t)}" data-name="{escape(name)}" x1="{x:.1f}" '
            f'x2="{x:.1f}" y1="{f.top}" y2="{f.top + f.plot_h}" stroke="{event_color}" '
            f'stroke-width="1.2" {clip}><title>{escape(name)}</title></line>'
        )


def _draw_series(f: Frame, s: Line, x: np.ndarray, y: np.ndarray, clip: str) -> None:
    """One series: its thinned ``<path class="series">`` and, if asked, every point."""
    tx, ty = thin(x, y, f.plot_w)
    dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
    f.parts.append(
        f'<path class="series" data-name="{escape(s.name)}" data-n="{x.size}" '
        f'd="{_path(f, tx, ty)}" fill="none" stroke="{s.color}" stroke-width="1.6"{dash} '
        f"{clip}/>"
    )
    if not s.markers:
        return
    # markers show every point given (the path is thinned to the plot's width)
    for a, b in zip(x, y, strict=True):
        if math.isfinite(a) and math.isfinite(b):
            f.parts.append(
                f'<circle class="point" data-name="{escape(s.name)}" data-x="{_d(a)}" '
                f'data-y="{_d(b)}" cx="{float(f.px(a)):.1f}" cy="{float(f.py(b)):.1f}" '
                f'r="3.5" fill="{s.color}"><title>{escape(s.name)}: {b:.4g}</title>'
                "</circle>"
            )


def bar_chart(
    fig_id: str,
    title: str,
    categories: Sequence[str],
    groups: Sequence[tuple[str, Sequence[float | None]]],
    ylabel: str,
    *,
    xlabel: str = "",
    y_range: tuple[float, float] | None = None,
    hlines: Sequence[HLine] = (),
    width: int = 760,
    height: int = 240,
) -> str:
    """Grouped bars: one group of bars per category, one bar per (name, values) series.

    Each bar is a ``<rect class="bar" data-category data-name data-value>``; a missing
    value (None) draws no bar and is noted in the bar's place.
    """
    vals = [v for _, vs in groups for v in vs if v is not None and math.isfinite(v)]
    if y_range is None:
        lo = min([0.0, *vals])
        hi = max([0.0, *vals, *(h.y for h in hlines)])
        y_range = (lo, hi * 1.1 if hi > 0 else 1.0)
    n = max(len(categories), 1)
    f = Frame(-0.5, n - 0.5, *y_range, width=width, height=height)
    f.axes(xlabel, ylabel, list(range(len(categories))), [str(c) for c in categories])
    slot = f.plot_w / n
    bw = 0.8 * slot / max(len(groups), 1)
    y_zero = float(f.py(max(y_range[0], 0.0)))
    for k, (name, values) in enumerate(groups):
        color = PALETTE[k % len(PALETTE)]
        for i, (cat, v) in enumerate(zip(categories, values, strict=True)):
            x = float(f.px(i)) - 0.4 * slot + k * bw
            if v is None or not math.isfinite(v):
                f.parts.append(
                    f'<text x="{x + bw / 2:.1f}" y="{y_zero - 4:.1f}" class="tick" '
                    'text-anchor="middle">–</text>'
                )
                continue
            y = float(f.py(v))
            top, h = min(y, y_zero), abs(y_zero - y)
            f.parts.append(
                f'<rect class="bar" data-category="{escape(str(cat))}" '
                f'data-name="{escape(name)}" data-value="{_d(v)}" x="{x:.1f}" y="{top:.1f}" '
                f'width="{bw * 0.92:.1f}" height="{max(h, 0.5):.1f}" fill="{color}">'
                f"<title>{escape(str(cat))} {escape(name)}: {v:.4g}</title></rect>"
            )
    for h in hlines:
        y = float(f.py(h.y))
        f.parts.append(
            f'<line class="ref" data-y="{_d(h.y)}" data-name="{escape(h.name)}" x1="{f.left}" '
            f'x2="{f.left + f.plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{h.color}" '
            f'stroke-dasharray="{h.dash}"/>'
        )
    legend = [(PALETTE[k % len(PALETTE)], name) for k, (name, _) in enumerate(groups)]
    return f.svg(fig_id, title, legend if len(groups) > 1 else ())


def polar_histogram(
    fig_id: str,
    title: str,
    counts: Sequence[int],
    *,
    targets_deg: Sequence[float] = (),
    mean_deg: float | None = None,
    resultant: float | None = None,
    size: int = 320,
) -> str:
    """A polar histogram of phases: ``len(counts)`` equal bins from -180° (bin edges at
    -180 + k * 360 / n), 0° to the right, angles counter-clockwise; the radius of a
    wedge is proportional to its count. Wedges are ``<path class="wedge" data-lo-deg
    data-count>``; each target is a ``<line class="target" data-deg>``; the mean
    direction, when given, a ``<line class="mean" data-deg data-r>`` of length R.
    """
    n = len(counts)
    c = size / 2
    r_max = size / 2 - 34
    top = max([1, *counts])
    parts = [f'<circle cx="{c}" cy="{c}" r="{r_max}" class="frame"/>']
    for frac in (0.5, 1.0):
        parts.append(f'<circle cx="{c}" cy="{c}" r="{r_max * frac:.1f}" class="grid" fill="none"/>')
    for deg, lab in ((0, "0°"), (90, "90°"), (180, "±180°"), (-90, "−90°")):
        a = math.radians(deg)
        x, y = c + (r_max + 16) * math.cos(a), c - (r_max + 16) * math.sin(a)
        parts.append(
            f'<line x1="{c}" y1="{c}" x2="{c + r_max * math.cos(a):.1f}" '
            f'y2="{c - r_max * math.sin(a):.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{y + 4:.1f}" class="tick" text-anchor="middle">{lab}</text>'
        )
    width = 360.0 / max(n, 1)
    for k, cnt in enumerate(counts):
        lo = -180.0 + k * width
        r = r_max * cnt / top
        a0, a1 = math.radians(lo), math.radians(lo + width)
        path = (
            f"M{c},{c} L{c + r * math.cos(a0):.2f},{c - r * math.sin(a0):.2f} "
            f"A{r:.2f},{r:.2f} 0 0 0 {c + r * math.cos(a1):.2f},{c - r * math.sin(a1):.2f} Z"
        )
        parts.append(
            f'<path class="wedge" data-lo-deg="{_d(lo)}" data-count="{int(cnt)}" d="{path}" '
            f'fill="{PALETTE[0]}" fill-opacity="0.75" stroke="#fff">'
            f"<title>{lo:g}° to {lo + width:g}°: {int(cnt)}</title></path>"
        )
    for t in targets_deg:
        a = math.radians(t)
        parts.append(
            f'<line class="target" data-deg="{_d(t)}" x1="{c}" y1="{c}" '
            f'x2="{c + (r_max + 6) * math.cos(a):.1f}" y2="{c - (r_max + 6) * math.sin(a):.1f}" '
            f'stroke="{PALETTE[1]}" stroke-width="2.5" stroke-dasharray="5 3"/>'
        )
    if mean_deg is not None and resultant is not None and math.isfinite(mean_deg):
        a = math.radians(mean_deg)
        r = r_max * resultant
        parts.append(
            f'<line class="mean" data-deg="{_d(mean_deg)}" data-r="{_d(resultant)}" x1="{c}" '
            f'y1="{c}" x2="{c + r * math.cos(a):.1f}" y2="{c - r * math.sin(a):.1f}" '
            f'stroke="{PALETTE[7]}" stroke-width="3"/>'
        )
    parts.append(f'<text x="6" y="14" class="legend">max {top} per bin</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(fig_id)}" role="img" '
        f'viewBox="0 0 {size} {size}" width="{size}" height="{size}"><title>{escape(title)}'
        "</title>" + "".join(parts) + "</svg>"
    )
