"""No localisation train without the baseline of the cardiac drop rule (review finding:
the baseline came from the rest cycle's figures, which are complete only about when the
first train starts, so every site's first train was requested with a NaN baseline; and
when the rest cycle's pre-onset window held too little valid HR (a 0.9 s ECG dropout
while the coil was settled) it stayed NaN for the whole site. ``hr < NaN -
max_drop_bpm`` is never true: those trains ran with the drop rule off, the 45 bpm floor
the only guard against a vasovagal fall)."""

from __future__ import annotations

import math

import numpy as np

from stimloop.devices.sim.hbc_subject import SubjectConfig, simulate
from stimloop.loop.config import parse_session
from stimloop.loop.hbc_protocol import HBCProtocol
from stimloop.loop.heart_stage import HeartStage
from stimloop.loop.protocol import Hold, PulseOutcome, PulseRequest
from stimloop.stream.chunk import ChunkAssembler

T0 = 9000.0  # LSL time of the ECG's first sample, s


def _run(source_id, nan_span_s):
    """One site, two trains; the operator confirms at 1 s (the rest cycle's baseline
    window is then [1.5, 6.5) s); ECG NaN over ``nan_span_s``. Returns the protocol, the
    decisions and the baseline at each train request."""
    cfg = parse_session(
        {
            "sources": {"ecg": {"source_id": "x", "rate_hz": 500.0}},
            "protocol": {"kind": "hbc", "sites": ["F3"], "intensities": [90.0, 100.0],
                         "rmt_pct_mso": 50.0, "cycle_s": 8.0, "train_s": 2.0},
            "stimulator": {"driver": "simulated"},
        },
        "t.toml",
    )  # fmt: skip
    rec = simulate(SubjectConfig(seed=6, noise_scale=0.5), np.zeros(0), np.zeros(0), [], 60.0)
    ecg = rec.ecg_mv.copy()
    if nan_span_s is not None:
        ecg[round(nan_span_s[0] * rec.fs) : round(nan_span_s[1] * rec.fs)] = np.nan
    stage = HeartStage()
    stage.start(rec.fs, ["ECG"], source_id)
    p = HBCProtocol(cfg.protocol, stage, seed=0)
    p.open_outlets(source_id)
    grid = ChunkAssembler(rec.fs, 10.0)
    stamps = T0 + np.arange(ecg.size) / rec.fs
    out, baselines = [], []
    try:
        for k in range(0, ecg.size, 10):
            for c in grid.push(ecg[k : k + 10, None], stamps[k : k + 10]):
                stage.update(c)
                d = p.update(c)
                if p.waiting and c.timestamps[-1] > T0 + 1.0:
                    p.confirm("coil placed")
                if d is not None:
                    out.append(d)
                if isinstance(d, PulseRequest):
                    baselines.append(p.baseline_bpm)
                    p.outcome(PulseOutcome(d, True, d.t_fire))
            if p.done:
                break
    finally:
        p.close()
        stage.close()
    return p, out, baselines


def test_a_site_without_a_baseline_starts_over_before_any_train(source_id):
    p, out, baselines = _run(source_id, (3.0, 3.9))
    holds = [d for d in out if isinstance(d, Hold)]
    assert [h.reason for h in holds] == ["no_baseline"]
    rest_onsets = [c.onset_s for c in p.cycles if c.index == 0]
    assert len(rest_onsets) == 2  # the site's course began again
    trains = [d for d in out if isinstance(d, PulseRequest)]
    assert len(trains) == 2 and all(d.t_fire > rest_onsets[1] for d in trains)
    assert all(math.isfinite(b) and 40 < b < 120 for b in baselines)


def test_with_a_good_baseline_window_the_trains_run_with_the_drop_rule(source_id):
    p, out, baselines = _run(source_id, None)
    assert not [d for d in out if isinstance(d, Hold)]
    assert len([d for d in out if isinstance(d, PulseRequest)]) == 2
    # The first train already has its baseline, the one the rest cycle's figures report.
    assert len(baselines) == 2 and all(math.isfinite(b) for b in baselines)
    assert baselines[0] == p.baseline_bpm
