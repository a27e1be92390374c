"""Inlet against real LSL outlets on localhost (machine-scope resolves only)."""

from __future__ import annotations

import time

import numpy as np
import pylsl
import pytest
from sim_capture import SIM_RATES

from stimloop.devices.sim.ecg import ECGGenerator
from stimloop.devices.sim.eeg import EEGGenerator
from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.stream.errors import (
    AmbiguousStreamError,
    StreamError,
    StreamLostError,
    StreamMismatchError,
    StreamNotFoundError,
)
from stimloop.stream.events import ClockJump, Gap, NonFinite, Recovered, Stale
from stimloop.stream.inlet import Inlet, MarkerInlet
from stimloop.stream.outlet import Outlet, channel_specs, marker_outlet


def _pull_until(inlet: Inlet, n: int, deadline_s: float = 10.0):
    """Pull until ``n`` samples arrived or the deadline passes; returns data, stamps, events."""
    data, stamps, events = [], [], []
    got = 0
    t_end = time.monotonic() + deadline_s
    while got < n and time.monotonic() < t_end:
        chunk = inlet.pull(0.05)
        events += chunk.events
        if len(chunk):
            data.append(chunk.data.copy())
            stamps.append(chunk.timestamps.copy())
            got += len(chunk)
    assert got >= n, f"only {got} of {n} samples arrived within {deadline_s} s"
    return np.concatenate(data), np.concatenate(stamps), events


def _connected_pair(source_id: str, n_ch: int = 4, rate: float = 100.0, fmt: str = "float32"):
    out = Outlet("test", "EEG", source_id, channel_specs([f"c{i}" for i in range(n_ch)]), rate, fmt)
    inlet = Inlet(source_id, resolve_timeout=5.0).connect()
    t_end = time.monotonic() + 5.0
    while not out.have_consumers() and time.monotonic() < t_end:
        time.sleep(0.01)
    return out, inlet


@pytest.mark.slow
def test_60s_simulated_session_arrives_complete_and_on_time(simulated_minute):
    """Acceptance: 64 ch EEG @ 1 kHz, ECG @ 500 Hz, EDA @ 100 Hz for 60 s through Inlet
    (pulled while the recorder and a plain consumer take the same streams)."""
    cap = simulated_minute
    cfg, t0 = cap.cfg, cap.t0
    for role, fs in SIM_RATES.items():
        data = np.concatenate(cap.inlet_data[role])
        stamps = np.concatenate(cap.inlet_stamps[role])
        events = cap.inlet_events[role]
        assert not [e for e in events if isinstance(e, Gap | ClockJump)], events
        assert cap.inlets[role].lost_samples == 0
        # The simulator stamps sample k at t0 + k / fs; recover k from the first sample
        # and require every later sample to be exactly the next one (no loss, no dupes).
        k0 = round((stamps[0] - t0) * fs)
        expected_t = t0 + (k0 + np.arange(stamps.size)) / fs
        assert np.max(np.abs(stamps - expected_t)) < 1e-3
        assert stamps.size >= 59 * fs
        # The values are the generator's own, sample for sample.
        if role == "eeg":
            ref, _ = EEGGenerator(fs, 64, cfg.iaf_hz, cfg.target, cfg.seed).generate(k0 + 3000)
            np.testing.assert_allclose(data[:3000], ref[k0:], rtol=1e-5, atol=1e-3)
        elif role == "ecg":
            ref, _ = ECGGenerator(fs, cfg.hr_bpm, cfg.seed + 1, snr_db=cfg.ecg_snr_db).generate(
                k0 + 3000
            )
            np.testing.assert_allclose(data[:3000, 0], ref[k0:], rtol=1e-5, atol=1e-5)


