"""Finding 5 of issue #15: recorder death was not noticed.

After ``kill -9`` of the recorder, the old session stimulated for 28 more seconds with no
recording and no warning, and its summary said 17 pulses were "recorded to" a file that
held 5. Run here as an operator runs a session: ``stimloop run`` in its own process.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from faultkit import CliSession, fast_config, wait_for, with_recording, write_session_toml

from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.loop.client import send_command
from stimloop.stream.inlet import MarkerInlet
from stimloop.stream.xdf import read_xdf


def _fired_on_disk(path: str) -> int:
    """Pulses a recording holds: ``fired`` markers on its decision stream."""
    f = read_xdf(path)
    decisions = [s for s in f.streams if s.info.find("desc/session_config") is not None]
    assert len(decisions) == 1, path
    return sum(json.loads(row[0])["event"] == "fired" for row in decisions[0].time_series)


@pytest.mark.slow
def test_killed_recorder_disarms_until_armed_again_and_the_summary_is_what_is_on_disk(
    source_id, runtime_dir, tmp_path
):  # fmt: skip
    """Finding 5: ``kill -9`` of the recorder of a running session. The session disarms,
    records ``recorder_died`` in a new file part, keeps running disarmed (the protocol's
    requests are refused) until the operator sends ``arm``, and the run summary, read
    back from the recordings, counts in each part exactly what that part holds."""
    sim = SimConfig(prefix=source_id, roles=("eeg",), eeg_channels=16, eeg_fs=250.0)
    xdf = tmp_path / "rec.xdf"
    toml = write_session_toml(with_recording(fast_config(sim), xdf), tmp_path / "s.toml")
    with SimulatorProcess(sim), CliSession(toml, runtime_dir, tmp_path) as run:
        prefix = run.wait_armed()
        decisions = MarkerInlet(f"{prefix}-decisions").connect()
        events: list[tuple[dict, float]] = []

        def seen(kind: str, after: float = 0.0) -> list[dict]:
            events.extend((json.loads(text), t) for text, t in decisions.pull())
            return [e for e, t in events if e["event"] == kind and t > after]

        assert wait_for(lambda: len(seen("fired")) >= 2, 30.0)
        recorder = run.recorder_pid()
        os.kill(recorder, signal.SIGKILL)
        t_kill = time.monotonic()
        assert wait_for(lambda: seen("recorder_died"), 60.0), run.stderr()
        died = seen("recorder_died")[0]
        t_died = next(t for e, t in events if e["event"] == "recorder_died")
        time.sleep(max(0.0, 2.0 - (time.monotonic() - t_kill)) + 1.0)
        assert not seen("fired", after=t_died), "fired while disarmed"
        assert seen("refused", after=t_died), "the protocol asked for no pulse: nothing tested"
        assert run.recorder_pid() != recorder
        send_command(prefix, "arm", root=runtime_dir)
        assert wait_for(lambda: len(seen("fired", after=t_died)) >= 2, 20.0)
        decisions.close()
        os.kill(run.pid, signal.SIGTERM)
        assert run.finish() == 0, run.stderr()[-3000:]
    assert died["exit_code"] == -signal.SIGKILL
    part2 = tmp_path / "rec-part2.xdf"
    assert died["new_part"] == str(part2)
    assert "recorder died" in run.stderr()
    reports = json.loads(run.stdout())["recordings"]
    assert [r["file"] for r in reports] == [str(xdf), str(part2)]
    for report in reports:
        assert report["pulses"]["delivered"] == _fired_on_disk(report["file"]), report["file"]
    assert reports[1]["events"].get("recorder_died") == 1
    assert reports[1]["events"].get("command") == 1  # the operator's arm, in the new part
