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

Timestamps are checked before anything is pushed (:func:`check_timestamps`), because a
replay waits in real time for each one: a single stamp of 1e9 s used to hang it for 30
years, and an infinite one crashed it. The rules (:class:`TimestampLimits`):

* every stamp is finite and within ±1e10 s (``MAX_ABS_STAMP_S``; 317 years: no clock
  reads more, and float64 no longer resolves a millisecond grid far beyond it);
* consecutive stamps of a stream step back by at most ``max_backstep_s`` (1 s) and
  forward by at most ``max_gap_s`` (60 s; two sample periods for a regular stream slower
  than that). A marker stream beside regular streams may be silent for longer (cues
  minutes apart are normal) but each of its stamps must lie within ``max_gap_s`` of the
  regular streams' span: the regular streams set the replay's pace;
* the streams of a file overlap or follow each other within ``max_gap_s``.

Within these bounds a replay reproduces the recorded timing exactly, flaws included
(jitter, gaps, a stream stepping back), because reproducing a session is what replay is
for. Beyond them a stamp is **repaired with a warning** when the nominal rate determines
it: in a regular stream, a run of at most ``max_repair_run`` (10) bad stamps is rebuilt
on the nominal grid from the nearest good stamp, which is the rule XDF itself applies to a
sample recorded without a stamp (previous stamp + 1 / nominal rate). Everything else is
**refused** with a :class:`ReplayError` naming the stream, the sample, the stamp and the
bound: a marker stream has no grid to rebuild a stamp from, and a longer run, more than
100 separate faults in a stream, a clock that jumps and stays, or a stream hours away
from the others is not a glitch but a recording whose time we would be inventing.
Repairs are listed in :attr:`Recording.repairs` and logged (five per stream, then a
count).
"""

from __future__ import annotations

import heapq
import logging
import math
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
_MAX_WAIT_S = 60.0  # longest single wait of the replay thread (threading's limit is ~292 y)
# No clock reading lies beyond ±1e10 s: the LSL clock counts from boot, Unix time is at
# 1.8e9 s. Beyond it float64 resolves time more coarsely than 2 µs, and a sample grid of
# 1 ms no longer survives arithmetic (at 3e16 s one step of the float is 4 s).
MAX_ABS_STAMP_S = 1e10


class ReplayError(StreamError):
    """A recording cannot be replayed: missing, unknown format, unreadable, or timestamps
    that no replay can follow (see :func:`check_timestamps`)."""


@dataclass(frozen=True)
class TimestampLimits:
    """Bounds :func:`check_timestamps` holds a recording's timestamps to.

    Attributes
    ----------
    max_gap_s : float
        Longest forward step between consecutive stamps of a stream, and longest
        silence between streams, in original seconds (60 s). A replay waits through a
        gap in real time, so the bound is in seconds rather than in sample periods: at
        0.1 Hz a few hundred periods would already be hours.
    max_backstep_s : float
        Longest backward step between consecutive stamps of a stream, s (1 s):
        arrival-stamped chunks from wireless amplifiers and markers pushed from several
        threads step back by tens of ms; a clock reset steps back by much more.
    max_repair_run : int
        Longest run of consecutive bad stamps in a regular stream that is rebuilt from
        the nominal rate (10 samples); 0 refuses every bad stamp.
    """

    max_gap_s: float = 60.0
    max_backstep_s: float = 1.0
    max_repair_run: int = 10

    def __post_init__(self) -> None:
        for key in ("max_gap_s", "max_backstep_s"):
            v = getattr(self, key)
            if not (np.isfinite(v) and v >= 0):
                raise ReplayError(f"TimestampLimits.{key} must be a finite number >= 0 s, got {v}")
        if self.max_repair_run < 0:
            raise ReplayError(
                f"TimestampLimits.max_repair_run must be >= 0, got {self.max_repair_run}"
            )


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
    repairs : list of str
        Timestamps rebuilt by :func:`check_timestamps`, one line per run of samples.
    """

    path: Path
    kind: str
    streams: list[ReplayStream]
    damage: str | None = None
    repairs: list[str] = field(default_factory=list)

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
def load_recording(
    path: str | os.PathLike,
    *,
    allow_corrupt: bool = False,
    timestamp_limits: TimestampLimits | None = None,
) -> Recording:
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
    timestamp_limits : TimestampLimits, optional
        Bounds of the timestamp check (see :func:`check_timestamps`); default
        ``TimestampLimits()``.

    Raises
    ------
    ReplayError
        The file is missing, its format unknown, it cannot be read, or its timestamps
        cannot be replayed; the message names the path and the problem.
    """
    p = Path(path)
    name = p.name.lower()
    wfdb_header = p if name.endswith(".hea") else p.with_name(p.name + ".hea")
    if name.endswith(".xdf"):
        rec = _load_xdf(p, allow_corrupt)
    elif name.endswith(".hea") or (not p.suffix and wfdb_header.is_file()):
        rec = _load_wfdb(wfdb_header)
    elif name.endswith(_MNE_EXTS):
        rec = _load_mne(p)
    else:
        rec = None
    if rec is not None:
        return check_timestamps(rec, timestamp_limits)
    if not p.exists():
        hint = f" (nor does {wfdb_header.name}, for a WFDB record)" if not p.suffix else ""
        raise ReplayError(f"recording {str(p)!r} does not exist{hint}")
    raise ReplayError(
        f"unknown recording format {p.suffix or '(no extension)'!r} of {str(p)!r}; "
        f"replay reads .xdf, WFDB records (path without extension, with a .hea beside it) "
        f"and what mne.io.read_raw opens: {', '.join(_MNE_EXTS)}"
    )


def check_timestamps(recording: Recording, limits: TimestampLimits | None = None) -> Recording:
    """Check every stream's timestamps; repair what the nominal rate determines, or refuse.

    The rules and why are in the module docstring: stamps finite, steps within
    ``[-max_backstep_s, max_gap_s]``, streams within ``max_gap_s`` of each other. In a
    regular stream (nominal rate > 0) a run of at most ``max_repair_run`` stamps that
    breaks them is rebuilt on the nominal grid from the nearest good stamp, and listed
    in ``recording.repairs``. Good are the stamps of the longest run of consecutive good
    steps and of every run longer than ``max_repair_run``; where two good runs still do
    not join, the fewest samples next to the failing step whose rebuilding joins them
    are rebuilt too (a stamp 30 s ahead breaks only its step back). Samples and their
    values are never dropped.

    Parameters
    ----------
    recording : Recording
        Loaded streams; repaired timestamps replace the originals (new arrays).
    limits : TimestampLimits, optional
        The bounds; default ``TimestampLimits()``.

    Returns
    -------
    Recording
        The same recording.

    Raises
    ------
    ReplayError
        A timestamp breaks the rules and cannot be rebuilt: in a marker (irregular)
        stream, in a run longer than ``max_repair_run``, one of more than 100 separate
        faults, or a step between runs of good stamps (a clock that jumps and stays); or
        a stream lies more than ``max_gap_s`` from the others. The message names the
        file, stream, sample, stamp and bound.
    """
    limits = limits or TimestampLimits()
    paced = any(s.rate_hz > 0 and len(s) for s in recording.streams)
    for s in recording.streams:
        ts = np.asarray(s.timestamps, dtype=np.float64)
        if ts.ndim != 1:
            raise ReplayError(
                f"{recording.path}: stream {s.name!r} has timestamps of shape {ts.shape}; "
                "expected one per sample"
            )
        fixed, notes = _check_stream(ts, s, limits, str(recording.path), paced)
        if notes:
            s.timestamps = fixed
            for note in notes[:_LOGGED_REPAIRS]:
                log.warning("%s", note)
            if len(notes) > _LOGGED_REPAIRS:
                log.warning(
                    "%s: stream %r: %d more runs of timestamps rebuilt (Recording.repairs "
                    "lists them all)", recording.path, s.name, len(notes) - _LOGGED_REPAIRS,
                )  # fmt: skip
            recording.repairs += notes
    if paced:
        _check_markers_within_span(recording, limits)
    _check_between_streams(recording, limits)
    return recording


def _check_markers_within_span(recording: Recording, limits: TimestampLimits) -> None:
    """Every marker stamp within ``max_gap_s`` of the regular streams' span."""
    regular = [s for s in recording.streams if s.rate_hz > 0 and len(s)]
    lo = min(float(np.min(s.timestamps)) for s in regular) - limits.max_gap_s
    hi = max(float(np.max(s.timestamps)) for s in regular) + limits.max_gap_s
    for s in recording.streams:
        if s.rate_hz > 0 or not len(s):
            continue
        ts = np.asarray(s.timestamps, dtype=np.float64)
        out = np.flatnonzero((ts < lo) | (ts > hi))
        if out.size:
            k = int(out[0])
            raise ReplayError(
                f"{recording.path}: stream {s.name!r}: timestamp {k} ({float(ts[k])!r} s) lies "
                "outside "
                f"the regular streams' span {lo + limits.max_gap_s:.6g}-"
                f"{hi - limits.max_gap_s:.6g} s by more than {limits.max_gap_s:g} s (max_gap_s); "
                "a marker stream has no rate to rebuild a timestamp from"
            )


