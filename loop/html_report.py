"""``stimloop analyze SESSION.xdf --report out.html``: one self-contained HTML report.

One file, nothing to fetch: inline SVG charts (:mod:`stimloop.loop.svg`), a little inline
CSS, no script. Every number the page shows comes from the JSON report of the same file
(:func:`~stimloop.loop.report.session_report`, embedded in the page as
``<script type="application/json" id="report-json">``, data only): tables and captions
print its values, and the charts draw them (bars, points, wedges and reference lines
carry them in ``data-*`` attributes). Only the time series (HR, EDA, the arousal index)
are drawn from the recorded arrays the report summarises.

Sections, depending on the session:

- ``session``, ``streams``, ``health``, ``events``: always;
- ``hbc``: the HR timeline with the trains shaded, HBC by intensity per site with the
  threshold, the ranking and the chosen target (and the virtual subject's true best
  site), cardiac stop alerts;
- ``phase-locked``: the polar histogram of delivered phases (true phase where the truth
  was recorded) with the target, refusals by reason, HR and EDA over time;
- ``exposure``: the per-exercise table, the habituation curve, expectancy against
  outcome, the arousal index over time with the band edges, evoked SCRs per cue code;
- ``physiology``: HR and EDA over time, for sessions that are not phase-locked;
- ``comparison``: between sessions, when several recordings are reported together.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from stimloop.loop.errors import SessionError
from stimloop.loop.report import SessionAnalysis, report_json
from stimloop.loop.svg import PALETTE, HLine, Line, Span, bar_chart, line_chart, polar_histogram

#: Pulses drawn as lines on the HR trace up to this many (more would hide the trace).
MAX_EVENT_LINES = 500

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:980px;
padding:16px 24px;color:#1b1b1b}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #d6d6d6;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.l,th.l{text-align:left}
tr.chosen td{background:#fff4d6;font-weight:600}
figure{margin:10px 0 18px}figcaption{font-size:13px;color:#333;max-width:760px}
.warn{color:#9b1c1c;font-weight:600}.ok{color:#116329}.muted{color:#666}
svg{max-width:100%;height:auto;font-family:system-ui,sans-serif}
svg .plot-bg{fill:#fff}svg .frame{fill:none;stroke:#888}svg .grid{stroke:#e6e6e6}
svg .axis{stroke:#888}svg .tick{font-size:11px;fill:#444}svg .axis-label{font-size:12px;fill:#222}
svg .legend{font-size:11px;fill:#222}svg .ref-label{font-size:10px;fill:#444}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}
"""


# ---------------------------------------------------------------------------- progress
class TextProgress:
    """A text progress bar on a stream (stderr by default), one line redrawn in place.

    Call it with (step, fraction done 0-1). On a terminal the line is redrawn with a
    carriage return; elsewhere (a log, a pipe) each step gets its own line.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._t0 = time.monotonic()
        self._last = ""

    def __call__(self, step: str, done: float) -> None:
        done = min(max(float(done), 0.0), 1.0)
        n = round(done * self.width)
        line = (
            f"[{'#' * n}{'-' * (self.width - n)}] {100 * done:3.0f} %  {step}  "
            f"({time.monotonic() - self._t0:.1f} s)"
        )
        if self.tty:
            pad = max(0, len(self._last) - len(line))
            self.stream.write("\r" + line + " " * pad + ("\n" if done >= 1.0 else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last = line


def scaled(progress, lo: float, hi: float):
    """A progress callback mapping 0-1 onto ``[lo, hi]`` of ``progress`` (for one file of
    several); None stays None."""
    if progress is None:
        return None
    return lambda step, done: progress(step, lo + (hi - lo) * done)


# ---------------------------------------------------------------------------- helpers
def _f(v: Any, fmt: str = ".3g") -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    try:
        x = float(v)
    except (TypeError, ValueError):
        return escape(str(v))
    return "–" if not math.isfinite(x) else format(x, fmt)


def _table(
    table_id: str,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    left: int = 1,
    classes: Sequence[str] | None = None,
) -> str:
    """An HTML table; the first ``left`` columns are left-aligned text, cells are
    pre-formatted strings (escaped here)."""
    head = "".join(
        f'<th class="{"l" if i < left else ""}">{escape(h)}</th>' for i, h in enumerate(header)
    )
    body = []
    for k, r in enumerate(rows):
        cls = f' class="{classes[k]}"' if classes and classes[k] else ""
        cells = "".join(
            f'<td class="{"l" if i < left else ""}">{escape(str(c))}</td>' for i, c in enumerate(r)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return (
        f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(body)
        + "</tbody></table>"
    )


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def _start_t(a: SessionAnalysis) -> float:
    return float(a.report["session"]["start_t"] or 0.0)


class _Ids:
    """Element ids, prefixed per session when several are in one page."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, name: str) -> str:
        return f"{self.prefix}{name}"


