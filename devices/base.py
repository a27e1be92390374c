"""Interfaces of the hardware abstraction layer: Source, Stimulator, TriggerLine.

Lifecycle (the same for every driver, after BrainFlow's prepare → start → stop →
release)::

    stim.connect()            # open the port, take remote control, start keep-alive
    stim.set_intensity(55)    # % of maximum stimulator output (MSO)
    stim.arm()                # charge; returns once the device reports ready
    stim.fire()               # or fire(at=t_lsl) for a pulse at an LSL-clock time
    stim.disarm()
    stim.close()              # idempotent; disarms first if still armed

A driver is *unsafe by itself*: it enforces only what its protocol needs. Research
code never holds a bare driver. The registry wraps every stimulator in
:class:`stimloop.devices.safety.SafeStimulator`, which enforces the session limits,
the rTMS table and the interlocks before a call reaches the driver.

All times are LSL local-clock seconds (``pylsl.local_clock()``), named ``t_lsl``.
"""

from __future__ import annotations

import math
import numbers
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import pylsl

from stimloop.devices.errors import DeviceError, ErrorCode

#: Busy-wait only the last part of a scheduled wait; sleep the rest (see :func:`wait_until`).
SPIN_S = 0.001


def wait_until(t_lsl: float, spin_s: float = SPIN_S) -> float:
    """Block until the LSL clock reaches ``t_lsl``; return the clock when released.

    Sleeps until ``spin_s`` before the target (OS sleep has ~0.1 ms granularity plus
    scheduling jitter), then spins on :func:`pylsl.local_clock` for the last part so the
    release is sub-millisecond without burning a core for long waits.

    Parameters
    ----------
    t_lsl : float
        Target time, LSL local-clock seconds. A time in the past returns immediately.
    spin_s : float
        Length of the final busy-wait in s.
    """
    while True:
        now = pylsl.local_clock()
        remaining = t_lsl - now
        if remaining <= 0:
            return now
        if remaining > spin_s:
            time.sleep(remaining - spin_s)
        else:
            break
    while (now := pylsl.local_clock()) < t_lsl:
        pass
    return now


