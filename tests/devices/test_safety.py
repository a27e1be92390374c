"""Safety gate: every limit and every interlock is tried, and every violation refused."""

from __future__ import annotations

import json
import logging
import threading
import time

import numpy as np
import pylsl
import pytest

from stimloop.devices.base import TrainSpec
from stimloop.devices.endpoints import SessionEndpoint
from stimloop.devices.errors import (
    ConfigError,
    EmergencyStopError,
    ErrorCode,
    SafetyError,
    StaleDataError,
    WatchdogError,
)
from stimloop.devices.estop import (
    EmergencyStopListener,
    emergency_stop,
    emergency_stop_engaged,
    reset_emergency_stop,
    send_emergency_stop,
)
from stimloop.devices.limits import WASSERMANN_1998_TABLE, SafetyLimits, TrainTable
from stimloop.devices.safety import SafeStimulator
from stimloop.devices.sources.brainflow import BrainFlowSource
from stimloop.devices.stimulators.simulated import SimulatedStimulator

#: These tests are about the limits, not punctuality (a loaded machine wakes a scheduled
#: fire a few ms late); test_a_late_pulse_is_refused_not_fired holds the 1 ms default.
LATE_OK = 0.25


@pytest.fixture
def sim(source_id):
    return SimulatedStimulator(source_id=source_id, arm_time_s=0.0)


@pytest.fixture
def gate(sim, source_id):
    g = SafeStimulator(sim, marker_source_id=source_id + "-safety")
    g.connect()
    g.set_intensity(40)
    yield g
    g.close()
    if emergency_stop_engaged():
        reset_emergency_stop("test teardown")


@pytest.fixture
def markers(gate):
    """An inlet on the gate's marker stream; call it to get the JSON markers so far."""
    info: list = []
    deadline = pylsl.local_clock() + 15.0  # resolution can be slow on a loaded machine
    while not info and pylsl.local_clock() < deadline:
        info = pylsl.resolve_byprop("source_id", gate.marker_source_id, timeout=3.0)
    assert len(info) == 1
    inlet = pylsl.StreamInlet(info[0])
    inlet.open_stream(timeout=10.0)
    got: list[tuple[dict, float]] = []

    def pull(wait_for: str | None = None, deadline_s: float = 3.0):
        end = pylsl.local_clock() + deadline_s
        while True:
            samples, stamps = inlet.pull_chunk(timeout=0.2)
            got.extend((json.loads(s[0]), t) for s, t in zip(samples, stamps, strict=True))
            if wait_for is None or any(m["event"] == wait_for for m, _ in got):
                return got
            if pylsl.local_clock() > end:
                return got

    yield pull
    inlet.close_stream()


def test_refusal_is_raised_logged_and_published(gate, sim, markers, caplog):
    with caplog.at_level(logging.ERROR, logger="stimloop.devices"):
        with pytest.raises(SafetyError) as exc:
            gate.set_intensity(100.5)
    assert exc.value.code == ErrorCode.BAD_ARGUMENT
    assert "100.5" in exc.value.message and "[0, 100]" in exc.value.message
    assert any("refused" in r.message for r in caplog.records)
    refused = [m for m, _ in markers("refused") if m["event"] == "refused"]
    assert refused and refused[0]["code"] == "bad_argument"


def test_intensity_limit_refused_not_clamped(sim, source_id):
    with SafeStimulator(sim, SafetyLimits(max_intensity_pct=50)) as g:
        g.set_intensity(np.int64(44))  # numpy numbers are numbers
        g.set_intensity(45)
        for bad in ("45", None, True):
            with pytest.raises(SafetyError) as exc:
                g.set_intensity(bad)
            assert exc.value.code == ErrorCode.BAD_ARGUMENT
        with pytest.raises(SafetyError) as exc:
            g.set_intensity(50.5)
        assert exc.value.code == ErrorCode.INTENSITY_LIMIT
        assert "50.5" in exc.value.message and "<= 50" in exc.value.message
        assert sim.status().intensity_pct == 45.0


def test_pulse_limit(sim):
    with SafeStimulator(sim, SafetyLimits(max_pulses=2)) as g:
        g.set_intensity(40)
        g.arm()
        t = g.fire()
        g.fire(at=t + 1.0, late_tolerance_s=LATE_OK)
        with pytest.raises(SafetyError) as exc:
            g.fire(at=t + 2.0, late_tolerance_s=LATE_OK)
        assert exc.value.code == ErrorCode.PULSE_LIMIT
        assert len(sim.pulses) == 2


