"""Finding 2 of issue #15: the e-stop could be swallowed.

The old e-stop was UDP 127.0.0.1:47999. When another user (or a stale session) held that
port, the session silently moved to another one; ``stimloop estop`` sent to the squatter,
printed "emergency stop sent" and exited 0, and pulses went on (13 -> 21).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from faultkit import (
    OTHER_USER,
    RunningSession,
    fast_config,
    run_as_other_user,
    spawn_as_other_user,
    terminate,
    wait_for,
    write_session_toml,
)

from stimloop.devices.endpoints import SessionEndpoint, list_sessions
from stimloop.devices.estop import EmergencyStopListener, reset_emergency_stop
from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.loop.session import Session
from stimloop.stream.inlet import MarkerInlet

needs_other_user = pytest.mark.skipif(
    not OTHER_USER, reason="needs root and an interpreter user nobody can run"
)


def _stimloop(*args: str, root, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "STIMLOOP_RUNTIME_DIR": str(root)},
    )  # fmt: skip


#: As nobody: try to take the session's places; print what each attempt gave.
SQUAT = r"""
import errno, json, os, socket, sys
root, session_dir = sys.argv[1], sys.argv[2]
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc))
def bind(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
attempt("mkdir_in_root", lambda: os.mkdir(os.path.join(root, "s-1-squat")))
attempt("bind_in_root", lambda: bind(os.path.join(root, "estop.sock")))
attempt("unlink_estop", lambda: os.unlink(os.path.join(session_dir, "estop.sock")))
attempt("bind_in_session", lambda: bind(os.path.join(session_dir, "x.sock")))
attempt("list_root", lambda: os.listdir(root))
print(json.dumps(out))
"""

#: As nobody: make the runtime root first (as a squatter would, before the operator's
#: first session) and serve a fake session in it that claims every e-stop.
FAKE_SESSION = r"""
import json, os, socket, sys
root = sys.argv[1]
os.umask(0)
os.mkdir(root, 0o777)
d = os.path.join(root, "s-1-fake00")
os.mkdir(d, 0o777)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(os.path.join(d, "estop.sock"))
s.listen(4)
with open(os.path.join(d, "session.json"), "w") as f:
    json.dump({"name": "demo", "prefix": "squatter", "pid": os.getpid(), "uid": os.geteuid()}, f)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.recv(1024)
    c.sendall(b"ENGAGED demo (squatter)\n")
    c.close()
"""


@needs_other_user
def test_another_user_cannot_take_the_session_endpoints(runtime_dir):
    """Finding 2: the e-stop port could be held by another user. The session's sockets
    now live in its private 0700 directory: another account cannot make, replace or
    even list anything there."""
    endpoint = SessionEndpoint("demo", "p", runtime_dir).create()
    listener = EmergencyStopListener(endpoint.estop_socket, "demo (p)").start()
    try:
        out = run_as_other_user(SQUAT, str(runtime_dir), str(endpoint.directory))
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == dict.fromkeys(
            ("mkdir_in_root", "bind_in_root", "unlink_estop", "bind_in_session", "list_root"),
            "EACCES",
        )
        assert listener.alive and endpoint.estop_socket.exists()
    finally:
        listener.close()
        endpoint.remove()


@needs_other_user
def test_a_squatted_runtime_root_stops_the_session_and_fools_no_estop(runtime_dir, tmp_path):
    """Finding 2: another user who makes the runtime root first, and serves a fake
    session there that claims every e-stop, must neither receive the operator's
    session (it refuses to start, naming the directory) nor make ``stimloop estop``
    report success (its answer is not from this user: not confirmed, exit 1)."""
    os.chmod(runtime_dir, 0o1777)  # a shared /tmp, as the default root lives in
    root = runtime_dir / "stimloop-root"
    fake = spawn_as_other_user(FAKE_SESSION, str(root), stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout.readline().strip() == "ready"
        cfg = tmp_path / "s.toml"
        cfg.write_text('name = "demo"\n[sources.eeg]\nsource_id = "absent-eeg"\n')
        out = _stimloop("run", str(cfg), "--headless", "--duration", "5", root=root)
        assert out.returncode == 2, out.stderr
        assert f"{root} belongs to uid 65534" in out.stderr
        assert "Traceback" not in out.stderr and "absent-eeg" not in out.stderr
        out = _stimloop("estop", "--timeout", "1", root=root)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "ENGAGED" not in out.stdout
        assert "NOT CONFIRMED: demo (squatter)" in out.stdout
        assert "uid 65534" in out.stdout
    finally:
        fake.kill()
        fake.wait(5.0)
        fake.stdout.close()


def test_estop_ignores_a_stale_session_and_fails_when_none_answers(runtime_dir):
    """Finding 2: a stale session held the port and swallowed the stop. A session that
    died leaves its directory behind; ``stimloop estop`` must not count it, and with no
    live session it fails (exit 1) rather than print that a stop was sent."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = runtime_dir / f"s-{dead.stdout.strip()}-dead00"
    stale.mkdir(mode=0o700)
    (stale / "session.json").write_text(
        json.dumps({"name": "demo", "prefix": "crashed", "pid": int(dead.stdout), "uid": 0})
    )
    out = _stimloop("estop", root=runtime_dir)
    assert out.returncode == 1
    assert "crashed" not in out.stdout and "ENGAGED" not in out.stdout
    assert "no running session acknowledged" in out.stderr


@pytest.mark.slow
def test_estop_names_who_acknowledged_and_never_confirms_a_silent_session(
    source_id, runtime_dir, tmp_path
):  # fmt: skip
    """Finding 2: ``stimloop estop`` said "emergency stop sent" whether or not anyone
    heard it. Now it names each session that acknowledged; a session that cannot answer
    (stopped with SIGSTOP) is reported NOT CONFIRMED and the exit code is 3 (some) or
    1 (none); once it runs again it acknowledges."""
    sim = SimConfig(prefix=source_id, roles=("eeg",), eeg_channels=16, eeg_fs=250.0)
    toml = write_session_toml(fast_config(sim), tmp_path / "b.toml")
    with SimulatorProcess(sim), RunningSession(
        Session(fast_config(sim), f"{source_id}-a", runtime_root=runtime_dir)
    ) as a:  # fmt: skip
        b = subprocess.Popen(
            [sys.executable, "-m", "stimloop.loop.cli", "run", str(toml), "--headless"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "STIMLOOP_RUNTIME_DIR": str(runtime_dir)},
        )  # fmt: skip
        try:
            assert wait_for(lambda: len([e for e in list_sessions(runtime_dir) if e.alive]) == 2,
                            60.0), list_sessions(runtime_dir)  # fmt: skip
            b_prefix = next(e.prefix for e in list_sessions(runtime_dir) if e.pid == b.pid)
            # B is registered as soon as it opens; wait until its status says it runs.
            status = MarkerInlet(f"{b_prefix}-status", resolve_timeout=60.0).connect()
            assert wait_for(lambda: any(json.loads(t)["stimulator"]["armed"]
                                        for t, _ in status.pull()), 30.0)  # fmt: skip
            status.close()
            assert wait_for(lambda: a.session.stimulator.pulses_delivered >= 1, 20.0)
            os.kill(b.pid, signal.SIGSTOP)
            out = _stimloop("estop", "--session", b_prefix, "--timeout", "1", root=runtime_dir)
            assert out.returncode == 1, out.stdout + out.stderr
            assert f"NOT CONFIRMED: demo ({b_prefix}) (pid {b.pid})" in out.stdout
            assert "ENGAGED" not in out.stdout
            out = _stimloop("estop", "--timeout", "1", root=runtime_dir)
            assert out.returncode == 3, out.stdout + out.stderr
            assert f"ENGAGED: demo ({source_id}-a)" in out.stdout
            assert f"NOT CONFIRMED: demo ({b_prefix})" in out.stdout
            assert not a.session.stimulator.status().armed
            delivered = a.session.stimulator.pulses_delivered
            os.kill(b.pid, signal.SIGCONT)
            out = _stimloop("estop", "--session", b_prefix, root=runtime_dir)
            assert out.returncode == 0, out.stdout + out.stderr
            assert out.stdout.strip() == f"ENGAGED: demo ({b_prefix}) (pid {b.pid})"
            time.sleep(0.5)
            assert a.session.stimulator.pulses_delivered == delivered
        finally:
            os.kill(b.pid, signal.SIGCONT)
            terminate(b)
            reset_emergency_stop("test over")
            _, b_err = b.communicate()
        assert b.returncode == 0, b_err[-2000:]
