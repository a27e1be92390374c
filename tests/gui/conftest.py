"""Fixtures of the GUI tests: Qt offscreen, and one live demo session per module, run in
its own process as in real use (the GUI process shares no GIL with the closed loop)."""

from __future__ import annotations

import os

# Qt reads the platform when the QApplication is created; set it before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import select
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("session_child.py")


class LiveSession:
    """The demo session (simulators + session) in a child process, driven over stdin."""

    def __init__(self, start_timeout: float = 90.0) -> None:
        self.sim_prefix = f"test-gui-{uuid.uuid4().hex[:8]}"
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), self.sim_prefix],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        hello = self._line(start_timeout)
        self.prefix = hello["prefix"]
        self.gate_markers = hello["gate_markers"]

    def _line(self, timeout: float = 10.0) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            raise RuntimeError(f"session process gave no answer (exit {self.proc.poll()})")
        return json.loads(line)

    def command(self, line: str) -> dict:
        """Send one command; returns the session's state after it."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._line()

    def state(self) -> dict:
        return self.command("state")

    def rearm(self) -> dict:
        return self.command("rearm")

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(20.0)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5.0)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def live_session():
    live = LiveSession()
    try:
        yield live
    finally:
        live.close()


@pytest.fixture
def own_session():
    """A session of the test's own, for a test that leaves it changed."""
    live = LiveSession()
    try:
        yield live
    finally:
        live.close()
