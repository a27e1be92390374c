"""Finding 3 of issue #15: pulses were planned in the sender's time, trusted blindly.

Reproduced through real LSL outlets (a hostile EEG source in its own process) into a
real :class:`~stimloop.loop.session.Session` with the simulated stimulator behind the
HAL gate, and at the gate and the pulse scheduler directly.
"""

from __future__ import annotations

import json
import time

import pylsl
import pytest
from faultkit import HostileEEG, RunningSession, fast_config, wait_for

from stimloop.devices.errors import ErrorCode, SafetyError
from stimloop.devices.safety import SafeStimulator
from stimloop.devices.stimulators.simulated import SimulatedStimulator
from stimloop.loop.protocol import PulseRequest
from stimloop.loop.scheduler import PulseScheduler
from stimloop.loop.session import Session
from stimloop.stream.errors import StreamClockError
from stimloop.stream.inlet import MarkerInlet

FS = 250.0


def _sim(source_id: str):
    from stimloop.devices.sim.runner import SimConfig

    return SimConfig(prefix=source_id, roles=("eeg",), eeg_channels=16, eeg_fs=FS)


def _decisions(inlet: MarkerInlet, into: list) -> list[tuple[dict, float]]:
    """Pull the decision stream: (marker, LSL time it was published)."""
    into += [(json.loads(text), t) for text, t in inlet.pull()]
    return into


def _fired(events) -> list[dict]:
    return [e for e, _ in events if e["event"] == "fired"]


def _check_fired_on_arrived_data(fired: list[dict], max_lead_s: float) -> None:
    """Every pulse left after the sample it was planned on (no negative sample age),
    and within the protocol's lead of the moment it was decided: it was planned on data
    as they arrived, never on stamps from the future."""
    for p in fired:
        assert p["t_trigger"] >= p["t_last_sample"], p
        assert p["t_trigger"] - p["t_decided"] <= max_lead_s + 0.05, p


@pytest.mark.slow
def test_eeg_stamped_20_s_ahead_fires_nothing_then_or_later(source_id, runtime_dir):
    """Finding 3: 4 s of EEG stamped 20 s ahead produced a pulse 18 s after the data were
    normal again, at +166°. Now the stream is flagged untrusted while ahead, the pulses
    planned on those stamps are refused at once (not waited for), none fires on them
    later, and once the data are normal the protocol plans on them again."""
    sim = _sim(source_id)
    cfg = fast_config(sim)
    with HostileEEG(sim.source_id("eeg"), FS) as src, RunningSession(
        Session(cfg, f"{source_id}-s", runtime_root=runtime_dir)
    ) as run:  # fmt: skip
        gate = run.session.stimulator
        decisions = MarkerInlet(f"{source_id}-s-decisions").connect()
        events: list = []
        assert wait_for(lambda: gate.pulses_delivered >= 3, 20.0)
        t_on = src.mode("ahead", 20.0)
        time.sleep(4.0)
        t_off = src.mode("normal")
        assert wait_for(lambda: len([p for p in _fired(_decisions(decisions, events))
                                     if p["t_trigger"] > t_off]) >= 2, 15.0), (
            "no pulse after the data were normal again"
        )  # fmt: skip
        run.stop()
    fired = _fired(events)
    assert not [p for p in fired if t_on + 0.05 < p["t_trigger"] < t_off + 0.05]
    _check_fired_on_arrived_data(fired, cfg.protocol.max_lead_s)
    untrusted = [e for e, _ in events if e["event"] == "untrusted_timing"]
    assert untrusted and "ahead of the local clock" in untrusted[0]["reason"]
    # What the protocol planned on the future stamps was refused when it was handed
    # over, with the reason named, and is not waiting anywhere.
    ahead = [(e, t) for e, t in events if e["event"] == "refused" and e["t_planned"] > t + 1.0]
    assert ahead, "the protocol planned nothing on the future stamps: nothing was tested"
    assert all("[lead]" in e["error"] or "untrusted" in e["error"] for e, _ in ahead)


@pytest.mark.slow
def test_a_stream_at_twice_its_declared_rate_is_refused_with_a_named_reason(
    source_id, runtime_dir
):  # fmt: skip
    """Finding 3: a stream pushing twice its declared rate gave pulses with sample age
    -0.5 to -2.2 s and no warning. Stamped by sample index at the declared rate (the
    reproduction), its stamps run ahead; stamped in real time, it carries twice the
    declared samples per second. Either way it is flagged with a named reason, no pulse
    leaves with a negative sample age, and none while it is flagged (delivered in 30 ms
    bursts, it was never flagged: the staleness between bursts restarted the check)."""
    sim = _sim(source_id)
    cfg = fast_config(sim)
    with HostileEEG(sim.source_id("eeg"), FS) as src, RunningSession(
        Session(cfg, f"{source_id}-s", runtime_root=runtime_dir)
    ) as run:  # fmt: skip
        gate = run.session.stimulator
        decisions = MarkerInlet(f"{source_id}-s-decisions").connect()
        events: list = []
        assert wait_for(lambda: gate.pulses_delivered >= 3, 20.0)
        windows = {}
        # The real-time-stamped one arrives in 30 ms bursts, longer than the inlet's
        # staleness threshold (20 ms): a jittery sender must not escape the rate check.
        for mode, seconds, period_s in (("double_index", 2.0, 0.01), ("normal", 2.0, 0.01),
                                        ("double_dense", 5.0, 0.03)):  # fmt: skip
            windows[mode] = (src.mode(mode, period_s=period_s), seconds)
            time.sleep(seconds)
        src.mode("normal")
        time.sleep(0.5)
        _decisions(decisions, events)
        run.stop()
    fired = _fired(events)
    _check_fired_on_arrived_data(fired, cfg.protocol.max_lead_s)
    for mode, why in (("double_index", "ahead of the local clock"),
                      ("double_dense", f"the stream declares {FS:g} Hz")):  # fmt: skip
        t0, seconds = windows[mode]
        t_end = t0 + seconds
        # Flagged with the reason named: on the decision stream, and on every pulse the
        # gate refused because of it.
        named = [t for e, t in events if t0 <= t <= t_end and why in
                 e.get("reason" if e["event"] == "untrusted_timing" else "error", "")]  # fmt: skip
        assert named, (mode, [(e["event"], round(t, 2)) for e, t in events if t >= t0])
        assert not [p for p in fired if min(named) < p["t_trigger"] < t_end], mode
    refused = [e["error"] for e, _ in events if e["event"] == "refused"]
    assert any("EEG timestamps untrusted" in r for r in refused), refused


