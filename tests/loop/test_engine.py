"""The real-time engine on real LSL streams, the HAL gate and the simulated stimulator."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pylsl
import pytest

from stimloop.devices.errors import StaleDataError
from stimloop.devices.safety import SafeStimulator, SafetyLimits
from stimloop.devices.stimulators.simulated import SimulatedStimulator
from stimloop.loop.engine import Engine
from stimloop.loop.protocol import ThresholdProtocol
from stimloop.stream.inlet import Inlet, MarkerInlet
from stimloop.stream.outlet import Outlet, channel_specs, marker_outlet

FS = 1000.0


class _Pusher(threading.Thread):
    """Pushes 8-channel 1 kHz noise in 10 ms chunks; a trigger value every ``every_s``."""

    def __init__(self, source_id: str, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.out = Outlet("eeg", "EEG", source_id, channel_specs([f"c{i}" for i in range(8)]), FS)
        self.every = round(every_s * FS)
        self.stop = threading.Event()
        self.trigger_t: list[float] = []

    def run(self) -> None:
        rng = np.random.default_rng(0)
        n = 0
        t0 = pylsl.local_clock()
        while not self.stop.is_set():
            x = rng.standard_normal((10, 8))
            stamps = t0 + (n + np.arange(10)) / FS
            for k in range(10):
                if (n + k) % self.every == self.every - 1:
                    x[k, 0] = 5000.0
                    self.trigger_t.append(stamps[k])
            while pylsl.local_clock() < stamps[-1]:
                time.sleep(0.0005)
            self.out.push(x, stamps[-1])
            n += 10


def _gate(marker_sid: str) -> SafeStimulator:
    limits = SafetyLimits(min_ipi_s=0.1)
    gate = SafeStimulator(
        SimulatedStimulator(), limits, override_reason="engine test: 10 Hz single pulses",
        marker_source_id=marker_sid,
    )  # fmt: skip
    gate.connect()
    gate.set_intensity(30.0)
    gate.arm()
    return gate


def _collect(inlet: MarkerInlet, seconds: float) -> list[dict]:
    out: list[dict] = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        out += [json.loads(text) for text, _ in inlet.pull()]
        time.sleep(0.02)
    return out


def test_threshold_pulses_follow_their_trigger_samples_and_are_all_logged(source_id):
    # Triggers 0.5 s apart against a 0.1 s IPI limit: a pulse delayed by a loaded CI
    # machine still respects the limit, so every trigger must give a pulse.
    pusher = _Pusher(source_id, every_s=0.5)
    pusher.start()
    eeg = Inlet(source_id, expected_rate=FS).connect()
    markers = marker_outlet("decisions", f"{source_id}-dec")
    listener = MarkerInlet(f"{source_id}-dec").connect()
    gate = _gate(f"{source_id}-gate")
    eeg.pull(0.0)  # start fresh, as Session does
    engine = Engine(eeg, ThresholdProtocol(0, 1000.0, n_pulses=6), gate, markers).start()
    try:
        assert engine.wait(timeout=15.0)
        events = _collect(listener, 0.5)
    finally:
        engine.stop()
        pusher.stop.set()
        gate.close()
    assert engine.error is None
    assert len(engine.pulses) == 6 and not engine.refusals
    triggers = np.asarray(pusher.trigger_t)
    for p in engine.pulses:
        # Each pulse answers the trigger sample it names, and comes after its push.
        assert np.min(np.abs(triggers - p["t_sample"])) < 0.5e-3
        assert p["t_trigger"] > p["t_sample"]
    kinds = [e["event"] for e in events]
    assert kinds.count("fired") == 6 and "session_start" in kinds
    assert engine.stats.iterations > 50
    assert engine.stats.gc_collections == 0


def test_stalled_engine_is_disarmed_by_the_watchdog(source_id):
    pusher = _Pusher(source_id, every_s=100.0)
    pusher.start()
    eeg = Inlet(source_id, expected_rate=FS).connect()
    markers = marker_outlet("decisions", f"{source_id}-dec")
    gate = _gate(f"{source_id}-gate")
    engine = Engine(eeg, ThresholdProtocol(0, 1000.0), gate, markers, watchdog_period_s=0.05)
    engine.start()
    try:
        time.sleep(0.3)
        assert gate.status().armed
        engine.stall(0.5)
        t_end = time.monotonic() + 2.0
        while gate.status().armed and time.monotonic() < t_end:
            time.sleep(0.005)
        status = gate.status()
    finally:
        engine.stop()
        pusher.stop.set()
        gate.close()
    assert not status.armed
    assert "watchdog" in (status.error or "")


def test_lost_stream_is_marked_and_the_loop_keeps_running(source_id):
    pusher = _Pusher(source_id, every_s=100.0)
    pusher.start()
    eeg = Inlet(source_id, expected_rate=FS).connect()
    markers = marker_outlet("decisions", f"{source_id}-dec")
    listener = MarkerInlet(f"{source_id}-dec").connect()
    gate = _gate(f"{source_id}-gate")
    engine = Engine(eeg, ThresholdProtocol(0, 1000.0), gate, markers).start()
    try:
        time.sleep(0.3)
        pusher.stop.set()
        pusher.join()
        pusher.out.close()
        events = _collect(listener, 1.0)
        assert engine.running
        with pytest.raises(StaleDataError):
            gate.fire()
    finally:
        engine.stop()
        gate.close()
    kinds = [e["event"] for e in events]
    assert "stale" in kinds or "stream_lost" in kinds
