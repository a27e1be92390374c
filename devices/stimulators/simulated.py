"""A simulated TMS stimulator: the virtual subject's stimulator and the reference driver.

Every delivered pulse is logged (LSL time, intensity, site, reason) in
:attr:`SimulatedStimulator.pulses`, on the ``stimloop.devices`` logger, and published as
a JSON marker on an LSL stream (``type="Markers"``), so the recording holds the truth of
what was delivered. It models the arming (charging) time and coil heating so the
conformance kit and the safety tests exercise the same state machine as real hardware.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from dataclasses import dataclass
from typing import ClassVar

import pylsl

from stimloop.devices.base import Stimulator, StimulatorStatus, TrainSpec, is_number, wait_until
from stimloop.devices.errors import DeviceError, ErrorCode

logger = logging.getLogger("stimloop.devices")


@dataclass(frozen=True)
class PulseRecord:
    """One delivered pulse: LSL time in s, intensity in % MSO, target site and reason."""

    t_lsl: float
    intensity_pct: float
    site: str
    reason: str
    train_index: int = -1


class SimulatedStimulator(Stimulator):
    """A stimulator that exists only in software.

    Parameters
    ----------
    source_id : str, optional
        LSL source_id of the delivered-pulse marker stream (default: unique).
    arm_time_s : float
        Time from ``arm`` until the device reports ready, s.
    heat_c_per_pulse : float
        Coil heating per pulse at 100 % MSO in °C (scales with intensity squared, as the
        pulse energy does).
    cooling_tau_s : float
        Time constant of the exponential cooling towards ``ambient_c``, s.
    max_coil_c : float
        Above this coil temperature the device disarms itself and refuses to arm
        (40 °C, the Magstim coil cut-out quoted by McNair's MagPy documentation).
    """

    name: ClassVar[str] = "simulated"
    description: ClassVar[str] = (
        "Simulated TMS stimulator; publishes delivered pulses as LSL markers"
    )

    def __init__(
        self,
        source_id: str | None = None,
        arm_time_s: float = 0.05,
        heat_c_per_pulse: float = 0.02,
        cooling_tau_s: float = 300.0,
        ambient_c: float = 22.0,
        max_coil_c: float = 40.0,
    ) -> None:
        self.source_id = source_id or f"stimloop-simstim-{uuid.uuid4().hex[:12]}"
        self.arm_time_s = float(arm_time_s)
        self.heat_c_per_pulse = float(heat_c_per_pulse)
        self.cooling_tau_s = float(cooling_tau_s)
        self.ambient_c = float(ambient_c)
        self.max_coil_c = float(max_coil_c)
        self.pulses: list[PulseRecord] = []
        self._lock = threading.RLock()
        self._outlet = None
        self._connected = False
        self._armed = False
        self._armed_at = 0.0
        self._intensity = 0.0
        self._train: TrainSpec | None = None
        self._temp_c = self.ambient_c
        self._temp_t = pylsl.local_clock()
        self._train_thread: threading.Thread | None = None
        self._abort = threading.Event()

    # -- helpers -------------------------------------------------------------------------
    def _require(self, connected: bool = True, armed: bool = False) -> None:
        if connected and not self._connected:
            raise DeviceError(
                ErrorCode.NOT_CONNECTED, f"{self.name}: not connected; call connect()"
            )
        if armed and not self._armed:
            raise DeviceError(ErrorCode.NOT_ARMED, f"{self.name}: not armed; call arm() first")

    def _temperature(self) -> float:
        now = pylsl.local_clock()
        decay = math.exp(-(now - self._temp_t) / self.cooling_tau_s)
        self._temp_c = self.ambient_c + (self._temp_c - self.ambient_c) * decay
        self._temp_t = now
        return self._temp_c

    def _deliver(self, t: float, site: str, reason: str, train_index: int = -1) -> None:
        rec = PulseRecord(t, self._intensity, site, reason, train_index)
        self.pulses.append(rec)
        self._temperature()
        self._temp_c += self.heat_c_per_pulse * (self._intensity / 100.0) ** 2
        logger.info(
            "%s pulse t=%.6f intensity=%g%% site=%r reason=%r",
            self.name,
            t,
            self._intensity,
            site,
            reason,
        )
        if self._outlet is not None:
            self._outlet.push_marker(
                json.dumps(
                    {
                        "event": "pulse",
                        "intensity_pct": self._intensity,
                        "site": site,
                        "reason": reason,
                        "train_index": train_index,
                    }
                ),
                t,
            )
        if self._temp_c > self.max_coil_c:
            self._armed = False
            logger.error(
                "%s coil at %.1f °C > %.1f °C: disarmed", self.name, self._temp_c, self.max_coil_c
            )

    def _stop_train(self) -> None:
        self._abort.set()
        th = self._train_thread
        if th is not None and th is not threading.current_thread():
            th.join(timeout=5.0)
        self._train_thread = None

    # -- Stimulator ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        from stimloop.stream.outlet import marker_outlet

        with self._lock:
            if self._connected:
                raise DeviceError(ErrorCode.ALREADY_CONNECTED, f"{self.name}: already connected")
            self._outlet = marker_outlet("stimloop-simulated-stimulator", self.source_id, "Markers")
            self._connected = True

    def close(self) -> None:
        self._stop_train()
        with self._lock:
            self._armed = False
            self._connected = False
            if self._outlet is not None:
                self._outlet.close()
                self._outlet = None

    def arm(self) -> None:
        with self._lock:
            self._require()
            if self._temperature() > self.max_coil_c:
                raise DeviceError(
                    ErrorCode.COIL,
                    f"{self.name}: coil at {self._temp_c:.1f} °C; "
                    f"arming allowed <= {self.max_coil_c:g} °C",
                )
            self._armed = True
            self._armed_at = pylsl.local_clock()
        if self.arm_time_s > 0:
            wait_until(self._armed_at + self.arm_time_s)

    def disarm(self) -> None:
        self._stop_train()
        with self._lock:
            self._armed = False

    def set_intensity(self, intensity_pct: float) -> None:
        lo, hi = self.intensity_range_pct
        if not (is_number(intensity_pct) and lo <= intensity_pct <= hi):
            raise DeviceError(
                ErrorCode.BAD_ARGUMENT,
                f"{self.name}: intensity {intensity_pct!r} % MSO outside [{lo:g}, {hi:g}]",
            )
        with self._lock:
            self._require()
            self._intensity = float(intensity_pct)

    def configure_train(self, train: TrainSpec) -> None:
        train.validate()
        with self._lock:
            self._require()
            self._train = train

    def _ready(self) -> bool:
        return self._armed and pylsl.local_clock() >= self._armed_at + self.arm_time_s

    def fire(self, at: float | None = None, *, site: str = "", reason: str = "") -> float:
        with self._lock:
            self._require(armed=True)
        if at is not None:
            wait_until(float(at))
        with self._lock:
            self._require(armed=True)
            if not self._ready():
                raise DeviceError(ErrorCode.NOT_READY, f"{self.name}: armed but still charging")
            t = pylsl.local_clock()
            self._deliver(t, site, reason)
        return t

    def fire_train(self, at: float | None = None, *, site: str = "", reason: str = "") -> float:
        with self._lock:
            self._require(armed=True)
            if self._train is None:
                raise DeviceError(ErrorCode.BAD_ARGUMENT, f"{self.name}: no train configured")
            train = self._train
            if self._train_thread is not None and self._train_thread.is_alive():
                raise DeviceError(ErrorCode.NOT_READY, f"{self.name}: a train is still running")
        t0 = self.fire(at, site=site, reason=reason)
        with self._lock:
            self.pulses[-1] = PulseRecord(t0, self._intensity, site, reason, 0)
        if train.n_pulses > 1:
            self._abort.clear()
            self._train_thread = threading.Thread(
                target=self._run_train,
                args=(t0, train, site, reason),
                name="simstim-train",
                daemon=True,
            )
            self._train_thread.start()
        return t0

    def _run_train(self, t0: float, train: TrainSpec, site: str, reason: str) -> None:
        for k in range(1, train.n_pulses):
            target = t0 + k / train.frequency_hz
            # Sleep in short slices so disarm()/close() abort a running train promptly.
            while (remaining := target - pylsl.local_clock()) > 0.002:
                if self._abort.wait(min(remaining - 0.001, 0.05)):
                    return
            wait_until(target)
            with self._lock:
                if self._abort.is_set() or not self._armed:
                    return
                self._deliver(pylsl.local_clock(), site, reason, k)

    def wait_train(self, timeout: float = 30.0) -> None:
        """Block until a running train has delivered its last pulse (or was aborted)."""
        th = self._train_thread
        if th is not None:
            th.join(timeout)

    def status(self) -> StimulatorStatus:
        with self._lock:
            return StimulatorStatus(
                connected=self._connected,
                armed=self._armed,
                ready=self._connected and self._ready(),
                coil_present=True,
                coil_temperature_c=round(self._temperature(), 2),
                intensity_pct=self._intensity,
                error=None if self._temp_c <= self.max_coil_c else "coil over temperature",
                train_running=self._train_thread is not None and self._train_thread.is_alive(),
            )
