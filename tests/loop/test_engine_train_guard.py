"""A train in progress stops when the stream that drives it goes stale or invalid
(review finding: in a heart-brain-coupled localisation the ECG amplifier could stop, or
send NaN, right after a 5 s train started; the gate had checked the ECG only before the
first pulse, the engine is woken by data, so the protocol's cardiac stop rule saw
nothing and the whole train went out with no one watching the heart).

Real LSL stream, real engine, scheduler, HAL gate and simulated stimulator; only the
protocol is a small one that requests one 10 Hz train ``LEAD_S`` ahead, as the
localisation protocol does.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import numpy as np
import pylsl
import pytest

from stimloop.devices.base import TrainSpec, wait_until
from stimloop.devices.limits import SafetyLimits
from stimloop.devices.safety import SafeStimulator
from stimloop.devices.stimulators.simulated import SimulatedStimulator
from stimloop.loop.engine import Engine
from stimloop.loop.hbc_protocol import ECG_MAX_AGE_S
from stimloop.loop.protocol import PulseRequest, ThresholdProtocol
from stimloop.stream.inlet import Inlet, MarkerInlet
from stimloop.stream.outlet import Outlet, channel_specs, marker_outlet

FS = 500.0
LEAD_S = 0.2
TRAIN = TrainSpec(10.0, 20)  # 2 s


class _ECG(threading.Thread):
    """Pushes noise in real time; after ``fault_after_s`` from ``fault_from`` (set by
    the test once the train started) it stops (``"stop"``) or sends NaN (``"nan"``)."""

    def __init__(self, source_id: str, fault: str | None) -> None:
        super().__init__(daemon=True)
        self.out = Outlet("ecg", "ECG", source_id, channel_specs(["ecg"]), FS)
        self.fault = fault
        self.fault_at = np.inf
        self.stop = threading.Event()

    def run(self) -> None:
        rng, t0, n = np.random.default_rng(0), pylsl.local_clock(), 0
        while not self.stop.is_set():
            stamps = t0 + (n + np.arange(10)) / FS
            while pylsl.local_clock() < stamps[-1]:
                time.sleep(0.0005)
            data = rng.standard_normal((10, 1))
            if self.fault is not None and stamps[-1] > self.fault_at:
                if self.fault == "stop":
                    self.stop.wait(0.01)
                    n += 10
                    continue
                data[:] = np.nan
            self.out.push(data, stamps[-1])
            n += 10


class _OneTrain(ThresholdProtocol):
    max_lead_s = 2 * LEAD_S
    late_tolerance_s = 0.05  # punctuality is not under test; a loaded CI machine is slow

    def __init__(self) -> None:
        super().__init__(0, 0.0, n_pulses=2)  # never done: the loop keeps running
        self.outcomes = []

    def update(self, chunk):
        if self.requested:
            return None
        self.requested = 1
        t = pylsl.local_clock() + LEAD_S
        return PulseRequest(t, {"cycle": 1}, train=TRAIN, intensity_pct=30.0, site="F3")

    def outcome(self, result) -> None:
        super().outcome(result)
        self.outcomes.append(result)


def _started(driver: SimulatedStimulator, timeout_s: float = 10.0) -> bool:
    """The train runs: its second pulse went out, so the driver's train thread has
    started (the protocol hears of a train only at its end)."""
    deadline = time.monotonic() + timeout_s
    while len(driver.pulses) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    return len(driver.pulses) >= 2


def _run_train(source_id: str, fault: str | None):
    """One train; ``fault`` 0.5 s after its first pulse: the ECG stops (``"stop"``) or
    sends NaN (``"nan"``), or the operator disarms (``"disarm"``). Returns the pulses
    the stimulator delivered, whether it is still armed, the decision markers and the
    protocol's outcomes."""
    ecg = _ECG(source_id, fault if fault != "disarm" else None)
    ecg.start()
    # As the localisation session sets them up: the ECG inlet, and the gate taking ECG
    # up to 0.5 s old (HBCProtocol.adjust_stimulator).
    inlet = Inlet(source_id, expected_rate=FS, max_gap_s=10.0, chunk_period_s=0.05).connect()
    driver = SimulatedStimulator()
    limits = replace(SafetyLimits(), max_stream_age_s=ECG_MAX_AGE_S)
    gate = SafeStimulator(driver, limits, "as HBC", marker_source_id=f"{source_id}-gate")
    gate.connect()
    gate.set_resting_motor_threshold(50.0)  # 30 % MSO = 60 % rMT: 10 Hz up to 5 s
    gate.set_intensity(30.0)
    gate.arm()
    protocol = _OneTrain()
    markers = marker_outlet("decisions", f"{source_id}-dec")
    engine = Engine(inlet, protocol, gate, markers, driver_role="ecg", chunk_period_s=0.05)
    decisions = MarkerInlet(f"{source_id}-dec").connect()
    inlet.pull(0.0)
    engine.start()
    try:
        assert _started(driver), "the train never started"
        ecg.fault_at = driver.pulses[0].t_lsl + 0.5
        if fault == "disarm":
            wait_until(ecg.fault_at)
            gate.disarm("operator")
        driver.wait_train(timeout=10.0)
        # The markers of the train's end may still be in transit on a loaded machine.
        markers, deadline = [], time.monotonic() + 5.0
        while time.monotonic() < deadline:
            markers += [json.loads(text) for text, _ in decisions.pull()]
            if protocol.outcomes and (not fault or _events(markers, "train_cut_short")):
                time.sleep(0.2)  # anything after it
                markers += [json.loads(text) for text, _ in decisions.pull()]
                break
            time.sleep(0.01)
        armed = driver.status().armed
    finally:
        engine.stop()
        ecg.stop.set()
        decisions.close()
        gate.close()
    assert engine.error is None
    return driver.pulses, armed, markers, protocol.outcomes


