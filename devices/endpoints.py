"""Where running sessions keep their local endpoints: a private per-user directory.

Each session gets a directory of its own under the user's *runtime root* and puts there
its e-stop socket, its control socket and a ``session.json`` that names it. Tools
(``stimloop estop``, the window) find sessions by listing the root, never by a fixed
port that another process could hold first.

Why a directory and Unix sockets rather than localhost UDP ports (issue #15): a port is
shared by every user of the machine, so another user (or a stale session) can hold it
and swallow what was meant for the session, and anyone can send to it. A directory
created 0700 and owned by the operator lets no other account reach the sockets at all
(the approach of ssh-agent and of ``$XDG_RUNTIME_DIR``); the control server checks the
peer's uid on every connection as well (``SO_PEERCRED``), in case the directory's
permissions were loosened by hand.

The root is ``$STIMLOOP_RUNTIME_DIR`` if set, else ``$XDG_RUNTIME_DIR/stimloop``, else
``/tmp/stimloop-<uid>``. A root or session directory that is not owned by this user, or
that others can enter, is refused with an error naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from stimloop.devices.errors import DeviceError, ErrorCode

#: AF_UNIX socket paths are limited to 107 bytes on Linux.
MAX_SOCKET_PATH = 107


class EndpointError(DeviceError):
    """A session's local endpoint directory cannot be made private or used."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.PORT_UNAVAILABLE, message)


def runtime_root() -> Path:
    """The directory under which this user's sessions keep their endpoints."""
    if env := os.environ.get("STIMLOOP_RUNTIME_DIR"):
        return Path(env)
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(xdg) / "stimloop"
    return Path(f"/tmp/stimloop-{os.geteuid()}")


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700, or check that it already is private.

    Raises
    ------
    EndpointError
        The directory exists but belongs to another user, is not a directory, or can be
        entered by others; or it cannot be created.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        raise EndpointError(f"cannot create the session directory {path}: {exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise EndpointError(f"{path} exists and is not a directory; expected a private directory")
    if st.st_uid != os.geteuid():
        raise EndpointError(
            f"{path} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()}): "
            "another account could read or replace a session's sockets there; remove it or "
            "set STIMLOOP_RUNTIME_DIR"
        )
    if st.st_mode & 0o077:
        # mkdir honours the umask only to restrict; a directory we just made is 0700.
        # An existing one with group/other bits was loosened: tighten it, it is ours.
        os.chmod(path, 0o700)
    return path


@dataclass(frozen=True)
class SessionEntry:
    """One session found in the runtime root.

    Attributes
    ----------
    directory : Path
        The session's endpoint directory.
    name, prefix : str
        Session name and source_id prefix.
    pid : int
        Process id of the session.
    alive : bool
        Whether that process still exists (a dead one left a stale entry).
    """

    directory: Path
    name: str
    prefix: str
    pid: int
    alive: bool

    @property
    def estop_socket(self) -> Path:
        """Path of the session's e-stop socket."""
        return self.directory / "estop.sock"

    @property
    def control_socket(self) -> Path:
        """Path of the session's control socket."""
        return self.directory / "control.sock"


class SessionEndpoint:
    """A running session's endpoint directory (created by :meth:`create`).

    Parameters
    ----------
    name, prefix : str
        Session name and source_id prefix (recorded in ``session.json``).
    root : Path, optional
        Runtime root (default :func:`runtime_root`).
    """

    def __init__(self, name: str, prefix: str, root: Path | None = None) -> None:
        self.name = name
        self.prefix = prefix
        self.root = root or runtime_root()
        # Short and unique: socket paths must stay under 108 bytes.
        self.directory = self.root / f"s-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    @property
    def estop_socket(self) -> Path:
        """Path of this session's e-stop socket."""
        return self.directory / "estop.sock"

    @property
    def control_socket(self) -> Path:
        """Path of this session's control socket."""
        return self.directory / "control.sock"

    def create(self) -> SessionEndpoint:
        """Make the private directory and write ``session.json``.

        Raises
        ------
        EndpointError
            The root or the directory cannot be made private, or the socket paths would
            be longer than a Unix socket allows.
        """
        if len(str(self.control_socket).encode()) > MAX_SOCKET_PATH:
            raise EndpointError(
                f"the runtime directory {self.root} is too deep for Unix socket paths "
                f"({len(str(self.control_socket))} > {MAX_SOCKET_PATH} bytes); set "
                "STIMLOOP_RUNTIME_DIR to a shorter path"
            )
        private_dir(self.root)
        private_dir(self.directory)
        info = {"name": self.name, "prefix": self.prefix, "pid": os.getpid(),
                "uid": os.geteuid(), "started": time.time()}  # fmt: skip
        fd = os.open(self.directory / "session.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        return self

    def remove(self) -> None:
        """Delete the directory and what is in it (at session end). Idempotent."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_sessions(root: Path | None = None) -> list[SessionEntry]:
    """The sessions registered under the runtime root, oldest first.

    Entries whose ``session.json`` is unreadable are skipped; entries of dead processes
    are returned with ``alive`` False (a crashed session leaves its directory behind).
    """
    root = root or runtime_root()
    try:
        dirs = [d for d in root.iterdir() if d.name.startswith("s-") and d.is_dir()]
    except OSError:
        return []
    out = []
    for d in dirs:
        try:
            info = json.loads((d / "session.json").read_text())
            pid = int(info["pid"])
            out.append(SessionEntry(d, str(info["name"]), str(info["prefix"]), pid, _alive(pid)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda e: e.directory.stat().st_mtime if e.directory.exists() else 0)
