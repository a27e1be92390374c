"""The e-stop acknowledges ENGAGED only when every stimulator confirmed its disarm
(review finding: a Magstim whose serial link stopped answering was reported ENGAGED,
i.e. disarmed, by ``stimloop estop`` and the window).

Real Magstim driver on the pty emulator, real gate, real e-stop socket and client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from stimloop.devices.emulators.magstim import MagstimEmulator
from stimloop.devices.endpoints import SessionEndpoint
from stimloop.devices.estop import (
    EmergencyStopListener,
    emergency_stop_engaged,
    reset_emergency_stop,
    send_emergency_stop,
)
from stimloop.devices.safety import SafeStimulator
from stimloop.devices.stimulators.magstim import Magstim200
from stimloop.stream.inlet import MarkerInlet


@pytest.fixture
def armed_magstim(source_id, runtime_dir):
    """An armed Magstim 200 behind the gate, and a session's e-stop socket."""
    with MagstimEmulator(arm_time_s=0.05) as emu:
        gate = SafeStimulator(Magstim200(emu.port), marker_source_id=f"{source_id}-gate")
        gate.connect()
        gate.set_intensity(40)
        gate.arm()
        endpoint = SessionEndpoint("ack", f"{source_id}-ack", runtime_dir).create()
        listener = EmergencyStopListener(endpoint.estop_socket, "ack").start()
        try:
            yield emu, gate
        finally:
            listener.close()
            endpoint.remove()
            reset_emergency_stop("test done")
            emu.silent = False
            gate.close()


def test_a_disarm_the_device_does_not_confirm_is_not_acknowledged(
    armed_magstim, source_id, runtime_dir
):
    emu, _ = armed_magstim
    markers = MarkerInlet(f"{source_id}-gate").connect()
    emu.silent = True  # the serial link stops answering: the disarm gets no reply
    [reply] = send_emergency_stop("test", root=runtime_dir, timeout=5.0)
    assert not reply.engaged
    assert "could not confirm the disarm" in reply.detail and "no reply" in reply.detail
    assert "own stop button" in reply.detail
    assert emergency_stop_engaged()  # the latch holds all the same
    events: list[str] = []
    deadline = time.monotonic() + 3.0
    while "estop" not in events and time.monotonic() < deadline:
        events += [json.loads(text)["event"] for text, _ in markers.pull()]
        time.sleep(0.05)
    assert "disarm_failed" in events and "disarmed" not in events


def test_the_cli_does_not_report_an_unconfirmed_disarm_as_engaged(armed_magstim, runtime_dir):
    emu, _ = armed_magstim
    emu.silent = True
    cli = [sys.executable, "-m", "stimloop.loop.cli", "estop", "--timeout", "5"]
    env = {**os.environ, "STIMLOOP_RUNTIME_DIR": str(runtime_dir)}
    done = subprocess.run(cli, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT CONFIRMED" in done.stdout and "could not confirm the disarm" in done.stdout


def test_a_confirmed_disarm_is_acknowledged(armed_magstim, runtime_dir):
    emu, gate = armed_magstim
    [reply] = send_emergency_stop("test", root=runtime_dir, timeout=5.0)
    assert reply.engaged and reply.detail.startswith("ENGAGED")
    assert not emu.armed and not gate.status().armed
