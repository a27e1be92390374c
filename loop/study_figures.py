"""The group figures of a study, as SVG files and one self-contained HTML page.

Drawn as plain SVG text, so a study needs neither the GUI extra nor a display: a study
often runs on a server or a cluster node, and the figures must open anywhere (a
browser, a paper's draft). The page ``study.html`` embeds every figure and the session
table's status column; ``figures.json`` holds the numbers each figure shows, so what a
figure says can be checked against the tables.

- ``phase_by_participant.svg``: per participant, every delivered pulse's phase error
  (true phase minus its target where the truth was recorded, the estimate otherwise, as
  the live window shows it), with the circular mean and SD of the participant's pulses
  (:func:`stimloop.dsp.circular.phase_error_stats`).
- ``hbc_ranking.svg``: per participant and session, the sites by rank with their mean
  HBC (ln bpm²), the threshold, passing sites and the chosen one.
- ``habituation.svg``: per participant, an exercise measure by exercise number, one line
  per session (the first of ``arousal_peak``, ``scl_peak_change_us``,
  ``scr_amp_sum_us``, ``hr_peak_change_bpm`` that any exercise has).
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from stimloop.dsp.circular import phase_error_stats
from stimloop.loop.study_tables import replace_file

HABITUATION_MEASURES = ("arousal_peak", "scl_peak_change_us", "scr_amp_sum_us",
                        "hr_peak_change_bpm")  # fmt: skip
_W = 760
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
_FONT = 'font-family="sans-serif" font-size="12"'


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _svg(height: int, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
            f'viewBox="0 0 {_W} {height}" {_FONT}><title>{_esc(title)}</title>'
            f'<rect width="{_W}" height="{height}" fill="white"/>'
            f'<text x="10" y="20" font-size="14" font-weight="bold">{_esc(title)}</text>'
            + "".join(body) + "</svg>")  # fmt: skip


def _empty(title: str, why: str) -> str:
    return _svg(70, [f'<text x="10" y="48" fill="#555">{_esc(why)}</text>'], title)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    return [float(v) for v in np.arange(math.ceil(lo / step) * step, hi + step * 1e-9, step)]


def _x_axis(x0: int, x1: int, y: int, lo: float, hi: float, label: str,
            ticks: list[float]) -> list[str]:  # fmt: skip
    def sx(v: float) -> float:
        return x0 + (v - lo) / (hi - lo) * (x1 - x0)

    out = [f'<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="black"/>']
    for t in ticks:
        out.append(f'<line x1="{sx(t):.1f}" y1="{y}" x2="{sx(t):.1f}" y2="{y + 4}" '
                   f'stroke="black"/><text x="{sx(t):.1f}" y="{y + 16}" '
                   f'text-anchor="middle">{t:g}</text>')  # fmt: skip
    out.append(f'<text x="{(x0 + x1) / 2:.0f}" y="{y + 32}" text-anchor="middle">'
               f"{_esc(label)}</text>")  # fmt: skip
    return out


def phase_figure(pulses: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Phase error of the delivered pulses per participant; the figure and its numbers."""
    title = "Phase at the pulses minus each pulse's target, per participant"
    by: dict[str, list[float]] = defaultdict(list)
    truth: dict[str, int] = defaultdict(int)
    for r in pulses:
        if r.get("outcome") != "fired":
            continue
        err = r["error_true_deg"] if r.get("error_true_deg") is not None else r.get("error_est_deg")
        if err is None:
            continue
        by[r["participant"]].append(float(err))
        truth[r["participant"]] += r.get("error_true_deg") is not None
    if not by:
        return _empty(title, "no delivered pulse with a phase in these sessions"), {}
    names = sorted(by)
    row_h, top, left, right = 34, 40, 120, _W - 200
    height = top + row_h * len(names) + 50
    body = []
    stats = {}

    def sx(v: float) -> float:
        return left + (v + 180.0) / 360.0 * (right - left)

    bottom = top + row_h * len(names)
    body.append(f'<line x1="{sx(0):.1f}" y1="{top}" x2="{sx(0):.1f}" y2="{bottom}" '
                'stroke="#999" stroke-dasharray="4 3"/>')  # fmt: skip
    for i, name in enumerate(names):
        errs = np.array(by[name])
        s = phase_error_stats(np.radians(errs), 0.0)
        stats[name] = {**s, "true": truth[name]}
        yc = top + row_h * i + row_h / 2
        body.append(f'<text x="{left - 8}" y="{yc + 4:.1f}" text-anchor="end">'
                    f"{_esc(name)}</text>")  # fmt: skip
        # Deterministic jitter, so the same tables always draw the same figure.
        jitter = (np.arange(errs.size) * 0.618034 % 1.0 - 0.5) * row_h * 0.6
        for e, j in zip(errs, jitter, strict=True):
            body.append(f'<circle cx="{sx(e):.1f}" cy="{yc + j:.1f}" r="2.2" '
                        f'fill="{_COLOURS[0]}" fill-opacity="0.55"/>')  # fmt: skip
        if s["n"] and math.isfinite(s["mean_deg"]):
            lo, hi = s["mean_deg"] - s["sd_deg"], s["mean_deg"] + s["sd_deg"]
            body.append(f'<line x1="{sx(max(lo, -180)):.1f}" y1="{yc:.1f}" '
                        f'x2="{sx(min(hi, 180)):.1f}" y2="{yc:.1f}" stroke="black" '
                        f'stroke-width="2"/><rect x="{sx(s["mean_deg"]) - 3:.1f}" '
                        f'y="{yc - 7:.1f}" width="6" height="14" fill="black"/>')  # fmt: skip
            body.append(f'<text x="{right + 10}" y="{yc + 4:.1f}">n {s["n"]}, mean '
                        f'{s["mean_deg"]:.1f}°, SD {s["sd_deg"]:.1f}°</text>')  # fmt: skip
    body += _x_axis(left, right, top + row_h * len(names), -180, 180,
                    "phase error, degrees (0 = on target)", [-180, -90, 0, 90, 180])  # fmt: skip
    return _svg(height, body, title), stats


