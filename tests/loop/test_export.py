"""stimloop export: a recorded demo session into BIDS, read back with MNE-BIDS (same
samples and events), physio files equal to the recording, checked by the BIDS
validator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mne_bids
import numpy as np
import pytest

from stimloop.loop.export import export_session, session_events
from stimloop.loop.report import read_session
from stimloop.stream.bids import BIDSError, read_physio
from stimloop.stream.xdf import read_xdf


@pytest.fixture(scope="module")
def exported(demo_xdf, tmp_path_factory):
    root = tmp_path_factory.mktemp("bids")
    out = subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", "export", str(demo_xdf), "--bids", str(root),
         "--subject", "01", "--session", "1", "--task", "demo", "--json"],
        capture_output=True, text=True, timeout=180, env=os.environ.copy(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return root, json.loads(out.stdout)


@pytest.mark.slow
def test_mne_bids_reads_back_the_same_samples_and_events(exported, demo_xdf):
    root, written = exported
    rec = read_session(demo_xdf)
    eeg = rec.streams[rec.config["sources"]["eeg"]["source_id"]]
    path = mne_bids.BIDSPath(root=root, subject="01", session="1", task="demo", datatype="eeg")
    raw = mne_bids.read_raw_bids(path, verbose="error")
    assert raw.info["sfreq"] == eeg.rate_hz
    assert raw.get_channel_types() == ["eeg"] * eeg.n_channels
    assert raw.ch_names == [c.findtext("label") for c in eeg.info.find("desc/channels")]
    # Recorded as float32 µV; BrainVision holds float32 µV: equal to the last bit but one.
    x = np.asarray(eeg.time_series, np.float32).T
    got = (raw.get_data() * 1e6).astype(np.float32)
    assert got.shape == x.shape
    assert np.all(np.abs(got - x) <= np.spacing(np.abs(x)))
    # Events: every session moment inside the EEG, at its sample.
    t0 = float(eeg.synchronized_stamps()[0])
    end = (len(eeg.time_stamps) - 1) / eeg.rate_hz
    exact = sorted(((t - t0) * eeg.rate_hz, d) for t, d in session_events(rec)
                   if 0 <= t - t0 <= end)  # fmt: skip
    want = sorted((round(x), d, x) for x, d in exact)
    ann = raw.annotations
    got_events = sorted(zip(np.round(ann.onset * eeg.rate_hz).astype(int), ann.description,
                            strict=True))  # fmt: skip
    assert [d for _, d in got_events] == [d for _, d, _ in want]
    for (got, _), (near, d, x) in zip(got_events, want, strict=True):
        # A pulse falls between samples; its sample is the nearest one. Within 1 % of a
        # sample of the half-way point either neighbour is right: the writer's float
        # arithmetic (onset in s, then in samples) may round it the other way (a CI run
        # wrote 2414 for 2414.5x).
        tie = abs(x - np.floor(x) - 0.5) < 0.01
        assert got == near or (tie and got in (np.floor(x), np.ceil(x))), (got, x, d)
    assert written["events_written"] == len(want)
    kinds = {d for _, d, _ in want}
    assert "pulse" in kinds and any(k.startswith("refused/") or k == "scheduled" for k in kinds)
    assert sum(d == "pulse" for _, d, _ in want) == written["pulses"] == rec.pulse_t.size


@pytest.mark.slow
def test_physio_and_stimulation_files_hold_the_recording(exported, demo_xdf):
    root, written = exported
    f = read_xdf(demo_xdf)
    rec = read_session(demo_xdf)
    t0 = float(rec.streams[rec.config["sources"]["eeg"]["source_id"]].synchronized_stamps()[0])
    for role, column in (("ecg", "cardiac"), ("eda", "eda")):
        s = rec.streams[rec.config["sources"][role]["source_id"]]
        tsv = next(p for p in written["physio"] if f"recording-{role}_physio.tsv.gz" in p)
        data, meta = read_physio(tsv)
        np.testing.assert_array_equal(data[:, 0].astype(np.float32),
                                      np.asarray(s.time_series, np.float32)[:, 0])  # fmt: skip
        assert meta["SamplingFrequency"] == s.rate_hz and meta["Columns"] == [column]
        assert meta["StartTime"] == pytest.approx(float(s.synchronized_stamps()[0]) - t0)
        assert meta[column]["Units"] in ("mV", "uS")
    nibs = next(p for p in written["nibs"] if p.endswith(".tsv"))
    lines = Path(nibs).read_text().splitlines()
    head = lines[0].split("\t")
    assert head[:4] == ["onset", "StimulusMode", "FirstPulseAmplitude", "MarkerID"]
    rows = [dict(zip(head, r.split("\t"), strict=True)) for r in lines[1:]]
    assert len(rows) == rec.pulse_t.size
    np.testing.assert_allclose([float(r["onset"]) for r in rows], rec.pulse_t - t0, atol=1e-8)
    assert all(float(r["FirstPulseAmplitude"]) == rec.config["protocol"]["intensity_pct"]
               for r in rows)  # fmt: skip
    sidecar = json.loads(Path(nibs.replace(".tsv", ".json")).read_text())
    assert sidecar["FirstPulseAmplitude"]["Units"] == "%"
    assert sidecar["StimloopProtocol"] == rec.config["protocol"]
    assert (root / ".bidsignore").read_text().splitlines() == ["**/nibs"]
    assert len(f.streams) > 3


@pytest.mark.slow
def test_the_bids_validator_finds_no_error(exported):
    root, _ = exported
    exe = shutil.which("bids-validator-deno") or os.path.join(
        os.path.dirname(sys.executable), "bids-validator-deno"
    )
    out = subprocess.run([exe, str(root), "--format", "json"], capture_output=True, text=True,
                         timeout=180)  # fmt: skip
    report = json.loads(out.stdout)
    errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
    assert errors == [], errors
    assert report["summary"]["subjects"] == ["01"]


@pytest.mark.slow
def test_bad_labels_and_existing_files_are_refused(exported, demo_xdf):
    root, _ = exported
    with pytest.raises(BIDSError, match=r"subject 'sub_01' is not a BIDS label"):
        export_session(demo_xdf, root, subject="sub_01", session="1", task="demo")
    with pytest.raises(BIDSError, match="overwrite"):
        export_session(demo_xdf, root, subject="01", session="1", task="demo")
