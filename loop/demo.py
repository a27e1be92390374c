"""``stimloop demo``: a complete simulated session that scores itself.

The simulators run in a child process and publish EEG, ECG and EDA (plus their ground
truth) over LSL on this machine. This process reads them through :class:`Inlet` exactly
as it would read real amplifiers, feeds every chunk to the DSP stages, and at the end
reports stream health (samples, gaps, latency) and each stage's score against the truth.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pylsl

from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.loop.heart_stage import HeartStage
from stimloop.loop.stage import Stage
from stimloop.stream.events import Gap, NonFinite, Stale
from stimloop.stream.inlet import Inlet, MarkerInlet

log = logging.getLogger("stimloop.loop")

#: Factories of the DSP stages the demo runs, in order. Each consumes one role.
STAGE_FACTORIES: list[Callable[[], Stage]] = [HeartStage]


@dataclass
class StreamStats:
    """Health of one raw stream over a session."""

    role: str
    rate_hz: float
    n_samples: int = 0
    gaps: int = 0
    lost_samples: int = 0
    nonfinite: int = 0
    stale_events: int = 0
    first_t: float = np.nan
    last_t: float = np.nan
    ages_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        span = self.last_t - self.first_t
        expected = round(span * self.rate_hz) + 1 if self.n_samples else 0
        ages = np.asarray(self.ages_s) * 1000.0
        return {
            "rate_hz": self.rate_hz,
            "samples": self.n_samples,
            "expected_samples": expected,
            "effective_rate_hz": (self.n_samples - 1) / span if span > 0 else float("nan"),
            "gaps": self.gaps,
            "lost_samples": self.lost_samples,
            "nonfinite_samples": self.nonfinite,
            "stale_events": self.stale_events,
            "age_ms_p50": float(np.percentile(ages, 50)) if ages.size else None,
            "age_ms_p99": float(np.percentile(ages, 99)) if ages.size else None,
        }


class _Truth:
    """Ground truth gathered from the simulators' truth streams."""

    def __init__(self, prefix: str, roles: tuple[str, ...], eda_fs: float) -> None:
        self.inlets = {
            role: Inlet(f"{prefix}-{role}-truth", stale_after_s=3600.0) for role in roles
        }
        self.events = MarkerInlet(f"{prefix}-events") if "eda" in roles else None
        self.eda_fs = eda_fs
        self.rows: dict[str, list[np.ndarray]] = {role: [] for role in roles}
        self.stamps: dict[str, list[np.ndarray]] = {role: [] for role in roles}
        self.event_t: list[float] = []

    def connectables(self) -> list[Inlet | MarkerInlet]:
        return [*self.inlets.values(), *([self.events] if self.events else [])]

    def pull(self) -> None:
        for role, inlet in self.inlets.items():
            chunk = inlet.pull(0.0)
            if len(chunk):
                self.rows[role].append(chunk.data.copy())
                self.stamps[role].append(chunk.timestamps.copy())
        if self.events is not None:
            self.event_t += [t for _, t in self.events.pull()]

    def arrays(self) -> dict[str, np.ndarray]:
        def cat(role: str, width: int) -> tuple[np.ndarray, np.ndarray]:
            if not self.rows.get(role):
                return np.empty((0, width)), np.empty(0)
            return np.concatenate(self.rows[role]), np.concatenate(self.stamps[role])

        out: dict[str, np.ndarray] = {"eda_event_t": np.asarray(self.event_t)}
        eeg, eeg_t = cat("eeg", 3)
        out.update(eeg_t=eeg_t, eeg_phase_rad=eeg[:, 0], eeg_amplitude_uv=eeg[:, 1])
        _, ecg_t = cat("ecg", 2)
        out["ecg_rpeak_t"] = ecg_t
        eda, eda_t = cat("eda", 4)
        out.update(
            eda_scr_onset_t=eda_t,
            eda_scr_peak_t=eda_t + (eda[:, 1] - eda[:, 0]) / self.eda_fs,
            eda_scr_amplitude_us=eda[:, 2],
        )
        return out

    def close(self) -> None:
        for inlet in self.inlets.values():
            inlet.close()
        if self.events is not None:
            self.events.close()