# ---------------------------------------------------------------------------- sections
def _session_section(a: SessionAnalysis, ids: _Ids) -> str:
    r = a.report
    s = r["session"]
    proto = (s["config"].get("protocol") or {}).get("kind") or "none (monitoring)"
    rows = [
        ("file", r["file"]),
        ("session", s["name"]),
        ("prefix", s["prefix"]),
        ("protocol", proto),
        ("recording start (LSL s)", _f(s["start_t"], ".3f")),
        ("recorded span (s)", _f(s["span_s"], ".1f")),
        ("file damage", r["damage"] or "none"),
        (
            "ground truth",
            ", ".join(f"{k}: {v}" for k, v in r["truth_source_ids"].items()) or "none recorded",
        ),
    ]
    out = [
        f'<section id="{ids("session")}"><h2>Session</h2>',
        _table(ids("session-table"), ["", ""], rows, left=2),
    ]
    if r["damage"]:
        out.append(
            f'<p class="warn">The file is damaged: {escape(r["damage"])}; '
            "everything before the damage is reported.</p>"
        )
    out.append(
        "<details><summary>session config</summary><pre>"
        + escape(json.dumps(s["config"], indent=2, default=str))
        + "</pre></details>"
    )
    out.append("</section>")
    return "".join(out)


def _streams_section(a: SessionAnalysis, ids: _Ids) -> str:
    rows = [
        (
            sid,
            v["type"],
            v["samples"],
            _f(v["duration_s"], ".1f"),
            _f(v["effective_rate_hz"], ".2f"),
        )
        for sid, v in a.report["streams"].items()
    ]
    return (
        f'<section id="{ids("streams")}"><h2>Streams</h2>'
        + _table(
            ids("streams-table"),
            ["source_id", "type", "samples", "span s", "rate Hz"],
            rows,
            left=2,
        )
        + "</section>"
    )


def _health_section(a: SessionAnalysis, ids: _Ids) -> str:
    r = a.report
    out = [f'<section id="{ids("health")}"><h2>Health</h2>']
    health = r.get("health")
    if isinstance(health, dict) and health:
        keys = sorted({k for v in health.values() if isinstance(v, dict) for k in v})
        rows = [
            (role, *(_f(v.get(k)) if isinstance(v, dict) else "" for k in keys))
            for role, v in health.items()
        ]
        out.append("<h3>input streams (the session's end-of-run figures)</h3>")
        out.append(_table(ids("health-table"), ["stream", *keys], rows))
    else:
        out.append('<p class="muted">No end-of-run stream health was recorded.</p>')
    eng = r.get("engine")
    if isinstance(eng, dict) and eng:
        rows = [
            (k, _f(v) if not isinstance(v, dict | list) else json.dumps(v, default=str))
            for k, v in eng.items()
        ]
        out.append("<h3>engine</h3>" + _table(ids("engine-table"), ["", ""], rows, left=2))
    out.append("</section>")
    return "".join(out)


def _events_section(a: SessionAnalysis, ids: _Ids) -> str:
    r = a.report
    out = [f'<section id="{ids("events")}"><h2>Events</h2>']
    p = r["pulses"]
    what = {"hbc": "trains"}.get(p.get("kind"), "pulses")
    out.append(f"<p>{what}: {p['delivered']} delivered, {p['refused']} refused.</p>")
    if r["events"]:
        out.append(_table(ids("events-table"), ["event", "count"], list(r["events"].items())))
    if r["user_markers"]:
        out.append(
            "<h3>user markers</h3><ul>"
            + "".join(f"<li>{escape(str(m))}</li>" for m in r["user_markers"])
            + "</ul>"
        )
    truth = r.get("truth") or {}
    rows = []
    if h := truth.get("heart"):
        rows.append(
            (
                "beats",
                h["beats_detected"],
                h["beats_true"],
                h["true_positives"],
                h["false_positives"],
                h["false_negatives"],
                _f(h["f1"], ".4f"),
            )
        )
    if e := truth.get("eda"):
        rows.append(
            (
                "SCRs",
                e["scr_detected"],
                e["scr_true"],
                e["tp"],
                e["fp"],
                e["fn"],
                _f(e["f1"], ".3f"),
            )
        )
    if rows:
        out.append("<h3>scores against the recorded truth</h3>")
        out.append(
            _table(
                ids("truth-table"),
                ["", "detected", "true", "matched", "false", "missed", "F1"],
                rows,
            )
        )
    out.append("</section>")
    return "".join(out)


