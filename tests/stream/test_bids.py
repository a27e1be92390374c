"""BIDS writers: physio files hold the samples exactly, with a reproducible gzip header;
the stimulation table and .bidsignore; labels are checked."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from stimloop.stream.bids import BIDSError, bids_path, read_physio, write_nibs, write_physio


def test_physio_holds_float32_samples_exactly_and_nan_as_na(tmp_path):
    path = bids_path(tmp_path, "01", "pre", "rest")
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (500, 2)).astype(np.float32)
    x[7, 1] = np.nan
    cols = [{"name": "cardiac", "description": "ECG", "units": "mV"},
            {"name": "eda", "description": "EDA", "units": "uS"}]  # fmt: skip
    tsv, side = write_physio(path, "phys", x, 250.0, -0.125, cols)
    assert tsv.name == "sub-01_ses-pre_task-rest_recording-phys_physio.tsv.gz"
    assert tsv.parent.name == "eeg" and side.name.endswith("_physio.json")
    data, meta = read_physio(tsv)
    np.testing.assert_array_equal(data.astype(np.float32), x)
    assert meta == {"SamplingFrequency": 250.0, "StartTime": -0.125,
                    "Columns": ["cardiac", "eda"],
                    "cardiac": {"Description": "ECG", "Units": "mV"},
                    "eda": {"Description": "EDA", "Units": "uS"}}  # fmt: skip
    raw = tsv.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip MTIME 0
    assert raw[3] & 0x08 == 0  # no FNAME field
    assert "n/a" in gzip.decompress(raw).decode().splitlines()[7]
    first = raw
    write_physio(path, "phys", x, 250.0, -0.125, cols, overwrite=True)
    assert tsv.read_bytes() == first  # the same export twice is the same file
    with pytest.raises(BIDSError, match="exists; pass overwrite"):
        write_physio(path, "phys", x, 250.0, -0.125, cols)
    with pytest.raises(BIDSError, match="2 data columns for 1 names"):
        write_physio(path, "other", x, 250.0, 0.0, cols[:1])
    with pytest.raises(BIDSError, match=r"sampling rate must be > 0 Hz, got 0\.0"):
        write_physio(path, "other", x, 0.0, 0.0, cols)


def test_stimulation_table_and_bidsignore(tmp_path):
    path = bids_path(tmp_path, "02", "1", "tms", run=2)
    cols = {"onset": {"Description": "t", "Units": "s"}, "MarkerID": {"Description": "site"},
            "FirstPulseAmplitude": {"Description": "i", "Units": "%"}}  # fmt: skip
    rows = [{"onset": 1.5, "MarkerID": "C3", "FirstPulseAmplitude": 50.0},
            {"onset": 2.25, "MarkerID": None, "FirstPulseAmplitude": float("nan")}]  # fmt: skip
    tsv, side = write_nibs(path, rows, cols, {"TaskName": "tms"})
    assert tsv.relative_to(tmp_path).as_posix() == (
        "sub-02/ses-1/nibs/sub-02_ses-1_task-tms_run-2_stimsys-tms_nibs.tsv")  # fmt: skip
    assert tsv.read_text().splitlines() == ["onset\tMarkerID\tFirstPulseAmplitude",
                                            "1.5\tC3\t50", "2.25\tn/a\tn/a"]  # fmt: skip
    meta = json.loads(side.read_text())
    assert meta["TaskName"] == "tms" and meta["FirstPulseAmplitude"]["Units"] == "%"
    write_nibs(path, rows, cols, {}, overwrite=True)
    assert (tmp_path / ".bidsignore").read_text() == "**/nibs\n"  # listed once


def test_labels_must_be_alphanumeric(tmp_path):
    for bad, what in (("sub-01", "subject"), ("", "subject"), ("é1", "subject")):
        with pytest.raises(BIDSError, match=f"{what} .* is not a BIDS label"):
            bids_path(tmp_path, bad, "1", "rest")
    with pytest.raises(BIDSError, match="task 'n back' is not a BIDS label"):
        bids_path(tmp_path, "01", "1", "n back")
