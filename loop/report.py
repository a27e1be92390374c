"""``stimloop analyze``: the report of a recorded session, from its XDF file alone.

Everything a session did is in its recording (inputs, derived streams, every decision,
the config), so the report needs nothing else: pulses delivered and refused (by reason),
the phase estimate at each pulse, stream health, heart rate and skin conductance.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stimloop.dsp.circular import circular_stats, phase_error_stats
from stimloop.dsp.heart import BEAT_ARTIFACT
from stimloop.dsp.series import value_at
from stimloop.loop import catalog
from stimloop.loop.errors import SessionError
from stimloop.loop.evaluation import evaluate
from stimloop.loop.exposure_analysis import (
    ExposureAnalysis,
    analyse_exposure,
    between_sessions,
    format_between_sessions,
    format_exposure,
)
from stimloop.loop.hbc_analysis import format_hbc, hbc_analysis
from stimloop.stream.xdf import XDFStream, read_xdf


def _text(stream: XDFStream, key: str) -> str:
    return stream.info.findtext(key) or ""


@dataclass
class RecordedSession:
    """The arrays of one session recording, for the report and its figure.

    Times are the recording's LSL timestamps in s, as recorded: the session, its inputs
    and the recorder share one machine's clock (a session records on its own machine).

    Attributes
    ----------
    path : str
        The XDF file.
    damage : str or None
        What was wrong with a damaged file (its data up to the damage are kept).
    prefix : str
        The session's source_id prefix (its streams are ``{prefix}-{suffix}``).
    config : dict
        The session config, from the decision stream's header.
    truth_source_ids : dict of str to str
        Ground-truth streams by role (simulator or replay); empty for a live session.
    decisions : list of dict
        Every decision and event the session published, in order.
    streams : dict of str to XDFStream
        Every recorded stream by source_id.
    pulse_t : ndarray
        Fire times of the delivered pulses, s.
    pulse_target : ndarray
        Each pulse's own target phase, rad (as decided: a random-phase control
        differs per pulse).
    pulse_phase_est : ndarray
        The session's phase estimate at each pulse, rad (NaN where none was published).
    pulse_phase_true : ndarray
        The truth stream's phase at each pulse, rad (NaN without a recorded truth).
    decision_t : ndarray
        The LSL timestamp of each decision (when the session published it), s.
    """

    path: str
    damage: str | None
    prefix: str
    config: dict[str, Any]
    truth_source_ids: dict[str, str]
    decisions: list[dict[str, Any]]
    streams: dict[str, XDFStream]
    pulse_t: np.ndarray
    pulse_target: np.ndarray
    pulse_phase_est: np.ndarray
    pulse_phase_true: np.ndarray
    decision_t: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def pulse_phase(self) -> np.ndarray:
        """True phase where known, the estimate otherwise (as the live window shows)."""
        return np.where(np.isfinite(self.pulse_phase_true), self.pulse_phase_true,
                        self.pulse_phase_est)  # fmt: skip

    def stream(self, key: str) -> XDFStream | None:
        """The session's derived stream ``key`` of the catalog (e.g. ``"heart_hr"``)."""
        return catalog.find(self.streams, key, self.prefix)

    def series(self, key: str, column: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Times (s) and one column of a numeric session stream; empty when absent."""
        s = self.stream(key)
        if s is None or not len(s.time_stamps):
            return np.empty(0), np.empty(0)
        data = np.asarray(s.time_series, dtype=float)
        if data.ndim != 2 or data.shape[1] <= column:
            return np.empty(0), np.empty(0)
        return np.asarray(s.time_stamps, dtype=float), data[:, column]

    def truth_series(self, role: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Times (s) and rows of the recorded truth stream of ``role``, or None."""
        s = self.streams.get(self.truth_source_ids.get(role, ""))
        if s is None:
            return None
        n = len(s.time_stamps)
        data = np.asarray(s.time_series, dtype=float).reshape(n, -1 if n else s.n_channels)
        return np.asarray(s.time_stamps, dtype=float), data

    def input_span(self, role: str) -> tuple[float, float] | None:
        """First and last timestamp (s) of the recorded input stream of ``role``."""
        src = self.config.get("sources", {}).get(role)
        s = self.streams.get(src["source_id"]) if src else None
        if s is None or not len(s.time_stamps):
            return None
        return float(s.time_stamps[0]), float(s.time_stamps[-1])

    def beats(self) -> dict[str, np.ndarray]:
        """The heart stage's detections: ``t`` (R peak, s), ``confirmed_t`` (s), ``hr_bpm``,
        ``flags``, ``beat_class`` (2: an artifact, not a beat); empty without a heart
        stream."""
        s = self.stream("heart_beats")
        rows = []
        if s is not None:
            sid = s.text("source_id")
            rows = [_json_object(r[0], f"{self.path}: beat {k} of stream {sid!r}", BEAT_FIELDS)
                    for k, r in enumerate(s.time_series)]  # fmt: skip
        t = np.asarray(s.time_stamps, float) if s is not None else np.empty(0)

        def col(k: str) -> np.ndarray:
            return np.array([np.nan if r.get(k) is None else r[k] for r in rows], float)

        return {"t": t, "confirmed_t": col("confirmed_t"), "hr_bpm": col("hr_bpm"),
                "flags": col("flags"), "beat_class": col("beat_class")}  # fmt: skip

    def scrs(self) -> dict[str, np.ndarray]:
        """The EDA stage's SCRs by channel label (``onset_t``, ``amplitude_us``, ...)."""
        s = self.stream("eda_scr")
        labels = [c.label for c in catalog.get("eda_scr").channels]
        if s is None or not len(s.time_stamps):
            return {k: np.empty(0) for k in labels}
        data = np.asarray(s.time_series, dtype=float)
        return {k: data[:, i] for i, k in enumerate(labels)}

    def summary_marker(self) -> dict[str, Any] | None:
        """The session's own end-of-run figures (``session_summary`` marker), if recorded."""
        return next((e for e in reversed(self.decisions) if e.get("event") == "session_summary"),
                    None)  # fmt: skip


def read_session(path: str | Path) -> RecordedSession:
    """Read a session recording into the arrays its report and figure need.

    Parameters
    ----------
    path : str or Path
        XDF file written by a session (``[recording] path`` in its config, or
        ``stimloop demo --record``).

    Raises
    ------
    stimloop.stream.xdf.XDFError
        The file is missing or not XDF; a damaged file is read up to the damage.
    SessionError
        The file holds no session decision stream (it is not a session recording).
    """
    f = read_xdf(path)
    by_id = {_text(s, "source_id"): s for s in f.streams}
    decisions = next((s for s in f.streams if s.info.find("desc/session_config") is not None), None)
    if decisions is None:
        raise SessionError(
            f"{path} has no session decision stream (no stream with desc/session_config); "
            "record a session with [recording] path in its config"
        )
    sid = _text(decisions, "source_id")
    prefix = sid.removesuffix(f"-{catalog.get('decisions').suffix}")
    config = _json_object(decisions.info.findtext("desc/session_config"),
                          f"{path}: the session_config of stream {sid!r}")  # fmt: skip
    truth_ids = _json_object(decisions.info.findtext("desc/truth_source_ids") or "{}",
                             f"{path}: the truth_source_ids of stream {sid!r}")  # fmt: skip
    events = [_json_object(row[0], f"{path}: decision {k} of stream {sid!r}", DECISION_FIELDS)
              for k, row in enumerate(decisions.time_series)]  # fmt: skip
    fired = [e for e in events if e.get("event") == "fired"]
    for k, e in enumerate(events):
        t = e.get("t_trigger")
        if e.get("event") == "fired" and (isinstance(t, bool) or not isinstance(t, int | float)):
            raise SessionError(f"{path}: decision {k} of stream {sid!r} is a fired pulse without "
                               f"a numeric t_trigger (LSL s): {str(e)[:80]!r}")  # fmt: skip
    pulse_t = np.array([e["t_trigger"] for e in fired], float)
    protocol = _recorded_protocol(config, f"{path}: the session_config of stream {sid!r}")
    default_target = math.radians(protocol.get("target_phase_deg", math.nan))
    target = np.array([e.get("target_phase_rad", default_target) for e in fired], float)
    est = {round(e["t_trigger"], 6): e.get("phase_rad") for e in events
           if e.get("event") == "pulse_phase" and e.get("t_trigger") is not None}  # fmt: skip
    pulse_est = np.array(
        [np.nan if est.get(round(t, 6)) is None else est[round(t, 6)] for t in pulse_t], float
    )
    rec = RecordedSession(
        path=str(path), damage=f.damage, prefix=prefix, config=config,
        truth_source_ids=truth_ids, decisions=events, streams=by_id, pulse_t=pulse_t,
        pulse_target=target, pulse_phase_est=pulse_est,
        pulse_phase_true=np.full(pulse_t.size, np.nan),
        decision_t=np.asarray(decisions.time_stamps, float),
    )  # fmt: skip
    truth = rec.truth_series("eeg")
    if truth is not None and truth[0].size:
        rec.pulse_phase_true = value_at(truth[0], truth[1][:, 0], pulse_t)
    return rec


def _recorded_protocol(config: dict[str, Any], what: str) -> dict[str, Any]:
    """The recorded ``[protocol]`` table, checked for what the report reads of it."""
    protocol = config.get("protocol") or {}
    if not isinstance(protocol, dict):
        raise SessionError(f"{what}: protocol is {protocol!r}, expected a table")
    if protocol.get("kind") == "phase_locked":
        target, control = protocol.get("target_phase_deg"), protocol.get("control")
        if isinstance(target, bool) or not isinstance(target, int | float):
            raise SessionError(f"{what}: the phase-locked protocol has target_phase_deg = "
                               f"{target!r}, expected a number (deg)")  # fmt: skip
        if not isinstance(control, str):
            raise SessionError(f"{what}: the phase-locked protocol has control = {control!r}, "
                               "expected a name ('none', 'random_phase')")  # fmt: skip
    return protocol


#: The fields of a decision the reports read, by the type they must have when present
#: (null is always allowed): a number, or a text.
DECISION_FIELDS: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(("t_trigger", "t_planned", "t_event", "phase_rad", "target_phase_rad",
                     "repeats", "decision_latency_ms", "horizon_s", "forecast_sd_s",
                     "confidence", "amplitude_uv", "count"), (int, float)),
    **dict.fromkeys(("event", "error", "reason", "role", "text", "control", "of"), str),
}  # fmt: skip
#: Likewise for a beat of the heart stage.
BEAT_FIELDS: dict[str, type | tuple[type, ...]] = dict.fromkeys(
    ("beat_class", "hr_bpm", "confirmed_t", "flags", "ibi_ms", "nn_ms"), (int, float)
)