def _hr_eda_figures(a: SessionAnalysis, ids: _Ids, pulses: bool, hr: bool = True) -> str:
    rec, r = a.rec, a.report
    t0 = _start_t(a)
    out = []
    hr_t, bpm = rec.series("heart_hr", 0)
    if hr and hr_t.size and (h := r.get("heart")):
        ev = [(float(t), "pulse") for t in rec.pulse_t] if pulses else []
        if len(ev) > MAX_EVENT_LINES:  # thousands of lines would hide the trace
            ev = []
        svg = line_chart(
            ids("fig-hr"),
            "heart rate",
            [Line(hr_t, bpm, "HR")],
            "time (s from the recording start)",
            "HR (bpm)",
            events=ev,
            x_offset=t0,
        )
        cap = (
            f"Heart rate (the heart stage's {rec.stream('heart_hr').rate_hz:g} Hz series): "
            f"{h['beats']} beats, mean {_f(h['hr_mean_bpm'], '.1f')} bpm (range "
            f"{_f(h['hr_min_bpm'], '.1f')}–{_f(h['hr_max_bpm'], '.1f')}), valid "
            f"{_f(100 * h['valid_fraction'], '.0f')} %"
            + (
                "; red lines: delivered pulses."
                if ev
                else f"; the {rec.pulse_t.size} pulses are not drawn (more than {MAX_EVENT_LINES})."
                if pulses and rec.pulse_t.size
                else "."
            )
        )
        out.append(_figure(svg, cap))
    eda_t, scl = rec.series("eda_level", 0)
    if eda_t.size and (e := r.get("eda")):
        _, phasic = rec.series("eda_level", 1)
        scr = rec.scrs()["onset_t"]
        svg = line_chart(
            ids("fig-eda"),
            "skin conductance",
            [
                Line(eda_t, scl + phasic, "SC (SCL + phasic)"),
                Line(eda_t, scl, "SCL", PALETTE[2], dash="4 3"),
            ],
            "time (s from the recording start)",
            "µS",
            events=[(float(t), "SCR onset") for t in scr] if scr.size <= MAX_EVENT_LINES else [],
            event_color="#B9A3C9",
            x_offset=t0,
        )
        cap = (
            f"Skin conductance: SCL median {_f(e['scl_median_us'], '.2f')} µS, "
            f"{e['scr_count']} SCRs ({_f(e['scr_per_min'], '.1f')}/min"
            + ("; lilac lines: their onsets)." if scr.size <= MAX_EVENT_LINES else ").")
        )
        out.append(_figure(svg, cap))
    return "".join(out)


def _hbc_section(a: SessionAnalysis, ids: _Ids) -> str:
    h = a.report["hbc"]
    out = [
        f'<section id="{ids("hbc")}"><h2>Heart-brain coupling</h2>',
        f"<p>Sites in order {escape(', '.join(h['order']))} (order seed "
        f"{escape(str(h['order_seed']))}), intensities in {escape(str(h['unit']))}.</p>",
        _hbc_hr_figure(a, ids),
        _hbc_intensity_figure(h, ids),
        *_hbc_ranking(h, ids),
        *_hbc_target(h, ids),
        *_hbc_stops(h, ids),
    ]
    if h["refused_trains"]:
        out.append(f"<p class='warn'>{len(h['refused_trains'])} train(s) refused by the gate.</p>")
    if cut := h.get("cut_short_trains"):
        out.append(f"<p class='warn'>{len(cut)} train(s) cut short; their cycles are not "
                   "scored.</p>")  # fmt: skip
    out.append("</section>")
    return "".join(out)


def _hbc_hr_figure(a: SessionAnalysis, ids: _Ids) -> str:
    """The HR timeline with the trains of the scored cycles and the cardiac stops."""
    rec, h = a.rec, a.report["hbc"]
    t0 = _start_t(a)
    train_s = float((a.report["session"]["config"].get("protocol") or {}).get("train_s", 5.0))
    hr_t, hr = rec.series("heart_hr", 0)
    spans = [
        Span(c["onset_s"], c["onset_s"] + train_s, PALETTE[1], f"{c['site']} {c['intensity']:g}")
        for c in h["cycles"]
        if c["index"] > 0
    ]
    stops = [
        (float(s["t"]), f"cardiac stop: {s.get('rule')}")
        for s in h["stops"]
        if s.get("t") is not None
    ]
    svg = line_chart(
        ids("fig-hbc-hr"),
        "heart rate with the trains",
        [Line(hr_t, hr, "HR")],
        "time (s from the recording start)",
        "HR (bpm)",
        spans=spans,
        events=stops,
        x_offset=t0,
    )
    return _figure(
        svg,
        f"HR during the localisation; shaded: the {len(spans)} trains "
        f"({train_s:g} s each) of the {len(h['cycles'])} scored cycles"
        + (f"; red: {len(stops)} cardiac stop(s)." if stops else "."),
    )


