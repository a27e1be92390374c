"""The exposure section of ``stimloop analyze``: exercises, arousal and cues, from the file.

A session with ``[exposure]`` records every exercise marker on the catalog's
``exposure`` stream, the EDA stage's level (``eda_level``) and SCRs (``eda_scr``), the
heart stage's HR series (``heart_hr``) and what the live exposure stage made of them: the
arousal index and band (``arousal``) and each exercise's figures (``exercises``). Here
everything is computed again from the recorded inputs of the exposure stage, by the code
the stage runs (:mod:`stimloop.dsp.exposure`, :mod:`stimloop.dsp.arousal`):

- the markers are parsed into exercises (:func:`~stimloop.loop.exposure_markers.parse_exercises`);
- the calibration rest gives the rest statistics (:func:`~stimloop.dsp.arousal.calibrate`),
  and the arousal index and its band follow over the samples after the rest, as live
  (:func:`~stimloop.dsp.arousal.arousal_timeline`);
- each exercise's physiology (:func:`~stimloop.dsp.exposure.exercise_physiology`), the
  habituation curve, the expectancy violation beside the physiological response, and
  the evoked SCR to each cue, summarised per cue code.

The offline figures are then compared with the live ones recorded in the same file
(the largest difference is reported: they agree to floating-point precision when the
stage received its inputs in time). A recording of an exposure session without the
stage (markers sent to the session's ``events`` stream only) is analysed from the
``stimulus`` events of its decision stream, with nothing live to compare.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from stimloop.dsp.arousal import (
    ArousalParams,
    BandParams,
    Calibration,
    arousal_timeline,
    calibrate,
)
from stimloop.dsp.exposure import (
    BAND_NAMES,
    CUE_DTYPE,
    HYPER,
    UNKNOWN,
    EDALevel,
    ExerciseFigures,
    ExerciseParams,
    ExerciseTracker,
    ExposureInputError,
    SCRTable,
    Series,
    compare_sessions,
    cue_responses,
    cue_summary,
    exercise_physiology,
    expectancy_violation,
    habituation_curve,
    median_step,
)
from stimloop.loop.exposure_markers import (
    Exercise,
    ExposureLog,
    ExposureMarkerError,
    parse_exercises,
    parse_marker,
)

if TYPE_CHECKING:
    from stimloop.loop.report import RecordedSession

#: Relative tolerance of "live equals offline" (floating-point rounding only).
LIVE_RTOL = 1e-9
#: The measures a between-session comparison reports, in this order.
COMPARED_MEASURES = ("arousal_peak", "scl_peak_change_us", "scr_amp_sum_us", "hr_peak_change_bpm")


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class ExposureAnalysis:
    """What the exposure analysis of one recording found (arrays for figures, and the
    JSON-ready summary :attr:`report`, which holds every number a figure shows).

    Attributes
    ----------
    log : ExposureLog
        The parsed markers.
    figures : list of ExerciseFigures
        Offline figures of the ended exercises, in order.
    timeline : ndarray (AROUSAL_DTYPE) or None
        The offline arousal index and band over the samples after the calibration rest;
        None without a calibration.
    bands : BandParams
        The window of tolerance of the session.
    report : dict
        See :func:`exposure_analysis`.
    """

    log: ExposureLog
    figures: list[ExerciseFigures]
    timeline: np.ndarray | None
    bands: BandParams
    report: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- inputs
def _marker_rows(rec: RecordedSession) -> tuple[list[tuple[float, str]], list[dict], bool]:
    """The exposure markers (time s, text), the stage's own records (``calibrated``,
    ``calibration_failed``), and whether they come from the live stage's stream."""
    s = rec.stream("exposure")
    if s is not None:
        markers, records = [], []
        for t, row in zip(s.time_stamps, s.time_series, strict=True):
            text = row[0]
            try:
                obj = json.loads(text)
            except (ValueError, TypeError):
                obj = None
            if isinstance(obj, dict) and "event" in obj and "kind" not in obj:
                records.append({"t": float(t), **obj})
            else:
                markers.append((float(t), text))
        return markers, records, True
    # No exposure stage: the markers the session received on its events stream.
    markers = [
        (float(e["t_event"]), e.get("text", ""))
        for e in rec.decisions
        if e.get("event") == "stimulus" and e.get("t_event") is not None
    ]
    return markers, [], False


