"""What another process needs to work with a running session: find it, command it,
stop it, keep off its CPUs, and mark an exposure session's exercises.

This is the session's client API: the window (``stimloop.gui``) and the command line
use it and nothing else of ``stimloop.loop``. Sessions are found in the user's private
runtime directory (:mod:`stimloop.devices.endpoints`); every call talks to the session
over its own sockets there.
"""

from __future__ import annotations

from pathlib import Path

from stimloop.devices.endpoints import SessionEntry, list_sessions
from stimloop.devices.estop import EstopReply, send_emergency_stop
from stimloop.loop.control import COMMANDS, request
from stimloop.loop.cpus import allowed_cpus, pin_process
from stimloop.loop.errors import ControlError

# The exposure-marker schema (docs/exposure.md) is part of the client API: a client
# builds the JSON a ``mark`` command carries, and reads back the session's ``exposure``
# stream, with the same code the session validates it with.
from stimloop.loop.exposure_markers import (
    ExposureMarkerError,
    calibration_end,
    calibration_start,
    cue,
    exercise_end,
    exercise_start,
    learned,
    parse_exercises,
    parse_marker,
    rating,
)

__all__ = [
    "COMMANDS",
    "ControlError",
    "EstopReply",
    "ExposureMarkerError",
    "allowed_cpus",
    "calibration_end",
    "calibration_start",
    "cue",
    "emergency_stop",
    "exercise_end",
    "exercise_start",
    "find_session",
    "learned",
    "parse_exercises",
    "parse_marker",
    "pin_process",
    "rating",
    "send_command",
]


def find_session(prefix: str, root: Path | None = None) -> SessionEntry:
    """The running session with source_id prefix ``prefix``.

    Raises
    ------
    ControlError
        No live session with that prefix is registered (the live ones are listed).
    """
    live = [e for e in list_sessions(root) if e.alive]
    for entry in live:
        if entry.prefix == prefix:
            return entry
    raise ControlError(
        f"no running session with prefix {prefix!r}; running: {[e.prefix for e in live]}"
    )


def send_command(prefix: str, cmd: str, *, root: Path | None = None, **args: object) -> None:
    """Send one command to the session ``prefix`` and wait until it is done.

    Raises
    ------
    ControlError
        No such session, no answer, or the session refused the command (its reason).
    """
    request(find_session(prefix, root).control_socket, cmd, **args)


def emergency_stop(reason: str, prefix: str | None = None, *,
                   root: Path | None = None) -> list[EstopReply]:  # fmt: skip
    """Engage the e-stop of session ``prefix`` (default: every running session); one
    reply per session asked, ``engaged`` True once it acknowledged."""
    return send_emergency_stop(reason, prefixes=None if prefix is None else [prefix], root=root)