def _readable(ts: np.ndarray) -> np.ndarray:
    """Stamps that can be clock readings: finite and within ±MAX_ABS_STAMP_S."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(ts) & (np.abs(ts) <= MAX_ABS_STAMP_S)


def _gap_bound(limits: TimestampLimits, rate_hz: float) -> float:
    """Longest forward step of a stream, s: ``max_gap_s``, or two sample periods of a
    stream slower than one sample per ``max_gap_s / 2``."""
    return max(limits.max_gap_s, 2.0 / rate_hz) if rate_hz > 0 else limits.max_gap_s


def _good_steps(ts: np.ndarray, limits: TimestampLimits, gap_s: float) -> np.ndarray:
    readable = _readable(ts)
    with np.errstate(invalid="ignore"):  # inf - inf: a bad step, not a warning
        d = np.diff(ts)
        ok = (d >= -limits.max_backstep_s) & (d <= gap_s)
    return ok & readable[:-1] & readable[1:]


def _first_problem(ts: np.ndarray, ok: np.ndarray, limits: TimestampLimits, gap_s: float) -> str:
    bad = np.flatnonzero(~_readable(ts))
    k = int(np.flatnonzero(~ok)[0]) + 1 if (~ok).any() else None
    if bad.size and (k is None or bad[0] <= k):
        return (
            f"timestamp {int(bad[0])} is {float(ts[bad[0]])!r}; timestamps must be finite "
            f"and within ±{MAX_ABS_STAMP_S:g} s"
        )
    assert k is not None
    now, before = float(ts[k]), float(ts[k - 1])
    step = now - before
    if step < 0:
        bound = f"steps back by at most {limits.max_backstep_s:g} s (max_backstep_s)"
        what = f"steps back by {-step:.6g} s"
    else:
        bound = f"jumps ahead by at most {gap_s:g} s (max_gap_s)"
        what = f"jumps ahead by {step:.6g} s"
    return (
        f"timestamp {k} ({now!r} s) {what} from timestamp {k - 1} ({before!r} s); "
        f"a replay follows a stream that {bound}"
    )


# Beyond this many separate faults in one stream the stamps are not glitches; it also
# bounds the work of the search below (each round costs a pass over the stream).
_MAX_FAULTS = 100
_LOGGED_REPAIRS = 5  # warnings per stream; the rest are counted in one line


def _rebuild(ts: np.ndarray, good: np.ndarray, period: float) -> np.ndarray:
    """Stamps with every bad one placed on the nominal grid of its nearest good
    neighbour: the previous good stamp, or for a leading run the next one."""
    n = ts.size
    idx = np.arange(n)
    left = np.maximum.accumulate(np.where(good, idx, -1))
    right = np.minimum.accumulate(np.where(good, idx, n)[::-1])[::-1]
    fixed = ts.copy()
    from_left = ~good & (left >= 0)
    fixed[from_left] = ts[left[from_left]] + (idx[from_left] - left[from_left]) * period
    from_right = ~good & (left < 0)
    fixed[from_right] = ts[right[from_right]] - (right[from_right] - idx[from_right]) * period
    return fixed


def _fix_at(
    ts: np.ndarray, good: np.ndarray, k: int, period: float, limits: TimestampLimits,
    gap_s: float,
) -> np.ndarray | None:  # fmt: skip
    """The fewest samples (at most ``max_repair_run`` in a row) just before or just after
    the failing step ``k -> k + 1`` whose rebuilding mends it, or None.

    A sample stamped 30 s ahead steps forward within ``max_gap_s`` and then back by 30 s;
    only the step back breaks a bound, and the culprit is the sample before it. A sample
    stamped 30 s behind is the one after its bad step.
    """
    n = ts.size
    for m in range(1, limits.max_repair_run + 1):
        for drop in (np.arange(k - m + 1, k + 1), np.arange(k + 1, k + 1 + m)):
            if drop[0] < 0 or drop[-1] >= n:
                continue
            trial = good.copy()
            trial[drop] = False
            if not trial.any():
                continue
            # The bad run that now holds the dropped samples, and the steps around it.
            a, b = int(drop[0]), int(drop[-1]) + 1
            while a > 0 and not trial[a - 1]:
                a -= 1
            while b < n and not trial[b]:
                b += 1
            if b - a > limits.max_repair_run:
                continue
            # Rebuilt like _rebuild does, but only here: the rest of the stream is unchanged.
            run = np.arange(a, b)
            if a > 0:
                local = np.r_[ts[a - 1], ts[a - 1] + (run - (a - 1)) * period, ts[b : b + 1]]
            else:
                local = np.r_[ts[b] - (b - run) * period, ts[b]]
            if _good_steps(local, limits, gap_s).all():
                return drop
    return None


def _check_stream(
    ts: np.ndarray, s: ReplayStream, limits: TimestampLimits, where: str, paced: bool
) -> tuple[np.ndarray, list[str]]:
    # A marker stream beside regular ones may be silent for long: those set the pace, and
    # its stamps are held to their span instead (_check_markers_within_span).
    gap_s = math.inf if paced and not s.rate_hz > 0 else _gap_bound(limits, s.rate_hz)
    ok = _good_steps(ts, limits, gap_s)
    if ts.size == 0 or (ok.all() and _readable(ts).all()):
        return ts, []
    head = f"{where}: stream {s.name!r}"
    if not s.rate_hz > 0 or limits.max_repair_run == 0:
        why = (
            "it has no nominal rate to rebuild a timestamp from"
            if not s.rate_hz > 0
            else "repairs are off (max_repair_run = 0)"
        )
        raise ReplayError(f"{head}: {_first_problem(ts, ok, limits, gap_s)}; {why}")
    # Runs of consecutive good steps; an unreadable stamp is a run of its own. Good are
    # the longest run and every run too long to be a glitch; the rest is rebuilt.
    cuts = np.flatnonzero(~ok) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, ts.size]
    lengths = ends - starts
    readable_run = _readable(ts[starts])
    good = np.zeros(ts.size, bool)
    anchor = int(np.argmax(np.where(readable_run, lengths, -1)))
    for r, (a, b) in enumerate(zip(starts, ends, strict=True)):
        if readable_run[r] and (r == anchor or b - a > limits.max_repair_run):
            good[a:b] = True
    if not good.any():
        raise ReplayError(f"{head}: {_first_problem(ts, ok, limits, gap_s)}; no timestamp is good")
    period = 1.0 / s.rate_hz
    for _ in range(_MAX_FAULTS + 1):
        fixed = _rebuild(ts, good, period)
        ok = _good_steps(fixed, limits, gap_s)
        if ok.all():
            break
        k = int(np.flatnonzero(~ok)[0])
        drop = _fix_at(ts, good, k, period, limits, gap_s)
        if drop is None:  # good runs that do not join: the clock jumped and stayed there
            raise ReplayError(
                f"{head}: {_first_problem(fixed, ok, limits, gap_s)}; not a glitch to rebuild"
            )
        good[drop] = False
    else:
        raise ReplayError(
            f"{head}: more than {_MAX_FAULTS} separate timestamp faults: not glitches but a "
            f"broken clock; the first: "
            f"{_first_problem(ts, _good_steps(ts, limits, gap_s), limits, gap_s)}"
        )
    bad = np.flatnonzero(~good)
    breaks = np.diff(bad) > 1
    runs = list(zip(bad[np.r_[True, breaks]], bad[np.r_[breaks, True]] + 1, strict=True))
    if len(runs) > _MAX_FAULTS:
        raise ReplayError(
            f"{head}: {len(runs)} separate timestamp faults, more than {_MAX_FAULTS}: not "
            f"glitches but a broken clock; the first: "
            f"{_first_problem(ts, _good_steps(ts, limits, gap_s), limits, gap_s)}"
        )
    notes = []
    for a, b in runs:
        a, b = int(a), int(b)
        if b - a > limits.max_repair_run:
            raise ReplayError(
                f"{head}: timestamps {a}-{b - 1} ({b - a} in a row, from {float(ts[a])!r} s) "
                f"break the bounds; a run of at most {limits.max_repair_run} "
                f"(max_repair_run) is rebuilt from the nominal rate ({s.rate_hz:g} Hz), a "
                "longer one is refused"
            )
        more = ", ..." if b - a > 3 else ""
        which = f"timestamp {a}" if b - a == 1 else f"timestamps {a}-{b - 1}"
        was = ", ".join(repr(float(v)) for v in ts[a : min(b, a + 3)]) + more
        now = ", ".join(repr(float(v)) for v in fixed[a : min(b, a + 3)]) + more
        notes.append(
            f"{head}: {which} ({was} s) broke the bounds and "
            f"{'was' if b - a == 1 else 'were'} rebuilt from the nominal rate "
            f"({s.rate_hz:g} Hz) as {now} s"
        )
    return fixed, notes


def _check_between_streams(recording: Recording, limits: TimestampLimits) -> None:
    spans = sorted(
        (float(np.min(s.timestamps)), float(np.max(s.timestamps)), s.name)
        for s in recording.streams
        if len(s)
    )
    if not spans:
        return
    end, end_name = spans[0][1], spans[0][2]
    for first, last, name in spans[1:]:
        if first - end > limits.max_gap_s:
            raise ReplayError(
                f"{recording.path}: stream {name!r} starts {first - end:.6g} s after every "
                f"stream before it has ended (last: {end_name!r} at {end!r} s); a replay "
                f"reproduces silences of at most {limits.max_gap_s:g} s (max_gap_s): this "
                "stream's clock is not the others'"
            )
        if last > end:
            end, end_name = last, name


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
    timestamp_limits : TimestampLimits, optional
        Bounds of the timestamp check (see :func:`check_timestamps`); default
        ``TimestampLimits()``. Repaired stamps are in ``recording.repairs``.

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
        timestamp_limits: TimestampLimits | None = None,
    ) -> None:
        if not (speed > 0 and np.isfinite(speed)):
            raise ReplayError(f"speed must be a positive number, got {speed}")
        if chunk_size is not None and chunk_size < 1:
            raise ReplayError(f"chunk_size must be >= 1 sample, got {chunk_size}")
        self.recording = load_recording(
            path, allow_corrupt=allow_corrupt, timestamp_limits=timestamp_limits
        )
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
            # In slices: a very slow replay (speed 1e-9) must not ask threading for a
            # wait beyond what it can represent.
            while (wait := due - pylsl.local_clock()) > 0:
                if self._stop.wait(min(wait, _MAX_WAIT_S)):
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