def _refused_live(rec: RecordedSession, published: Sequence[tuple[float, str]]) -> list[dict]:
    """Events-stream markers the live stage did not publish as exposure markers: plain
    text, or markers it refused (an end without a start, a rating outside 0-100, odd
    text, ...). The stage scored each of them as a plain cue; here each is listed with
    the reason, as (``t`` s, ``text``, ``reason``)."""
    seen = {(round(t, 9), text) for t, text in published}
    out = []
    for e in rec.decisions:
        if e.get("event") != "stimulus" or e.get("t_event") is None:
            continue
        t, text = float(e["t_event"]), str(e.get("text", ""))
        if (round(t, 9), text) in seen:
            continue
        try:
            m = parse_marker(text, lenient=False)
            reason = _order_error(published, t, m.kind)
        except ExposureMarkerError as exc:
            reason = str(exc)
        out.append({"t": t, "text": text, "reason": reason})
    return out


def _order_error(published: Sequence[tuple[float, str]], t: float, kind: str) -> str:
    """Why the live stage refused a valid marker of ``kind`` at ``t``: the exercise
    order, replayed with the tracker the stage runs over the published starts and ends."""
    steps = []
    for tp, text in published:
        try:
            k = parse_marker(text).kind
        except ExposureMarkerError:
            continue
        if k in ("exercise_start", "exercise_end") and tp <= t:
            steps.append((tp, k))
    tracker = ExerciseTracker(use_hr=False)
    try:
        for tp, k in [*sorted(steps), (t, kind)]:
            if k == "exercise_start":
                tracker.start_exercise(tp)
            elif k == "exercise_end":
                tracker.end_exercise(tp)
    except ExposureInputError as exc:
        return str(exc)
    return "refused by the live stage (the session log says why)"


def recorded_inputs(rec: RecordedSession) -> tuple[EDALevel | None, SCRTable, Series | None]:
    """The exposure stage's inputs as recorded: the EDA level (SCL, phasic µS), the SCRs
    and the HR series (bpm; None when the session had no ECG), as
    :meth:`~stimloop.loop.exposure_stage.ExposureStage.update` builds them."""
    lv = rec.stream("eda_level")
    level = None
    if lv is not None and len(lv.time_stamps):
        data = np.asarray(lv.time_series, dtype=float)
        level = EDALevel(np.asarray(lv.time_stamps, float), data[:, 0], data[:, 1])
    sc = rec.scrs()
    scrs = SCRTable(
        sc["onset_t"], sc["peak_t"], sc["amplitude_us"], sc["confirmed_t"], sc["rise_time_s"]
    )
    hr = None
    if "ecg" in (rec.config.get("sources") or {}) or rec.stream("heart_hr") is not None:
        t, bpm = rec.series("heart_hr", 0)
        hr = Series(t, bpm)
    return level, scrs, hr


def session_bands(config: Mapping[str, Any]) -> BandParams:
    """The window of tolerance of a session config (defaults without ``[exposure]``)."""
    x = config.get("exposure") or {}
    d = BandParams()
    return BandParams(
        float(x.get("band_low", d.low)),
        float(x.get("band_high", d.high)),
        float(x.get("hysteresis", d.hysteresis)),
        float(x.get("min_dwell_s", d.min_dwell_s)),
        float(x.get("alert_after_s", d.alert_after_s)),
    )