def _hbc_intensity_figure(h: dict[str, Any], ids: _Ids) -> str:
    """HBC by intensity, one line per site, with the coupling threshold."""
    lines = [
        Line(
            np.array(s["intensities"], float),
            np.array([np.nan if v is None else v for v in s["hbc"]], float),
            s["site"],
            PALETTE[k % len(PALETTE)],
            markers=True,
        )
        for k, s in enumerate(h["localisation"]["sites"])
    ]
    thr = h.get("threshold")
    svg = line_chart(
        ids("fig-hbc-intensity"),
        "HBC by intensity per site",
        lines,
        f"intensity ({h['unit']})",
        "HBC (ln power)",
        hlines=[HLine(thr, f"threshold {thr:g}")] if thr is not None else [],
    )
    return _figure(
        svg,
        "Heart-brain coupling of each cycle by intensity, per site"
        + (f"; dashed: the coupling threshold {thr:g}." if thr is not None else "."),
    )


def _hbc_ranking(h: dict[str, Any], ids: _Ids) -> list[str]:
    """The ranking table, the chosen site marked."""
    loc = h["localisation"]
    rows, classes = [], []
    for k, s in enumerate(loc["sites"], start=1):
        rows.append(
            (
                k,
                s["site"],
                s["n_above"],
                _f(s["mean_hbc"], ".3f"),
                _f(s["slope"], ".4f"),
                "yes" if s["passes"] else "no",
            )
        )
        classes.append("chosen" if s["site"] == loc["best_site"] else "")
    return [
        "<h3>ranking</h3>",
        _table(
            ids("hbc-ranking"),
            ["rank", "site", "n above", "mean HBC", "slope", "passes"],
            rows,
            left=0,
            classes=classes,
        ),
    ]


def _hbc_target(h: dict[str, Any], ids: _Ids) -> list[str]:
    """The chosen target, the virtual subject's true best site, and live vs offline."""
    loc = h["localisation"]
    verdict = "Target" if loc["target_found"] else "No site passed the threshold; best"
    out = [
        f'<p id="{ids("hbc-target")}"><b>{verdict}: {escape(str(loc["best_site"]))}</b> '
        f"(alternative rule: {escape(str(loc['best_site_alt']))}).</p>"
    ]
    if h.get("truth_best_site"):
        hit = "agrees" if h["truth_best_site"] == loc["best_site"] else "differs"
        out.append(
            f'<p id="{ids("hbc-truth")}">Virtual subject\'s true best site: '
            f"<b>{escape(h['truth_best_site'])}</b> ({hit}).</p>"
        )
    if h["live_vs_offline_max_rel"] is not None:
        out.append(
            f"<p>Live vs offline HBC: largest difference "
            f"{100 * h['live_vs_offline_max_rel']:.3g} % over {h['live_cycles']} "
            "cycles.</p>"
        )
    return out


def _hbc_stops(h: dict[str, Any], ids: _Ids) -> list[str]:
    """The cardiac stop alerts, as a table (or "None.")."""
    out = ["<h3>cardiac stop alerts</h3>"]
    if h["stops"]:
        out.append(
            _table(
                ids("hbc-stops"),
                ["time (LSL s)", "rule", "site", "detail"],
                [
                    (
                        _f(s.get("t"), ".3f"),
                        s.get("rule", ""),
                        s.get("site", ""),
                        json.dumps(s, default=str),
                    )
                    for s in h["stops"]
                ],
                left=0,
            )
        )
    else:
        out.append(f'<p id="{ids("hbc-stops")}" class="ok">None.</p>')
    return out


