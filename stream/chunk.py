"""The chunk: the currency between stimloop's rooms, and the one gap policy that makes it.

An :class:`~stimloop.stream.inlet.Inlet` hands out :class:`Chunk` s, which go unchanged
through the engine to the DSP stages and the protocol. A :class:`ChunkAssembler` puts
received samples on the stream's *time grid* by the rules of
:mod:`stimloop.stream.timing`: a gap up to ``max_gap_s`` is bridged with NaN rows at the
missing samples' due times; a longer gap, or timestamps that go back, start a new
segment (``Chunk.restart``). No consumer re-derives gaps from timestamps: this is the
one place the policy is applied, live (the Inlet) and offline (replaying arrays through
the same assembler, as the tests and benchmarks do).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from stimloop.stream.errors import StreamError
from stimloop.stream.events import ClockJump, Gap, NonFinite, StreamEvent
from stimloop.stream.ratelimit import RateLimiter
from stimloop.stream.timing import TimeGrid, missing_samples, timing_breaks

log = logging.getLogger("stimloop.stream")


@dataclass
class Chunk:
    """New samples from one :meth:`Inlet.pull`: the currency between the rooms.

    It goes unchanged from the inlet through the engine to the DSP stages and the
    protocol, so that no consumer re-derives from timestamps what the inlet knows.

    For a regular stream the rows lie on the stream's *time grid*: a gap the inlet
    bridged (up to its ``max_gap_s``) is filled with NaN rows at their due times
    (``finite`` False there, a :class:`~stimloop.stream.events.Gap` event names it), and
    ``first_index`` counts lost samples too, so ``first_index + k`` is the grid index of
    row ``k``. After a longer gap, or a clock jump backwards, the chunk starts a new
    segment (``restart``): a consumer resets its state before using it.

    ``data``, ``timestamps`` and ``finite`` may be views into buffers the inlet reuses on
    the next pull: copy them if they must outlive it, and never write to them.

    Attributes
    ----------
    data : ndarray, shape (n, n_channels)
        Samples in the stream's units and dtype, NaN/inf kept as received.
    timestamps : ndarray, shape (n,)
        Local LSL clock time of each sample in s.
    first_index : int
        Grid index of ``data[0]`` (irregular streams: count of samples received).
    finite : ndarray of bool, shape (n,)
        False where a sample has a NaN or ±inf value, or bridges a gap.
    events : tuple
        Health events detected by this pull (gaps, non-finite values, clock jumps,
        staleness, recovery, untrusted timing).
    rate_hz : float
        Nominal rate of the stream in Hz (0 = irregular).
    restart : bool
        The samples do not continue the previous chunk's (a gap longer than
        ``max_gap_s``, or timestamps that went back): reset before consuming.
    """

    data: np.ndarray
    timestamps: np.ndarray
    first_index: int
    finite: np.ndarray
    events: tuple[StreamEvent, ...] = field(default_factory=tuple)
    rate_hz: float = 0.0
    restart: bool = False

    def __len__(self) -> int:
        return self.data.shape[0]

    def grid(self) -> TimeGrid:
        """The index ↔ time map of this chunk's stream, anchored at its newest sample.

        Raises
        ------
        StreamError
            The chunk is empty or the stream irregular (no grid).
        """
        if not len(self) or self.rate_hz <= 0:
            raise StreamError("an empty chunk or an irregular stream has no time grid")
        return TimeGrid(self.first_index + len(self) - 1, float(self.timestamps[-1]), self.rate_hz)


class ChunkAssembler:
    """Applies the gap policy to received samples; returns the chunks to hand out.

    Parameters
    ----------
    rate_hz : float
        Nominal rate in Hz (0: an irregular stream, passed through unchanged).
    max_gap_s : float
        Longest gap bridged with NaN rows, s; a longer one restarts.
    clock_jump_tol_s : float
        A step back larger than this (and than half a period) is a clock jump.
    name : str
        The stream's name for log messages.
    """

    def __init__(self, rate_hz: float, max_gap_s: float, clock_jump_tol_s: float = 0.005,
                 name: str = "") -> None:  # fmt: skip
        self.rate_hz = float(rate_hz)
        self.max_gap_s = float(max_gap_s)
        self.back_tol_s = max(0.5 / rate_hz, clock_jump_tol_s) if rate_hz > 0 else 0.0
        self.name = name
        self.next_index = 0  # grid index of the next sample
        self.last_t = np.nan  # timestamp of the last sample handed out
        self.lost_samples = 0
        self._log = RateLimiter(1.0)
        self._ones = np.ones(0, bool)

    def push(self, data: np.ndarray, stamps: np.ndarray, events: list | None = None) -> list[Chunk]:
        """Put samples received in one pull on the grid.

        Parameters
        ----------
        data : ndarray, shape (n, n_channels)
            Samples (may be views into reused buffers: rows after a restart are copied).
        stamps : ndarray, shape (n,)
            Their timestamps on the local LSL clock, s.
        events : list, optional
            Events already found for this pull (staleness, recovery, trust); they go
            with the first chunk.

        Returns
        -------
        list of Chunk
            One chunk, or more when a gap too long to bridge or a clock jump back splits
            the samples (every chunk after the first has ``restart`` set).
        """
        out: list[Chunk] = []
        events = list(events or [])
        restart = False
        while True:
            chunk, rest = self._segment(data, stamps, events, restart)
            out.append(chunk)
            if rest is None:
                return out
            # A new segment: the grid moves over the lost samples (none for a clock jump
            # back), and nothing before it is compared with.
            self.next_index, self.last_t = self._skip_to, np.nan
            data, stamps, events, restart = *rest, True

    def _segment(self, data, stamps, events, restart):
        first = self.next_index
        rate = self.rate_hz
        if rate <= 0 or not stamps.size:
            return self._emit(data, stamps, first, self._finite(data, first, events), events,
                              restart), None  # fmt: skip
        rows, jumps = timing_breaks(self.last_t, stamps, rate, self.back_tol_s)
        if not rows.size:
            return self._emit(data, stamps, first, self._finite(data, first, events), events,
                              restart), None  # fmt: skip
        px, pt, pok, start, index, rest = [], [], [], 0, first, None
        for k, jump in zip(rows.tolist(), jumps.tolist(), strict=True):
            t_before = float(stamps[k - 1]) if k else float(self.last_t)
            px.append(data[start:k])
            pt.append(stamps[start:k])
            pok.append(self._finite(data[start:k], index, events))
            index += k - start
            missing = int(missing_samples(jump, rate)) if jump > 0 else 0
            if jump < 0 or missing > self.max_gap_s * rate:
                rest = self._restart_point(data[k:], stamps[k:], index, t_before, jump, missing)
                break
            self.lost_samples += missing
            events.append(Gap(index, t_before, float(stamps[k]), missing, True))
            if (held := self._log.allow("gap")) is not None:
                log.warning("stream %s: gap of %d samples bridged (%d more not logged)",
                            self.name, missing, held)  # fmt: skip
            px.append(np.full((missing, data.shape[1]), np.nan))
            pt.append(t_before + np.arange(1, missing + 1) / rate)
            pok.append(np.zeros(missing, bool))
            index += missing
            start = k
        else:
            px.append(data[start:])
            pt.append(stamps[start:])
            pok.append(self._finite(data[start:], index, events))
        x = np.concatenate(px) if len(px) > 1 else px[0]
        return self._emit(x, np.concatenate(pt), first, np.concatenate(pok), events,
                          restart), rest  # fmt: skip

    def _restart_point(self, data, stamps, index, t_before, jump, missing):
        """The samples after a restart point (copied: pull buffers are reused), with the
        event that says why, and the grid moved over what was lost."""
        if jump < 0:
            why: StreamEvent = ClockJump(index, float(jump), "timestamps")
            log.warning("stream %s: timestamps went back %.4f s; restarting", self.name, jump)
            missing = 0
        else:
            self.lost_samples += missing
            why = Gap(index, t_before, float(stamps[0]), missing, False)
            log.warning("stream %s: gap of %d samples; restarting", self.name, missing)
        self._skip_to = index + missing
        return data.copy(), stamps.copy(), [why]

    def _emit(self, data, stamps, first, finite, events, restart) -> Chunk:
        n = data.shape[0]
        self.next_index = first + n
        if n:
            self.last_t = float(stamps[-1])
        return Chunk(data, stamps, first, finite, tuple(events), self.rate_hz, restart)

    def _finite(self, data: np.ndarray, first: int, events: list) -> np.ndarray:
        n = data.shape[0]
        # One reduction, no temporary array, in the common all-finite case: a sum is
        # finite only if every term is (a float32 overflow just takes the slow path).
        if np.isfinite(data.sum()):
            if self._ones.size < n:
                self._ones = np.ones(max(n, 2 * self._ones.size), bool)
            return self._ones[:n]
        finite = np.isfinite(data).all(axis=1)
        if bad := int(n - finite.sum()):
            events.append(NonFinite(first, bad))
            log.debug("stream %s: %d samples with NaN/inf", self.name, bad)
        return finite
