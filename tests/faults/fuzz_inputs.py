"""Hypothesis strategies for fuzzing the XDF reader and the session-config loader.

Shared by the bounded CI runs (``tests/faults/test_fuzz_*.py``) and the long runs
(``bench/fuzz.py``). Inputs are built three ways, because each reaches a different depth:

* **structured XDF files**: streams of every channel format, with odd headers
  (``channel_count`` of 0, -1 or "abc", rates of NaN), stamps that are missing, NaN or
  huge, clock offsets, boundaries and footers, in random order; then **mutated**
  (truncated, bytes overwritten, inserted or flipped) so that the damage lands inside
  chunks the reader otherwise trusts;
* **session configs**: the packaged demo session as a mapping with keys replaced by
  values of every TOML type, deleted, or added, fed to ``parse_session``; and the demo
  TOML text with characters mutated, fed to ``load_session`` through a file;
* **raw bytes**, with and without the XDF magic code.

Written from the XDF 1.0 specification (see ``stream/xdf.py``); no code is copied from
other fuzzers.
"""

from __future__ import annotations

import struct
import tomllib
from importlib import resources
from typing import Any

import numpy as np
from hypothesis import strategies as st

from stimloop.stream import xdf

FORMATS = [*xdf.FORMATS, "string"]


# -- XDF --------------------------------------------------------------------------------
def _header_xml(draw, fmt: str, n_ch: int, rate: float) -> str:
    """A StreamHeader <info>: mostly sane, sometimes with a hostile field."""
    odd = draw(st.integers(0, 9)) == 0
    count = (
        draw(st.sampled_from(["0", "-1", "1e9", "abc", "", "99999999999"])) if odd else str(n_ch)
    )
    srate = draw(st.sampled_from(["nan", "inf", "-5", "x", ""])) if odd else repr(rate)
    form = draw(st.sampled_from(["float128", "", "Int16", fmt])) if odd else fmt
    name = draw(st.text(max_size=8))
    esc = name.replace("&", "&amp;").replace("<", "&lt;")
    chans = "".join(f"<channel><label>c{i}</label></channel>" for i in range(min(n_ch, 4)))
    return (
        f'<?xml version="1.0"?><info><name>{esc}</name><type>EEG</type>'
        f"<channel_count>{count}</channel_count><nominal_srate>{srate}</nominal_srate>"
        f"<channel_format>{form}</channel_format><source_id>s</source_id>"
        f"<desc><channels>{chans}</channels></desc></info>"
    )


def _stamps(draw, n: int, rate: float) -> list[float | None]:
    """Per-sample stamps; None = written without a stamp (the XDF rule deduces it)."""
    t0 = draw(st.sampled_from([0.0, 1000.0, -1e9, 1e9, 1.7e9]))
    period = 1.0 / rate if rate > 0 else 0.25
    out: list[float | None] = [t0 + k * period for k in range(n)]
    for _ in range(draw(st.integers(0, 3))):
        if n:
            k = draw(st.integers(0, n - 1))
            out[k] = draw(
                st.one_of(
                    st.none(),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([1e9, -1e9, float("nan"), float("inf")]),
                )
            )
    return out


def _samples_chunk(sid: int, fmt: str, n_ch: int, stamps: list, values) -> bytes:
    """A Samples chunk in which some samples may carry no stamp (TimeStampBytes 0)."""
    body = [struct.pack("<I", sid), xdf.varlen_int(len(stamps))]
    for k, t in enumerate(stamps):
        body.append(b"\x00" if t is None else b"\x08" + struct.pack("<d", t))
        if fmt == "string":
            for text in values[k]:
                raw = text.encode("utf-8")
                body.append(xdf.varlen_int(len(raw)) + raw)
        else:
            body.append(np.asarray(values[k], dtype=xdf.FORMATS[fmt]).tobytes())
    return xdf.chunk(xdf.TAG_SAMPLES, b"".join(body))