def test_pause_is_reported_as_exactly_one_gap_of_its_size(source_id):
    cfg = SimConfig(prefix=source_id, roles=("eeg",), eeg_channels=16)
    with SimulatorProcess(cfg) as sim:
        inlet = Inlet(cfg.source_id("eeg"), expected_rate=1000.0).connect()
        _pull_until(inlet, 500)
        sim.pause("eeg", 0.5)
        _, _, events = _pull_until(inlet, 2000)
    gaps = [e for e in events if isinstance(e, Gap)]
    assert len(gaps) == 1, events
    assert gaps[0].missing == 500
    assert gaps[0].duration_s == pytest.approx(0.501, abs=1e-6)
    assert inlet.lost_samples == 500


def test_vanished_stream_goes_stale_then_raises_without_blocking(source_id):
    cfg = SimConfig(prefix=source_id, roles=("ecg",))
    sim = SimulatorProcess(cfg)
    try:
        inlet = Inlet(cfg.source_id("ecg"), chunk_period_s=0.01).connect()
        _pull_until(inlet, 100)
        sim.kill()
        t_kill = pylsl.local_clock()
        seen_stale = lost = None
        t_end = time.monotonic() + 5.0
        while time.monotonic() < t_end and lost is None:
            t_call = time.monotonic()
            try:
                chunk = inlet.pull(0.0)
                if any(isinstance(e, Stale) for e in chunk.events) and seen_stale is None:
                    seen_stale = pylsl.local_clock() - t_kill
            except StreamLostError as exc:
                lost = exc
            assert time.monotonic() - t_call < 0.05, "pull(0) must never block"
            if inlet.connected and inlet.is_stale() and seen_stale is None:
                seen_stale = pylsl.local_clock() - t_kill
            time.sleep(0.002)
    finally:
        sim.stop()
    assert lost is not None and "vanished" in str(lost)
    assert not inlet.connected
    assert inlet.is_stale()
    # Stale (or lost) is known within 2 nominal chunk periods of 10 ms, plus one 2 ms
    # polling step of this test.
    assert seen_stale is None or seen_stale <= 2 * 0.01 + 0.005


def test_stale_and_recovered_events_for_a_silent_outlet(source_id):
    out, inlet = _connected_pair(source_id, rate=100.0)
    out.push(np.zeros((5, 4)))
    _pull_until(inlet, 5)
    time.sleep(0.1)  # 5 chunk periods of silence
    events = inlet.pull(0.0).events
    assert any(isinstance(e, Stale) for e in events)
    assert inlet.is_stale()
    out.push(np.zeros((3, 4)))
    _, _, events = _pull_until(inlet, 3)
    assert any(isinstance(e, Recovered) for e in events)
    out.close()


def test_nonfinite_samples_are_counted_and_flagged_not_dropped(source_id):
    out, inlet = _connected_pair(source_id)
    x = np.ones((10, 4), np.float32)
    x[2, 1] = np.nan
    x[7, 0] = np.inf
    out.push(x)
    data, _, events = _pull_until(inlet, 10)
    bad = [e for e in events if isinstance(e, NonFinite)]
    assert sum(e.n_samples for e in bad) == 2
    assert np.isnan(data[2, 1]) and np.isinf(data[7, 0])  # kept, not hidden
    out.close()


def test_timestamps_going_backwards_are_a_clock_jump(source_id):
    out, inlet = _connected_pair(source_id, rate=100.0)
    now = pylsl.local_clock()
    out.push(np.zeros((1, 4)), now)
    out.push(np.zeros((1, 4)), now + 0.01)
    out.push(np.zeros((1, 4)), now - 1.0)
    _, _, events = _pull_until(inlet, 3)
    jumps = [e for e in events if isinstance(e, ClockJump)]
    assert len(jumps) == 1 and jumps[0].cause == "timestamps"
    assert jumps[0].jump_s == pytest.approx(-1.01, abs=1e-6)
    out.close()


def test_push_jitter_is_neither_a_gap_nor_a_clock_jump(source_id):
    # liblsl back-dates chunks from their push time, so jittery pushes step back a little.
    out, inlet = _connected_pair(source_id, rate=1000.0)
    now = pylsl.local_clock()
    for k, jitter in enumerate([0.0, -0.002, -0.002, -0.004]):
        out.push(np.zeros((10, 4)), now + 0.01 * (k + 1) + jitter)
    _, _, events = _pull_until(inlet, 40)
    assert not events
    out.close()


