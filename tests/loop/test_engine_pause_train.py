"""A pause stops a train in progress (hostile review: a pause voided pulses still planned
but not a train already started on the device, which ran to its end after the operator's
pause was acknowledged).

Real LSL stream, real engine, scheduler and HAL gate; the stimulator is the simulated one
or the Magstim Rapid² driver on its pty emulator (which runs the train on the unit's own
clock). Only the protocol is a small one that requests one 10 Hz train of 10 pulses (0.9 s).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pylsl
import pytest
from noise_eeg import NoiseEEG

from stimloop.devices.base import TrainSpec
from stimloop.devices.emulators.magstim import MagstimEmulator
from stimloop.devices.limits import SafetyLimits
from stimloop.devices.safety import SafeStimulator
from stimloop.devices.stimulators.magstim import MagstimRapid
from stimloop.devices.stimulators.simulated import SimulatedStimulator
from stimloop.loop.engine import Engine
from stimloop.loop.protocol import PulseRequest, ThresholdProtocol
from stimloop.stream.inlet import Inlet, MarkerInlet
from stimloop.stream.outlet import marker_outlet

FS = 1000.0
LEAD_S = 0.2
TRAIN = TrainSpec(10.0, 10)


class _OneTrain(ThresholdProtocol):
    max_lead_s = 2 * LEAD_S
    late_tolerance_s = 0.05  # punctuality is not under test; a loaded CI machine is slow

    def __init__(self) -> None:
        super().__init__(0, 0.0, n_pulses=2)  # never done: the loop keeps running
        self.outcomes: list = []
        self.done_train = threading.Event()

    def update(self, chunk):
        if self.requested:
            return None
        self.requested = 1
        t = pylsl.local_clock() + LEAD_S
        return PulseRequest(t, {}, train=TRAIN, intensity_pct=30.0, site="F3")

    def outcome(self, result) -> None:  # the engine reports a train once it is over
        super().outcome(result)
        self.outcomes.append(result)
        self.done_train.set()


def _simulated():
    sim = SimulatedStimulator()
    return sim, lambda: [p.t_lsl for p in sim.pulses], None


def _rapid():
    emu = MagstimEmulator("rapid", arm_time_s=0.05).start()
    return MagstimRapid(emu.port), lambda: [t for t, _ in emu.pulses], emu


def _run(source_id: str, make, pause_after_s: float | None):
    """Start the train through the engine; pause ``pause_after_s`` after its first pulse
    (None: never). Returns (pulse times, LSL time the pause returned, armed,
    train_stopped markers, the train's outcome as the protocol heard it)."""
    driver, pulse_times, emu = make()
    pusher = NoiseEEG(source_id, FS)
    pusher.start()
    markers = marker_outlet("decisions", f"{source_id}-dec")
    # Each LSL resolve takes ~1.3 s here: resolve the decision stream meanwhile.
    decisions = MarkerInlet(f"{source_id}-dec")
    resolving = threading.Thread(target=decisions.connect)
    resolving.start()
    eeg = Inlet(source_id, expected_rate=FS).connect()
    resolving.join()
    # The engine's train guard stops a train when the EEG is older than the gate's limit
    # (50 ms); on a loaded machine the pusher lags that much, which is not under test.
    limits = replace(SafetyLimits(), max_stream_age_s=0.5)
    gate = SafeStimulator(driver, limits, "test: loaded CI machine",
                          marker_source_id=f"{source_id}-gate")  # fmt: skip
    gate.connect()
    gate.set_resting_motor_threshold(50.0)  # 30 % MSO = 60 % rMT: 10 Hz up to 5 s
    gate.set_intensity(30.0)
    gate.arm()
    protocol = _OneTrain()
    engine = Engine(eeg, protocol, gate, markers)
    eeg.pull(0.0)
    engine.start()
    t_ack = np.inf
    try:
        # The train started when the device delivered its first pulse.
        deadline = pylsl.local_clock() + 10.0
        while not pulse_times() and pylsl.local_clock() < deadline:
            time.sleep(0.002)
        assert pulse_times(), f"the train never started: {list(engine.refusals)}"
        t_first = pulse_times()[0]
        if pause_after_s is not None:
            time.sleep(max(t_first + pause_after_s - pylsl.local_clock(), 0.0))
            engine.pause()  # what the control channel's "pause" does
            t_ack = pylsl.local_clock()
        time.sleep(max(t_first + TRAIN.duration_s + 0.2 - pylsl.local_clock(), 0.0))
        assert protocol.done_train.wait(5.0), "the engine never reported the train's end"
        armed = gate.status().armed
        markers = [text for text, _ in decisions.pull()]
    finally:
        engine.stop()
        pusher.stop.set()
        decisions.close()
        gate.close()
        if emu is not None:
            emu.close()
    assert engine.error is None
    [outcome] = protocol.outcomes
    stopped = [m for m in markers if '"train_stopped"' in m]
    return pulse_times(), t_ack, armed, stopped, outcome


@pytest.mark.parametrize("make", [_simulated, _rapid], ids=["simulated", "magstim-rapid"])
def test_a_pause_stops_a_train_in_progress(source_id, make):
    times, t_ack, armed, stopped, outcome = _run(source_id, make, pause_after_s=0.25)
    assert [t - t_ack for t in times if t > t_ack] == [], "pulses after the pause returned"
    assert 3 <= len(times) < TRAIN.n_pulses  # ~3 of 10: stopped, not finished
    assert not armed  # stays disarmed until the operator arms again
    assert len(stopped) == 1 and "pause" in stopped[0]
    # The engine counts the train cut short at the pause's disarm, never fewer pulses
    # than went out (at most one more: it counts from the trigger command's time).
    assert outcome.cut_short and "paused" in outcome.error
    assert len(times) <= outcome.pulses_delivered <= len(times) + 1


def test_without_a_pause_the_whole_train_goes_out(source_id):
    # The same set-up delivers all 10 pulses when nobody pauses: the test above can fail.
    times, _, armed, stopped, outcome = _run(source_id, _simulated, pause_after_s=None)
    assert stopped == []
    assert len(times) == TRAIN.n_pulses and armed
    assert not outcome.cut_short and outcome.pulses_delivered == TRAIN.n_pulses
