"""Replay recordings as LSL streams with their original relative timing.

Sources:

* XDF files (every stream, markers included), read with :func:`stimloop.stream.xdf.read_xdf`;
  a truncated file replays up to the damage (logged as a warning).
* Anything ``mne.io.read_raw`` opens (EDF, BDF, FIF, BrainVision …): one stream with all
  channels, plus its annotations as a marker stream.
* WFDB records (the path of the ``.hea`` file without extension, e.g.
  ``../shared/data/mitbih/100``): one stream, plus the ``.atr`` annotations as markers.
  Needs the ``wfdb`` package, imported only then (it is in the ``test`` extra).

Timing: all streams share one origin, the earliest timestamp in the file. A sample with
original timestamp ``t`` is stamped ``t_start + (t - origin) / speed`` on the LSL clock
(``pylsl.local_clock()``) and pushed when that time comes, so cross-stream timing is kept.
Every push is scheduled against the absolute deadline of its last sample, computed from
``t_start`` rather than from the previous push, so lateness never accumulates into drift.
Nominal rates, labels, units and types are kept; each stream's ``desc`` also carries
``replay_file`` and ``replay_speed``.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pylsl

from stimloop.stream import xdf
from stimloop.stream.errors import StreamError

log = logging.getLogger("stimloop.stream.replay")

_LSL_FORMATS = {
    "float32": pylsl.cf_float32,
    "double64": pylsl.cf_double64,
    "int8": pylsl.cf_int8,
    "int16": pylsl.cf_int16,
    "int32": pylsl.cf_int32,
    "int64": pylsl.cf_int64,
    "string": pylsl.cf_string,
}
# Voltage units in mne.io.Raw are volts; stimloop publishes them in the file's own unit.
_VOLT_SCALE = {"V": 1.0, "mV": 1e3, "uV": 1e6, "µV": 1e6, "μV": 1e6, "nV": 1e9}
_VOLT_TYPES = {"eeg", "ecg", "eog", "emg", "seeg", "ecog", "dbs", "bio", "ref_meg"}
_MNE_EXTS = (".edf", ".bdf", ".gdf", ".fif", ".fif.gz", ".vhdr", ".set", ".cnt", ".mff")
_ECG_LEADS = {"MLII", "MLI", "MLIII", "I", "II", "III", "AVR", "AVL", "AVF", "ECG", "EKG"}
_ECG_LEADS |= {f"V{i}" for i in range(1, 7)} | {f"MLV{i}" for i in range(1, 7)}
_WALL_CHUNK_S = 0.01  # default push period in wall-clock seconds


class ReplayError(StreamError):
    """A recording cannot be replayed: missing, unknown format, or unreadable."""


@dataclass
class ReplayStream:
    """One stream to replay.

    Attributes
    ----------
    name, type, source_id : str
        Stream identity (``source_id`` without the replay suffix).
    fmt : str
        XDF channel format (``"float32"``, ``"double64"``, ``"int16"`` …, ``"string"``).
    rate_hz : float
        Nominal rate in Hz (0 = irregular, e.g. markers).
    channels : list of dict
        ``label``, ``unit``, ``type`` of each channel.
    data : ndarray, shape (n, n_channels), or list of list of str
        The samples.
    timestamps : ndarray, shape (n,)
        Original timestamps in s (any origin).
    desc : xml.etree.ElementTree.Element, optional
        The original ``desc`` to copy into the outlet (XDF sources).
    """

    name: str
    type: str
    source_id: str
    fmt: str
    rate_hz: float
    channels: list[dict[str, str]]
    data: np.ndarray | list
    timestamps: np.ndarray
    desc: ET.Element | None = None

    def __len__(self) -> int:
        return len(self.timestamps)


@dataclass
class Recording:
    """The streams of one file, ready to replay.

    Attributes
    ----------
    path : Path
        The source.
    kind : str
        ``"xdf"``, ``"mne"`` or ``"wfdb"``.
    streams : list of ReplayStream
        Streams in file order.
    damage : str or None
        For XDF files, why reading stopped early (truncation/corruption), else None.
    """

    path: Path
    kind: str
    streams: list[ReplayStream]
    damage: str | None = None

    @property
    def origin(self) -> float:
        """Earliest timestamp over all streams, in s."""
        firsts = [s.timestamps[0] for s in self.streams if len(s)]
        return float(min(firsts)) if firsts else 0.0

    @property
    def duration_s(self) -> float:
        """From the earliest to the latest timestamp, in s."""
        lasts = [s.timestamps[-1] for s in self.streams if len(s)]
        return float(max(lasts)) - self.origin if lasts else 0.0


# -- loading ----------------------------------------------------------------------------
def load_recording(path: str | os.PathLike, *, allow_corrupt: bool = False) -> Recording:
    """Load a recording for replay, choosing the reader from the file name.

    Parameters
    ----------
    path : str or path-like
        An ``.xdf`` file; a file ``mne.io.read_raw`` opens (``.edf``, ``.bdf``, ``.fif``,
        ``.vhdr`` …); or a WFDB record (``.hea`` path, with or without the extension).
    allow_corrupt : bool
        Replay the intact part of an XDF file that is corrupt in the middle (garbage
        where a chunk should be). A merely *truncated* file (the usual result of a
        crash) always replays up to the damage, with a warning.

    Raises
    ------
    ReplayError
        The file is missing, its format unknown, or it cannot be read; the message names
        the path and the problem.
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".xdf"):
        return _load_xdf(p, allow_corrupt)
    wfdb_header = p if name.endswith(".hea") else p.with_name(p.name + ".hea")
    if name.endswith(".hea") or (not p.suffix and wfdb_header.is_file()):
        return _load_wfdb(wfdb_header)
    if name.endswith(_MNE_EXTS):
        return _load_mne(p)
    if not p.exists():
        hint = f" (nor does {wfdb_header.name}, for a WFDB record)" if not p.suffix else ""
        raise ReplayError(f"recording {str(p)!r} does not exist{hint}")
    raise ReplayError(
        f"unknown recording format {p.suffix or '(no extension)'!r} of {str(p)!r}; "
        f"replay reads .xdf, WFDB records (path without extension, with a .hea beside it) "
        f"and what mne.io.read_raw opens: {', '.join(_MNE_EXTS)}"
    )


def _load_xdf(p: Path, allow_corrupt: bool) -> Recording:
    try:
        f = xdf.read_xdf(p)
    except xdf.XDFError as exc:
        raise ReplayError(str(exc)) from exc
    if f.damage and f.damage.startswith("corrupt") and not allow_corrupt:
        raise ReplayError(
            f"{str(p)!r} is corrupt ({f.damage}); the data before that point is intact: "
            "pass allow_corrupt=True to replay it"
        )
    if f.damage:
        log.warning("%s is damaged (%s); replaying the data before the damage", p, f.damage)
    streams = []
    for s in f.streams:
        if s.fmt not in _LSL_FORMATS:
            raise ReplayError(f"{str(p)!r}: stream {s.name!r} has unknown format {s.fmt!r}")
        streams.append(
            ReplayStream(
                name=s.name,
                type=s.text("type"),
                source_id=s.text("source_id") or s.name,
                fmt=s.fmt,
                rate_hz=s.rate_hz,
                channels=xdf.channel_meta(s.info),
                data=s.time_series,
                timestamps=s.synchronized_stamps(),
                desc=s.info.find("desc"),
            )
        )
    return Recording(p, "xdf", streams, f.damage)


def _channel_type(mne_type: str, label: str) -> str:
    head = label.split()[0].upper() if label.split() else ""
    if mne_type == "eeg" and head in {"ECG", "EKG", "EOG", "EMG"}:
        return "ECG" if head in {"ECG", "EKG"} else head  # EDF "Type Label" convention
    return {"bio": "EDA"}.get(mne_type, mne_type.upper())


def _load_mne(p: Path) -> Recording:
    if not p.is_file():
        raise ReplayError(f"recording {str(p)!r} does not exist")
    import mne

    try:
        raw = mne.io.read_raw(p, preload=True, verbose="error")
    except Exception as exc:
        raise ReplayError(f"mne.io.read_raw could not read {str(p)!r}: {exc}") from exc
    data = raw.get_data().T  # (n, ch), volts for voltage channels
    orig_units = getattr(raw, "_orig_units", None) or {}
    channels, scales = [], []
    for label, kind in zip(raw.ch_names, raw.get_channel_types(), strict=True):
        unit = orig_units.get(label, "")
        if kind in _VOLT_TYPES:
            unit = unit if unit in _VOLT_SCALE else "uV"
            scales.append(_VOLT_SCALE[unit])
            unit = "uV" if _VOLT_SCALE[unit] == 1e6 else unit  # one spelling of micro
        else:
            scales.append(1.0)
        channels.append({"label": label, "unit": unit, "type": _channel_type(kind, label)})
    values = (data * np.asarray(scales)).astype(np.float32)
    fs = raw.info["sfreq"]
    stamps = np.arange(raw.n_times) / fs
    stype = Counter(c["type"] for c in channels).most_common(1)[0][0]
    stem = p.name.split(".")[0]
    streams = [ReplayStream(stem, stype, stem, "float32", fs, channels, values, stamps)]
    ann = raw.annotations
    if len(ann):
        # With orig_time set, onsets count from meas_date; the first sample is at first_time.
        onsets = ann.onset - (raw.first_time if ann.orig_time is not None else 0.0)
        order = np.argsort(onsets, kind="stable")
        markers = [[str(ann.description[k])] for k in order]
        streams.append(_marker_stream(stem, markers, onsets[order]))
    return Recording(p, "mne", streams)


def _marker_stream(stem: str, markers: list, stamps: np.ndarray) -> ReplayStream:
    return ReplayStream(
        f"{stem} annotations",
        "Markers",
        f"{stem}-markers",
        "string",
        0.0,
        [{"label": "marker", "unit": "", "type": "Marker"}],
        markers,
        np.asarray(stamps, dtype=np.float64),
    )


def _load_wfdb(header: Path) -> Recording:
    record = header.with_suffix("")
    if not header.is_file():
        raise ReplayError(f"WFDB record {str(record)!r} does not exist (no {header.name})")
    try:
        import wfdb
    except ImportError as exc:
        raise ReplayError(
            "replaying WFDB records needs the 'wfdb' package: pip install wfdb"
        ) from exc
    try:
        rec = wfdb.rdrecord(str(record))
    except Exception as exc:
        raise ReplayError(f"wfdb could not read record {str(record)!r}: {exc}") from exc
    channels = [
        {
            "label": name,
            "unit": unit,
            "type": "ECG" if name.upper().replace(" ", "") in _ECG_LEADS else "",
        }
        for name, unit in zip(rec.sig_name, rec.units, strict=True)
    ]
    values = rec.p_signal.astype(np.float32)
    stamps = np.arange(values.shape[0]) / rec.fs
    stype = "ECG" if all(c["type"] == "ECG" for c in channels) else "Biosignal"
    stem = record.name
    streams = [ReplayStream(stem, stype, stem, "float32", float(rec.fs), channels, values, stamps)]
    if header.with_suffix(".atr").is_file():
        ann = wfdb.rdann(str(record), "atr")
        markers = []
        for sym, aux in zip(ann.symbol, ann.aux_note, strict=True):
            aux = aux.strip("\x00").strip()
            markers.append([f"{sym} {aux}" if aux else sym])
        streams.append(_marker_stream(stem, markers, np.asarray(ann.sample) / rec.fs))
    return Recording(record, "wfdb", streams)


# -- playing ----------------------------------------------------------------------------
@dataclass
class _Lane:
    stream: ReplayStream
    outlet: pylsl.StreamOutlet
    ends: np.ndarray  # exclusive end index of each chunk
    rel: np.ndarray  # (t - origin) / speed of each sample, s
    next_chunk: int = 0
    pushed: int = 0
    lateness: list[float] = field(default_factory=list)


def _copy_desc(src: ET.Element, dst: pylsl.XMLElement) -> None:
    for child in src:
        if child.tag in ("replay_file", "replay_speed"):
            continue  # a replay of a replay describes only the latest replay
        if len(child):
            _copy_desc(child, dst.append_child(child.tag))
        else:
            dst.append_child_value(child.tag, child.text or "")