def _phase_section(a: SessionAnalysis, ids: _Ids) -> str:
    p = a.report["pulses"]
    hist = p["phase_histogram"]
    out = [f'<section id="{ids("phase-locked")}"><h2>Phase-locked stimulation</h2>']
    targets = [] if p["control"] == "random_phase" else [float(p["target_phase_deg"])]
    svg = polar_histogram(
        ids("fig-phase-polar"),
        "delivered phases",
        hist["counts"],
        targets_deg=targets,
        mean_deg=hist["mean_deg"],
        resultant=hist["resultant"],
    )
    target = (
        "each pulse at a random phase (control)"
        if not targets
        else f"target {p['target_phase_deg']:g}° (dashed)"
    )
    cap = (
        f"Phase at the {hist['n']} delivered pulses ({hist['source']} phase; "
        f"{hist['n_true']} with the recorded truth), {hist['bin_deg']:g}° bins; {target}; "
        f"black: mean direction {_f(hist['mean_deg'], '.1f')}°, R {_f(hist['resultant'], '.2f')}"
        f", circular SD {_f(hist['sd_deg'], '.1f')}°."
    )
    out.append(_figure(svg, cap))
    err = (a.report.get("truth") or {}).get("pulses", {}).get("true_phase_error")
    if err:
        out.append(
            f"<p>True phase minus each pulse's target: mean {_f(err['mean_deg'], '.1f')}°, "
            f"circular SD {_f(err['sd_deg'], '.1f')}° (n = {err['n']}).</p>"
        )
    est = p.get("estimate_error_at_fire")
    if est:
        out.append(
            f"<p>Estimated phase minus target: mean {_f(est['mean_deg'], '.1f')}°, "
            f"circular SD {_f(est['sd_deg'], '.1f')}° (n = {est['n']}).</p>"
        )
    cats = ["delivered", *p["refused_by_reason"]]
    vals = [p["delivered"], *p["refused_by_reason"].values()]
    svg = bar_chart(
        ids("fig-refusals"),
        "pulses delivered and refused by reason",
        cats,
        [("pulses", vals)],
        "pulses",
    )
    out.append(
        _figure(
            svg,
            f"{p['delivered']} pulses delivered, {p['refused']} refused by the gate, by reason.",
        )
    )
    out.append(_hr_eda_figures(a, ids, pulses=True))
    out.append("</section>")
    return "".join(out)


def _exposure_section(a: SessionAnalysis, ids: _Ids) -> str:
    x = a.report["exposure"]
    out = [
        f'<section id="{ids("exposure")}"><h2>Exposure</h2>',
        f"<p>{len(x['exercises'])} exercise(s); markers from the {escape(x['source'])}.</p>",
    ]
    if (cal := x["calibration"]) is not None:
        out.append(
            f"<p>Calibration rest {cal['end_t'] - cal['start_t']:.1f} s: SC "
            f"{_f(cal['scl_mean_us'], '.3f')} µS (SD {_f(cal['scl_sd_us'], '.3f')}), SCR rate "
            f"{_f(cal['rate_mean_per_min'], '.2f')}/min (SD {_f(cal['rate_sd_per_min'], '.2f')}),"
            f" HR {_f(cal['hr_mean_bpm'], '.1f')} bpm (SD {_f(cal['hr_sd_bpm'], '.2f')}).</p>"
        )
    out += _exercise_table(x, ids)
    if h := x["habituation"]:
        out.append(_habituation_figure(h, ids))
    if ev := x["expectancy"]:
        out += _expectancy_figures(ev, ids)
    ex = a.exposure
    if ex is not None and ex.timeline is not None and (ar := x["arousal"]):
        out.append(_arousal_figure(x, ar, ex.timeline, _start_t(a), ids))
    if c := x["cues"]:
        out += _cue_table(c, ids)
    if (lo := x["live_vs_offline"]) is not None:
        out += _live_offline_table(lo, ids)
    out += _exposure_issues(x, ids)
    out.append("</section>")
    return "".join(out)


#: Columns of the per-exercise table: header, key of the exercise row, format
#: ("s" text, "d" integer, "b" yes/no, else a float format).
_EXERCISE_COLUMNS = (
    ("#", "number", "d"),
    ("label", "label", "s"),
    ("duration s", "duration_s", ".1f"),
    ("EDA valid", "eda_valid", "b"),
    ("SCRs", "scr_count", ".0f"),
    ("SCR/min", "scr_rate_per_min", ".2f"),
    ("SCR amp sum µS", "scr_amp_sum_us", ".3f"),
    ("ΔSCL µS", "scl_change_us", ".3f"),
    ("peak ΔSCL µS", "scl_peak_change_us", ".3f"),
    ("ΔHR bpm", "hr_change_bpm", ".2f"),
    ("peak HR bpm", "hr_peak_bpm", ".1f"),
    ("mean arousal", "arousal_mean", ".2f"),
    ("peak arousal", "arousal_peak", ".2f"),
    ("time hyper s", "time_hyper_s", ".1f"),
    ("cues", "n_cues", "d"),
    ("cue SCRs", "n_cue_responses", "d"),
    ("expectancy", "expectancy", ".0f"),
    ("SUDS peak", "suds_peak", ".0f"),
    ("outcome", "outcome", ".0f"),
    ("violation", "expectancy_violation", ".0f"),
)


