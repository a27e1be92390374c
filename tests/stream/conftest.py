"""One minute of the simulator, taken by the Inlet, a plain consumer and the recorder at
once, for the inlet and recorder acceptance tests (each used to run its own minute)."""

from __future__ import annotations

import uuid

import pytest
from sim_capture import SIM_RATES, Capture, capture_simulator

from stimloop.devices.sim.runner import SimConfig


@pytest.fixture(scope="session")
def simulated_minute(tmp_path_factory) -> Capture:
    """60 s of 64 ch EEG @ 1 kHz, ECG @ 500 Hz, EDA @ 100 Hz and a marker every 2 s,
    recorded with the default 5 s clock offsets and 10 s boundaries."""
    cfg = SimConfig(prefix=f"test-minute-{uuid.uuid4().hex[:8]}", seed=7, event_interval_s=2.0)
    path = tmp_path_factory.mktemp("minute") / "sim.xdf"
    return capture_simulator(cfg, path, 60.0, inlet_rates=SIM_RATES)
