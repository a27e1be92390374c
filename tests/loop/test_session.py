"""A whole session on simulated streams: control channel, status, e-stop, stream loss."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from stimloop.devices.estop import reset_emergency_stop
from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.loop.client import ControlError, send_command
from stimloop.loop.demo import demo_config
from stimloop.loop.session import Session
from stimloop.stream.inlet import MarkerInlet


def _wait(predicate, timeout: float = 5.0) -> bool:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _fast_config(sim: SimConfig):
    """Demo config with pulses every ~0.3 s (HAL override recorded) and no gates."""
    cfg = demo_config(sim, min_ipi_s=0.25, jitter_s=0.0, min_confidence=0.0)
    stim = dict(cfg.stimulator)
    stim["safety"] = {**stim["safety"], "min_ipi_s": 0.2}
    stim["override_reason"] = "test: fast pulses against the simulated stimulator"
    return cfg.model_copy(update={"stimulator": stim})


@pytest.mark.slow
def test_control_status_and_emergency_stop(source_id, runtime_dir):
    sim = SimConfig(prefix=source_id, roles=("eeg", "ecg"), eeg_channels=32)
    prefix = f"{source_id}-s"
    with (
        SimulatorProcess(sim),
        Session(demo_config(sim), prefix, runtime_root=runtime_dir) as session,
    ):
        status_in = MarkerInlet(f"{source_id}-s-status").connect()
        decisions = MarkerInlet(f"{source_id}-s-decisions").connect()
        result_box = {}

        def run():
            result_box["r"] = session.run(8.0)

        import threading

        runner = threading.Thread(target=run)
        runner.start()
        try:
            assert _wait(lambda: bool(status_in.pull()) or False, 3.0)
            time.sleep(0.3)
            snap = json.loads(status_in.pull()[-1][0])
            assert snap["stimulator"]["armed"] and snap["protocol"]["running"]
            assert snap["streams"]["eeg"]["rate_hz"] == 1000.0
            assert snap["endpoint"].startswith(str(runtime_dir))
            # Each command is acknowledged once done: no waiting needed.
            send_command(prefix, "pause", root=runtime_dir)
            assert not session.engine.protocol_enabled.is_set()
            send_command(prefix, "resume", root=runtime_dir)
            send_command(prefix, "marker", text="exposure 1 start", root=runtime_dir)
            send_command(prefix, "disarm", root=runtime_dir)
            assert not session.stimulator.status().armed
            send_command(prefix, "arm", root=runtime_dir)
            assert _wait(lambda: session.stimulator.status().armed)
            # The command-line e-stop reaches the session and says which one engaged.
            t0 = time.monotonic()
            out = subprocess.run(
                [sys.executable, "-m", "stimloop.loop.cli", "estop", "--reason", "test"],
                capture_output=True, text=True, timeout=30,
                env={**os.environ, "STIMLOOP_RUNTIME_DIR": str(runtime_dir)},
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            assert f"ENGAGED: {session.cfg.name} ({prefix})" in out.stdout
            assert not session.stimulator.status().armed  # acknowledged = already disarmed
            assert time.monotonic() - t0 < 30
            with pytest.raises(ControlError, match="emergency stop is engaged"):
                send_command(prefix, "arm", root=runtime_dir)  # refused while latched
            assert not session.stimulator.status().armed
        finally:
            runner.join()
            reset_emergency_stop("test over")
        events = [json.loads(t) for t, _ in decisions.pull()]
    kinds = [e["event"] for e in events]
    assert {"command", "user_marker", "command_refused"} <= set(kinds)
    assert any(e.get("text") == "exposure 1 start" for e in events)


@pytest.mark.slow
def test_killing_the_eeg_stream_stops_stimulation_within_50_ms(source_id):
    eeg_sim = SimConfig(prefix=f"{source_id}-a", roles=("eeg",), eeg_channels=32)
    body_sim = SimConfig(prefix=f"{source_id}-b", roles=("ecg", "eda"))
    cfg = _fast_config(SimConfig(prefix=eeg_sim.prefix, eeg_channels=32))
    sources = dict(cfg.sources)
    for role in ("ecg", "eda", "events"):
        sources[role] = sources[role].model_copy(update={"source_id": body_sim.source_id(role)})
    cfg = cfg.model_copy(update={"sources": sources})
    eeg_proc = SimulatorProcess(eeg_sim)
    try:
        with SimulatorProcess(body_sim), Session(cfg, f"{source_id}-s") as session:
            import threading

            box = {}
            runner = threading.Thread(target=lambda: box.update(r=session.run(9.0)))
            runner.start()
            assert _wait(lambda: len(session.engine.pulses) >= 5, 8.0)
            eeg_proc.kill()
            t_kill = time.monotonic()
            ecg_at_kill = session.engine.streams["ecg"].counts.samples
            time.sleep(1.5)
            ecg_later = session.engine.streams["ecg"].counts.samples
            runner.join()
            result = box["r"]
            last_eeg_t = session.engine.streams["eeg"].counts.last_t
    finally:
        eeg_proc.stop()
    assert time.monotonic() - t_kill > 1.0
    last_pulse = max(p["t_trigger"] for p in result.pulses)
    # No pulse once the newest EEG sample is older than the 50 ms interlock.
    assert last_pulse <= last_eeg_t + 0.050
    # The session went on with the other streams.
    assert ecg_later > ecg_at_kill + 500
    assert result.streams["eda"]["samples"] > 0


@pytest.mark.slow
def test_session_recording_holds_every_stream_refusal_and_the_config(source_id, tmp_path):
    import pyxdf

    sim = SimConfig(prefix=source_id, eeg_channels=32)
    # The protocol asks every ~0.3 s but the HAL allows one pulse a second: refusals.
    cfg = demo_config(sim, min_ipi_s=0.3, jitter_s=0.0, min_confidence=0.0)
    cfg = cfg.model_copy(
        update={"recording": cfg.recording.model_copy(update={"path": str(tmp_path / "s.xdf")})}
    )
    with SimulatorProcess(sim), Session(cfg, f"{source_id}-s") as session:
        result = session.run(6.0)
    assert result.refusals and result.pulses
    streams, _ = pyxdf.load_xdf(
        result.recording, synchronize_clocks=False, dejitter_timestamps=False
    )
    by_id = {s["info"]["source_id"][0]: s for s in streams}
    own = ("decisions", "status", "phase", "heart-hr", "safety", "pulses")
    inputs = (sim.source_id("eeg"), sim.source_id("ecg"), sim.source_id("eda"))
    for sid in (*inputs, *(f"{source_id}-s-{name}" for name in own)):
        assert sid in by_id, f"{sid} not recorded; got {sorted(by_id)}"
        assert len(by_id[sid]["time_stamps"]) > 0, sid
    decisions = [json.loads(x[0]) for x in by_id[f"{source_id}-s-decisions"]["time_series"]]
    refused = [d for d in decisions if d["event"] == "refused"]
    fired = [d for d in decisions if d["event"] == "fired"]
    assert len(fired) == len(result.pulses)
    planned = sorted(r["t_planned"] for r in result.refusals)
    assert sorted(d["t_planned"] for d in refused) == pytest.approx(planned)
    configs = [d for d in decisions if d["event"] == "config"]
    assert configs and configs[0]["config"]["protocol"]["min_ipi_s"] == 0.3
    desc = by_id[f"{source_id}-s-decisions"]["info"]["desc"][0]
    assert json.loads(desc["session_config"][0])["name"] == cfg.name
    safety = [json.loads(x[0]) for x in by_id[f"{source_id}-s-safety"]["time_series"]]
    assert sum(1 for m in safety if m.get("event") == "refused") >= len(result.refusals)
    # The offline report, from the file alone, agrees with what the session did.
    out = subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", "analyze", result.recording, "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["pulses"]["delivered"] == len(result.pulses)
    assert report["pulses"]["refused"] == len(result.refusals)
    assert report["pulses"]["refused_by_reason"].get("ipi_limit", 0) >= 1
    assert report["streams"][sim.source_id("eeg")]["effective_rate_hz"] == pytest.approx(
        1000.0, rel=1e-3
    )


@pytest.mark.slow
def test_random_phase_control_is_scored_against_each_pulse_own_target(source_id, tmp_path):
    """The control condition draws a target per pulse: each pulse's error is taken
    against its own recorded target, never against the configured phase."""
    from stimloop.dsp.circular import phase_error_stats
    from stimloop.loop.report import read_session, session_report

    sim = SimConfig(prefix=source_id, eeg_channels=32)
    cfg = _fast_config(sim).model_copy(update={"protocol": _fast_config(sim).protocol.model_copy(
        update={"control": "random_phase"})})  # fmt: skip
    cfg = cfg.model_copy(update={"recording": cfg.recording.model_copy(
        update={"path": str(tmp_path / "r.xdf")})})  # fmt: skip
    with SimulatorProcess(sim), Session(cfg, f"{source_id}-s", truth_source_ids={
            "eeg": sim.source_id("eeg-truth")}) as session:  # fmt: skip
        result = session.run(8.0)
    rec = read_session(result.recordings[0])
    assert rec.pulse_t.size >= 8
    assert np.ptp(rec.pulse_target) > 1.0  # the targets differ from pulse to pulse
    scored = session_report(rec)["truth"]["pulses"]["true_phase_error"]
    assert scored == phase_error_stats(rec.pulse_phase_true, rec.pulse_target)
    against_config = phase_error_stats(rec.pulse_phase_true, np.pi)
    # Pulses land near their own targets; against one fixed phase they look scattered.
    assert scored["sd_deg"] < 50.0 < against_config["sd_deg"], (scored, against_config)


def test_a_session_whose_recorder_fails_to_start_leaves_no_thread(source_id, tmp_path, monkeypatch):
    import threading

    from stimloop.loop.errors import SessionError

    sim = SimConfig(prefix=source_id, roles=("eeg",), eeg_channels=16)
    cfg = demo_config(sim)
    cfg = cfg.model_copy(update={"recording": cfg.recording.model_copy(
        update={"path": str(tmp_path / "here.xdf")})})  # fmt: skip
    with SimulatorProcess(sim):
        # The path passes the session's checks (new, writable); the recorder process is
        # then one that exits at once (a broken install, a killed child), started after the
        # simulator so that only the session's own child is affected.
        monkeypatch.setattr(sys, "executable", shutil.which("false"))
        before = {t.ident for t in threading.enumerate()}
        with pytest.raises(SessionError, match="recorder did not start"):
            Session(cfg, f"{source_id}-s").open()
        assert _wait(lambda: {t.ident for t in threading.enumerate()} <= before, 5.0), [
            t.name for t in threading.enumerate() if t.ident not in before
        ]
        assert not (tmp_path / "here.xdf").exists()
