"""A pause stops pulses the scheduler already holds (review finding: a pulse planned
before the operator's pause left after the pause was acknowledged).

Real LSL stream, real engine, scheduler, HAL gate and simulated stimulator; only the
protocol is a small one that plans a single pulse ``LEAD_S`` ahead, as the heart-brain-
coupled protocol plans its trains (up to 0.6 s ahead).
"""

from __future__ import annotations

import contextlib
import threading

import pylsl
import pytest
from noise_eeg import NoiseEEG

from stimloop.devices.safety import SafeStimulator
from stimloop.devices.stimulators.simulated import SimulatedStimulator
from stimloop.loop.engine import Engine
from stimloop.loop.protocol import PulseRequest, ThresholdProtocol
from stimloop.stream.inlet import Inlet
from stimloop.stream.outlet import marker_outlet

FS = 1000.0
LEAD_S = 0.4


class _PlanAhead(ThresholdProtocol):
    """Plans one pulse ``LEAD_S`` ahead of its first chunk, then nothing."""

    max_lead_s = 2 * LEAD_S
    late_tolerance_s = 0.05  # punctuality is not under test; a loaded CI machine is slow

    def __init__(self) -> None:
        super().__init__(0, 0.0, n_pulses=1)
        self.planned = threading.Event()
        self.outcomes = []

    def update(self, chunk):
        if self.requested:
            return None
        self.requested = 1
        self.planned.set()
        return PulseRequest(pylsl.local_clock() + LEAD_S, {})

    def outcome(self, result) -> None:
        self.outcomes.append(result)
        super().outcome(result)


@contextlib.contextmanager
def _running(source_id):
    """A noise stream, the gate armed at 30 % MSO and the engine running ``_PlanAhead``;
    yields ``(engine, protocol, gate)`` and stops everything after."""
    pusher = NoiseEEG(source_id, FS)
    pusher.start()
    eeg = Inlet(source_id, expected_rate=FS).connect()
    gate = SafeStimulator(SimulatedStimulator(), marker_source_id=f"{source_id}-gate")
    gate.connect()
    gate.set_intensity(30.0)
    gate.arm()
    protocol = _PlanAhead()
    engine = Engine(eeg, protocol, gate, marker_outlet("decisions", f"{source_id}-dec"))
    eeg.pull(0.0)
    engine.start()
    try:
        yield engine, protocol, gate
    finally:
        engine.stop()
        pusher.stop.set()
        gate.close()


@pytest.mark.parametrize("resume", [False, True], ids=["paused", "paused-and-resumed"])
def test_a_pause_voids_the_pulse_planned_before_it(source_id, resume):
    with _running(source_id) as (engine, protocol, gate):
        assert protocol.planned.wait(10.0)
        engine.pause()  # what the control channel's "pause" does
        if resume:
            engine.resume()
        assert engine.wait(timeout=5.0), "the planned pulse got no outcome"
    assert engine.error is None
    assert gate.pulses_delivered == 0
    [outcome] = protocol.outcomes
    assert not outcome.fired and "paused" in outcome.error


def test_without_a_pause_the_planned_pulse_fires(source_id):
    # The same set-up fires when nobody pauses: the test above can fail.
    with _running(source_id) as (engine, protocol, gate):
        assert engine.wait(timeout=5.0)
    [outcome] = protocol.outcomes
    assert outcome.fired and gate.pulses_delivered == 1
