"""Hypothesis strategies for fuzzing the control channel's parser (issue #15).

``parse_command`` (``loop/control.py``) reads whatever a local process writes on the
session's control socket. Its contract: a valid ``(cmd, args)`` of a known command with
known, typed arguments, or a :class:`~stimloop.loop.errors.ControlError`; nothing else,
whatever the bytes, and never a hang. The inputs here come in five families:

- raw bytes, up to a little over the size bound;
- any JSON document (nested values of every JSON type, NaN and huge numbers included);
- JSON objects shaped like commands: a known or unknown ``cmd`` with known, unknown and
  forged keys (``event``, ``t_trigger``...) of any type;
- valid commands as the client sends them, then mutated at the byte level (flips,
  insertions, deletions, duplications, truncation, brackets spliced in);
- deep nesting of ``[`` and ``{`` up to 70,000 levels, also hidden in strings.

Shared by ``tests/faults/test_fault_control_fuzz.py`` (bounded, in CI) and
``bench/fuzz_control.py`` (longer runs that count outcomes).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from stimloop.loop.control import COMMANDS, MAX_REQUEST, MAX_TEXT

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
#: Any JSON value (NaN and infinities as Python's json writes them).
json_values = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=5),
    max_leaves=30,
)  # fmt: skip

_ARG = {str: st.text(max_size=MAX_TEXT + 500), bool: st.booleans()}


@st.composite
def valid_commands(draw) -> tuple[str, dict[str, Any]]:
    """A command the client API could send: a known ``cmd`` with some of its arguments."""
    cmd = draw(st.sampled_from(sorted(COMMANDS)))
    spec = COMMANDS[cmd]
    keys = draw(st.lists(st.sampled_from(sorted(spec)), unique=True)) if spec else []
    return cmd, {k: draw(_ARG[spec[k]]) for k in keys}


def encode(cmd: str, args: dict[str, Any]) -> bytes:
    """A request as :func:`stimloop.loop.control.request` writes it (without newline)."""
    return json.dumps({"cmd": cmd, **args}).encode()


@st.composite
def command_like(draw) -> bytes:
    """A JSON object shaped like a command, with known, unknown and forged keys."""
    cmd = draw(st.sampled_from(sorted(COMMANDS)) | st.text(max_size=12) | json_values)
    known = sorted({k for spec in COMMANDS.values() for k in spec})
    keys = st.sampled_from([*known, "event", "t_trigger", "cmd", "peer"]) | st.text(max_size=8)
    extra = draw(st.dictionaries(keys, json_values, max_size=4))
    obj = {**extra, "cmd": cmd} if draw(st.booleans()) else {"cmd": cmd, **extra}
    return json.dumps(obj).encode()


@st.composite
def mutated(draw) -> bytes:
    """A valid request with one to five byte-level edits."""
    data = bytearray(encode(*draw(valid_commands())))
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(("flip", "insert", "delete", "duplicate", "brackets",
                                   "truncate")))  # fmt: skip
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 40))]
        elif op == "brackets":
            data[at:at] = draw(st.sampled_from((b"[", b"{", b'{"a":'))) * draw(st.integers(1, 3000))
        else:
            del data[at:]
    return bytes(data)


@st.composite
def deep(draw) -> bytes:
    """Nesting up to 70,000 levels (the reproduction was 60,000 ``[``), sometimes
    closed, sometimes inside a string that only looks like nesting."""
    n = draw(st.integers(0, 70_000))
    opener = draw(st.sampled_from((b"[", b"{", b'{"a":', b'{"cmd":"arm","text":')))
    body = opener * n
    if draw(st.booleans()):
        body += b"0" + draw(st.sampled_from((b"]", b"}"))) * n
    if draw(st.booleans()):
        body = b'{"cmd": "marker", "text": "' + body.replace(b'"', b'\\"') + b'"}'
    return body


def requests() -> st.SearchStrategy[bytes]:
    """Every family of input, as the server receives it (one line, newline removed)."""
    return st.one_of(
        st.binary(max_size=MAX_REQUEST + 64),
        json_values.map(lambda v: json.dumps(v).encode()),
        command_like(),
        mutated(),
        deep(),
    )


def nesting(value: Any) -> int:
    """Depth of arrays and objects in a parsed JSON value (0 for a scalar)."""
    if isinstance(value, list):
        return 1 + max((nesting(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((nesting(v) for v in value.values()), default=0)
    return 0


def check_outcome(data: bytes, cmd: str, args: dict[str, Any]) -> None:
    """What ``parse_command`` returned must be a command the session can run."""
    assert cmd in COMMANDS, (data[:80], cmd)
    spec = COMMANDS[cmd]
    assert set(args) <= set(spec), (cmd, args)
    for key, value in args.items():
        assert type(value) is spec[key] or isinstance(value, spec[key]), (cmd, key, value)
    assert len(args.get("text", "")) <= MAX_TEXT
