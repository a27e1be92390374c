"""A localisation scores only the cycles whose train went out (review finding: a train
the gate refused (not armed, stale ECG, a pause) left its cycle unstimulated, yet the
cycle was scored at its intensity, live and in ``stimloop analyze``, as if the train had
been delivered; a site whose trains were refused could be chosen as the target from
cycles without stimulation. Offline, a site restarted after an ECG loss also had its
unreached cycles scored)."""

from __future__ import annotations

import json
import time

import numpy as np

from stimloop.devices.sim.hbc_subject import SubjectConfig, simulate
from stimloop.loop.config import parse_session
from stimloop.loop.hbc_protocol import HBCProtocol
from stimloop.loop.heart_stage import HeartStage
from stimloop.loop.protocol import PulseOutcome, PulseRequest
from stimloop.stream.chunk import ChunkAssembler
from stimloop.stream.inlet import MarkerInlet

T0 = 11000.0


def _localise(source_id, refuse_cycles):
    """One site, four intensities; the trains of ``refuse_cycles`` are refused by the
    gate. Returns the protocol and the hbc markers it published."""
    cfg = parse_session(
        {
            "sources": {"ecg": {"source_id": "x", "rate_hz": 500.0}},
            "protocol": {"kind": "hbc", "sites": ["F3"], "intensities": [80.0, 90.0, 100.0, 110.0],
                         "rmt_pct_mso": 50.0, "cycle_s": 8.0, "train_s": 2.0},
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
    try:
        for k in range(0, rec.ecg_mv.size, 10):
            for c in grid.push(rec.ecg_mv[k : k + 10, None], stamps[k : k + 10]):
                stage.update(c)
                d = p.update(c)
                if p.waiting and c.timestamps[-1] > T0 + 1.0:
                    p.confirm("coil placed")
                if isinstance(d, PulseRequest):
                    fired = d.info["cycle"] not in refuse_cycles
                    err = "" if fired else "not armed"
                    p.outcome(PulseOutcome(d, fired, d.t_fire if fired else np.nan, err))
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
    the loop above ends and may still be in transit on a loaded machine (a CI run pulled
    once and missed the final cycle)."""
    markers: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        markers += [json.loads(t) for t, _ in inlet.pull()]
        if any(m["event"] == "site_done" for m in markers):
            return markers
        time.sleep(0.02)
    raise AssertionError(f"no site_done marker within {timeout_s} s; got {markers}")


def test_a_refused_train_leaves_its_cycle_unscored(source_id):
    p, markers = _localise(source_id, {2, 3})
    scored = [(m["index"], m["intensity"]) for m in markers if m["event"] == "cycle"]
    assert scored == [(0, 0.0), (1, 80.0), (4, 110.0)]
    refused = [m["cycle"] for m in markers if m["event"] == "train_refused"]
    assert refused == [2, 3]
    [site] = p.tracker.localisation().ranking
    assert list(site.intensities) == [80.0, 110.0]


def test_every_fired_train_is_scored(source_id):
    _, markers = _localise(source_id, set())
    scored = [m["index"] for m in markers if m["event"] == "cycle"]
    assert scored == [0, 1, 2, 3, 4]
