"""Publish the simulators as real-time LSL outlets, each with a ground-truth stream.

Every stream is paced against the LSL clock: a chunk is pushed as soon as its last
sample is due, stamped with the exact time of that sample (``t0 + index / fs``). All
streams share one ``t0``, so their timestamps are mutually consistent, and each
simulator publishes its ground truth on a separate stream:

==========================  =========================================================
source_id                   content
==========================  =========================================================
``{prefix}-eeg``            EEG, µV, ``eeg_channels`` channels at ``eeg_fs``
``{prefix}-eeg-truth``      alpha phase (rad), envelope (µV), frequency (Hz) at the
                            target electrode, one sample per EEG sample
``{prefix}-ecg``            ECG, mV, one channel at ``ecg_fs``
``{prefix}-ecg-truth``      one sample per R-peak, stamped at the R-peak: absolute
                            sample index and instantaneous HR (bpm)
``{prefix}-eda``            skin conductance, µS, one channel at ``eda_fs``
``{prefix}-eda-truth``      one sample per SCR, stamped at its onset: onset and peak
                            indices, amplitude (µS), evoked (0/1)
``{prefix}-events``         stimulus markers ("stim") that evoke SCRs
==========================  =========================================================
"""

from __future__ import annotations

import json
import logging
import select
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from typing import IO

import numpy as np
import pylsl

from stimloop.devices.sim.ecg import ECGGenerator
from stimloop.devices.sim.eda import EDAGenerator
from stimloop.devices.sim.eeg import EEGGenerator
from stimloop.stream.outlet import Outlet, channel_specs, marker_outlet

log = logging.getLogger("stimloop.devices.sim")

ROLES = ("eeg", "ecg", "eda")


@dataclass
class SimConfig:
    """Settings of a simulated session (defaults are realistic acquisition rates).

    Attributes
    ----------
    prefix : str
        Prefix of every source_id; make it unique per session.
    seed : int
        Seed of all generators.
    roles : tuple of str
        Which simulators run (subset of ``("eeg", "ecg", "eda")``).
    chunk_s : float
        Push period in s (10 ms, as amplifiers commonly deliver).
    eeg_fs, ecg_fs, eda_fs : float
        Sampling rates in Hz.
    eeg_channels : int
        EEG channel count (1-64).
    iaf_hz : float
        Individual alpha frequency in Hz.
    target : str
        Electrode whose alpha phase is the ground truth.
    alpha_snr_db : float
        Alpha-to-background ratio at the target in dB.
    line_noise_uv : float
        50 Hz interference amplitude on the EEG in µV.
    hr_bpm : float
        Initial heart rate in bpm.
    ecg_snr_db : float or None
        ECG white-noise SNR in dB (None = clean).
    event_interval_s : float
        Mean interval between stimulus events that evoke SCRs (0 = none).
    """

    prefix: str = "stimloop-sim"
    seed: int = 0
    roles: tuple[str, ...] = ROLES
    chunk_s: float = 0.01
    eeg_fs: float = 1000.0
    eeg_channels: int = 64
    iaf_hz: float = 10.0
    target: str = "C3"
    alpha_snr_db: float = 3.0
    line_noise_uv: float = 0.0
    ecg_fs: float = 500.0
    hr_bpm: float = 70.0
    ecg_snr_db: float | None = 30.0
    eda_fs: float = 100.0
    event_interval_s: float = 20.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown simulator role(s) {sorted(unknown)}; expected {ROLES}")
        if not 0.001 <= self.chunk_s <= 1.0:
            raise ValueError(f"chunk_s must be in 0.001..1 s, got {self.chunk_s}")

    def source_id(self, role: str) -> str:
        """The source_id of a stream (``"eeg"``, ``"eeg-truth"``, ``"events"`` …)."""
        return f"{self.prefix}-{role}"


class _Pump(threading.Thread):
    """Pushes one simulator's chunks on time; subclasses generate and publish."""

    def __init__(self, role: str, fs: float, cfg: SimConfig, t0: float, stop: threading.Event):
        super().__init__(name=f"sim-{role}", daemon=True)
        self.role = role
        self.fs = fs
        self.t0 = t0
        self.stop_event = stop
        self.chunk = max(1, round(cfg.chunk_s * fs))
        self.n_done = 0
        self.pause_until = -1  # samples with a lower index are generated but not pushed
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.pause_until = self.n_done + round(seconds * self.fs)

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                due_at = self.t0 + (self.n_done + self.chunk - 1) / self.fs
                wait = due_at - pylsl.local_clock()
                if wait > 0 and self.stop_event.wait(wait):
                    break
                n_due = int((pylsl.local_clock() - self.t0) * self.fs) + 1 - self.n_done
                with self.lock:
                    self._emit(max(n_due, self.chunk))
        except BaseException as exc:  # reported by SimulatorSession.check()
            self.error = exc
            log.exception("simulator %s failed", self.role)

    def _visible(self, n: int) -> int:
        """How many of the next ``n`` samples (the last ones) are outside a pause."""
        return int(np.clip(self.n_done + n - self.pause_until, 0, n))

    def _stamp(self, index: int) -> float:
        return self.t0 + index / self.fs

    def _emit(self, n: int) -> None:
        raise NotImplementedError


