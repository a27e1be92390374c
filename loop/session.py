"""Run a closed-loop session from a :class:`~stimloop.loop.config.SessionConfig`.

Order of events (each step fails cleanly, leaving nothing armed):

1. connect every inlet (in parallel; a missing or mismatched stream stops here);
2. open the stimulator behind the HAL gate, set the intensity, arm;
3. start the DSP stages (derived-stream outlets) and warm up every kernel;
4. start the recorder on every stream of the session, config included;
5. run the :class:`~stimloop.loop.engine.Engine` until the duration ends, the protocol
   is done or the caller stops it;
6. stop the engine, disarm and close the stimulator, stop the recorder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stimloop.devices.errors import DeviceError
from stimloop.devices.registry import stimulator_from_config
from stimloop.devices.safety import (
    DEFAULT_ESTOP_PORT,
    EmergencyStopListener,
    SafeStimulator,
    emergency_stop_engaged,
)
from stimloop.loop.config import SessionConfig
from stimloop.loop.control import ControlServer, StatusPublisher
from stimloop.loop.cpus import SessionPinning
from stimloop.loop.eda_stage import EDAStage
from stimloop.loop.engine import Engine
from stimloop.loop.heart_stage import HeartStage
from stimloop.loop.phase_locked import PhaseLockedProtocol, phase_outlet
from stimloop.loop.stage import Stage
from stimloop.stream.discovery import list_streams
from stimloop.stream.inlet import Inlet, MarkerInlet
from stimloop.stream.outlet import Outlet, channel_specs, marker_outlet

log = logging.getLogger("stimloop.loop")


@dataclass
class SessionResult:
    """What a session did.

    Attributes
    ----------
    pulses : list of dict
        Every delivered pulse with its decision data and latency components.
    refusals : list of dict
        Every pulse the HAL refused, with the reason.
    engine : dict
        Loop statistics (iterations, processing time, allocation, GC).
    stages : dict
        Each stage's object, for scoring by the caller.
    decision_source_id : str
        source_id of the session's decision marker stream.
    recording : str or None
        Path of the XDF recording.
    """

    pulses: list[dict] = field(default_factory=list)
    refusals: list[dict] = field(default_factory=list)
    engine: dict[str, Any] = field(default_factory=dict)
    streams: dict[str, dict] = field(default_factory=dict)
    stages: dict[str, Stage] = field(default_factory=dict)
    decision_source_id: str = ""
    recording: str | None = None


class Session:
    """A prepared session: inlets connected, stimulator armed, engine ready to start.

    Parameters
    ----------
    cfg : SessionConfig
        Validated configuration.
    prefix : str, optional
        Prefix of the session's own source_ids (derived streams, decisions).
    seed : int
        Seed of the protocol's random choices.
    truth_source_ids : dict of str to str, optional
        Ground-truth streams (simulator or replay), e.g. ``{"eeg": "demo-eeg-truth"}``.
        They are announced in the status stream and named in the decision stream's
        header, and recorded with the session, so that the live window and
        ``stimloop analyze`` both show true phases.
    """

    def __init__(
        self,
        cfg: SessionConfig,
        prefix: str | None = None,
        seed: int = 0,
        truth_source_ids: dict[str, str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.truth_source_ids = dict(truth_source_ids or {})
        self.prefix = prefix or f"stimloop-{cfg.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.seed = seed
        self.inlets: dict[str, Inlet] = {}
        self.events: MarkerInlet | None = None
        self.stages: list[Stage] = []
        self.stimulator: SafeStimulator | None = None
        self.engine: Engine | None = None
        self.markers = None
        self.estimates = None
        self.control: ControlServer | None = None
        self.estop: EmergencyStopListener | None = None
        self.status: StatusPublisher | None = None
        self._status_out = None
        self.recorder: subprocess.Popen | None = None
        self.recording_path: Path | None = None
        # Taken before any thread starts, so "all CPUs" means what this process was given.
        self.cpus = SessionPinning()
        self._closed = False

    def open(self) -> Session:
        """Steps 1-3 of the module docstring; on any failure everything is released."""
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def _open(self) -> None:
        cfg = self.cfg
        chunk_s = 0.01
        signals = {role: src for role, src in cfg.sources.items() if role != "events"}
        # EEG drives stimulation, so it goes stale after 2 x 10 ms; ECG and EDA only
        # feed displays and scores, so 2 x 50 ms of silence is tolerated first.
        self.inlets = {
            role: Inlet(
                src.source_id,
                src.hostname,
                expected_rate=src.rate_hz,
                expected_channels=src.channels,
                chunk_period_s=chunk_s if role == "eeg" else 0.05,
            )
            for role, src in signals.items()
        }
        events = cfg.sources.get("events")
        self.events = MarkerInlet(events.source_id, events.hostname) if events else None
        connectables = [*self.inlets.values(), *([self.events] if self.events else [])]
        with ThreadPoolExecutor(len(connectables)) as pool:
            list(pool.map(lambda inlet: inlet.connect(), connectables))
        self._config_json = json.dumps(cfg.model_dump())
        # The config rides in the decision stream's header too, so every recording of
        # that stream carries it even if the config marker itself were missed.
        self.markers = Outlet(
            f"stimloop {cfg.name} decisions", "Markers", f"{self.prefix}-decisions",
            channel_specs(["decision"], "", "Marker"), 0.0, "string",
            extra_desc={
                "session_config": self._config_json,
                "truth_source_ids": json.dumps(self.truth_source_ids),
            },
        )  # fmt: skip
        protocol = PhaseLockedProtocol(cfg.protocol, cfg.channels, cfg.dsp, seed=self.seed)
        eeg = self.inlets["eeg"]
        protocol.start(eeg.rate_hz, eeg.channel_labels)
        if "ecg" in self.inlets:
            self.stages.append(
                HeartStage(cfg.channels.ecg, cfg.dsp.hr_rate_hz, cfg.dsp.hrv_window_s)
            )
        if "eda" in self.inlets:
            self.stages.append(
                EDAStage(cfg.channels.eda, min_amplitude=cfg.dsp.scr_min_amplitude_us)
            )
        for stage in self.stages:
            inlet = self.inlets[stage.role]
            stage.start(inlet.rate_hz, inlet.channel_labels, self.prefix)
        stim_cfg = dict(cfg.stimulator)
        if stim_cfg["driver"] == "simulated":
            # The simulated stimulator publishes its pulses; give that stream the
            # session prefix so the recorder picks it up with the session's own.
            stim_cfg["options"] = {
                "source_id": f"{self.prefix}-pulses",
                **stim_cfg.get("options", {}),
            }
        self.stimulator = stimulator_from_config(stim_cfg, marker_source_id=f"{self.prefix}-safety")
        self.stimulator.connect()
        self.stimulator.set_intensity(cfg.protocol.intensity_pct)
        self.stimulator.arm()
        others = {r: i for r, i in self.inlets.items() if r != "eeg"}
        self.estimates = phase_outlet(
            protocol, f"stimloop {cfg.name} phase", f"{self.prefix}-phase"
        )
        self.engine = Engine(
            eeg, protocol, self.stimulator, self.markers, others=others, stages=self.stages,
            events=self.events,
            chunk_period_s=chunk_s, site=cfg.protocol.site, estimates=self.estimates,
            watchdog_period_s=cfg.watchdog_period_s,
        )  # fmt: skip
        self._open_channels()
        if cfg.recording.path:
            self._start_recorder(cfg.recording.path)
        self.markers.push_marker(json.dumps({"event": "config", "config": cfg.model_dump()}))
        # Drop what queued up while connecting and warming up: the loop starts fresh.
        for inlet in self.inlets.values():
            while len(inlet.pull(0.0)):  # one pull returns at most ~2 s of backlog
                pass

    def _open_channels(self) -> None:
        """Emergency-stop listener, command channel and status stream."""
        try:
            self.estop = EmergencyStopListener(DEFAULT_ESTOP_PORT)
        except DeviceError:
            # Another session holds the default port; take a free one and announce it.
            self.estop = EmergencyStopListener(0)
        self.control = ControlServer(self._command, self._command_failed)
        self._status_out = marker_outlet(
            f"stimloop {self.cfg.name} status", f"{self.prefix}-status", stype="Status"
        )
        self.status = StatusPublisher(self._status_out, self.snapshot)

    def _start_recorder(self, template: str) -> None:
        """Record every input and every stream of this session in a separate process.

        A separate process keeps the recorder's pulls and disk writes off this
        process's GIL, so recording can never delay the real-time loop.
        """
        path = Path(template.replace("{time}", time.strftime("%Y%m%d-%H%M%S"))).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        inputs = [src.source_id for src in self.cfg.sources.values()]
        inputs += list(self.truth_source_ids.values())
        own = [s["source_id"] for s in list_streams(1.0)
               if s["source_id"].startswith(f"{self.prefix}-")]  # fmt: skip
        args = [sys.executable, "-m", "stimloop.loop.cli", "record", "-o", str(path)]
        for sid in dict.fromkeys(inputs + own):
            args += ["--source-id", sid]
        log_path = path.with_suffix(".recorder.log")
        with open(log_path, "w") as log_file:
            self.recorder = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30.0
        while "recording to" not in log_path.read_text():
            if self.recorder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the recorder did not start (exit code {self.recorder.poll()}); "
                    f"see {log_path}:\n{log_path.read_text()[-2000:]}"
                )
            time.sleep(0.05)
        self.recording_path = path

    def _stop_recorder(self) -> None:
        if self.recorder is None or self.recorder.poll() is not None:
            return
        self.recorder.send_signal(signal.SIGINT)  # clean stop: footers are written
        try:
            self.recorder.wait(15.0)
        except subprocess.TimeoutExpired:
            log.error("recorder did not stop within 15 s; killing it")
            self.recorder.kill()
            self.recorder.wait(5.0)

    def _command(self, cmd: str, args: dict) -> None:
        """Run one control command; every stimulator action goes through the gate."""
        self.markers.push_marker(json.dumps({"event": "command", "cmd": cmd, **args}))
        if cmd == "arm":
            self.stimulator.arm()
        elif cmd == "disarm":
            self.stimulator.disarm()
        elif cmd == "pause":
            self.engine.protocol_enabled.clear()
        elif cmd == "resume":
            self.engine.protocol_enabled.set()
        elif cmd == "marker":
            text = str(args.get("text", "")).strip()
            if not text:
                raise ValueError("marker command needs a non-empty 'text'")
            self.markers.push_marker(json.dumps({"event": "user_marker", "text": text}))
        elif cmd == "gui_open":
            self.cpus.window_opened()
        elif cmd == "gui_closed":
            if self.cfg.disarm_on_gui_close:  # safety first, CPUs after
                self.stimulator.disarm()
            if args.get("attached"):
                self.cpus.window_closed()

    def _command_failed(self, cmd: str, message: str) -> None:
        self.markers.push_marker(
            json.dumps({"event": "command_refused", "cmd": cmd, "error": message})
        )

    def snapshot(self) -> dict[str, Any]:
        """The status the GUI shows: stimulator, safety headroom, streams, channels."""
        eng, gate = self.engine, self.stimulator
        st = gate.status()
        limits = gate.limits
        streams = {}
        for role, inlet in self.inlets.items():
            stats = eng.streams[role]
            streams[role] = {
                "source_id": inlet.source_id,
                "connected": inlet.connected,
                "stale": inlet.is_stale(),
                "age_s": inlet.age_s() if inlet.connected else None,
                "rate_hz": stats.rate_hz,
                "samples": stats.samples,
                "gaps": stats.gaps,
                "lost_samples": stats.lost_samples,
                "nonfinite": stats.nonfinite,
            }
        last_refusal = eng.refusals[-1]["error"] if eng.refusals else None
        return {
            "session": self.cfg.name,
            "prefix": self.prefix,
            "control_port": self.control.port,
            "estop_port": self.estop.port,
            "estop_engaged": emergency_stop_engaged(),
            "truth_source_ids": self.truth_source_ids,
            "cpus": self.cpus.describe(),
            "source_ids": {
                **{role: i.source_id for role, i in self.inlets.items()},
                "decisions": f"{self.prefix}-decisions",
                "safety": self.stimulator.marker_source_id,
                "phase": f"{self.prefix}-phase",
                "heart_hr": f"{self.prefix}-heart-hr",
                "heart_beats": f"{self.prefix}-heart-beats",
                "eda_level": f"{self.prefix}-eda-level",
                "eda_scr": f"{self.prefix}-eda-scr",
                "eda_response": f"{self.prefix}-eda-response",
            },
            "stimulator": {
                "driver": gate.driver_name,
                "armed": st.armed,
                "ready": st.ready,
                "coil_present": st.coil_present,
                "coil_temperature_c": st.coil_temperature_c,
                "intensity_pct": st.intensity_pct,
                "error": st.error,
                "pulses_delivered": gate.pulses_delivered,
                "refusals": len(eng.refusals),
                "last_refusal": last_refusal,
                "max_pulses": limits.max_pulses,
                "pulse_headroom": limits.max_pulses - gate.pulses_delivered,
                "max_intensity_pct": limits.max_intensity_pct,
                "intensity_headroom_pct": limits.max_intensity_pct - st.intensity_pct,
                "min_ipi_s": limits.min_ipi_s,
            },
            "protocol": {
                "name": eng.protocol.name,
                "running": eng.protocol_enabled.is_set(),
                "target_phase_deg": self.cfg.protocol.target_phase_deg,
                "control": self.cfg.protocol.control,
            },
            "streams": streams,
        }

    def run(
        self,
        duration_s: float | None = None,
        on_tick: Callable[[Session], None] | None = None,
        stop: threading.Event | None = None,
    ) -> SessionResult:
        """Steps 4-6: run the engine until the duration, the protocol or ``stop`` ends it.

        Parameters
        ----------
        duration_s : float, optional
            Overrides the config's duration (None and no config duration: until stop).
        on_tick : callable, optional
            Called from this (non-real-time) thread about every 50 ms.
        stop : threading.Event, optional
            Set it to end the session early.
        """
        if self.engine is None:
            raise RuntimeError("Session.run() needs open() first")
        duration = duration_s if duration_s is not None else self.cfg.duration_s
        t_end = time.monotonic() + (duration if duration is not None else math.inf)
        stop = stop or threading.Event()
        self.engine.start()
        try:
            while time.monotonic() < t_end and not stop.is_set() and self.engine.running:
                if on_tick is not None:
                    on_tick(self)
                stop.wait(0.05)
        finally:
            self.engine.stop()
        if self.engine.error is not None:
            raise RuntimeError(f"engine failed: {self.engine.error!r}") from self.engine.error
        st = self.engine.stats
        return SessionResult(
            pulses=list(self.engine.pulses),
            refusals=list(self.engine.refusals),
            engine={
                "iterations": st.iterations,
                "busy": st.busy_percentiles(),
                "allocated_blocks_growth": st.allocated_blocks_growth,
                "gc_collections": st.gc_collections,
            },
            streams={role: st.summary() for role, st in self.engine.streams.items()},
            stages={s.name: s for s in self.stages},
            decision_source_id=f"{self.prefix}-decisions",
            recording=str(self.recording_path) if self.recording_path else None,
        )

    def close(self) -> None:
        """Disarm and release everything; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.engine is not None and self.engine.running:
            self.engine.stop()
        for channel in (self.status, self.control, self.estop):
            if channel is not None:
                channel.close()
        if self.stimulator is not None:
            try:
                self.stimulator.disarm()
            except Exception:  # the gate's own disarm paths already ran; keep closing
                log.exception("disarming the stimulator failed")
        self.cpus.release()  # a crashed window never said it left
        # Every outlet must outlive the recorder: liblsl drops what a vanished stream
        # still had buffered. Give the last markers time to arrive, stop the recorder,
        # then destroy the outlets.
        if self.recorder is not None:
            time.sleep(0.3)
        self._stop_recorder()
        if self.stimulator is not None:
            try:
                self.stimulator.close()
            except Exception:  # closing must continue; it was disarmed above
                log.exception("closing the stimulator failed")
        for stage in self.stages:
            stage.close()
        for inlet in [*self.inlets.values(), *([self.events] if self.events else [])]:
            inlet.close()
        for outlet in (self.markers, self.estimates, self._status_out):
            if outlet is not None:
                outlet.close()

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
