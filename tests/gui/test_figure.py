"""``stimloop analyze --plot``: the offline figure of a recorded demo session, drawn with
the live window's panels, agrees with what the session measured live."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from pyqtgraph.Qt import QtGui

from stimloop.loop.report import figure_data, read_session, session_report


def _pixels(path) -> np.ndarray:
    img = QtGui.QImage(str(path)).convertToFormat(QtGui.QImage.Format.Format_RGB888)
    assert not img.isNull(), f"{path} is not an image"
    w, h, stride = img.width(), img.height(), img.bytesPerLine()
    raw = np.frombuffer(img.constBits(), np.uint8, count=stride * h).reshape(h, stride)
    return raw[:, : 3 * w].reshape(h, w, 3).copy()


def _has_colour(region: np.ndarray, hex_colour: str, tol: int = 40) -> int:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(region.astype(int) - rgb).max(axis=2) < tol).sum())


@pytest.mark.slow
def test_analyze_plot_agrees_with_the_live_session(cli_demo, tmp_path, qapp):
    # The recorded `stimloop demo` session the CLI test reads too (tests/conftest.py):
    # 35 s, the first 22 s calibrating; the demo simulators (seed 0) make an SCR about
    # 14 s in, and the pulses come after the calibration.
    summary, xdf, source_id = cli_demo
    assert summary["recordings"] == [str(xdf)]
    live = summary["truth"]["pulses"]["true_phase"]
    assert live["n"] >= 3, summary["pulses"]

    # The report, from the file alone: the truth was recorded with the session.
    rec = read_session(xdf)
    assert rec.truth_source_ids.get("eeg") == f"{source_id}-eeg-truth"
    report = session_report(rec)
    offline = report["truth"]["pulses"]["true_phase"]
    assert offline["n"] == live["n"] == summary["pulses"]["delivered"]
    assert offline["mean_deg"] == pytest.approx(live["mean_deg"], abs=1e-6)

    # Each SCR mark sits on the trace at the SCR's true onset, at the foot of its rise
    # (issue #14: with the tonic SCL drawn, marks looked 2 s early: the trace lagged).
    data = figure_data(rec)
    t0 = data["pulse_t"][0] - (rec.pulse_t[0])  # figure time = LSL time + t0
    true_onsets = rec.truth_series("eda")[0] + t0
    assert data["scr_t"].size >= 1
    for t_mark, level in zip(data["scr_t"], data["scr_level"], strict=True):
        assert np.min(np.abs(true_onsets - t_mark)) < 0.5
        later = np.interp(t_mark + 2.0, data["eda_t"], data["eda"])
        assert level < later - 0.02, "the trace must rise after the mark"

    png = tmp_path / "report.png"
    out = subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", "analyze", str(xdf), "--plot", str(png),
         "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    fig = json.loads(out.stdout)["figure"]
    assert fig["phase"]["n"] == live["n"] and fig["n_true"] == live["n"]
    assert f"pulses {live['n']} (true phase)" in fig["phase_text"]
    assert all(fig["points"][k] > 10 for k in ("heart rate", "skin conductance", "alpha amplitude"))

    px = _pixels(png)
    h, w, _ = px.shape
    assert (w, h) == (1400, 860)
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 50, "the figure is blank"
    trends, side = px[:, : int(w * 0.58)], px[:, int(w * 0.6) :]
    # Each panel's own colour where that panel is: HR red and SCL green on the left,
    # the histogram's orange bars on the right.
    assert _has_colour(trends[: h // 4], "#d62728") > 200
    assert _has_colour(trends[h // 4 : h // 2], "#2ca02c") > 200
    assert _has_colour(trends[h // 2 : 3 * h // 4], "#9467bd") > 200
    assert _has_colour(side[: int(h * 0.7)], "#ff7f0e") > 100


def test_analyze_plot_of_a_file_that_is_not_a_session(tmp_path):
    bad = tmp_path / "x.xdf"
    bad.write_bytes(b"not xdf at all")
    out = subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", "analyze", str(bad), "--plot",
         str(tmp_path / "r.png")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert "x.xdf" in out.stderr
    assert not (tmp_path / "r.png").exists()