class _EEGPump(_Pump):
    def __init__(self, cfg: SimConfig, t0: float, stop: threading.Event):
        super().__init__("eeg", cfg.eeg_fs, cfg, t0, stop)
        self.gen = EEGGenerator(
            cfg.eeg_fs, cfg.eeg_channels, cfg.iaf_hz, cfg.target, cfg.seed,
            alpha_snr_db=cfg.alpha_snr_db, line_noise_uv=cfg.line_noise_uv,
        )  # fmt: skip
        self.out = Outlet(
            "stimloop-sim EEG", "EEG", cfg.source_id("eeg"),
            channel_specs(self.gen.labels, "uV", "EEG"), cfg.eeg_fs, "float32", self.chunk,
        )  # fmt: skip
        self.truth = Outlet(
            "stimloop-sim EEG truth", "Truth", cfg.source_id("eeg-truth"),
            (*channel_specs([f"{cfg.target}_phase"], "rad", "Phase"),
             *channel_specs([f"{cfg.target}_envelope"], "uV", "Amplitude"),
             *channel_specs(["alpha_frequency"], "Hz", "Frequency")),
            cfg.eeg_fs, "float64", self.chunk, {"target": cfg.target, "iaf_hz": str(cfg.iaf_hz)},
        )  # fmt: skip

    def _emit(self, n: int) -> None:
        eeg, truth = self.gen.generate(n)
        last = self._stamp(self.n_done + n - 1)
        keep = self._visible(n)
        if keep:
            self.out.push(eeg[n - keep :], last)
        self.truth.push(truth, last)
        self.n_done += n


class _ECGPump(_Pump):
    def __init__(self, cfg: SimConfig, t0: float, stop: threading.Event):
        super().__init__("ecg", cfg.ecg_fs, cfg, t0, stop)
        self.gen = ECGGenerator(cfg.ecg_fs, cfg.hr_bpm, cfg.seed + 1, snr_db=cfg.ecg_snr_db)
        self.out = Outlet(
            "stimloop-sim ECG", "ECG", cfg.source_id("ecg"),
            channel_specs(["ECG"], "mV", "ECG"), cfg.ecg_fs, "float32", self.chunk,
        )  # fmt: skip
        self.truth = Outlet(
            "stimloop-sim ECG truth", "Truth", cfg.source_id("ecg-truth"),
            (*channel_specs(["rpeak_index"], "samples", "Index"),
             *channel_specs(["hr"], "bpm", "HR")),
            0.0, "float64",
        )  # fmt: skip
        self.last_peak = -1

    def _emit(self, n: int) -> None:
        ecg, peaks = self.gen.generate(n)
        keep = self._visible(n)
        if keep:
            self.out.push(ecg[n - keep :, None], self._stamp(self.n_done + n - 1))
        for p in peaks:
            hr = 60.0 * self.fs / (p - self.last_peak) if self.last_peak >= 0 else np.nan
            self.truth.push(np.array([p, hr]), self._stamp(int(p)))
            self.last_peak = int(p)
        self.n_done += n


class _EDAPump(_Pump):
    def __init__(self, cfg: SimConfig, t0: float, stop: threading.Event):
        super().__init__("eda", cfg.eda_fs, cfg, t0, stop)
        self.gen = EDAGenerator(cfg.eda_fs, cfg.seed + 2)
        self.out = Outlet(
            "stimloop-sim EDA", "EDA", cfg.source_id("eda"),
            channel_specs(["EDA"], "uS", "EDA"), cfg.eda_fs, "float32", self.chunk,
        )  # fmt: skip
        self.truth = Outlet(
            "stimloop-sim EDA truth", "Truth", cfg.source_id("eda-truth"),
            (*channel_specs(["onset_index", "peak_index"], "samples", "Index"),
             *channel_specs(["amplitude"], "uS", "EDA"),
             *channel_specs(["evoked"], "bool", "Flag")),
            0.0, "float64",
        )  # fmt: skip
        self.events = marker_outlet("stimloop-sim events", cfg.source_id("events"))
        self.event_interval_s = cfg.event_interval_s
        self.event_rng = np.random.default_rng(cfg.seed + 3)
        self.next_event = self._draw_event_gap()

    def _draw_event_gap(self) -> int:
        if self.event_interval_s <= 0:
            return np.iinfo(np.int64).max
        gap = self.event_interval_s * self.event_rng.uniform(0.75, 1.25)
        return self.n_done + round(gap * self.fs)

    def _emit(self, n: int) -> None:
        if self.n_done >= self.next_event:
            idx = self.gen.trigger_event()
            self.events.push_marker("stim", self._stamp(idx))
            self.next_event = self._draw_event_gap()
        eda, scrs = self.gen.generate(n)
        keep = self._visible(n)
        if keep:
            self.out.push(eda[n - keep :, None], self._stamp(self.n_done + n - 1))
        for s in scrs:
            row = np.array([s["onset"], s["peak"], s["amplitude"], float(s["evoked"])])
            self.truth.push(row, self._stamp(int(s["onset"])))
        self.n_done += n


