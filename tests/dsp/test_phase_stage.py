"""PhaseStage (loop/phase_stage.py): Hjorth pick, real LSL outlet, scoring against the
simulator's known phase. Lives beside the phase tests because it is the phase feature's
integration test."""

from __future__ import annotations

import time

import numpy as np
import pylsl
import pytest

from stimloop.devices.sim.eeg import EEGGenerator
from stimloop.loop.phase_stage import PhaseStage
from stimloop.stream.errors import StreamError


def test_stage_publishes_and_scores_simulated_eeg(source_id):
    fs = 500.0
    gen = EEGGenerator(fs=fs, n_channels=32, iaf_hz=10.0, target="C3", seed=4, alpha_snr_db=6.0)
    stage = PhaseStage(target="C3", decimate=5)
    stage.start(fs, gen.labels, source_id)
    try:
        assert len(stage.used_neighbours) >= 3
        assert set(stage.used_neighbours) <= set(gen.labels)
        streams = pylsl.resolve_byprop("source_id", f"{source_id}-phase", timeout=5.0)
        assert len(streams) == 1
        inlet = pylsl.StreamInlet(streams[0])
        info = inlet.info(timeout=5.0)
        ch = info.desc().child("channels").child("channel")
        labels = []
        for _ in range(3):
            labels.append(ch.child_value("label"))
            ch = ch.next_sibling()
        assert labels == ["phase_rad", "amplitude", "confidence"]
        assert info.nominal_srate() == pytest.approx(fs / 5)
        inlet.open_stream(timeout=5.0)
        t0 = 1000.0
        ts_all, ph_all, amp_all = [], [], []
        n = 0
        for _ in range(int(30 * fs) // 20):
            eeg, truth = gen.generate(20)
            ts = t0 + (n + np.arange(20)) / fs
            stage.update(eeg, ts, n)
            ts_all.append(ts)
            ph_all.append(truth[:, 0])
            amp_all.append(truth[:, 1])
            n += 20
        truth = {
            "eeg_t": np.concatenate(ts_all),
            "eeg_phase_rad": np.concatenate(ph_all),
            "eeg_amplitude_uv": np.concatenate(amp_all),
        }
        res = stage.score(truth)
        assert res["phase_error_all"]["n"] > 20 * fs
        assert res["phase_error_all"]["sd_deg"] < 30.0
        assert abs(res["phase_error_all"]["mean_deg"]) < 5.0
        assert res["phase_error_top50"]["sd_deg"] < res["phase_error_all"]["sd_deg"]
        assert res["forecast_peak"]["n"] > 100 and res["forecast_peak"]["sd_deg"] < 60.0
        assert 9.0 < res["iaf_hz"] < 11.0
        got, rows = [], []
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and len(got) < n // 5:
            chunk, stamps = inlet.pull_chunk(timeout=0.5)
            got.extend(stamps)
            rows.extend(chunk)
        assert len(got) == n // 5
        rows = np.array(rows)
        late = rows[int(5 * fs) // 5 :]
        assert np.isfinite(late).all()
        assert (late[:, 2] >= 0).all() and (late[:, 2] <= 1).all()
        assert np.allclose(np.diff(got), 5 / fs, atol=1e-6)
    finally:
        stage.close()


def test_stage_rejects_missing_target(source_id):
    stage = PhaseStage(target="C3")
    with pytest.raises(StreamError, match="C3"):
        stage.start(500.0, ["O1", "O2", "Pz"], source_id)