@st.composite
def xdf_files(draw) -> bytes:
    """A structured XDF file, possibly with odd fields, not yet mutated."""
    parts = [xdf.file_header()]
    chunks: list[bytes] = []
    for sid in range(1, draw(st.integers(1, 3)) + 1):
        fmt = draw(st.sampled_from(FORMATS))
        n_ch = draw(st.integers(1, 3))
        rate = draw(st.sampled_from([0.0, 100.0, 512.0, 0.5]))
        chunks.append(xdf.stream_header(sid, _header_xml(draw, fmt, n_ch, rate)))
        for _ in range(draw(st.integers(0, 3))):
            n = draw(st.integers(0, 6))
            stamps = _stamps(draw, n, rate)
            if fmt == "string":
                values = [[draw(st.text(max_size=5)) for _ in range(n_ch)] for _ in range(n)]
            else:
                values = np.arange(n * n_ch).reshape(n, n_ch)
            chunks.append(_samples_chunk(sid, fmt, n_ch, stamps, values))
        for _ in range(draw(st.integers(0, 2))):
            t = draw(st.floats(allow_nan=True, allow_infinity=True))
            v = draw(st.floats(allow_nan=True, allow_infinity=True))
            chunks.append(xdf.clock_offset_chunk(sid, t, v))
        if draw(st.booleans()):
            chunks.append(xdf.stream_footer(sid, 0.0, 1.0, 3, [(0.0, 0.1)]))
        if draw(st.booleans()):
            chunks.append(xdf.boundary_chunk())
    # Headers first as writers do, the rest shuffled: readers meet any order.
    head = [c for c in chunks if c[c[0] + 1 : c[0] + 3] == struct.pack("<H", 2)]
    rest = [c for c in chunks if c not in head]
    parts += head + draw(st.permutations(rest))
    return b"".join(parts)


@st.composite
def mutated(draw, files) -> bytes:
    """Apply up to four byte-level mutations to a file drawn from ``files``."""
    data = bytearray(draw(files))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        op = draw(st.sampled_from(["truncate", "overwrite", "insert", "flip", "varlen"]))
        p = draw(st.integers(0, len(data) - 1))
        if op == "truncate":
            del data[p:]
        elif op == "overwrite":
            junk = draw(st.binary(min_size=1, max_size=8))
            data[p : p + len(junk)] = junk
        elif op == "insert":
            data[p:p] = draw(st.binary(min_size=1, max_size=8))
        elif op == "flip":
            data[p] ^= 1 << draw(st.integers(0, 7))
        else:  # a huge or invalid variable-length integer where a length may be
            data[p : p + 9] = draw(
                st.sampled_from([b"\x08" + b"\xff" * 8, b"\x04\xff\xff\xff\x7f", b"\x03"])
            )
    return bytes(data)


def xdf_inputs() -> st.SearchStrategy[bytes]:
    """Everything the XDF fuzzers feed: structured, mutated and raw files."""
    return st.one_of(
        xdf_files(),
        mutated(xdf_files()),
        st.binary(max_size=64).map(lambda b: xdf.MAGIC + b),
        st.binary(max_size=32),
    )


# -- session configs ---------------------------------------------------------------------
def demo_session_text() -> str:
    """The packaged demo session file (sources pointing at the simulators)."""
    return resources.files("stimloop.loop").joinpath("configs/demo.toml").read_text()


def _toml_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.text(max_size=12),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.datetimes(),
        st.dates(),
        st.times(),
        st.sampled_from(["simulated", "phase_locked", "C3", "", "none", "random_phase"]),
        st.sampled_from([0, -1, 1e308, 2**63, 1e-300, 100, 101]),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=8,
    )


def _tables(d: dict, path: tuple = ()) -> list[tuple]:
    out = [path]
    for k, v in d.items():
        if isinstance(v, dict):
            out += _tables(v, (*path, k))
    return out