@pytest.mark.parametrize("mode, offset_s, expected", [
    ("epoch", 0.0, "not wall-clock or epoch time"),
    ("far", 3600.0, "+3.6e+03 s from this machine's LSL clock"),
])  # fmt: skip
def test_a_source_on_another_clock_is_refused_once_at_open(
    source_id, runtime_dir, mode, offset_s, expected
):  # fmt: skip
    """Finding 3: an epoch-stamped source left the protocol stuck for good, with one
    message. Now the session refuses it at open with one clear StreamClockError that
    names the stream and what was expected; nothing is armed."""
    sim = _sim(source_id)
    session = Session(fast_config(sim), f"{source_id}-s", runtime_root=runtime_dir)
    with HostileEEG(sim.source_id("eeg"), FS, mode=mode, offset_s=offset_s):
        with pytest.raises(StreamClockError) as err:
            session.open()
    assert sim.source_id("eeg") in str(err.value) and expected in str(err.value)
    assert session.stimulator is None  # refused before the stimulator was opened


def _gate(source_id: str) -> SafeStimulator:
    gate = SafeStimulator(SimulatedStimulator(), marker_source_id=f"{source_id}-safety")
    gate.connect()
    gate.set_intensity(30.0)
    gate.arm()
    return gate


def test_the_scheduler_refuses_a_fire_time_beyond_the_protocol_lead(source_id):
    """Finding 3: the scheduler waited for any fire time however far away (a bad stamp
    could park a pulse for hours). Now a request further ahead than ``max_lead_s`` is
    refused at once, with the lead named, and nothing fires."""
    gate = _gate(source_id)
    outcomes = []
    scheduler = PulseScheduler(gate, outcomes.append, max_lead_s=0.03).start()
    try:
        for ahead_s in (3600.0, 0.5):
            scheduler.submit(PulseRequest(pylsl.local_clock() + ahead_s, {}))
        assert wait_for(lambda: len(outcomes) == 2, 10.0), "the scheduler is waiting"
    finally:
        scheduler.close()
        gate.close()
    assert [o.fired for o in outcomes] == [False, False]
    assert all("[lead]" in o.error and "allows <= 0.03 s" in o.error for o in outcomes)
    assert gate.pulses_delivered == 0


def test_a_pulse_that_would_leave_late_is_refused_as_late(source_id, monkeypatch):
    """Finding 3: ``SafeStimulator.fire`` waited with ``wait_until`` and fired whenever
    it woke; the loop benchmark saw a 26 ms stall, 94° of phase at 10 Hz. A pulse asked
    for 26 ms in the past, and one whose wait is stalled by 26 ms, are refused as
    ``late`` and recorded on the gate's marker stream; one on time fires."""
    import stimloop.devices.safety as safety

    gate = _gate(source_id)
    markers = MarkerInlet(f"{source_id}-safety").connect()
    try:
        with pytest.raises(SafetyError) as err:
            gate.fire(pylsl.local_clock() - 0.026)
        assert err.value.code is ErrorCode.LATE and "26." in str(err.value)
        real_wait = safety.wait_until

        def stalled_wait(t: float) -> float:  # the thread wakes 26 ms too late
            real_wait(t)
            time.sleep(0.026)
            return pylsl.local_clock()

        monkeypatch.setattr(safety, "wait_until", stalled_wait)
        with pytest.raises(SafetyError, match=r"\[late\]"):
            gate.fire(pylsl.local_clock() + 0.01)
        monkeypatch.setattr(safety, "wait_until", real_wait)
        t_plan = pylsl.local_clock() + 0.02
        t = gate.fire(t_plan, late_tolerance_s=0.005)  # a loaded machine needs some slack
        assert 0 <= t - t_plan <= 0.005
        assert gate.pulses_delivered == 1
        time.sleep(0.2)
        recorded = [json.loads(text) for text, _ in markers.pull()]
    finally:
        gate.close()
    late = [m for m in recorded if m.get("event") == "refused" and m["code"] == "late"]
    assert len(late) == 2, recorded


def test_a_stall_after_the_last_check_is_still_caught(source_id):
    """Finding 3: the lateness check must use the clock right before the trigger. A
    stall inside the last interlock check (a slow freshness read, a GIL hand-off) made
    the pulse leave late although the wait itself was on time."""
    gate = _gate(source_id)
    calls = []

    def slow_freshness():
        calls.append(pylsl.local_clock())
        if len(calls) == 2:  # the check right before the trigger
            time.sleep(0.026)
        return 0.0, True, ""

    gate.bind_stream(slow_freshness)
    try:
        with pytest.raises(SafetyError) as err:
            gate.fire(pylsl.local_clock() + 0.01)
    finally:
        gate.close()
    assert err.value.code is ErrorCode.LATE
    assert gate.pulses_delivered == 0
