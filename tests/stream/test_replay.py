"""Replay of real recordings (WFDB, EDF, FIF, XDF) over localhost LSL, recorded and compared.

Each test replays a file, records the replay with the XDF recorder and compares the
recording with the source, read independently (wfdb, mne, pyxdf). Long files replay at
high speed to keep the suite short: MIT-BIH 100 (30 min) at 300x, EEGMAT (182 s) at 60x.
Relative timing is compared on the sender's timestamps (pyxdf without clock
synchronisation), which are exact; at 300x a 10 µs clock-offset estimate difference
between two streams would otherwise look like 3 ms of original time.
"""

from __future__ import annotations

import subprocess
import sys
import time

import mne
import numpy as np
import pytest
import pyxdf
import wfdb

from stimloop.stream.recorder import Recorder
from stimloop.stream.replay import Player, ReplayError, load_recording
from stimloop.stream.xdf import info_xml, read_xdf, write_xdf


def _wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _replay_and_record(src, out, suffix, speed, **kw):
    """Replay ``src``, record every replayed stream, return pyxdf streams by source_id."""
    player = Player(src, speed=speed, suffix=suffix, wait_for_consumers_s=30, **kw)
    expected = {sid: len(s) for sid, s in zip(player.source_ids, player.streams, strict=True)}
    player.start()
    try:
        with Recorder(out, player.source_ids, resolve_timeout=15.0) as rec:
            assert player.wait(timeout=player.recording.duration_s / speed + 60)

            def complete():
                got = {s.source_id: s.samples for s in rec.stats()}
                return all(got[sid] >= n for sid, n in expected.items())

            _wait_until(complete, 30, "the recorder to receive every replayed sample")
    finally:
        player.stop()
    streams, _ = pyxdf.load_xdf(str(out), synchronize_clocks=False, dejitter_timestamps=False)
    return player, {s["info"]["source_id"][0]: s for s in streams}


def _channels(stream):
    chans = stream["info"]["desc"][0]["channels"][0]["channel"]
    return [(c["label"][0], c["unit"][0], c["type"][0]) for c in chans]


def _effective_rate(ts):
    return (len(ts) - 1) / (ts[-1] - ts[0])


def test_replay_mitbih_record_100(shared_data, tmp_path, source_id):
    """30 min of 2-lead ECG at 360 Hz, replayed at 300x: samples, rate and all 2274 beats."""
    rec_path = shared_data / "mitbih" / "100"
    speed = 300.0
    player, got = _replay_and_record(rec_path, tmp_path / "mitbih.xdf", f"-{source_id}", speed)
    src = wfdb.rdrecord(str(rec_path))
    ann = wfdb.rdann(str(rec_path), "atr")
    data = got[f"100-{source_id}"]
    marks = got[f"100-markers-{source_id}"]
    np.testing.assert_array_equal(data["time_series"], src.p_signal.astype(np.float32))
    assert _channels(data) == [("MLII", "mV", "ECG"), ("V5", "mV", "ECG")]
    assert data["info"]["type"] == ["ECG"]
    rate = _effective_rate(data["time_stamps"]) / speed
    assert abs(rate / src.fs - 1) < 1e-3, f"effective rate {rate:.4f} Hz vs {src.fs} Hz"
    texts = [m[0] for m in marks["time_series"]]
    want = [f"{s} {a.strip(chr(0))}" if a.strip(chr(0)) else s
            for s, a in zip(ann.symbol, ann.aux_note, strict=True)]  # fmt: skip
    assert len(texts) == len(ann.sample) == 2274
    assert texts == want
    # Each marker sits on its annotated sample (in original seconds).
    t_rel = (marks["time_stamps"] - data["time_stamps"][0]) * speed
    np.testing.assert_allclose(t_rel, ann.sample / src.fs, atol=1e-4)
    assert player.samples_pushed()[f"100-{source_id}"] == src.sig_len


def test_replay_eegmat_edf(shared_data, tmp_path, source_id):
    """182 s of 21-channel EEG at 500 Hz from EDF, replayed at 60x, units as stored."""
    edf = shared_data / "eeg" / "eegmat_subject00_rest.edf"
    speed = 60.0
    _, got = _replay_and_record(edf, tmp_path / "edf.xdf", f"-{source_id}", speed)
    raw = mne.io.read_raw_edf(edf, preload=True, verbose="error")
    data = got[f"eegmat_subject00_rest-{source_id}"]
    scale = np.array([1e3 if ch.startswith("ECG") else 1e6 for ch in raw.ch_names])
    np.testing.assert_array_equal(data["time_series"],
                                  (raw.get_data().T * scale).astype(np.float32))  # fmt: skip
    chans = _channels(data)
    assert [c[0] for c in chans] == raw.ch_names
    assert chans[8] == ("EEG C3", "uV", "EEG")
    assert chans[-1] == ("ECG ECG", "mV", "ECG")
    rate = _effective_rate(data["time_stamps"]) / speed
    assert abs(rate / 500.0 - 1) < 1e-3
    assert len(got) == 1  # this EDF has no annotations, so no marker stream