def _events(markers: list[dict], event: str) -> list[dict]:
    return [m for m in markers if m["event"] == event]


@pytest.mark.parametrize("fault", ["stop", "nan"])
def test_a_train_stops_when_its_ecg_goes_stale_or_nan(source_id, fault):
    pulses, armed, markers, outcomes = _run_train(source_id, fault)
    delivered = len(pulses)
    # 0.5 s of good ECG after the first pulse, then up to 0.5 s (stale: the inlet's
    # 0.1 s flag) or one chunk (NaN): 5 to 11 pulses of 20, never the whole train.
    assert 3 <= delivered <= 12
    assert not armed
    stopped = _events(markers, "train_stopped")
    assert len(stopped) == 1 and ("NaN" if fault == "nan" else "stale") in stopped[0]["reason"]
    _check_cut_short(pulses, markers, outcomes, "train stopped")


def test_a_train_the_operator_disarms_is_cut_short(source_id):
    pulses, armed, markers, outcomes = _run_train(source_id, "disarm")
    assert 3 <= len(pulses) <= 8 and not armed and not _events(markers, "train_stopped")
    _check_cut_short(pulses, markers, outcomes, "operator")


def _check_cut_short(pulses: list, markers: list[dict], outcomes: list, reason: str) -> None:
    """Whatever disarmed (the train guard, the operator), the protocol's one outcome of
    the train says how many pulses went out, and the decision stream records it (review
    finding: a train cut short was taken for a whole one, and its cycle scored)."""
    [cut] = _events(markers, "train_cut_short")
    # Counted by the clock up to the end of the disarm: an upper bound of what the
    # stimulator delivered, every pulse of which went out before the disarm ended.
    t0, t_end = cut["t_trigger"], cut["t_disarmed"]
    assert cut["pulses_delivered"] == TRAIN.pulses_due(t_end - t0) < TRAIN.n_pulses
    assert len(pulses) <= cut["pulses_delivered"] and all(p.t_lsl < t_end for p in pulses)
    assert pulses[0].t_lsl == t0
    assert cut["pulses_planned"] == TRAIN.n_pulses and cut["cycle"] == 1
    assert reason in cut["reason"]
    [out] = outcomes
    assert out.fired and out.cut_short and out.pulses_delivered == cut["pulses_delivered"]


def test_with_a_good_ecg_the_whole_train_goes_out(source_id):
    pulses, armed, markers, outcomes = _run_train(source_id, None)
    assert len(pulses) == TRAIN.n_pulses and armed
    assert not _events(markers, "train_stopped") and not _events(markers, "train_cut_short")
    [out] = outcomes
    assert out.fired and not out.cut_short and out.pulses_delivered == TRAIN.n_pulses
