"""``stimloop analyze``: the report of a recorded session, from its XDF file alone.

Everything a session did is in its recording (inputs, derived streams, every decision,
the config), so the report needs nothing else: pulses delivered and refused (by reason),
the phase estimate at each pulse, stream health, heart rate and skin conductance.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stimloop.dsp.circular import circular_stats
from stimloop.dsp.series import value_at
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
    pulse_phase_est : ndarray
        The session's phase estimate at each pulse, rad (NaN where none was published).
    pulse_phase_true : ndarray
        The truth stream's phase at each pulse, rad (NaN without a recorded truth).
    """

    path: str
    damage: str | None
    config: dict[str, Any]
    truth_source_ids: dict[str, str]
    decisions: list[dict[str, Any]]
    streams: dict[str, XDFStream]
    pulse_t: np.ndarray
    pulse_phase_est: np.ndarray
    pulse_phase_true: np.ndarray

    @property
    def pulse_phase(self) -> np.ndarray:
        """True phase where known, the estimate otherwise (as the live window shows)."""
        return np.where(np.isfinite(self.pulse_phase_true), self.pulse_phase_true,
                        self.pulse_phase_est)  # fmt: skip

    def stream(self, suffix: str) -> XDFStream | None:
        """The session's own stream ``{prefix}-{suffix}`` (e.g. ``"heart-hr"``), if recorded."""
        return next((s for sid, s in self.streams.items() if sid.endswith(f"-{suffix}")), None)

    def series(self, suffix: str, column: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Times (s) and one column of a numeric session stream; empty when absent."""
        s = self.stream(suffix)
        if s is None or not len(s.time_stamps):
            return np.empty(0), np.empty(0)
        data = np.asarray(s.time_series, dtype=float)
        if data.ndim != 2 or data.shape[1] <= column:
            return np.empty(0), np.empty(0)
        return np.asarray(s.time_stamps, dtype=float), data[:, column]


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
    ValueError
        The file holds no session decision stream (it is not a session recording).
    """
    f = read_xdf(path)
    by_id = {_text(s, "source_id"): s for s in f.streams}
    decisions = next((s for s in f.streams if s.info.find("desc/session_config") is not None), None)
    if decisions is None:
        raise ValueError(
            f"{path} has no session decision stream (no stream with desc/session_config); "
            "record a session with [recording] path in its config"
        )
    config = json.loads(decisions.info.findtext("desc/session_config"))
    truth_ids = json.loads(decisions.info.findtext("desc/truth_source_ids") or "{}")
    events = [json.loads(row[0]) for row in decisions.time_series]
    pulse_t = np.array([e["t_trigger"] for e in events if e.get("event") == "fired"], float)
    est = {round(e["t_trigger"], 6): e.get("phase_rad") for e in events
           if e.get("event") == "pulse_phase" and e.get("t_trigger") is not None}  # fmt: skip
    pulse_est = np.array(
        [np.nan if est.get(round(t, 6)) is None else est[round(t, 6)] for t in pulse_t], float
    )
    pulse_true = np.full(pulse_t.size, np.nan)
    truth = by_id.get(truth_ids.get("eeg", ""))
    if truth is not None and len(truth.time_stamps):
        phase = np.asarray(truth.time_series, dtype=float)[:, 0]
        pulse_true = value_at(np.asarray(truth.time_stamps, float), phase, pulse_t)
    return RecordedSession(
        path=str(path), damage=f.damage, config=config, truth_source_ids=truth_ids,
        decisions=events, streams=by_id, pulse_t=pulse_t, pulse_phase_est=pulse_est,
        pulse_phase_true=pulse_true,
    )  # fmt: skip


def session_report(path: str | Path | RecordedSession) -> dict[str, Any]:
    """Summarise a session recording.

    Parameters
    ----------
    path : str, Path or RecordedSession
        XDF file written by a session, or that file already read by
        :func:`read_session`.

    Returns
    -------
    dict
        ``file``, ``damage`` (None if intact), ``session`` (name and config),
        ``streams`` (per source_id: type, samples, duration s, effective rate Hz),
        ``pulses`` (delivered, refused by reason, phase estimate at the pulses and,
        when the truth was recorded, the true phase at the pulses), ``events`` (counts
        of health events and user markers), ``heart`` (HR bpm) and ``eda`` (SCL µS, SCR
        count and rate).

    Raises
    ------
    stimloop.stream.xdf.XDFError
        The file is missing or not XDF; a damaged file is reported up to the damage.
    ValueError
        The file holds no session decision stream (it is not a session recording).
    """
    rec = path if isinstance(path, RecordedSession) else read_session(path)
    config, events = rec.config, rec.decisions
    kinds = Counter(e.get("event", "?") for e in events)
    refused = [e for e in events if e.get("event") == "refused"]
    reasons = Counter(
        (m.group(1) if (m := re.match(r"\[(\w+)\]", e.get("error", ""))) else e.get("error", "?"))
        for e in refused
    )
    at_fire = rec.pulse_phase_est
    target = np.radians(config["protocol"]["target_phase_deg"])
    streams = {}
    for sid, s in rec.streams.items():
        n = len(s.time_stamps)
        span = float(s.time_stamps[-1] - s.time_stamps[0]) if n > 1 else 0.0
        streams[sid] = {
            "type": _text(s, "type"),
            "samples": n,
            "duration_s": span,
            "effective_rate_hz": (n - 1) / span if span > 0 else None,
        }
    pulses: dict[str, Any] = {
        "delivered": int(rec.pulse_t.size),
        "refused": len(refused),
        "refused_by_reason": dict(reasons),
        "target_phase_deg": config["protocol"]["target_phase_deg"],
        "control": config["protocol"]["control"],
        "estimate_at_fire": circular_stats(at_fire),
        "estimate_error_at_fire": circular_stats(_wrap(at_fire - target)),
    }
    if np.isfinite(rec.pulse_phase_true).any():
        pulses["true_phase_at_fire"] = circular_stats(rec.pulse_phase_true)
        pulses["true_phase_error_at_fire"] = circular_stats(_wrap(rec.pulse_phase_true - target))
    report: dict[str, Any] = {
        "file": rec.path,
        "damage": rec.damage,
        "session": {"name": config.get("name"), "config": config},
        "truth_source_ids": rec.truth_source_ids,
        "streams": streams,
        "pulses": pulses,
        "events": {k: kinds[k] for k in sorted(kinds) if k not in ("fired", "refused")},
        "user_markers": [e.get("text") for e in events if e.get("event") == "user_marker"],
    }
    hr_t, bpm = rec.series("heart-hr")
    if hr_t.size:
        valid = bpm[np.isfinite(bpm)]
        report["heart"] = {
            "hr_mean_bpm": float(valid.mean()) if valid.size else None,
            "hr_min_bpm": float(valid.min()) if valid.size else None,
            "hr_max_bpm": float(valid.max()) if valid.size else None,
            "valid_fraction": valid.size / hr_t.size,
        }
    level_t, scl = rec.series("eda-level")
    if level_t.size:
        scr = rec.stream("eda-scr")
        minutes = max(float(level_t[-1] - level_t[0]) / 60.0, 1e-9)
        n_scr = len(scr.time_stamps) if scr is not None else 0
        report["eda"] = {
            "scl_median_us": float(np.nanmedian(scl)),
            "scr_count": n_scr,
            "scr_per_min": n_scr / minutes,
        }
    return report


def _wrap(angle_rad: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * angle_rad))


