"""XDF -> mne.io.Raw: channel types, SI units, markers as annotations; real EEG round trip."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from mne.io.constants import FIFF

from stimloop.stream.mne_io import read_raw_xdf
from stimloop.stream.replay import load_recording
from stimloop.stream.xdf import XDFError, info_xml, write_xdf


def _session(path, n=2000, rate=500.0):
    rng = np.random.default_rng(7)
    chans = [
        {"label": "C3", "unit": "uV", "type": "EEG"},
        {"label": "ECG", "unit": "mV", "type": "ECG"},
        {"label": "EDA", "unit": "uS", "type": "EDA"},
        {"label": "HR", "unit": "bpm", "type": "HR"},
    ]
    values = rng.normal(0, 10, (n, 4))
    ts = 100.0 + np.arange(n) / rate
    mk_ts = np.array([99.0, 100.0, 101.5, 103.0, 200.0])
    marks = [["before"], ["first"], ["stim"], ["end"], ["after"]]
    hr = (info_xml("hr", "HR", "hr-1", [{"label": "hr", "unit": "bpm"}], 4.0, "double64"),
          "double64", 100.0 + np.arange(16) / 4, np.ones((16, 1)))  # fmt: skip
    write_xdf(path, [
        (info_xml("phys", "EEG", "phys-1", chans, rate, "double64"), "double64", ts, values),
        (info_xml("mk", "Markers", "mk-1", [{"label": "m"}], 0.0, "string"), "string", mk_ts,
         marks),
        hr,
    ])  # fmt: skip
    return values


def test_types_units_and_annotations(tmp_path, caplog):
    path = tmp_path / "s.xdf"
    values = _session(path)
    raw = read_raw_xdf(path, source_id="phys-1")
    assert raw.ch_names == ["C3", "ECG", "EDA", "HR"]
    assert raw.get_channel_types() == ["eeg", "ecg", "bio", "misc"]
    assert raw.info["sfreq"] == 500.0
    np.testing.assert_allclose(raw.get_data(), (values * [1e-6, 1e-3, 1e-6, 1.0]).T, rtol=1e-12)
    assert raw.info["chs"][2]["unit"] == FIFF.FIFF_UNIT_S
    assert raw.info["chs"][0]["unit"] == FIFF.FIFF_UNIT_V
    ann = raw.annotations
    assert list(ann.description) == ["first", "stim", "end"]
    np.testing.assert_allclose(ann.onset, [0.0, 1.5, 3.0])
    assert "2 marker(s) fall outside the data" in caplog.text


def test_stream_choice_is_explicit(tmp_path):
    path = tmp_path / "s.xdf"
    _session(path)
    with pytest.raises(XDFError, match=r"2 regularly sampled numeric streams.*'phys-1', 'hr-1'"):
        read_raw_xdf(path)
    with pytest.raises(XDFError, match=r"source_id 'nope' matches 0"):
        read_raw_xdf(path, source_id="nope")
    assert read_raw_xdf(path, source_id="hr").get_channel_types() == ["misc"]


def test_real_eeg_survives_xdf(tmp_path, shared_data):
    """EEGMAT EDF -> XDF (the replay loader's streams) -> Raw equals mne's own EDF read."""
    edf = shared_data / "eeg" / "eegmat_subject00_rest.edf"
    rec = load_recording(edf)
    s = rec.streams[0]
    xml = info_xml(s.name, s.type, s.source_id, s.channels, s.rate_hz, s.fmt)
    path = tmp_path / "eegmat.xdf"
    write_xdf(path, [(xml, s.fmt, s.timestamps, s.data)], 500)
    raw = read_raw_xdf(path)
    ref = mne.io.read_raw_edf(edf, preload=True, verbose="error")
    assert raw.ch_names == ref.ch_names
    assert raw.get_channel_types() == ["eeg"] * 20 + ["ecg"]
    # Stored as float32 in the stream's unit (µV, mV): equal to float32 precision.
    np.testing.assert_allclose(raw.get_data(), ref.get_data(), rtol=1e-6, atol=1e-12)
    assert raw.n_times == ref.n_times
