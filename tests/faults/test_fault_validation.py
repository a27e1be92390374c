"""Finding 7 of issue #15: validation order.

The old session armed the stimulator before it checked the recording path (a read-only
folder gave a raw traceback after arming), and an intensity above the session maximum or
an unknown driver option passed validation and failed only after the streams connected.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pylsl
import pytest
from faultkit import IS_ROOT, fast_config, with_recording, write_session_toml

from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.loop.config import SessionConfigError, load_session
from stimloop.loop.errors import SessionError
from stimloop.loop.session import Session


@contextlib.contextmanager
def _read_only(folder):
    """Make ``folder`` read-only even for root (immutable), else by its mode."""
    folder.mkdir()
    if IS_ROOT:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a folder read-only for root here: {done.stderr!r}")
        undo = ["chattr", "-i", str(folder)]
    else:
        os.chmod(folder, 0o555)
        undo = ["chmod", "755", str(folder)]
    try:
        yield folder
    finally:
        subprocess.run(undo, check=True)


def _stimloop(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )  # fmt: skip


def test_a_read_only_recording_folder_is_refused_before_anything_is_armed(
    source_id, runtime_dir, tmp_path
):  # fmt: skip
    """Finding 7: with a read-only recording folder, the old session armed the
    stimulator first and then died with a raw traceback. Now the path is checked before
    any stream connects or any stimulator opens: one clear error naming the path, no
    traceback, and no stream of the session was ever published (so no ``armed``)."""
    sim = SimConfig(prefix=source_id, roles=("eeg",), eeg_channels=16, eeg_fs=250.0)
    with _read_only(tmp_path / "ro") as ro, SimulatorProcess(sim):
        target = ro / "rec.xdf"
        cfg = with_recording(fast_config(sim), target)
        prefix = f"{source_id}-s"
        session = Session(cfg, prefix, runtime_root=runtime_dir)
        with pytest.raises(SessionError, match=r"recording\.path: cannot write the recording") as e:
            session.open()
        assert str(target) in str(e.value)
        assert session.stimulator is None and not session.inlets
        published = pylsl.resolve_bypred(f"starts-with(source_id, '{prefix}')", 0, 1.0)
        assert not published, [i.source_id() for i in published]
        toml = write_session_toml(cfg, tmp_path / "s.toml")
        out = _stimloop("run", str(toml), "--headless", STIMLOOP_RUNTIME_DIR=str(runtime_dir))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"cannot write the recording {target}" in out.stderr
    assert "armed" not in out.stderr


def test_an_intensity_above_the_session_maximum_fails_at_load(tmp_path):
    """Finding 7: an intensity above the session's ``max_intensity_pct`` passed
    validation and failed only after the streams connected. Now ``load_session`` refuses
    it, naming the file and both keys; ``stimloop run`` says so in one line before it
    looks for any stream (there is none here)."""
    sim = SimConfig(prefix="absent-source", roles=("eeg",), eeg_channels=16)
    cfg = fast_config(sim)
    data = cfg.model_dump()
    data["protocol"]["intensity_pct"] = 90.0  # the demo's safety maximum is 80 % MSO
    path = tmp_path / "too-strong.toml"
    write_session_toml(data, path)
    with pytest.raises(SessionConfigError) as e:
        load_session(path)
    msg = str(e.value)
    assert str(path) in msg
    assert "protocol.intensity_pct = 90" in msg and "stimulator.safety.max_intensity_pct" in msg
    out = _stimloop("run", str(path), "--headless")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "protocol.intensity_pct" in out.stderr and "absent-source" not in out.stderr


def test_an_unknown_driver_option_fails_at_load(tmp_path):
    """Finding 7: an unknown driver option passed validation and failed only once the
    stimulator was opened. Now ``load_session`` refuses it, naming the file, the table
    and the option, and what the driver takes."""
    sim = SimConfig(prefix="absent-source", roles=("eeg",), eeg_channels=16)
    cfg = fast_config(sim)
    data = cfg.model_dump()
    data["stimulator"]["options"] = {"coil_temprature_c": 30}
    path = tmp_path / "typo.toml"
    write_session_toml(data, path)
    with pytest.raises(SessionConfigError) as e:
        load_session(path)
    msg = str(e.value)
    assert str(path) in msg and "stimulator" in msg and "coil_temprature_c" in msg
    assert "simulated" in msg and "arm_time_s" in msg  # what the driver does take