# ---------------------------------------------------------------------------- analysis
def analyse_exposure(rec: RecordedSession) -> ExposureAnalysis | None:
    """Exercises, arousal and cues of a recording (see the module docstring).

    Returns
    -------
    ExposureAnalysis or None
        None when the recording holds no exposure marker.
    """
    markers, records, live_stage = _marker_rows(rec)
    log = parse_exercises(markers)
    if not (log.exercises or log.calibrations or log.orphan_cues or log.rejected):
        return None
    bands = session_bands(rec.config)
    params = ArousalParams()
    issues: list[str] = []
    out: dict[str, Any] = {"source": "exposure stream" if live_stage else "events stream"}
    level, scrs, hr = _usable_inputs(rec, issues)
    cal, timeline = _calibrated_timeline(log, level, scrs, hr, params, bands, issues)
    out["calibration"] = _calibration_dict(cal)
    out["bands"] = dataclasses.asdict(bands)
    out["arousal"] = _arousal_summary(timeline)
    # --- exercises
    ended = [e for e in log.exercises if e.ended]
    refused = _refused_live(rec, markers) if live_stage else []
    plain = [(r["t"], r["text"]) for r in refused]
    cue_t = np.array(
        [c.t for e in log.exercises for c in e.cues]
        + [c.t for c in log.orphan_cues]
        + [t for t, _ in plain],
        float,
    )
    figures = _figures_of(ended, level, scrs, hr, cue_t, timeline)
    out["exercises"] = [_exercise_row(e, f) for e, f in zip(ended, figures, strict=False)]
    out["unended"] = [
        {"number": e.number, "label": e.label, "start_t": e.start_t}
        for e in log.exercises
        if not e.ended
    ]
    measure = _primary_measure(figures)
    out["habituation"] = _habituation_dict(figures, measure) if figures else None
    out["expectancy"] = _expectancy_dict(ended, figures, measure) if figures else None
    out["cues"] = _cue_section(log, plain, scrs, figures, ended)
    out["markers"] = _marker_counts(log, cue_t, refused)
    out["live_vs_offline"] = (
        _live_vs_offline(rec, records, figures, timeline, cal, out["cues"]) if live_stage else None
    )
    out["issues"] = issues
    return ExposureAnalysis(log, figures, timeline, bands, out)


def _usable_inputs(
    rec: RecordedSession, issues: list[str]
) -> tuple[EDALevel | None, SCRTable, Series | None]:
    """:func:`recorded_inputs`, or none of them when they cannot be used (said in ``issues``)."""
    try:
        level, scrs, hr = recorded_inputs(rec)
    except ExposureInputError as exc:  # e.g. timestamps that go back: say so, compute nothing
        issues.append(f"the recorded EDA/HR streams cannot be used: {exc}")
        return None, SCRTable.empty(), None
    if level is None:
        issues.append("no EDA level stream recorded: no exercise physiology, no arousal index")
    return level, scrs, hr


def _calibrated_timeline(
    log: ExposureLog,
    level: EDALevel | None,
    scrs: SCRTable,
    hr: Series | None,
    params: ArousalParams,
    bands: BandParams,
    issues: list[str],
) -> tuple[Calibration | None, np.ndarray | None]:
    """The first usable calibration rest and the arousal index after it (or None, None)."""
    cal = None
    timeline = None
    for a, b in log.calibrations:
        if level is None or not math.isfinite(b):
            continue
        try:
            cal = calibrate(level, scrs, hr, a, b, params)
            break
        except ExposureInputError as exc:
            issues.append(f"calibration {a:.3f}-{b:.3f} s failed: {exc}")
    if cal is None and level is not None:
        issues.append("no usable calibration rest: no arousal index")
    if cal is not None:
        after = int(np.searchsorted(level.t, cal.end_t, side="left"))
        post = level.slice(after, len(level))
        timeline = arousal_timeline(post, scrs, hr, cal, params, bands)
    return cal, timeline


def _figures_of(
    ended: list[Exercise],
    level: EDALevel | None,
    scrs: SCRTable,
    hr: Series | None,
    cue_t: np.ndarray,
    timeline: np.ndarray | None,
) -> list[ExerciseFigures]:
    """The physiology of each ended exercise (none without an EDA level)."""
    if level is None or not ended:
        return []
    ar = band = None
    if timeline is not None:
        ar = Series(timeline["t"], timeline["index"])
        band = Series(timeline["t"], timeline["state"].astype(float))
    return exercise_physiology(
        np.array([(e.start_t, e.end_t) for e in ended]).reshape(-1, 2),
        scrs=scrs,
        level=level,
        hr=hr,
        cue_t=np.sort(cue_t),
        arousal=ar,
        band=band,
    )