def _json_object(
    text: str, what: str, fields: dict[str, type | tuple[type, ...]] | None = None
) -> dict[str, Any]:
    """``text`` parsed as a JSON object whose ``fields`` have their types; a SessionError
    naming ``what`` otherwise (a damaged or hand-edited recording must not end the report
    in a traceback)."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError) as exc:
        value, why = None, f"not JSON ({exc})"
    else:
        why = f"a JSON {type(value).__name__}"
    if not isinstance(value, dict):
        raise SessionError(f"{what} is {why}, expected a JSON object: {str(text)[:80]!r}")
    for key, kind in (fields or {}).items():
        v = value.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, kind)):
            want = "a number" if kind == (int, float) else "a text"
            raise SessionError(f"{what}: {key} = {v!r:.40}, expected {want}")
    return value


#: Progress callback of a long analysis: (step name, fraction done 0-1).
Progress = Callable[[str, float], None]


@dataclass
class SessionAnalysis:
    """A recording, its report, and the arrays behind the report's figures.

    Attributes
    ----------
    rec : RecordedSession
    report : dict
        :func:`session_report`.
    exposure : ExposureAnalysis or None
        The exposure section's arrays (None without exposure markers).
    """

    rec: RecordedSession
    report: dict[str, Any]
    exposure: ExposureAnalysis | None


def session_report(path: str | Path | RecordedSession) -> dict[str, Any]:
    """Summarise a session recording: every figure comes from the file.

    Parameters
    ----------
    path : str, Path or RecordedSession
        XDF file written by a session, or that file already read by
        :func:`read_session`.

    Returns
    -------
    dict
        ``file``, ``damage`` (None if intact), ``session`` (name, prefix, config),
        ``streams`` (per source_id: type, samples, duration s, effective rate Hz),
        ``pulses`` (delivered, refused by reason, phase estimate at the pulses against
        each pulse's target), ``events`` (counts of health events and user markers),
        ``health`` and ``engine`` (the session's own end-of-run figures, when recorded),
        ``heart`` (HR bpm), ``eda`` (SCL µS, SCR count and rate), ``derived`` (samples of
        every catalog stream recorded), ``truth`` (scores against the recorded ground
        truth, :func:`~stimloop.loop.evaluation.evaluate`; empty without truth), and, when
        the recording holds them, ``hbc`` (the localisation,
        :func:`~stimloop.loop.hbc_analysis.hbc_analysis`) and ``exposure`` (exercises,
        arousal and cues, :func:`~stimloop.loop.exposure_analysis.exposure_analysis`).

    Raises
    ------
    stimloop.stream.xdf.XDFError
        The file is missing or not XDF; a damaged file is reported up to the damage.
    SessionError
        The file holds no session decision stream (it is not a session recording).
    """
    return analyse_session(path).report


def analyse_session(
    path: str | Path | RecordedSession, progress: Progress | None = None
) -> SessionAnalysis:
    """:func:`session_report` with the arrays of its figures, step by step.

    Parameters
    ----------
    path : str, Path or RecordedSession
        As for :func:`session_report`.
    progress : callable, optional
        Called with (step, fraction done) before each step: reading the file (the XDF
        reader reports no progress of its own, so reading is one step), the streams,
        the truth scores, the localisation, the exposure analysis.
    """

    def step(name: str, done: float) -> None:
        if progress is not None:
            progress(name, done)

    if not isinstance(path, RecordedSession):
        step(f"reading {Path(path).name}", 0.0)
    rec = path if isinstance(path, RecordedSession) else read_session(path)
    step("streams and events", 0.4)
    config, events = rec.config, rec.decisions
    kinds = _event_counts(events)
    refused = [e for e in events if e.get("event") == "refused"]
    reasons = Counter(
        m.group(1) if (m := re.match(r"\[(\w+)\]", e.get("error") or "")) else e.get("error") or "?"
        for e in refused
    )
    summary = rec.summary_marker() or {}
    report: dict[str, Any] = {
        "file": rec.path,
        "damage": rec.damage,
        "session": {
            "name": config.get("name"),
            "prefix": rec.prefix,
            "config": config,
            **_span(rec),
        },
        "truth_source_ids": rec.truth_source_ids,
        "streams": _stream_table(rec),
        "pulses": {
            "delivered": int(rec.pulse_t.size),
            "refused": len(refused),
            "refused_by_reason": dict(reasons),
            **_phase_at_pulses(rec),
        },
        "events": {k: kinds[k] for k in sorted(kinds) if k not in ("fired", "refused")},
        "user_markers": [e.get("text") for e in events if e.get("event") == "user_marker"],
        "health": summary.get("streams"),
        "engine": summary.get("engine"),
        "derived": {
            e.key: len(s.time_stamps)
            for e in catalog.entries()
            if (s := rec.stream(e.key)) is not None
        },
    }
    if cal := _phase_calibration(rec):
        report["phase_calibration"] = cal
    step("scores against the truth", 0.5)
    report["truth"] = evaluate(rec)
    report.update(_physiology(rec))
    step("heart-brain coupling", 0.6)
    if (hbc := hbc_analysis(rec)) is not None:
        # The alerts with the time the session raised them (the decision's timestamp).
        stops = [{**e, "t": float(t)} for e, t in zip(rec.decisions, rec.decision_t, strict=True)
                 if e.get("event") == "alert"]  # fmt: skip
        report["hbc"] = {**hbc, "stops": stops, "threshold": _hbc_threshold(rec)}
    step("exposure", 0.75)
    exposure = analyse_exposure(rec)
    if exposure is not None:
        report["exposure"] = exposure.report
    step("done", 1.0)
    return SessionAnalysis(rec, report, exposure)


def _event_counts(events: list[dict[str, Any]]) -> Counter[str]:
    """How many of each event happened. A stream-health event published at most once a
    second carries how many of it were held back since (``repeats``); what was still held
    when the session ended is in a ``held_back`` marker (``of``, ``count``)."""
    kinds: Counter[str] = Counter()
    for e in events:
        if e.get("event") == "held_back":  # a count of other events, not an event
            kinds[e.get("of") or "?"] += _count(e.get("count"))
        else:
            kinds[e.get("event") or "?"] += 1 + _count(e.get("repeats"))
    return kinds


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _phase_calibration(rec: RecordedSession) -> dict[str, Any] | None:
    """The session-start phase calibration as recorded: its last ``phase_calibration``
    marker (the band in force), with the LSL time it was published (``t``, s), the
    first pulse after it (``first_pulse_t``) and the number of markers."""
    found = [{**e, "t": float(t)} for e, t in zip(rec.decisions, rec.decision_t, strict=True)
             if e.get("event") == "phase_calibration"]  # fmt: skip
    if not found:
        return None
    last = found[-1]
    first_pulse = rec.pulse_t[0] if rec.pulse_t.size else None
    return {**last, "markers": len(found),
            "first_pulse_t": None if first_pulse is None else float(first_pulse)}  # fmt: skip


def compare_recordings(analyses: Sequence[SessionAnalysis]) -> dict[str, Any]:
    """Between-session comparison of the exercises of several exposure recordings.

    Parameters
    ----------
    analyses : sequence of SessionAnalysis
        In chronological order (the first is the reference).

    Returns
    -------
    dict
        ``sessions`` (the names used: file names, made unique) and, per measure of
        :data:`~stimloop.loop.exposure_analysis.COMPARED_MEASURES`, one row per session
        (:func:`~stimloop.dsp.exposure.compare_sessions`); recordings without exercises
        are listed under ``without_exercises``.
    """
    named: dict[str, ExposureAnalysis] = {}
    without = []
    for a in analyses:
        name = Path(a.rec.path).name
        k = 2
        while name in named:
            name = f"{Path(a.rec.path).name} ({k})"
            k += 1
        if a.exposure is None or not a.exposure.figures:
            without.append(name)
        else:
            named[name] = a.exposure
    return {"sessions": list(named), "without_exercises": without,
            "measures": between_sessions(named) if named else {}}  # fmt: skip


def _span(rec: RecordedSession) -> dict[str, Any]:
    """``start_t`` (first timestamp of any stream, LSL s; the report's figures count time
    from it) and ``span_s`` (to the last timestamp of any stream, s)."""
    firsts = [float(s.time_stamps[0]) for s in rec.streams.values() if len(s.time_stamps)]
    lasts = [float(s.time_stamps[-1]) for s in rec.streams.values() if len(s.time_stamps)]
    if not firsts:
        return {"start_t": None, "span_s": 0.0}
    return {"start_t": min(firsts), "span_s": max(lasts) - min(firsts)}


def _hbc_threshold(rec: RecordedSession) -> float | None:
    """The coupling threshold the localisation ran with (its recorded plan)."""
    s = rec.stream("hbc")
    for row in s.time_series if s is not None else []:
        try:
            e = json.loads(row[0])
        except (ValueError, TypeError):
            continue
        if isinstance(e, dict) and e.get("event") == "plan" and e.get("threshold") is not None:
            return float(e["threshold"])
    return None


def _phase_at_pulses(rec: RecordedSession) -> dict[str, Any]:
    """Phase-locked sessions: the estimate at each pulse against its own target."""
    protocol = rec.config.get("protocol") or {}
    if protocol.get("kind") != "phase_locked":
        return {"kind": protocol.get("kind")}
    return {
        "kind": "phase_locked",
        "target_phase_deg": protocol["target_phase_deg"],
        "control": protocol["control"],
        "estimate_at_fire": circular_stats(rec.pulse_phase_est),
        "estimate_error_at_fire": phase_error_stats(rec.pulse_phase_est, rec.pulse_target),
        "phase_histogram": phase_histogram(rec),
    }


#: Bins of the delivered-phase histogram over one cycle.
PHASE_BINS = 18


def phase_histogram(rec: RecordedSession) -> dict[str, Any]:
    """The delivered phases binned over the cycle (what the report's polar figure draws).

    Returns
    -------
    dict
        ``source`` (``"true"`` when every pulse has a recorded true phase, ``"estimate"``
        when none has, else ``"true where recorded, else the estimate"``), ``n_true``,
        ``bin_deg`` and ``edges_deg`` (bins from -180°), ``counts`` (pulses per bin; NaN
        phases are left out), and :func:`~stimloop.dsp.circular.circular_stats` of the
        phases with ``resultant`` (mean resultant length R).
    """
    ph = rec.pulse_phase
    ok = np.isfinite(ph)
    n_true = int(np.isfinite(rec.pulse_phase_true).sum())
    source = ("true" if n_true == ph.size and ph.size else "estimate" if n_true == 0
              else "true where recorded, else the estimate")  # fmt: skip
    edges = np.linspace(-180.0, 180.0, PHASE_BINS + 1)
    deg = np.degrees(np.angle(np.exp(1j * ph[ok])))
    counts = np.histogram(deg, bins=edges)[0]
    stats = circular_stats(ph)
    resultant = float(np.abs(np.mean(np.exp(1j * ph[ok])))) if ok.any() else None
    return {
        "source": source,
        "n_true": n_true,
        "bin_deg": 360.0 / PHASE_BINS,
        "edges_deg": edges.tolist(),
        "counts": counts.tolist(),
        **stats,
        "resultant": resultant,
    }


def _stream_table(rec: RecordedSession) -> dict[str, dict[str, Any]]:
    out = {}
    for sid, s in rec.streams.items():
        n = len(s.time_stamps)
        span = float(s.time_stamps[-1] - s.time_stamps[0]) if n > 1 else 0.0
        out[sid] = {
            "type": _text(s, "type"),
            "samples": n,
            "duration_s": span,
            "effective_rate_hz": (n - 1) / span if span > 0 else None,
        }
    return out


def _physiology(rec: RecordedSession) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hr_t, bpm = rec.series("heart_hr")
    if hr_t.size:
        valid = bpm[np.isfinite(bpm)]
        out["heart"] = {
            # Detections of the artifact class are in the beat stream but are not beats.
            "beats": int((rec.beats()["beat_class"] != BEAT_ARTIFACT).sum()),
            "hr_mean_bpm": float(valid.mean()) if valid.size else None,
            "hr_min_bpm": float(valid.min()) if valid.size else None,
            "hr_max_bpm": float(valid.max()) if valid.size else None,
            "valid_fraction": valid.size / hr_t.size,
        }
    level_t, scl = rec.series("eda_level")
    if level_t.size:
        n_scr = len(rec.scrs()["onset_t"])
        minutes = max(float(level_t[-1] - level_t[0]) / 60.0, 1e-9)
        out["eda"] = {
            "scl_median_us": float(np.nanmedian(scl)) if np.isfinite(scl).any() else None,
            "scr_count": n_scr,
            "scr_per_min": n_scr / minutes,
        }
    return out


def report_json(obj: Any, indent: int | None = None) -> str:
    """``obj`` (a report, a summary) as strict JSON text: NaN and infinities, which JSON
    does not have and strict readers (JavaScript, jq --seq, R, Go) refuse, become null,
    as a missing figure is everywhere else in the report; numpy scalars and arrays
    become numbers and lists.

    Parameters
    ----------
    obj : Any
        Dicts, lists, tuples, numbers, strings, None, numpy scalars and arrays.
    indent : int, optional
        As for :func:`json.dumps`.
    """
    return json.dumps(_finite(obj), indent=indent, allow_nan=False, default=str)


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def format_report(report: dict[str, Any]) -> str:
    """The report as text for a terminal (identifiers are never shortened)."""
    p = report["pulses"]
    by_reason = ", ".join(f"{k}: {v}" for k, v in p["refused_by_reason"].items())
    what = {"phase_locked": "pulses", "hbc": "trains"}.get(p["kind"], "pulses")
    lines = [
        f"session {report['session']['name']!r}: {report['file']}",
        "" if report["damage"] is None else f"file damaged: {report['damage']}",
        f"{what}: {p['delivered']} delivered, {p['refused']} refused"
        + (f" ({by_reason})" if by_reason else ""),
    ]
    if est := p.get("estimate_error_at_fire"):
        lines.append(
            f"target {p['target_phase_deg']:g}° ({p['control']}); estimated phase at the "
            f"pulses minus each pulse's target: mean {_num(est['mean_deg'], '.1f')}°, circular "
            f"SD {_num(est['sd_deg'], '.1f')}° (n = {est['n']})"
        )
    if cal := report.get("phase_calibration"):
        lines.append(_calibration_line(cal))
    lines += ["", *_streams_lines(report["streams"])]
    if report["events"]:
        lines += ["", "events: " + ", ".join(f"{k} {v}" for k, v in report["events"].items())]
    if (h := report.get("heart")) and h["hr_mean_bpm"] is not None:
        lines.append(
            f"heart rate: {h['beats']} beats, mean {h['hr_mean_bpm']:.1f} bpm (range "
            f"{h['hr_min_bpm']:.1f}–{h['hr_max_bpm']:.1f}), valid {100 * h['valid_fraction']:.0f} %"
        )
    elif h:
        lines.append(f"heart rate: {h['beats']} beats, no valid HR (valid 0 %)")
    if e := report.get("eda"):
        scl = "-" if e["scl_median_us"] is None else f"{e['scl_median_us']:.2f} µS"
        lines.append(
            f"skin conductance: SCL median {scl}, {e['scr_count']} SCRs "
            f"({e['scr_per_min']:.1f}/min)"
        )
    lines += _truth_lines(report["truth"])
    if "hbc" in report:
        lines += format_hbc(report["hbc"])
    if "exposure" in report:
        lines += format_exposure(report["exposure"])
    return "\n".join(line for line in lines if line is not None)


def _num(v: float | None, fmt: str) -> str:
    """A figure for the terminal; "-" for a missing one (None, or NaN: no pulses)."""
    return "-" if v is None or not math.isfinite(v) else format(v, fmt)


def _calibration_line(cal: dict[str, Any]) -> str:
    figures = (
        f"IAF {_num(cal.get('iaf_hz'), '.2f')} Hz, SNR {_num(cal.get('snr_db'), '.1f')} dB, "
        f"expected phase SD {_num(cal.get('expected_sd_deg'), '.0f')}°, "
        f"{cal.get('recommendation')}"
    )
    how = " after the operator's confirm" if cal.get("confirmed") else ""
    if cal.get("band_hz"):
        lo, hi = cal["band_hz"]
        return f"phase calibration: band {lo:.2f}-{hi:.2f} Hz locked{how} ({figures})"
    return f"phase calibration: {cal.get('state')}{how} ({figures})"


def format_comparison(cmp: dict[str, Any]) -> str:
    """:func:`compare_recordings` as text for a terminal."""
    lines = format_between_sessions(cmp["measures"]) if cmp["measures"] else []
    if cmp["without_exercises"]:
        lines.append("without exercises: " + ", ".join(cmp["without_exercises"]))
    return "\n".join(lines)


def _streams_lines(streams: dict[str, dict[str, Any]]) -> list[str]:
    w = max([6, *(len(sid) for sid in streams)])
    lines = [f"{'stream':<{w}} {'type':<10} {'samples':>9} {'s':>8} {'Hz':>9}"]
    for sid, s in streams.items():
        rate = "-" if s["effective_rate_hz"] is None else f"{s['effective_rate_hz']:.2f}"
        lines.append(
            f"{sid:<{w}} {s['type']:<10} {s['samples']:>9} {s['duration_s']:>8.1f} {rate:>9}"
        )
    return lines


def _truth_lines(truth: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if p := truth.get("pulses"):
        err = p["true_phase_error"]
        lines += ["", f"true phase at the pulses minus each pulse's target (recorded truth): "
                  f"mean {_num(err['mean_deg'], '.1f')}°, circular SD "
                  f"{_num(err['sd_deg'], '.1f')}° "
                  f"(n = {err['n']})"]  # fmt: skip
    if h := truth.get("heart"):
        f1 = "-" if h["f1"] is None else f"{h['f1']:.4f}"
        lines.append(
            f"beats vs truth: {h['beats_detected']} detected, {h['beats_true']} true, "
            f"{h['true_positives']} matched, {h['false_positives']} false, "
            f"{h['false_negatives']} missed (F1 {f1})"
        )
    if e := truth.get("eda"):
        f1 = "-" if e["f1"] is None else f"{e['f1']:.3f}"
        lines.append(
            f"SCRs vs truth: {e['scr_detected']} detected, {e['scr_true']} true, {e['tp']} "
            f"matched, {e['fp']} false, {e['fn']} missed (F1 {f1})"
        )
    return lines


def figure_data(rec: RecordedSession) -> dict[str, Any]:
    """The arrays the offline figure draws (``stimloop.gui.figure``), from a recording.

    Times are in s from the recording's first sample. ``eda`` is the skin conductance
    the SCRs were scored on (SCL + phasic), so an SCR mark sits at the foot of its rise.
    """
    starts = [float(s.time_stamps[0]) for s in rec.streams.values() if len(s.time_stamps)]
    ends = [float(s.time_stamps[-1]) for s in rec.streams.values() if len(s.time_stamps)]
    t0 = min(starts, default=0.0)
    hr_t, hr = rec.series("heart_hr", 0)
    eda_t, scl = rec.series("eda_level", 0)
    _, phasic = rec.series("eda_level", 1)
    amp_t, amp = rec.series("phase", 1)
    _, conf = rec.series("phase", 2)
    scr_t = rec.scrs()["onset_t"]
    eda = scl + phasic
    return {
        "t_end": max(ends, default=t0) - t0,
        "hr_t": hr_t - t0, "hr": hr, "eda_t": eda_t - t0, "eda": eda,
        "alpha_t": amp_t - t0, "alpha": amp, "confidence": conf,
        "scr_t": scr_t - t0, "scr_level": value_at(eda_t, eda, scr_t),
        "pulse_t": rec.pulse_t - t0, "pulse_phase": rec.pulse_phase,
        "n_true": int(np.isfinite(rec.pulse_phase_true).sum()),
        "target_deg": float(rec.config.get("protocol", {}).get("target_phase_deg", np.nan)),
        "name": str(rec.config.get("name")), "file_name": Path(rec.path).name,
        "refused": sum(1 for e in rec.decisions if e.get("event") == "refused"),
        "damage": rec.damage or "",
    }  # fmt: skip