def _exercise_table(x: dict[str, Any], ids: _Ids) -> list[str]:
    """The per-exercise table, then each exercise's issues and learned note."""
    rows = []
    for e in x["exercises"]:
        row = []
        for _, key, fmt in _EXERCISE_COLUMNS:
            v = e[key]
            row.append(
                v if fmt in ("s", "d") else ("yes" if v else "no") if fmt == "b" else _f(v, fmt)
            )
        rows.append(row)
    out = ["<h3>per exercise</h3>"]
    out.append(_table(ids("exposure-table"), [c[0] for c in _EXERCISE_COLUMNS], rows, left=2))
    notes = [(e["number"], why) for e in x["exercises"] for why in e["issues"]]
    notes += [(e["number"], f"learned: {e['learned']}") for e in x["exercises"] if e["learned"]]
    if notes:
        out.append(
            "<ul>" + "".join(f"<li>exercise {n}: {escape(w)}</li>" for n, w in notes) + "</ul>"
        )
    return out


def _habituation_figure(h: dict[str, Any], ids: _Ids) -> str:
    """The habituation curve with its least-squares line."""
    num = np.array(h["number"], float)
    val = np.array([np.nan if v is None else v for v in h["value"]], float)
    lines = [Line(num, val, h["measure"], PALETTE[0], markers=True)]
    ok = np.isfinite(val)
    if ok.sum() >= 2:
        slope, icpt = np.polyfit(num[ok], val[ok], 1)
        lines.append(Line(num, icpt + slope * num, "least-squares line", PALETTE[7], dash="5 4"))
    svg = line_chart(
        ids("fig-habituation"),
        "habituation curve",
        lines,
        "exercise",
        h["measure"],
        xticks=list(num),
        xtick_labels=[f"{n:g}" for n in num],
    )
    return _figure(
        svg,
        f"Habituation: {escape(h['measure'])} per exercise, slope "
        f"{_f(h['slope_per_exercise'], '.3f')} per exercise, Spearman rho "
        f"{_f(h['rho'], '.2f')} (first {_f(h['first'], '.3f')}, last "
        f"{_f(h['last'], '.3f')}).",
    )


def _expectancy_figures(ev: dict[str, Any], ids: _Ids) -> list[str]:
    """Expectancy and outcome per exercise, and the violation against the response."""
    cats = [str(r["number"]) for r in ev["rows"]]
    svg = bar_chart(
        ids("fig-expectancy"),
        "expectancy and outcome per exercise",
        cats,
        [
            ("expectancy", [r["expectancy"] for r in ev["rows"]]),
            ("outcome", [r["outcome"] for r in ev["rows"]]),
        ],
        "rating (0-100)",
        xlabel="exercise",
        y_range=(0.0, 100.0),
    )
    pairs = "; ".join(
        f"#{r['number']}: violation {_f(r['violation'], '.0f')}, "
        f"{escape(ev['measure'])} {_f(r['response'], '.3f')}"
        for r in ev["rows"]
    )
    out = [
        _figure(
            svg,
            "Expectancy (before) and outcome (after) ratings; the "
            f"violation (expectancy minus outcome) beside the response: {pairs}"
            f" (Spearman rho {_f(ev['rho'], '.2f')}).",
        )
    ]
    vx = np.array([np.nan if r["violation"] is None else r["violation"] for r in ev["rows"]])
    vy = np.array([np.nan if r["response"] is None else r["response"] for r in ev["rows"]])
    if np.isfinite(vx).any() and np.isfinite(vy).any():
        svg = line_chart(
            ids("fig-violation-response"),
            "violation and response",
            [Line(vx, vy, ev["measure"], PALETTE[3], markers=True, dash="0 100000")],
            "expectancy violation (points)",
            ev["measure"],
        )
        out.append(
            _figure(svg, "Each exercise's expectancy violation against its physiological response.")
        )
    return out


def _arousal_figure(
    x: dict[str, Any], ar: dict[str, Any], tl: np.ndarray, t0: float, ids: _Ids
) -> str:
    """The offline arousal index over time with the window of tolerance and the alerts."""
    b = x["bands"]
    spans = [
        Span(e["start_t"], e["end_t"], PALETTE[4], f"exercise {e['number']}", 0.15)
        for e in x["exercises"]
    ]
    hl = [
        HLine(b["low"], f"low {b['low']:g}", "#555555"),
        HLine(b["high"], f"high {b['high']:g}", "#B00020"),
    ]
    if b["hysteresis"] > 0:
        hl += [
            HLine(b["high"] + b["hysteresis"], "", "#B00020", "2 3"),
            HLine(b["low"] - b["hysteresis"], "", "#555555", "2 3"),
        ]
    svg = line_chart(
        ids("fig-arousal"),
        "arousal index",
        [Line(tl["t"], tl["index"], "arousal index")],
        "time (s from the recording start)",
        "index (z against the rest)",
        spans=spans,
        hlines=hl,
        events=[(t, "alert") for t in ar["alerts_t"]],
        x_offset=t0,
    )
    bf = ar["band_fraction"]
    return _figure(
        svg,
        "Arousal index (offline, from the recording) with the window "
        f"of tolerance {b['low']:g}–{b['high']:g} (hysteresis "
        f"{b['hysteresis']:g}, dwell {b['min_dwell_s']:g} s); shaded: the "
        "exercises; red lines: alerts. Band occupancy: "
        + ", ".join(f"{k} {_f(None if v is None else 100 * v, '.0f')} %" for k, v in bf.items())
        + f"; {len(ar['alerts_t'])} alert(s); {_f(ar['time_hyper_s'], '.1f')} "
        "s above the window.",
    )


