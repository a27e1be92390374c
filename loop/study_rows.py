"""The rows one session recording contributes to a study's tables.

Every figure comes from :func:`stimloop.loop.report.session_report` (the report
``stimloop analyze`` prints) or from the project's own functions on the recording's
arrays, so a study table and ``analyze`` of the same file agree exactly:

=========  ===============================================================================
level      one row per
=========  ===============================================================================
session    recording: the report's figures flattened (pulses, phase at the pulses, HR,
           HRV, EDA, stream health, truth scores), plus exercise and HBC summaries
pulse      attempted pulse: fired (phase estimate and true phase against its target) or
           refused (with the gate's reason)
exercise   exposure exercise, from the exposure markers (``docs/exposure.md``) scored
           with :func:`stimloop.dsp.exposure.exercise_physiology`
site       HBC site (:func:`stimloop.dsp.hbc.localise`): rank, HBC summary, pass
cycle      HBC cycle: HR change and HBC (:func:`stimloop.dsp.hbc.cycle_metrics`)
=========  ===============================================================================

Missing is ``None`` (an empty cell), never 0 or NaN. Times are LSL s (``*_t``) and s
from the recording's first sample (``t_s``); phases in rad, phase errors in degrees
(wrapped to (-180, 180]), as the report gives them.

What the recordings hold today: the demo and ``stimloop run`` record pulses, refusals,
HR and EDA, so session and pulse rows are full. Exercise rows appear when exposure
markers (JSON on any marker stream the session records, or ``user_marker`` texts) are
in the recording; site and cycle rows for a heart-brain-coupled localisation (its
``hbc`` stream: plan and site starts; the cycles completed in the file), the same
figures ``stimloop analyze`` reports. Other sessions leave those tables empty, with
their columns.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields
from typing import Any

import numpy as np

from stimloop.dsp.circular import wrap_phase
from stimloop.dsp.exposure import (
    EDALevel,
    ExerciseFigures,
    ExposureInputError,
    SCRTable,
    Series,
    exercise_figures,
)
from stimloop.dsp.hbc import CYCLE_DTYPE
from stimloop.dsp.heart import hrv_rmssd_sdnn
from stimloop.loop import catalog
from stimloop.loop.exposure_markers import parse_exercises
from stimloop.loop.hbc_analysis import recorded_localisation
from stimloop.loop.report import RecordedSession, session_report

#: Identity columns every row starts with.
KEY_COLUMNS = ("file", "participant", "session")
#: The report's sections flattened into the session row (``pulses_delivered``, ...).
REPORT_SECTIONS = ("pulses", "heart", "eda", "health", "engine", "truth")

PULSE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("index", "int"), ("outcome", "str"), ("reason", "str"), ("t", "float"),
    ("t_s", "float"), ("target_phase_rad", "float"), ("phase_est_rad", "float"),
    ("phase_true_rad", "float"), ("error_est_deg", "float"), ("error_true_deg", "float"),
    ("est_vs_true_deg", "float"), ("late_ms", "float"), ("decision_latency_ms", "float"),
    ("horizon_s", "float"), ("forecast_sd_s", "float"), ("confidence", "float"),
    ("amplitude_uv", "float"), ("control", "str"), ("error", "str"),
)  # fmt: skip
# ExerciseFigures' annotations are strings (postponed evaluation): its field types.
_FIGURE_TYPES = {"bool": "bool", "int": "int", "float": "float"}
EXERCISE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("number", "int"), ("label", "str"), ("ended", "bool"), ("t_s", "float"),
    ("expectancy", "float"), ("suds_start", "float"), ("suds_peak", "float"),
    ("suds_end", "float"), ("outcome", "float"), ("expectancy_violation", "float"),
    ("learned", "str"),
    *(
        (f.name, _FIGURE_TYPES.get(str(f.type), "str"))
        for f in fields(ExerciseFigures) if f.name not in ("number", "cues", "issues")
    ),
    ("issues", "str"),
)  # fmt: skip
SITE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("site", "str"), ("rank", "int"), ("best", "bool"), ("best_alt", "bool"),
    ("passes", "bool"), ("n_above", "int"), ("n_valid", "int"), ("mean_hbc", "float"),
    ("upper_hbc", "float"), ("upper_norm_hbc", "float"), ("rest_hbc", "float"),
    ("slope", "float"), ("threshold", "float"),
)  # fmt: skip
CYCLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("site", "str"), ("index", "int"), ("intensity", "float"), ("t_s", "float"),
    *((n, "bool" if CYCLE_DTYPE[n].kind == "b" else "float") for n in CYCLE_DTYPE.names),
)  # fmt: skip
#: Declared columns of the tables whose rows can be absent today (beyond KEY_COLUMNS).
COLUMNS = {"pulse": PULSE_COLUMNS, "exercise": EXERCISE_COLUMNS, "site": SITE_COLUMNS,
           "cycle": CYCLE_COLUMNS}  # fmt: skip
LEVELS = ("session", "pulse", "exercise", "site", "cycle")


def clean(value: Any) -> Any:
    """A cell: NaN/inf become None, numpy scalars Python ones."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def flatten(obj: Any, prefix: str) -> dict[str, Any]:
    """Nested dicts as ``prefix_key_subkey`` cells; lists become JSON text."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}_{k}"))
        return out
    if isinstance(obj, list | tuple):
        return {prefix: json.dumps([clean(v) for v in obj], default=float)}
    return {prefix: clean(obj)}


def recording_start(rec: RecordedSession) -> float:
    """The recording's first sample time, LSL s (``t_s`` counts from it)."""
    starts = [float(s.time_stamps[0]) for s in rec.streams.values() if len(s.time_stamps)]
    return min(starts, default=0.0)


