"""The EDA stage end to end: simulated EDA in, real LSL outlets out, scored on truth.

(Lives next to the EDA DSP tests; it exercises ``stimloop.loop.eda_stage``.)
"""

from __future__ import annotations

import json
import time

import numpy as np
import pylsl
import pytest

from stimloop.devices.sim.eda import EDAGenerator, simulate_labelled_eda
from stimloop.dsp.eda import FLAG_NAN
from stimloop.loop.eda_stage import EDAStage
from stimloop.loop.evaluation import scr_scores
from stimloop.stream.chunk import ChunkAssembler
from stimloop.stream.errors import StreamError


def _resolve(source_id: str, deadline_s: float = 30.0) -> pylsl.StreamInlet:
    t_end = time.monotonic() + deadline_s
    while time.monotonic() < t_end:
        found = pylsl.resolve_byprop("source_id", source_id, 1, 0.5)
        if found:
            inlet = pylsl.StreamInlet(found[0])
            inlet.open_stream(timeout=5.0)
            return inlet
    pytest.fail(f"stream {source_id!r} not found within {deadline_s} s")


def _drain(inlet: pylsl.StreamInlet, expect: int, deadline_s: float = 10.0):
    values, stamps = [], []
    t_end = time.monotonic() + deadline_s
    while time.monotonic() < t_end and len(values) < expect:
        v, t = inlet.pull_chunk(timeout=0.2)
        values += v
        stamps += t
    return values, np.asarray(stamps)


def _labels(inlet: pylsl.StreamInlet) -> list[tuple[str, str]]:
    out = []
    ch = inlet.info().desc().child("channels").child("channel")
    while not ch.empty():
        out.append((ch.child_value("label"), ch.child_value("unit")))
        ch = ch.next_sibling()
    return out


def test_stage_publishes_scl_scrs_responses_and_scores(source_id):
    fs = 100.0
    x, truth, events = simulate_labelled_eda(fs, 5.0, seed=12)
    t0 = 5000.0
    stamps = t0 + np.arange(x.size) / fs
    stage = EDAStage()
    stage.start(fs, ["EDA"], source_id)
    try:
        level_in = _resolve(f"{source_id}-eda-level")
        scr_in = _resolve(f"{source_id}-eda-scr")
        resp_in = _resolve(f"{source_id}-eda-response")
        assert _labels(level_in)[0] == ("scl_us", "uS")
        assert [lab for lab, _ in _labels(scr_in)][:4] == [
            "onset_t",
            "peak_t",
            "confirmed_t",
            "amplitude_us",
        ]
        assert level_in.info().nominal_srate() == pytest.approx(10.0)
        step = round(0.01 * fs)  # 10 ms chunks, as the session pulls them
        grid = ChunkAssembler(fs, 30.0)
        ev_iter = iter(events)
        nxt = next(ev_iter, None)
        for i in range(0, x.size, step):
            while nxt is not None and nxt < i + step:
                stage.add_event(t0 + nxt / fs)
                nxt = next(ev_iter, None)
            for chunk in grid.push(x[i : i + step, None].astype(np.float32), stamps[i : i + step]):
                stage.update(chunk)
        n_scr = len(stage.detector.scrs)
        scr_vals, scr_t = _drain(scr_in, n_scr)
        lv_vals, _ = _drain(level_in, int(x.size / fs * 10) - 5)
        resp_vals, _ = _drain(resp_in, len(events) - 2)
        assert len(scr_vals) == n_scr > 20
        # Stamped at the onset; onset_t channel equals the stamp; peak after onset.
        scr_vals = np.asarray(scr_vals)
        np.testing.assert_allclose(scr_vals[:, 0], scr_t, atol=1e-6)
        assert np.all(scr_vals[:, 1] > scr_vals[:, 0]) and np.all(scr_vals[:, 2] >= scr_vals[:, 1])
        lv = np.asarray(lv_vals)
        assert len(lv) >= x.size / fs * 10 - 5
        assert np.all(np.abs(lv[:, 0] - 5.0) < 1.0)  # SCL around the simulator's 5 µS
        assert np.all(lv[:, 1] >= 0)
        assert 0 < np.nanmax(lv[:, 2]) < 20
        # Every event gets a resolved response; most respond (each evokes an SCR).
        assert len(resp_vals) >= len(events) - 2
        rs = [json.loads(v[0]) for v in resp_vals]
        assert np.mean([r["responded"] for r in rs]) >= 0.8

        scrs = {"onset_t": scr_vals[:, 0], "confirmed_t": scr_vals[:, 2],
                "amplitude_us": scr_vals[:, 3]}  # fmt: skip
        s = scr_scores(t0 + truth["onset"] / fs, truth["amplitude"], scrs,
                       (t0 + 2.0, stamps[-1] - 7.0))  # fmt: skip
        print(f"\n{json.dumps(s)}")
        assert s["f1"] >= 0.9
        assert s["amplitude_err_median"] <= 0.15
        assert s["scr_detected"] == s["tp"] + s["fp"]
        assert 0 < s["detection_delay_s_p50"] < 6.0
    finally:
        stage.close()