def test_replay_fif_annotations_as_markers(shared_data, tmp_path, source_id):
    """A FIF file's annotations (MNE's own format) replay as markers at their onsets."""
    raw = mne.io.read_raw_edf(shared_data / "eeg" / "eegmat_subject00_rest.edf",
                              preload=True, verbose="error").crop(0, 20)  # fmt: skip
    onsets = [1.0, 2.5, 7.25, 13.0, 19.5]
    raw.set_annotations(mne.Annotations(onsets, [0.5] * 5, ["eyes", "blink", "x y", "a", "b"]))
    fif = tmp_path / "short_raw.fif"
    raw.save(fif, verbose="error")
    speed = 10.0
    _, got = _replay_and_record(fif, tmp_path / "fif.xdf", f"-{source_id}", speed)
    data, marks = got[f"short_raw-{source_id}"], got[f"short_raw-markers-{source_id}"]
    assert [m[0] for m in marks["time_series"]] == ["eyes", "blink", "x y", "a", "b"]
    t_rel = (marks["time_stamps"] - data["time_stamps"][0]) * speed
    np.testing.assert_allclose(t_rel, onsets, atol=1e-4)
    assert marks["info"]["type"] == ["Markers"]
    assert len(data["time_stamps"]) == raw.n_times


def _small_xdf(path, n=600, rate=200.0, seed=3):
    """Two streams with jittered stamps and a marker stream that starts first."""
    rng = np.random.default_rng(seed)
    ts = 1000.0 + np.arange(n) / rate + rng.normal(0, 2e-4, n)
    ts[300:] += 0.25  # a real gap in the middle
    values = rng.normal(0, 20, (n, 4)).astype(np.float32)
    chans = [{"label": f"E{i}", "unit": "uV", "type": "EEG"} for i in range(4)]
    mk_ts = np.array([999.9, 1000.5, 1001.2, ts[-1]])
    mk = [["start"], ["a"], ["ünï ✓"], ["end"]]
    write_xdf(path, [
        (info_xml("eeg", "EEG", "src-eeg", chans, rate, "float32", {"site": "lab 1"}),
         "float32", ts, values),
        (info_xml("marks", "Markers", "src-marks", [{"label": "m"}], 0.0, "string"),
         "string", mk_ts, mk),
    ])  # fmt: skip
    return ts, values, mk_ts, mk


def test_replay_xdf_keeps_relative_timing_and_metadata(tmp_path, source_id):
    src = tmp_path / "small.xdf"
    ts, values, mk_ts, mk = _small_xdf(src)
    speed = 2.0
    player, got = _replay_and_record(src, tmp_path / "out.xdf", f"-{source_id}", speed)
    assert player.source_ids == [f"src-eeg-{source_id}", f"src-marks-{source_id}"]
    data, marks = got[f"src-eeg-{source_id}"], got[f"src-marks-{source_id}"]
    np.testing.assert_array_equal(data["time_series"], values)
    assert marks["time_series"] == mk
    # One origin for all streams: the earliest stamp in the file (the first marker).
    t0 = marks["time_stamps"][0]
    np.testing.assert_allclose(data["time_stamps"] - t0, (ts - mk_ts[0]) / speed, atol=1e-6)
    np.testing.assert_allclose(marks["time_stamps"] - t0, (mk_ts - mk_ts[0]) / speed, atol=1e-6)
    assert _channels(data) == [(f"E{i}", "uV", "EEG") for i in range(4)]
    desc = data["info"]["desc"][0]
    assert desc["site"] == ["lab 1"]
    assert desc["replay_speed"] == ["2.0"]
    assert float(data["info"]["nominal_srate"][0]) == 200.0


