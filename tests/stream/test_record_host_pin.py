"""The recorder takes a stream from the host a session pins it to (review finding: the
session's inlets were pinned, its recorder was not, so another host's stream with the same
source_id made the recording ambiguous or could be recorded in its place)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from stimloop.stream.errors import StreamError, StreamNotFoundError
from stimloop.stream.inlet import resolve_source
from stimloop.stream.outlet import Outlet, channel_specs
from stimloop.stream.recorder import Recorder
from stimloop.stream.xdf import read_xdf


@pytest.fixture
def outlet(source_id):
    out = Outlet("pin", "EEG", source_id, channel_specs(["a"]), 100.0, "float32")
    yield out
    out.close()


def test_a_pinned_stream_is_recorded_from_its_host_only(outlet, source_id, tmp_path):
    host = resolve_source(source_id).hostname()
    rec = Recorder(tmp_path / "here.xdf", [source_id], hostnames={source_id: host}).start()
    for _ in range(10):
        outlet.push(np.zeros((10, 1), np.float32))
        time.sleep(0.02)
    time.sleep(0.3)
    rec.stop()
    streams = read_xdf(tmp_path / "here.xdf").streams
    assert [s.text("source_id") for s in streams] == [source_id]
    assert len(streams[0].time_stamps) > 0

    elsewhere = Recorder(
        tmp_path / "elsewhere.xdf", [source_id], hostnames={source_id: "no-such-host"},
        resolve_timeout=1.0,
    )  # fmt: skip
    with pytest.raises(StreamNotFoundError, match="on host 'no-such-host'"):
        elsewhere.start()
    with pytest.raises(StreamError, match="not named in source_ids"):
        Recorder(tmp_path / "x.xdf", [source_id], hostnames={"other": host})


def test_the_record_command_passes_the_pin_and_names_a_malformed_one(outlet, source_id, tmp_path):
    cli = [sys.executable, "-m", "stimloop.loop.cli", "record", "-o", str(tmp_path / "r.xdf"),
           "--source-id", source_id, "--duration", "1"]  # fmt: skip
    wrong = subprocess.run(
        [*cli, "--host", f"{source_id}=no-such-host"], capture_output=True, text=True, timeout=60
    )
    assert wrong.returncode != 0 and "on host 'no-such-host'" in wrong.stderr
    bad = subprocess.run([*cli, "--host", "no-equals-sign"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert bad.returncode != 0 and "expected SOURCE_ID=HOSTNAME" in bad.stderr
    assert not (tmp_path / "r.xdf").exists()


def test_the_session_recorder_process_hands_the_pins_on(outlet, source_id, tmp_path):
    from stimloop.loop.errors import SessionError
    from stimloop.loop.recording import RecorderProcess

    host = resolve_source(source_id).hostname()
    proc = RecorderProcess(tmp_path / "ok.xdf", [source_id], {source_id: host})
    proc.start()
    proc.stop()
    assert (tmp_path / "ok.xdf").exists()
    with pytest.raises(SessionError, match="on host 'no-such-host'"):
        RecorderProcess(tmp_path / "no.xdf", [source_id], {source_id: "no-such-host"}).start()