def run_demo(
    duration_s: float = 30.0,
    sim: SimConfig | None = None,
    stages: list[Stage] | None = None,
    on_status: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run a simulated session and return its scored summary.

    Parameters
    ----------
    duration_s : float
        Session length in s.
    sim : SimConfig, optional
        Simulator settings; a unique source_id prefix is chosen when not given.
    stages : list of Stage, optional
        DSP stages; defaults to one of each in :data:`STAGE_FACTORIES`.
    on_status : callable, optional
        Called about once a second with a live status dict (used by the CLI display).

    Returns
    -------
    dict
        ``{"duration_s", "streams": {role: stats}, "stages": {name: score}}``.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0 s, got {duration_s}")
    sim = sim or SimConfig(prefix=f"stimloop-demo-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    stages = stages if stages is not None else [make() for make in STAGE_FACTORIES]
    rates = {"eeg": sim.eeg_fs, "ecg": sim.ecg_fs, "eda": sim.eda_fs}
    channels = {"eeg": sim.eeg_channels, "ecg": 1, "eda": 1}
    with SimulatorProcess(sim) as proc:
        inlets = {
            role: Inlet(
                sim.source_id(role),
                expected_rate=rates[role],
                expected_channels=channels[role],
                chunk_period_s=sim.chunk_s,
            )
            for role in sim.roles
        }
        truth = _Truth(sim.prefix, sim.roles, sim.eda_fs)
        # Resolving waits ~0.6 s per stream (duplicate check); do all of them at once.
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: i.connect(), [*inlets.values(), *truth.connectables()]))
        for stage in stages:
            inlet = inlets[stage.role]
            stage.start(inlet.rate_hz, inlet.channel_labels, sim.prefix)
        # Start every stream and its truth at the same moment: drop what queued up
        # while the others were connecting and the stages warmed up.
        for inlet in inlets.values():
            inlet.pull(0.0)
        truth.pull()
        truth.rows = {role: [] for role in truth.rows}
        truth.stamps = {role: [] for role in truth.stamps}
        truth.event_t = []
        stats = {role: StreamStats(role, rates[role]) for role in sim.roles}
        # The fastest stream paces the loop: block on it, drain the others.
        lead = max(sim.roles, key=lambda r: rates[r])
        t_end = time.monotonic() + duration_s
        next_status = time.monotonic() + 1.0
        try:
            while time.monotonic() < t_end:
                for role, inlet in inlets.items():
                    chunk = inlet.pull(sim.chunk_s if role == lead else 0.0)
                    _account(stats[role], chunk)
                    if len(chunk):
                        for stage in stages:
                            if stage.role == role:
                                stage.update(chunk.data, chunk.timestamps, chunk.first_index)
                truth.pull()
                if on_status is not None and time.monotonic() >= next_status:
                    next_status += 1.0
                    on_status({r: s.n_samples for r, s in stats.items()})
            time.sleep(0.2)  # let late truth samples (stamped in the past) arrive
            truth.pull()
            summary = {
                "duration_s": duration_s,
                "streams": {role: s.summary() for role, s in stats.items()},
                "stages": {s.name: s.score(truth.arrays()) for s in stages},
            }
        finally:
            for stage in stages:
                stage.close()
            truth.close()
            for inlet in inlets.values():
                inlet.close()
        summary["simulator_samples"] = proc.samples_generated()
    return summary


def _account(st: StreamStats, chunk) -> None:
    for ev in chunk.events:
        if isinstance(ev, Gap):
            st.gaps += 1
            st.lost_samples += ev.missing
        elif isinstance(ev, NonFinite):
            st.nonfinite += ev.n_samples
        elif isinstance(ev, Stale):
            st.stale_events += 1
    n = len(chunk)
    if n:
        if st.n_samples == 0:
            st.first_t = float(chunk.timestamps[0])
        st.n_samples += n
        st.last_t = float(chunk.timestamps[-1])
        st.ages_s.append(pylsl.local_clock() - st.last_t)


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable table of a demo summary."""
    lines = [f"stimloop demo: {summary['duration_s']:.0f} s simulated session", ""]
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
    for name, score in summary["stages"].items():
        lines += ["", f"[{name}]", json.dumps(score, indent=2, default=float)]
    return "\n".join(lines)
