"""Finding 7 (its reading part) and the config-fuzzing acceptance of issue #15.

``load_session`` turns every file it cannot use into a ``SessionConfigError`` that
starts with the file's path: before, a binary file gave a bare ``UnicodeDecodeError``
with no file name, a FIFO or ``/dev/zero`` blocked or filled memory, and brackets nested
a few thousand deep overflowed the TOML reader's recursion. The fuzz tests feed
mutated demo sessions (text and mappings) from ``fuzz_inputs.py``; ``bench/fuzz.py``
runs the same strategies for minutes.
"""

from __future__ import annotations

import os
import tomllib

import pytest
from fuzz_inputs import (
    demo_session_text,
    session_dict_outcome,
    session_dicts,
    session_file_outcome,
    session_texts,
)
from hypothesis import HealthCheck, given, settings

from stimloop.loop.config import SessionConfigError, load_session

CI = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,  # a hang is caught by the test's timeout, not by timing examples
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-config")


def test_a_binary_config_is_an_error_that_names_the_file(tmp_path):
    """Finding 7: a binary config gave a UTF-8 error with no file name."""
    path = tmp_path / "session.toml"
    path.write_bytes(b'name = "x"\n\x00\xff\xfe binary')
    with pytest.raises(SessionConfigError) as err:
        load_session(path)
    assert str(err.value).startswith(f"session config {path} is not UTF-8 text")
    assert "byte 12 (line 2) is b'\\xff'" in str(err.value)


def test_a_fifo_or_an_oversized_file_is_refused_before_reading(tmp_path):
    """Finding 7 (reading part): a FIFO blocked ``load_session`` for ever (``/dev/zero``
    would fill memory); a 2 MB file was read whole. Neither is a session file."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(SessionConfigError, match=rf"{fifo} cannot be read: it is not a regular"):
        load_session(fifo)
    big = tmp_path / "big.toml"
    big.write_text(demo_session_text() + "#" * (2 << 20) + "\n")
    with pytest.raises(SessionConfigError, match=rf"{big} is \d+ bytes; a session file is TOML"):
        load_session(big)


def test_nesting_beyond_any_session_is_an_error_not_a_recursion_crash(tmp_path):
    """Finding 7 (reading part): ``a = [[[[…`` 100,000 deep raised RecursionError out of
    the TOML reader; 20 deep passed on to validation. Both now name the file."""
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(SessionConfigError, match=rf"{deep}: not a session file: .*nest too"):
        load_session(deep)
    twenty = tmp_path / "twenty.toml"
    twenty.write_text("[sources.eeg]\nx = " + "[" * 20 + "]" * 20 + "\n")
    with pytest.raises(SessionConfigError, match=r"sources\.eeg\.x\[0\].* more than 16 levels"):
        load_session(twenty)


@pytest.mark.timeout(120)
@CI
@given(data=session_texts())
def test_load_session_on_mutated_files_is_valid_or_a_named_error(work, data):
    """Config-fuzzing acceptance (issue #15): mutated demo sessions and arbitrary bytes
    through ``load_session``; every failure a SessionConfigError naming the file."""
    path = work / "input.toml"
    path.write_bytes(data)
    kind, _ = session_file_outcome(path)
    assert kind in ("valid", "SessionConfigError")


@pytest.mark.timeout(120)
@settings(CI, max_examples=100)  # parse_session takes ~50 ms: 100 examples, 5 s
@given(data=session_dicts())
def test_parse_session_on_mutated_mappings_is_valid_or_a_named_error(data):
    """Config-fuzzing acceptance (issue #15): the demo session as a mapping with keys
    replaced by values of every TOML type, added or removed, through ``parse_session``.
    This deterministic CI sample does not reach the crash below; bench/fuzz.py does."""
    kind, _ = session_dict_outcome(data)
    assert kind in ("valid", "SessionConfigError")


@pytest.mark.parametrize("safety", [[1], "abc"], ids=["list", "string"])
def test_a_stimulator_safety_that_is_not_a_table_is_a_named_error(safety):
    """Fuzz finding (bench/fuzz.py, about 2 in 1,000 mutated mappings): ``safety = [1]``
    raises TypeError and ``safety = "abc"`` a bare ValueError, naming neither the key
    nor the file. Fixed: the HAL section names it."""
    data = tomllib.loads(demo_session_text())
    data["stimulator"]["safety"] = safety
    kind, message = session_dict_outcome(data)
    assert kind == "SessionConfigError"
    assert "stimulator.safety" in message