def hbc_figure(sites: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Site rankings by mean HBC, one block per participant and session."""
    title = "HBC site ranking per participant and session (mean HBC, ln bpm²)"
    if not sites:
        return _empty(title, "no HBC cycles in these recordings: sessions record them as "
                      "'hbc_cycle' decisions once the HBC protocol runs"), {}  # fmt: skip
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in sites:
        groups[(r["participant"], r["session"], r["file"])].append(r)
    vals = [r["mean_hbc"] for r in sites if r.get("mean_hbc") is not None]
    thr = [r["threshold"] for r in sites if r.get("threshold") is not None]
    lo = min([0.0, *vals, *thr])
    hi = max([1.0, *vals, *thr])
    left, right, bar_h, top = 190, _W - 40, 14, 40
    n_rows = sum(len(v) + 1 for v in groups.values())
    height = top + n_rows * (bar_h + 4) + 50

    def sx(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (right - left)

    body, y, numbers = [], top, {}
    for (part, ses, f), rows in sorted(groups.items()):
        rows = sorted(rows, key=lambda r: r["rank"])
        body.append(f'<text x="10" y="{y + 11}" font-weight="bold">sub-{_esc(part)} '
                    f"ses-{_esc(ses)}</text>")  # fmt: skip
        y += bar_h + 4
        numbers[f] = [[r["site"], r["mean_hbc"], bool(r["passes"]), bool(r["best"])] for r in rows]
        for r in rows:
            v = r.get("mean_hbc")
            colour = _COLOURS[1] if r["best"] else (_COLOURS[2] if r["passes"] else "#999")
            label = f"{r['rank']}. {r['site']}" + (" (chosen)" if r["best"] else "")
            body.append(f'<text x="{left - 6}" y="{y + 11}" text-anchor="end">{_esc(label)}</text>')
            if v is not None:
                x0, x1 = sorted((sx(0.0), sx(v)))
                body.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" '
                            f'height="{bar_h}" fill="{colour}"/>')  # fmt: skip
            y += bar_h + 4
    for t in sorted(set(thr)):
        body.append(f'<line x1="{sx(t):.1f}" y1="{top}" x2="{sx(t):.1f}" y2="{y}" '
                     f'stroke="black" stroke-dasharray="5 3"/><text x="{sx(t) + 3:.1f}" '
                     f'y="{top - 4}">threshold {t:g}</text>')  # fmt: skip
    body += _x_axis(left, right, y, lo, hi, "mean HBC over the stimulation cycles, ln(bpm²)",
                    _ticks(lo, hi))  # fmt: skip
    return _svg(height, body, title), numbers


def habituation_figure(exercises: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """An exercise measure by exercise number, per participant, one line per session."""
    measure = next((m for m in HABITUATION_MEASURES
                    if any(r.get(m) is not None for r in exercises)), None)  # fmt: skip
    title = f"Habituation: {measure or 'exercise measure'} by exercise, per participant"
    if measure is None:
        return _empty(title, "no scored exposure exercise in these recordings: sessions "
                      "hold them once exposure markers are recorded"), {}  # fmt: skip
    by: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in exercises:
        if r.get(measure) is not None:
            by[r["participant"]][f"{r['session']} ({r['file']})"].append(
                (int(r["number"]), float(r[measure]))
            )
    vals = [v for p in by.values() for pts in p.values() for _, v in pts]
    nmax = max(n for p in by.values() for pts in p.values() for n, _ in pts)
    lo, hi = min(vals), max(vals)
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    panel_h, top, left, right = 160, 40, 70, _W - 230
    height = top + (panel_h + 50) * len(by) + 10
    body, numbers = [], {}
    for i, (part, sessions) in enumerate(sorted(by.items())):
        y0 = top + i * (panel_h + 50)

        def sx(n: float) -> float:
            return left + (n - 1) / max(nmax - 1, 1) * (right - left)

        def sy(v: float, y0: int = y0) -> float:
            return y0 + panel_h - (v - lo) / (hi - lo) * panel_h

        body.append(f'<text x="{left}" y="{y0 - 4}" font-weight="bold">sub-{_esc(part)}</text>'
                    f'<line x1="{left}" y1="{y0}" x2="{left}" y2="{y0 + panel_h}" '
                    f'stroke="black"/>')  # fmt: skip
        for t in _ticks(lo, hi, 4):
            body.append(f'<text x="{left - 5}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
        numbers[part] = {}
        for k, (ses, pts) in enumerate(sorted(sessions.items())):
            pts = sorted(pts)
            numbers[part][ses] = pts
            c = _COLOURS[k % len(_COLOURS)]
            path = " ".join(f"{sx(n):.1f},{sy(v):.1f}" for n, v in pts)
            body.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
            body += [f'<circle cx="{sx(n):.1f}" cy="{sy(v):.1f}" r="3" fill="{c}"/>'
                     for n, v in pts]  # fmt: skip
            body.append(f'<text x="{right + 10}" y="{y0 + 14 + 16 * k}" fill="{c}">'
                        f"ses-{_esc(ses)}</text>")  # fmt: skip
        body += _x_axis(left, right, y0 + panel_h, 1, max(nmax, 2), "exercise number",
                        list(range(1, nmax + 1)))  # fmt: skip
    return _svg(height, body, title), {"measure": measure, "values": numbers}


def write_figures(tables: dict[str, list[dict[str, Any]]], out: str | Path
                  ) -> tuple[dict[str, Any], dict[str, str]]:  # fmt: skip
    """Draw the group figures into ``out/figures`` and ``out/study.html``.

    Returns
    -------
    numbers : dict
        Per figure, what it shows (also written to ``figures.json``).
    files : dict of str to str
        Name -> path of every file written.
    """
    out = Path(out)
    (out / "figures").mkdir(exist_ok=True)
    drawn = {
        "phase_by_participant": phase_figure(tables["pulse"]),
        "hbc_ranking": hbc_figure(tables["site"]),
        "habituation": habituation_figure(tables["exercise"]),
    }
    files = {}
    for name, (svg, _) in drawn.items():
        path = out / "figures" / f"{name}.svg"
        replace_file(path, lambda tmp, svg=svg: tmp.write_text(svg, encoding="utf-8"))
        files[f"figures/{name}.svg"] = str(path)
    numbers = {name: nums for name, (_, nums) in drawn.items()}
    text = json.dumps(numbers, indent=1, default=float)
    replace_file(out / "figures.json", lambda tmp: tmp.write_text(text))
    files["figures.json"] = str(out / "figures.json")
    status = "".join(
        f"<tr><td>{_esc(r['file'])}</td><td>{_esc(r['participant'])}</td>"
        f"<td>{_esc(r['session'])}</td><td>{_esc(r['status'])}</td>"
        f"<td>{_esc(r.get('error') or r.get('damage') or '')}</td></tr>"
        for r in tables["session"]
    )
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>stimloop study</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;"
            "text-align:left}</style></head><body><h1>stimloop study</h1>"
            + "".join(f"<figure>{svg}</figure>" for svg, _ in drawn.values())
            + "<h2>Sessions</h2><table><tr><th>file</th><th>participant</th>"
            "<th>session</th><th>status</th><th>error or damage</th></tr>"
            f"{status}</table></body></html>")  # fmt: skip
    replace_file(out / "study.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))
    files["study.html"] = str(out / "study.html")
    return numbers, files
