"""A crash-safe XDF recorder for LSL streams (numeric and string/marker streams).

Two threads and a queue keep acquisition away from the disk: the *acquisition* thread
pulls every inlet and puts copies of the chunks on a queue; the *writer* thread encodes
them as XDF chunks (:mod:`stimloop.stream.xdf`) and, every ``flush_interval_s``
(0.5 s by default), writes what it has with one ``os.write`` on an unbuffered file
descriptor followed by ``os.fsync``. Because only whole chunks are ever written, a
recorder killed at any moment (even by SIGKILL) leaves a file that ends on a chunk
boundary, which ``pyxdf.load_xdf`` opens with every sample up to the last flush.

As LabRecorder does, the recorder stores each stream's full info XML as the
StreamHeader, the *sender's* timestamps unchanged, and a ClockOffset measurement
(``StreamInlet.time_correction``) every ``clock_offset_interval_s`` so that readers map
them to the recording host's clock. A Boundary chunk is written every
``boundary_interval_s`` and a StreamFooter per stream when the recording stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pylsl
from pylsl.util import LostError
from pylsl.util import TimeoutError as LSLTimeoutError

from stimloop.stream import xdf
from stimloop.stream.errors import StreamError, StreamNotFoundError
from stimloop.stream.files import PrivateFileError, open_private_fd
from stimloop.stream.inlet import resolve_source
from stimloop.stream.stats import StreamStats
from stimloop.stream.timing import unplaced_lead

log = logging.getLogger("stimloop.stream.recorder")

_XDF_FORMATS = {
    pylsl.cf_float32: "float32",
    pylsl.cf_double64: "double64",
    pylsl.cf_int8: "int8",
    pylsl.cf_int16: "int16",
    pylsl.cf_int32: "int32",
    pylsl.cf_int64: "int64",
    pylsl.cf_string: "string",
}
_NUMPY = {k: xdf.FORMATS[v] for k, v in _XDF_FORMATS.items() if v != "string"}
_STOP = object()


@dataclass
class _Source:
    stats: StreamStats
    inlet: pylsl.StreamInlet
    fmt: str
    buf: np.ndarray | None
    offsets: list[tuple[float, float]] = field(default_factory=list)
    next_offset_at: float = 0.0


class Recorder:
    """Record LSL streams to an XDF file until :meth:`stop`.

    Parameters
    ----------
    path : str or path-like
        Output ``.xdf`` file. It is created readable by its owner only (0600, whatever
        the umask; :mod:`stimloop.stream.files`), and a symbolic link or another user's
        file there is refused.
    source_ids : sequence of str, optional
        Streams to record, by source_id. None records every stream visible within
        ``discover_s`` (markers included).
    hostnames : mapping of str to str, optional
        Host each named stream must come from (source_id -> hostname), as a session
        file pins its inputs: another host's stream with the same source_id is then not
        recorded in its place (nor taken for an ambiguity).
    resolve_timeout : float
        Seconds to wait for each named stream, and to open each inlet.
    discover_s : float
        Seconds to listen for streams when ``source_ids`` is None.
    flush_interval_s : float
        Longest time data waits before it is written and fsync'ed (s, ≤ 1).
    clock_offset_interval_s : float
        Period of ClockOffset measurements per stream (s).
    boundary_interval_s : float
        Period of Boundary chunks (s).
    overwrite : bool
        Truncate an existing file at ``path`` (True), or refuse it (False: the session
        and ``stimloop record`` never overwrite an earlier recording).

    Examples
    --------
    >>> with Recorder("session.xdf", ["stimloop-sim-eeg"]) as rec:  # doctest: +SKIP
    ...     time.sleep(10)
    >>> rec.stats()  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        source_ids: list[str] | tuple[str, ...] | None = None,
        *,
        resolve_timeout: float = 5.0,
        discover_s: float = 1.0,
        flush_interval_s: float = 0.5,
        clock_offset_interval_s: float = 5.0,
        boundary_interval_s: float = 10.0,
        overwrite: bool = True,
        hostnames: Mapping[str, str] | None = None,
    ) -> None:
        if not 0 < flush_interval_s <= 1.0:
            raise StreamError(f"flush_interval_s must be in (0, 1] s, got {flush_interval_s}")
        self.path = Path(path)
        self.source_ids = list(source_ids) if source_ids is not None else None
        self.hostnames = dict(hostnames or {})
        unknown = set(self.hostnames) - set(self.source_ids or ())
        if unknown:
            raise StreamError(
                f"hostnames given for streams not named in source_ids: {sorted(unknown)}"
            )
        self.resolve_timeout = resolve_timeout
        self.discover_s = discover_s
        self.flush_interval_s = flush_interval_s
        self.clock_offset_interval_s = clock_offset_interval_s
        self.boundary_interval_s = boundary_interval_s
        self.overwrite = overwrite
        self._sources: list[_Source] = []
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.error: BaseException | None = None
        self.bytes_written = 0

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> Recorder:
        """Resolve and open the streams, write the headers and start recording.

        Raises
        ------
        StreamNotFoundError
            A named stream is not there, or no stream is visible at all.
        PrivateFileError
            The file cannot be created (missing folder, permissions, a symbolic link or
            another user's file at the path, or any file there without ``overwrite``).
        """
        if not self.overwrite and os.path.lexists(self.path):  # before waiting on streams
            raise PrivateFileError(
                f"cannot write {str(self.path)!r}: it already exists (nothing was "
                "overwritten); choose another path"
            )
        infos = self._resolve()
        fd = open_private_fd(self.path, exclusive=not self.overwrite)
        try:
            head = [xdf.file_header()]
            # Discovered streams that vanish again should not hold up the start for long.
            open_timeout = (
                self.resolve_timeout if self.source_ids else min(2.0, self.resolve_timeout)
            )
            for info in infos:
                try:
                    inlet = pylsl.StreamInlet(info, max_buflen=360, recover=False)
                    full = inlet.info(timeout=open_timeout)
                    inlet.open_stream(timeout=open_timeout)
                except (LSLTimeoutError, LostError) as exc:
                    if self.source_ids is not None:
                        raise StreamError(
                            f"could not open stream {info.source_id()!r}: {exc!r}"
                        ) from exc
                    # Recording whatever is visible: a stream that vanished between
                    # discovery and opening is simply not part of the session.
                    log.warning("stream %s vanished before opening", info.source_id())
                    continue
                k = len(self._sources) + 1
                fmt = _XDF_FORMATS.get(full.channel_format())
                if fmt is None:
                    raise StreamError(
                        f"stream {full.source_id()!r} has an unsupported channel format "
                        f"{full.channel_format()}"
                    )
                rate = full.nominal_srate()
                buf = None
                if fmt != "string":
                    n_max = max(1024, int(4 * rate))
                    buf = np.empty((n_max, full.channel_count()), _NUMPY[full.channel_format()])
                stats = StreamStats(rate, full.source_id(), full.name(), full.type(), k)
                self._sources.append(_Source(stats, inlet, fmt, buf))
                head.append(xdf.stream_header(k, full.as_xml()))
            if not self._sources:
                raise StreamNotFoundError("every stream found vanished before it was opened")
            _write_all(fd, b"".join(head))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            self._close_inlets()
            raise
        self._fd = fd
        self._threads = [
            threading.Thread(target=self._acquire, name="recorder-acquire", daemon=True),
            threading.Thread(target=self._write, name="recorder-write", daemon=True),
        ]
        for t in self._threads:
            t.start()
        log.info("recording %d stream(s) to %s", len(self._sources), self.path)
        return self

    def _resolve(self) -> list[pylsl.StreamInfo]:
        if self.source_ids is not None:
            # Each resolve listens ~0.6 s for duplicates; do them all at once.
            with ThreadPoolExecutor(max(1, min(16, len(self.source_ids)))) as pool:
                return list(
                    pool.map(lambda sid: resolve_source(sid, self.hostnames.get(sid),
                                                        timeout=self.resolve_timeout),
                             self.source_ids)
                )  # fmt: skip
        found = {i.uid(): i for i in pylsl.resolve_streams(self.discover_s)}
        if not found:
            raise StreamNotFoundError(
                f"no LSL streams visible within {self.discover_s} s; nothing to record"
            )
        return sorted(found.values(), key=lambda i: (i.source_id(), i.name()))

    def stop(self) -> list[StreamStats]:
        """Drain the inlets, write the footers, fsync and close the file.

        Returns
        -------
        list of StreamStats
            Final per-stream statistics.

        Raises
        ------
        StreamError
            A recorder thread failed (the file holds everything written before that).
        """
        if self._threads:
            self._stop.set()
            for t in self._threads:
                t.join(timeout=30.0)
            self._threads = []
            self._close_inlets()
        if self.error is not None:
            raise StreamError(f"recorder of {self.path} failed: {self.error!r}") from self.error
        return self.stats()

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the recorder threads are alive."""
        return any(t.is_alive() for t in self._threads)

    def stats(self) -> list[StreamStats]:
        """A snapshot of per-stream statistics (copies, safe to keep)."""
        with self._lock:
            return [replace(s.stats) for s in self._sources]

    def _close_inlets(self) -> None:
        for s in self._sources:
            with contextlib.suppress(Exception):
                s.inlet.close_stream()

    # -- acquisition thread ------------------------------------------------------
    def _acquire(self) -> None:
        try:
            # Clock offsets are asked for without waiting (liblsl estimates them in the
            # background); a stream without an estimate yet is asked again next pass.
            # Waiting here, stream by stream, left data unpulled for seconds at start.
            while True:
                stopping = self._stop.is_set()
                got = False
                for s in self._sources:
                    if not s.stats.lost:
                        got |= self._pull(s)
                        if pylsl.local_clock() >= s.next_offset_at:
                            self._measure_offset(s, 0.0)
                if stopping and not got:
                    # Every footer carries at least one clock offset: a stream whose
                    # estimate never arrived during a short recording waits for it now.
                    for s in self._sources:
                        if not s.offsets and not s.stats.lost:
                            self._measure_offset(s, min(2.0, self.resolve_timeout))
                    break  # drained after the stop request
                if not got:
                    self._stop.wait(0.005)
        except BaseException as exc:
            self.error = exc
            log.exception("recorder acquisition failed")
        finally:
            self._queue.put(_STOP)

    def _pull(self, s: _Source) -> bool:
        try:
            if s.buf is not None:
                _, ts = s.inlet.pull_chunk(timeout=0.0, max_samples=len(s.buf), dest_obj=s.buf)
                values = s.buf[: len(ts)].copy()
            else:
                values, ts = s.inlet.pull_chunk(timeout=0.0, max_samples=4096)
        except LostError:
            with self._lock:
                s.stats.lost = True
            log.warning("stream %s vanished; its recording ends here", s.stats.source_id)
            return False
        if not ts:
            return False
        stamps = np.asarray(ts, dtype=np.float64)
        if not s.stats.samples and (lead := unplaced_lead(stamps)):
            # Joined mid-chunk: liblsl stamped these from zero; they cannot be placed.
            stamps, values = stamps[lead:], values[lead:]
        self._queue.put((s, values, stamps))
        self._update_stats(s.stats, stamps)
        return True

    def _update_stats(self, st: StreamStats, stamps: np.ndarray) -> None:
        with self._lock:
            st.add_stamps(stamps)

    def _measure_offset(self, s: _Source, timeout: float) -> None:
        try:
            offset = s.inlet.time_correction(timeout=timeout)
        except (LSLTimeoutError, LostError):
            return  # no fresh estimate yet; try again on the next pass
        now = pylsl.local_clock()
        # Collection time in the sender's clock (local now minus offset), as LabRecorder
        # stores it: readers regress offsets against the sender's timestamps.
        self._queue.put(("offset", s, now - offset, offset))
        s.offsets.append((now - offset, offset))
        s.next_offset_at = now + self.clock_offset_interval_s

    # -- writer thread -----------------------------------------------------------
    def _write(self) -> None:
        fd = self._fd
        pending: list[bytes] = []
        now = pylsl.local_clock()
        next_flush = now + self.flush_interval_s
        next_boundary = now + self.boundary_interval_s
        try:
            while True:
                try:
                    item = self._queue.get(timeout=max(0.0, next_flush - pylsl.local_clock()))
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                if item is not None:
                    pending.append(self._encode(item))
                now = pylsl.local_clock()
                if now >= next_boundary:
                    pending.append(xdf.boundary_chunk())
                    next_boundary = now + self.boundary_interval_s
                if now >= next_flush:
                    self._flush(fd, pending)
                    next_flush = now + self.flush_interval_s
            for s in self._sources:
                st = s.stats
                pending.append(
                    xdf.stream_footer(st.stream_id, st.first_t if st.samples else 0.0,
                                      st.last_t if st.samples else 0.0, st.samples,
                                      s.offsets)
                )  # fmt: skip
            self._flush(fd, pending)
        except BaseException as exc:
            self.error = self.error or exc
            log.exception("recorder writer failed")
        finally:
            os.close(fd)

    def _encode(self, item: tuple) -> bytes:
        if item[0] == "offset":
            _, s, t, v = item
            return xdf.clock_offset_chunk(s.stats.stream_id, t, v)
        s, values, stamps = item
        return xdf.samples_chunk(s.stats.stream_id, s.fmt, stamps, values)

    def _flush(self, fd: int, pending: list[bytes]) -> None:
        if pending:
            data = b"".join(pending)
            pending.clear()
            _write_all(fd, data)
            self.bytes_written += len(data)
        os.fsync(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def format_stats(stats: list[StreamStats]) -> str:
    """Render recorder statistics as a table (streams, samples, rates, gaps)."""
    w = max([9, *(len(s.source_id) for s in stats)])
    head = (
        f"{'source_id':<{w}} {'type':<9} {'nominal Hz':>10} {'samples':>9} "
        f"{'eff. Hz':>9} {'gaps':>5} {'missing':>8}"
    )
    rows = []
    for s in stats:
        eff = "-" if np.isnan(s.effective_rate_hz) else f"{s.effective_rate_hz:.2f}"
        flag = "  LOST" if s.lost else ""
        rows.append(
            f"{s.source_id:<{w}} {s.type[:9]:<9} {s.rate_hz:>10g} {s.samples:>9d} "
            f"{eff:>9} {s.gaps:>5d} {s.lost_samples:>8d}{flag}"
        )
    return "\n".join([head, *rows])
