"""What a stimulation protocol is to the engine, and the simplest one.

A protocol sees every chunk of its input and answers with at most one decision: a
:class:`PulseRequest` (fire at an LSL time), a :class:`Hold` (it would fire, but a gate
refused, and why), a :class:`Prompt` (the operator must act), a :class:`Stop` (it ends
for safety) or a :class:`Notice` (something to record).
It never touches the stimulator: the engine hands requests to the pulse scheduler,
which goes through the HAL safety gate. Only ``loop/`` decides; only ``devices/`` fires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from stimloop.devices.base import TrainSpec
from stimloop.devices.registry import StimulatorSpec
from stimloop.devices.safety import SafeStimulator
from stimloop.loop.errors import SessionError
from stimloop.stream.inlet import Chunk
from stimloop.stream.outlet import Outlet


@dataclass(frozen=True)
class PulseRequest:
    """Ask for one pulse, or one rTMS train.

    Attributes
    ----------
    t_fire : float or None
        LSL local-clock time at which to call the stimulator, s; None = now.
    info : dict
        What the decision was based on (logged with the pulse).
    train : TrainSpec or None
        Fire this train (configured through the gate, so the rTMS table applies) instead
        of a single pulse.
    intensity_pct : float or None
        Set this output (% MSO, through the gate) before firing; None keeps the current.
    site : str or None
        Stimulation site of this request (None: the session's).
    """

    t_fire: float | None
    info: dict[str, Any] = field(default_factory=dict)
    train: TrainSpec | None = None
    intensity_pct: float | None = None
    site: str | None = None


@dataclass(frozen=True)
class Hold:
    """The protocol wanted to fire but a gate said no.

    Attributes
    ----------
    reason : str
        Short machine-readable cause, e.g. ``"low_confidence"``.
    info : dict
        The values that failed the gate.
    """

    reason: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prompt:
    """The protocol needs the operator (e.g. to move the coil to the next site).

    The session disarms, publishes the prompt and waits for the operator's ``confirm``
    command; the protocol requests nothing until :meth:`StimProtocol.confirm` is called.

    Attributes
    ----------
    message : str
        What the operator must do.
    info : dict
        Details (the site, its place in the run).
    """

    message: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stop:
    """The protocol ends now for safety (e.g. the cardiac stop rule): the session
    disarms and alerts; nothing more is fired.

    Attributes
    ----------
    reason : str
        Short machine-readable cause (``"cardiac_stop"``).
    info : dict
        The values that triggered it.
    """

    reason: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Notice:
    """Something the protocol records and nobody need act on (e.g. the phase band it
    calibrated): the engine publishes it on the decision stream as an ``event`` marker.

    Attributes
    ----------
    event : str
        The marker's event name (``"phase_calibration"``).
    info : dict
        Its content (JSON-able).
    """

    event: str
    info: dict[str, Any] = field(default_factory=dict)


Decision = PulseRequest | Hold | Prompt | Stop | Notice | None


@dataclass(frozen=True)
class PulseOutcome:
    """What became of a :class:`PulseRequest`.

    Attributes
    ----------
    request : PulseRequest
    fired : bool
        True if the stimulator was triggered.
    t_trigger : float
        LSL time of the trigger (NaN if refused).
    error : str
        Why it was refused, or why a train was cut short ("" if it went out in full).
    pulses_delivered : int or None
        How many of a train's pulses went out, counted by the engine once the train is
        over (at most; see :meth:`~stimloop.devices.base.TrainSpec.pulses_due`); None
        when not counted (a single pulse).
    """

    request: PulseRequest
    fired: bool
    t_trigger: float = float("nan")
    error: str = ""
    pulses_delivered: int | None = None

    @property
    def pulses_planned(self) -> int:
        """Pulses the request asked for (a train's, else 1)."""
        return self.request.train.n_pulses if self.request.train is not None else 1

    @property
    def cut_short(self) -> bool:
        """True for a train that started but was stopped before its last pulse (the
        stimulator disarmed: train guard, operator, e-stop, watchdog, device error)."""
        n = self.pulses_delivered
        return self.fired and n is not None and n < self.pulses_planned


class StimProtocol(Protocol):
    """Interface of a closed-loop protocol (see module docstring).

    Every hook the engine calls is declared here; a protocol without a use for one
    implements it trivially (``fire_veto`` returns "", ``phase_at`` NaN,
    ``last_estimate`` None).

    Attributes
    ----------
    name : str
        Protocol name, recorded with the session.
    role : str
        The input whose chunks drive it (``"eeg"``, ``"ecg"``): the engine waits on it.
    reads_stages : bool
        Its ``update`` reads what the DSP stages made of the same chunk (heart rate), so
        the engine updates the stages first; otherwise the protocol decides first.
    max_lead_s : float
        How far ahead of now (s) the protocol may plan a pulse; the scheduler refuses a
        request further ahead (a bad timestamp must not make it wait for the future).
    late_tolerance_s : float
        How late (s) a planned pulse may leave; a later one is refused as ``late``
        (at 10 Hz, 26 ms of delay is 94° of phase).
    """

    name: str
    role: str
    reads_stages: bool
    max_lead_s: float
    late_tolerance_s: float

    @property
    def done(self) -> bool:
        """True once the protocol has delivered everything it meant to."""
        ...

    @property
    def last_estimate(self) -> tuple[float, ...] | None:
        """What the protocol estimates at the newest sample, for displays (None: nothing)."""
        ...

    def start(self, fs: float, channel_labels: Sequence[str]) -> None:
        """Prepare for an EEG stream (rate in Hz, labels) and warm up kernels."""

    def update(self, chunk: Chunk) -> Decision:
        """Consume an EEG chunk (µV, on the time grid, gaps bridged) and decide."""
        ...

    def outcome(self, result: PulseOutcome) -> None:
        """Learn what happened to the last request, once: from the pulse thread when it
        fired or was refused; for a train of several pulses that fired, from the engine
        thread once the train is over, with ``pulses_delivered`` counted (a train cut
        short has fewer than planned)."""

    def fire_veto(self, request: PulseRequest) -> str:
        """Why a pulse it planned must not fire after all ("" if it may), e.g. because an
        EEG gap arrived after the decision. The pulse scheduler asks it before waiting
        for the pulse's time and again just before the trigger."""
        ...

    def phase_at(self, t: float) -> float:
        """The protocol's phase estimate (rad) at LSL time ``t``; NaN if it has none."""
        ...

    def confirm(self, text: str) -> None:
        """The operator did what the last :class:`Prompt` asked (``text``: their note)."""

    @property
    def waiting(self) -> bool:
        """True while a :class:`Prompt` awaits the operator (the session stays disarmed)."""
        ...

    def adjust_stimulator(self, spec: StimulatorSpec) -> StimulatorSpec:
        """The stimulator table the protocol runs with (e.g. a recorded table override)."""
        ...

    def prepare(self, gate: SafeStimulator) -> None:
        """Set up the connected gate (intensity, motor threshold) before it is armed."""

    def open_outlets(self, prefix: str) -> Outlet | None:
        """Open the protocol's own streams; return the one for :attr:`last_estimate`."""
        ...

    def close(self) -> None:
        """Close the protocol's streams."""


class ThresholdProtocol:
    """Fire immediately when a channel exceeds a threshold.

    The simplest closed loop (EMG- or event-triggered stimulation), and the one the
    loop-latency benchmark uses: the decision depends on a single sample, so the time
    from that sample's push to the fire call is the pipeline's own latency.

    Parameters
    ----------
    channel : int
        Channel index to watch.
    threshold : float
        Fire when a sample exceeds this value (stream units).
    n_pulses : int
        Stop after this many requests.
    """

    name = "threshold"
    role = "eeg"
    reads_stages = False
    max_lead_s = 0.0  # it fires at once
    late_tolerance_s = 0.001
    last_estimate = None

    def __init__(self, channel: int = 0, threshold: float = 1000.0, n_pulses: int = 1000):
        self.channel = int(channel)
        self.threshold = float(threshold)
        self.n_pulses = int(n_pulses)
        self.requested = 0
        self.completed = 0
        self._pending = False

    @property
    def done(self) -> bool:
        """True once every requested pulse has an outcome (fired or refused)."""
        return self.completed >= self.n_pulses

    def start(self, fs: float, channel_labels: Sequence[str]) -> None:
        if not 0 <= self.channel < len(channel_labels):
            raise SessionError(
                f"threshold channel {self.channel} is not in the stream's "
                f"{len(channel_labels)} channels"
            )

    def update(self, chunk: Chunk) -> Decision:
        if self._pending or self.requested >= self.n_pulses:
            return None
        col = chunk.data[:, self.channel]
        hits = np.flatnonzero(col > self.threshold)
        if hits.size == 0:
            return None
        self._pending = True
        self.requested += 1
        k = int(hits[-1])
        return PulseRequest(
            None, {"index": chunk.first_index + k, "t_sample": float(chunk.timestamps[k])}
        )

    def outcome(self, result: PulseOutcome) -> None:
        self.completed += 1
        self._pending = False

    def fire_veto(self, request: PulseRequest) -> str:
        return ""

    def phase_at(self, t: float) -> float:
        return float("nan")

    def confirm(self, text: str) -> None:
        pass

    waiting = False

    def adjust_stimulator(self, spec: StimulatorSpec) -> StimulatorSpec:
        return spec

    def prepare(self, gate: SafeStimulator) -> None:
        pass

    def open_outlets(self, prefix: str) -> None:
        return None

    def close(self) -> None:
        pass
