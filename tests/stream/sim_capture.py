"""One simulated session captured three ways at once: through stimloop's :class:`Inlet`,
by a plain pylsl consumer and by the XDF :class:`Recorder`.

The inlet acceptance (``test_inlet.py``) and the recorder acceptance (``test_record.py``)
each need a minute of the simulator in real time; they read the same captured minute
(``tests/stream/conftest.py``) instead of running two.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pylsl

from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.stream.inlet import Inlet
from stimloop.stream.recorder import Recorder

#: Rates of the simulator's streams, Hz (its defaults).
SIM_RATES = {"eeg": 1000.0, "ecg": 500.0, "eda": 100.0}


class PlainConsumer(threading.Thread):
    """A plain pylsl consumer of the same streams: what the source actually sent."""

    def __init__(self, source_ids):
        super().__init__(daemon=True)
        self.inlets = {}
        for sid in source_ids:
            info = pylsl.resolve_bypred(f"source_id='{sid}'", 1, 10.0)[0]
            inlet = pylsl.StreamInlet(info, max_buflen=360)
            inlet.open_stream(10.0)
            self.inlets[sid] = inlet
        self.data = {sid: [] for sid in source_ids}
        self.stamps = {sid: [] for sid in source_ids}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for sid, inlet in self.inlets.items():
                values, ts = inlet.pull_chunk(timeout=0.0, max_samples=100_000)
                if ts:
                    self.data[sid].extend(values)
                    self.stamps[sid].extend(ts)
            time.sleep(0.005)


@dataclass
class Capture:
    """What each consumer got from one simulator run.

    ``inlet_*`` are keyed by role (only the roles given ``inlet_rates``): the chunks'
    data and stamps in arrival order, the events, and each :class:`Inlet` after the run.
    """

    cfg: SimConfig
    duration_s: float
    path: Path
    source_ids: list[str]
    reference: PlainConsumer
    t0: float = float("nan")
    inlet_data: dict[str, list] = field(default_factory=dict)
    inlet_stamps: dict[str, list] = field(default_factory=dict)
    inlet_events: dict[str, list] = field(default_factory=dict)
    inlets: dict[str, Inlet] = field(default_factory=dict)


def capture_simulator(
    cfg: SimConfig,
    path: Path,
    duration_s: float,
    inlet_rates: dict[str, float] | None = None,
    **recorder_kw,
) -> Capture:
    """Run the simulator for ``duration_s`` while a plain consumer, the recorder (to
    ``path``) and, for each role of ``inlet_rates`` (Hz), an :class:`Inlet` take it.

    The inlets are pulled in this thread as a session's engine would: the EEG inlet
    waits up to 10 ms for data, the others not at all.
    """
    roles = [r for r in cfg.roles if r != "events"]
    ids = [cfg.source_id(r) for r in (*roles, "events")]
    rates = inlet_rates or {}
    with SimulatorProcess(cfg) as sim:
        ref = PlainConsumer(ids)
        ref.start()
        cap = Capture(cfg, duration_s, path, ids, ref)
        cap.inlets = {
            r: Inlet(cfg.source_id(r), expected_rate=fs, chunk_period_s=cfg.chunk_s).connect()
            for r, fs in rates.items()
        }
        for r in rates:
            cap.inlet_data[r], cap.inlet_stamps[r], cap.inlet_events[r] = [], [], []
        with Recorder(path, ids, resolve_timeout=15.0, **recorder_kw):
            t_end = time.monotonic() + duration_s
            while time.monotonic() < t_end:
                if not cap.inlets:
                    time.sleep(min(0.1, max(0.0, t_end - time.monotonic())))
                for role, inlet in cap.inlets.items():
                    chunk = inlet.pull(0.01 if role == "eeg" else 0.0)
                    cap.inlet_events[role] += chunk.events
                    if len(chunk):
                        cap.inlet_data[role].append(chunk.data.copy())
                        cap.inlet_stamps[role].append(chunk.timestamps.copy())
        ref.stop.set()
        ref.join()
        cap.t0 = sim.t0
    return cap
