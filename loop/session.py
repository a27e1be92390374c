"""Run a closed-loop session from a :class:`~stimloop.loop.config.SessionConfig`.

Order of events (each step fails cleanly, leaving nothing armed):

1. check that the recording can be written, and claim the session's private endpoint
   directory with its e-stop socket (a session without its e-stop does not start);
2. connect every inlet (in parallel; a missing, mismatched or wrongly clocked stream
   stops here);
3. start the protocol and the DSP stages (derived-stream outlets, kernels warmed up);
4. open the stimulator behind the HAL gate and set the intensity;
5. open the control channel and the status stream, start the recorder, then arm;
6. run the :class:`~stimloop.loop.engine.Engine` until the duration ends, the protocol
   is done or the caller stops it, supervising the recorder and the channels;
7. stop the engine, disarm, record the summary, stop the recorder, close everything.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pylsl

from stimloop.devices.endpoints import SessionEndpoint
from stimloop.devices.estop import EmergencyStopListener, emergency_stop_engaged
from stimloop.devices.registry import open_stimulator
from stimloop.devices.safety import SafeStimulator
from stimloop.loop import catalog
from stimloop.loop.config import SessionConfig
from stimloop.loop.control import ControlServer, StatusPublisher
from stimloop.loop.cpus import SessionPinning
from stimloop.loop.eda_stage import EDAStage
from stimloop.loop.engine import Engine
from stimloop.loop.errors import SessionError
from stimloop.loop.exposure_stage import BANDS, ExposureStage
from stimloop.loop.hbc_protocol import HBCProtocol
from stimloop.loop.heart_stage import HeartStage
from stimloop.loop.phase_locked import EEG_MAX_GAP_S, PhaseLockedProtocol
from stimloop.loop.protocol import Prompt, StimProtocol, Stop
from stimloop.loop.recording import RecorderProcess, check_writable, resolve_recording_path
from stimloop.loop.stage import Stage
from stimloop.stream.discovery import list_streams
from stimloop.stream.inlet import Inlet, MarkerInlet

log = logging.getLogger("stimloop.loop")

#: Longest gap (s) each input's inlet bridges with NaN; a longer one restarts its
#: consumer. EEG: see :data:`~stimloop.loop.phase_locked.EEG_MAX_GAP_S`; ECG the same
#: (heart rate is invalid across the gap either way); EDA 30 s (the SCL recovers slowly,
#: so a restart costs more than a long bridge).
MAX_GAP_S = {"eeg": EEG_MAX_GAP_S, "ecg": 10.0, "eda": 30.0}
#: Seconds to wait for each input's first samples at open (their clock is checked).
FIRST_DATA_S = 5.0


def make_protocol(cfg: SessionConfig, stages: Sequence[Stage], seed: int) -> StimProtocol:
    """The protocol the session file's ``[protocol] kind`` names, built on its stages."""
    p = cfg.protocol
    if p.kind == "phase_locked":
        return PhaseLockedProtocol(p, cfg.channels, cfg.dsp, seed=seed)
    heart = next(s for s in stages if isinstance(s, HeartStage))
    return HBCProtocol(p, heart, seed=seed)