def test_min_inter_pulse_interval(gate, sim):
    gate.arm()
    t = gate.fire()
    with pytest.raises(SafetyError) as exc:
        gate.fire(at=t + 0.5, late_tolerance_s=LATE_OK)
    assert exc.value.code == ErrorCode.IPI_LIMIT
    assert gate.fire(at=t + 1.0, late_tolerance_s=LATE_OK) >= t + 1.0
    assert len(sim.pulses) == 2


@pytest.mark.parametrize(
    ("f_hz", "rel", "expected"),
    [
        (1, 90, 1800.0), (1, 110, 1800.0), (1, 120, 360.0), (1, 130, 50.0), (5, 120, 10.0),
        (10, 120, 4.2),
        (10, 130, 2.9), (20, 110, 1.6), (20, 120, 1.0), (25, 130, 0.24),
        # between breakpoints: rounds to the more dangerous condition
        (15, 105, 1.6), (0.5, 80, 1800.0), (22, 121, 0.24),
        # outside the table: refused
        (26, 100, None), (10, 131, None),
    ],
)  # fmt: skip
def test_rtms_table_lookup(f_hz, rel, expected):
    assert WASSERMANN_1998_TABLE.max_duration(f_hz, rel) == expected


def test_rtms_needs_resting_motor_threshold(gate):
    with pytest.raises(SafetyError) as exc:
        gate.configure_train(TrainSpec(10, 10))
    assert exc.value.code == ErrorCode.RMT_REQUIRED


def test_rtms_train_duration_limit(gate, sim):
    gate.set_resting_motor_threshold(40 / 1.2)  # 40 % MSO is 120 % rMT
    with pytest.raises(SafetyError) as exc:
        gate.configure_train(TrainSpec(20, 21))  # 1.05 s at 20 Hz, 120 % rMT: table allows 1.0 s
    assert exc.value.code == ErrorCode.TRAIN_LIMIT and "allowed <= 1 s" in exc.value.message
    gate.configure_train(TrainSpec(20, 20))
    # raising the intensity would make the configured train unsafe: refused, unchanged
    with pytest.raises(SafetyError) as exc:
        gate.set_intensity(41)
    assert exc.value.code == ErrorCode.TRAIN_LIMIT
    assert sim.status().intensity_pct == 40.0
    with pytest.raises(SafetyError) as exc:
        gate.configure_train(TrainSpec(30, 3))
    assert exc.value.code == ErrorCode.TRAIN_LIMIT and "outside" in exc.value.message


def test_inter_train_interval_and_train_pulses(gate, sim):
    gate.set_resting_motor_threshold(40)
    gate.configure_train(TrainSpec(20, 5))
    gate.arm()
    gate.fire_train(site="C3", reason="test")
    sim.wait_train()
    assert [p.train_index for p in sim.pulses] == [0, 1, 2, 3, 4]
    with pytest.raises(SafetyError) as exc:
        gate.fire_train()
    assert exc.value.code == ErrorCode.INTER_TRAIN_LIMIT
    assert gate.pulses_delivered == 5


def test_device_limit_rapid_max_frequency():
    from stimloop.devices.emulators.magstim import MagstimEmulator
    from stimloop.devices.stimulators.magstim import MagstimRapid

    with MagstimEmulator("rapid", arm_time_s=0.01) as emu:
        with SafeStimulator(MagstimRapid(emu.port)) as g:
            g.set_intensity(100)
            g.set_resting_motor_threshold(80)  # 125 % rMT
            with pytest.raises(SafetyError) as exc:
                g.configure_train(TrainSpec(20, 10))  # table allows 0.55 s; Rapid² allows 15 Hz
            assert exc.value.code == ErrorCode.DEVICE_LIMIT
            assert "<= 15 Hz" in exc.value.message
            g.configure_train(TrainSpec(15, 8))
            assert emu.freq_tenths == 150 and emu.n_pulses == 8


def test_stale_data_interlock(gate, sim):
    gate.arm()
    gate.bind_stream(lambda: (0.060, True))
    with pytest.raises(StaleDataError) as exc:
        gate.fire()
    assert "60.0 ms old" in exc.value.message and "50.0 ms" in exc.value.message
    gate.bind_stream(lambda: (0.001, False))
    with pytest.raises(StaleDataError):
        gate.fire()

    def broken():
        raise RuntimeError("inlet gone")

    gate.bind_stream(broken)
    with pytest.raises(StaleDataError):
        gate.fire()
    with pytest.raises(SafetyError):
        gate.bind_stream(lambda: (0.0, True), max_age_s=0.5)  # looser than the limit
    assert sim.pulses == []


