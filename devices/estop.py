"""The emergency stop: a process-wide latch, its local socket, and the client that
engages it and waits for every session to say it did.

Engaging the latch disarms every live :class:`~stimloop.devices.safety.SafeStimulator`
of the process at once, and every later arm or fire is refused until the latch is
reset explicitly, with a stated reason, in the same process.

From outside the process (``stimloop estop``, the window's button) a session is
reached through the e-stop socket in its private endpoint directory
(:mod:`stimloop.devices.endpoints`). The session answers ``ENGAGED <name>`` once its
stimulators are disarmed; the client reports who answered and who did not, so a stop
that nobody heard is never mistaken for one that worked.

This is a software stop for the operator's account. It does not replace the
stimulator's own hardware emergency stop, which is the real safeguard
(docs/safety.md).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stimloop.devices.endpoints import SessionEntry, list_sessions
from stimloop.devices.errors import ErrorCode, SafetyError

if TYPE_CHECKING:
    from stimloop.devices.safety import SafeStimulator

logger = logging.getLogger("stimloop.devices")

#: Longest e-stop request read, bytes (``ESTOP <reason>``).
MAX_REQUEST = 1024
#: A session's answer when its latch holds but a stimulator's disarm failed.
NOT_DISARMED = "LATCHED-NOT-DISARMED"


class _EmergencyStop:
    """Process-wide latch. Engaging it disarms every live SafeStimulator at once."""

    def __init__(self) -> None:
        self._latched = threading.Event()
        self._reason = ""
        self._gates: weakref.WeakSet[SafeStimulator] = weakref.WeakSet()
        self._lock = threading.Lock()

    def register(self, gate: SafeStimulator) -> None:
        with self._lock:
            self._gates.add(gate)

    @property
    def latched(self) -> bool:
        return self._latched.is_set()

    @property
    def reason(self) -> str:
        return self._reason

    def engage(self, reason: str) -> list[str]:
        """Latch, then disarm every gate; return the disarms that failed (each named)."""
        with self._lock:
            self._reason = reason or "no reason given"
            self._latched.set()
            gates = list(self._gates)
        logger.critical("EMERGENCY STOP engaged: %s", self._reason)
        failed = [f for gate in gates if (f := gate._on_emergency_stop(self._reason))]
        for failure in failed:
            logger.critical("EMERGENCY STOP could not disarm %s", failure)
        return failed

    def reset(self, reason: str) -> None:
        if not (reason and reason.strip()):
            raise SafetyError(
                ErrorCode.EMERGENCY_STOP,
                "resetting the emergency stop needs a stated reason, got an empty one",
            )
        with self._lock:
            was = self._latched.is_set()
            self._latched.clear()
            self._reason = ""
            gates = list(self._gates)
        if was:
            logger.warning("emergency stop reset: %s", reason)
            for gate in gates:
                gate._publish({"event": "estop_reset", "reason": reason})


LATCH = _EmergencyStop()


def emergency_stop(reason: str = "") -> list[str]:
    """Engage the latching emergency stop: disarm every stimulator in this process now.

    Every later arm/fire is refused with :class:`EmergencyStopError` until
    :func:`reset_emergency_stop` is called explicitly.

    Returns
    -------
    list of str
        The stimulators whose disarm failed, each with its error (empty: all disarmed).
        The latch holds either way, but such a device may still be charged.
    """
    return LATCH.engage(reason)


def reset_emergency_stop(reason: str) -> None:
    """Release the emergency stop latch. Stimulators stay disarmed until armed again."""
    LATCH.reset(reason)


def emergency_stop_engaged() -> bool:
    """Whether the emergency stop latch is engaged in this process."""
    return LATCH.latched


def peer_credentials(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a connected Unix socket."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", raw)
    return pid, uid


class EmergencyStopListener:
    """Serves a session's e-stop socket: ``ESTOP <reason>`` engages the latch.

    Only engaging is possible from outside; resetting needs the in-process API. One
    thread accepts connections (no polling); each request is read with a deadline and a
    size bound, answered ``ENGAGED <session>`` once the latch has disarmed every gate,
    and nothing a client sends can end the thread.

    Parameters
    ----------
    path : Path
        Socket path, inside the session's private endpoint directory.
    session : str
        What the acknowledgement names (session name and prefix).

    """

    def __init__(self, path: Path, session: str) -> None:
        self.path = Path(path)
        self.session = session
        self._sock: socket.socket | None = None
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> EmergencyStopListener:
        """Bind the socket (0600) and start listening.

        Raises
        ------
        SafetyError
            The socket cannot be bound (the session must not start without its e-stop).
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(8)
        except OSError as exc:
            sock.close()
            raise SafetyError(
                ErrorCode.EMERGENCY_STOP,
                f"cannot bind the emergency-stop socket {self.path}: {exc}; a session "
                "does not start without its e-stop",
            ) from exc
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="stimloop-estop", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether the listener thread runs."""
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
                except Exception:  # a bad client must never end the listener
                    logger.exception("e-stop request failed")

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(1.0)
        pid, uid = peer_credentials(conn)
        data = b""
        while b"\n" not in data and len(data) < MAX_REQUEST:
            part = conn.recv(MAX_REQUEST - len(data))
            if not part:
                break
            data += part
        if not data.startswith(b"ESTOP"):
            conn.sendall(b"ERROR expected 'ESTOP <reason>'\n")
            return
        reason = data[5:].split(b"\n", 1)[0].decode(errors="replace").strip() or "remote request"
        failed = emergency_stop(f"{reason} (from pid {pid}, uid {uid})")
        if failed:
            # Latched, but a device did not confirm its disarm: never say ENGAGED, which
            # tells the operator the stimulators are disarmed.
            why = "; ".join(failed).replace("\n", " ")
            conn.sendall(f"{NOT_DISARMED} {self.session}: {why}\n".encode(errors="replace"))
            return
        conn.sendall(f"ENGAGED {self.session}\n".encode(errors="replace"))

    def close(self) -> None:
        """Stop listening and remove the socket. Idempotent."""
        if self._sock is None or self._closing.is_set():
            return
        self._closing.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        try:
            self.path.unlink()
        except OSError:
            pass


@dataclass(frozen=True)
class EstopReply:
    """What one session answered to an e-stop request.

    Attributes
    ----------
    session : str
        The session's name and prefix (from its answer, or its registry entry).
    pid : int
        Its process id.
    engaged : bool
        True once it acknowledged that its stimulators are disarmed.
    detail : str
        Its answer, or why it could not be reached.
    """

    session: str
    pid: int
    engaged: bool
    detail: str


def _request(entry: SessionEntry, reason: str, timeout: float) -> EstopReply:
    label = f"{entry.name} ({entry.prefix})"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(entry.estop_socket))
            # An answer counts only from a process of this user (or root): another
            # account that made the runtime root first could serve a fake session there
            # that acknowledges every stop (issue #15, finding 2).
            _, uid = peer_credentials(sock)
            if uid not in (os.geteuid(), 0):
                return EstopReply(
                    label, entry.pid, False,
                    f"{entry.estop_socket} is served by uid {uid}, not by this user (uid "
                    f"{os.geteuid()}): not one of your sessions; nothing was sent",
                )  # fmt: skip
            sock.sendall(f"ESTOP {reason}".encode(errors="replace")[: MAX_REQUEST - 2] + b"\n")
            answer = b""
            while b"\n" not in answer:
                part = sock.recv(256)
                if not part:
                    break
                answer += part
    except OSError as exc:
        return EstopReply(label, entry.pid, False, f"not reached: {exc}")
    text = answer.decode(errors="replace").strip()
    if text.startswith("ENGAGED"):
        return EstopReply(text[8:] or label, entry.pid, True, text)
    if text.startswith(NOT_DISARMED):
        return EstopReply(
            label, entry.pid, False,
            f"the session latched its e-stop (its gate passes no pulse) but could not "
            f"confirm the disarm: {text[len(NOT_DISARMED):].strip()}; the stimulator may "
            "still be charged: use its own stop button",
        )  # fmt: skip
    return EstopReply(label, entry.pid, False, f"no acknowledgement (answer {text!r})")


def send_emergency_stop(
    reason: str = "stimloop estop", *, prefixes: list[str] | None = None,
    root: Path | None = None, timeout: float = 1.0,
) -> list[EstopReply]:  # fmt: skip
    """Engage the e-stop of running sessions and collect their acknowledgements.

    Parameters
    ----------
    reason : str
        Why (recorded by each session with the sender's pid and uid).
    prefixes : list of str, optional
        Only the sessions with these prefixes (default: every live session found).
    root : Path, optional
        Runtime root to look in (default :func:`~stimloop.devices.endpoints.runtime_root`).
    timeout : float
        Seconds to wait for each session's answer.

    Returns
    -------
    list of EstopReply
        One per live session asked (empty: none is registered). Entries left by
        sessions that died are skipped.
    """
    entries = [e for e in list_sessions(root) if e.alive]
    if prefixes is not None:
        entries = [e for e in entries if e.prefix in prefixes]
    return [_request(e, reason, timeout) for e in entries]