@dataclass
class SessionResult:
    """What a session did.

    Attributes
    ----------
    pulses : list of dict
        Every delivered pulse with its decision data and latency components.
    refusals : list of dict
        The pulses the HAL refused (the newest 10 000), with the reason.
    engine : dict
        Loop statistics (iterations, processing time, allocation, GC).
    streams : dict
        Health of each input stream.
    recordings : list of str
        The XDF files written (more than one when the recorder was restarted).
    """

    pulses: list[dict] = field(default_factory=list)
    refusals: list[dict] = field(default_factory=list)
    engine: dict[str, Any] = field(default_factory=dict)
    streams: dict[str, dict] = field(default_factory=dict)
    recordings: list[str] = field(default_factory=list)

    @property
    def recording(self) -> str | None:
        """The first recording file, or None."""
        return self.recordings[0] if self.recordings else None


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
        They are announced in the status stream, named in the decision stream's header
        and recorded with the session, so the window and ``stimloop analyze`` show them.
    runtime_root : Path, optional
        Where the session's endpoint directory goes (default: the user's runtime root).
    extra_stages : sequence of Stage, optional
        Further DSP stages (a plug-in's derived stream, registered in
        :mod:`stimloop.loop.catalog`); each is started on its role's inlet like the
        built-in ones.
    """

    def __init__(
        self,
        cfg: SessionConfig,
        prefix: str | None = None,
        seed: int = 0,
        truth_source_ids: dict[str, str] | None = None,
        runtime_root: Path | None = None,
        extra_stages: Sequence[Stage] = (),
    ) -> None:
        self.cfg = cfg
        self.truth_source_ids = dict(truth_source_ids or {})
        self.prefix = prefix or f"stimloop-{cfg.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.seed = seed
        self.runtime_root = runtime_root
        self.endpoint: SessionEndpoint | None = None
        self.inlets: dict[str, Inlet] = {}
        self.events: MarkerInlet | None = None
        self.replayed: dict[str, str] = {}  # role -> the recording a replayed input replays
        self.stages: list[Stage] = []
        self.exposure: ExposureStage | None = None
        self._extra_stages = list(extra_stages)
        self.stimulator: SafeStimulator | None = None
        self.protocol: StimProtocol | None = None
        self.engine: Engine | None = None
        self.markers = None
        self.estimates = None
        self.control: ControlServer | None = None
        self.estop: EmergencyStopListener | None = None
        self.status: StatusPublisher | None = None
        self._status_out = None
        self.recorder: RecorderProcess | None = None
        # Taken before any thread starts, so "all CPUs" means what this process was given.
        self.cpus = SessionPinning()
        self._closed = False
        self._opened = False

    @property
    def recording_path(self) -> Path | None:
        """The file being recorded now (None without a recording)."""
        return self.recorder.path if self.recorder is not None else None

    # -- opening -------------------------------------------------------------------------
    def open(self) -> Session:
        """Steps 1-5 of the module docstring; on any failure everything is released.

        Raises
        ------
        SessionError
            Anything that stops the session from starting; also a second call (``with
            session.open():`` calls it twice), which would publish every stream twice.
        """
        if self._opened:
            raise SessionError("this session is already open: open() it once")
        self._opened = True
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def _open(self) -> None:
        cfg = self.cfg
        path = resolve_recording_path(cfg.recording.path) if cfg.recording.path else None
        if path is not None:
            check_writable(path)
        self.endpoint = SessionEndpoint(cfg.name, self.prefix, self.runtime_root).create()
        self.estop = EmergencyStopListener(
            self.endpoint.estop_socket, f"{cfg.name} ({self.prefix})"
        ).start()
        self._connect_inputs()
        self.replayed = self._replayed_inputs()
        self._open_outputs()
        if cfg.stimulator_spec is not None:
            self._open_stimulator()
        role = cfg.driving_role
        self.engine = Engine(
            self.inlets[role],
            self.protocol,
            self.stimulator,
            self.markers,
            others={r: i for r, i in self.inlets.items() if r != role},
            stages=self.stages,
            events=self.events,
            site=getattr(cfg.protocol, "site", ""),
            estimates=self.estimates,
            watchdog_period_s=cfg.watchdog_period_s,
            driver_role=role,
            on_prompt=self._on_prompt,
            on_stop=self._on_stop,
        )
        self._open_channels()
        if path is not None:
            self._start_recorder(path)
        self._mark("config", config=cfg.model_dump())
        for role, f in self.replayed.items():
            self._mark("input_replayed", role=role, replay_file=f)
        if self.stimulator is not None and not self.protocol.waiting:
            self.stimulator.arm()
        # Drop what queued up while connecting and warming up (a cold numba cache can take
        # a minute): the loop, its derived streams and its figures start on fresh samples.
        for inlet in self.inlets.values():
            inlet.skip_backlog()
        if self.events is not None:
            self.events.pull()  # stimuli from before the loop have no data recorded

    def _connect_inputs(self) -> None:
        """Connect every input in parallel and read its first samples, so a stream on a
        wrong clock is refused now, before anything is armed."""
        signals = {role: src for role, src in self.cfg.sources.items() if role != "events"}
        # EEG drives stimulation, so it goes stale after 2 x 10 ms; ECG and EDA only
        # feed displays and scores, so 2 x 50 ms of silence is tolerated first.
        self.inlets = {
            role: Inlet(
                src.source_id,
                src.hostname,
                expected_rate=src.rate_hz,
                expected_channels=src.channels,
                max_gap_s=MAX_GAP_S[role],
                chunk_period_s=0.01 if role == "eeg" else 0.05,
            )
            for role, src in signals.items()
        }
        events = self.cfg.sources.get("events")
        self.events = MarkerInlet(events.source_id, events.hostname) if events else None
        items = [*self.inlets.values(), *([self.events] if self.events else [])]
        with ThreadPoolExecutor(len(items)) as pool:
            list(pool.map(lambda inlet: inlet.connect(), items))
        for inlet in self.inlets.values():
            deadline = time.monotonic() + FIRST_DATA_S
            while not len(inlet.pull(0.1)) and time.monotonic() < deadline:
                pass

    def _replayed_inputs(self) -> dict[str, str]:
        """Role -> recording, for every input that says it is a replay (``stimloop
        replay``, which keeps the recorded source_ids unless given a suffix).

        A replayed brain or heart is not the subject's: it may drive the simulated
        stimulator (CI, rehearsals), never a real one. Either way it is recorded (the
        decision stream's header and an ``input_replayed`` marker)."""
        inputs = {**self.inlets, **({"events": self.events} if self.events else {})}
        found = {role: f for role, inlet in inputs.items() if (f := inlet.replay_file)}
        spec = self.cfg.stimulator_spec
        if found and spec is not None and spec.driver != "simulated":
            named = "; ".join(
                f"{role} ({self.cfg.sources[role].source_id}) replays {f!r}"
                for role, f in found.items()
            )
            raise SessionError(
                f"a replayed recording may drive only the simulated stimulator, not "
                f"{spec.driver!r}: {named}; stop the replay (or give it "
                f"--source-id-suffix) and connect the live device"
            )
        for role, f in found.items():
            log.warning("input %s is a replay of %s, not a live device", role, f)
        return found

    def _open_stimulator(self) -> None:
        """The stimulator behind the gate: connected, intensity set, not yet armed."""
        spec = self.cfg.stimulator_spec
        if spec.driver == "simulated" and "source_id" not in spec.options:
            # The simulated stimulator publishes its pulses; give that stream the
            # session prefix so the recorder picks it up with the session's own.
            pulses_id = catalog.mark_published(self.prefix, "pulses")
            spec = replace(spec, options={**spec.options, "source_id": pulses_id})
        spec = self.protocol.adjust_stimulator(spec)
        self.stimulator = open_stimulator(
            spec, marker_source_id=catalog.mark_published(self.prefix, "safety")
        )
        self.stimulator.connect()
        self.protocol.prepare(self.stimulator)

    def _open_outputs(self) -> None:
        """The decision stream, the DSP stages, and the protocol with its streams."""
        cfg = self.cfg
        # The config rides in the decision stream's header too, so every recording of
        # that stream carries it even if the config marker itself were missed.
        self.markers = catalog.outlet(
            "decisions",
            self.prefix,
            extra_desc={
                "session_config": json.dumps(cfg.model_dump()),
                "truth_source_ids": json.dumps(self.truth_source_ids),
                "replayed_inputs": json.dumps(self.replayed),
            },
        )
        self._open_stages()
        if cfg.protocol is None:
            return
        self.protocol = make_protocol(cfg, self.stages, self.seed)
        driver = self.inlets[cfg.driving_role]
        self.protocol.start(driver.rate_hz, driver.channel_labels)
        self.estimates = self.protocol.open_outlets(self.prefix)

    def _open_stages(self) -> None:
        cfg = self.cfg
        if "ecg" in self.inlets:
            self.stages.append(
                HeartStage(cfg.channels.ecg, cfg.dsp.hr_rate_hz, cfg.dsp.hrv_window_s)
            )
        if "eda" in self.inlets:
            self.stages.append(
                EDAStage(cfg.channels.eda, min_amplitude=cfg.dsp.scr_min_amplitude_us)
            )
        if cfg.exposure is not None:
            heart = next((s for s in self.stages if isinstance(s, HeartStage)), None)
            eda = next(s for s in self.stages if isinstance(s, EDAStage))
            # After the EDA stage: the engine updates the stages of a role in order.
            self.exposure = ExposureStage(cfg.exposure, eda, heart)
            self.stages.append(self.exposure)
        self.stages += self._extra_stages
        for stage in self.stages:
            inlet = self.inlets[stage.role]
            stage.start(inlet.rate_hz, inlet.channel_labels, self.prefix)

    def _open_channels(self) -> None:
        """Command channel and status stream (the e-stop opened first, in _open)."""
        self.control = ControlServer(
            self.endpoint.control_socket, self._command, self._command_refused
        ).start()
        self._status_out = catalog.outlet("status", self.prefix)
        self.status = StatusPublisher(self._status_out, self.snapshot).start()

    def _start_recorder(self, path: Path) -> None:
        """Record every input, every truth stream and every stream of this session."""
        inputs = [src.source_id for src in self.cfg.sources.values()]
        inputs += list(self.truth_source_ids.values())
        own = [
            s["source_id"]
            for s in list_streams(1.0)
            if s["source_id"].startswith(f"{self.prefix}-")
        ]
        # The recorder takes each input from the host the config pins it to, as the
        # session's inlets do.
        hosts = {s.source_id: s.hostname for s in self.cfg.sources.values() if s.hostname}
        self.recorder = RecorderProcess(path, inputs + own, hosts)
        self.recorder.start()

    # -- commands ------------------------------------------------------------------------
    def _mark(self, event: str, **info: object) -> None:
        """Publish a decision-stream marker; ``event`` is always ours, never a sender's."""
        self.markers.push_marker(json.dumps({**info, "event": event}, default=str))

    def _command(self, cmd: str, args: dict) -> None:
        """Run one control command; every stimulator action goes through the gate."""
        self._mark("command", cmd=cmd, args=args)
        if cmd in ("arm", "disarm", "pause", "resume", "confirm") and self.protocol is None:
            raise SessionError(f"{cmd}: this session has no stimulation protocol")
        if cmd == "arm":
            if self.protocol.waiting:
                raise SessionError("arm: the protocol waits for the operator's confirm first")
            self.stimulator.arm()
        elif cmd == "disarm":
            self.stimulator.disarm("operator")
        elif cmd == "pause":
            self.engine.pause()
        elif cmd == "resume":
            self.engine.resume()
        elif cmd == "confirm":
            if not self.protocol.waiting:
                raise SessionError("confirm: the protocol is not waiting for the operator")
            self.protocol.confirm(args.get("text", ""))
            self.stimulator.arm()
        elif cmd == "mark":
            if self.exposure is None:
                raise SessionError("mark: this session has no [exposure] section")
            self.exposure.mark(args.get("marker", ""), pylsl.local_clock())
        elif cmd == "marker":
            text = args.get("text", "").strip()
            if not text:
                raise SessionError("marker command needs a non-empty 'text'")
            self._mark("user_marker", text=text)
        elif cmd == "gui_open":
            self.cpus.window_opened()
        elif cmd == "gui_closed":
            if self.cfg.disarm_on_gui_close:  # safety first, CPUs after
                self._disarm("window closed")
            if args.get("attached"):
                self.cpus.window_closed()

    def _command_refused(self, cmd: str, message: str, peer: dict) -> None:
        self._mark("command_refused", cmd=cmd, error=message, peer=peer)

    def _disarm(self, reason: str) -> None:
        if self.stimulator is not None:
            self.stimulator.disarm(reason)

    def _on_prompt(self, prompt: Prompt) -> None:
        """The protocol needs the operator: disarm until they confirm (engine thread)."""
        self.stimulator.disarm(f"waiting for the operator: {prompt.message}")
        log.warning(
            "operator: %s (stimloop confirm, or the window's Confirm button)", prompt.message
        )

    def _on_stop(self, stop: Stop) -> None:
        """The protocol ended for safety: disarm now, then alert (engine thread)."""
        self.stimulator.disarm(stop.reason)
        self._mark("alert", reason=stop.reason, **stop.info)
        log.critical("protocol stopped (%s): %s; disarmed", stop.reason, stop.info)

    # -- status --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The status the window shows: stimulator, safety headroom, streams, catalog."""
        eng = self.engine
        streams = {}
        for role, inlet in self.inlets.items():
            counts = eng.streams[role].counts
            streams[role] = {
                "source_id": inlet.source_id,
                "connected": inlet.connected,
                "stale": inlet.is_stale(),
                "age_s": inlet.age_s() if inlet.connected else None,
                "timing": inlet.timing_problem,
                "rate_hz": counts.rate_hz,
                "samples": counts.samples,
                "gaps": counts.gaps,
                "lost_samples": counts.lost_samples,
                "nonfinite": counts.nonfinite,
            }
        return {
            "session": self.cfg.name,
            "prefix": self.prefix,
            "endpoint": str(self.endpoint.directory),
            "estop_engaged": emergency_stop_engaged(),
            "truth_source_ids": self.truth_source_ids,
            "replayed_inputs": self.replayed,
            "cpus": self.cpus.describe(),
            "source_ids": {role: i.source_id for role, i in self.inlets.items()},
            "catalog": catalog.published(self.prefix),
            "recording": str(self.recording_path) if self.recording_path else None,
            "stimulator": self._stimulator_status() if self.stimulator is not None else None,
            "protocol": self._protocol_status(),
            "exposure": self._exposure_status(),
            "streams": streams,
        }

    def _exposure_status(self) -> dict[str, Any] | None:
        x = self.exposure
        if x is None:
            return None
        return {
            "calibrated": x.monitor is not None,
            "band": BANDS[x.state],
            "alert": x.alerting,
            "band_low": x.cfg.band_low,
            "band_high": x.cfg.band_high,
            "alert_after_s": x.cfg.alert_after_s,
        }

    def _protocol_status(self) -> dict[str, Any] | None:
        p = self.protocol
        if p is None:
            return None
        out = {
            "name": p.name,
            "running": self.engine.protocol_enabled.is_set(),
            "waiting": p.waiting,
        }
        if isinstance(p, PhaseLockedProtocol):
            cal = p.calibration.describe() if p.calibration is not None else None
            out.update(
                target_phase_deg=p.cfg.target_phase_deg, control=p.cfg.control, calibration=cal
            )
        if isinstance(p, HBCProtocol):
            # The window offers Confirm only once the site has been asked for.
            out.update(site=p.site, site_number=p.site_k + 1, sites=p.order, state=p.state,
                       waiting=p.asking)  # fmt: skip
        return out

    def _stimulator_status(self) -> dict[str, Any]:
        gate, eng = self.stimulator, self.engine
        st = gate.status()
        limits = gate.limits
        return {
            "driver": gate.driver_name,
            "armed": st.armed,
            "ready": st.ready,
            "coil_present": st.coil_present,
            "coil_temperature_c": st.coil_temperature_c,
            "intensity_pct": st.intensity_pct,
            "error": st.error,
            "pulses_delivered": gate.pulses_delivered,
            "refusals": eng.n_refused,
            "last_refusal": eng.refusals[-1]["error"] if eng.refusals else None,
            "max_pulses": limits.max_pulses,
            "pulse_headroom": limits.max_pulses - gate.pulses_delivered,
            "max_intensity_pct": limits.max_intensity_pct,
            "intensity_headroom_pct": limits.max_intensity_pct - st.intensity_pct,
            "min_ipi_s": limits.min_ipi_s,
        }

    # -- running -------------------------------------------------------------------------
    def run(
        self,
        duration_s: float | None = None,
        on_tick: Callable[[Session], None] | None = None,
        stop: threading.Event | None = None,
    ) -> SessionResult:
        """Step 6-7: run the engine until the duration, the protocol or ``stop`` ends it.

        Parameters
        ----------
        duration_s : float, optional
            Overrides the config's duration (None and no config duration: until stop).
        on_tick : callable, optional
            Called from this (non-real-time) thread about every 50 ms.
        stop : threading.Event, optional
            Set it to end the session early (the CLI sets it on SIGINT/SIGTERM/SIGHUP).
        """
        if self.engine is None:
            raise SessionError("Session.run() needs open() first")
        duration = duration_s if duration_s is not None else self.cfg.duration_s
        t_end = time.monotonic() + (duration if duration is not None else math.inf)
        stop = stop or threading.Event()
        self.engine.start()
        try:
            while time.monotonic() < t_end and not stop.is_set() and self.engine.running:
                if on_tick is not None:
                    on_tick(self)
                self._supervise()
                stop.wait(0.05)
        finally:
            self.engine.stop()
        if self.engine.error is not None:
            raise SessionError(f"engine failed: {self.engine.error!r}") from self.engine.error
        return self._result()

    def _supervise(self) -> None:
        """Notice a dead recorder, control or e-stop thread: disarm, record, restart."""
        if self.recorder is not None and not self.recorder.alive:
            code = self.recorder.exit_code
            self._disarm("recorder died")
            log.error("the recorder died (exit code %s); disarmed, restarting it", code)
            new = self.recorder.start()
            # Marked after the restart, so that it is on disk (in the new part).
            self._mark(
                "recorder_died",
                exit_code=code,
                new_part=str(new),
                note="disarmed; re-arm with the arm command",
            )
        if not self.control.alive:
            self._disarm("control channel died")
            self.control.close()
            self._open_control_only()
            self._mark("control_died", note="disarmed and restarted the control channel")
        if not self.estop.alive:
            self._disarm("e-stop listener died")
            self._mark("estop_listener_died", note="disarmed; the session ends")
            raise SessionError("the e-stop listener died; the session cannot go on without it")

    def _open_control_only(self) -> None:
        self.control = ControlServer(
            self.endpoint.control_socket, self._command, self._command_refused
        ).start()

    def _result(self) -> SessionResult:
        st = self.engine.stats
        engine = {
            "iterations": st.iterations,
            "busy": st.busy_percentiles(),
            "allocated_blocks_growth": st.allocated_blocks_growth,
            "gc_collections": st.gc_collections,
            "realtime": st.realtime,
        }
        streams = {role: h.summary() for role, h in self.engine.streams.items()}
        self._mark(
            "session_summary",
            streams=streams,
            engine=engine,
            pulses=len(self.engine.pulses),
            refused=self.engine.n_refused,
        )
        return SessionResult(
            pulses=list(self.engine.pulses),
            refusals=list(self.engine.refusals),
            engine=engine,
            streams=streams,
            recordings=[str(p) for p in self.recorder.paths] if self.recorder else [],
        )

    # -- closing -------------------------------------------------------------------------
    def close(self) -> None:
        """Disarm and release everything, in order; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.engine is not None and self.engine.running:
            self.engine.stop()
        if self.stimulator is not None:
            try:
                self.stimulator.disarm("session end")
            except Exception:  # the gate's own disarm paths already ran; keep closing
                log.exception("disarming the stimulator failed")
        for channel in (self.status, self.control):
            if channel is not None:
                channel.close()
        self.cpus.release()  # a crashed window never said it left
        # Every outlet must outlive the recorder: liblsl drops what a vanished stream
        # still had buffered. Give the last markers time to arrive, stop the recorder,
        # then destroy the outlets.
        if self.recorder is not None and self.recorder.alive:
            time.sleep(0.3)
            self.recorder.stop()
        self._release()

    def _release(self) -> None:
        if self.stimulator is not None:
            try:
                self.stimulator.close()
            except Exception:  # closing must continue; it was disarmed above
                log.exception("closing the stimulator failed")
        if self.protocol is not None:
            self.protocol.close()
        for stage in self.stages:
            stage.close()
        for inlet in [*self.inlets.values(), *([self.events] if self.events else [])]:
            inlet.close()
        for outlet in (self.markers, self.estimates, self._status_out):
            if outlet is not None:
                outlet.close()
        if self.estop is not None:
            self.estop.close()
        if self.endpoint is not None:
            self.endpoint.remove()
        catalog.forget(self.prefix)

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