def test_stale_data_interlock_on_a_real_stream(gate, sim, source_id):
    src = BrainFlowSource(board_id=-1, source_id=source_id + "-eeg", poll_s=0.01)
    src.connect()
    src.start()
    try:
        gate.arm()
        gate.bind_stream(src.freshness)
        deadline = pylsl.local_clock() + 5.0
        while pylsl.local_clock() < deadline:
            if src.freshness()[1]:
                break
            time.sleep(0.01)
        fired = None
        while fired is None and pylsl.local_clock() < deadline:
            try:
                fired = gate.fire()
            except StaleDataError:  # a pull can be >50 ms apart on a loaded machine
                pass
        assert fired is not None
        src.stop()  # the stream goes away: flagged bad
        with pytest.raises(StaleDataError):
            gate.fire(at=fired + 1.0, late_tolerance_s=LATE_OK)
        assert len(sim.pulses) == 1
    finally:
        src.close()


def test_stale_during_scheduled_wait_stops_the_pulse(gate, sim):
    gate.arm()
    state = {"age": 0.0}
    gate.bind_stream(lambda: (state["age"], True))
    t = pylsl.local_clock() + 0.3
    threading.Timer(0.1, lambda: state.update(age=1.0)).start()
    with pytest.raises(StaleDataError):
        gate.fire(at=t, late_tolerance_s=LATE_OK)
    assert sim.pulses == []


def test_watchdog_disarms_within_two_periods(gate, sim, markers):
    period = 0.2
    gate.arm()
    gate.start_watchdog(period)
    end = pylsl.local_clock() + 3 * period
    while pylsl.local_clock() < end:  # a live loop keeps it armed past 2 periods
        gate.heartbeat()
        time.sleep(period / 4)
    assert sim.status().armed
    last_beat = pylsl.local_clock()
    gate.heartbeat()
    got = markers("watchdog_trip", deadline_s=3.0)
    trips = [t for m, t in got if m["event"] == "watchdog_trip"]
    assert trips, "watchdog did not trip"
    delay = trips[0] - last_beat
    # It must not trip early; the upper bound has one period of scheduling slack.
    assert 2 * period - 0.01 <= delay < 3 * period
    assert not sim.status().armed
    assert gate.first_disarm_after(last_beat)[1] == "watchdog"
    with pytest.raises(WatchdogError):
        gate.fire()
    with pytest.raises(WatchdogError):
        gate.arm()  # stale heartbeat: re-arming needs a fresh one
    gate.heartbeat()
    gate.arm()
    gate.fire()
    gate.stop_watchdog()
    assert len(sim.pulses) == 1


def test_emergency_stop_latches_until_reset(gate, sim, markers):
    gate.arm()
    emergency_stop("operator pressed stop")
    assert not sim.status().armed
    for _ in range(2):
        with pytest.raises(EmergencyStopError):
            gate.arm()
        with pytest.raises(EmergencyStopError):
            gate.fire()
    assert "emergency stop" in gate.status().error
    with pytest.raises(SafetyError):
        reset_emergency_stop("")  # a reason is required
    assert emergency_stop_engaged()
    reset_emergency_stop("checked the subject")
    gate.arm()
    gate.fire()
    events = [m["event"] for m, _ in markers("estop_reset")]
    assert "estop" in events and "estop_reset" in events
    assert len(sim.pulses) == 1


def test_emergency_stop_aborts_a_running_train(gate, sim):
    gate.set_resting_motor_threshold(40)
    gate.configure_train(TrainSpec(10, 40))  # 4 s at 10 Hz, 100 % rMT: table allows 5 s
    gate.arm()
    t0 = gate.fire_train()
    while pylsl.local_clock() < t0 + 0.25:
        pass
    emergency_stop("abort train")
    sim.wait_train()
    assert 1 <= len(sim.pulses) < 40
    # The gate remembers the disarm: the engine counts a train cut short by it (every
    # pulse delivered was due before the disarm ended).
    t_cut, why = gate.first_disarm_after(t0)
    assert why == "emergency stop" and gate.first_disarm_after(t_cut) is None
    assert len(sim.pulses) <= TrainSpec(10, 40).pulses_due(t_cut - t0) < 40
    assert all(p.t_lsl < t_cut for p in sim.pulses)
    reset_emergency_stop("test done")