def _marker_counts(log: ExposureLog, cue_t: np.ndarray, refused: list[dict]) -> dict[str, Any]:
    """The report's ``markers`` part: counts, rejected markers, issues, refused live."""
    return {
        "exercises": len(log.exercises),
        "cues": int(cue_t.size),
        "ignored_plain_text": log.ignored,
        "rejected": [{"t": i.t, "reason": i.reason, "marker": i.marker} for i in log.rejected],
        "issues": [{"t": i.t, "reason": i.reason} for i in log.issues],
        "refused_live": [{**r, "text": _clip(r["text"], 200)} for r in refused],
    }


def exposure_analysis(rec: RecordedSession) -> dict[str, Any] | None:
    """The exposure section of the report of a recording, or None without exposure markers.

    Returns
    -------
    dict or None
        ``source`` (where the markers came from), ``calibration`` (the rest statistics,
        offline), ``bands`` (the window of tolerance), ``arousal`` (samples, band
        occupancy, alerts), ``exercises`` (one row per ended exercise: label, ratings,
        expectancy violation, the note, and every :class:`ExerciseFigures` figure),
        ``unended``, ``habituation`` (:func:`~stimloop.dsp.exposure.habituation_curve`),
        ``expectancy`` (:func:`~stimloop.dsp.exposure.expectancy_violation`), ``cues``
        (evoked SCRs per cue code), ``markers`` (counts, markers rejected by the parser,
        structural issues, and ``refused_live``: events-stream markers the live stage
        refused and scored as plain cues, with the reason),
        ``live_vs_offline`` (the largest differences from what the session computed
        live; None without the live stage) and ``issues``. Times are LSL s.
    """
    res = analyse_exposure(rec)
    return None if res is None else res.report


def _calibration_dict(cal) -> dict[str, Any] | None:
    if cal is None:
        return None
    d = dataclasses.asdict(cal)
    d["raw_sd"] = [_num(v) for v in d["raw_sd"]]
    return {k: (_num(v) if isinstance(v, float) else v) for k, v in d.items()}


def _arousal_summary(tl: np.ndarray | None) -> dict[str, Any] | None:
    if tl is None:
        return None
    st = tl["state"]
    valid = st != UNKNOWN
    dt = median_step(tl["t"])
    a = tl["alert"]
    starts = tl["t"][np.flatnonzero(a & ~np.concatenate([[False], a[:-1]]))]
    idx = tl["index"][np.isfinite(tl["index"])]
    return {
        "samples": int(tl.size),
        "start_t": _num(tl["t"][0]) if tl.size else None,
        "end_t": _num(tl["t"][-1]) if tl.size else None,
        "index_mean": _num(idx.mean()) if idx.size else None,
        "index_max": _num(idx.max()) if idx.size else None,
        "band_fraction": {
            BAND_NAMES[s]: (float(np.mean(st[valid] == s)) if valid.any() else None)
            for s in sorted(BAND_NAMES)
            if s != UNKNOWN
        },
        "unknown_fraction": float(np.mean(~valid)) if st.size else None,
        "time_hyper_s": _num(np.count_nonzero(st == HYPER) * dt) if st.size > 1 else None,
        "alerts_t": [float(t) for t in starts],
    }


def _exercise_row(e, f: ExerciseFigures) -> dict[str, Any]:
    return {
        "label": e.label,
        "expectancy": _num(e.expectancy),
        "suds_start": _num(e.suds_start),
        "suds_peak": _num(e.suds_peak),
        "suds_end": _num(e.suds_end),
        "outcome": _num(e.outcome),
        "expectancy_violation": _num(e.expectancy_violation),
        "learned": e.learned,
        "marker_issues": list(e.issues),
        **f.to_dict(),
    }


def _primary_measure(figs: Sequence[ExerciseFigures]) -> str:
    """Peak arousal when the index exists, else the peak SCL change (µS)."""
    if any(math.isfinite(f.arousal_peak) for f in figs):
        return "arousal_peak"
    return "scl_peak_change_us"


def _habituation_dict(figs: Sequence[ExerciseFigures], measure: str) -> dict[str, Any]:
    c = habituation_curve(figs, measure)
    return {
        "measure": c.measure,
        "number": c.number.tolist(),
        "value": [_num(v) for v in c.value],
        "slope_per_exercise": _num(c.slope_per_exercise),
        "rho": _num(c.rho),
        "first": _num(c.first),
        "last": _num(c.last),
    }