def test_channel_and_rate_mismatch_name_seen_and_expected(source_id):
    out = Outlet("x", "EEG", source_id, channel_specs(["a", "b"]), 250.0)
    with pytest.raises(StreamMismatchError, match=r"has 2 channels; the config expects 8"):
        Inlet(source_id, expected_channels=8).connect()
    with pytest.raises(StreamMismatchError, match=r"250 Hz; the config expects 500 Hz"):
        Inlet(source_id, expected_rate=500.0).connect()
    out.close()


def test_two_streams_with_one_source_id_is_an_error_naming_both(source_id):
    a = Outlet("first", "EEG", source_id, channel_specs(["a"]), 100.0)
    b = Outlet("second", "EEG", source_id, channel_specs(["a"]), 100.0)
    with pytest.raises(AmbiguousStreamError, match="2 streams share") as err:
        Inlet(source_id).connect()
    assert "'first'" in str(err.value) and "'second'" in str(err.value)
    a.close()
    b.close()


def test_missing_stream_and_misuse_are_clear_errors(source_id):
    t = time.monotonic()
    with pytest.raises(StreamNotFoundError, match=source_id):
        Inlet(source_id, resolve_timeout=0.3).connect()
    assert time.monotonic() - t < 3.0
    with pytest.raises(StreamError, match="source_id"):
        Inlet("")
    with pytest.raises(StreamError, match="not connected"):
        Inlet(source_id).pull()


def test_a_source_id_cannot_select_another_stream(source_id):
    """A quote in a source_id (from a session file or the command line) would otherwise
    widen liblsl's XPath predicate to another stream: the victim must stay unreachable."""
    victim = Outlet("victim", "EEG", source_id, channel_specs(["a"]), 100.0)
    try:
        for forged in (f"nothing' or source_id='{source_id}", f"x\nsource_id='{source_id}"):
            with pytest.raises(StreamError, match="not allowed"):
                Inlet(forged, resolve_timeout=1.0).connect()
        with pytest.raises(StreamError, match="hostname"):
            Inlet(source_id, hostname="h' or '1'='1", resolve_timeout=1.0).connect()
        assert Inlet(source_id, resolve_timeout=5.0).connect() is not None  # still reachable
    finally:
        victim.close()


def test_metadata_and_values_round_trip(source_id):
    out, inlet = _connected_pair(source_id, n_ch=3, rate=200.0, fmt="float64")
    assert inlet.channel_labels == ["c0", "c1", "c2"]
    x = np.random.default_rng(0).standard_normal((400, 3))
    t_last = pylsl.local_clock()
    out.push(x, t_last)
    data, stamps, events = _pull_until(inlet, 400)
    np.testing.assert_array_equal(data, x)
    np.testing.assert_allclose(stamps, t_last - (399 - np.arange(400)) / 200.0, atol=1e-3)
    assert not events
    assert inlet.n_received == 400
    ring_data, ring_t, first = inlet.ring.latest(50)
    assert ring_t[-1] == stamps[-1]
    np.testing.assert_array_equal(ring_data, x[-50:])
    assert first == 350
    out.close()
    inlet.close()


def test_marker_inlet_round_trip(source_id):
    out = marker_outlet("markers", source_id)
    inlet = MarkerInlet(source_id).connect()
    t_end = time.monotonic() + 5.0
    while not out.have_consumers() and time.monotonic() < t_end:
        time.sleep(0.01)
    now = pylsl.local_clock()
    out.push_marker("stim", now)
    got: list = []
    t_end = time.monotonic() + 5.0
    while not got and time.monotonic() < t_end:
        got = inlet.pull()
        time.sleep(0.01)
    assert got[0][0] == "stim" and got[0][1] == pytest.approx(now, abs=1e-3)
    inlet.close()
    out.close()
