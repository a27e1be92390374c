"""The session's local control channel and status snapshot.

*Commands* (arm, disarm, pause/resume the protocol, an event marker, a GUI attaching or
closing)
arrive as one JSON datagram each on a UDP socket bound to 127.0.0.1. A dedicated thread
executes them, always through the HAL gate, so a command can never bypass a safety
check, and the real-time thread never waits for it. The emergency stop has its own
listener in the HAL (:class:`~stimloop.devices.safety.EmergencyStopListener`), so it
works even if this channel is busy.

The *status* snapshot (stimulator state, safety headroom, stream health, the ports of
both channels) is published ten times a second as a JSON marker stream
``{prefix}-status``; the GUI and any other LSL consumer read it, and the recorder keeps
it with the session.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

log = logging.getLogger("stimloop.loop")

#: Commands the channel accepts, and what each needs.
COMMANDS = ("arm", "disarm", "pause", "resume", "marker", "gui_open", "gui_closed")


def send_command(port: int, cmd: str, **args: Any) -> None:
    """Send one command to a session's control channel (fire-and-forget).

    Parameters
    ----------
    port : int
        The session's control port (published in its status stream).
    cmd : str
        One of :data:`COMMANDS`.
    **args
        Command arguments, e.g. ``text="exposure 1 start"`` for ``marker``.
    """
    if cmd not in COMMANDS:
        raise ValueError(f"unknown command {cmd!r}; allowed: {COMMANDS}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(json.dumps({"cmd": cmd, **args}).encode(), ("127.0.0.1", port))


class ControlServer:
    """Receives commands on 127.0.0.1 and runs each through ``handler``.

    Parameters
    ----------
    handler : callable (cmd, args) -> None
        Executes one command; its exceptions are logged and reported, never raised here.
    on_error : callable (cmd, message) -> None
        Told about every rejected or failed command (the session publishes it).
    port : int
        UDP port; 0 picks a free one (read it from :attr:`port`).
    """

    def __init__(
        self,
        handler: Callable[[str, dict], None],
        on_error: Callable[[str, str], None],
        port: int = 0,
    ) -> None:
        self.handler = handler
        self.on_error = on_error
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", port))
        self.port = self._sock.getsockname()[1]
        self._token = uuid.uuid4().hex.encode()
        self._thread = threading.Thread(target=self._run, name="stimloop-control", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data, _ = self._sock.recvfrom(65536)
            except OSError:
                return
            if data == self._token:
                return
            try:
                msg = json.loads(data)
                cmd = msg.pop("cmd")
            except (ValueError, KeyError, AttributeError, TypeError):
                self.on_error("?", f"malformed command {data[:80]!r}; expected JSON with 'cmd'")
                continue
            if cmd not in COMMANDS:
                self.on_error(str(cmd), f"unknown command {cmd!r}; allowed: {COMMANDS}")
                continue
            try:
                self.handler(cmd, msg)
            except Exception as exc:  # a refused arm etc.; reported, the thread lives on
                log.warning("command %s failed: %s", cmd, exc)
                self.on_error(cmd, str(exc))

    def close(self) -> None:
        """Stop the thread and release the port."""
        try:
            self._sock.sendto(self._token, ("127.0.0.1", self.port))
        except OSError:
            pass
        self._thread.join(2.0)
        self._sock.close()


class StatusPublisher:
    """Publishes ``snapshot()`` as a JSON marker every ``period_s`` from its own thread.

    Parameters
    ----------
    outlet : Outlet
        String outlet (``{prefix}-status``).
    snapshot : callable () -> dict
        Builds the current status; must not block.
    period_s : float
        Publishing period in s.
    """

    def __init__(self, outlet, snapshot: Callable[[], dict], period_s: float = 0.1) -> None:
        self.outlet = outlet
        self.snapshot = snapshot
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stimloop-status", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            next_t += self.period_s
            try:
                self.outlet.push_marker(json.dumps(self.snapshot(), default=str))
            except Exception:  # a status glitch must not end the session
                log.exception("status snapshot failed")

    def close(self) -> None:
        """Stop publishing."""
        self._stop.set()
        self._thread.join(2.0)
