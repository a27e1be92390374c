"""The stimloop command line, run as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stimloop.loop.cli import build_parser


def _stimloop(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=os.environ.copy(),
    )  # fmt: skip


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


@pytest.mark.slow
def test_demo_headless_json_summary_is_complete():
    out = _stimloop("demo", "--headless", "--duration", "8", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    for role, rate in (("eeg", 1000), ("ecg", 500), ("eda", 100)):
        s = summary["streams"][role]
        assert s["gaps"] == 0 and s["lost_samples"] == 0, s
        # Every sample between the first and last one received arrived.
        assert s["samples"] == s["expected_samples"], s
        assert s["samples"] >= 7 * rate
    assert "stages" in summary


def test_bad_arguments_are_rejected_with_a_message():
    out = _stimloop("demo", "--duration", "-1", "--headless")
    assert out.returncode == 2
    assert "duration_s must be > 0" in out.stderr
