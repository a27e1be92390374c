"""The XDF encoder against the specification and pyxdf; our reader against pyxdf."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import pyxdf

from stimloop.stream import xdf
from stimloop.stream.xdf import (
    XDFError,
    boundary_chunk,
    chunk,
    clock_offset_chunk,
    file_header,
    info_xml,
    read_xdf,
    samples_chunk,
    stream_footer,
    stream_header,
    varlen_int,
    write_xdf,
)


def _load(path, **kw):
    streams, header = pyxdf.load_xdf(str(path), dejitter_timestamps=False, **kw)
    return streams, header


def test_varlen_int_follows_the_spec():
    assert varlen_int(0) == b"\x01\x00"
    assert varlen_int(255) == b"\x01\xff"
    assert varlen_int(256) == b"\x04" + (256).to_bytes(4, "little")
    assert varlen_int(2**32 - 1) == b"\x04\xff\xff\xff\xff"
    assert varlen_int(2**32) == b"\x08" + (2**32).to_bytes(8, "little")
    with pytest.raises(XDFError, match="unsigned; got -1"):
        varlen_int(-1)


def test_chunk_layout_and_boundary_uuid():
    # [NumLengthBytes][Length = 2 + content][Tag uint16][Content]
    assert chunk(7, b"abc") == b"\x01\x05\x07\x00abc"
    uuid = bytes([0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F,
                  0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4])  # fmt: skip
    assert boundary_chunk() == b"\x01\x12\x05\x00" + uuid
    assert file_header().startswith(b"XDF:\x01")
    assert clock_offset_chunk(3, 1.5, -0.25) == chunk(4, struct.pack("<Idd", 3, 1.5, -0.25))


@pytest.mark.parametrize("fmt", ["int8", "int16", "int32", "int64", "float32", "double64"])
def test_numeric_formats_round_trip_through_pyxdf(tmp_path, fmt):
    rng = np.random.default_rng(0)
    dtype = xdf.FORMATS[fmt]
    if dtype.kind == "i":
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, (1000, 3), endpoint=True).astype(dtype)
    else:
        values = rng.normal(0, 1e3, (1000, 3)).astype(dtype)
    ts = 50.0 + np.arange(1000) / 250.0
    chans = [{"label": f"c{i}", "unit": "uV", "type": "EEG"} for i in range(3)]
    path = tmp_path / f"{fmt}.xdf"
    write_xdf(path, [(info_xml("s", "EEG", "sid", chans, 250.0, fmt), fmt, ts, values)], 333)
    (s,), header = _load(path)
    assert header["info"]["version"] == ["1.0"]
    np.testing.assert_array_equal(s["time_series"], values)
    assert s["time_series"].dtype == dtype
    np.testing.assert_array_equal(s["time_stamps"], ts)
    foot = s["footer"]["info"]
    assert int(foot["sample_count"][0]) == 1000
    assert float(foot["first_timestamp"][0]) == ts[0]
    assert float(foot["last_timestamp"][0]) == ts[-1]
    ours = read_xdf(path)
    assert ours.damage is None
    np.testing.assert_array_equal(ours.streams[0].time_series, values)
    np.testing.assert_array_equal(ours.streams[0].time_stamps, ts)


def test_strings_multichannel_and_long(tmp_path):
    values = [["a", "ü✓"], ["x" * 70_000, ""], ["line\nbreak", "tab\t"]]
    ts = np.array([1.0, 2.0, 3.5])
    chans = [{"label": "m1"}, {"label": "m2"}]
    path = tmp_path / "s.xdf"
    write_xdf(path, [(info_xml("m", "Markers", "mk", chans, 0.0, "string"), "string", ts,
                      values)])  # fmt: skip
    (s,), _ = _load(path)
    assert s["time_series"] == values
    np.testing.assert_array_equal(s["time_stamps"], ts)
    assert read_xdf(path).streams[0].time_series == values


def test_clock_offsets_and_footer_as_pyxdf_reads_them(tmp_path):
    ts = 10.0 + np.arange(100) / 100.0
    vals = np.arange(100, dtype=np.float32)[:, None]
    xml = info_xml("s", "EEG", "sid", [{"label": "c"}], 100.0, "float32")
    parts = [file_header(), stream_header(1, xml), clock_offset_chunk(1, 9.0, 0.5),
             samples_chunk(1, "float32", ts[:50], vals[:50]), clock_offset_chunk(1, 11.0, 0.5),
             boundary_chunk(), samples_chunk(1, "float32", ts[50:], vals[50:]),
             stream_footer(1, ts[0], ts[-1], 100, [(9.0, 0.5), (11.0, 0.5)])]  # fmt: skip
    path = tmp_path / "c.xdf"
    path.write_bytes(b"".join(parts))
    (s,), _ = _load(path)
    np.testing.assert_allclose(s["time_stamps"], ts + 0.5)  # synchronised with the offsets
    np.testing.assert_array_equal(s["clock_times"], [9.0, 11.0])
    offsets = s["footer"]["info"]["clock_offsets"][0]["offset"]
    assert [(o["time"][0], o["value"][0]) for o in offsets] == [("9.0", "0.5"), ("11.0", "0.5")]
    np.testing.assert_allclose(read_xdf(path).streams[0].synchronized_stamps(), ts + 0.5)


def test_reader_deduces_missing_timestamps(tmp_path):
    """The spec lets a sample omit its stamp; it is the previous one plus 1 / rate."""
    xml = info_xml("s", "EEG", "sid", [{"label": "c"}], 10.0, "int16")
    body = struct.pack("<I", 1) + varlen_int(3)
    body += b"\x08" + struct.pack("<d", 5.0) + struct.pack("<h", 7)
    body += b"\x00" + struct.pack("<h", 8) + b"\x00" + struct.pack("<h", 9)
    path = tmp_path / "d.xdf"
    path.write_bytes(file_header() + stream_header(1, xml) + chunk(3, body))
    (s,), _ = _load(path)
    ours = read_xdf(path).streams[0]
    np.testing.assert_allclose(ours.time_stamps, [5.0, 5.1, 5.2])
    np.testing.assert_allclose(ours.time_stamps, s["time_stamps"])
    np.testing.assert_array_equal(ours.time_series[:, 0], [7, 8, 9])


def test_reader_reports_damage_with_the_byte_offset(tmp_path):
    ts = np.arange(300) / 100.0
    vals = np.ones((300, 2), np.float32)
    path = tmp_path / "w.xdf"
    xml = info_xml("s", "EEG", "sid", [{"label": "a"}, {"label": "b"}], 100.0, "float32")
    write_xdf(path, [(xml, "float32", ts, vals)], 100)
    whole = path.read_bytes()
    cut = tmp_path / "cut.xdf"
    cut.write_bytes(whole[:-100])  # inside the footer
    f = read_xdf(cut)
    assert f.damage.startswith("file truncated: the chunk at byte")
    assert len(f.streams[0].time_stamps) == 300 and f.streams[0].footer is None
    bad = bytearray(whole)
    first_samples = whole.index(b"\x03\x00\x01\x00\x00\x00")  # tag 3, stream 1
    bad[first_samples : first_samples + 2] = b"\x63\x00"  # tag 99
    (tmp_path / "bad.xdf").write_bytes(bytes(bad))
    f = read_xdf(tmp_path / "bad.xdf")
    assert "unknown chunk tag 99; XDF 1.0 defines tags 1-6" in f.damage
    assert f"corrupt chunk at byte {first_samples - 5}" in f.damage
    with pytest.raises(XDFError, match="does not exist"):
        read_xdf(tmp_path / "none.xdf")