def test_emergency_stop_from_another_process_is_acknowledged(gate, sim, runtime_dir):
    endpoint = SessionEndpoint("test", "test-prefix", runtime_dir).create()
    listener = EmergencyStopListener(endpoint.estop_socket, "test (test-prefix)").start()
    try:
        gate.arm()
        replies = send_emergency_stop("cli", root=runtime_dir)
        assert [(r.session, r.engaged) for r in replies] == [("test (test-prefix)", True)]
        assert emergency_stop_engaged()  # engaged before the answer was sent
        assert not sim.status().armed
    finally:
        listener.close()
        endpoint.remove()
        reset_emergency_stop("test done")
    assert not listener.alive
    assert send_emergency_stop("cli", root=runtime_dir) == []  # nobody left to answer


# -- configuration: only stricter, unless overridden with a recorded reason ----------------


@pytest.mark.parametrize(
    "cfg",
    [
        {"max_intensity_pct": 80, "max_pulses": 100, "min_ipi_s": 2.0},
        {"min_inter_train_s": 10.0, "max_stream_age_s": 0.02, "rtms_duration_scale": 0.5},
    ],
)
def test_stricter_config_is_accepted(cfg):
    limits = SafetyLimits.from_config(cfg)
    assert limits.looser_than(SafetyLimits()) == []


@pytest.mark.parametrize(
    "cfg",
    [
        {"max_intensity_pct": 101},
        {"max_pulses": 5000},
        {"min_ipi_s": 0.5},
        {"min_inter_train_s": 1.0},
        {"max_stream_age_s": 0.2},
        {"rtms_duration_scale": 1.5},
        {
            "rtms_table": {
                "frequencies_hz": [1, 50],
                "intensities_pct_rmt": [100],
                "max_duration_s": [[10], [1]],
            }
        },
    ],
    ids=["intensity", "pulses", "ipi", "iti", "age", "scale", "table"],
)
def test_looser_config_needs_an_override_reason(cfg, sim, source_id, caplog):
    with pytest.raises(ConfigError) as exc:
        SafetyLimits.from_config(cfg)
    assert "looser" in exc.value.message
    with caplog.at_level(logging.WARNING, logger="stimloop.devices"):
        limits = SafetyLimits.from_config(cfg, override_reason="IRB protocol 42 amendment")
    assert any("override" in r.message for r in caplog.records)
    with pytest.raises(ConfigError):
        SafeStimulator(sim, limits)
    g = SafeStimulator(sim, limits, override_reason="IRB protocol 42 amendment")
    g.close()


@pytest.mark.parametrize(
    "cfg",
    [
        {"max_intensity": 50},
        {"max_pulses": "many"},
        {"max_pulses": 10.5},
        {"min_ipi_s": float("nan")},
        {"max_intensity_pct": -5},
        {"max_intensity_pct": True},
        {"rtms_table": {"frequencies_hz": [1, 5]}},
        {"rtms_table": {"frequencies_hz": [5, 1], "intensities_pct_rmt": [100],
                        "max_duration_s": [[1], [1]]}},
        {"rtms_table": {"frequencies_hz": [1], "intensities_pct_rmt": [100],
                        "max_duration_s": [[1, 2]]}},
        {"rtms_table": [1, 2, 3]},
    ],
    ids=["unknown-key", "str", "float-pulses", "nan", "negative", "bool", "table-keys",
         "table-order", "table-shape", "table-type"],
)  # fmt: skip
def test_malformed_config_is_a_clear_error(cfg):
    with pytest.raises(ConfigError) as exc:
        SafetyLimits.from_config(cfg, override_reason="would not matter")
    assert exc.value.code == ErrorCode.BAD_CONFIG


def test_table_looser_points_compares_step_functions():
    stricter = TrainTable((10.0,), (100.0,), ((1.0,),))
    assert stricter.looser_points(WASSERMANN_1998_TABLE) == []
    wider = TrainTable((10.0, 30.0), (100.0,), ((1.0,), (0.1,)))
    assert (30.0, 100.0) in [p[:2] for p in wider.looser_points(WASSERMANN_1998_TABLE)]