def _expectancy_dict(ended, figs, measure: str) -> dict[str, Any]:
    rows, rho = expectancy_violation(
        np.array([e.expectancy for e in ended[: len(figs)]], float),
        np.array([e.outcome for e in ended[: len(figs)]], float),
        figs,
        measure,
    )
    return {
        "measure": measure,
        "rows": [
            {k: (int(r[k]) if k == "number" else _num(r[k])) for k in rows.dtype.names}
            for r in rows
        ],
        "rho": _num(rho),
    }


def _cue_key(code: int | None, label: str) -> str:
    return str(code) if code is not None else (label or "(no code)")


def _cue_section(log, plain, scrs, figures, ended) -> dict[str, Any] | None:
    """Evoked SCR to every cue (inside exercises, outside, and plain-text stimuli),
    summarised per cue code (the label, or the text of a plain stimulus, when there is
    no code). A cue inside an exercise whose EDA was invalid is not valid."""
    cues = [(c.t, _cue_key(c.code, c.label)) for e in log.exercises for c in e.cues]
    cues += [(c.t, _cue_key(c.code, c.label)) for c in log.orphan_cues]
    cues += [(t, text[:40] or "(empty)") for t, text in plain]
    if not cues:
        return None
    cues.sort(key=lambda c: c[0])
    t = np.array([c[0] for c in cues], float)
    groups = np.array([c[1] for c in cues], dtype=object)
    rows = cue_responses(scrs, t, ExerciseParams().cue_window)
    for e, f in zip(ended, figures, strict=False):
        inside = (t >= e.start_t) & (t < e.end_t)
        rows["exercise"][inside] = f.number
        if not f.eda_valid:
            rows["valid"][inside] = False
            rows["responded"][inside] = False
            for name in ("latency_s", "amplitude_us", "rise_time_s", "onset_t"):
                rows[name][inside] = np.nan
    return {
        "window_s": list(ExerciseParams().cue_window),
        "per_code": cue_summary(rows, groups),
        "rows": [{"code": g, **_cue_row(r)} for g, r in zip(groups, rows, strict=True)],
    }


def _cue_row(r: np.void) -> dict[str, Any]:
    return {n: (_num(r[n]) if r.dtype[n].kind == "f" else r[n].item()) for n in CUE_DTYPE.names}


# ---------------------------------------------------------------------------- live vs offline
@dataclass
class _Diff:
    """Largest differences between live and offline values, and what did not match."""

    compared: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    mismatches: list[str] = field(default_factory=list)

    def number(self, where: str, live: Any, off: Any) -> None:
        a, b = _num(live), _num(off)
        self.compared += 1
        if a is None or b is None:
            if (a is None) != (b is None):
                self.mismatches.append(f"{where}: live {live!r}, offline {off!r}")
            return
        d = abs(a - b)
        rel = d / max(abs(a), abs(b), 1e-12)
        self.max_abs = max(self.max_abs, d)
        self.max_rel = max(self.max_rel, rel if d > 0 else 0.0)
        if d > LIVE_RTOL * max(1.0, abs(a), abs(b)):
            self.mismatches.append(f"{where}: live {a!r}, offline {b!r}")

    def value(self, where: str, live: Any, off: Any) -> None:
        if isinstance(live, bool) or isinstance(off, bool) or isinstance(live, str):
            self.compared += 1
            if live != off:
                self.mismatches.append(f"{where}: live {live!r}, offline {off!r}")
        elif isinstance(live, list) and isinstance(off, list):
            if len(live) != len(off):
                self.mismatches.append(f"{where}: live has {len(live)}, offline {len(off)}")
            for k, (x, y) in enumerate(zip(live, off, strict=False)):
                self.value(f"{where}[{k}]", x, y)
        elif isinstance(live, dict) and isinstance(off, dict):
            for k in sorted(set(live) | set(off)):
                self.value(f"{where}.{k}", live.get(k), off.get(k))
        else:
            self.number(where, live, off)

    def as_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "max_abs_diff": self.max_abs,
            "max_rel_diff": self.max_rel,
            "agree": not self.mismatches,
            "mismatches": self.mismatches[:20],
            "n_mismatches": len(self.mismatches),
        }


