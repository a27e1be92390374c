"""Inlet.skip_backlog: a consumer that paused (a cold kernel compile) restarts on fresh data."""

from __future__ import annotations

import threading
import time

import numpy as np
import pylsl
import pytest

from stimloop.stream.inlet import Inlet
from stimloop.stream.outlet import Outlet, channel_specs

RATE = 1000.0


class _Pusher:
    """Pushes zeros at RATE on the LSL clock, 5 ms at a time, until stopped."""

    def __init__(self, outlet: Outlet) -> None:
        self.outlet = outlet
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0, k = pylsl.local_clock(), 0
        while not self.stop.is_set():
            n = int((pylsl.local_clock() - t0) * RATE) - k
            if n > 0:
                self.outlet.push(np.zeros((n, 2), np.float32), t0 + (k + np.arange(n)) / RATE)
                k += n
            time.sleep(0.005)

    def __enter__(self) -> _Pusher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(2.0)


@pytest.mark.parametrize("max_gap_s", [0.1, 10.0], ids=["restarts", "bridges"])
def test_a_backlog_longer_than_the_gap_limit_is_skipped_entirely(source_id, max_gap_s):
    # 0.1 s: the pause is a gap the grid restarts on. That pull comes back empty with its
    # 2 s (one pull's most) held for the next pull, and liblsl still holds 1 s more: the
    # case a drain-until-empty missed (a demo on a cold numba cache then ran its loop on
    # 30 s old EEG). 10 s: the same pause is bridged.
    out = Outlet("t", "EEG", source_id, channel_specs(["a", "b"]), RATE, "float32")
    with _Pusher(out):
        inlet = Inlet(
            source_id, buffer_s=3.0, max_gap_s=max_gap_s, expected_rate=RATE,
            chunk_period_s=0.01, resolve_timeout=5.0,
        ).connect()  # fmt: skip
        t_end = time.monotonic() + 5.0
        while not len(inlet.pull(0.1)) and time.monotonic() < t_end:
            pass
        time.sleep(4.5)  # nobody pulls: liblsl keeps the newest buffer_s = 3 s
        skipped = inlet.skip_backlog()
        assert skipped >= 2500, skipped  # about 3 s at 1 kHz were waiting
        time.sleep(0.1)
        chunk = inlet.pull(0.5)
        assert len(chunk)
        age = pylsl.local_clock() - chunk.timestamps[0]
        assert age < 0.5, f"the first sample after the skip is {age:.2f} s old"
        inlet.close()
