"""Finding 1 of issue #15: the control channel, attacked as a hostile local user would.

The old channel was a UDP port on 127.0.0.1: any local account could re-arm a stimulator
the operator had disarmed, 60,000 ``[`` killed its thread (RecursionError), and a
sender's ``"event": "fired"`` was counted by ``analyze`` as a delivered pulse.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from faultkit import (
    IS_ROOT,
    NOBODY,
    OTHER_USER,
    UNIX_REQUEST,
    RunningSession,
    fast_config,
    unix_request_as_other_user,
    wait_for,
    with_recording,
)

from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.loop.client import send_command
from stimloop.loop.report import read_session, session_report
from stimloop.loop.session import Session
from stimloop.stream.inlet import MarkerInlet


def _sim(source_id: str) -> SimConfig:
    return SimConfig(prefix=source_id, roles=("eeg",), eeg_channels=16, eeg_fs=250.0)


def _raw(path, payload: bytes, timeout: float = 5.0) -> dict | None:
    """Send raw bytes to the control socket as the operator; the parsed answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading at its size bound and answered
        answer = b""
        try:
            while b"\n" not in answer:
                part = s.recv(4096)
                if not part:
                    break
                answer += part
        except ConnectionResetError:
            pass
    return json.loads(answer) if answer else None


def _events(inlet: MarkerInlet) -> list[dict]:
    return [json.loads(text) for text, _ in inlet.pull()]


