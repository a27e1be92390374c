"""Finding 10 of issue #15: with umask 000, recordings and their folders were world-writable.

Every test creates files in a child process whose umask is 000 (``os.umask(0)``), the
worst case a user's shell can hand us, and checks the modes from outside: files 0600,
folders 0700. Before the fix the recorder's XDF file was 0644, ``write_xdf`` gave 0666
and folders made with ``Path.mkdir(parents=True)`` 0777.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from stimloop.stream.files import (
    PrivateFileError,
    make_private_dir,
    open_private,
    open_private_fd,
)
from stimloop.stream.outlet import Outlet, channel_specs
from stimloop.stream.xdf import read_xdf


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _run_with_umask_000(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        preexec_fn=lambda: os.umask(0),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_recorder_cli_writes_an_owner_only_file_under_umask_000(tmp_path, source_id):
    """Finding 10: ``stimloop record`` under umask 000 wrote its XDF file 0644 (now 0600)."""
    out = tmp_path / "rec.xdf"
    outlet = Outlet("perm", "EEG", source_id, channel_specs(["C3"], unit="uV"), 100.0)
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "stimloop.loop.cli", "record", "-o", str(out),
             "--source-id", source_id, "--duration", "1.5"],
            preexec_fn=lambda: os.umask(0),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ) as proc:  # fmt: skip
            x = np.zeros((10, 1), np.float32)
            while proc.poll() is None:
                outlet.push(x)
                try:
                    proc.wait(0.1)
                except subprocess.TimeoutExpired:
                    pass
            log = proc.stdout.read()
    finally:
        outlet.close()
    assert proc.returncode == 0, log
    assert _mode(out) == 0o600, f"recording is {oct(_mode(out))}"
    assert read_xdf(out).streams[0].text("source_id") == source_id


def test_folders_files_and_logs_are_private_under_umask_000(tmp_path):
    """Finding 10: folders 0777 and the recorder log 0666 under umask 000 (now 0700/0600).

    ``make_private_dir`` and ``open_private`` are what the session calls to create the
    recording's folder and its recorder log; ``write_xdf`` writes test fixtures and
    offline exports.
    """
    rec_dir = tmp_path / "recordings" / "patient-01" / "day-1"
    result = _run_with_umask_000(f"""
        import numpy as np
        from stimloop.stream.files import make_private_dir, open_private
        from stimloop.stream.xdf import info_xml, write_xdf
        d = make_private_dir({str(rec_dir)!r})
        with open_private(d / "session.recorder.log", "w") as log:
            log.write("recording to ...\\n")
        xml = info_xml("x", "EEG", "x", [{{"label": "C3"}}], 100.0, "float32")
        write_xdf(d / "export.xdf", [(xml, "float32", np.arange(5) / 100.0,
                                      np.zeros((5, 1), np.float32))])
    """)
    assert result.returncode == 0, result.stderr
    for folder in (tmp_path / "recordings", rec_dir.parent, rec_dir):
        assert _mode(folder) == 0o700, f"{folder} is {oct(_mode(folder))}"
    for name in ("session.recorder.log", "export.xdf"):
        assert _mode(rec_dir / name) == 0o600, f"{name} is {oct(_mode(rec_dir / name))}"
    assert _mode(tmp_path) == stat.S_IMODE(tmp_path.stat().st_mode)  # an existing parent


def test_existing_folders_are_left_alone_and_a_wide_file_is_narrowed(tmp_path):
    """Finding 10: an existing shared folder keeps its mode; an existing 0666 file becomes 0600."""
    shared = tmp_path / "lab-share"
    shared.mkdir()
    shared.chmod(0o775)
    assert make_private_dir(shared) == shared
    assert _mode(shared) == 0o775
    old = shared / "old.log"
    old.write_text("earlier run\n")
    old.chmod(0o666)
    with open_private(old, "a") as f:
        f.write("appended\n")
    assert _mode(old) == 0o600
    assert old.read_text() == "earlier run\nappended\n"
    with open_private(old, "w") as f:
        f.write("new\n")
    assert old.read_text() == "new\n"


def test_links_fifos_and_other_users_files_are_refused(tmp_path):
    """Finding 10: a path prepared by someone else is refused, never written through."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "link.xdf").symlink_to(victim)
    with pytest.raises(PrivateFileError, match=r"link\.xdf.*symbolic link"):
        open_private_fd(tmp_path / "link.xdf")
    assert victim.read_text() == "keep me"
    os.mkfifo(tmp_path / "fifo.xdf")
    with pytest.raises(PrivateFileError, match=r"fifo\.xdf.*(FIFO|not a regular file)"):
        open_private(tmp_path / "fifo.xdf", "wb")
    with pytest.raises(PrivateFileError, match=r"missing.*No such file"):
        open_private(tmp_path / "missing" / "x.log")
    (tmp_path / "plain").write_text("")
    with pytest.raises(PrivateFileError, match=r"plain' is not a folder"):
        make_private_dir(tmp_path / "plain" / "sub")
    with pytest.raises(PrivateFileError, match=r"mode must be 'w', 'a' or 'x'"):
        open_private(tmp_path / "r.txt", "r")
    if os.geteuid() != 0:
        return  # only root can hand a file to another user; the check is the same
    theirs = tmp_path / "theirs.xdf"
    theirs.write_text("their data")
    os.chown(theirs, 65534, 65534)  # nobody
    with pytest.raises(PrivateFileError, match=r"belongs to uid 65534"):
        open_private(theirs, "w")
    assert theirs.read_text() == "their data"  # refused before truncating
