"""The heart stage end to end: simulated ECG in, real LSL outlets out, scored on truth.

(Lives next to the heart DSP tests; it exercises ``stimloop.loop.heart_stage``.)
"""

from __future__ import annotations

import json
import time

import numpy as np
import pylsl
import pytest

from stimloop.devices.sim.ecg import ECGGenerator
from stimloop.loop.evaluation import beat_scores
from stimloop.loop.heart_stage import HeartStage
from stimloop.stream.chunk import ChunkAssembler
from stimloop.stream.errors import StreamError
from stimloop.stream.inlet import resolve_source


def _resolve(source_id: str, deadline_s: float = 15.0) -> pylsl.StreamInlet:
    inlet = pylsl.StreamInlet(resolve_source(source_id, timeout=deadline_s))
    inlet.open_stream(timeout=deadline_s)
    return inlet


def _drain(inlet: pylsl.StreamInlet, expect: int, deadline_s: float = 10.0):
    values, stamps = [], []
    t_end = time.monotonic() + deadline_s
    while time.monotonic() < t_end and len(values) < expect:
        v, t = inlet.pull_chunk(timeout=0.2)
        values += v
        stamps += t
    return values, np.asarray(stamps)


def _feed(stage: HeartStage, x: np.ndarray, stamps: np.ndarray, step: int, fs: float) -> None:
    """Chunks as the ECG inlet makes them (the session's 10 s gap policy)."""
    grid = ChunkAssembler(fs, 10.0)
    for i in range(0, x.size, step):
        for chunk in grid.push(x[i : i + step, None], stamps[i : i + step]):
            stage.update(chunk)


def _beats(markers: list, stamps: np.ndarray) -> dict[str, np.ndarray]:
    rows = [json.loads(m[0]) for m in markers]
    hr = [np.nan if r["hr_bpm"] is None else r["hr_bpm"] for r in rows]
    return {
        "t": stamps,
        "confirmed_t": np.array([r["confirmed_t"] for r in rows]),
        "hr_bpm": np.array(hr),
    }


def test_stage_publishes_beats_and_hr_and_scores_against_truth(source_id):
    fs = 500.0
    gen = ECGGenerator(fs=fs, hr_bpm=72.0, seed=4, snr_db=20.0)
    x, rpeaks = gen.generate(int(40 * fs))
    t0 = 1000.0
    stamps = t0 + np.arange(x.size) / fs
    stage = HeartStage()
    stage.start(fs, ["ECG"], source_id)
    try:
        beats_in = _resolve(f"{source_id}-heart-beats")
        hr_in = _resolve(f"{source_id}-heart-hr")
        info = hr_in.info()
        labels = []
        ch = info.desc().child("channels").child("channel")
        while not ch.empty():
            labels.append((ch.child_value("label"), ch.child_value("unit")))
            ch = ch.next_sibling()
        assert labels[0] == ("hr_bpm", "bpm") and labels[-1][0] == "flags"
        assert info.nominal_srate() == 4.0
        _feed(stage, x, stamps, round(0.01 * fs), fs)
        truth_t = t0 + rpeaks / fs
        markers, m_t = _drain(beats_in, np.sum(truth_t < stamps[-1] - 0.5))
        score = beat_scores(truth_t, _beats(markers, m_t), (t0, stamps[-1] - 0.2))
        assert score["f1"] >= 0.995, score
        assert score["hr_mae_bpm"] < 1.0, score
        assert score["detection_delay_ms_p95"] <= 100.0, score
        json.dumps(score)  # JSON-able
        # each marker is stamped at its R peak (not at detection): within 2 ms of the truth
        matched = np.abs(m_t[:, None] - truth_t[None, :]).min(axis=1)
        assert np.median(matched) < 0.002
        first = json.loads(markers[5][0])
        assert set(first) == {
            "index",
            "beat_class",
            "ibi_ms",
            "nn_ms",
            "hr_bpm",
            "flags",
            "confirmed_t",
        }
        assert first["beat_class"] == 0 and first["nn_ms"] == pytest.approx(first["ibi_ms"])
        assert first["confirmed_t"] > m_t[5]  # confirmed after the peak, never before
        rows, r_t = _drain(hr_in, 4 * 39)
        rows = np.asarray(rows)
        assert rows.shape[1] == 5 and rows.shape[0] >= 4 * 39
        ok = rows[:, 4] == 0
        assert ok.mean() > 0.9
        assert np.all(np.isfinite(rows[ok, 0])) and np.all(
            np.isnan(rows[~ok & (rows[:, 4] >= 4), 0])
        )
        assert np.allclose(np.diff(r_t), 0.25, atol=1.5 / fs)
    finally:
        stage.close()


