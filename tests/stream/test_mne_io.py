"""One mne.io.Raw per modality with every marker as an annotation, and back to XDF:
XDF -> Raws -> XDF -> Raws gives the same Raws."""

from __future__ import annotations

import numpy as np
import pytest

from stimloop.stream.mne_io import raw_lsl_t0, read_raws_xdf, write_raws_xdf
from stimloop.stream.xdf import XDFError, info_xml, write_xdf


def _recording(path, seed=3):
    """EEG (250 Hz, µV), ECG (100 Hz, mV) and EDA (10 Hz, µS) starting at different
    times, a marker stream (one marker before every stream, one between two samples of
    the slowest, one after every stream) and a JSON decision stream."""
    rng = np.random.default_rng(seed)

    def stream(name, stype, unit, rate, n, t0, n_ch=1):
        chans = [{"label": f"{name}{k}", "unit": unit, "type": stype} for k in range(n_ch)]
        data = rng.normal(0, 5, (n, n_ch)).astype(np.float32)
        return (info_xml(name, stype, f"rec-{name}", chans, rate, "float32"), "float32",
                t0 + np.arange(n) / rate, data)  # fmt: skip

    eeg = stream("eeg", "EEG", "uV", 250.0, 1000, 1000.0, n_ch=4)
    ecg = stream("ecg", "ECG", "mV", 100.0, 380, 1000.2)
    eda = stream("eda", "EDA", "uS", 10.0, 35, 1000.35)
    mk_t = np.array([999.0, 1000.0, 1001.234567, 1002.04, 1003.1, 1010.0])
    marks = [["before"], ["first"], ["stim"], ["between"], ["late"], ["after"]]
    dec_t = np.array([1001.5, 1001.5])
    dec = [['{"event": "fired", "t_trigger": 1001.5}'], ['{"event": "note"}']]
    write_xdf(path, [
        eeg, ecg, eda,
        (info_xml("m", "Markers", "rec-m", [{"label": "m"}], 0.0, "string"), "string", mk_t,
         marks),
        (info_xml("d", "Markers", "rec-d", [{"label": "d"}], 0.0, "string"), "string", dec_t,
         dec),
    ])  # fmt: skip
    return {"eeg": eeg, "ecg": ecg, "eda": eda}


def test_one_raw_per_modality_with_its_markers(tmp_path):
    path = tmp_path / "rec.xdf"
    src = _recording(path)
    raws = read_raws_xdf(path, {"eeg": "rec-eeg", "ecg": "rec-ecg", "eda": "rec-eda"})
    assert list(raws) == ["eeg", "ecg", "eda"]
    scale = {"eeg": 1e-6, "ecg": 1e-3, "eda": 1e-6}
    kinds = {"eeg": "eeg", "ecg": "ecg", "eda": "bio"}
    for name, raw in raws.items():
        _, _, ts, data = src[name]
        np.testing.assert_allclose(raw.get_data(), data.T.astype(np.float64) * scale[name])
        assert set(raw.get_channel_types()) == {kinds[name]}
        assert raw_lsl_t0(raw) == ts[0]
        end = ts[-1]
        want = [d for t, d in [(1000.0, "first"), (1001.234567, "stim"), (1002.04, "between"),
                               (1003.1, "late"), (1001.5, '{"event": "fired", "t_trigger": '
                               '1001.5}'), (1001.5, '{"event": "note"}')]
                if ts[0] - 0.5 / raw.info["sfreq"] <= t <= end]  # fmt: skip
        assert sorted(raw.annotations.description) == sorted(want), name
    eeg = raws["eeg"].annotations
    assert eeg.onset[list(eeg.description).index("stim")] == pytest.approx(1.234567, abs=1e-6)
    # Default: every regularly sampled stream, keyed by source_id; markers can be left out.
    bare = read_raws_xdf(path, markers=False)
    assert list(bare) == ["rec-eeg", "rec-ecg", "rec-eda"]
    assert all(len(r.annotations) == 0 for r in bare.values())
    with pytest.raises(XDFError, match="modality 'emg': source_id 'rec-emg' matches 0"):
        read_raws_xdf(path, {"emg": "rec-emg"})


def test_raws_round_trip_through_xdf(tmp_path):
    path, again = tmp_path / "rec.xdf", tmp_path / "again.xdf"
    _recording(path)
    first = read_raws_xdf(path, {"eeg": "rec-eeg", "ecg": "rec-ecg", "eda": "rec-eda"})
    write_raws_xdf(first, again)
    second = read_raws_xdf(again, {"eeg": "eeg", "ecg": "ecg", "eda": "eda"})
    third_path = tmp_path / "third.xdf"
    write_raws_xdf(second, third_path)
    assert third_path.read_bytes() == again.read_bytes()  # a fixed point after one trip
    for name, a in first.items():
        b = second[name]
        assert b.ch_names == a.ch_names and b.get_channel_types() == a.get_channel_types()
        assert b.info["sfreq"] == a.info["sfreq"]
        assert [c["unit"] for c in b.info["chs"]] == [c["unit"] for c in a.info["chs"]]
        np.testing.assert_array_equal(b.get_data(), a.get_data())
        assert raw_lsl_t0(b) == raw_lsl_t0(a)
        assert sorted(b.annotations.description) == sorted(a.annotations.description), name
        # MNE keeps annotation onsets to 1 µs.
        order_a, order_b = np.argsort(a.annotations.onset), np.argsort(b.annotations.onset)
        np.testing.assert_allclose(b.annotations.onset[order_b], a.annotations.onset[order_a],
                                   atol=1.01e-6)  # fmt: skip
