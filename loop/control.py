"""The session's local control channel and its status stream.

*Commands* (arm, disarm, pause/resume the protocol, an event marker, a window attaching
or closing) arrive on a Unix stream socket in the session's private endpoint directory
(:mod:`stimloop.devices.endpoints`), one JSON object per connection, and are answered
``{"ok": true}`` or ``{"ok": false, "error": ...}``. Why this design (issue #15):

- the directory is 0700 and owned by the operator, so no other account can reach the
  socket; the server still reads the peer's uid on every connection (``SO_PEERCRED``)
  and refuses, and records, a command from anyone but the operator (or root);
- a request is read with a deadline and a size bound, its nesting depth is checked
  before it is parsed, and only known commands with known, typed arguments pass: no
  input can raise out of the server thread;
- every command still goes through the HAL gate, so none can bypass a safety check.

The emergency stop has its own socket and thread in the HAL
(:class:`~stimloop.devices.estop.EmergencyStopListener`), so it works even if this
channel is busy.

The *status* snapshot (stimulator state, safety headroom, stream health, the catalog of
the session's streams) is published ten times a second as a JSON marker stream
``{prefix}-status``; the window and any other LSL consumer read it, and the recorder
keeps it with the session.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stimloop.devices.estop import peer_credentials
from stimloop.loop.errors import ControlError

log = logging.getLogger("stimloop.loop")

#: Commands the channel accepts, and the arguments each may carry (name -> type).
COMMANDS: dict[str, dict[str, type]] = {
    "arm": {},
    "disarm": {},
    "pause": {},
    "resume": {},
    "confirm": {"text": str},
    "mark": {"marker": str},
    "marker": {"text": str},
    "gui_open": {},
    "gui_closed": {"attached": bool},
}
#: Largest request read, bytes.
MAX_REQUEST = 16_384
#: Deepest nesting of JSON arrays and objects accepted (a command is one flat object).
MAX_DEPTH = 2
#: Longest marker text kept, characters.
MAX_TEXT = 2_000


def _depth(data: bytes) -> int:
    """Deepest nesting of ``[``/``{`` outside strings, found without parsing."""
    depth = deepest = 0
    in_str = escape = False
    for b in data:
        if in_str:
            if escape:
                escape = False
            elif b == 0x5C:  # backslash
                escape = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif b in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_command(data: bytes) -> tuple[str, dict[str, Any]]:
    """Validate one request and return ``(cmd, args)``.

    Raises
    ------
    ControlError
        Too large, too deeply nested, not JSON, not an object with a known ``cmd``, or
        with an unknown argument or one of the wrong type; the message names which.
    """
    if len(data) > MAX_REQUEST:
        raise ControlError(f"request of {len(data)} bytes; allowed <= {MAX_REQUEST}")
    if (depth := _depth(data)) > MAX_DEPTH:
        raise ControlError(f"request nested {depth} deep; allowed <= {MAX_DEPTH}")
    try:
        msg = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ControlError(f'request is not JSON ({exc}); expected {{"cmd": ...}}') from None
    if not isinstance(msg, dict) or not isinstance(msg.get("cmd"), str):
        raise ControlError("request must be a JSON object with a string 'cmd'")
    cmd = msg.pop("cmd")
    if cmd not in COMMANDS:
        raise ControlError(f"unknown command {cmd[:40]!r}; allowed: {sorted(COMMANDS)}")
    spec = COMMANDS[cmd]
    for key, value in msg.items():
        if key not in spec:
            raise ControlError(f"{cmd}: unknown argument {key[:40]!r}; allowed: {sorted(spec)}")
        if not isinstance(value, spec[key]):
            raise ControlError(
                f"{cmd}: argument {key!r} must be {spec[key].__name__}, got {type(value).__name__}"
            )
    if "text" in msg:
        msg["text"] = msg["text"][:MAX_TEXT]
    return cmd, msg


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data and len(data) <= MAX_REQUEST:
        part = conn.recv(MAX_REQUEST + 1 - len(data))
        if not part:
            break
        data += part
    return data.split(b"\n", 1)[0]


class ControlServer:
    """Receives commands on a private Unix socket and runs each through ``handler``.

    Parameters
    ----------
    path : Path
        Socket path in the session's endpoint directory.
    handler : callable (cmd, args) -> None
        Executes one command; its exceptions are reported to the sender and to
        ``on_refused``, never raised here.
    on_refused : callable (cmd, message, peer) -> None
        Told about every refused, malformed or failed command; ``peer`` is
        ``{"pid", "uid"}`` of the sender (the session records it).
    operator_uid : int, optional
        The only uid (besides root) whose commands run (default: this process's).
    """

    def __init__(
        self,
        path: Path,
        handler: Callable[[str, dict], None],
        on_refused: Callable[[str, str, dict], None],
        operator_uid: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.handler = handler
        self.on_refused = on_refused
        self.operator_uid = os.geteuid() if operator_uid is None else int(operator_uid)
        self._sock: socket.socket | None = None
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ControlServer:
        """Bind the socket (0600) and start the server thread.

        Raises
        ------
        ControlError
            The socket cannot be bound.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(8)
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot bind the control socket {self.path}: {exc}") from exc
        self._sock = sock
        self._closing.clear()
        self._thread = threading.Thread(target=self._run, name="stimloop-control", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether the server thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._closing.is_set():
                    return
                continue
            with conn:
                try:
                    self._serve(conn)
                except Exception:  # nothing a client does may end this thread
                    log.exception("control request failed")

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(1.0)
        pid, uid = peer_credentials(conn)
        peer = {"pid": pid, "uid": uid}
        if uid not in (self.operator_uid, 0):
            why = f"uid {uid} is not the session's operator (uid {self.operator_uid})"
            self.on_refused("?", f"refused: {why}", peer)
            conn.sendall(json.dumps({"ok": False, "error": f"refused: {why}"}).encode() + b"\n")
            return
        try:
            data = _read_request(conn)
            cmd, args = parse_command(data)
        except (ControlError, OSError) as exc:
            self.on_refused("?", str(exc), peer)
            conn.sendall(json.dumps({"ok": False, "error": str(exc)}).encode() + b"\n")
            return
        try:
            self.handler(cmd, args)
        except Exception as exc:  # a refused arm etc.: reported, the thread lives on
            log.warning("command %s failed: %s", cmd, exc)
            self.on_refused(cmd, str(exc), peer)
            conn.sendall(json.dumps({"ok": False, "error": str(exc)}).encode() + b"\n")
            return
        conn.sendall(b'{"ok": true}\n')

    def close(self) -> None:
        """Stop the thread and remove the socket. Idempotent."""
        if self._sock is None or self._closing.is_set():
            return
        self._closing.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        if self._thread is not None:
            self._thread.join(2.0)
        try:
            self.path.unlink()
        except OSError:
            pass


def request(path: Path, cmd: str, timeout: float = 2.0, **args: Any) -> None:
    """Send one command to a control socket and wait for its answer.

    Parameters
    ----------
    path : Path
        The session's control socket.
    cmd : str
        One of :data:`COMMANDS`.
    timeout : float
        Seconds to wait for the answer.
    **args
        Command arguments, e.g. ``text="exposure 1 start"`` for ``marker``.

    Raises
    ------
    ControlError
        The command is unknown, the session did not answer, or it refused the command
        (the message is the session's).
    """
    if cmd not in COMMANDS:
        raise ControlError(f"unknown command {cmd!r}; allowed: {sorted(COMMANDS)}")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            answer = _read_request(sock)
    except OSError as exc:
        raise ControlError(f"the session at {path} did not answer {cmd!r}: {exc}") from exc
    try:
        reply = json.loads(answer)
    except ValueError:
        raise ControlError(f"the session answered {cmd!r} with {answer[:80]!r}") from None
    if not reply.get("ok"):
        raise ControlError(f"the session refused {cmd!r}: {reply.get('error')}")


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
        self._thread: threading.Thread | None = None

    def start(self) -> StatusPublisher:
        """Start publishing."""
        self._thread = threading.Thread(target=self._run, name="stimloop-status", daemon=True)
        self._thread.start()
        return self

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
        if self._thread is not None:
            self._thread.join(2.0)