def test_stage_bridges_a_gap_with_invalid_hr(source_id):
    fs = 250.0
    x, rpeaks = ECGGenerator(fs=fs, hr_bpm=60.0, seed=2).generate(int(60 * fs))
    stamps = 50.0 + np.arange(x.size) / fs
    keep = np.ones(x.size, bool)
    a, b = int(25 * fs), int(30 * fs)
    keep[a:b] = False  # 5 s never arrive (network loss)
    stage = HeartStage(channel="ECG")
    stage.start(fs, ["ECG"], source_id)
    try:
        beats_in = _resolve(f"{source_id}-heart-beats")
        hr_in = _resolve(f"{source_id}-heart-hr")
        _feed(stage, x[keep], stamps[keep], 5, fs)
        rows, st = _drain(hr_in, 4 * 59)
        hr = np.asarray(rows)[:, 0]
        gap = (st > stamps[a]) & (st < stamps[b])
        assert gap.sum() >= 18 and np.all(np.isnan(hr[gap]))
        # beats keep their true times across the gap
        true_t = 50.0 + rpeaks[(rpeaks < a) | (rpeaks >= b)] / fs
        markers, m_t = _drain(beats_in, true_t.size - 2)
        score = beat_scores(true_t, _beats(markers, m_t), (50.0, stamps[-1] - 0.2))
        assert score["f1"] >= 0.99 and score["hr_mae_bpm"] < 1.0, score
    finally:
        stage.close()


def test_stage_rejects_unknown_channel(source_id):
    stage = HeartStage(channel="Lead II")
    with pytest.raises(StreamError, match="Lead II"):
        stage.start(500.0, ["ECG"], source_id)


def test_the_stage_blanks_the_pulses_the_engine_reports(source_id):
    """Issue #17: the gate's pulse times (the engine passes them on as soon as the gate
    returns, before the ECG holding their artifact arrives) are blanked by the live stage,
    which then finds exactly the beats the offline detector finds with the same pulses
    blanked, and no artifact inside the 10 Hz trains is taken for a beat."""
    from stimloop.devices.sim.hbc_subject import SubjectConfig, simulate, train_pulses
    from stimloop.dsp.heart import BEAT_ARTIFACT, detect_rpeaks, pulse_blank_mask

    onsets = np.array([10.0, 26.0, 42.0])
    pt, pi, ps = train_pulses(onsets, [60.0] * 3, ["F3"] * 3)
    rec = simulate(SubjectConfig(seed=4, artifact_mv=4.0), pt, pi, ps, 55.0)
    fs, t0 = rec.fs, 2000.0
    stamps = t0 + np.arange(rec.ecg_mv.size) / fs
    stage = HeartStage()
    stage.start(fs, ["ECG"], source_id)
    try:
        beats_in = _resolve(f"{source_id}-heart-beats")
        grid = ChunkAssembler(fs, 10.0)
        step, told = round(0.02 * fs), 0
        for i in range(0, rec.ecg_mv.size, step):
            # The gate fires each train at its first pulse; the stage learns of all of
            # its pulses then, before their samples reach it.
            while (
                told < onsets.size and t0 + onsets[told] <= stamps[min(i + step, stamps.size) - 1]
            ):
                k = np.flatnonzero(np.isclose(pt, onsets[told]))[0]
                stage.note_pulses(t0 + pt[k : k + 50])
                told += 1
            for chunk in grid.push(rec.ecg_mv[i : i + step, None], stamps[i : i + step]):
                stage.update(chunk)
        markers, m_t = _drain(beats_in, np.sum(rec.rpeaks < rec.ecg_mv.size - fs))
    finally:
        stage.close()
    cls = np.array([json.loads(m[0])["beat_class"] for m in markers])
    live = np.rint((m_t[cls != BEAT_ARTIFACT] - t0) * fs).astype(np.int64)
    blank = pulse_blank_mask(np.rint(pt * fs).astype(np.int64), 0, rec.ecg_mv.size, fs)
    offline = detect_rpeaks(rec.ecg_mv, fs, blank=blank)
    # Only the samples just before each train's first pulse (2 ms) can have passed
    # before the gate fired it.
    assert 0 <= blank.sum() - stage.blanked_samples <= onsets.size * round(0.002 * fs)
    np.testing.assert_array_equal(live, offline[offline < live.max() + 1])
    truth = rec.rpeaks[rec.rpeaks <= live.max()]
    s = beat_scores(
        truth / fs,
        {"t": live / fs, "confirmed_t": live / fs, "hr_bpm": np.zeros(live.size)},
        (1.0, live.max() / fs),
    )
    assert s["f1"] >= 0.99, s