@st.composite
def session_dicts(draw) -> dict:
    """The demo session as a mapping, with up to five keys replaced, added or removed."""
    data = tomllib.loads(demo_session_text())
    for _ in range(draw(st.integers(0, 5))):
        table_path = draw(st.sampled_from(_tables(data)))
        table = data
        for k in table_path:
            table = table[k]
        keys = list(table)
        op = draw(st.sampled_from(["replace", "add", "delete"]))
        if op == "delete" and keys:
            del table[draw(st.sampled_from(keys))]
        elif op == "replace" and keys:
            table[draw(st.sampled_from(keys))] = draw(_toml_values())
        else:
            table[draw(st.text(min_size=1, max_size=8))] = draw(_toml_values())
    return data


@st.composite
def session_texts(draw) -> bytes:
    """The demo session file with characters mutated, or arbitrary bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=200))
    text = demo_session_text()
    for _ in range(draw(st.integers(1, 6))):
        p = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["delete", "insert", "replace"]))
        piece = draw(
            st.one_of(
                st.text(max_size=6),
                st.sampled_from(["[", "]", "{", "=", '"', "\n", "[[sources.eeg]]", "\x00",
                                 "= nan", "= inf", "= 1e999", "[" * 200]),
            )
        )  # fmt: skip
        n = draw(st.integers(0, 20))
        if op == "delete":
            text = text[:p] + text[p + n :]
        elif op == "insert":
            text = text[:p] + piece + text[p:]
        else:
            text = text[:p] + piece + text[p + len(piece) :]
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


# -- the properties ----------------------------------------------------------------------
def xdf_outcome(path) -> tuple[str, str]:
    """Read ``path`` with ``read_xdf`` and the replay loader; check what comes back.

    Returns
    -------
    (str, str)
        ``("intact" | "damaged" | "XDFError" | "ReplayError", message)``.

    Raises
    ------
    AssertionError
        A returned file breaks an invariant (samples and stamps of different lengths,
        the wrong number of channels, messages without the file's name).
    Exception
        Anything else is a crash: the property is that nothing else escapes.
    """
    from stimloop.stream.replay import ReplayError, load_recording

    try:
        f = xdf.read_xdf(path)
    except xdf.XDFError as exc:
        assert str(path) in str(exc), f"XDFError without the file name: {exc}"
        return "XDFError", str(exc)
    for s in f.streams:
        n = len(s.time_stamps)
        assert len(s.time_series) == n, f"{len(s.time_series)} samples, {n} stamps"
        if s.fmt != "string":
            assert s.time_series.shape == (n, s.n_channels), s.time_series.shape
        assert s.synchronized_stamps().shape == (n,)
        assert len(xdf.channel_meta(s.info)) == s.n_channels
        assert s.rate_hz >= 0 and np.isfinite(s.rate_hz)
    try:
        load_recording(path, allow_corrupt=True)
    except ReplayError as exc:
        assert str(path) in str(exc), f"ReplayError without the file name: {exc}"
        return "ReplayError", str(exc)
    return ("damaged", f.damage) if f.damage else ("intact", "")


def session_dict_outcome(data: dict) -> tuple[str, str]:
    """``parse_session(data)``: ``("valid", "")`` or ``("SessionConfigError", message)``."""
    from stimloop.loop.config import SessionConfigError, parse_session

    try:
        parse_session(data, "fuzz.toml")
    except SessionConfigError as exc:
        assert "fuzz.toml" in str(exc), f"error without the origin: {exc}"
        return "SessionConfigError", str(exc)
    return "valid", ""


def session_file_outcome(path) -> tuple[str, str]:
    """``load_session(path)``: ``("valid", "")`` or ``("SessionConfigError", message)``."""
    from stimloop.loop.config import SessionConfigError, load_session

    try:
        load_session(path)
    except SessionConfigError as exc:
        assert str(path) in str(exc), f"error without the file name: {exc}"
        return "SessionConfigError", str(exc)
    return "valid", ""
