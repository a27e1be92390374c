"""A two-channel white-noise EEG outlet pushed on time, 10 samples a chunk, for the
engine tests whose protocol plans its own pulse or train (the signal is not read)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pylsl

from stimloop.stream.outlet import Outlet, channel_specs


class NoiseEEG(threading.Thread):
    """Pushes until ``stop`` is set; ``fs`` in Hz."""

    def __init__(self, source_id: str, fs: float) -> None:
        super().__init__(daemon=True)
        self.fs = fs
        self.out = Outlet("eeg", "EEG", source_id, channel_specs(["c0", "c1"]), fs)
        self.stop = threading.Event()

    def run(self) -> None:
        rng, t0, n = np.random.default_rng(0), pylsl.local_clock(), 0
        while not self.stop.is_set():
            stamps = t0 + (n + np.arange(10)) / self.fs
            while pylsl.local_clock() < stamps[-1]:
                time.sleep(0.0005)
            self.out.push(rng.standard_normal((10, 2)), stamps[-1])
            n += 10
