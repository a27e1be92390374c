"""Fuzzing the control channel's parser (issue #15, finding 1 and "Acceptance").

The old server caught ValueError, KeyError, AttributeError and TypeError around
``json.loads``; 60,000 ``[`` raised RecursionError, which escaped and ended the thread.
Bounded and derandomised here so CI runs the same few hundred examples of each family
in a few seconds; ``bench/fuzz_control.py`` runs longer and counts the outcomes.
"""

from __future__ import annotations

import json
from datetime import timedelta

from fuzz_control_inputs import (
    check_outcome,
    encode,
    json_values,
    nesting,
    requests,
    valid_commands,
)
from hypothesis import HealthCheck, given, settings

from stimloop.loop.control import MAX_REQUEST, MAX_TEXT, _depth, parse_command
from stimloop.loop.errors import ControlError

BOUNDED = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    # Generous: parsing 16 KiB takes microseconds; a hang shows here, a busy CI does not.
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example],
)  # fmt: skip


@BOUNDED
@given(requests())
def test_any_input_gives_a_valid_command_or_a_control_error(data):
    """Finding 1: whatever arrives, ``parse_command`` returns a known command with known,
    typed arguments, or raises ControlError; nothing else escapes (the old parser let
    RecursionError out and the control thread died). What it accepts reads back the
    same when sent again."""
    try:
        cmd, args = parse_command(data)
    except ControlError:
        return
    check_outcome(data, cmd, args)
    assert parse_command(encode(cmd, args)) == (cmd, args)


@BOUNDED
@given(valid_commands())
def test_every_command_the_client_can_send_is_accepted_as_sent(command):
    """The bounds refuse nothing the client API sends: each valid command parses back
    to itself (a marker's text cut at the documented length)."""
    cmd, args = command
    expected = dict(args)
    if "text" in expected:
        expected["text"] = expected["text"][:MAX_TEXT]
    assert parse_command(encode(cmd, args)) == (cmd, expected)


@BOUNDED
@given(json_values)
def test_the_depth_guard_measures_what_json_would_nest(value):
    """The nesting guard runs before ``json.loads`` on the raw bytes; for every JSON
    document it must count what the parser would nest, strings and escapes ignored,
    so a deep request is refused before parsing and no shallow one is."""
    data = json.dumps(value).encode()
    if len(data) <= MAX_REQUEST:
        assert _depth(data) == nesting(value)
