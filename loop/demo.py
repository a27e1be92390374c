"""``stimloop demo``: a full simulated closed-loop session that scores itself.

The simulators run in a child process and publish EEG (64 ch, 1 kHz, alpha at C3), ECG
and EDA, plus their ground truth, over LSL on this machine. This process runs the very
same :class:`~stimloop.loop.session.Session` that ``stimloop run`` runs on a real
session file (``loop/configs/demo.toml``), with the simulated stimulator behind the HAL
gate. At the end it scores the session against the simulators' truth: the true phase
of every delivered pulse, heart-rate error and SCR detection.
"""

from __future__ import annotations

import json
import logging
import os
import time
import tomllib
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

import numpy as np

from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.dsp.circular import circular_stats
from stimloop.dsp.series import value_at
from stimloop.loop.config import SessionConfig, parse_session
from stimloop.loop.session import Session
from stimloop.stream.inlet import Inlet, MarkerInlet

log = logging.getLogger("stimloop.loop")


def demo_config(sim: SimConfig, **protocol: Any) -> SessionConfig:
    """The packaged demo session, pointed at the simulators of ``sim``.

    Parameters
    ----------
    sim : SimConfig
        The simulators whose source_ids the session reads.
    **protocol
        Overrides of ``[protocol]`` keys (e.g. ``control="random_phase"``).
    """
    text = resources.files("stimloop.loop").joinpath("configs/demo.toml").read_text()
    data = tomllib.loads(text)
    rates = {"eeg": sim.eeg_fs, "ecg": sim.ecg_fs, "eda": sim.eda_fs}
    data["sources"] = {role: data["sources"][role] for role in sim.roles}
    for role, src in data["sources"].items():
        src["source_id"] = sim.source_id(role)
        src["rate_hz"] = rates[role]
    if "eeg" in sim.roles:
        data["sources"]["eeg"]["channels"] = sim.eeg_channels
    if "eda" in sim.roles:
        data["sources"]["events"] = {"source_id": sim.source_id("events")}
    data["channels"]["eeg_target"] = sim.target
    data["protocol"].update(protocol)
    return parse_session(data, "configs/demo.toml")