_PUMPS = {"eeg": _EEGPump, "ecg": _ECGPump, "eda": _EDAPump}


class SimulatorSession:
    """The simulators of one session, publishing in real time from background threads.

    Parameters
    ----------
    config : SimConfig
        What to simulate and where to publish it.

    Examples
    --------
    >>> with SimulatorSession(SimConfig(prefix="demo-1")) as sim:  # doctest: +SKIP
    ...     sim.pause("eeg", 0.5)
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._stop = threading.Event()
        self.t0 = pylsl.local_clock() + 0.05
        self._pumps = {role: _PUMPS[role](config, self.t0, self._stop) for role in config.roles}

    def start(self) -> SimulatorSession:
        """Start publishing."""
        for pump in self._pumps.values():
            pump.start()
        return self

    def __enter__(self) -> SimulatorSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pause(self, role: str, seconds: float) -> None:
        """Stop pushing ``role`` for ``seconds`` while its clock runs on (a real gap)."""
        self._pumps[role].pause(seconds)

    def set_heart_rate(self, bpm: float) -> None:
        """Change the simulated heart rate target in bpm."""
        self._pumps["ecg"].gen.set_heart_rate(bpm)

    def check(self) -> None:
        """Raise the first error any simulator thread hit."""
        for pump in self._pumps.values():
            if pump.error is not None:
                raise RuntimeError(f"simulator {pump.role} failed: {pump.error!r}")

    def samples_pushed(self) -> dict[str, int]:
        """Samples generated per role so far (including paused ones)."""
        return {role: p.n_done for role, p in self._pumps.items()}

    def stop(self) -> None:
        """Stop the threads and destroy the outlets."""
        self._stop.set()
        for pump in self._pumps.values():
            if pump.is_alive():
                pump.join(timeout=2.0)


def serve(config: SimConfig, commands: IO[str], replies: IO[str]) -> None:
    """Run simulators, obeying one text command per line until ``stop`` or EOF.

    Commands: ``pause ROLE SECONDS``, ``hr BPM``, ``count``, ``stop``. Replies are one
    JSON object per line: ``{"t0": …}`` once started, then answers to ``count``.
    Used as the body of the simulator child process.
    """
    with SimulatorSession(config) as sim:
        replies.write(json.dumps({"t0": sim.t0}) + "\n")
        replies.flush()
        for line in commands:
            cmd, *args = line.split()
            if cmd == "stop":
                break
            if cmd == "pause":
                sim.pause(args[0], float(args[1]))
            elif cmd == "hr":
                sim.set_heart_rate(float(args[0]))
            elif cmd == "count":
                replies.write(json.dumps(sim.samples_pushed()) + "\n")
                replies.flush()
            sim.check()


class SimulatorProcess:
    """Run a :class:`SimulatorSession` in a child process.

    A separate process keeps the simulators' GIL and liblsl teardown away from the
    consumer under test or the closed loop, as a real device would be. The child
    ends when told to, when this object is garbage-collected, or when its stdin
    closes because the parent died.

    Parameters
    ----------
    config : SimConfig
        What to simulate.
    start_timeout : float
        Seconds to wait for the child to publish its outlets.
    """

    def __init__(self, config: SimConfig, start_timeout: float = 60.0) -> None:
        self.config = config
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "stimloop.devices.sim.runner", json.dumps(asdict(config))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready, _, _ = select.select([self._proc.stdout], [], [], start_timeout)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            self._proc.kill()
            raise RuntimeError(
                f"simulator process did not start within {start_timeout} s "
                f"(exit code {self._proc.poll()})"
            )
        self.t0 = json.loads(line)["t0"]

    def _send(self, line: str) -> None:
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()

    def pause(self, role: str, seconds: float) -> None:
        """Pause one stream for ``seconds`` (a real gap in its timestamps)."""
        self._send(f"pause {role} {seconds}")

    def set_heart_rate(self, bpm: float) -> None:
        """Change the simulated heart rate in bpm."""
        self._send(f"hr {bpm}")

    def samples_generated(self) -> dict[str, int]:
        """Samples generated so far per role."""
        self._send("count")
        return json.loads(self._proc.stdout.readline())

    def kill(self) -> None:
        """Kill the process abruptly, as a crashing device driver would vanish."""
        self._proc.kill()
        self._proc.wait(5.0)

    def stop(self) -> None:
        """Stop cleanly (kill after 5 s)."""
        if self._proc.poll() is None:
            try:
                self._send("stop")
                self._proc.wait(5.0)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait(5.0)
        for pipe in (self._proc.stdin, self._proc.stdout):
            pipe.close()

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    _cfg = json.loads(sys.argv[1])
    _cfg["roles"] = tuple(_cfg["roles"])
    serve(SimConfig(**_cfg), sys.stdin, sys.stdout)