def _cue_table(c: dict[str, Any], ids: _Ids) -> list[str]:
    """Evoked SCRs per cue code."""
    rows = [
        (
            k,
            s["n"],
            s["valid"],
            s["responded"],
            _f(s["response_rate"], ".2f"),
            _f(s["amplitude_mean_us"], ".3f"),
            _f(s["amplitude_median_us"], ".3f"),
            _f(s["latency_median_s"], ".2f"),
        )
        for k, s in c["per_code"].items()
    ]
    header = [
        "code",
        "cues",
        "valid",
        "responded",
        "rate",
        "mean µS",
        "median µS",
        "median latency s",
    ]
    return ["<h3>evoked SCRs per cue code</h3>", _table(ids("cue-table"), header, rows)]


def _live_offline_table(lo: dict[str, Any], ids: _Ids) -> list[str]:
    """Whether the live stage's figures equal the offline ones, per part."""
    rows = [
        (
            k,
            "agree" if p["agree"] else "DIFFER",
            p["compared"],
            _f(p["max_abs_diff"]),
            "; ".join(p["mismatches"][:3]),
        )
        for k in ("exercises", "arousal", "calibration", "cues")
        if (p := lo.get(k)) is not None
    ]
    header = ["", "", "values", "largest difference", "first mismatches"]
    return [
        "<h3>live vs offline</h3>",
        _table(ids("live-offline-table"), header, rows, left=2),
    ]


def _exposure_issues(x: dict[str, Any], ids: _Ids) -> list[str]:
    """The analysis' issues and the markers rejected or refused live, as a warning list."""
    issues = [
        *x["issues"],
        *(f"marker rejected at {m['t']:.3f} s: {m['reason']}" for m in x["markers"]["rejected"]),
        *(
            f"marker refused live at {m['t']:.3f} s (scored as a cue): {m['reason']}"
            for m in x["markers"]["refused_live"]
        ),
    ]
    if not issues:
        return []
    return [
        f'<ul id="{ids("exposure-issues")}" class="warn">'
        + "".join(f"<li>{escape(i)}</li>" for i in issues)
        + "</ul>"
    ]


def _session_page(a: SessionAnalysis, ids: _Ids) -> str:
    r = a.report
    parts = [_session_section(a, ids)]
    kind = r["pulses"].get("kind")
    if "hbc" in r:
        parts.append(_hbc_section(a, ids))
    if kind == "phase_locked":
        parts.append(_phase_section(a, ids))
    if "exposure" in r:
        parts.append(_exposure_section(a, ids))
    if kind != "phase_locked":
        figs = _hr_eda_figures(a, ids, pulses=False, hr="hbc" not in r)  # HBC shows HR
        if figs:
            parts.append(f'<section id="{ids("physiology")}"><h2>Physiology</h2>{figs}</section>')
    parts += [_streams_section(a, ids), _health_section(a, ids), _events_section(a, ids)]
    return "".join(parts)


def _comparison_section(cmp: dict[str, Any]) -> str:
    out = ['<section id="comparison"><h2>Between sessions</h2>']
    for measure, rows in cmp["measures"].items():
        if not any(r["n_valid"] for r in rows):
            continue
        cats = [r["name"] for r in rows]
        svg = bar_chart(
            f"fig-compare-{measure}",
            f"{measure} between sessions",
            cats,
            [
                ("first", [r["first"] for r in rows]),
                ("mean", [r["mean"] for r in rows]),
                ("last", [r["last"] for r in rows]),
            ],
            measure,
        )
        out.append(_figure(svg, f"{escape(measure)}: first, mean and last exercise per session."))
        out.append(
            _table(
                f"compare-{measure}",
                ["session", "exercises", "first", "mean", "last", "slope", "Δ mean", "Δ first"],
                [
                    (
                        r["name"],
                        r["n_valid"],
                        _f(r["first"], ".3f"),
                        _f(r["mean"], ".3f"),
                        _f(r["last"], ".3f"),
                        _f(r["slope_per_exercise"], ".3f"),
                        _f(r["mean_change_from_first_session"], ".3f"),
                        _f(r["first_change_from_first_session"], ".3f"),
                    )
                    for r in rows
                ],
            )
        )
    if cmp["without_exercises"]:
        out.append("<p>Without exercises: " + escape(", ".join(cmp["without_exercises"])) + "</p>")
    out.append("</section>")
    return "".join(out)


