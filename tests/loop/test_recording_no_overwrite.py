"""No session and no ``stimloop record`` overwrites an earlier recording (review
finding: a session file with a fixed ``[recording] path``, ``stimloop demo --record
FILE`` or ``stimloop record -o FILE`` run a second time truncated the first recording
without a word)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib import resources

import pytest

from stimloop.loop.config import parse_session
from stimloop.loop.errors import SessionError
from stimloop.loop.recording import RecorderProcess
from stimloop.loop.session import Session
from stimloop.stream.files import PrivateFileError
from stimloop.stream.recorder import Recorder

EARLIER = b"an earlier session's recording"


def _demo_config(path):
    text = resources.files("stimloop.loop").joinpath("configs/demo.toml").read_text()
    data = tomllib.loads(text)
    data["recording"] = {"path": str(path)}
    return parse_session(data)


def test_a_session_refuses_to_start_over_an_existing_recording(tmp_path, runtime_dir):
    path = tmp_path / "p01.xdf"
    path.write_bytes(EARLIER)
    session = Session(_demo_config(path), runtime_root=runtime_dir)
    with pytest.raises(SessionError, match=r"already exists.*nothing was overwritten"):
        session.open()
    assert path.read_bytes() == EARLIER
    assert not list(runtime_dir.iterdir())  # no endpoint: nothing was started


def test_a_link_at_the_recording_path_is_refused_not_followed(tmp_path, runtime_dir):
    path = tmp_path / "p01.xdf"
    path.symlink_to(tmp_path / "elsewhere.xdf")
    with pytest.raises(SessionError, match="already exists"):
        Session(_demo_config(path), runtime_root=runtime_dir).open()
    assert not (tmp_path / "elsewhere.xdf").exists()


def test_the_record_command_refuses_an_existing_file_unless_told(tmp_path):
    path = tmp_path / "rec.xdf"
    path.write_bytes(EARLIER)
    cli = [sys.executable, "-m", "stimloop.loop.cli", "record", "-o", str(path),
           "--source-id", "absent-stream-never-published", "--duration", "1"]  # fmt: skip
    done = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "already exists" in done.stderr and "Traceback" not in done.stderr
    assert path.read_bytes() == EARLIER
    with pytest.raises(PrivateFileError, match="already exists"):
        Recorder(path, ["absent-stream-never-published"], overwrite=False).start()
    assert path.read_bytes() == EARLIER


def test_a_restarted_recorder_skips_a_part_an_earlier_session_left(tmp_path):
    first = tmp_path / "s.xdf"
    (tmp_path / "s-part2.xdf").write_bytes(EARLIER)
    rec = RecorderProcess(first, ["absent-stream-never-published"])
    rec.paths.append(first)  # as after the first part
    assert rec._part(2) == tmp_path / "s-part2.xdf"
    # start() records the part it chose; the recorder itself fails here (no streams
    # named), which is reported, but the earlier part is never its target.
    with pytest.raises(SessionError):
        rec.start(timeout_s=20.0)
    assert (tmp_path / "s-part2.xdf").read_bytes() == EARLIER
    assert (tmp_path / "s-part3.recorder.log").exists()
    assert os.path.getsize(tmp_path / "s-part2.xdf") == len(EARLIER)
