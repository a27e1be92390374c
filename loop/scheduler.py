"""Deliver pulse requests on time without ever blocking the real-time loop.

``SafeStimulator.fire(at=t)`` waits until ``t`` (sleep, then a short spin) before it
triggers. The engine must keep reading data meanwhile, so fires run on this dedicated
thread: the engine hands over a request and returns at once; the scheduler waits, fires
through the safety gate (which re-checks every interlock right before the trigger, and
refuses a pulse that would leave later than the protocol's tolerance) and reports the
outcome.

A request planned further ahead than the protocol's ``max_lead_s`` is refused without
waiting: a bad timestamp must never make the scheduler sleep towards a far future.

A protocol may also take back a pulse it planned, when data that arrived after the
decision void it (an EEG gap: the phase forecast spans samples that never arrived).
The scheduler asks its ``veto`` before waiting and again :data:`VETO_CHECK_LEAD_S`
before the pulse's time, then hands the pulse to the gate, whose own wait ends with the
last interlock checks. Data arrive in chunks of about 10 ms, so the 1 ms left after the
last veto check is shorter than the time in which any new chunk could void the pulse.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import pylsl

from stimloop.devices.base import wait_until
from stimloop.devices.errors import DeviceError
from stimloop.devices.safety import SafeStimulator
from stimloop.loop.cpus import request_realtime_priority
from stimloop.loop.protocol import PulseOutcome, PulseRequest

log = logging.getLogger("stimloop.loop")

#: How long before a pulse's time the veto is asked the last time, s. The scheduler
#: sleeps (no spin) until then; the gate's own wait spins the rest (it spins the last
#: 1 ms), so a pulse is timed as it was without a veto.
VETO_CHECK_LEAD_S = 0.001


class PulseScheduler:
    """A thread that fires queued :class:`PulseRequest` s through the safety gate.

    Parameters
    ----------
    stimulator : SafeStimulator
        The gated stimulator; the only path to the hardware.
    on_outcome : callable
        Called (on this thread) with each :class:`PulseOutcome`.
    site : str
        Stimulation site written into each pulse's log.
    veto : callable, optional
        ``veto(request) -> str``: why the request must not fire ("" if it may); asked
        before the wait and again :data:`VETO_CHECK_LEAD_S` before the pulse's time.
        A vetoed request is refused (not fired) with the reason as its error.
    max_lead_s : float
        A request due further ahead than this (s, from when it is handled) is refused.
    late_tolerance_s : float
        Passed to the gate: a pulse later than this (s) after its time is refused.
    """

    def __init__(
        self,
        stimulator: SafeStimulator,
        on_outcome: Callable[[PulseOutcome], None],
        site: str = "",
        veto: Callable[[PulseRequest], str] | None = None,
        max_lead_s: float = 1.0,
        late_tolerance_s: float = 0.001,
    ) -> None:
        self.stimulator = stimulator
        self.on_outcome = on_outcome
        self.site = site
        self.veto = veto
        self.max_lead_s = float(max_lead_s)
        self.late_tolerance_s = float(late_tolerance_s)
        self._queue: queue.SimpleQueue[PulseRequest | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> PulseScheduler:
        """Start the pulse thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stimloop-pulses", daemon=True)
            self._thread.start()
        return self

    def submit(self, request: PulseRequest) -> None:
        """Queue a request; returns immediately."""
        self._queue.put(request)

    def fire(self, request: PulseRequest) -> PulseOutcome:
        """Fire one request through the gate on the calling thread; never raises."""
        try:
            if request.t_fire is not None:
                lead = request.t_fire - pylsl.local_clock()
                if lead > self.max_lead_s:
                    return PulseOutcome(
                        request, False,
                        error=f"[lead] planned {lead:.3f} s ahead; the protocol allows <= "
                        f"{self.max_lead_s:g} s",
                    )  # fmt: skip
            if self.veto is not None:
                if why := self.veto(request):
                    return PulseOutcome(request, False, error=f"vetoed: {why}")
                if request.t_fire is not None:
                    # Sleep only: the gate's own wait spins the last 1 ms, as without a veto.
                    wait_until(request.t_fire - VETO_CHECK_LEAD_S, spin_s=0.0)
                    if why := self.veto(request):
                        return PulseOutcome(request, False, error=f"vetoed: {why}")
            return PulseOutcome(request, True, self._trigger(request))
        except DeviceError as exc:  # every refusal is typed; the gate logged it
            return PulseOutcome(request, False, error=str(exc))
        except Exception as exc:  # a driver bug must not kill the caller's thread
            log.exception("unexpected error while firing")
            return PulseOutcome(request, False, error=f"{type(exc).__name__}: {exc}")

    def _trigger(self, request: PulseRequest) -> float:
        """Set the request's intensity and train through the gate, then fire it."""
        gate, site = self.stimulator, request.site or self.site
        if request.intensity_pct is not None and gate.intensity_pct != request.intensity_pct:
            gate.set_intensity(request.intensity_pct)
        if request.train is None:
            return gate.fire(request.t_fire, site=site, reason="protocol",
                             late_tolerance_s=self.late_tolerance_s)  # fmt: skip
        if gate.train != request.train:
            gate.configure_train(request.train)
        return gate.fire_train(request.t_fire, site=site, reason="protocol",
                               late_tolerance_s=self.late_tolerance_s)  # fmt: skip

    def _run(self) -> None:
        request_realtime_priority()  # pulses are due at exact times
        while (request := self._queue.get()) is not None:
            outcome = self.fire(request)
            try:
                self.on_outcome(outcome)
            except Exception:
                log.exception("pulse outcome handler failed")

    def close(self, timeout: float = 2.0) -> None:
        """Stop after the request in progress (queued ones are reported as not fired)."""
        while True:
            try:
                dropped = self._queue.get_nowait()
            except queue.Empty:
                break
            if dropped is not None:
                self.on_outcome(PulseOutcome(dropped, False, error="session ended"))
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
