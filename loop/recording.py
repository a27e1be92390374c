"""The session's recorder: a supervised child process that writes every stream to XDF.

A separate process keeps the recorder's pulls and disk writes off the session's GIL, so
recording can never delay the real-time loop. It runs ``stimloop record`` in a process
group of its own, so a Ctrl-C in the terminal reaches the session only, and the session
stops the recorder in order after its last markers (SIGTERM: the recorder writes its
footers and exits). The recorder watches its parent: if the session dies (even by
SIGKILL) it closes its file within a second.

The session watches the recorder (:attr:`RecorderProcess.alive`). If it dies, the
session disarms, restarts it into a new *part* (``NAME-part2.xdf``, ...) and records
the fact there; it re-arms only on the operator's command.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stimloop.loop.errors import SessionError
from stimloop.stream.files import PrivateFileError, make_private_dir, open_private

log = logging.getLogger("stimloop.loop")

#: Seconds the recorder gets to write its footers after SIGTERM before it is killed.
STOP_TIMEOUT_S = 15.0


def resolve_recording_path(template: str) -> Path:
    """The recording file a ``[recording] path`` names (``{time}`` = start time), made
    absolute without following a link at the file itself (which :func:`check_writable`
    refuses: it would send the recording wherever the link points)."""
    return Path(os.path.abspath(template.replace("{time}", time.strftime("%Y%m%d-%H%M%S"))))


def check_writable(path: Path) -> None:
    """Make the recording's folder (0700 where it is created) and prove a file can be
    written there, before anything is armed.

    Raises
    ------
    SessionError
        The folder cannot be made or written, or a file is already there (an earlier
        session's recording, which must never be overwritten).
    """
    if os.path.lexists(path):
        raise SessionError(
            f"recording.path: {path} already exists (an earlier recording?); nothing was "
            "overwritten or started: choose another path, or put {time} in it"
        )
    try:
        make_private_dir(path.parent)
        probe = path.parent / f".{path.name}.probe-{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except (OSError, PrivateFileError) as exc:
        raise SessionError(
            f"recording.path: cannot write the recording {path}: {exc}; choose a writable "
            "folder (nothing was started)"
        ) from None


class RecorderProcess:
    """``stimloop record`` of a fixed list of streams, supervised by the session.

    Parameters
    ----------
    path : Path
        The first part's file.
    source_ids : list of str
        Streams to record.
    hostnames : dict of str to str, optional
        The host each of these streams must come from, where the session pins it.
    """

    def __init__(
        self, path: Path, source_ids: list[str], hostnames: dict[str, str] | None = None
    ) -> None:
        self.source_ids = list(dict.fromkeys(source_ids))
        self.hostnames = dict(hostnames or {})
        self.paths: list[Path] = []
        self._first = Path(path)
        self._proc: subprocess.Popen | None = None

    def _part(self, k: int) -> Path:
        return self._first.with_name(f"{self._first.stem}-part{k}{self._first.suffix}")

    @property
    def path(self) -> Path | None:
        """The file being written now."""
        return self.paths[-1] if self.paths else None

    @property
    def alive(self) -> bool:
        """Whether the recorder process runs."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The recorder's exit code once it has ended."""
        return None if self._proc is None else self._proc.poll()

    def start(self, timeout_s: float = 30.0) -> Path:
        """Start recording the next part; return its path once the recorder runs.

        Raises
        ------
        SessionError
            The recorder exited or did not report that it runs within ``timeout_s``.
        """
        p, k = self._first, len(self.paths) + 1
        # A part an earlier session left under the same name is kept: skip its number.
        while k > 1 and os.path.lexists(p := self._part(k)):
            k += 1
        args = [sys.executable, "-m", "stimloop.loop.cli", "record", "-o", str(p),
                "--parent-pid", str(os.getpid())]  # fmt: skip
        for sid in self.source_ids:
            args += ["--source-id", sid]
        for sid, host in self.hostnames.items():
            args += ["--host", f"{sid}={host}"]
        log_path = p.with_suffix(".recorder.log")
        with open_private(log_path, "w") as log_file:
            # A group of its own: the terminal's Ctrl-C reaches the session only, which
            # then stops the recorder after its own last markers.
            self._proc = subprocess.Popen(
                args, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while "recording to" not in log_path.read_text():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SessionError(
                    f"the recorder did not start (exit code {self._proc.poll()}); "
                    f"see {log_path}:\n{log_path.read_text()[-2000:]}"
                )
            time.sleep(0.05)
        self.paths.append(p)
        return p

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Ask the recorder to finish its file (SIGTERM), wait, and kill it if it hangs."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.error("recorder did not stop within %g s; killing it", timeout_s)
            proc.kill()
            proc.wait(5.0)
