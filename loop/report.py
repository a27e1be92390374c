"""``stimloop analyze``: the report of a recorded session, from its XDF file alone.

Everything a session did is in its recording (inputs, derived streams, every decision,
the config), so the report needs nothing else: pulses delivered and refused (by reason),
the phase estimate at each pulse, stream health, heart rate and skin conductance.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from stimloop.dsp.circular import circular_stats
from stimloop.stream.xdf import XDFStream, read_xdf


def _text(stream: XDFStream, key: str) -> str:
    return stream.info.findtext(key) or ""


def session_report(path: str | Path) -> dict[str, Any]:
    """Summarise a session recording.

    Parameters
    ----------
    path : str or Path
        XDF file written by a session (``[recording] path`` in its config).

    Returns
    -------
    dict
        ``file``, ``damage`` (None if intact), ``session`` (name and config),
        ``streams`` (per source_id: type, samples, duration s, effective rate Hz),
        ``pulses`` (delivered, refused by reason, phase estimate at the pulses),
        ``events`` (counts of health events and user markers), ``heart`` (HR bpm) and
        ``eda`` (SCL µS, SCR count and rate).

    Raises
    ------
    stimloop.stream.xdf.XDFError
        The file is missing or not XDF; a damaged file is reported up to the damage.
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
    events = [json.loads(row[0]) for row in decisions.time_series]
    kinds = Counter(e.get("event", "?") for e in events)
    fired = [e for e in events if e.get("event") == "fired"]
    refused = [e for e in events if e.get("event") == "refused"]
    reasons = Counter(
        (m.group(1) if (m := re.match(r"\[(\w+)\]", e.get("error", ""))) else e.get("error", "?"))
        for e in refused
    )
    at_fire = np.array([e["phase_rad"] for e in events if e.get("event") == "pulse_phase"])
    target = np.radians(config["protocol"]["target_phase_deg"])
    streams = {}
    for sid, s in by_id.items():
        n = len(s.time_stamps)
        span = float(s.time_stamps[-1] - s.time_stamps[0]) if n > 1 else 0.0
        streams[sid] = {
            "type": _text(s, "type"),
            "samples": n,
            "duration_s": span,
            "effective_rate_hz": (n - 1) / span if span > 0 else None,
        }
    report: dict[str, Any] = {
        "file": str(path),
        "damage": f.damage,
        "session": {"name": config.get("name"), "config": config},
        "streams": streams,
        "pulses": {
            "delivered": len(fired),
            "refused": len(refused),
            "refused_by_reason": dict(reasons),
            "target_phase_deg": config["protocol"]["target_phase_deg"],
            "control": config["protocol"]["control"],
            "estimate_at_fire": circular_stats(at_fire),
            "estimate_error_at_fire": circular_stats(np.angle(np.exp(1j * (at_fire - target)))),
        },
        "events": {k: kinds[k] for k in sorted(kinds) if k not in ("fired", "refused")},
        "user_markers": [e.get("text") for e in events if e.get("event") == "user_marker"],
    }
    hr = next((s for s in f.streams if _text(s, "type") == "HR"), None)
    if hr is not None and len(hr.time_stamps):
        bpm = np.asarray(hr.time_series, dtype=float)[:, 0]
        bpm = bpm[np.isfinite(bpm)]
        report["heart"] = {
            "hr_mean_bpm": float(bpm.mean()) if bpm.size else None,
            "hr_min_bpm": float(bpm.min()) if bpm.size else None,
            "hr_max_bpm": float(bpm.max()) if bpm.size else None,
            "valid_fraction": bpm.size / len(hr.time_stamps),
        }
    level = next((s for sid, s in by_id.items() if sid.endswith("-eda-level")), None)
    scr = next((s for sid, s in by_id.items() if sid.endswith("-eda-scr")), None)
    if level is not None and len(level.time_stamps):
        scl = np.asarray(level.time_series, dtype=float)[:, 0]
        minutes = max(streams[_text(level, "source_id")]["duration_s"] / 60.0, 1e-9)
        n_scr = len(scr.time_stamps) if scr is not None else 0
        report["eda"] = {
            "scl_median_us": float(np.nanmedian(scl)),
            "scr_count": n_scr,
            "scr_per_min": n_scr / minutes,
        }
    return report


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
