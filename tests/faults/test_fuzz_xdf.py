"""Acceptance of issue #15: the XDF reader, fuzzed, never crashes, hangs or errs untyped.

The bounded CI run feeds ``read_xdf`` (and the replay loader behind ``stimloop replay``)
structured, mutated and raw files from ``fuzz_inputs.py``, deterministically
(``derandomize``), a few seconds' worth; ``bench/fuzz.py`` runs the same strategies for
minutes. Every outcome must be a file (intact, or with its damage named) or an
``XDFError``/``ReplayError`` naming the file. The tests after it pin each defect the
fuzzer found, with the input that showed it.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from fuzz_inputs import xdf_inputs, xdf_outcome
from hypothesis import HealthCheck, given, settings

from stimloop.stream import xdf
from stimloop.stream.replay import load_recording

CI = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,  # a hang is caught by the test's timeout, not by timing examples
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-xdf")


@pytest.mark.timeout(120)
@CI
@given(data=xdf_inputs())
def test_read_xdf_returns_or_raises_a_typed_error_naming_the_file(work, data):
    """Fuzzing acceptance (issue #15): no crash, hang or untyped error in read_xdf."""
    path = work / "input.xdf"
    path.write_bytes(data)
    kind, message = xdf_outcome(path)
    assert kind in ("intact", "damaged", "XDFError", "ReplayError")
    assert kind == "intact" or message


def _header(sid: int, **fields: str) -> bytes:
    info = {"name": "s", "type": "EEG", "channel_count": "1", "nominal_srate": "100.0",
            "channel_format": "float32", "source_id": "s", **fields}  # fmt: skip
    body = "".join(f"<{k}>{v}</{k}>" for k, v in info.items())
    return xdf.stream_header(sid, f'<?xml version="1.0"?><info>{body}</info>')


def _samples(sid: int, ts: np.ndarray) -> bytes:
    return xdf.samples_chunk(sid, "float32", ts, np.zeros((len(ts), 1), np.float32))


def _file(tmp_path, *chunks: bytes):
    path = tmp_path / "f.xdf"
    path.write_bytes(xdf.file_header() + b"".join(chunks))
    return path


GOOD = _header(1)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("channel_format", "float128", r"channel_format 'float128'; expected one of"),
        ("channel_count", "100000", r"channel_count '100000'; expected an integer from 1"),
        ("channel_count", "abc", r"channel_count 'abc'"),
        ("channel_count", "0", r"channel_count '0'"),
        ("nominal_srate", "nan", r"nominal_srate 'nan'; expected a finite rate >= 0 Hz"),
        ("nominal_srate", "-5", r"nominal_srate '-5'"),
    ],
    ids=["float128", "1e5-channels", "abc-channels", "0-channels", "nan-rate", "negative-rate"],
)
def test_a_header_that_cannot_describe_a_stream_is_damage(tmp_path, field, value, message):
    """Fuzz finding: ``float128`` crashed read_xdf with KeyError; 99999999999 channels made
    the replay loader build 1e11 channel descriptions (23 GB, killed by the OOM killer);
    "abc" channels or a NaN rate raised ValueError from a property. The header is now
    checked where it is read, and the streams before it are kept."""
    path = _file(tmp_path, GOOD, _samples(1, np.arange(3.0)), _header(2, **{field: value}))
    f = xdf.read_xdf(path)
    assert f.damage is not None
    assert f.damage.startswith("corrupt chunk at byte ")
    assert re.search(message, f.damage), f.damage
    assert [s.stream_id for s in f.streams] == [1]
    np.testing.assert_array_equal(f.streams[0].time_stamps, np.arange(3.0))


def test_a_sample_count_larger_than_its_chunk_is_damage_not_an_allocation(tmp_path):
    """Fuzz finding: a Samples chunk claiming 2**40 samples (with stamps omitted) made the
    reader allocate 8 TiB for their stamps: MemoryError, a crash."""
    body = struct.pack("<I", 1) + xdf.varlen_int(2**40) + b"\x00" * 16
    path = _file(tmp_path, GOOD, _samples(1, np.arange(3.0)), xdf.chunk(xdf.TAG_SAMPLES, body))
    f = xdf.read_xdf(path)
    assert "1099511627776 samples cannot fit in a chunk of" in f.damage
    assert len(f.streams[0].time_stamps) == 3


def test_a_second_header_for_a_stream_is_damage_not_a_silent_reset(tmp_path):
    """Fuzz finding: a repeated StreamHeader for a stream id silently threw away the
    samples read before it. It is now damage, and those samples are kept."""
    path = _file(tmp_path, GOOD, _samples(1, np.arange(5.0)), GOOD, _samples(1, np.arange(2.0)))
    f = xdf.read_xdf(path)
    assert "a second StreamHeader for stream 1" in f.damage
    np.testing.assert_array_equal(f.streams[0].time_stamps, np.arange(5.0))


def test_a_header_nested_ten_thousand_deep_is_damage(tmp_path):
    """Fuzz finding: a header whose desc nests 10,000 elements was accepted, and replaying
    it failed with RecursionError when its desc was copied into the outlet."""
    deep = "<a>" * 10_000 + "</a>" * 10_000
    path = _file(tmp_path, GOOD, _samples(1, np.arange(3.0)), _header(2, desc=deep))
    f = xdf.read_xdf(path)
    assert "header XML nests deeper than 64" in f.damage
    rec = load_recording(path, allow_corrupt=True)
    assert [s.name for s in rec.streams] == ["s"]
