"""The XDF recorder on real localhost LSL, checked with pyxdf (the reference reader)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pylsl
import pytest
import pyxdf
from sim_capture import capture_simulator

from stimloop.devices.sim.runner import SimConfig
from stimloop.stream.errors import StreamError, StreamNotFoundError
from stimloop.stream.outlet import ChannelSpec, Outlet, channel_specs, marker_outlet
from stimloop.stream.recorder import Recorder
from stimloop.stream.xdf import TAG_BOUNDARY, read_xdf


def _load(path, synchronize_clocks=True):
    streams, header = pyxdf.load_xdf(
        str(path), synchronize_clocks=synchronize_clocks, dejitter_timestamps=False
    )
    return {s["info"]["source_id"][0]: s for s in streams}, header


def _wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _chunk_tags(path):
    """(tag, offset) of every chunk, walking the file with the spec's length prefixes."""
    data = path.read_bytes()
    pos, out = 4, []
    while pos < len(data):
        width = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 1 + width], "little")
        tag = int.from_bytes(data[pos + 1 + width : pos + 3 + width], "little")
        out.append((tag, pos))
        pos += 1 + width + length
    assert pos == len(data), "chunk lengths do not add up to the file size"
    return out


def test_round_trip_known_streams(tmp_path, source_id):
    """Numeric (float64, int16) and string streams: values and stamps exact, footers right."""
    rng = np.random.default_rng(1)
    eeg = Outlet("eeg", "EEG", f"{source_id}-f", channel_specs(["C3", "C4", "Pz"], "uV", "EEG"),
                 500.0, "float64")  # fmt: skip
    ints = Outlet("ints", "Misc", f"{source_id}-i", (ChannelSpec("count", "", "Misc"),), 250.0,
                  "int16")  # fmt: skip
    mk = marker_outlet("markers", f"{source_id}-m")
    values = rng.normal(0, 50, (1000, 3))
    counts = rng.integers(-32768, 32767, (500, 1)).astype(np.int16)
    texts = ["stim", "ünïcødé ✓", "x" * 300, "", "a,b;c"]
    path = tmp_path / "known.xdf"
    ids = [f"{source_id}-f", f"{source_id}-i", f"{source_id}-m"]
    with Recorder(path, ids, resolve_timeout=15.0) as rec:
        _wait_until(lambda: eeg.have_consumers() and ints.have_consumers() and
                    mk.have_consumers(), 10, "the recorder to connect")  # fmt: skip
        t0 = pylsl.local_clock()
        stamps = t0 + np.arange(1000) / 500.0
        for k in range(0, 1000, 50):
            eeg.push(values[k : k + 50], stamps[k + 49])
            ints.push(counts[k // 2 : k // 2 + 25], stamps[k] + 24 / 250.0)
        for k, text in enumerate(texts):
            mk.push_marker(text, t0 + 0.3 * k)
        _wait_until(lambda: sum(s.samples for s in rec.stats()) == 1505, 10, "all samples")
    streams, header = _load(path)
    assert header["info"]["version"] == ["1.0"]
    f, i, m = streams[f"{source_id}-f"], streams[f"{source_id}-i"], streams[f"{source_id}-m"]
    np.testing.assert_array_equal(f["time_series"], values)
    np.testing.assert_array_equal(i["time_series"], counts)
    assert i["time_series"].dtype == np.int16
    assert [v[0] for v in m["time_series"]] == texts
    assert np.abs(f["time_stamps"] - stamps).max() < 1e-3
    assert np.abs(m["time_stamps"] - (t0 + 0.3 * np.arange(5))).max() < 1e-3
    chans = f["info"]["desc"][0]["channels"][0]["channel"]
    assert [c["label"][0] for c in chans] == ["C3", "C4", "Pz"]
    assert {c["unit"][0] for c in chans} == {"uV"}
    for s, n in ((f, 1000), (i, 500), (m, 5)):
        foot = s["footer"]["info"]
        assert int(foot["sample_count"][0]) == n == len(s["time_stamps"])
        assert float(foot["first_timestamp"][0]) <= s["time_stamps"][0] + 1e-3
        assert float(foot["last_timestamp"][0]) >= s["time_stamps"][-1] - 1e-3
        offsets = foot["clock_offsets"][0]["offset"]
        assert len(offsets) == len(s["clock_times"]) >= 1
    # Our own reader agrees with pyxdf, and finds no damage.
    ours = {s.text("source_id"): s for s in read_xdf(path).streams}
    assert read_xdf(path).damage is None
    np.testing.assert_array_equal(ours[f"{source_id}-f"].time_series, values)


def _check_round_trip(cap):
    """The recording equals what the plain consumer received, sample for sample."""
    path, ids, duration_s = cap.path, cap.source_ids, cap.duration_s
    ref = cap.reference
    streams, _ = _load(path)
    raw_streams, _ = _load(path, synchronize_clocks=False)
    for sid in ids:
        s = streams[sid]
        n = len(s["time_stamps"])
        assert int(s["footer"]["info"]["sample_count"][0]) == n
        ref_ts = np.asarray(ref.stamps[sid])
        # Align on the sender's timestamps (exact: t0 + index / fs), then compare.
        rec_raw = raw_streams[sid]["time_stamps"]
        common, ia, ib = np.intersect1d(ref_ts, rec_raw, return_indices=True)
        if sid.endswith("events"):
            assert n >= duration_s / 2.0 - 2
            assert [v[0] for v in s["time_series"]] == ["stim"] * n
            assert len(common) >= n - 1
            continue
        rate = float(s["info"]["nominal_srate"][0])
        assert n >= (duration_s - 1.5) * rate, f"{sid}: only {n} samples"
        assert len(common) >= n - 2 * rate  # both consumers saw the same middle
        ref_vals = np.asarray(ref.data[sid], dtype=np.float32)[ia]
        np.testing.assert_array_equal(s["time_series"][ib], ref_vals)
        # Contiguous: no sample lost between first and last.
        idx = np.round((rec_raw - rec_raw[0]) * rate)
        np.testing.assert_array_equal(idx, np.arange(n))
        assert np.abs(s["time_stamps"] - rec_raw).max() < 1e-3  # clock sync on localhost
    return streams


def test_round_trip_simulator(tmp_path, source_id):
    """6 s of simulated EEG/ECG/EDA/markers: identical to what a plain consumer received."""
    cfg = SimConfig(prefix=source_id, roles=("eeg", "ecg", "eda"), eeg_channels=32,
                    event_interval_s=2.0)  # fmt: skip
    cap = capture_simulator(cfg, tmp_path / "sim.xdf", 6.0, clock_offset_interval_s=1.0,
                            boundary_interval_s=2.0)  # fmt: skip
    _check_round_trip(cap)
    tags = [t for t, _ in _chunk_tags(cap.path)]
    assert 2 <= tags.count(TAG_BOUNDARY) <= 4


@pytest.mark.slow
def test_round_trip_simulator_60s(simulated_minute):
    """The acceptance run: 60 s with the default 5 s clock offsets and 10 s boundaries
    (the minute the inlet acceptance takes through the Inlet at the same time)."""
    streams = _check_round_trip(simulated_minute)
    tags = [t for t, _ in _chunk_tags(simulated_minute.path)]
    assert 5 <= tags.count(TAG_BOUNDARY) <= 7
    for s in streams.values():
        assert 11 <= len(s["clock_times"]) <= 14


def _pusher(outlet, stop, t_start):
    """Push a counter at 1 kHz on the LSL clock, sample k stamped t_start + k / 1000."""
    k = 0
    while not stop.is_set():
        n_due = int((pylsl.local_clock() - t_start) * 1000) + 1
        if n_due > k:
            outlet.push(np.arange(k, n_due, dtype=np.float64)[:, None], t_start + (n_due - 1) / 1e3)
            k = n_due
        time.sleep(0.005)


def _spawn_record(path, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "stimloop.loop.cli", "record", "-o", str(path), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_sigkill_leaves_a_loadable_file(tmp_path, source_id):
    out = Outlet("counter", "Misc", source_id, channel_specs(["k"]), 1000.0, "float64")
    stop = threading.Event()
    pusher = threading.Thread(target=_pusher, args=(out, stop, pylsl.local_clock()), daemon=True)
    pusher.start()
    path = tmp_path / "killed.xdf"
    proc = _spawn_record(path, "--source-id", source_id)
    try:
        _wait_until(out.have_consumers, 30, "the recorder process to connect")
        time.sleep(3.0)
        os.kill(proc.pid, signal.SIGKILL)
        t_kill = pylsl.local_clock()
        proc.wait(10)
    finally:
        stop.set()
        pusher.join()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    streams, _ = _load(path)
    s = streams[source_id]
    counter = s["time_series"][:, 0]
    assert len(counter) > 1000
    np.testing.assert_array_equal(counter, np.arange(counter[0], counter[0] + len(counter)))
    assert "footer" not in s  # it really died before writing footers
    missing_s = t_kill - s["time_stamps"][-1]
    assert missing_s <= 1.0, f"{missing_s:.3f} s of data lost at SIGKILL"
    assert read_xdf(path).damage is None  # only whole chunks ever reach the file


def test_cli_record_stops_cleanly_on_ctrl_c(tmp_path, source_id):
    """Records all visible streams (markers included) and writes footers on SIGINT."""
    out = Outlet("counter", "Misc", source_id, channel_specs(["k"]), 1000.0, "float64")
    mk = marker_outlet("marks", f"{source_id}-m")
    stop = threading.Event()
    pusher = threading.Thread(target=_pusher, args=(out, stop, pylsl.local_clock()), daemon=True)
    pusher.start()
    path = tmp_path / "ctrlc.xdf"
    proc = _spawn_record(path, "--wait", "1")
    try:
        try:
            _wait_until(lambda: out.have_consumers() and mk.have_consumers(), 30, "recorder")
        except AssertionError:
            proc.kill()
            raise AssertionError(proc.communicate()[1]) from None
        for k in range(5):
            mk.push_marker(f"m{k}")
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        stop.set()
        pusher.join()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert source_id in stdout and f"{source_id}-m" in stdout
    assert "samples" in stdout and "gaps" in stdout
    streams, _ = _load(path)
    s, m = streams[source_id], streams[f"{source_id}-m"]
    assert int(s["footer"]["info"]["sample_count"][0]) == len(s["time_stamps"]) > 500
    assert [v[0] for v in m["time_series"]] == [f"m{k}" for k in range(5)]


def test_missing_stream_is_named(tmp_path, source_id):
    with pytest.raises(StreamNotFoundError, match=f"{source_id}-absent"):
        Recorder(tmp_path / "x.xdf", [f"{source_id}-absent"], resolve_timeout=1.0).start()


def test_flush_interval_is_validated(tmp_path):
    with pytest.raises(StreamError, match=r"flush_interval_s must be in \(0, 1\] s, got 2"):
        Recorder(tmp_path / "x.xdf", ["a"], flush_interval_s=2)
