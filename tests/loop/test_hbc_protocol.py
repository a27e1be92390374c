"""Heart-brain-coupled localisation: the protocol's course, its safety rules, and the
whole session on the live virtual subject."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from stimloop.devices.base import TrainSpec
from stimloop.devices.errors import ErrorCode, SafetyError
from stimloop.devices.registry import StimulatorSpec, open_stimulator
from stimloop.devices.sim.hbc_runner import HBCSubjectSession
from stimloop.devices.sim.hbc_subject import SubjectConfig, simulate
from stimloop.loop.config import SessionConfigError, parse_session
from stimloop.loop.demo import hbc_demo_config
from stimloop.loop.hbc_protocol import HBCProtocol
from stimloop.loop.heart_stage import HeartStage
from stimloop.loop.protocol import Hold, Prompt, PulseOutcome, PulseRequest, Stop
from stimloop.loop.report import read_session, session_report
from stimloop.loop.session import Session
from stimloop.stream.chunk import ChunkAssembler
from stimloop.stream.inlet import MarkerInlet

T0 = 5000.0  # LSL time of the offline ECG's first sample, s


def _config(**protocol) -> object:
    data = {
        "sources": {"ecg": {"source_id": "x", "rate_hz": 500.0}},
        "protocol": {
            "kind": "hbc",
            "sites": ["F3"],
            "intensities": [90.0, 100.0],
            "rmt_pct_mso": 50.0,
            **protocol,
        },
        "stimulator": {"driver": "simulated"},
    }
    return parse_session(data, "t.toml")


def _drive(
    source_id, ecg: np.ndarray, fs: float, protocol_kw=None, confirm_at=2.0, drop=None, chunk=5
):
    """Feed an ECG through a real heart stage and the protocol, offline; play the operator
    (confirm after ``confirm_at`` s) and the gate (every request fires as planned)."""
    cfg = _config(**(protocol_kw or {}))
    stage = HeartStage()
    stage.start(fs, ["ECG"], source_id)
    p = HBCProtocol(cfg.protocol, stage, seed=0)
    p.open_outlets(source_id)
    grid = ChunkAssembler(fs, 10.0)
    stamps = T0 + np.arange(ecg.size) / fs
    keep = np.ones(ecg.size, bool) if drop is None else ~drop
    idx = np.flatnonzero(keep)
    out = []
    try:
        for k in range(0, idx.size, chunk):
            sel = idx[k : k + chunk]
            for c in grid.push(ecg[sel, None], stamps[sel]):
                stage.update(c)
                d = p.update(c)
                now = float(c.timestamps[-1])
                if p.waiting and now - T0 > confirm_at:
                    p.confirm("test")
                if d is not None:
                    out.append((now, d))
                if isinstance(d, PulseRequest):
                    p.outcome(PulseOutcome(d, True, d.t_fire))
            if p.done:
                break
    finally:
        p.close()
        stage.close()
    return p, out


def test_the_course_of_one_site_prompt_rest_then_increasing_trains(source_id):
    rec = simulate(SubjectConfig(seed=3, noise_scale=0.5), np.zeros(0), np.zeros(0), [], 75.0)
    p, out = _drive(source_id, rec.ecg_mv, rec.fs)
    assert isinstance(out[0][1], Prompt) and out[0][1].info["site"] == "F3"
    reqs = [(t, d) for t, d in out if isinstance(d, PulseRequest)]
    assert not [t for t, _ in reqs if t < T0 + 2.0]  # nothing before the operator confirmed
    # rest cycle, then one train per intensity, 16 s apart, as trains through the gate
    assert [d.info["intensity"] for _, d in reqs] == [90.0, 100.0]
    assert all(d.train == TrainSpec(10.0, 50) for _, d in reqs)
    assert [d.intensity_pct for _, d in reqs] == [45.0, 50.0]  # % rMT of 50 % MSO
    assert reqs[1][1].t_fire - reqs[0][1].t_fire == pytest.approx(16.0)
    assert reqs[0][1].t_fire - p.cycles[0].onset_s == pytest.approx(16.0)  # after the rest
    assert p.done and len(p.cycles) == 3


def test_cardiac_stop_on_a_fainting_subject_ends_the_protocol(source_id):
    cfg = SubjectConfig(seed=4)
    from stimloop.devices.sim.hbc_subject import HBCSubject

    subj = HBCSubject(cfg)
    subj.faint(30.0)  # vasovagal episode 30 s in: HR below 45 bpm, then asystole
    ecg, _ = subj.generate(round(70 * subj.fs))
    p, out = _drive(source_id, ecg, subj.fs, {"intensities": [90.0, 100.0, 110.0]})
    stops = [(t, d) for t, d in out if isinstance(d, Stop)]
    assert len(stops) == 1 and stops[0][1].reason == "cardiac_stop"
    assert stops[0][1].info["rule"] in ("floor", "drop", "asystole")
    assert stops[0][0] > T0 + 30.0
    assert not [d for t, d in out if isinstance(d, PulseRequest) and t > stops[0][0]]
    assert p.done


def test_ecg_loss_pauses_the_site_and_it_starts_over_when_the_ecg_is_back(source_id):
    rec = simulate(SubjectConfig(seed=5, noise_scale=0.5), np.zeros(0), np.zeros(0), [], 110.0)
    drop = np.zeros(rec.ecg_mv.size, bool)
    drop[round(30 * rec.fs) : round(38 * rec.fs)] = True  # 8 s of ECG never arrive
    p, out = _drive(source_id, rec.ecg_mv, rec.fs, drop=drop)
    holds = [(t, d) for t, d in out if isinstance(d, Hold) and d.reason == "ecg_lost"]
    assert len(holds) == 1
    starts = [c.onset_s for c in p.cycles if c.index == 0]
    assert len(starts) == 2 and starts[1] > T0 + 38.0  # the site's course began again
    assert not [t for t, d in out if isinstance(d, PulseRequest) and T0 + 30 < t < starts[1]]


def test_a_missing_motor_threshold_refuses_to_start():
    with pytest.raises(SessionConfigError, match="rmt_pct_mso is required"):
        _config(rmt_pct_mso=None)


def test_a_train_beyond_the_table_is_refused_unless_overridden_and_then_recorded(source_id):
    from stimloop.loop.hbc_protocol import HBCProtocol as P

    # 5 s at 10 Hz and 120 % rMT: the table allows 4.2 s.
    for reason in (None, "NCG-TMS dose titration per Dijkstra et al. 2023 (IRB 12-345)"):
        cfg = _config(intensities=[120.0], train_override_reason=reason)
        p = P(cfg.protocol, HeartStage(), 0)
        spec = p.adjust_stimulator(cfg.stimulator_spec)
        assert spec.limits.max_stream_age_s == 0.5  # recorded as an override too
        gate = open_stimulator(
            StimulatorSpec(
                spec.driver,
                {"source_id": f"{source_id}-{bool(reason)}"},
                spec.limits,
                spec.override_reason,
            ),
            marker_source_id=f"{source_id}-safety-{bool(reason)}",
        )
        markers = MarkerInlet(f"{source_id}-safety-{bool(reason)}").connect()
        try:
            gate.connect()
            p.prepare(gate)
            gate.set_intensity(60.0)
            if reason is None:
                with pytest.raises(SafetyError) as exc:
                    gate.configure_train(p.train)
                assert exc.value.code == ErrorCode.TRAIN_LIMIT
            else:
                gate.configure_train(p.train)
                gate.arm()
                gate.fire_train(late_tolerance_s=0.25)
            gate._publish({"event": "test_done"})
            events: list[dict] = []
            for _ in range(100):
                events += [json.loads(t) for t, _ in markers.pull()]
                if any(e.get("event") == "test_done" for e in events):
                    break
                threading.Event().wait(0.05)
        finally:
            markers.close()
            gate.close()
        # Recorded where a recorder joining later still finds it: with every arm.
        armed = [e for e in events if e.get("event") == "armed"]
        if reason is None:
            assert not armed and any(e.get("code") == "train_limit" for e in events), events
        else:
            assert armed and reason in armed[0]["override"]["reason"], events


@pytest.mark.slow
def test_a_localisation_on_the_live_virtual_subject(source_id, tmp_path, runtime_dir):
    """Trains through the gate to the subject's heart, its ECG back over LSL, and the
    recording scored offline the same as live (within 1 %)."""
    from stimloop.loop.client import send_command

    prefix = f"{source_id}-s"
    subj = HBCSubjectSession(
        SubjectConfig(seed=2, sites=("F3",)), f"{prefix}-pulses", prefix=f"{source_id}-subj"
    )
    cfg = hbc_demo_config(
        subj.source_id("ecg"), subj.truth.rmt_pct, sites=("F3",), intensities=(100.0, 110.0)
    )
    cfg = cfg.model_copy(
        update={"recording": cfg.recording.model_copy(update={"path": str(tmp_path / "hbc.xdf")})}
    )

    def confirm(session):
        # asking, not waiting: waiting holds from the start, a confirm is taken only once
        # the prompt naming the site went out (a confirm sent between the two was refused
        # and failed this test once).
        if session.protocol.asking:
            send_command(prefix, "confirm", text="coil on F3", root=runtime_dir)

    with (
        subj,
        Session(
            cfg,
            prefix,
            runtime_root=runtime_dir,
            truth_source_ids={"ecg": subj.source_id("ecg-truth")},
        ) as session,
    ):
        result = session.run(90.0, on_tick=confirm)
    assert len(result.pulses) == 2 and not result.refusals
    rec = read_session(result.recordings[0])
    pulses = rec.streams[f"{prefix}-pulses"]
    assert len(pulses.time_stamps) == 100  # two trains of 50 pulses reached the subject
    h = session_report(rec)["hbc"]
    assert h["live_cycles"] == 3 and h["live_vs_offline_max_rel"] < 0.01
    assert h["truth_best_site"] == subj.truth.best_site
    assert [s["site"] for s in h["localisation"]["sites"]] == ["F3"]


@pytest.mark.slow
def test_the_cardiac_stop_rule_on_the_live_fainting_subject(source_id, tmp_path, runtime_dir):
    from stimloop.loop.client import send_command

    prefix = f"{source_id}-s"
    subj = HBCSubjectSession(
        SubjectConfig(seed=6, sites=("F3",), faint_after_pulses=30),
        f"{prefix}-pulses",
        prefix=f"{source_id}-subj",
    )
    cfg = hbc_demo_config(
        subj.source_id("ecg"), subj.truth.rmt_pct, sites=("F3",), intensities=(100.0, 105.0, 110.0)
    )
    cfg = cfg.model_copy(
        update={"recording": cfg.recording.model_copy(update={"path": str(tmp_path / "faint.xdf")})}
    )

    def confirm(session):
        # asking, not waiting: waiting holds from the start, a confirm is taken only once
        # the prompt naming the site went out (a confirm sent between the two was refused
        # and failed this test once).
        if session.protocol.asking:
            send_command(prefix, "confirm", text="coil on F3", root=runtime_dir)

    with subj, Session(cfg, prefix, runtime_root=runtime_dir) as session:
        result = session.run(120.0, on_tick=confirm)
    rec = read_session(result.recordings[0])
    stop = next(e for e in rec.decisions if e.get("event") == "protocol_stop")
    assert stop["reason"] == "cardiac_stop"
    alert = next(e for e in rec.decisions if e.get("event") == "alert")
    t_alert = float(rec.streams[f"{prefix}-decisions"].time_stamps[rec.decisions.index(alert)])
    pulses = np.asarray(rec.streams[f"{prefix}-pulses"].time_stamps)
    assert pulses.size and not (pulses > t_alert).any()  # nothing fired after the stop
    assert result.pulses and len(result.pulses) < 3
