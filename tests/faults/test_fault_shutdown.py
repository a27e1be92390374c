"""Finding 6 of issue #15: shutdown was fragile.

SIGTERM killed the old session with no disarm marker, no ``session_end`` and no XDF
footers, leaving the recorder orphaned and still writing; Ctrl-C reached the recorder at
the same moment as the session, so the last markers were lost; a session started in the
background (SIGINT ignored) waited 15 s and then killed its recorder. Each case is run
here on ``stimloop run`` in its own process, as an operator or a shell would.
"""

from __future__ import annotations

import json
import os
import signal
import uuid

import pytest
from faultkit import (
    CliSession,
    fast_config,
    running,
    wait_for,
    with_recording,
    write_session_toml,
)

from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.stream.xdf import read_xdf


@pytest.fixture(scope="module")
def sim():
    """One simulated EEG for the module's sessions (each session has its own prefix)."""
    cfg = SimConfig(prefix=f"test-shutdown-{uuid.uuid4().hex[:8]}", roles=("eeg",),
                    eeg_channels=16, eeg_fs=250.0)  # fmt: skip
    with SimulatorProcess(cfg):
        yield cfg


def _session_file(sim: SimConfig, tmp_path):
    xdf = tmp_path / "rec.xdf"
    return write_session_toml(with_recording(fast_config(sim), xdf), tmp_path / "s.toml"), xdf


def _check_closed_in_order(xdf, *, markers: bool = True) -> None:
    """The recording is intact: every stream has its footer, nothing is damaged, and
    (after an orderly stop) the decision stream ends with the session's last words."""
    f = read_xdf(xdf)
    assert f.damage is None, f.damage
    assert f.streams and all(s.footer is not None for s in f.streams), [
        s.text("source_id") for s in f.streams if s.footer is None
    ]
    if markers:
        (decisions,) = [s for s in f.streams if s.info.find("desc/session_config") is not None]
        kinds = [json.loads(row[0])["event"] for row in decisions.time_series]
        assert "session_end" in kinds and kinds[-1] == "session_summary", kinds[-5:]
        safety = [s for s in f.streams if s.text("source_id").endswith("-safety")]
        last = [json.loads(row[0]) for row in safety[0].time_series][-3:]
        assert any(m["event"] == "disarmed" for m in last), last


@pytest.mark.slow
@pytest.mark.parametrize("sig, to_group", [
    (signal.SIGTERM, False),  # kill PID, systemd, a supervisor
    (signal.SIGINT, True),  # Ctrl-C: the terminal signals its whole foreground group
    (signal.SIGHUP, True),  # the terminal closed
], ids=["SIGTERM", "SIGINT-to-group", "SIGHUP-to-group"])  # fmt: skip
def test_a_signal_stops_the_session_in_order(sim, runtime_dir, tmp_path, sig, to_group):
    """Finding 6: SIGTERM, SIGINT (to the terminal's foreground group) and SIGHUP each
    end the session in order: disarmed, ``session_end`` and ``session_summary``
    recorded, every footer written, and the recorder gone. The recorder has a process
    group of its own, so a Ctrl-C reaches the session only; the session stops it after
    its own last markers."""
    toml, xdf = _session_file(sim, tmp_path)
    with CliSession(toml, runtime_dir, tmp_path, own_group=to_group) as run:
        run.wait_armed()
        recorder = run.recorder_pid()
        assert os.getpgid(recorder) != os.getpgid(run.pid)
        if to_group:
            os.killpg(run.pid, sig)
        else:
            os.kill(run.pid, sig)
        assert run.finish() == 0, run.stderr()[-3000:]
    assert "Traceback" not in run.stderr()
    assert wait_for(lambda: not running(recorder), 5.0), "the recorder outlived its session"
    _check_closed_in_order(xdf)


@pytest.mark.slow
def test_a_session_started_with_sigint_ignored_stops_on_sigterm(sim, runtime_dir, tmp_path):
    """Finding 6: a session started in the background (SIGINT ignored, as a shell does
    for ``&`` jobs) stopped its recorder with SIGINT, waited 15 s and killed it (no
    footers). Now it stops in order on SIGTERM, well before that 15 s timeout."""
    toml, xdf = _session_file(sim, tmp_path)
    with CliSession(toml, runtime_dir, tmp_path, ignore_sigint=True) as run:
        run.wait_armed()
        recorder = run.recorder_pid()
        os.kill(run.pid, signal.SIGTERM)
        assert run.finish(timeout=12.0) == 0, run.stderr()[-3000:]
    assert "did not stop" not in run.stderr()
    assert not running(recorder)
    _check_closed_in_order(xdf)


@pytest.mark.slow
def test_the_recorder_closes_its_file_when_the_session_is_killed(sim, runtime_dir, tmp_path):
    """Finding 6: on SIGKILL of the session (nothing of it can run), the old recorder
    was orphaned and wrote on. Now it notices that its parent is gone and closes its
    file, footers written, within about 2 s."""
    toml, xdf = _session_file(sim, tmp_path)
    with CliSession(toml, runtime_dir, tmp_path) as run:
        run.wait_armed()
        recorder = run.recorder_pid()
        os.kill(run.pid, signal.SIGKILL)
        run.finish()
    assert wait_for(lambda: not running(recorder), 10.0), "the recorder is still writing"
    _check_closed_in_order(xdf, markers=False)
