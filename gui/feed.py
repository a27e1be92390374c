"""The GUI's view of a running session: background LSL readers into locked ring buffers.

A :class:`LiveFeed` runs in the GUI process. It reads the session's status stream
``{prefix}-status`` (published by :class:`~stimloop.loop.control.StatusPublisher`), learns
from it the source_ids of every signal, derived stream and marker stream of the
session, and gives each one its own daemon reader thread. Each thread blocks on its
inlet (numeric streams) or sleeps between non-blocking drains (marker streams) and
copies what arrives into a :class:`Track` (a ring buffer under a lock held only for a
copy). The Qt thread reads copies from the tracks and never touches LSL, so a slow,
vanished or malformed stream can never freeze the window.

A stream that vanishes is reconnected by its own thread (every ``retry_s``); if it comes
back with another channel count, its track is rebuilt and its ``generation`` bumped so
the display rebuilds its channel list.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pylsl
from scipy.signal import butter, sosfilt, sosfilt_zi

from stimloop.dsp.heart import BEAT_ARTIFACT
from stimloop.dsp.series import value_at
from stimloop.stream.errors import StreamError
from stimloop.stream.inlet import Inlet, MarkerInlet
from stimloop.stream.ring import RingBuffer

log = logging.getLogger("stimloop.gui")

#: A stream is shown stale (red) when nothing arrived for this long, in s.
STALE_AFTER_S = 0.25

#: Period at which the readers drain their inlets, in s.
READ_PERIOD_S = 0.025

#: Band of the display-only EEG filter, in Hz.
DISPLAY_BAND_HZ = (1.0, 40.0)

#: Catalog marker streams whose events the views show (HBC localisation, exposure).
VIEW_MARKERS = ("hbc", "exposure", "exercises")

#: Events kept per view marker stream; older ones are dropped (and counted).
VIEW_MARKERS_KEPT = 20_000

#: Fields of a ``fired`` decision kept with its pulse (what a train view needs).
PULSE_INFO = ("site", "cycle", "intensity", "intensity_unit")


def find_sessions(timeout: float = 1.0) -> list[str]:
    """Prefixes of the stimloop sessions visible on the network.

    Parameters
    ----------
    timeout : float
        Seconds to listen for status streams (LSL type ``"Status"``).

    Returns
    -------
    list of str
        Session prefixes (the status stream's source_id without ``-status``), sorted.
    """
    infos = pylsl.resolve_byprop("type", "Status", 0, timeout)
    out = {i.source_id().removesuffix("-status") for i in infos if i.source_id()}
    return sorted(out)


class BlockEnvelope:
    """Running min/max of fixed blocks of samples (a pre-decimated copy of a stream).

    The reader reduces every ``block`` samples to their per-channel min and max as they
    arrive, so a redraw copies and reduces ``block`` times fewer values. A block with a
    NaN is NaN (shown as a break). The newest partial block is not yet visible.

    Parameters
    ----------
    block : int
        Samples per block.
    n_channels : int
        Channels.
    capacity : int
        Blocks kept.
    """

    def __init__(self, block: int, n_channels: int, capacity: int) -> None:
        self.block = int(block)
        self.n_channels = n_channels
        self.ring = RingBuffer(capacity, 2 * n_channels, np.float32)
        self._pend = np.empty((self.block, n_channels), np.float32)
        self._pend_t = np.empty(self.block)
        self._n = 0

    def write(self, x: np.ndarray, t: np.ndarray) -> None:
        """Add samples ``x`` (n, n_channels) stamped ``t`` (n,); caller holds the lock."""
        i, n, b = 0, len(x), self.block
        if self._n:
            k = min(b - self._n, n)
            self._pend[self._n : self._n + k] = x[:k]
            self._pend_t[self._n : self._n + k] = t[:k]
            self._n += k
            i = k
            if self._n == b:
                self._emit(self._pend[None], self._pend_t[None])
                self._n = 0
        m = (n - i) // b
        if m:
            self._emit(x[i : i + m * b].reshape(m, b, -1), t[i : i + m * b].reshape(m, b))
            i += m * b
        if i < n:
            self._pend[: n - i] = x[i:]
            self._pend_t[: n - i] = t[i:]
            self._n = n - i

    def _emit(self, xb: np.ndarray, tb: np.ndarray) -> None:
        self.ring.write(np.concatenate((xb.min(axis=1), xb.max(axis=1)), axis=1), tb[:, 0])

    def latest(self, n_blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Newest blocks: start times (n,), minima (n, n_channels), maxima (n, n_channels)."""
        d, t = _latest(self.ring, n_blocks)
        return t, d[:, : self.n_channels], d[:, self.n_channels :]


class Track:
    """The newest samples of one numeric stream, shared between a reader and the GUI.

    Parameters
    ----------
    role : str
        What the stream is (``"eeg"``, ``"heart_hr"``, ...).
    source_id : str
        Its LSL source_id.
    seconds : float
        History kept, in s (irregular streams keep ``irregular_capacity`` samples).
    display_filter : bool
        Also keep a band-passed copy (:data:`DISPLAY_BAND_HZ`, causal, display only).
    """

    irregular_capacity = 4096

    def __init__(
        self, role: str, source_id: str, seconds: float = 30.0, display_filter: bool = False
    ) -> None:
        self.role = role
        self.source_id = source_id
        self.seconds = seconds
        self.display_filter = display_filter
        self.lock = threading.Lock()
        self.generation = 0
        self.connected = False
        self.error: str | None = None
        self.labels: list[str] = []
        self.units: list[str] = []
        self.rate_hz = 0.0
        self.ring: RingBuffer | None = None
        self.filtered: RingBuffer | None = None
        self.envelopes: dict[bool, BlockEnvelope] = {}  # filtered? -> block min/max
        self._sos = None
        self._zi = None
        self.last_arrival = -math.inf  # local LSL clock, s
        self.received = 0
        self.nonfinite = 0
        self.gaps = 0
        self.lost_samples = 0

    def reset(self, rate_hz: float, labels: list[str], units: list[str], dtype) -> None:
        """(Re)allocate for a stream with this rate and these channels."""
        n_ch = len(labels)
        cap = int(self.seconds * rate_hz) if rate_hz > 0 else self.irregular_capacity
        cap = max(cap, 64)
        with self.lock:
            self.rate_hz = rate_hz
            self.labels, self.units = list(labels), list(units)
            # float32 is plenty for display and halves the copying per redraw.
            self.ring = RingBuffer(cap, n_ch, np.float32 if n_ch > 8 else np.float64)
            self.filtered = None
            if self.display_filter and rate_hz > 2 * DISPLAY_BAND_HZ[1]:
                self.filtered = RingBuffer(cap, n_ch, np.float32)
                self._sos = butter(2, DISPLAY_BAND_HZ, "bandpass", fs=rate_hz, output="sos")
                self._zi = None
            self.envelopes = {}
            if self.display_filter and rate_hz >= 250:
                block = int(rate_hz // 125)  # 8 ms blocks at 1 kHz
                n_blocks = int(self.seconds * rate_hz) // block + 1
                self.envelopes = {
                    False: BlockEnvelope(block, n_ch, n_blocks),
                    True: BlockEnvelope(block, n_ch, n_blocks),
                }
            self.generation += 1
            self.connected = True
            self.error = None

    def write(self, data: np.ndarray, stamps: np.ndarray) -> None:
        """Append a chunk (reader thread)."""
        x = np.asarray(data, np.float64)
        finite = np.isfinite(x)
        filt = None
        if self._sos is not None:
            # The display filter runs here, once per sample, so a redraw never filters a
            # whole window; NaNs are held at zero so one bad sample cannot poison the state.
            xf = np.where(finite, x, 0.0)
            if self._zi is None:
                self._zi = sosfilt_zi(self._sos)[:, :, None] * xf[:1][None, :, :]
            filt, self._zi = sosfilt(self._sos, xf, axis=0, zi=self._zi)
            filt[~finite] = np.nan
        with self.lock:
            self.ring.write(x, stamps)
            if self.envelopes:
                self.envelopes[False].write(x, stamps)
            if filt is not None and self.filtered is not None:
                self.filtered.write(filt.astype(np.float32), stamps)
                if self.envelopes:
                    self.envelopes[True].write(filt, stamps)
            self.received += len(x)
            self.nonfinite += int((~finite.all(axis=1)).sum())
            self.last_arrival = pylsl.local_clock()

    def latest(self, seconds: float, filtered: bool = False):
        """Copy of the newest ``seconds`` of data (GUI thread).

        Returns
        -------
        data : ndarray (n, n_channels), timestamps : ndarray (n,), generation : int
        """
        with self.lock:
            ring = self.filtered if filtered and self.filtered is not None else self.ring
            if ring is None:
                return np.empty((0, 0)), np.empty(0), self.generation
            n = int(seconds * self.rate_hz) if self.rate_hz > 0 else ring.capacity
            data, ts = _latest(ring, max(1, n))
            return data, ts, self.generation

    def latest_envelope(self, seconds: float, filtered: bool = False):
        """Block min/max of the newest ``seconds`` (GUI thread), or None when this track
        keeps no envelope.

        Returns
        -------
        t : ndarray (n,), lo : ndarray (n, n_channels), hi : ndarray (n, n_channels),
        generation : int
        """
        with self.lock:
            env = self.envelopes.get(bool(filtered and self.filtered is not None))
            if env is None:
                return None
            n = int(seconds * self.rate_hz) // env.block
            return (*env.latest(max(1, n)), self.generation)

    def age_s(self) -> float:
        """Local time since the last chunk arrived, in s (inf before any)."""
        return pylsl.local_clock() - self.last_arrival

    def stale_after_s(self) -> float:
        """Silence (s) after which this stream counts as stale: :data:`STALE_AFTER_S`, or
        2.5 sample periods for streams slower than 10 Hz (a 4 Hz heart-rate series)."""
        return max(STALE_AFTER_S, 2.5 / self.rate_hz) if self.rate_hz > 0 else STALE_AFTER_S

    def is_stale(self, after_s: float | None = None) -> bool:
        """True when disconnected or nothing arrived for ``after_s`` s
        (default :meth:`stale_after_s`)."""
        limit = self.stale_after_s() if after_s is None else after_s
        return not self.connected or self.age_s() > limit


@dataclass
class Pulse:
    """One delivered pulse as the GUI shows it.

    Attributes
    ----------
    t_trigger : float
        Fire time, local LSL clock (s).
    phase_est_rad : float
        The session's phase estimate at the fire time (NaN until published).
    phase_true_rad : float
        The simulator's or replay's true phase at the fire time (NaN when unknown).
    info : dict
        What the protocol said about it (:data:`PULSE_INFO`: an HBC train's site, cycle
        and intensity), empty for a phase-locked pulse.
    """

    t_trigger: float
    phase_est_rad: float = math.nan
    phase_true_rad: float = math.nan
    info: dict = field(default_factory=dict)

    @property
    def phase_rad(self) -> float:
        """The true phase where known, the estimate otherwise."""
        return self.phase_true_rad if math.isfinite(self.phase_true_rad) else self.phase_est_rad


@dataclass
class MarkerLog:
    """Decisions and events from the session's marker streams (thread-safe appends).

    ``alerts`` (the session's ``alert`` decisions, e.g. a cardiac stop) and ``prompt``
    (the newest operator prompt) are kept apart from the bounded ``events``, so a busy
    decision stream can never push an alert out. ``trains`` holds each rTMS train the
    safety gate fired, as (LSL time of its first pulse, duration in s). ``streams``
    holds the events of each :data:`VIEW_MARKERS` stream as ``(message, LSL time)``;
    ``dropped`` counts those dropped beyond :data:`VIEW_MARKERS_KEPT`.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    events: deque = field(default_factory=lambda: deque(maxlen=500))
    pulses: list[Pulse] = field(default_factory=list)
    beats_t: deque = field(default_factory=lambda: deque(maxlen=2000))
    alerts: list[dict] = field(default_factory=list)
    prompt: dict | None = None
    trains: list[tuple[float, float]] = field(default_factory=list)
    streams: dict[str, list[tuple[dict, float]]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)


class LiveFeed:
    """Background readers for every stream of one session.

    Parameters
    ----------
    prefix : str
        The session prefix (its status stream is ``{prefix}-status``).
    eeg_seconds : float
        EEG history kept, in s.
    retry_s : float
        Pause between reconnection attempts of a vanished stream, in s.
    only : collection of str, optional
        Read only these inputs (``"eeg"``, ``"ecg"``, ``"eda"``, ``"eeg_truth"``) and
        catalog streams (by key); None reads everything. The status is always read. A
        display that shows little (the participant's) reads little.

    Notes
    -----
    The Qt thread calls only the non-blocking accessors (:meth:`status`,
    :meth:`track`, :meth:`pulses`, ...); everything that can block runs on the readers.
    """

    def __init__(
        self,
        prefix: str,
        eeg_seconds: float = 12.0,
        retry_s: float = 1.0,
        only: Collection[str] | None = None,
    ) -> None:
        self.prefix = prefix
        self.eeg_seconds = eeg_seconds
        self.retry_s = retry_s
        self.only = None if only is None else frozenset(only)
        self.tracks: dict[str, Track] = {}
        self.markers = MarkerLog()
        self._status: dict[str, Any] | None = None
        self._status_t = -math.inf
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> LiveFeed:
        """Start the status reader; the others start once the first status arrives."""
        # Only the newest status counts: it is a full snapshot, sent at 10 Hz.
        self._spawn("status", self._read_markers, f"{self.prefix}-status", self._on_status, True)
        return self

    def close(self) -> None:
        """Stop every reader (they are daemons; this does not wait long)."""
        self._stop.set()
        for t in self._threads:
            t.join(0.5)

    def _spawn(self, name: str, target, *args) -> None:
        if name in self._started:
            return
        self._started.add(name)
        t = threading.Thread(
            target=self._guard, args=(name, target, *args), name=f"gui-{name}", daemon=True
        )
        self._threads.append(t)
        t.start()

    def _guard(self, name: str, target, *args) -> None:
        """Run a reader; if it fails unexpectedly, log it and start it over."""
        while not self._stop.is_set():
            try:
                target(*args)
                return
            except Exception:
                log.exception("GUI reader %s failed; restarting it", name)
                self._stop.wait(self.retry_s)

    # -- accessors for the Qt thread -------------------------------------------------
    def status(self) -> dict[str, Any] | None:
        """The newest status snapshot (a dict shared read-only), or None before any."""
        return self._status

    def status_age_s(self) -> float:
        """Seconds since the newest status arrived (inf before any)."""
        return time.monotonic() - self._status_t

    def track(self, role: str) -> Track | None:
        """The track of an input (``"eeg"``, ``"ecg"``, ``"eda"``), of ``"eeg_truth"``, or
        of a numeric catalog stream by its key (``"phase"``, ``"heart_hr"``, ...)."""
        return self.tracks.get(role)

    def pulses(self) -> list[Pulse]:
        """Copy of the delivered pulses so far."""
        with self.markers.lock:
            return list(self.markers.pulses)

    def beats(self) -> np.ndarray:
        """R-peak times (local LSL clock, s) published by the heart stage."""
        with self.markers.lock:
            return np.fromiter(self.markers.beats_t, float)

    def events(self, n: int = 50) -> list[dict]:
        """The newest ``n`` decision events."""
        with self.markers.lock:
            return list(self.markers.events)[-n:]

    def alerts(self) -> list[dict]:
        """Every ``alert`` decision of the session so far (with its LSL time ``t``)."""
        with self.markers.lock:
            return list(self.markers.alerts)

    def prompt(self) -> dict | None:
        """The newest operator ``prompt`` decision (with its LSL time ``t``), or None."""
        with self.markers.lock:
            return self.markers.prompt

    def trains(self) -> list[tuple[float, float]]:
        """Every train the session's safety gate fired: (first pulse, LSL s; length, s)."""
        with self.markers.lock:
            return list(self.markers.trains)

    def marker_events(self, key: str, start: int = 0) -> tuple[list[tuple[dict, float]], int]:
        """Events of a :data:`VIEW_MARKERS` stream from the ``start``-th on.

        Parameters
        ----------
        key : str
            Catalog key (``"hbc"``, ``"exposure"``, ``"exercises"``).
        start : int
            Number of events already taken (counted from the first the window saw).

        Returns
        -------
        events : list of (dict, float)
            The decoded JSON messages and their LSL times (s), oldest first; events
            already dropped (beyond :data:`VIEW_MARKERS_KEPT`) are skipped.
        total : int
            Events seen so far: the ``start`` of the next call.
        """
        with self.markers.lock:
            items = self.markers.streams.get(key, [])
            dropped = self.markers.dropped.get(key, 0)
            return items[max(0, start - dropped) :], dropped + len(items)

    def _wants(self, key: str) -> bool:
        return self.only is None or key in self.only

    # -- readers -------------------------------------------------------------------
    def _on_status(self, msg: dict, t: float) -> None:
        if msg.get("event") == "text":  # not JSON: not a status
            return
        self._status, self._status_t = msg, time.monotonic()
        self._discover(msg)

    def _discover(self, status: dict) -> None:
        """Readers for the session's inputs, its truth and every numeric stream its
        catalog announces (``status["catalog"]``: no stream name is spelled here)."""
        ids = dict(status.get("source_ids") or {})
        truth = status.get("truth_source_ids") or {}
        cat = status.get("catalog") or {}
        numeric = {
            "eeg": (ids.get("eeg"), self.eeg_seconds, True),
            "ecg": (ids.get("ecg"), 12.0, False),
            "eda": (ids.get("eda"), 120.0, False),
            "eeg_truth": (truth.get("eeg"), 10.0, False),
        }
        for key, entry in cat.items():
            if not entry.get("marker") and entry.get("display_s"):
                numeric[key] = (entry.get("source_id"), float(entry["display_s"]), False)
        for role, (sid, seconds, filt) in numeric.items():
            if sid and role not in self.tracks and self._wants(role):
                self.tracks[role] = Track(role, sid, seconds, filt)
                self._spawn(role, self._read_numeric, self.tracks[role])
        if (sid := (cat.get("decisions") or {}).get("source_id")) and self._wants("decisions"):
            self._spawn("decisions", self._read_markers, sid, self._on_decision)
        if (sid := (cat.get("heart_beats") or {}).get("source_id")) and self._wants("heart_beats"):
            self._spawn("beats", self._read_markers, sid, self._on_beat)
        if (sid := (cat.get("safety") or {}).get("source_id")) and self._wants("safety"):
            self._spawn("safety", self._read_markers, sid, self._on_safety)
        for key in VIEW_MARKERS:
            if (sid := (cat.get(key) or {}).get("source_id")) and self._wants(key):
                self._spawn(key, self._read_markers, sid, self._view_marker(key))

    def _read_numeric(self, track: Track) -> None:
        inlet: Inlet | None = None
        while not self._stop.is_set():
            if inlet is None:
                inlet = self._connect(track)
                if inlet is None:
                    self._stop.wait(self.retry_s)
                    continue
            try:
                # A fixed 25 ms poll, not a blocking wait: a 1-sample-per-push source
                # would otherwise wake this thread 1000 times a second. The display needs
                # batches, not latency (DESIGN.md's no-polling rule is for the hot loop).
                chunk = inlet.pull(0.0)
            except StreamError as exc:
                track.connected, track.error = False, str(exc)
                inlet = None
                continue
            if len(chunk):
                track.write(chunk.data, chunk.timestamps)
                track.lost_samples = inlet.lost_samples
                track.gaps += sum(type(e).__name__ == "Gap" for e in chunk.events)
            self._stop.wait(READ_PERIOD_S)
        if inlet is not None:
            inlet.close()

    def _connect(self, track: Track) -> Inlet | None:
        try:
            # The short resolve keeps a missing optional stream (no EDA stage) cheap.
            inlet = Inlet(track.source_id, resolve_timeout=3.0, buffer_s=2.0)
            inlet.connect()
        except Exception as exc:  # not found, mismatched, liblsl timeout: retried later
            track.error = str(exc)
            return None
        track.reset(inlet.rate_hz, inlet.channel_labels, inlet.channel_units, None)
        return inlet

    def _read_markers(self, source_id: str, handle, latest_only: bool = False) -> None:
        """Pass each JSON marker of a stream to ``handle(msg, t)`` (non-JSON text as
        ``{"event": "text"}``), reconnecting when the stream goes; only the newest one
        of each pull when ``latest_only``."""
        inlet = None
        while not self._stop.is_set():
            if inlet is None:
                try:
                    inlet = MarkerInlet(source_id, resolve_timeout=3.0).connect()
                except Exception:  # not found, or liblsl timed out: try again later
                    self._stop.wait(self.retry_s)
                    continue
            try:
                items = inlet.pull()
            except StreamError:
                inlet = None
                continue
            for text, t in items[-1:] if latest_only else items:
                try:
                    msg = json.loads(text)
                except ValueError:
                    msg = {"event": "text", "text": text}
                if isinstance(msg, dict):
                    handle(msg, t)
            self._resolve_true_phases()
            self._stop.wait(0.05)
        if inlet is not None:
            inlet.close()

    def _view_marker(self, key: str):
        def handle(msg: dict, t: float) -> None:
            with self.markers.lock:
                items = self.markers.streams.setdefault(key, [])
                items.append((msg, t))
                if len(items) > VIEW_MARKERS_KEPT:
                    n = len(items) - VIEW_MARKERS_KEPT // 2
                    del items[:n]
                    self.markers.dropped[key] = self.markers.dropped.get(key, 0) + n
                    log.warning("GUI: dropped the %d oldest %s events from the display", n, key)

        return handle

    def _on_decision(self, msg: dict, t: float) -> None:
        event = msg.get("event")
        with self.markers.lock:
            self.markers.events.append({**msg, "t": t})
            if event == "fired" and _finite(msg.get("t_trigger")):
                info = {k: msg[k] for k in PULSE_INFO if k in msg}
                self.markers.pulses.append(Pulse(float(msg["t_trigger"]), info=info))
            elif event == "alert":
                self.markers.alerts.append({**msg, "t": t})
            elif event == "prompt":
                self.markers.prompt = {**msg, "t": t}
            elif event == "pulse_phase" and _finite(msg.get("t_trigger")):
                for p in reversed(self.markers.pulses):
                    if abs(p.t_trigger - msg["t_trigger"]) < 1e-6:
                        p.phase_est_rad = _float(msg.get("phase_rad"))
                        break

    def _on_safety(self, msg: dict, t: float) -> None:
        """Keep the gate's ``train_fired`` records: when each train started and how long
        it ran (its pulses over its rate), whatever the protocol had planned."""
        if msg.get("event") != "train_fired" or not _finite(msg.get("t_lsl")):
            return
        f, n = _float(msg.get("frequency_hz")), _float(msg.get("n_pulses"))
        if f > 0 and n > 0:
            with self.markers.lock:
                self.markers.trains.append((float(msg["t_lsl"]), n / f))

    def _on_beat(self, msg: dict, t: float) -> None:
        if msg.get("beat_class") == BEAT_ARTIFACT:  # a step or spike, not a heartbeat
            return
        with self.markers.lock:
            self.markers.beats_t.append(t)  # the marker is stamped at the R peak

    def _resolve_true_phases(self) -> None:
        """Look up the truth stream's phase at each pulse once the truth covers it."""
        truth = self.tracks.get("eeg_truth")
        if truth is None:
            return
        with self.markers.lock:
            todo = [p for p in self.markers.pulses if not math.isfinite(p.phase_true_rad)]
        if not todo:
            return
        data, ts, _ = truth.latest(truth.seconds)
        if ts.size < 2 or data.shape[1] < 1:
            return
        phases = value_at(ts, data[:, 0], np.array([p.t_trigger for p in todo]))
        for p, phase in zip(todo, phases, strict=True):
            p.phase_true_rad = float(phase)  # NaN until the truth covers the pulse


def _latest(ring: RingBuffer, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The newest ``n`` samples of ``ring`` in time order, copied with (at most) two
    slices rather than an index array: this copy is the largest per-frame cost."""
    n = min(n, ring.n_written - ring.first_index)
    end = ring.n_written % ring.capacity
    start = end - n
    if start >= 0:
        return ring.data[start:end].copy(), ring.timestamps[start:end].copy()
    data = np.concatenate((ring.data[start:], ring.data[:end]))
    return data, np.concatenate((ring.timestamps[start:], ring.timestamps[:end]))


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _float(x: object) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan
