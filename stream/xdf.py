"""XDF files: a chunk encoder (the recorder's writer) and a reader that stops at damage.

Written from the XDF 1.0 specification (Kothe, "Format specification of XDF 1.0",
github.com/sccn/xdf/wiki/Specifications). A file is the magic ``b"XDF:"`` followed by
chunks. Each chunk is ``[NumLengthBytes][Length][Tag][Content]``: ``NumLengthBytes`` is
1, 4 or 8, ``Length`` (little-endian, that many bytes) counts the 2-byte tag plus the
content. Tags: FileHeader 1, StreamHeader 2, Samples 3, ClockOffset 4, Boundary 5,
StreamFooter 6. Stream chunks (2, 3, 4, 6) start with a uint32 StreamId.

A Samples chunk holds ``[NumSamples]`` (variable-length int as above), then per sample
``[TimeStampBytes]`` (0 or 8), the optional float64 timestamp and the values: numeric
channels little-endian, string channels each a variable-length byte count followed by
UTF-8 bytes. A ClockOffset chunk holds the collection time (float64, in the *sender's*
clock) and the offset (float64, local minus remote), as LabRecorder writes it, so that
``remote_timestamp + offset`` is local time. A Boundary chunk is the 16-byte UUID below,
which lets a reader resynchronise after damage.

The reference reader is pyxdf (``pyxdf.load_xdf``); the tests check our files with it.
:func:`read_xdf` here is stricter: it reports where a file is damaged and keeps
everything before that point, which is what replay of a truncated file needs.
"""

from __future__ import annotations

import os
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stimloop.stream.errors import StreamError
from stimloop.stream.files import open_private

MAGIC = b"XDF:"
TAG_FILE_HEADER = 1
TAG_STREAM_HEADER = 2
TAG_SAMPLES = 3
TAG_CLOCK_OFFSET = 4
TAG_BOUNDARY = 5
TAG_STREAM_FOOTER = 6
# The spec's fixed Boundary UUID (0x43A546DC-CBF5-410F-B30E-D5467383CBE4).
BOUNDARY_UUID = bytes.fromhex("43A546DCCBF5410FB30ED5467383CBE4")

# XDF channel formats and their little-endian numpy dtypes.
FORMATS: dict[str, np.dtype] = {
    "int8": np.dtype("<i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float32": np.dtype("<f4"),
    "double64": np.dtype("<f8"),
}
_MAX_CHUNK_BYTES = 1 << 32  # a sanity bound: no real chunk comes near 4 GiB
# Bounds on a StreamHeader. Readers allocate per channel and walk the XML, so a header
# claiming 1e11 channels or nesting 10,000 elements must be damage, not a stream: the
# largest amplifiers have a few thousand channels, and LSL infos are a few levels deep.
MAX_CHANNELS = 1 << 16
_MAX_XML_DEPTH = 64


class XDFError(StreamError):
    """An XDF file is missing, not XDF, or damaged in a way that cannot be read past."""


# -- encoding -------------------------------------------------------------------------
def varlen_int(n: int) -> bytes:
    """Encode ``n`` as an XDF variable-length integer (1-byte width, then the value)."""
    if n < 0:
        raise XDFError(f"XDF lengths are unsigned; got {n}")
    if n <= 0xFF:
        return struct.pack("<BB", 1, n)
    if n <= 0xFFFFFFFF:
        return struct.pack("<BI", 4, n)
    return struct.pack("<BQ", 8, n)


def chunk(tag: int, content: bytes) -> bytes:
    """One complete chunk: length prefix, tag and content."""
    return varlen_int(len(content) + 2) + struct.pack("<H", tag) + content


def file_header() -> bytes:
    """The magic code and the FileHeader chunk; every file starts with these bytes."""
    xml = b'<?xml version="1.0"?><info><version>1.0</version></info>'
    return MAGIC + chunk(TAG_FILE_HEADER, xml)


def stream_header(stream_id: int, info_xml: str) -> bytes:
    """A StreamHeader chunk carrying the stream's full LSL info XML."""
    return chunk(TAG_STREAM_HEADER, struct.pack("<I", stream_id) + info_xml.encode("utf-8"))


def samples_chunk(
    stream_id: int, fmt: str, timestamps: np.ndarray, values: np.ndarray | list
) -> bytes:
    """A Samples chunk with an explicit float64 timestamp on every sample.

    Parameters
    ----------
    stream_id : int
        The stream's id in this file.
    fmt : str
        XDF channel format (``"float32"``, ``"double64"``, ``"int16"`` …, or ``"string"``).
    timestamps : ndarray, shape (n,)
        Timestamps in s (the sender's LSL clock).
    values : ndarray, shape (n, n_channels), or list of lists of str
        The samples.
    """
    ts = np.asarray(timestamps, dtype="<f8")
    n = ts.shape[0]
    head = struct.pack("<I", stream_id) + varlen_int(n)
    if fmt == "string":
        parts = [head]
        for stamp, sample in zip(ts.tolist(), values, strict=True):
            parts.append(b"\x08" + struct.pack("<d", stamp))
            for text in sample:
                raw = str(text).encode("utf-8")
                parts.append(varlen_int(len(raw)) + raw)
        return chunk(TAG_SAMPLES, b"".join(parts))
    dtype = FORMATS[fmt]
    vals = np.asarray(values)
    n_ch = vals.shape[1]
    # A packed record per sample: [TimeStampBytes=8][float64 stamp][values], written by
    # one tobytes() instead of a Python loop.
    rec = np.empty(n, dtype=[("tsb", "u1"), ("ts", "<f8"), ("v", dtype, (n_ch,))])
    rec["tsb"] = 8
    rec["ts"] = ts
    rec["v"] = vals
    return chunk(TAG_SAMPLES, head + rec.tobytes())


def clock_offset_chunk(stream_id: int, collection_time: float, offset: float) -> bytes:
    """A ClockOffset chunk: collection time (sender clock, s) and offset (s)."""
    return chunk(TAG_CLOCK_OFFSET, struct.pack("<Idd", stream_id, collection_time, offset))


def boundary_chunk() -> bytes:
    """A Boundary chunk (the spec's fixed UUID)."""
    return chunk(TAG_BOUNDARY, BOUNDARY_UUID)


def stream_footer(
    stream_id: int,
    first_timestamp: float,
    last_timestamp: float,
    sample_count: int,
    clock_offsets: list[tuple[float, float]],
) -> bytes:
    """A StreamFooter chunk with first/last timestamp, sample count and clock offsets."""
    offsets = "".join(
        f"<offset><time>{t!r}</time><value>{v!r}</value></offset>" for t, v in clock_offsets
    )
    xml = (
        '<?xml version="1.0"?><info>'
        f"<first_timestamp>{first_timestamp!r}</first_timestamp>"
        f"<last_timestamp>{last_timestamp!r}</last_timestamp>"
        f"<sample_count>{sample_count}</sample_count>"
        f"<clock_offsets>{offsets}</clock_offsets></info>"
    )
    return chunk(TAG_STREAM_FOOTER, struct.pack("<I", stream_id) + xml.encode("utf-8"))


# -- reading --------------------------------------------------------------------------
@dataclass
class XDFStream:
    """One stream read from an XDF file.

    Attributes
    ----------
    stream_id : int
        Its id inside the file.
    info : xml.etree.ElementTree.Element
        The StreamHeader's ``<info>`` element (name, type, desc …).
    time_series : ndarray, shape (n, n_channels), or list of list of str
        The samples.
    time_stamps : ndarray, shape (n,)
        Timestamps in s, as recorded (sender clock, not yet offset-corrected).
    clock_times, clock_values : list of float
        ClockOffset measurements (sender-clock time, offset in s).
    footer : xml.etree.ElementTree.Element or None
        The StreamFooter's ``<info>``; None when the recording ended abruptly.
    """

    stream_id: int
    info: ET.Element
    time_series: np.ndarray | list = field(default_factory=list)
    time_stamps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    clock_times: list[float] = field(default_factory=list)
    clock_values: list[float] = field(default_factory=list)
    footer: ET.Element | None = None

    def text(self, key: str, default: str = "") -> str:
        """A top-level field of the header (``name``, ``type``, ``source_id`` …)."""
        value = self.info.findtext(key)
        return default if value is None else value

    @property
    def name(self) -> str:
        return self.text("name")

    @property
    def fmt(self) -> str:
        return self.text("channel_format", "float32")

    @property
    def n_channels(self) -> int:
        return int(self.text("channel_count", "1"))

    @property
    def rate_hz(self) -> float:
        return float(self.text("nominal_srate", "0"))

    def synchronized_stamps(self) -> np.ndarray:
        """Timestamps in the recording host's clock: stamps plus the clock offset.

        The offset is interpolated linearly between ClockOffset measurements (held
        constant beyond them), a simple form of the synchronisation pyxdf performs.
        Measurements with a non-finite time or value are left out (one NaN offset would
        otherwise make every stamp NaN), and the rest are taken in time order, which
        linear interpolation needs. The stamps themselves are returned as recorded:
        checking them is the caller's job (replay: ``stimloop.stream.replay``).
        """
        t = np.asarray(self.clock_times, dtype=np.float64)
        v = np.asarray(self.clock_values, dtype=np.float64)
        keep = np.isfinite(t) & np.isfinite(v)
        if not keep.any() or self.time_stamps.size == 0:
            return self.time_stamps
        order = np.argsort(t[keep], kind="stable")
        return self.time_stamps + np.interp(self.time_stamps, t[keep][order], v[keep][order])


@dataclass
class XDFFile:
    """What :func:`read_xdf` found.

    Attributes
    ----------
    streams : list of XDFStream
        In order of their StreamHeader.
    damage : str or None
        Why reading stopped before the end of the file (truncation or corruption, with
        the byte offset), or None for an intact file.
    """

    streams: list[XDFStream]
    damage: str | None = None


class _Truncated(Exception):
    pass


def _read_exact(buf: memoryview, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(buf):
        raise _Truncated
    return bytes(buf[pos : pos + n]), pos + n


def _read_varlen(buf: memoryview, pos: int) -> tuple[int, int]:
    width_b, pos = _read_exact(buf, pos, 1)
    width = width_b[0]
    if width not in (1, 4, 8):
        raise ValueError(f"variable-length integer of width {width}; XDF allows 1, 4 or 8")
    raw, pos = _read_exact(buf, pos, width)
    return int.from_bytes(raw, "little"), pos


def read_xdf(path: str | os.PathLike) -> XDFFile:
    """Read every stream of an XDF file, keeping all data before any damage.

    Parameters
    ----------
    path : str or path-like
        The ``.xdf`` file.

    Returns
    -------
    XDFFile
        Streams with samples and timestamps; ``damage`` names the byte offset and the
        problem when the file is truncated or corrupt (everything before it is kept).

    Raises
    ------
    XDFError
        The file does not exist, is not an XDF file (wrong magic code), or holds no
        readable stream header.
    """
    p = Path(path)
    if not p.is_file():
        raise XDFError(f"XDF file {str(p)!r} does not exist")
    data = p.read_bytes()
    if data[:4] != MAGIC:
        raise XDFError(
            f"{str(p)!r} is not an XDF file: it starts with {data[:4]!r}, expected {MAGIC!r}"
        )
    buf = memoryview(data)
    streams: dict[int, XDFStream] = {}
    series: dict[int, list] = {}
    stamps: dict[int, list[np.ndarray]] = {}
    damage = None
    pos = 4
    while pos < len(buf):
        start = pos
        try:
            length, pos = _read_varlen(buf, pos)
            if length < 2 or length > _MAX_CHUNK_BYTES:
                raise ValueError(f"chunk length {length} is impossible")
            if pos + length > len(buf):
                raise _Truncated
            (tag,) = struct.unpack_from("<H", buf, pos)
            body = buf[pos + 2 : pos + length]
            pos += length
            try:
                _read_chunk(tag, body, streams, series, stamps)
            except _Truncated:
                raise ValueError(f"tag {tag} content runs past its chunk length") from None
        except _Truncated:
            damage = f"file truncated: the chunk at byte {start} ends past the end of file"
            break
        except (ValueError, KeyError, struct.error, ET.ParseError, UnicodeDecodeError) as exc:
            damage = f"corrupt chunk at byte {start}: {exc}"
            break
    if not streams:
        why = f" ({damage})" if damage else ""
        raise XDFError(f"{str(p)!r} holds no readable stream{why}")
    for sid, s in streams.items():
        if s.fmt == "string":
            s.time_series = [v for part in series[sid] for v in part]
        else:
            n_ch = s.n_channels
            parts = series[sid] or [np.zeros((0, n_ch), FORMATS[s.fmt])]
            s.time_series = np.concatenate(parts)
        s.time_stamps = np.concatenate(stamps[sid]) if stamps[sid] else np.zeros(0)
    return XDFFile(list(streams.values()), damage)


def _read_chunk(
    tag: int,
    body: memoryview,
    streams: dict[int, XDFStream],
    series: dict[int, list],
    stamps: dict[int, list[np.ndarray]],
) -> None:
    if tag in (TAG_FILE_HEADER, TAG_BOUNDARY):
        if tag == TAG_BOUNDARY and bytes(body) != BOUNDARY_UUID:
            raise ValueError("boundary chunk without the spec's UUID")
        return
    if tag not in (TAG_STREAM_HEADER, TAG_SAMPLES, TAG_CLOCK_OFFSET, TAG_STREAM_FOOTER):
        raise ValueError(f"unknown chunk tag {tag}; XDF 1.0 defines tags 1-6")
    (sid,) = struct.unpack_from("<I", body, 0)
    rest = body[4:]
    if tag == TAG_STREAM_HEADER:
        if sid in streams:
            raise ValueError(f"a second StreamHeader for stream {sid}")
        info = ET.fromstring(bytes(rest).decode("utf-8"))
        _check_header(sid, info)
        streams[sid] = XDFStream(sid, info)
        series[sid], stamps[sid] = [], []
        return
    if sid not in streams:
        raise ValueError(f"chunk for stream {sid} before its StreamHeader")
    s = streams[sid]
    if tag == TAG_CLOCK_OFFSET:
        t, v = struct.unpack_from("<dd", rest, 0)
        s.clock_times.append(t)
        s.clock_values.append(v)
    elif tag == TAG_STREAM_FOOTER:
        s.footer = ET.fromstring(bytes(rest).decode("utf-8"))
    else:
        prev = stamps[sid][-1][-1] if stamps[sid] and stamps[sid][-1].size else None
        vals, ts = _decode_samples(rest, s, prev)
        series[sid].append(vals)
        stamps[sid].append(ts)


def _check_header(sid: int, info: ET.Element) -> None:
    """Refuse a StreamHeader whose fields cannot describe a stream (ValueError)."""
    count = info.findtext("channel_count", "1")
    try:
        n_ch = int(count)
    except ValueError:
        n_ch = 0
    if not 1 <= n_ch <= MAX_CHANNELS:
        raise ValueError(
            f"stream {sid}: channel_count {count!r}; expected an integer from 1 to {MAX_CHANNELS}"
        )
    srate = info.findtext("nominal_srate", "0")
    try:
        rate = float(srate)
    except ValueError:
        rate = float("nan")
    if not (np.isfinite(rate) and rate >= 0):
        raise ValueError(
            f"stream {sid}: nominal_srate {srate!r}; expected a finite rate >= 0 Hz (0 = irregular)"
        )
    fmt = info.findtext("channel_format", "float32")
    if fmt != "string" and fmt not in FORMATS:
        raise ValueError(
            f"stream {sid}: channel_format {fmt!r}; expected one of {[*FORMATS, 'string']}"
        )
    stack = [(info, 1)]
    while stack:
        el, depth = stack.pop()
        if depth > _MAX_XML_DEPTH:
            raise ValueError(f"stream {sid}: header XML nests deeper than {_MAX_XML_DEPTH}")
        stack += [(child, depth + 1) for child in el]


def _decode_samples(body: memoryview, s: XDFStream, prev: float | None) -> tuple:
    n, pos = _read_varlen(body, 0)
    # Every sample takes at least one byte (its TimeStampBytes): a count beyond the
    # chunk's size is damage, and must not size an allocation.
    if n > len(body) - pos:
        raise ValueError(f"{n} samples cannot fit in a chunk of {len(body)} bytes")
    n_ch = s.n_channels
    period = 1.0 / s.rate_hz if s.rate_hz > 0 else 0.0
    if s.fmt != "string":
        if s.fmt not in FORMATS:
            raise ValueError(f"channel format {s.fmt!r}; expected one of {sorted(FORMATS)}")
        dtype = FORMATS[s.fmt]
        rec = np.dtype([("tsb", "u1"), ("ts", "<f8"), ("v", dtype, (n_ch,))])
        if len(body) - pos == n * rec.itemsize:
            arr = np.frombuffer(body, rec, n, pos)
            if (arr["tsb"] == 8).all():  # the fast path: every sample carries its stamp
                return arr["v"].copy(), arr["ts"].copy()
    values: list = []
    ts = np.empty(n)
    for k in range(n):
        tsb, pos = _read_exact(body, pos, 1)
        if tsb[0] == 8:
            raw, pos = _read_exact(body, pos, 8)
            (ts[k],) = struct.unpack("<d", raw)
        elif tsb[0] == 0:
            # No stamp: the spec deduces it from the previous one and the nominal rate.
            base = ts[k - 1] if k else prev
            if base is None:
                raise ValueError("first sample of a stream has no timestamp")
            ts[k] = base + period
        else:
            raise ValueError(f"timestamp byte count {tsb[0]}; XDF allows 0 or 8")
        if s.fmt == "string":
            sample = []
            for _ in range(n_ch):
                size, pos = _read_varlen(body, pos)
                raw, pos = _read_exact(body, pos, size)
                sample.append(raw.decode("utf-8"))
            values.append(sample)
        else:
            raw, pos = _read_exact(body, pos, n_ch * dtype.itemsize)
            values.append(np.frombuffer(raw, dtype))
    if s.fmt == "string":
        return values, ts
    return (np.array(values, dtype=dtype).reshape(n, n_ch), ts)


def channel_meta(info: ET.Element) -> list[dict[str, str]]:
    """Per-channel ``label``, ``unit`` and ``type`` from an info's ``desc/channels``.

    Missing entries are filled with ``ch{i}`` labels and empty unit/type.
    """
    n = int(info.findtext("channel_count") or "1")
    out = []
    chans = info.find("desc/channels")
    if chans is not None:
        for ch in chans.findall("channel")[:n]:
            out.append(
                {
                    "label": ch.findtext("label") or f"ch{len(out)}",
                    "unit": ch.findtext("unit") or "",
                    "type": ch.findtext("type") or "",
                }
            )
    out += [{"label": f"ch{i}", "unit": "", "type": ""} for i in range(len(out), n)]
    return out


def info_xml(
    name: str,
    stype: str,
    source_id: str,
    channels: list[dict[str, str]],
    rate_hz: float,
    fmt: str,
    extra_desc: dict[str, str] | None = None,
) -> str:
    """A StreamHeader ``<info>`` document in liblsl's layout, for files written offline.

    Parameters
    ----------
    name, stype, source_id : str
        Stream identity.
    channels : list of dict
        ``label``, ``unit`` and ``type`` of each channel.
    rate_hz : float
        Nominal rate in Hz (0 = irregular).
    fmt : str
        XDF channel format (``"float32"``, ``"double64"`` …, ``"string"``).
    extra_desc : dict, optional
        More ``desc`` fields.
    """
    info = ET.Element("info")
    for key, value in (
        ("name", name), ("type", stype), ("channel_count", str(len(channels))),
        ("nominal_srate", repr(float(rate_hz))), ("channel_format", fmt),
        ("source_id", source_id),
    ):  # fmt: skip
        ET.SubElement(info, key).text = value
    desc = ET.SubElement(info, "desc")
    chans = ET.SubElement(desc, "channels")
    for c in channels:
        ch = ET.SubElement(chans, "channel")
        for key in ("label", "unit", "type"):
            ET.SubElement(ch, key).text = c.get(key, "")
    for key, value in (extra_desc or {}).items():
        ET.SubElement(desc, key).text = str(value)
    return '<?xml version="1.0"?>' + ET.tostring(info, encoding="unicode")


def write_xdf(
    path: str | os.PathLike,
    streams: list[tuple[str, str, np.ndarray, np.ndarray | list]],
    samples_per_chunk: int = 100,
) -> None:
    """Write a complete XDF file in one go (offline export, test fixtures).

    Parameters
    ----------
    path : str or path-like
        Output file.
    streams : list of (info_xml, fmt, timestamps, values)
        One entry per stream; see :func:`info_xml` and :func:`samples_chunk`.
    samples_per_chunk : int
        Samples per Samples chunk.

    The file is created readable by its owner only (0600, whatever the umask), as every
    recording is (:mod:`stimloop.stream.files`).
    """
    parts = [file_header()]
    for k, (xml, _, _, _) in enumerate(streams, start=1):
        parts.append(stream_header(k, xml))
    for k, (_, fmt, ts, values) in enumerate(streams, start=1):
        for i in range(0, len(ts), samples_per_chunk):
            parts.append(samples_chunk(k, fmt, ts[i : i + samples_per_chunk],
                                       values[i : i + samples_per_chunk]))  # fmt: skip
        parts.append(boundary_chunk())
    for k, (_, _, ts, _) in enumerate(streams, start=1):
        first, last = (float(ts[0]), float(ts[-1])) if len(ts) else (0.0, 0.0)
        parts.append(stream_footer(k, first, last, len(ts), []))
    with open_private(path, "wb") as f:
        f.write(b"".join(parts))
