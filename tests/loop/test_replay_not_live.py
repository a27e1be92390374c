"""A replayed recording never drives a real stimulator, and a session says it ran on one
(review finding: ``stimloop replay rec.xdf`` keeps the recorded source_ids, so a session
whose amplifier was off connected to the replay of another day's EEG as if it were the
subject's, armed a hardware stimulator and timed pulses to that brain; nothing in the
recording said so)."""

from __future__ import annotations

import json
import uuid

import mne
import numpy as np
import pylsl
import pytest

from stimloop.loop.config import parse_session
from stimloop.loop.errors import SessionError
from stimloop.loop.session import Session
from stimloop.stream.inlet import Inlet, MarkerInlet
from stimloop.stream.replay import Player

FS = 250.0


@pytest.fixture
def replayed_eeg(tmp_path):
    """A 30 s EEG file (C3 and its Hjorth neighbours) replayed (a unique source_id)."""
    rng = np.random.default_rng(3)
    t = np.arange(int(30 * FS)) / FS
    data = 20e-6 * np.sin(2 * np.pi * 10 * t) + 5e-6 * rng.standard_normal((5, t.size))
    info = mne.create_info(["C3", "F3", "T3", "P3", "Cz"], FS, "eeg")
    raw = mne.io.RawArray(data, info, verbose="error")
    path = tmp_path / "old_session_raw.fif"
    raw.save(path, verbose="error")
    with Player(path, suffix=f"-{uuid.uuid4().hex[:8]}") as player:
        yield path, player.source_ids[0]


def _config(source_id: str, driver: str, options: dict | None = None):
    return parse_session(
        {
            "name": "replay-check",
            "sources": {"eeg": {"source_id": source_id, "rate_hz": FS, "channels": 5}},
            "channels": {"eeg_target": "C3"},
            "dsp": {"calibration_s": 0, "phase_band_hz": [8.0, 12.0]},
            "protocol": {"kind": "phase_locked", "intensity_pct": 40},
            "stimulator": {"driver": driver, "options": options or {}},
        }
    )


def test_an_inlet_tells_a_replay_from_a_live_stream(replayed_eeg):
    path, source_id = replayed_eeg
    assert Inlet(source_id).connect().replay_file == str(path)
    live_id = f"live-{uuid.uuid4().hex[:8]}"
    info = pylsl.StreamInfo("live", "EEG", 1, FS, "float32", live_id)
    outlet = pylsl.StreamOutlet(info)
    try:
        assert Inlet(live_id).connect().replay_file is None
    finally:
        del outlet


def test_a_replay_cannot_drive_a_hardware_stimulator(replayed_eeg, runtime_dir):
    path, source_id = replayed_eeg
    cfg = _config(source_id, "magstim-200", {"port": "/dev/stimloop-test-no-such-port"})
    session = Session(cfg, runtime_root=runtime_dir)
    with pytest.raises(SessionError, match=r"replayed recording.*magstim-200.*eeg") as err:
        session.open()
    assert str(path) in str(err.value)
    assert session.stimulator is None  # refused before the device was opened


def test_a_replay_driving_the_simulated_stimulator_is_recorded(replayed_eeg, runtime_dir):
    path, source_id = replayed_eeg
    session = Session(_config(source_id, "simulated"), runtime_root=runtime_dir)
    with session:
        assert session.replayed == {"eeg": str(path)}
        assert session.snapshot()["replayed_inputs"] == {"eeg": str(path)}
        # The decision stream's header carries it, so every recording of it does.
        decisions = MarkerInlet(f"{session.prefix}-decisions").connect()
        try:
            header = decisions.info.desc().child_value("replayed_inputs")
        finally:
            decisions.close()
        assert json.loads(header) == {"eeg": str(path)}
