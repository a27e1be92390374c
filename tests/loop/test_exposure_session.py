"""An exposure session with EDA and ECG only: no EEG, no stimulator, no protocol."""

from __future__ import annotations

import json

import pytest

from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.loop import exposure_markers as em
from stimloop.loop.client import ControlError, send_command
from stimloop.loop.config import SessionConfigError, parse_session
from stimloop.loop.report import read_session
from stimloop.loop.session import Session


def _config(sim: SimConfig, path: str) -> object:
    return parse_session(
        {
            "name": "exposure",
            "sources": {
                "ecg": {"source_id": sim.source_id("ecg"), "rate_hz": sim.ecg_fs},
                "eda": {"source_id": sim.source_id("eda"), "rate_hz": sim.eda_fs},
            },
            "exposure": {"calibration_s": None},  # the operator marks the rest
            "recording": {"path": path},
        },
        "exposure.toml",
    )


def test_exposure_without_eeg_or_stimulator_records_markers_and_refuses_bad_ones(
    source_id, tmp_path, runtime_dir
):
    sim = SimConfig(prefix=source_id, roles=("ecg", "eda"))
    prefix = f"{source_id}-s"
    results: dict = {}

    def act(session: Session) -> None:
        if results:
            return
        send = lambda cmd, **a: send_command(prefix, cmd, root=runtime_dir, **a)  # noqa: E731
        snap = session.snapshot()
        results["status"] = (snap["stimulator"], snap["protocol"], snap["exposure"])
        send("mark", marker=em.calibration_start())
        send("mark", marker=em.exercise_start("elevator, 3rd floor"))
        send("mark", marker=em.rating("suds", 40, "start"))
        send("mark", marker=em.cue("doors close", 2))
        send("mark", marker=em.exercise_end())
        send("mark", marker=em.learned("the doors opened again; I could stay"))
        for bad, why in (
            (em.exercise_end(), "without an open exercise"),  # an end without a start
            (
                '{"schema": "stimloop-exposure/1", "kind": "rating", "scale": "suds", '
                '"value": 140, "moment": "peak"}',
                "0",
            ),  # a rating outside 0-100
        ):
            with pytest.raises(ControlError, match=why):
                send("mark", marker=bad)
        with pytest.raises(ControlError, match="no stimulation protocol"):
            send("arm")
        results["done"] = True

    with SimulatorProcess(sim):
        with Session(_config(sim, str(tmp_path / "x.xdf")), prefix, runtime_root=runtime_dir) as s:
            result = s.run(6.0, on_tick=act)
    assert results.get("done")
    stim, protocol, exposure = results["status"]
    assert stim is None and protocol is None and exposure["calibrated"] is False
    rec = read_session(result.recordings[0])
    marks = [json.loads(r[0]) for r in rec.stream("exposure").time_series]
    assert [m["kind"] for m in marks] == [
        "calibration_start",
        "exercise_start",
        "rating",
        "cue",
        "exercise_end",
        "learned",
    ]
    log = em.parse_exercises(
        list(
            zip(
                rec.stream("exposure").time_stamps,
                [r[0] for r in rec.stream("exposure").time_series],
                strict=True,
            )
        )
    )
    (ex,) = log.exercises
    assert ex.label == "elevator, 3rd floor" and ex.suds_start == 40 and len(ex.cues) == 1
    refused = [e for e in rec.decisions if e.get("event") == "command_refused"]
    assert len(refused) == 3
    assert rec.stream("heart_hr") is not None and rec.stream("eda_level") is not None


def test_exposure_needs_eda_and_a_protocol_needs_a_stimulator():
    base = {"sources": {"ecg": {"source_id": "e"}}}
    with pytest.raises(SessionConfigError, match=r"sources\.eda is required"):
        parse_session({**base, "exposure": {}})
    with pytest.raises(SessionConfigError, match=r"needs a \[stimulator\]"):
        parse_session({**base, "protocol": {"kind": "hbc", "rmt_pct_mso": 40}})
    with pytest.raises(SessionConfigError, match=r"sources\.eeg is required"):
        parse_session(
            {**base, "protocol": {"kind": "phase_locked"}, "stimulator": {"driver": "simulated"}}
        )
