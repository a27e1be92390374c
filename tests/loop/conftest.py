"""One short recorded demo session, shared by the study and export tests (recording one
costs ~10-30 s; every study session is derived from it)."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from stimloop.devices.sim.runner import SimConfig
from stimloop.loop.demo import run_demo
from stimloop.stream.xdf import read_xdf, write_xdf


@pytest.fixture(scope="session")
def demo_xdf(tmp_path_factory) -> Path:
    """An 8 s recorded demo session (simulators, truth, every decision)."""
    path = tmp_path_factory.mktemp("demo") / "demo.xdf"
    run_demo(8.0, SimConfig(prefix=f"test-study-{uuid.uuid4().hex[:8]}"), recording=str(path))
    return path


def rewrite_with(src: Path, dst: Path, *, decisions: list[tuple[float, dict]] = (),
                 markers: list[tuple[float, str]] = ()) -> None:  # fmt: skip
    """Copy a recording, adding decision events and a marker stream of its own.

    Every stream is written back with its header and its samples on the recording
    host's clock; ``decisions`` (LSL s, event) join the session's decision stream in
    time order; ``markers`` (LSL s, text) go out as a "PsychoPy"-like marker stream.
    """
    f = read_xdf(src)
    streams = []
    for s in f.streams:
        ts = np.asarray(s.synchronized_stamps(), float)
        values = s.time_series
        if s.info.find("desc/session_config") is not None and decisions:
            rows = [(float(t), row) for t, row in zip(ts, values, strict=True)]
            rows += [(t, [json.dumps(e)]) for t, e in decisions]
            rows.sort(key=lambda r: r[0])
            ts = np.array([r[0] for r in rows])
            values = [r[1] for r in rows]
        xml = '<?xml version="1.0"?>' + ET.tostring(s.info, encoding="unicode")
        streams.append((xml, s.fmt, ts, values))
    if markers:
        from stimloop.stream.xdf import info_xml

        streams.append((info_xml("exposure markers", "Markers", "psychopy-exposure-1",
                                 [{"label": "marker"}], 0.0, "string"), "string",
                        np.array([t for t, _ in markers]), [[m] for _, m in markers]))  # fmt: skip
    write_xdf(dst, streams)


@pytest.fixture(scope="session")
def rewrite_recording():
    """:func:`rewrite_with`, for test modules (tests/ is not a package)."""
    return rewrite_with