class Player:
    """Replay a recording as LSL outlets from a background thread.

    Parameters
    ----------
    path : str or path-like
        What to replay (see :func:`load_recording`).
    speed : float
        Playback speed (2 = twice as fast). Timestamps are compressed by it; nominal
        rates stay the original ones.
    loop : bool
        Start over at the end, forever (until :meth:`stop`); timestamps keep increasing.
    chunk_size : int, optional
        Samples per push for regular streams. Default: whatever falls into 10 ms of
        wall-clock time. Markers are always pushed one by one, on time.
    suffix : str
        Appended to every source_id, so a replay never collides with live streams.
    wait_for_consumers_s : float
        Before starting the clock, wait up to this long until every outlet has a
        consumer (so a recorder or pipeline under test misses nothing); 0 = start now.
    lead_s : float
        Time between the start of the clock and the first sample, s.
    allow_corrupt : bool
        Replay the intact part of a corrupt XDF file (see :func:`load_recording`).
    linger_s : float
        How long :meth:`stop` keeps the outlets after a completed replay, s.

    Examples
    --------
    As a pytest fixture: replay, then assert on what the pipeline produced.

    >>> with Player("rec.xdf", speed=4, suffix="-t1") as player:  # doctest: +SKIP
    ...     run_pipeline(player.source_ids)
    ...     assert player.wait(timeout=60)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        speed: float = 1.0,
        loop: bool = False,
        chunk_size: int | None = None,
        suffix: str = "",
        wait_for_consumers_s: float = 0.0,
        lead_s: float = 0.1,
        allow_corrupt: bool = False,
        linger_s: float = 1.0,
    ) -> None:
        if not (speed > 0 and np.isfinite(speed)):
            raise ReplayError(f"speed must be a positive number, got {speed}")
        if chunk_size is not None and chunk_size < 1:
            raise ReplayError(f"chunk_size must be >= 1 sample, got {chunk_size}")
        self.recording = load_recording(path, allow_corrupt=allow_corrupt)
        if not any(len(s) for s in self.recording.streams):
            raise ReplayError(f"{str(path)!r} holds no samples to replay")
        self.speed = float(speed)
        self.loop = loop
        self.chunk_size = chunk_size
        self.suffix = suffix
        self.wait_for_consumers_s = wait_for_consumers_s
        self.lead_s = lead_s
        self.linger_s = linger_s
        self.t_start: float | None = None
        self.error: BaseException | None = None
        self.iterations = 0
        self._lanes: list[_Lane] = []
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def streams(self) -> list[ReplayStream]:
        """The streams being replayed."""
        return self.recording.streams

    @property
    def source_ids(self) -> list[str]:
        """The source_ids this player publishes (suffix included), in stream order."""
        return [s.source_id + self.suffix for s in self.recording.streams]

    @property
    def damage(self) -> str | None:
        """Why an XDF source was read only partly (None when intact)."""
        return self.recording.damage

    def source_id_of(self, name_or_type: str) -> str:
        """The published source_id of the first stream whose name or type matches."""
        for s, sid in zip(self.streams, self.source_ids, strict=True):
            if name_or_type in (s.name, s.type, s.source_id):
                return sid
        raise ReplayError(
            f"no replayed stream is named or typed {name_or_type!r}; "
            f"streams: {[s.name for s in self.streams]}"
        )

    def start(self) -> Player:
        """Create the outlets and start the replay thread."""
        origin = self.recording.origin
        for s in self.recording.streams:
            info = pylsl.StreamInfo(
                s.name, s.type, len(s.channels), s.rate_hz, _LSL_FORMATS[s.fmt],
                s.source_id + self.suffix,
            )  # fmt: skip
            desc = info.desc()
            if s.desc is not None and s.desc.find("channels") is not None:
                _copy_desc(s.desc, desc)
            else:
                if s.desc is not None:
                    _copy_desc(s.desc, desc)
                chans = desc.append_child("channels")
                for c in s.channels:
                    ch = chans.append_child("channel")
                    for key in ("label", "unit", "type"):
                        ch.append_child_value(key, c[key])
            desc.append_child_value("replay_file", str(self.recording.path))
            desc.append_child_value("replay_speed", repr(self.speed))
            # liblsl sizes its send buffer in nominal-rate seconds; faster replay needs
            # proportionally more so a briefly slow consumer loses nothing.
            outlet = pylsl.StreamOutlet(info, 0, int(360 * max(1.0, self.speed)))
            rel = (np.asarray(s.timestamps, dtype=np.float64) - origin) / self.speed
            self._lanes.append(_Lane(s, outlet, self._chunk_ends(s, rel), rel))
        self._thread = threading.Thread(target=self._run, name="replay", daemon=True)
        self._thread.start()
        return self

    def _chunk_ends(self, s: ReplayStream, rel: np.ndarray) -> np.ndarray:
        n = len(rel)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if s.fmt == "string":
            return np.arange(1, n + 1)
        if self.chunk_size is not None and s.rate_hz > 0:
            return np.append(np.arange(self.chunk_size, n, self.chunk_size), n)
        # Chunk by wall-clock bins so the push rate is ~100/s whatever the speed.
        bins = np.floor(rel / _WALL_CHUNK_S).astype(np.int64)
        return np.append(np.flatnonzero(np.diff(bins)) + 1, n)

    def _run(self) -> None:
        try:
            if self.wait_for_consumers_s > 0:
                deadline = pylsl.local_clock() + self.wait_for_consumers_s
                while not all(lane.outlet.have_consumers() for lane in self._lanes):
                    if pylsl.local_clock() > deadline or self._stop.wait(0.01):
                        break
            t0 = pylsl.local_clock() + self.lead_s
            self.t_start = t0
            period = self.recording.duration_s / self.speed + self._loop_gap()
            while not self._stop.is_set():
                self._play_once(t0)
                self.iterations += 1
                if not self.loop:
                    break
                t0 += period
        except BaseException as exc:
            self.error = exc
            log.exception("replay failed")
        finally:
            self._done.set()

    def _loop_gap(self) -> float:
        rates = [s.rate_hz for s in self.recording.streams if s.rate_hz > 0]
        return (1.0 / max(rates) if rates else 0.001) / self.speed

    def _play_once(self, t0: float) -> None:
        heap = []
        for k, lane in enumerate(self._lanes):
            lane.next_chunk = 0
            if len(lane.ends):
                heapq.heappush(heap, (t0 + lane.rel[lane.ends[0] - 1], k))
        while heap and not self._stop.is_set():
            due, k = heapq.heappop(heap)
            wait = due - pylsl.local_clock()
            if wait > 0 and self._stop.wait(wait):
                return
            lane = self._lanes[k]
            c = lane.next_chunk
            start = lane.ends[c - 1] if c else 0
            end = lane.ends[c]
            stamps = (t0 + lane.rel[start:end]).tolist()
            lane.outlet.push_chunk(lane.stream.data[start:end], stamps)
            lane.pushed += end - start
            lane.next_chunk = c + 1
            if c + 1 < len(lane.ends):
                heapq.heappush(heap, (t0 + lane.rel[lane.ends[c + 1] - 1], k))

    @property
    def done(self) -> bool:
        """True once every sample was pushed (never, with ``loop``) or after stop()."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the replay is done; True if it finished, False on timeout.

        Raises
        ------
        ReplayError
            The replay thread failed.
        """
        finished = self._done.wait(timeout)
        if self.error is not None:
            raise ReplayError(f"replay of {self.recording.path} failed: {self.error!r}")
        return finished

    def samples_pushed(self) -> dict[str, int]:
        """Samples pushed so far per published source_id (all loop iterations)."""
        return {lane.stream.source_id + self.suffix: lane.pushed for lane in self._lanes}

    def stop(self) -> None:
        """Stop the replay and destroy the outlets.

        After a replay that ran to its end, the outlets live on for ``linger_s`` so
        that consumers receive the last chunks: liblsl drops data an outlet has not
        sent yet when it is destroyed.
        """
        if self._done.is_set() and not self._stop.is_set() and self._lanes:
            time.sleep(self.linger_s)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None
        for lane in self._lanes:
            lane.outlet = None  # consumers see the streams vanish

    def __enter__(self) -> Player:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
