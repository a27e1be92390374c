"""One heart-brain-coupled localisation run offline, for the tests of how its trains'
fates are scored (refused, cut short, delivered in full).

The protocol is driven by a real heart stage on 70 s of the virtual subject's ECG (one
site, F3, four intensities, 10 Hz trains of 2 s), chunk by chunk on the LSL clock from
``T0``, and told of each train as the engine tells it: a refused one at once, a fired
one at its end with the pulses that went out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np

from stimloop.devices.sim.hbc_subject import SubjectConfig, simulate
from stimloop.loop.config import parse_session
from stimloop.loop.hbc_protocol import HBCProtocol
from stimloop.loop.heart_stage import HeartStage
from stimloop.loop.protocol import PulseOutcome, PulseRequest
from stimloop.stream.chunk import ChunkAssembler
from stimloop.stream.inlet import MarkerInlet

T0 = 12000.0
TRAIN_S = 2.0

#: ``fate(cycle, n_pulses) -> (fired, pulses_delivered, error)`` of each planned train.
Fate = Callable[[int, int], tuple[bool, int, str]]


def localise(source_id: str, fate: Fate) -> tuple[HBCProtocol, list[dict]]:
    """Run the localisation; returns the protocol and the hbc markers it published."""
    cfg = parse_session(
        {
            "sources": {"ecg": {"source_id": "x", "rate_hz": 500.0}},
            "protocol": {"kind": "hbc", "sites": ["F3"], "intensities": [80.0, 90.0, 100.0, 110.0],
                         "rmt_pct_mso": 50.0, "cycle_s": 8.0, "train_s": TRAIN_S},
            "stimulator": {"driver": "simulated"},
        },
        "t.toml",
    )  # fmt: skip
    rec = simulate(SubjectConfig(seed=8, noise_scale=0.5), np.zeros(0), np.zeros(0), [], 70.0)
    stage = HeartStage()
    stage.start(rec.fs, ["ECG"], source_id)
    p = HBCProtocol(cfg.protocol, stage, seed=0)
    p.open_outlets(source_id)
    hbc = MarkerInlet(f"{source_id}-hbc").connect()
    grid = ChunkAssembler(rec.fs, 10.0)
    stamps = T0 + np.arange(rec.ecg_mv.size) / rec.fs
    running: list[tuple[float, PulseOutcome]] = []  # (train end, its outcome)
    try:
        for k in range(0, rec.ecg_mv.size, 10):
            for c in grid.push(rec.ecg_mv[k : k + 10, None], stamps[k : k + 10]):
                stage.update(c)
                now = float(c.timestamps[-1])
                while running and running[0][0] <= now:  # as the engine, at the train's end
                    p.outcome(running.pop(0)[1])
                d = p.update(c)
                if p.waiting and now > T0 + 1.0:
                    p.confirm("coil placed")
                if isinstance(d, PulseRequest):
                    n = d.train.n_pulses
                    fired, got, why = fate(d.info["cycle"], n)
                    if not fired:
                        p.outcome(PulseOutcome(d, False, np.nan, why))
                        continue
                    out = PulseOutcome(d, True, d.t_fire, why, pulses_delivered=got)
                    running.append((d.t_fire + (n - 1) / d.train.frequency_hz, out))
            if p.done:
                break
        markers = _pull_until_site_done(hbc)
    finally:
        hbc.close()
        p.close()
        stage.close()
    return p, markers


def _pull_until_site_done(inlet: MarkerInlet, timeout_s: float = 10.0) -> list[dict]:
    """Every marker up to the site's last one. The last markers are published just before
    the run ends and may still be in transit on a loaded machine (a CI run pulled once
    and missed the final cycle)."""
    markers: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        markers += [json.loads(t) for t, _ in inlet.pull()]
        if any(m["event"] == "site_done" for m in markers):
            return markers
        time.sleep(0.02)
    raise AssertionError(f"no site_done marker within {timeout_s} s; got {markers}")
