"""The stimloop command line, run as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stimloop.loop.cli import build_parser


def _stimloop(*args: str, timeout: float = 120.0, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **env},
    )  # fmt: skip


def _subparsers():
    return build_parser()._subparsers._group_actions[0].choices


def test_every_subcommand_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {
        "demo",
        "run",
        "simulate",
        "streams",
        "devices",
        "estop",
        "record",
        "replay",
        "analyze",
        "gui",
    } <= set(commands)
    for name in commands:
        out = _stimloop(name, "--help")
        assert out.returncode == 0, out.stderr
        assert "usage: stimloop" in out.stdout


def test_every_option_says_what_it_does_its_default_and_its_choices():
    import argparse

    for name, sub in _subparsers().items():
        text = " ".join(sub.format_help().split())  # the formatter wraps lines
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
            if action.choices:
                assert all(str(c) in text for c in action.choices), (name, action.dest)
            if action.option_strings and action.default not in (None, False, [], ""):
                said = f"(default: {action.default})" in text or "default" in action.help
                assert said, (name, action.dest)
        assert "(default: None)" not in text and "(default: False)" not in text, name


def test_estop_with_no_session_running_says_so_and_fails(runtime_dir):
    out = _stimloop("estop", STIMLOOP_RUNTIME_DIR=str(runtime_dir))
    assert out.returncode == 1
    assert "no running session acknowledged" in out.stderr
    assert "hardware" not in out.stdout and "stop button" in out.stderr


def test_gui_without_a_display_fails_cleanly():
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "stimloop.loop.cli", "gui"],
                         capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert out.returncode == 2
    assert "no display" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_demo_summary_is_the_report_analyze_prints_for_its_recording(cli_demo):
    """Every figure the demo prints comes from the file it wrote: analyze agrees. The demo
    calibrates first: the band is locked from the rest and no pulse comes before it.
    (``stimloop demo --headless --duration 35 --calibration 22 --json --record``, run
    once for this test and the figure test: tests/conftest.py.)"""
    summary, xdf, _ = cli_demo
    for role, rate in (("eeg", 1000), ("ecg", 500), ("eda", 100)):
        s = summary["health"][role]
        assert s["gaps"] == 0 and s["lost_samples"] == 0, s
        # Every sample between the first and last one received arrived.
        assert s["samples"] == s["expected_samples"], s
        assert s["samples"] >= 8 * rate
    truth = summary["truth"]
    h, e = truth["heart"], truth["eda"]
    # Counted in one span: detected = matched + false, true = matched + missed.
    assert h["beats_detected"] == h["true_positives"] + h["false_positives"]
    assert h["beats_true"] == h["true_positives"] + h["false_negatives"]
    assert e["scr_detected"] == e["tp"] + e["fp"] and e["scr_true"] == e["tp"] + e["fn"]
    assert truth["pulses"]["true_phase_error"]["n"] == summary["pulses"]["delivered"]
    cal = summary["phase_calibration"]
    assert cal["state"] == "locked" and cal["recommendation"] == "ok", cal
    lo, hi = cal["band_hz"]
    assert lo < cal["iaf_hz"] < hi and abs(cal["iaf_hz"] - 10.0) < 1.0  # the simulated mu
    assert summary["pulses"]["delivered"] >= 2 and cal["first_pulse_t"] > cal["t"]
    analyzed = _stimloop("analyze", str(xdf), "--json")
    assert analyzed.returncode == 0, analyzed.stderr
    report = json.loads(analyzed.stdout)
    shared = set(report) - {"file"}
    assert shared <= set(summary)
    for key in sorted(shared):
        assert json.dumps(report[key], default=float) == json.dumps(summary[key], default=float), (
            key
        )
    text = _stimloop("analyze", str(xdf))
    assert f"{h['beats_detected']} detected, {h['beats_true']} true" in text.stdout
    assert f"phase calibration: band {lo:.2f}-{hi:.2f} Hz locked" in text.stdout


def test_bad_arguments_are_rejected_with_a_message():
    out = _stimloop("demo", "--duration", "-1", "--headless")
    assert out.returncode == 2
    assert "duration_s must be > 0" in out.stderr
    assert "Traceback" not in out.stderr