def test_repeated_single_pulses_are_checked_as_a_train(sim):
    # 1 Hz at 130 % rMT: the table allows 50 s; scaled by 0.03 (stricter) -> 1.5 s.
    limits = SafetyLimits.from_config({"rtms_duration_scale": 0.03})
    with SafeStimulator(sim, limits) as g:
        g.set_intensity(52)
        g.set_resting_motor_threshold(40)  # 52 % MSO = 130 % rMT
        g.arm()
        t = g.fire()  # run of 1
        with pytest.raises(SafetyError) as exc:
            g.fire(at=t + 1.0, late_tolerance_s=LATE_OK)  # run of 2 pulses at 1 Hz = 2 s > 1.5 s
        assert exc.value.code == ErrorCode.TRAIN_LIMIT and "run of 2" in exc.value.message
        # after a pause of the minimum inter-train interval a new run starts
        g.fire(at=t + limits.min_inter_train_s, late_tolerance_s=LATE_OK)
        assert len(sim.pulses) == 2


def test_slow_single_pulses_are_not_an_rtms_run(sim):
    # Phase-locked single pulses every 1.5 s (< 1 Hz) are outside the table's scope.
    limits = SafetyLimits.from_config({"rtms_duration_scale": 0.001})
    with SafeStimulator(sim, limits) as g:
        g.set_intensity(48)
        g.set_resting_motor_threshold(40)
        g.arm()
        t = g.fire()
        for k in range(1, 3):
            g.fire(at=t + 1.5 * k, late_tolerance_s=LATE_OK)
        assert len(sim.pulses) == 3


def test_concurrent_fires_cannot_both_pass_the_interval_check(gate, sim):
    gate.arm()
    at = pylsl.local_clock() + 0.2
    results: list[object] = []

    def shoot():
        try:
            results.append(gate.fire(at=at, late_tolerance_s=LATE_OK))
        except SafetyError as exc:
            results.append(exc)

    threads = [threading.Thread(target=shoot) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(5.0)
    assert len(sim.pulses) == 1
    assert sum(isinstance(r, SafetyError) and r.code == ErrorCode.IPI_LIMIT for r in results) == 1


def test_train_needs_the_pause_after_a_single_pulse(gate, sim):
    gate.set_resting_motor_threshold(40)
    gate.configure_train(TrainSpec(10, 5))
    gate.arm()
    t = gate.fire()
    with pytest.raises(SafetyError) as exc:
        gate.fire_train(at=t + 1.0, late_tolerance_s=LATE_OK)
    assert exc.value.code == ErrorCode.INTER_TRAIN_LIMIT
    assert len(sim.pulses) == 1


@pytest.mark.parametrize("at", [float("nan"), float("inf"), -float("inf"), "soon", True])
def test_a_planned_time_that_is_not_a_finite_number_is_refused(gate, sim, at):
    """NaN passed every later comparison (interval limits, wait, late test) and fired at
    once; inf would block the caller for ever. Both are refused before any wait, for
    single pulses and trains, and nothing fires."""
    gate.set_resting_motor_threshold(50)
    gate.configure_train(TrainSpec(frequency_hz=1.0, n_pulses=2))
    gate.arm()
    for fire in (gate.fire, gate.fire_train):
        t0 = time.monotonic()
        with pytest.raises(SafetyError) as exc:
            fire(at=at)
        assert time.monotonic() - t0 < 1.0
        assert exc.value.code == ErrorCode.BAD_ARGUMENT
        assert "finite LSL time" in exc.value.message and repr(at) in exc.value.message
    assert not sim.pulses
    gate.fire(at=pylsl.local_clock() + 0.05, late_tolerance_s=LATE_OK)  # a real time: fired
    assert len(sim.pulses) == 1


def test_a_late_pulse_is_refused_not_fired(gate, sim):
    """A pulse whose time has passed by more than the tolerance is refused as late and
    recorded; it is never fired late (1 ms default: 3.6° of phase at 10 Hz)."""
    gate.arm()
    with pytest.raises(SafetyError) as exc:
        gate.fire(at=pylsl.local_clock() - 0.026)  # a 26 ms stall, as the loop bench saw
    assert exc.value.code == ErrorCode.LATE and "after its planned time" in exc.value.message
    assert not sim.pulses
    gate.fire(at=pylsl.local_clock() + 0.05, late_tolerance_s=LATE_OK)  # in time: fired
    assert len(sim.pulses) == 1