def session_tables(rec: RecordedSession, key: dict[str, Any]) -> dict[str, list[dict]]:
    """Every row one recording contributes, by level.

    Parameters
    ----------
    rec : RecordedSession
        The recording (:func:`stimloop.loop.report.read_session`).
    key : dict
        ``file``, ``participant``, ``session``: prepended to every row.

    Returns
    -------
    dict of str to list of dict
        Rows of ``session`` (exactly one), ``pulse``, ``exercise``, ``site``, ``cycle``.
    """
    report = session_report(rec)
    t0 = recording_start(rec)
    exercises = exercise_rows(rec, t0)
    sites, cycles = hbc_rows(rec, t0)
    row = {**key, "status": "damaged" if rec.damage else "ok", "error": None,
           "damage": rec.damage, "name": report["session"]["name"], "prefix": rec.prefix,
           "recording_s": max((s["duration_s"] for s in report["streams"].values()),
                              default=0.0)}  # fmt: skip
    pulses = dict(report["pulses"])
    # Reasons differ between sessions: one JSON cell, not a column per reason.
    by_reason = pulses.pop("refused_by_reason")
    for section in REPORT_SECTIONS:
        if report.get(section):
            row.update(flatten(pulses if section == "pulses" else report[section], section))
    row["pulses_refused_by_reason"] = json.dumps(by_reason)
    row["events"] = json.dumps(report["events"])
    row["user_markers"] = len(report["user_markers"])
    row.update(hrv(rec))
    row["exercises"] = len(exercises)
    best = [s for s in sites if s["best"]]
    alt = [s for s in sites if s["best_alt"]]
    row["hbc_sites"] = len(sites)
    row["hbc_best_site"] = best[0]["site"] if best else None
    row["hbc_target_found"] = bool(best[0]["passes"]) if best else None
    row["hbc_best_site_alt"] = alt[0]["site"] if alt else None
    return {
        "session": [row],
        "pulse": [{**key, **r} for r in pulse_rows(rec, t0)],
        "exercise": [{**key, **r} for r in exercises],
        "site": [{**key, **r} for r in sites],
        "cycle": [{**key, **r} for r in cycles],
    }