class TruthRecorder:
    """Collects the simulators' ground-truth streams while a session runs.

    Parameters
    ----------
    sim : SimConfig
        The simulators whose truth streams to read.
    """

    def __init__(self, sim: SimConfig) -> None:
        self.sim = sim
        self.inlets = {
            role: Inlet(f"{sim.prefix}-{role}-truth", stale_after_s=3600.0) for role in sim.roles
        }
        self.events = MarkerInlet(f"{sim.prefix}-events") if "eda" in sim.roles else None
        self.rows: dict[str, list[np.ndarray]] = {role: [] for role in sim.roles}
        self.stamps: dict[str, list[np.ndarray]] = {role: [] for role in sim.roles}
        self.event_t: list[float] = []

    def connect(self) -> TruthRecorder:
        items = [*self.inlets.values(), *([self.events] if self.events else [])]
        with ThreadPoolExecutor(len(items)) as pool:
            list(pool.map(lambda i: i.connect(), items))
        return self

    def pull(self) -> None:
        for role, inlet in self.inlets.items():
            chunk = inlet.pull(0.0)
            if len(chunk):
                self.rows[role].append(chunk.data.copy())
                self.stamps[role].append(chunk.timestamps.copy())
        if self.events is not None:
            self.event_t += [t for _, t in self.events.pull()]

    def _cat(self, role: str, width: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.rows.get(role):
            return np.empty((0, width)), np.empty(0)
        return np.concatenate(self.rows[role]), np.concatenate(self.stamps[role])

    def arrays(self) -> dict[str, np.ndarray]:
        """Truth arrays keyed as the :class:`~stimloop.loop.stage.Stage` protocol names them."""
        eeg, eeg_t = self._cat("eeg", 3)
        _, ecg_t = self._cat("ecg", 2)
        eda, eda_t = self._cat("eda", 4)
        return {
            "eeg_t": eeg_t,
            "eeg_phase_rad": eeg[:, 0],
            "eeg_amplitude_uv": eeg[:, 1],
            "ecg_rpeak_t": ecg_t,
            "eda_scr_onset_t": eda_t,
            "eda_scr_peak_t": eda_t + (eda[:, 1] - eda[:, 0]) / self.sim.eda_fs,
            "eda_scr_amplitude_us": eda[:, 2],
            "eda_event_t": np.asarray(self.event_t),
        }

    def close(self) -> None:
        for inlet in self.inlets.values():
            inlet.close()
        if self.events is not None:
            self.events.close()


def run_demo(
    duration_s: float = 30.0,
    sim: SimConfig | None = None,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    on_open: Callable[[Session], None] | None = None,
    recording: str | None = None,
    **protocol: Any,
) -> dict[str, Any]:
    """Run a simulated closed-loop session and return its scored summary.

    Parameters
    ----------
    duration_s : float
        Session length in s.
    sim : SimConfig, optional
        Simulator settings; a unique source_id prefix is chosen when not given.
    on_status : callable, optional
        Called about once a second with a live status dict (the CLI's live display).
    on_open : callable, optional
        Called with the opened session before it runs (e.g. to start the GUI).
    recording : str, optional
        Record the session (inputs, truth, every derived stream and decision) to this
        XDF path; ``{time}`` is replaced by the start time. ``stimloop analyze`` reads it.
    **protocol
        Overrides of the demo config's ``[protocol]`` keys.

    Returns
    -------
    dict
        ``duration_s``, ``streams`` (health per stream), ``pulses`` (count, true-phase
        circular mean/SD, refusals), ``engine`` (loop statistics), ``stages``
        (each DSP stage's score against the truth) and ``recording`` (path or None).
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0 s, got {duration_s}")
    sim = sim or SimConfig(prefix=f"stimloop-demo-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    cfg = demo_config(sim, **protocol)
    if recording:
        cfg = cfg.model_copy(
            update={"recording": cfg.recording.model_copy(update={"path": recording})}
        )
    with SimulatorProcess(sim):
        truth = TruthRecorder(sim)
        try:
            truth_ids = {role: f"{sim.prefix}-{role}-truth" for role in sim.roles}
            with Session(cfg, f"{sim.prefix}-session", truth_source_ids=truth_ids) as session:
                truth.connect()
                truth.pull()  # start truth together with the session's fresh inlets
                _reset(truth)
                status = _Status(on_status)
                if on_open is not None:
                    on_open(session)
                result = session.run(duration_s, on_tick=lambda s: (truth.pull(), status(s)))
                truth.pull()
                arrays = truth.arrays()
                stage_scores = {name: st.score(arrays) for name, st in result.stages.items()}
        finally:
            truth.close()
    t_trig = np.array([p["t_trigger"] for p in result.pulses])
    true_phase = value_at(arrays["eeg_t"], arrays["eeg_phase_rad"], t_trig)
    target = np.radians(cfg.protocol.target_phase_deg)
    est = np.array([p.get("phase_at_fire_rad", np.nan) for p in result.pulses])
    return {
        "duration_s": duration_s,
        "streams": result.streams,
        "pulses": {
            "delivered": len(result.pulses),
            "refused": len(result.refusals),
            "target_phase_deg": cfg.protocol.target_phase_deg,
            "control": cfg.protocol.control,
            "true_phase_error": circular_stats(np.angle(np.exp(1j * (true_phase - target)))),
            "true_phase": circular_stats(true_phase),
            "estimate_vs_truth": circular_stats(np.angle(np.exp(1j * (est - true_phase)))),
            "fire_error_ms_p99": _pct([p["fire_error_ms"] for p in result.pulses], 99),
        },
        "engine": result.engine,
        "stages": stage_scores,
        "recording": result.recording,
    }


def _reset(truth: TruthRecorder) -> None:
    truth.rows = {role: [] for role in truth.rows}
    truth.stamps = {role: [] for role in truth.stamps}
    truth.event_t = []


def _pct(values: list, q: float) -> float | None:
    v = np.asarray([x for x in values if x is not None], float)
    return float(np.percentile(v, q)) if v.size else None


class _Status:
    """Throttles the live status callback to about once a second."""

    def __init__(self, callback: Callable[[dict[str, Any]], None] | None) -> None:
        self.callback = callback
        self.next_t = 0.0

    def __call__(self, session: Session) -> None:
        if self.callback is None or time.monotonic() < self.next_t:
            return
        self.next_t = time.monotonic() + 1.0
        eng = session.engine
        self.callback(
            {
                "samples": {r: s.samples for r, s in eng.streams.items()},
                "pulses": len(eng.pulses),
                "refused": len(eng.refusals),
            }
        )


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable report of a demo summary."""
    lines = [f"stimloop demo: {summary['duration_s']:.0f} s simulated closed-loop session", ""]
    lines.append(
        f"{'stream':<6} {'rate Hz':>8} {'samples':>9} {'gaps':>5} {'lost':>6} "
        f"{'age p50 ms':>11} {'age p99 ms':>11}"
    )
    for role, s in summary["streams"].items():
        p50 = "-" if s["age_ms_p50"] is None else f"{s['age_ms_p50']:.2f}"
        p99 = "-" if s["age_ms_p99"] is None else f"{s['age_ms_p99']:.2f}"
        lines.append(
            f"{role:<6} {s['rate_hz']:>8.0f} {s['samples']:>9} {s['gaps']:>5} "
            f"{s['lost_samples']:>6} {p50:>11} {p99:>11}"
        )
    p = summary["pulses"]
    err = p["true_phase_error"]
    lines += [
        "",
        f"pulses: {p['delivered']} delivered, {p['refused']} refused; target "
        f"{p['target_phase_deg']:g}° ({p['control']})",
        f"true phase error at the pulses: mean {err['mean_deg']:.1f}°, "
        f"circular SD {err['sd_deg']:.1f}° (n = {err['n']})",
    ]
    for name, score in summary["stages"].items():
        lines += ["", f"[{name}]", json.dumps(score, indent=2, default=float)]
    if summary.get("recording"):
        rec = summary["recording"]
        lines += ["", f"recorded to {rec}", f"report: stimloop analyze {rec} --plot report.png"]
    return "\n".join(lines)
