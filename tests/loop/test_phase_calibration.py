"""The session-start calibration of the phase band (issue #18).

The protocol (Hjorth, the real numba phase kernel, the real calibrator) runs on the
real EEGMAT rest recording: the locked band is the offline calibration of the same
samples, nothing is requested before it, the switch happens at the same sample for any
chunking, later samples never change it, and a recording without an alpha peak waits
for the operator.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from stimloop.dsp.calibration import calibrate
from stimloop.dsp.spatial import hjorth
from stimloop.loop.config import (
    ChannelRoles,
    DSPConfig,
    PhaseLockedConfig,
    SessionConfigError,
    parse_session,
)
from stimloop.loop.errors import SessionError
from stimloop.loop.phase_locked import EEG_MAX_GAP_S, PhaseLockedProtocol
from stimloop.loop.protocol import Hold, Notice, Prompt, PulseOutcome, PulseRequest
from stimloop.stream.chunk import ChunkAssembler
from stimloop.stream.replay import load_recording

T0 = 500.0  # LSL time of the first sample, s
CAL_S = 40.0


@functools.cache
def _load(path: str) -> tuple[np.ndarray, list[str], float]:
    rec = load_recording(path)
    eeg = next(s for s in rec.streams if s.rate_hz > 0)
    data = np.asarray(eeg.data, dtype=np.float64)[: round(120 * eeg.rate_hz)]
    data.flags.writeable = False
    return data, [c["label"] for c in eeg.channels], float(eeg.rate_hz)


@pytest.fixture
def eegmat(shared_data):
    return _load(str(shared_data / "eeg" / "eegmat_subject00_rest.edf"))


class _Recorded(PhaseLockedProtocol):
    """The protocol, keeping the phase estimate of every row it was given."""

    phase: np.ndarray

    def estimate(self, chunk):
        out = super().estimate(chunk)
        self.phase[chunk.first_index : chunk.first_index + len(chunk)] = out.phase_rad
        return out


class Run:
    """One offline pass: per-sample phase, decisions (with the newest sample's index)."""

    def __init__(self, data, labels, fs, target, sizes, cal_s=CAL_S, confirm_at=None):
        p = _Recorded(
            PhaseLockedConfig(min_ipi_s=0.3, jitter_s=0.0, n_pulses=10**6, min_confidence=0.0),
            ChannelRoles(eeg_target=target),
            DSPConfig(calibration_s=cal_s),
        )
        p.start(fs, labels)
        p.phase = np.full(len(data), np.nan)
        grid = ChunkAssembler(fs, EEG_MAX_GAP_S)
        stamps = T0 + np.arange(len(data)) / fs
        self.decisions: list[tuple[int, object]] = []
        k = 0
        sizes = iter(sizes)
        while k < len(data):
            n = next(sizes)
            if confirm_at is not None and k >= confirm_at and p.waiting:
                p.confirm("test")
            for c in grid.push(data[k : k + n], stamps[k : k + n]):
                d = p.update(c)
                if d is not None:
                    self.decisions.append((c.first_index + len(c) - 1, d))
                if isinstance(d, PulseRequest):
                    p.outcome(PulseOutcome(d, True, d.t_fire))
            k += n
        self.protocol = p
        self.phase = p.phase

    def of(self, kind) -> list[tuple[int, object]]:
        return [(i, d) for i, d in self.decisions if isinstance(d, kind)]


def _sizes(seed: int | None, fixed: int = 0):
    rng = np.random.default_rng(seed)
    while True:
        yield fixed or int(rng.integers(1, 400))


def test_the_locked_band_is_the_offline_calibration_of_the_same_samples(eegmat):
    data, labels, fs = eegmat
    n_cal = round(CAL_S * fs)
    run = Run(data, labels, fs, "O2", _sizes(None, 10))
    notices = run.of(Notice)
    assert len(notices) == 1
    idx, notice = notices[0]
    assert notice.event == "phase_calibration" and notice.info["state"] == "locked"
    offline = calibrate(hjorth(np.asarray(data[:n_cal]), labels, "O2"), fs)
    assert offline.lockable, offline
    assert notice.info["band_hz"] == pytest.approx(list(offline.band_hz), abs=1e-9)
    assert notice.info["iaf_hz"] == pytest.approx(offline.iaf_hz, abs=1e-9)
    assert notice.info["snr_db"] == pytest.approx(offline.snr_db, abs=1e-9)
    # published with the chunk that completed it, and nothing asked for before
    assert n_cal - 1 <= idx < n_cal + 10
    requests = run.of(PulseRequest)
    assert requests and requests[0][0] > idx
    holds = [d for _, d in run.of(Hold) if d.reason == "calibrating"]
    assert len(holds) == 1 and holds[0].info["duration_s"] == CAL_S
    assert run.protocol.estimator.band == tuple(offline.band_hz)
    # the locked estimator is primed: valid right after the switch
    assert np.isfinite(run.phase[n_cal : n_cal + 5]).all()


def test_the_switch_is_at_the_same_sample_for_any_chunking(eegmat):
    data, labels, fs = eegmat
    ref = Run(data, labels, fs, "O2", _sizes(None, 1000))
    for sizes in (_sizes(None, 7), _sizes(3), _sizes(11)):
        run = Run(data, labels, fs, "O2", sizes)
        np.testing.assert_array_equal(run.phase, ref.phase)
        assert run.of(Notice)[0][1].info == ref.of(Notice)[0][1].info


def test_later_samples_change_neither_the_band_nor_the_earlier_phase(eegmat):
    data, labels, fs = eegmat
    m = round((CAL_S + 3.0) * fs)
    other = np.array(data)
    other[m:] = np.random.default_rng(0).normal(0, 50, other[m:].shape)
    a = Run(data, labels, fs, "O2", _sizes(5))
    b = Run(other, labels, fs, "O2", _sizes(5))
    np.testing.assert_array_equal(a.phase[:m], b.phase[:m])
    assert a.of(Notice)[0][1].info == b.of(Notice)[0][1].info


def _pink(n: int, n_ch: int, seed: int, fs: float, alpha_gain: float = 1.0) -> np.ndarray:
    """1/f noise, its 7-14 Hz band scaled by ``alpha_gain`` (< 1: a dip no random
    fluctuation turns into a peak)."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.normal(size=(n, n_ch)), axis=0)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec[1:] /= np.sqrt(f[1:])[:, None]
    spec[0] = 0.0
    spec[(f >= 7.0) & (f <= 14.0)] *= alpha_gain
    x = np.fft.irfft(spec, n, axis=0)
    return x / x.std(axis=0) * 10.0  # 10 µV RMS, as resting EEG


def test_without_an_alpha_peak_the_operator_decides(eegmat):
    _, labels, fs = eegmat
    data = _pink(round(70 * fs), len(labels), 1, fs, alpha_gain=0.5)
    n_cal = round(CAL_S * fs)
    with pytest.raises(SessionError, match="not waiting"):
        Run(data[:100], labels, fs, "C3", _sizes(None, 10)).protocol.confirm("early")
    waiting = Run(data, labels, fs, "C3", _sizes(None, 10))
    notice, prompt = waiting.of(Notice), waiting.of(Prompt)
    assert len(notice) == 1 and notice[0][1].info["recommendation"] == "no_peak"
    assert notice[0][1].info["state"] == "awaiting_confirm"
    assert len(prompt) == 1 and "stop the session" in prompt[0][1].message
    assert waiting.protocol.waiting and not waiting.of(PulseRequest)
    # the operator confirms 5 s later: the protocol goes on with the tracked IAF
    confirmed = Run(data, labels, fs, "C3", _sizes(None, 10), confirm_at=n_cal + round(5 * fs))
    after = confirmed.of(Notice)[-1]
    assert after[1].info["state"] == "tracking" and after[1].info["confirmed"] is True
    assert after[0] >= n_cal + round(5 * fs)
    assert not confirmed.protocol.waiting
    assert all(i > after[0] for i, _ in confirmed.of(PulseRequest))


def test_a_weak_peak_locks_its_band_once_confirmed(eegmat):
    _, labels, fs = eegmat
    n = round(70 * fs)
    data = _pink(n, len(labels), 2, fs, alpha_gain=0.5)
    c3 = labels.index("EEG C3")
    t = np.arange(n) / fs
    data[:, c3] += 1.0 * np.sin(2 * np.pi * 9.5 * t)  # a faint mu rhythm at C3 only
    n_cal = round(CAL_S * fs)
    run = Run(data, labels, fs, "C3", _sizes(None, 25), confirm_at=n_cal + round(2 * fs))
    first = run.of(Notice)[0][1].info
    assert first["recommendation"] == "weak", first
    assert first["expected_sd_deg"] > 45.0
    last = run.of(Notice)[-1][1].info
    assert last["state"] == "locked" and last["confirmed"] is True
    assert last["band_hz"] == pytest.approx(first["measured_band_hz"])
    assert run.protocol.estimator.band == tuple(first["measured_band_hz"])


def test_an_explicit_band_or_zero_skips_it_and_a_short_rest_is_refused(eegmat):
    _, labels, fs = eegmat
    for dsp in (DSPConfig(phase_band_hz=(8.0, 12.0)), DSPConfig(calibration_s=0)):
        p = PhaseLockedProtocol(PhaseLockedConfig(), ChannelRoles(eeg_target="C3"), dsp)
        p.start(fs, labels)
        assert p.calibration is None and not p.waiting
    base = {"sources": {"eeg": {"source_id": "x"}}}
    with pytest.raises(SessionConfigError, match=r"dsp\.calibration_s = 10.*at least 22 s"):
        parse_session({**base, "dsp": {"calibration_s": 10}}, "s.toml")
    assert parse_session(base, "s.toml").dsp.calibration_s == 120.0