def hrv(rec: RecordedSession) -> dict[str, Any]:
    """Whole-session HRV of the recorded beats (:func:`stimloop.dsp.heart.hrv_rmssd_sdnn`
    over the intervals of unflagged beats): ``hrv_rmssd_ms``, ``hrv_sdnn_ms``, None
    without an ECG."""
    s = rec.stream("heart_beats")
    if s is None:
        return {"hrv_rmssd_ms": None, "hrv_sdnn_ms": None}
    rows = [json.loads(r[0]) for r in s.time_series]
    ibi = np.array([np.nan if r.get("ibi_ms") is None else r["ibi_ms"] for r in rows], float)
    ok = np.array([r.get("flags", 0) == 0 for r in rows], bool)
    rmssd, sdnn = hrv_rmssd_sdnn(ibi, ok)
    return {"hrv_rmssd_ms": clean(rmssd), "hrv_sdnn_ms": clean(sdnn)}


def _deg(x: float) -> float | None:
    return clean(math.degrees(float(wrap_phase(x)))) if math.isfinite(x) else None


def pulse_rows(rec: RecordedSession, t0: float) -> list[dict[str, Any]]:
    """One row per attempted pulse, in decision order: fired or refused."""
    out: list[dict[str, Any]] = []
    k = 0
    # Phase-locked sessions have a target phase; a localisation's trains and a session
    # without a protocol have none (NaN, an empty cell).
    protocol = rec.config.get("protocol") or {}
    default_target = math.radians(protocol.get("target_phase_deg", math.nan))
    for e in rec.decisions:
        kind = e.get("event")
        if kind not in ("fired", "refused"):
            continue
        row: dict[str, Any] = {c: None for c, _ in PULSE_COLUMNS}
        row.update(outcome=kind, target_phase_rad=clean(e.get("target_phase_rad", default_target)))
        for name in ("decision_latency_ms", "horizon_s", "forecast_sd_s", "confidence",
                     "amplitude_uv", "control"):  # fmt: skip
            row[name] = clean(e.get(name))
        if kind == "fired":
            est, true = float(rec.pulse_phase_est[k]), float(rec.pulse_phase_true[k])
            tgt = float(rec.pulse_target[k])
            t = float(rec.pulse_t[k])
            k += 1
            row.update(
                t=t, phase_est_rad=clean(est), phase_true_rad=clean(true),
                target_phase_rad=clean(tgt), error_est_deg=_deg(est - tgt),
                error_true_deg=_deg(true - tgt), est_vs_true_deg=_deg(est - true),
                late_ms=clean((t - e["t_planned"]) * 1e3) if e.get("t_planned") else None,
            )  # fmt: skip
        else:
            err = e.get("error") or ""
            m = re.match(r"\[(\w+)\]", err)
            # A refused pulse never fired: its time is the one it was planned for.
            row.update(reason=m.group(1) if m else err or None, error=err or None,
                       t=clean(e.get("t_planned")))  # fmt: skip
        row["t_s"] = clean(row["t"] - t0) if row["t"] is not None else None
        row["index"] = len(out)
        out.append(row)
    return out


def marker_texts(rec: RecordedSession) -> list[tuple[float, Any]]:
    """Every marker that could be an exposure marker: the user markers the session
    logged, and the samples of every marker stream that is neither the session's own
    (catalog) nor a truth stream. The parser ignores what is not exposure JSON."""
    own = {e.source_id(rec.prefix) for e in catalog.entries()}
    own |= set(rec.truth_source_ids.values())
    out: list[tuple[float, Any]] = []
    dec = rec.stream("decisions")
    if dec is not None:
        for t, e in zip(dec.time_stamps, rec.decisions, strict=True):
            if e.get("event") == "user_marker" and e.get("text"):
                out.append((float(t), e["text"]))
    for sid, s in rec.streams.items():
        if sid in own or s.fmt != "string":
            continue
        out += [(float(t), row) for t, row in zip(s.time_stamps, s.time_series, strict=True)]
    return out