def test_replay_loops_with_increasing_timestamps(tmp_path, source_id):
    src = tmp_path / "loop.xdf"
    _, values, _, _ = _small_xdf(src, n=100, rate=100.0)
    player = Player(src, speed=4.0, loop=True, chunk_size=7, suffix=f"-{source_id}",
                    wait_for_consumers_s=30)  # fmt: skip
    player.start()
    try:
        with Recorder(tmp_path / "looped.xdf", player.source_ids, resolve_timeout=15.0):
            _wait_until(lambda: player.iterations >= 3, 30, "three loops")
        assert not player.done
    finally:
        player.stop()
    f = read_xdf(tmp_path / "looped.xdf")
    data = next(s for s in f.streams if s.name == "eeg")
    n = len(data.time_stamps)
    assert n >= 300
    assert (np.diff(data.time_stamps) > 0).all()
    k = np.arange(n) % 100
    np.testing.assert_array_equal(data.time_series, values[k])


def _truncated(tmp_path):
    src = tmp_path / "whole.xdf"
    _, values, _, _ = _small_xdf(src)
    whole = src.read_bytes()
    # Cut the file half-way: inside one of the EEG Samples chunks.
    cut = tmp_path / "cut.xdf"
    cut.write_bytes(whole[: int(len(whole) * 0.5)])
    return cut, values


def test_truncated_xdf_replays_up_to_the_damage(tmp_path, source_id):
    cut, values = _truncated(tmp_path)
    f = read_xdf(cut)
    assert f.damage.startswith("file truncated: the chunk at byte ")
    reference, _ = pyxdf.load_xdf(str(cut), dejitter_timestamps=False)
    n_ok = len(next(s for s in reference if s["info"]["name"] == ["eeg"])["time_stamps"])
    assert 0 < n_ok < len(values)
    player, got = _replay_and_record(cut, tmp_path / "out.xdf", f"-{source_id}", 4.0)
    assert "truncated" in player.damage
    np.testing.assert_array_equal(got[f"src-eeg-{source_id}"]["time_series"], values[:n_ok])


def test_corrupt_xdf_is_an_error_that_names_the_byte(tmp_path):
    src = tmp_path / "whole.xdf"
    _small_xdf(src)
    data = bytearray(src.read_bytes())
    pos = len(data) // 2
    data[pos : pos + 64] = b"\xff" * 64
    bad = tmp_path / "corrupt.xdf"
    bad.write_bytes(bytes(data))
    with pytest.raises(ReplayError, match=r"corrupt.*corrupt chunk at byte \d+: .*allow_corrupt"):
        Player(bad)
    rec = load_recording(bad, allow_corrupt=True)
    assert 0 < len(rec.streams[0]) < 600


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.xdf", None, r"XDF file '.*absent.xdf' does not exist"),
        ("absent.edf", None, r"recording '.*absent.edf' does not exist"),
        ("absent_record", None, r"'.*absent_record' does not exist \(nor does absent_record.hea"),
        ("data.xyz", b"hello", r"unknown recording format '.xyz' .*replay reads .xdf"),
        ("fake.xdf", b"RIFF0000", r"is not an XDF file: it starts with b'RIFF'"),
        ("empty.xdf", b"", r"is not an XDF file: it starts with b''"),
        ("magic_only.xdf", b"XDF:", r"holds no readable stream"),
        ("garbage.edf", b"0" * 300, r"mne.io.read_raw could not read '.*garbage.edf'"),
    ],
    ids=["missing-xdf", "missing-edf", "missing-wfdb", "unknown-ext", "not-xdf", "empty",
         "no-streams", "bad-edf"],
)  # fmt: skip
def test_bad_input_gets_a_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ReplayError, match=message):
        Player(path)


def test_wfdb_record_without_signal_file(tmp_path, shared_data):
    (tmp_path / "100.hea").write_bytes((shared_data / "mitbih" / "100.hea").read_bytes())
    with pytest.raises(ReplayError, match=r"wfdb could not read record '.*100'"):
        load_recording(tmp_path / "100")


def test_player_arguments_are_validated(tmp_path):
    src = tmp_path / "s.xdf"
    _small_xdf(src)
    with pytest.raises(ReplayError, match="speed must be a positive number, got 0"):
        Player(src, speed=0)
    with pytest.raises(ReplayError, match="chunk_size must be >= 1 sample, got 0"):
        Player(src, chunk_size=0)


def test_cli_replay(tmp_path, source_id):
    src = tmp_path / "small.xdf"
    _small_xdf(src)
    proc = subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", "replay", str(src), "--speed", "8",
         "--chunk-size", "16", f"--source-id-suffix=-{source_id}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"src-eeg-{source_id}" in proc.stderr
    assert f"pushed src-eeg-{source_id}: 600, src-marks-{source_id}: 4" in proc.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", "replay", str(tmp_path / "nope.edf")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2
    assert "nope.edf' does not exist" in missing.stderr