def html_report(
    analyses: Sequence[SessionAnalysis], comparison: dict[str, Any] | None = None
) -> str:
    """The HTML page of one or several analysed recordings.

    Parameters
    ----------
    analyses : sequence of SessionAnalysis
        From :func:`~stimloop.loop.report.analyse_session`; with several, each session's
        element ids are prefixed ``s1-``, ``s2-``, ...
    comparison : dict, optional
        :func:`~stimloop.loop.report.compare_recordings` of them.

    Returns
    -------
    str
        The page.
    """
    many = len(analyses) > 1
    body = []
    for k, a in enumerate(analyses, start=1):
        ids = _Ids(f"s{k}-" if many else "")
        if many:
            body.append(
                f'<h1 id="s{k}">{k}. {escape(str(a.report["session"]["name"]))} '
                f"<span class='muted'>({escape(Path(a.rec.path).name)})</span></h1>"
            )
        body.append(_session_page(a, ids))
    if comparison is not None:
        body.append(_comparison_section(comparison))
    data = {"sessions": [a.report for a in analyses], "comparison": comparison}
    blob = report_json(data).replace("</", "<\\/")
    title = "stimloop report: " + ", ".join(Path(a.rec.path).name for a in analyses)
    head = f"<h1>{escape(title)}</h1>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{head}"
        + "".join(body)
        + f'<script type="application/json" id="report-json">{blob}</script>'
        + "</body></html>\n"
    )


def check_report_path(path: str | Path, recordings: Sequence[str | Path] = ()) -> Path:
    """Check, before a long analysis, that the HTML report can be written at ``path``.

    An existing file is replaced only when it is a stimloop HTML report (an earlier
    run's): anything else there, or behind a link there, is someone's data.

    Parameters
    ----------
    path : str or Path
        Where the report goes.
    recordings : sequence of str or Path
        The recordings analysed (the report must not land on one of them).

    Raises
    ------
    SessionError
        The folder does not exist or is not writable, the file is not writable, or it
        is one of ``recordings`` or an existing file that is not a stimloop report.
    """
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise SessionError(f"--report: the folder {str(folder)!r} of {str(p)!r} does not exist")
    if not os.access(folder, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise SessionError(f"--report: {str(p)!r} is not writable")
    if p.exists() and p.is_dir():
        raise SessionError(f"--report: {str(p)!r} is a folder; give a file name (.html)")
    check_not_overwriting(p, recordings, "--report", _is_report, "a stimloop HTML report")
    return p


def _is_report(head: bytes) -> bool:
    return head.startswith(b"<!DOCTYPE html>") and b"<title>stimloop report" in head


def check_not_overwriting(path: Path, recordings: Sequence[str | Path], option: str,
                          is_ours: Callable[[bytes], bool], what: str) -> None:  # fmt: skip
    """Refuse an output ``path`` that is one of the ``recordings`` read, or an existing
    file (or the target of a link) whose first bytes ``is_ours`` does not recognise as
    ``what`` an earlier run wrote; refuse a link to nothing (the file would be created
    wherever it points).

    Raises
    ------
    SessionError
        Naming the option, the path and what is there.
    """
    if path.is_symlink() and not path.exists():
        raise SessionError(
            f"{option}: {str(path)!r} is a link to {os.readlink(path)!r}, which does not exist; "
            "the output would be created there: give a new file name"
        )
    if not path.exists():
        return
    for rec in recordings:
        with contextlib.suppress(OSError):
            if os.path.samefile(path, rec):
                raise SessionError(
                    f"{option}: {str(path)!r} is the recording being analysed; writing there "
                    "would destroy it: give another file name"
                )
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise SessionError(f"{option}: cannot read the existing {str(path)!r}: {exc}") from None
    if not is_ours(head):
        raise SessionError(
            f"{option}: {str(path)!r} exists and is not {what} (it would be overwritten); "
            "give a new file name, or remove it first"
        )


def write_html_report(
    path: str | Path, analyses: Sequence[SessionAnalysis], comparison: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write :func:`html_report` to ``path``.

    Returns
    -------
    dict
        ``path``, ``bytes`` and ``figures`` (the ids of the SVG figures written).
    """
    page = html_report(analyses, comparison)
    p = Path(path)
    try:
        p.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise SessionError(f"--report: cannot write {str(p)!r}: {exc}") from None
    figs = re.findall(r'<svg xmlns="http://www.w3.org/2000/svg" id="([^"]+)"', page)
    return {"path": str(p), "bytes": len(page.encode("utf-8")), "figures": figs}