def _exposure_inputs(rec: RecordedSession) -> tuple[SCRTable, EDALevel, Series | None]:
    scr = rec.scrs()
    table = SCRTable(scr["onset_t"], scr["peak_t"], scr["amplitude_us"], scr["confirmed_t"],
                     scr["rise_time_s"])  # fmt: skip
    t, scl = rec.series("eda_level", 0)
    _, phasic = rec.series("eda_level", 1)
    hr_t, hr = rec.series("heart_hr", 0)
    return (
        table,
        EDALevel(t, scl, phasic if phasic.size else None),
        (Series(hr_t, hr) if hr_t.size else None),
    )


def exercise_rows(rec: RecordedSession, t0: float) -> list[dict[str, Any]]:
    """One row per exposure exercise: its ratings and
    :func:`~stimloop.dsp.exposure.exercise_figures` (default ``ExerciseParams``; no
    arousal index or band is recorded yet, so those figures are empty)."""
    log = parse_exercises(marker_texts(rec))
    if not log.exercises:
        return []
    scrs, level, hr = _exposure_inputs(rec)
    cue_t = log.cue_times()
    out = []
    prev_end = -math.inf
    for ex in log.exercises:
        row: dict[str, Any] = {c: None for c, _ in EXERCISE_COLUMNS}
        row.update(number=ex.number, label=ex.label, ended=ex.ended,
                   t_s=clean(ex.start_t - t0), expectancy=clean(ex.expectancy),
                   suds_start=clean(ex.suds_start), suds_peak=clean(ex.suds_peak),
                   suds_end=clean(ex.suds_end), outcome=clean(ex.outcome),
                   expectancy_violation=clean(ex.expectancy_violation),
                   learned=ex.learned or None)  # fmt: skip
        issues = list(ex.issues)
        if ex.ended:
            try:
                fig = exercise_figures(
                    ex.start_t, ex.end_t, scrs=scrs, level=level, hr=hr, cue_t=cue_t,
                    prev_end_t=prev_end, number=ex.number,
                )  # fmt: skip
            except ExposureInputError as exc:  # this exercise unscored, the others are
                issues.append(f"not scored: {exc}")
                row.update(start_t=ex.start_t, end_t=ex.end_t, duration_s=ex.duration_s)
            else:
                for name, value in fig.to_dict().items():
                    if name not in ("number", "cues", "issues"):
                        row[name] = clean(value)
                issues += list(fig.issues)
            prev_end = ex.end_t
        else:
            row.update(start_t=ex.start_t)
        row["issues"] = "; ".join(issues) or None
        out.append(row)
    return out


def hbc_rows(rec: RecordedSession, t0: float) -> tuple[list[dict], list[dict]]:
    """Site and cycle rows of a localisation recording: exactly what ``stimloop analyze``
    reports (:func:`stimloop.loop.hbc_analysis.recorded_localisation`: the cycles from
    the recorded plan and site starts, ``localise`` of the recorded 4 Hz HR)."""
    r = recorded_localisation(rec)
    if r is None:
        return [], []
    loc = r.localisation
    sites = []
    for rank, s in enumerate(loc.ranking, start=1):
        sites.append({
            "site": s.site, "rank": rank, "best": s.site == loc.best_site,
            "best_alt": s.site == loc.best_site_alt, "passes": bool(s.passes),
            "n_above": s.n_above, "n_valid": s.n_valid, "mean_hbc": clean(s.mean_hbc),
            "upper_hbc": clean(s.upper_hbc), "upper_norm_hbc": clean(loc.upper_norm_hbc[s.site]),
            "rest_hbc": clean(s.rest_hbc), "slope": clean(s.slope),
            "threshold": r.params.threshold,
        })  # fmt: skip
    rows = []
    for c, m in zip(r.cycles, r.metrics, strict=True):
        row = {"site": c.site, "index": c.index, "intensity": c.intensity,
               "t_s": clean(c.onset_s - t0)}  # fmt: skip
        row.update({n: clean(m[n]) for n in CYCLE_DTYPE.names})
        rows.append(row)
    return sites, rows