def format_report(report: dict[str, Any]) -> str:
    """The report as text for a terminal."""
    p = report["pulses"]
    est = p["estimate_error_at_fire"]
    by_reason = ", ".join(f"{k}: {v}" for k, v in p["refused_by_reason"].items())
    lines = [
        f"session {report['session']['name']!r}: {report['file']}",
        "" if report["damage"] is None else f"file damaged: {report['damage']}",
        f"pulses: {p['delivered']} delivered, {p['refused']} refused"
        + (f" ({by_reason})" if by_reason else ""),
        f"target {p['target_phase_deg']:g}° ({p['control']}); estimated phase at the pulses "
        f"minus target: mean {est['mean_deg']:.1f}°, circular SD {est['sd_deg']:.1f}° "
        f"(n = {est['n']})",
        _true_phase_line(p),
        "",
        f"{'stream':<40} {'type':<9} {'samples':>9} {'s':>8} {'Hz':>9}",
    ]
    for sid, s in report["streams"].items():
        rate = "-" if s["effective_rate_hz"] is None else f"{s['effective_rate_hz']:.2f}"
        lines.append(
            f"{sid[:40]:<40} {s['type'][:9]:<9} {s['samples']:>9} {s['duration_s']:>8.1f} {rate:>9}"
        )
    if report["events"]:
        lines += ["", "events: " + ", ".join(f"{k} {v}" for k, v in report["events"].items())]
    if "heart" in report and report["heart"]["hr_mean_bpm"] is not None:
        h = report["heart"]
        lines.append(
            f"heart rate: mean {h['hr_mean_bpm']:.1f} bpm (range {h['hr_min_bpm']:.1f}–"
            f"{h['hr_max_bpm']:.1f}), valid {100 * h['valid_fraction']:.0f} %"
        )
    if "eda" in report:
        e = report["eda"]
        lines.append(
            f"skin conductance: SCL median {e['scl_median_us']:.2f} µS, {e['scr_count']} SCRs "
            f"({e['scr_per_min']:.1f}/min)"
        )
    return "\n".join(line for line in lines if line is not None)


def _true_phase_line(pulses: dict[str, Any]) -> str | None:
    err = pulses.get("true_phase_error_at_fire")
    if err is None:
        return None
    return (
        f"true phase at the pulses (recorded truth) minus target: mean {err['mean_deg']:.1f}°, "
        f"circular SD {err['sd_deg']:.1f}° (n = {err['n']})"
    )