def test_stage_bridges_gaps_with_nan_and_recovers(source_id):
    fs = 50.0
    gen = EDAGenerator(fs=fs, seed=3)
    x, truth = gen.generate(int(200 * fs))
    stamps = 100.0 + np.arange(x.size) / fs
    stage = EDAStage(rate_hz=fs)
    stage.start(fs, ["EDA"], source_id)
    try:
        level_in = _resolve(f"{source_id}-eda-level")
        scr_in = _resolve(f"{source_id}-eda-scr")
        keep = np.ones(x.size, bool)
        keep[int(60 * fs) : int(63 * fs)] = False  # 3 s lost by the inlet
        step = 25
        idx = np.flatnonzero(keep)
        grid = ChunkAssembler(fs, 30.0)
        for i in range(0, idx.size, step):
            sel = idx[i : i + step]
            for chunk in grid.push(x[sel, None], stamps[sel]):
                stage.update(chunk)
        lv_vals, lv_t = _drain(level_in, x.size)
        lv = np.asarray(lv_vals)
        assert lv.shape[0] == x.size  # the gap was filled, at the stream's rate
        in_gap = (lv_t >= stamps[int(60 * fs)]) & (lv_t < stamps[int(63 * fs)])
        assert in_gap.sum() == 3 * fs and np.all(lv[in_gap, 3].astype(int) & FLAG_NAN)
        scr_vals, _ = _drain(scr_in, len(stage.detector.scrs))
        scr_vals = np.asarray(scr_vals)
        scrs = {"onset_t": scr_vals[:, 0], "confirmed_t": scr_vals[:, 2],
                "amplitude_us": scr_vals[:, 3]}  # fmt: skip
        s = scr_scores(100.0 + truth["onset"] / fs, truth["amplitude"], scrs,
                       (102.0, stamps[-1] - 7.0))  # fmt: skip
        print(f"\n{json.dumps(s)}")
        assert s["f1"] >= 0.85
    finally:
        stage.close()


def test_stage_rejects_bad_channel_and_early_update(source_id):
    stage = EDAStage(channel="GSR")
    with pytest.raises(StreamError, match="GSR"):
        stage.start(100.0, ["EDA"], source_id)
    with pytest.raises(StreamError, match="before start"):
        EDAStage().update(ChunkAssembler(100.0, 30.0).push(np.zeros((4, 1)), np.arange(4.0))[0])


def test_stage_min_amplitude_reaches_the_detector(source_id):
    stage = EDAStage(min_amplitude=0.05)
    stage.start(100.0, ["EDA"], source_id)
    try:
        assert stage.detector is not None
        assert stage.detector.params.min_amplitude == 0.05
    finally:
        stage.close()
