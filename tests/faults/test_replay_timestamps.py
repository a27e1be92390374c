"""Finding 8 of issue #15: replay trusted timestamps.

One stamp of 1e9 s, or a first stamp of -1e9 s, hung ``stimloop replay`` (it waited for
them in real time), and an infinite stamp crashed its thread with an OverflowError. The
replay now checks every stamp (``stream/replay.py: check_timestamps``): an isolated bad
stamp of a regular stream is rebuilt from the nominal rate with a warning; what the rate
cannot determine is refused with an error naming the stream, the sample and the bound;
what lies within the bounds is replayed exactly as recorded.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import numpy as np
import pylsl
import pytest

from stimloop.stream import replay
from stimloop.stream.replay import Player, ReplayError, load_recording
from stimloop.stream.xdf import (
    clock_offset_chunk,
    file_header,
    info_xml,
    samples_chunk,
    stream_header,
    write_xdf,
)

RATE = 100.0
N = 200
T0 = 1000.0


def _eeg(ts: np.ndarray) -> tuple:
    xml = info_xml("eeg", "EEG", "src-eeg", [{"label": "C3", "unit": "uV"}], RATE, "float32")
    values = np.arange(len(ts), dtype=np.float32)[:, None]
    return (xml, "float32", ts, values)


def _markers(ts: np.ndarray) -> tuple:
    xml = info_xml("marks", "Markers", "src-marks", [{"label": "m"}], 0.0, "string")
    return (xml, "string", ts, [[f"m{i}"] for i in range(len(ts))])


def _regular(n: int = N) -> np.ndarray:
    return T0 + np.arange(n) / RATE


def _write(tmp_path, *streams, name="rec.xdf"):
    path = tmp_path / name
    write_xdf(path, list(streams))
    return path


def _play(path, timeout: float, **kw) -> Player:
    """Replay at 4x and return the player once done; fail (not hang) after ``timeout``."""
    player = Player(path, speed=4.0, lead_s=0.05, linger_s=0.0, **kw).start()
    try:
        assert player.wait(timeout), f"replay of {path.name} still running after {timeout} s"
    finally:
        player.stop()
    return player


BAD_STAMPS = {
    "1e9-in-the-middle": (100, 1e9),
    "-1e9-first": (0, -1e9),
    "infinite": (50, np.inf),
    "nan": (50, np.nan),
    "-inf-last": (N - 1, -np.inf),
    # Within max_gap_s on the way out, beyond max_backstep_s on the way back (or the
    # reverse): only one of its two steps breaks a bound.
    "30-s-ahead": (100, T0 + 100 / RATE + 30.0),
    "30-s-behind": (100, T0 + 100 / RATE - 30.0),
}


@pytest.mark.parametrize("case", list(BAD_STAMPS))
def test_one_bad_stamp_is_rebuilt_with_a_warning_and_the_replay_ends(tmp_path, case, caplog):
    """Finding 8: 1e9 in the middle or -1e9 first hung the replay; inf crashed it.

    The stamp is rebuilt from its neighbour and the nominal rate (the XDF rule for a
    sample without a stamp), the warning names it, every sample is pushed, and the
    replay takes its 2 s / 4 of real time.
    """
    k, value = BAD_STAMPS[case]
    ts = _regular()
    ts[k] = value
    path = _write(tmp_path, _eeg(ts))
    with caplog.at_level(logging.WARNING, logger="stimloop.stream.replay"):
        t_start = time.monotonic()
        player = _play(path, timeout=10.0)
    assert time.monotonic() - t_start < 10.0
    assert player.error is None
    assert sum(player.samples_pushed().values()) == N
    np.testing.assert_allclose(player.streams[0].timestamps, _regular(), rtol=0, atol=1e-9)
    assert len(player.recording.repairs) == 1
    assert f"timestamp {k} ({float(value)!r} s) broke the bounds" in caplog.text
    assert "rebuilt from the nominal rate (100 Hz)" in caplog.text


def test_cli_replay_of_a_1e9_stamp_ends_and_the_consumer_sees_a_regular_stream(tmp_path, source_id):
    """Finding 8, end to end: ``stimloop replay`` of a file with one 1e9 s stamp used to
    hang; it now warns and ends, and an LSL consumer receives regularly stamped samples
    across the repaired one (6 s at 2x; the consumer joins during the first second)."""
    n, k = 600, 400
    ts = _regular(n)
    ts[k] = 1e9
    path = _write(tmp_path, _eeg(ts))
    with subprocess.Popen(
        [sys.executable, "-m", "stimloop.loop.cli", "replay", str(path), "--speed", "2",
         f"--source-id-suffix=-{source_id}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        infos = pylsl.resolve_byprop("source_id", f"src-eeg-{source_id}", 1, 15.0)
        assert infos, "the replayed stream never appeared"
        inlet = pylsl.StreamInlet(infos[0])
        values: list = []
        stamps: list[float] = []
        deadline = time.monotonic() + 20.0
        while (not values or values[-1][0] < n - 1) and time.monotonic() < deadline:
            got, got_t = inlet.pull_chunk(timeout=0.2)
            values += got
            stamps += got_t
        try:
            out, err = proc.communicate(timeout=20.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("stimloop replay did not end within 20 s")
    assert proc.returncode == 0, err
    assert f"timestamp {k} (1000000000.0 s) broke the bounds" in err
    assert f"src-eeg-{source_id}: {n}" in out
    index = np.array([v[0] for v in values])  # each sample's value is its index
    assert index[0] < k - 50 and index[-1] == n - 1, "the consumer missed the repaired part"
    np.testing.assert_array_equal(index, np.arange(index[0], n))
    np.testing.assert_allclose(np.diff(stamps), 1 / RATE / 2, atol=1e-6)


REFUSED = [
    ("marker-1e9", r"stream 'marks': timestamp 4 \(1001\.7 s\) steps back by 9\.99999e\+08 s "
                   r".*no nominal rate to rebuild"),
    ("marker-nan", r"stream 'marks': timestamp 2 is nan; timestamps must be finite"),
    ("clock-jumps-and-stays", r"stream 'eeg': timestamp 100 .* jumps ahead by 1e\+06 s"
                              r".*at most 60 s \(max_gap_s\); not a glitch"),
    ("clock-reset", r"stream 'eeg': timestamp 100 .* steps back by 499\.99 s"),
    ("long-run-of-nan", r"stream 'eeg': timestamps 50-99 \(50 in a row, from nan s\)"),
    ("epoch-stamped-stream", r"stream 'marks': timestamp 0 \(1700001000\.1 s\) lies outside "
                             r"the regular streams' span 1000-1001\.99 s by more than 60 s"),
    ("stream-at-3e16-s", r"stream 'eeg': timestamp 0 is 3e\+16; timestamps must be finite "
                         r"and within ±1e\+10 s; no timestamp is good"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "message"), REFUSED, ids=[c for c, _ in REFUSED])
def test_what_the_rate_cannot_determine_is_refused_with_a_named_error(tmp_path, case, message):
    """Finding 8: stamps no replay can follow are a clear error at load time, never a hang.

    Before the fix each of these files hung the replay or replayed garbage timing.
    """
    ts = _regular()
    marks = T0 + np.array([0.1, 0.5, 0.9, 1.3, 1.7])
    streams = [_eeg(ts), _markers(marks)]
    if case == "marker-1e9":
        marks[3] = 1e9
    elif case == "marker-nan":
        marks[2] = np.nan
    elif case == "clock-jumps-and-stays":
        ts[100:] += 1e6
    elif case == "clock-reset":
        ts[100:] -= 500.0
    elif case == "long-run-of-nan":
        ts[50:100] = np.nan
    elif case == "epoch-stamped-stream":
        marks += 1.7e9
    elif case == "stream-at-3e16-s":  # float64 steps by 4 s there: no 10 ms grid survives
        ts[:] = 3e16 + np.arange(N) / RATE
        marks += 3e16
    path = _write(tmp_path, *streams)
    with pytest.raises(ReplayError, match=message) as err:
        Player(path)
    assert str(path) in str(err.value)


def test_markers_minutes_apart_beside_a_regular_stream_are_replayed(tmp_path):
    """Exposure cues come minutes apart: a marker stream may be silent for longer than
    max_gap_s while the regular streams set the pace (they must not step that far)."""
    n = round(200 * RATE)
    ts = T0 + np.arange(n) / RATE
    marks = T0 + np.array([1.0, 90.0, 185.0])  # 89 s and 95 s of silence
    rec = load_recording(_write(tmp_path, _eeg(ts), _markers(marks)))
    assert rec.repairs == []
    np.testing.assert_array_equal(rec.streams[1].timestamps, marks)


def test_flaws_within_the_bounds_are_replayed_as_recorded(tmp_path):
    """Finding 8, the other side: a 5 s gap, a 0.5 s step back and jitter are what the
    session saw; replay reproduces them instead of "repairing" them."""
    rng = np.random.default_rng(0)
    ts = _regular() + rng.uniform(-0.002, 0.002, N)
    ts[60:] += 5.0
    ts[150:] -= 0.5
    marks = T0 + np.array([0.2, 0.1, 3.0])  # pushed out of order by two threads
    path = _write(tmp_path, _eeg(ts), _markers(marks))
    rec = load_recording(path)
    assert rec.repairs == []
    np.testing.assert_array_equal(rec.streams[0].timestamps, ts)
    np.testing.assert_array_equal(rec.streams[1].timestamps, marks)


def test_a_slow_regular_stream_and_many_faults(tmp_path):
    """Finding 8: a regular stream slower than one sample a minute (0.01 Hz) steps by its
    period, beyond ``max_gap_s``, and replays as recorded; a stream with more separate
    faults than any glitch explains (200) is refused rather than searched for long."""
    slow = info_xml("temp", "Misc", "src-temp", [{"label": "T"}], 0.01, "float32")
    ts = T0 + np.arange(5) * 100.0
    path = _write(tmp_path, (slow, "float32", ts, np.zeros((5, 1), np.float32)))
    rec = load_recording(path)
    assert rec.repairs == []
    np.testing.assert_array_equal(rec.streams[0].timestamps, ts)
    ts = T0 + np.arange(5000) / RATE
    ts[::25] = 1e9
    path = _write(tmp_path, _eeg(ts), name="faults.xdf")
    with pytest.raises(ReplayError, match=r"200 separate timestamp faults, more than 100: not"):
        load_recording(path)


def test_the_bounds_are_settable_and_checked(tmp_path):
    """Finding 8: the bounds are parameters (a 90 s gap replays with ``max_gap_s=120``),
    a bad bound is an error, and ``max_repair_run=0`` refuses instead of repairing."""
    ts = _regular()
    ts[100:] += 90.0
    path = _write(tmp_path, _eeg(ts))
    with pytest.raises(ReplayError, match=r"jumps ahead by 90\.01 s .* at most 60 s"):
        load_recording(path)
    assert (
        load_recording(path, timestamp_limits=replay.TimestampLimits(max_gap_s=120.0)).repairs == []
    )
    with pytest.raises(ReplayError, match=r"max_gap_s must be a finite number >= 0 s, got nan"):
        replay.TimestampLimits(max_gap_s=float("nan"))
    ts = _regular()
    ts[7] = np.inf
    path = _write(tmp_path, _eeg(ts), name="inf.xdf")
    with pytest.raises(ReplayError, match=r"timestamp 7 is inf.*repairs are off"):
        Player(path, timestamp_limits=replay.TimestampLimits(max_repair_run=0))


def test_a_very_slow_replay_waits_in_slices_instead_of_overflowing(tmp_path):
    """Finding 8: a wait longer than threading can represent (speed 1e-12: a 2 s file
    lasts 63,000 years) raised OverflowError in the replay thread; it now just waits."""
    path = _write(tmp_path, _eeg(_regular()))
    player = Player(path, speed=1e-12, lead_s=0.0, linger_s=0.0).start()
    time.sleep(0.3)
    player.stop()
    assert player.error is None
    assert sum(player.samples_pushed().values()) == 1  # the first sample is due at once


def test_a_nan_clock_offset_does_not_poison_every_stamp(tmp_path):
    """Finding 8, the reader's part: one ClockOffset measurement with a NaN offset made
    every synchronised stamp NaN (``np.interp``); non-finite measurements are now left
    out, and measurements written out of order are used in time order."""
    xml = _eeg(_regular())[0]
    ts = _regular()
    values = np.zeros((N, 1), np.float32)
    parts = [file_header(), stream_header(1, xml)]
    parts.append(clock_offset_chunk(1, T0 + 1.5, 10.0))
    parts.append(clock_offset_chunk(1, T0 + 0.5, 10.0))  # out of order
    parts.append(clock_offset_chunk(1, T0 + 1.0, float("nan")))
    parts.append(samples_chunk(1, "float32", ts, values))
    path = tmp_path / "offsets.xdf"
    path.write_bytes(b"".join(parts))
    rec = load_recording(path)
    np.testing.assert_allclose(rec.streams[0].timestamps, ts + 10.0)
    assert rec.repairs == []