def _live_exercises(rec: RecordedSession) -> list[dict[str, Any]]:
    s = rec.stream("exercises")
    out = []
    for row in s.time_series if s is not None else []:
        try:
            d = json.loads(row[0])
        except (ValueError, TypeError):
            continue
        if isinstance(d, dict) and "number" in d:
            out.append(d)
    return out


def _live_vs_offline(rec, records, figures, timeline, cal, cues) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Exercises: every field of every exercise the session scored live.
    live = _live_exercises(rec)
    off = {f.number: f.to_dict() for f in figures}
    d = _Diff()
    for ex in live:
        o = off.get(ex["number"])
        if o is None:
            d.mismatches.append(f"exercise {ex['number']}: scored live, not offline")
            continue
        d.value(f"exercise {ex['number']}", ex, o)
    out["exercises"] = {"live": len(live), "offline": len(figures), **d.as_dict()}
    # Calibration: the rest statistics the stage recorded when it calibrated.
    done = [r for r in records if r.get("event") == "calibrated"]
    if done:
        d = _Diff()
        ref = _calibration_dict(cal) or {}
        for k, v in done[0].items():
            if k not in ("event", "t"):
                d.value(f"calibration.{k}", v, ref.get(k))
        out["calibration"] = d.as_dict()
    else:
        out["calibration"] = None
    out["calibration_failed"] = [
        r.get("error") for r in records if r.get("event") == "calibration_failed"
    ]
    out["arousal"] = _arousal_vs_live(rec, timeline)
    # Cues per code: the cues the live exercises scored, summarised like offline.
    live_cues = [c for ex in live for c in ex.get("cues", [])]
    if cues is not None and live_cues:
        key = {r["t"]: r["code"] for r in cues["rows"]}
        groups = np.array([key.get(c["t"], "?") for c in live_cues], dtype=object)
        rows = np.zeros(len(live_cues), CUE_DTYPE)
        for i, c in enumerate(live_cues):
            for n in CUE_DTYPE.names:
                rows[n][i] = np.nan if c.get(n) is None else c[n]
        in_ex = np.isin([r["t"] for r in cues["rows"]], rows["t"])
        off_rows = [r for r, keep in zip(cues["rows"], in_ex, strict=True) if keep]
        d = _Diff()
        d.value(
            "per_code",
            cue_summary(rows, groups),
            cue_summary(
                _rows_array(off_rows), np.array([r["code"] for r in off_rows], dtype=object)
            ),
        )
        out["cues"] = {"live": len(live_cues), **d.as_dict()}
    else:
        out["cues"] = None
    parts = [v for k, v in out.items() if isinstance(v, dict)]
    out["agree"] = all(p["agree"] for p in parts)
    out["max_abs_diff"] = max((p["max_abs_diff"] for p in parts), default=0.0)
    return out


