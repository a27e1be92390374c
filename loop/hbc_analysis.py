"""The heart-brain-coupled localisation of a recorded session, computed from the file.

The session records its plan, each site's start and each cycle's live figures on the
catalog's ``hbc`` marker stream, and the heart stage's HR series on ``heart_hr``. Here
the cycles are rebuilt from the plan and the site starts, and
:func:`stimloop.dsp.hbc.localise`, the code the live tracker runs, is applied to the
recorded HR series: so ``stimloop analyze`` gives the same per-site HBC as the session
did live (the report states the largest difference), and a recording can be re-scored
with other settings.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stimloop.dsp.hbc import Cycle, HBCParams, Localisation, localise

if TYPE_CHECKING:
    from stimloop.loop.report import RecordedSession


def _markers(rec: RecordedSession, key: str) -> list[dict[str, Any]]:
    s = rec.stream(key)
    if s is None:
        return []
    out = []
    for row in s.time_series:
        try:
            msg = json.loads(row[0])
        except (ValueError, TypeError):
            continue
        if isinstance(msg, dict):
            out.append(msg)
    return out


def localisation_dict(loc) -> dict[str, Any]:
    """A :class:`~stimloop.dsp.hbc.Localisation` as JSON-ready data."""
    return {
        "best_site": loc.best_site,
        "target_found": bool(loc.target_found),
        "best_site_alt": loc.best_site_alt,
        "sites": [
            {
                "site": s.site,
                "intensities": s.intensities.tolist(),
                "hbc": s.hbc.tolist(),
                "delta_hr_bpm": s.delta_hr_bpm.tolist(),
                "n_above": int(s.n_above),
                "mean_hbc": _num(s.mean_hbc),
                "slope": _num(s.slope),
                "passes": bool(s.passes),
            }
            for s in loc.ranking
        ],
    }


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class RecordedLocalisation:
    """A localisation rebuilt from its recording: what :func:`localise` was given and
    what it found (the cycles completed in the file only)."""

    events: list[dict[str, Any]]  # the session's ``hbc`` markers
    plan: dict[str, Any]
    params: HBCParams
    cycles: list[Cycle]
    localisation: Localisation
    metrics: np.ndarray  # per cycle, dsp.hbc.CYCLE_DTYPE


def cut_short_trains(rec: RecordedSession) -> list[dict[str, Any]]:
    """The engine's ``train_cut_short`` decisions of a localisation's trains: each with
    the train's request (``site``, ``cycle``, ``intensity``, ``t_planned``),
    ``pulses_delivered`` (at most) of ``pulses_planned``, and the ``reason``."""
    return [e for e in rec.decisions if e.get("event") == "train_cut_short" and "cycle" in e]


def _train_key(e: dict[str, Any]) -> tuple[str, int, float]:
    return str(e["site"]), int(e["cycle"]), float(e["t_planned"])


def recorded_localisation(rec: RecordedSession) -> RecordedLocalisation | None:
    """The cycles of a localisation recording (from its plan and site starts) and
    :func:`~stimloop.dsp.hbc.localise` of its recorded HR; None without a localisation
    or a completed cycle. The one reading of a localisation recording: ``analyze`` and
    the study tables both use it."""
    events = _markers(rec, "hbc")
    plan = next((e for e in events if e.get("event") == "plan"), None)
    hr_s = rec.stream("heart_hr")
    if plan is None or hr_s is None or not len(hr_s.time_stamps):
        return None
    params = HBCParams(
        cycle_s=float(plan["cycle_s"]),
        threshold=float(plan["threshold"]),
        min_above=int(rec.config["protocol"].get("min_above", 4)),
        train_s=float(rec.config["protocol"].get("train_s", 5.0)),
    )
    # A site's rest cycle from its start; a train cycle only where the train went out in
    # full (the gate's "fired" decision, and no "train_cut_short" of the engine): a
    # refused, paused or never-reached train leaves its cycle unstimulated, one cut short
    # gave less than its dose, and a restarted site's unreached cycles never happened.
    rests = [Cycle(e["site"], 0, 0.0, float(e["onset_s"]))
             for e in events if e.get("event") == "site_start"]  # fmt: skip
    cut = {_train_key(e) for e in cut_short_trains(rec)}
    trains = [
        Cycle(e["site"], int(e["cycle"]), float(e["intensity"]), float(e["t_planned"]))
        for e in rec.decisions
        if e.get("event") == "fired" and "cycle" in e and e.get("t_planned") is not None
        and _train_key(e) not in cut
    ]  # fmt: skip
    cycles = sorted(rests + trains, key=lambda c: c.onset_s)
    hr_t, hr = rec.series("heart_hr", 0)
    rate = float(hr_s.rate_hz) or 4.0
    _, end = params.span_s
    cycles = [c for c in cycles if c.onset_s + end <= hr_t[-1]]  # completed in the file
    if not cycles:
        return None
    loc, metrics = localise(hr, rate, float(hr_t[0]), cycles, params)
    return RecordedLocalisation(events, plan, params, cycles, loc, metrics)


def hbc_analysis(rec: RecordedSession) -> dict[str, Any] | None:
    """Per-site HBC, the ranking and the chosen target of a localisation recording.

    Returns
    -------
    dict or None
        None when the recording holds no localisation. Otherwise ``order`` and
        ``order_seed``, ``cycles`` (each cycle's offline figures), ``localisation``
        (:func:`localisation_dict`), ``live_vs_offline_max_rel`` (largest relative HBC
        difference over the cycles the session scored live), ``stops`` (cardiac stop
        alerts), ``refused_trains``, ``cut_short_trains`` (:func:`cut_short_trains`;
        their cycles are not scored) and, with a virtual subject, ``truth_best_site``.
    """
    r = recorded_localisation(rec)
    if r is None:
        return None
    events, plan, cycles, metrics = r.events, r.plan, r.cycles, r.metrics
    # Keyed by onset too: a site that started over (ECG lost, no baseline) has two rest
    # cycles of the same site and index.
    live = {
        (e["site"], e["index"], float(e["onset_s"])): e.get("hbc")
        for e in events
        if e.get("event") == "cycle"
    }
    keys = [(c.site, c.index, c.onset_s) for c in cycles]
    diffs = [
        abs(m["hbc"] - live[k]) / max(abs(live[k]), 1e-9)
        for k, m in zip(keys, metrics, strict=True)
        if live.get(k) is not None and math.isfinite(m["hbc"])
    ]
    truth = rec.streams.get(rec.truth_source_ids.get("ecg", ""))
    return {
        "order": plan["order"],
        "order_seed": plan.get("order_seed"),
        "unit": plan.get("unit"),
        "cycles": [
            {
                "site": c.site,
                "index": c.index,
                "intensity": c.intensity,
                "onset_s": c.onset_s,
                **{k: _num(float(m[k])) for k in ("hbc", "delta_hr_bpm", "delta_hr_pct")},
            }
            for c, m in zip(cycles, metrics, strict=True)
        ],
        "localisation": localisation_dict(r.localisation),
        "live_cycles": len(live),
        "live_vs_offline_max_rel": max(diffs) if diffs else None,
        "stops": [e for e in rec.decisions if e.get("event") == "alert"],
        "refused_trains": [e for e in events if e.get("event") == "train_refused"],
        "cut_short_trains": cut_short_trains(rec),
        "truth_best_site": (truth.info.findtext("desc/best_site") or None) if truth else None,
    }


def format_hbc(h: dict[str, Any]) -> list[str]:
    """The localisation as text lines for ``stimloop analyze``."""
    loc = h["localisation"]
    lines = [
        "",
        f"heart-brain coupling: sites in order {', '.join(h['order'])} "
        f"(order seed {h['order_seed']})",
    ]
    lines.append(f"{'site':<6} {'n above':>7} {'mean HBC':>9} {'slope':>8}  HBC by intensity")
    for s in loc["sites"]:
        hbc = " ".join("-" if v is None or not math.isfinite(v) else f"{v:.2f}" for v in s["hbc"])
        mean = "-" if s["mean_hbc"] is None else f"{s['mean_hbc']:.2f}"
        slope = "-" if s["slope"] is None else f"{s['slope']:.3f}"
        lines.append(f"{s['site']:<6} {s['n_above']:>7} {mean:>9} {slope:>8}  {hbc}")
    verdict = "target" if loc["target_found"] else "no site passed the threshold; best"
    lines.append(f"{verdict}: {loc['best_site']} (alternative rule: {loc['best_site_alt']})")
    if h.get("truth_best_site"):
        lines.append(f"virtual subject's true best site: {h['truth_best_site']}")
    if h["live_vs_offline_max_rel"] is not None:
        lines.append(
            f"live vs offline HBC: largest difference "
            f"{100 * h['live_vs_offline_max_rel']:.3g} % over {h['live_cycles']} cycles"
        )
    for e in h["cut_short_trains"]:
        lines.append(
            f"train cut short, cycle not scored: {e['site']} cycle {e['cycle']} "
            f"(intensity {e['intensity']:g}), {e['pulses_delivered']} of "
            f"{e['pulses_planned']} pulses at most ({e['reason']})"
        )
    for stop in h["stops"]:
        lines.append(f"CARDIAC STOP: {stop.get('rule')} at {stop.get('site')}: {stop}")
    return lines