@pytest.mark.slow
def test_another_user_cannot_command_the_session_and_is_recorded(source_id, runtime_dir):
    """Finding 1: ``arm`` from another local user re-armed a disarmed stimulator (0 -> 5
    pulses in 6 s, sent as ``nobody``). Now the 0700 directory keeps that user from
    even connecting; with the directory and socket opened up by hand, the peer-uid
    check refuses the command and records it with the sender's uid.

    Without root, the attacker is another process of this user, and the session is
    told its operator is someone else (a wrong credential as the kernel reports it).
    """
    sim = _sim(source_id)
    prefix = f"{source_id}-s"
    with SimulatorProcess(sim), RunningSession(
        Session(fast_config(sim), prefix, runtime_root=runtime_dir)
    ) as run:  # fmt: skip
        session = run.session
        decisions = MarkerInlet(f"{prefix}-decisions").connect()
        assert wait_for(lambda: session.stimulator.pulses_delivered >= 2, 20.0)
        send_command(prefix, "disarm", root=runtime_dir)
        assert not session.stimulator.status().armed
        sock = session.endpoint.control_socket
        arm = json.dumps({"cmd": "arm"}).encode() + b"\n"
        if OTHER_USER:
            # The private directory: the other account cannot reach either socket.
            for path in (sock, session.endpoint.estop_socket):
                assert unix_request_as_other_user(path, arm)["connect"] == "EACCES"
            # Loosened by hand: the connection succeeds, SO_PEERCRED refuses it.
            os.chmod(runtime_dir, 0o755)
            os.chmod(session.endpoint.directory, 0o755)
            os.chmod(sock, 0o777)
            out = unix_request_as_other_user(sock, arm)
            attacker_uid = NOBODY
        else:
            if IS_ROOT:  # root is always an allowed peer: no wrong credential to show
                pytest.skip("root, but no Python interpreter that user nobody can run")
            session.control.operator_uid = os.geteuid() + 1
            attacker = subprocess.run(
                [sys.executable, "-c", UNIX_REQUEST, str(sock), arm.hex()],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            out = json.loads(attacker.stdout)
            attacker_uid = os.geteuid()
        assert out["connect"] == "ok" and out["uid"] == attacker_uid and out["reply"], out
        reply = json.loads(out["reply"])
        assert reply["ok"] is False and f"uid {attacker_uid}" in reply["error"]
        delivered = session.stimulator.pulses_delivered
        time.sleep(1.5)  # five pulse intervals of the protocol
        assert not session.stimulator.status().armed
        assert session.stimulator.pulses_delivered == delivered
        refused = [e for e in _events(decisions) if e["event"] == "command_refused"]
        assert [e["peer"]["uid"] for e in refused] == [attacker_uid], refused
        assert "not the session's operator" in refused[0]["error"]
        run.stop()


@pytest.mark.slow
# The test ends the control thread on purpose (SystemExit from its handler).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_malformed_requests_are_refused_and_the_channel_keeps_obeying(
    source_id, runtime_dir, tmp_path
):  # fmt: skip
    """Finding 1: a datagram of 60,000 ``[`` raised RecursionError and silently killed
    the control thread, so pause and disarm stopped working; a sender's ``event`` key
    overwrote ours, and a forged ``fired`` was counted by ``analyze`` (29 against the
    stimulator's 28). Now every malformed request is refused and recorded, the channel
    still obeys pause and disarm, and the recording counts only real pulses. Should the
    thread die all the same, the session notices, disarms and restarts the channel."""
    sim = _sim(source_id)
    prefix = f"{source_id}-s"
    cfg = with_recording(fast_config(sim), tmp_path / "s.xdf")
    hostile = [
        b"[" * 60_000,  # the reproduction: over the size bound
        b"[" * 16_000 + b"\n",  # within the size bound, nested too deep
        b'{"cmd": "arm", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}\n",
        b"\xff\xfe\x00garbage\n",
        b'"\\ud800"\n',
        b'{"cmd": 5}\n',
        b'{"cmd": "arm", "intensity_pct": 100}\n',
        b'{"cmd": "marker", "text": 5}\n',
        b'{"cmd": "marker", "text": "x", "event": "fired", "t_trigger": 1.0}\n',
        b'{"cmd": "shutdown"}\n',
        b"NaN\n",
        b"\n",
    ]
    with SimulatorProcess(sim), RunningSession(
        Session(cfg, prefix, runtime_root=runtime_dir)
    ) as run:  # fmt: skip
        session = run.session
        sock = session.endpoint.control_socket
        assert wait_for(lambda: session.stimulator.pulses_delivered >= 2, 20.0)
        for payload in hostile:
            reply = _raw(sock, payload)
            assert reply is not None and reply["ok"] is False, payload[:40]
        # A client that connects and says nothing, or never ends its line.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
            idle.connect(str(sock))
            assert _raw(sock, b"\x00" * 100)["ok"] is False  # waits for the idle one
        assert session.control.alive
        # Still obeyed, and acknowledged once done.
        send_command(prefix, "pause", root=runtime_dir)
        assert not session.engine.protocol_enabled.is_set()
        send_command(prefix, "resume", root=runtime_dir)
        assert session.engine.protocol_enabled.is_set()
        send_command(prefix, "disarm", root=runtime_dir)
        assert not session.stimulator.status().armed
        send_command(prefix, "arm", root=runtime_dir)
        n = session.stimulator.pulses_delivered
        assert wait_for(lambda: session.stimulator.pulses_delivered >= n + 2, 10.0)

        # A control thread that dies all the same (its handler raises SystemExit, which
        # no `except Exception` catches) is noticed: disarmed, recorded, restarted.
        def die(cmd: str, args: dict) -> None:
            raise SystemExit

        session.control.handler = die
        assert _raw(sock, b'{"cmd": "pause"}\n') is None  # no answer: the thread ended
        assert wait_for(lambda: not session.stimulator.status().armed, 5.0)
        assert wait_for(lambda: session.control.alive and session.control.handler != die, 5.0)
        send_command(prefix, "pause", root=runtime_dir)
        assert not session.engine.protocol_enabled.is_set()
        result = run.stop()
    rec = read_session(result.recordings[0])
    events = rec.decisions
    assert [e["event"] for e in events if e["event"] == "control_died"] == ["control_died"]
    refused = [e for e in events if e["event"] == "command_refused"]
    assert len(refused) >= len(hostile) + 1, [e["error"][:60] for e in refused]
    assert any("bytes; allowed <= 16384" in e["error"] for e in refused)
    assert any("nested" in e["error"] for e in refused)
    # Every command marker is ours: its event says "command", the sender's keys are
    # inside "args".
    assert all(set(e) == {"event", "cmd", "args"} for e in events if e["event"] == "command")
    report = session_report(rec)
    delivered = session.stimulator.pulses_delivered
    assert report["pulses"]["delivered"] == delivered == len(result.pulses)
