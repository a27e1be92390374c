"""The engine publishes, at its end, the health events its rate limit still holds (review
finding: the last held-back ones were never published, so a recording's counts fell
short of the session's own)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pylsl

from stimloop.loop.engine import Engine
from stimloop.loop.protocol import ThresholdProtocol
from stimloop.stream.inlet import Inlet, MarkerInlet
from stimloop.stream.outlet import Outlet, channel_specs, marker_outlet

FS = 500.0


class _NaNs(threading.Thread):
    """EEG whose every sample is NaN, 10 samples a chunk, on time."""

    def __init__(self, source_id: str) -> None:
        super().__init__(daemon=True)
        self.out = Outlet("eeg", "EEG", source_id, channel_specs(["c0"]), FS)
        self.stop = threading.Event()

    def run(self) -> None:
        t0, n = pylsl.local_clock(), 0
        while not self.stop.is_set():
            stamps = t0 + (n + np.arange(10)) / FS
            while pylsl.local_clock() < stamps[-1]:
                time.sleep(0.0005)
            self.out.push(np.full((10, 1), np.nan), stamps[-1])
            n += 10


def test_what_the_rate_limit_holds_at_the_end_is_published(source_id):
    pusher = _NaNs(source_id)
    pusher.start()
    eeg = Inlet(source_id, expected_rate=FS).connect()
    markers = marker_outlet("decisions", f"{source_id}-dec")
    listener = MarkerInlet(f"{source_id}-dec").connect()
    engine = Engine(eeg, ThresholdProtocol(0, 1e9), None, markers)
    eeg.pull(0.0)
    engine.start()
    try:
        time.sleep(1.5)  # ~75 NaN chunks: one nonfinite marker a second, the rest held
    finally:
        engine.stop()
        pusher.stop.set()
    events: list[dict] = []
    deadline = time.monotonic() + 5.0
    while not any(e["event"] == "session_end" for e in events) and time.monotonic() < deadline:
        events += [json.loads(text) for text, _ in listener.pull()]
        time.sleep(0.02)
    listener.close()
    kinds = [e["event"] for e in events]
    assert "session_end" in kinds
    held = [e for e in events if e["event"] == "held_back" and e["of"] == "nonfinite"]
    assert len(held) == 1 and held[0]["role"] == "eeg" and held[0]["count"] >= 1, events
    assert kinds.index("held_back") < kinds.index("session_end")
    published = [e for e in events if e["event"] == "nonfinite"]
    # Every NaN chunk is accounted for once: published, carried as repeats, or held back.
    total = sum(1 + e["repeats"] for e in published) + held[0]["count"]
    assert total >= 10, (total, published, held)