def _rows_array(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    a = np.zeros(len(rows), CUE_DTYPE)
    for i, r in enumerate(rows):
        for n in CUE_DTYPE.names:
            a[n][i] = np.nan if r.get(n) is None else r[n]
    return a


def _arousal_vs_live(rec: RecordedSession, tl: np.ndarray | None) -> dict[str, Any] | None:
    """The recorded live index against the offline one, sample by sample (same times)."""
    s = rec.stream("arousal")
    if s is None or not len(s.time_stamps):
        return None
    lt = np.asarray(s.time_stamps, float)
    lv = np.asarray(s.time_series, float)
    if tl is None:
        return {
            "live": int(lt.size),
            "offline": 0,
            "matched": 0,
            "agree": False,
            "max_abs_diff": math.inf,
            "mismatches": ["no offline index"],
            "n_mismatches": 1,
            "compared": 0,
            "max_rel_diff": math.inf,
        }
    _, il, io = np.intersect1d(lt, tl["t"], return_indices=True)
    d = _Diff()
    for col, name in enumerate(("index", "z_scl", "z_rate", "z_hr")):
        a, b = lv[il, col], tl[name][io]
        nan_a, nan_b = ~np.isfinite(a), ~np.isfinite(b)
        d.compared += a.size
        if np.any(nan_a != nan_b):
            k = int(np.flatnonzero(nan_a != nan_b)[0])
            d.mismatches.append(
                f"{name}: {int(np.sum(nan_a != nan_b))} samples valid on one side only "
                f"(first at t={lt[il[k]]:.3f} s: live {a[k]!r}, offline {b[k]!r})"
            )
        ok = ~nan_a & ~nan_b
        if ok.any():
            diff = np.abs(a[ok] - b[ok])
            scale = np.maximum(1.0, np.maximum(np.abs(a[ok]), np.abs(b[ok])))
            d.max_abs = max(d.max_abs, float(diff.max()))
            d.max_rel = max(d.max_rel, float(np.max(diff / scale)))
            bad = diff > LIVE_RTOL * scale
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                d.mismatches.append(
                    f"{name}: {int(bad.sum())} samples differ (first at "
                    f"t={lt[il][ok][k]:.3f} s by {diff[k]:.3g})"
                )
    # The band column: the catalog's 0 unknown, 1 hypo, 2 within, 3 hyper (the kernel's
    # codes + 1).
    live_band = lv[il, 4]
    n_band = int(np.sum(live_band != tl["state"][io].astype(float) + 1))
    n_alert = int(np.sum(lv[il, 5] != tl["alert"][io].astype(float)))
    d.compared += 2 * il.size
    if n_band:
        d.mismatches.append(f"band: {n_band} samples differ")
    if n_alert:
        d.mismatches.append(f"alert: {n_alert} samples differ")
    unmatched = int(lt.size - il.size)
    if unmatched:
        d.mismatches.append(f"{unmatched} live samples have no offline sample at their time")
    return {
        "live": int(lt.size),
        "offline": int(tl.size),
        "matched": int(il.size),
        # The stage's index waits for HR; the samples still waiting when the session
        # ended were never published.
        "offline_only_at_end": int(np.sum(tl["t"] > lt[-1])),
        **d.as_dict(),
    }


# ---------------------------------------------------------------------------- text
def format_exposure(x: dict[str, Any]) -> list[str]:
    """The exposure section as text lines for ``stimloop analyze``."""
    lines = ["", f"exposure: {len(x['exercises'])} exercise(s) (markers from the {x['source']})"]
    cal = x["calibration"]
    if cal is not None:
        hr = "-" if cal["hr_mean_bpm"] is None else f"{cal['hr_mean_bpm']:.1f} bpm"
        lines.append(
            f"calibration rest {cal['end_t'] - cal['start_t']:.1f} s: SC "
            f"{cal['scl_mean_us']:.3f} µS (SD {cal['scl_sd_us']:.3f}), SCR rate "
            f"{cal['rate_mean_per_min']:.2f}/min (SD {cal['rate_sd_per_min']:.2f}), HR {hr}"
        )
    if x["exercises"]:
        lines.append(
            f"{'#':>2} {'label':<20} {'dur s':>6} {'SCRs':>5} {'/min':>5} {'amp µS':>7} "
            f"{'ΔSCL µS':>8} {'ΔHR bpm':>8} {'peak A':>7} {'hyper s':>7} {'cues':>6} "
            f"{'exp':>4} {'out':>4}"
        )
    for e in x["exercises"]:
        lines.append(
            f"{e['number']:>2} {_clip(e['label'], 20):<20} {e['duration_s']:>6.1f} "
            f"{_f(e['scr_count'], '.0f'):>5} {_f(e['scr_rate_per_min'], '.1f'):>5} "
            f"{_f(e['scr_amp_sum_us'], '.3f'):>7} {_f(e['scl_change_us'], '.3f'):>8} "
            f"{_f(e['hr_change_bpm'], '.1f'):>8} {_f(e['arousal_peak'], '.2f'):>7} "
            f"{_f(e['time_hyper_s'], '.1f'):>7} {e['n_cue_responses']:>2}/{e['n_cues']:<3} "
            f"{_f(e['expectancy'], '.0f'):>4} {_f(e['outcome'], '.0f'):>4}"
        )
        for why in e["issues"]:
            lines.append(f"   ! {why}")
    if h := x["habituation"]:
        vals = " ".join(_f(v, ".2f") for v in h["value"])
        lines.append(
            f"habituation ({h['measure']} per exercise): {vals}; slope "
            f"{_f(h['slope_per_exercise'], '.3f')} per exercise, rho {_f(h['rho'], '.2f')}"
        )
    if (ev := x["expectancy"]) and any(r["violation"] is not None for r in ev["rows"]):
        pairs = ", ".join(
            f"#{r['number']} {_f(r['violation'], '.0f')} / {_f(r['response'], '.2f')}"
            for r in ev["rows"]
        )
        lines.append(f"expectancy violation (points) / {ev['measure']}: {pairs}")
    if a := x["arousal"]:
        bf = a["band_fraction"]
        lines.append(
            "arousal: "
            + ", ".join(f"{k} {100 * v:.0f} %" for k, v in bf.items() if v is not None)
            + f"; {len(a['alerts_t'])} alert(s) above the window"
        )
    if c := x["cues"]:
        lines.append(
            "evoked SCRs per cue code: "
            + "; ".join(
                f"{k}: {s['responded']}/{s['valid']}"
                + (f" (mean {s['amplitude_mean_us']:.3f} µS)" if s["amplitude_mean_us"] else "")
                for k, s in c["per_code"].items()
            )
        )
    if (lo := x["live_vs_offline"]) is not None:
        parts = []
        for key in ("exercises", "arousal", "calibration", "cues"):
            p = lo.get(key)
            if p is not None:
                parts.append(
                    f"{key} {'agree' if p['agree'] else 'DIFFER'} "
                    f"(largest difference {p['max_abs_diff']:.3g})"
                )
        lines.append("live vs offline: " + ("; ".join(parts) if parts else "nothing live recorded"))
        for key in ("exercises", "arousal", "calibration", "cues"):
            p = lo.get(key)
            for m in (p or {}).get("mismatches", [])[:5]:
                lines.append(f"   ! {key}: {m}")
    for m in x["markers"]["rejected"]:
        lines.append(f"   marker rejected at {m['t']:.3f} s: {m['reason']}")
    for m in x["markers"]["refused_live"]:
        lines.append(f"   marker refused live at {m['t']:.3f} s (scored as a cue): {m['reason']}")
    for why in x["issues"]:
        lines.append(f"   ! {why}")
    return lines


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _clip(s: str, n: int) -> str:
    s = s.replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


# ---------------------------------------------------------------------------- sessions
def between_sessions(analyses: Mapping[str, ExposureAnalysis]) -> dict[str, Any]:
    """Between-session comparison (:func:`~stimloop.dsp.exposure.compare_sessions`) of
    the exercises of several recordings, in the order given, for each measure of
    :data:`COMPARED_MEASURES`."""
    figs = {name: a.figures for name, a in analyses.items()}
    out = {}
    for measure in COMPARED_MEASURES:
        rows = compare_sessions(figs, measure)
        out[measure] = [
            {k: (_num(v) if isinstance(v, float) else v) for k, v in dataclasses.asdict(r).items()}
            for r in rows
        ]
    return out


def format_between_sessions(cmp: dict[str, Any]) -> list[str]:
    """The between-session comparison as text lines."""
    lines = ["", "between sessions (first session = reference):"]
    for measure, rows in cmp.items():
        if not any(r["n_valid"] for r in rows):
            continue
        lines.append(f"  {measure}:")
        lines.append(
            f"    {'session':<30} {'n':>3} {'first':>8} {'mean':>8} {'last':>8} {'slope':>8} "
            f"{'Δmean':>8} {'Δfirst':>8}"
        )
        for r in rows:
            lines.append(
                f"    {_clip(r['name'], 30):<30} {r['n_valid']:>3} {_f(r['first'], '.3f'):>8} "
                f"{_f(r['mean'], '.3f'):>8} {_f(r['last'], '.3f'):>8} "
                f"{_f(r['slope_per_exercise'], '.3f'):>8} "
                f"{_f(r['mean_change_from_first_session'], '.3f'):>8} "
                f"{_f(r['first_change_from_first_session'], '.3f'):>8}"
            )
    return lines