def is_number(value: object) -> bool:
    """True for real numbers (Python or numpy), False for bools, strings and None."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class StimulatorStatus:
    """A snapshot of a stimulator's state.

    Attributes
    ----------
    connected : bool
        The port is open and the device is under remote control.
    armed : bool
        The device is armed (charging or charged).
    ready : bool
        Armed and charged: a trigger now produces a pulse.
    coil_present : bool
        A coil is connected and recognised.
    coil_temperature_c : float or None
        Coil temperature in °C, or None when the device does not report it.
    intensity_pct : float
        Current output setting in % of maximum stimulator output (MSO).
    error : str or None
        The device's or driver's current fault, or None when there is none.
    train_running : bool or None
        A repetitive train is being delivered now (the device reports it); False after a
        disarm, which ends a running train. None when the driver cannot tell.
    """

    connected: bool
    armed: bool
    ready: bool
    coil_present: bool
    coil_temperature_c: float | None
    intensity_pct: float
    error: str | None = None
    train_running: bool | None = None


@dataclass(frozen=True)
class TrainSpec:
    """A repetitive-TMS train.

    Attributes
    ----------
    frequency_hz : float
        Pulse repetition rate within the train in Hz.
    n_pulses : int
        Pulses in the train (>= 1).
    """

    frequency_hz: float
    n_pulses: int

    @property
    def duration_s(self) -> float:
        """Train duration in s: ``n_pulses / frequency_hz`` (the guidelines' convention)."""
        return self.n_pulses / self.frequency_hz

    def pulses_due(self, elapsed_s: float) -> int:
        """Pulses due within the first ``elapsed_s`` s after the first pulse (the first
        counts from time 0+; none before it): ``ceil(elapsed_s * frequency_hz)``, at most
        ``n_pulses``. A train stopped ``elapsed_s`` after it started delivered at most this
        many (a device runs its train itself and does not report each pulse)."""
        if not elapsed_s > 0:
            return 0
        return min(self.n_pulses, math.ceil(elapsed_s * self.frequency_hz))

    def validate(self) -> None:
        """Raise :class:`DeviceError` (BAD_ARGUMENT) on a non-physical train."""
        if not (self.frequency_hz > 0) or self.frequency_hz != self.frequency_hz:
            raise DeviceError(
                ErrorCode.BAD_ARGUMENT, f"train frequency_hz must be > 0, got {self.frequency_hz}"
            )
        if int(self.n_pulses) != self.n_pulses or self.n_pulses < 1:
            raise DeviceError(
                ErrorCode.BAD_ARGUMENT,
                f"train n_pulses must be an integer >= 1, got {self.n_pulses}",
            )


class Device(ABC):  # noqa: B024 (metadata-only base; the abstract API is in subclasses)
    """What every driver declares for the registry and for ``stimloop devices``."""

    #: Registry name, e.g. ``"magstim-rapid"``.
    name: ClassVar[str] = ""
    #: ``"stimulator"``, ``"source"`` or ``"trigger"``.
    kind: ClassVar[str] = ""
    #: One line shown by ``stimloop devices``.
    description: ClassVar[str] = ""


class Stimulator(Device):
    """A TMS (or other) stimulator driver.

    Drivers implement the abstract methods. State rules every driver must keep (the
    conformance kit checks them): ``arm``/``set_intensity``/``configure_train`` need
    ``connect`` first (``NOT_CONNECTED``); ``fire``/``fire_train`` need ``arm``
    (``NOT_ARMED``); ``connect`` twice raises ``ALREADY_CONNECTED``; ``close`` is
    idempotent, disarms first and stops every thread it started; any error raised
    after ``connect`` leaves the device disarmed (or reports that it could not).
    """

    kind: ClassVar[str] = "stimulator"
    #: Output range the device accepts, % MSO.
    intensity_range_pct: ClassVar[tuple[float, float]] = (0.0, 100.0)

    @abstractmethod
    def connect(self) -> None:
        """Open the link and take remote control."""

    @abstractmethod
    def close(self) -> None:
        """Disarm if armed, release remote control and the port. Idempotent."""

    @abstractmethod
    def arm(self) -> None:
        """Arm (charge); return once the device reports ready, else raise NOT_READY."""

    @abstractmethod
    def disarm(self) -> None:
        """Disarm. Safe to call in any state after connect."""

    @abstractmethod
    def set_intensity(self, intensity_pct: float) -> None:
        """Set the output in % of maximum stimulator output."""

    @abstractmethod
    def fire(self, at: float | None = None, *, site: str = "", reason: str = "") -> float:
        """Deliver one pulse now, or at LSL time ``at``; return the LSL time it was triggered."""

    @abstractmethod
    def configure_train(self, train: TrainSpec) -> None:
        """Load repetitive-train parameters into the device."""

    @abstractmethod
    def fire_train(self, at: float | None = None, *, site: str = "", reason: str = "") -> float:
        """Start the configured train now or at ``at``; return the LSL time of its first pulse."""

    @abstractmethod
    def status(self) -> StimulatorStatus:
        """Query the device and return a fresh status snapshot."""

    @property
    @abstractmethod
    def connected(self) -> bool:
        """True between a successful ``connect`` and ``close``."""

    def max_frequency_hz(self, intensity_pct: float) -> float:
        """The device's own maximum repetition rate at this output, in Hz (inf if none)."""
        return float("inf")

    def __enter__(self) -> Stimulator:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TriggerLine(Device):
    """A TTL output that triggers a device (e.g. a stimulator's trigger input)."""

    kind: ClassVar[str] = "trigger"

    @abstractmethod
    def open(self) -> None:
        """Open the line and drive it to its idle level."""

    @abstractmethod
    def pulse(self, at: float | None = None, width_s: float = 0.001) -> float:
        """Drive the line active for ``width_s`` s, now or at LSL time ``at``; return edge time."""

    @abstractmethod
    def close(self) -> None:
        """Return the line to idle and release it. Idempotent."""


#: ``freshness()`` of a source: (age of newest sample in s, stream flagged good).
#: ``() -> (age_s, ok)`` or ``(age_s, ok, reason)``: the age in s of the driving stream's
#: newest sample, whether the stream is good, and (optionally) why it is not.
FreshnessFn = Callable[[], tuple[float, bool] | tuple[float, bool, str]]


class Source(Device):
    """A data source that publishes one or more LSL streams.

    Lifecycle: ``connect`` → ``start`` (streaming, outlets live) → ``stop`` → ``close``.
    """

    kind: ClassVar[str] = "source"

    @abstractmethod
    def connect(self) -> None:
        """Open the device (no data flows yet)."""

    @abstractmethod
    def start(self) -> None:
        """Start streaming: create the LSL outlets and push data."""

    @abstractmethod
    def stop(self) -> None:
        """Stop streaming; outlets are destroyed."""

    @abstractmethod
    def close(self) -> None:
        """Release the device. Idempotent; stops first if streaming."""

    @property
    @abstractmethod
    def source_ids(self) -> tuple[str, ...]:
        """LSL source_id of every outlet this source publishes."""

    @abstractmethod
    def freshness(self) -> tuple[float, bool]:
        """Age in s of the newest pushed sample and whether the stream is good."""
