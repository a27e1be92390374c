"""A new derived stream is one catalog entry: the status announces it, the window's feed
reads it and ``stimloop analyze`` finds it, with no name spelled anywhere else."""

from __future__ import annotations

import time

import numpy as np
import pytest

from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.gui.feed import LiveFeed
from stimloop.loop import catalog
from stimloop.loop.demo import demo_config
from stimloop.loop.errors import SessionError
from stimloop.loop.report import session_report
from stimloop.loop.session import Session
from stimloop.stream.outlet import ChannelSpec


class HeartPeriodStage:
    """A plug-in stage: the ECG's running peak-to-peak amplitude, once per chunk."""

    name = "ecg_amplitude"
    role = "ecg"

    def start(self, fs, channel_labels, source_prefix) -> None:
        self.out = catalog.outlet("test_ecg_amplitude", source_prefix)

    def update(self, chunk) -> None:
        if len(chunk):
            x = chunk.data[:, 0]
            self.out.push(np.array([np.nanmax(x) - np.nanmin(x)]), float(chunk.timestamps[-1]))

    def add_event(self, t_lsl: float, text: str = "") -> None:
        pass

    def note_pulses(self, t_lsl: np.ndarray) -> None:
        """Stimulation pulses leave no artifact this stage must remove (ignored)."""

    def close(self) -> None:
        self.out.close()


@pytest.fixture
def entry():
    e = catalog.register(
        catalog.DerivedStream(
            "test_ecg_amplitude",
            "test-ecg-amplitude",
            "test ECG amplitude",
            "Misc",
            (ChannelSpec("peak_to_peak", "mV", "ECG"),),
            0.0,
            role="ecg",
            display_s=60.0,
            description="peak-to-peak ECG per chunk",
        )
    )
    yield e
    catalog.unregister(e.key)


def test_a_derived_stream_added_through_the_catalog_alone(entry, source_id, tmp_path):
    sim = SimConfig(prefix=source_id, roles=("eeg", "ecg"), eeg_channels=16)
    cfg = demo_config(sim)
    cfg = cfg.model_copy(update={"recording": cfg.recording.model_copy(
        update={"path": str(tmp_path / "s.xdf")})})  # fmt: skip
    prefix = f"{source_id}-s"
    with SimulatorProcess(sim):
        with Session(cfg, prefix, extra_stages=[HeartPeriodStage()]) as session:
            # A second open (`with session.open():`) is refused and leaves this one running.
            with pytest.raises(SessionError, match="already open"):
                session.open()
            assert session.snapshot()["catalog"]["test_ecg_amplitude"]["source_id"] == (
                f"{prefix}-test-ecg-amplitude"
            )
            feed = LiveFeed(prefix).start()
            try:
                result = session.run(6.0)
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline and not (
                    (tr := feed.track("test_ecg_amplitude")) and tr.received
                ):
                    time.sleep(0.1)
                track = feed.track("test_ecg_amplitude")
                assert track is not None and track.received > 0
            finally:
                feed.close()
    report = session_report(result.recordings[0])
    assert report["derived"]["test_ecg_amplitude"] > 100


def test_catalog_refuses_a_clash():
    with pytest.raises(SessionError, match="already in the catalog"):
        catalog.register(catalog.get("heart_hr"))
    with pytest.raises(SessionError, match="collides"):
        catalog.register(catalog.DerivedStream("x", "hr", "x", "x", (), 0.0))
    with pytest.raises(SessionError, match="known"):
        catalog.get("no_such_stream")
