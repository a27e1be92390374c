"""The rules about sample timing that every consumer shares: gaps, and index ↔ time.

A regular stream (nominal rate > 0) puts its samples on a *time grid*: sample ``i`` is
due ``i / rate`` seconds after sample 0. Two consecutive timestamps further apart than
:data:`GAP_PERIODS` sample periods mean samples were lost; the number lost is
``round(jump * rate) - 1``. This module is the one place that rule is written; the
:class:`~stimloop.stream.inlet.Inlet` applies it to live data (and bridges the holes, so
consumers never re-derive them), the recorder to what it writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: A jump between consecutive timestamps longer than this many sample periods is a gap.
#: 1.5 periods tolerates the push jitter of senders that let liblsl back-date chunk
#: stamps, and still sees a single lost sample (a jump of 2 periods).
GAP_PERIODS = 1.5

# Read-only: callers share them.
_NO_ROWS = np.zeros(0, np.int64)
_NO_ROWS.flags.writeable = False
_NO_JUMPS = np.zeros(0)
_NO_JUMPS.flags.writeable = False


def timing_breaks(
    prev_t: float, stamps: np.ndarray, rate_hz: float, back_tol_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Where consecutive timestamps jump forward by a gap or back by more than a tolerance.

    Parameters
    ----------
    prev_t : float
        Timestamp of the sample before ``stamps[0]`` in s (NaN: none, nothing checked
        before ``stamps[0]``).
    stamps : ndarray, shape (n,)
        Timestamps in s.
    rate_hz : float
        Nominal rate in Hz (> 0).
    back_tol_s : float
        A step back up to this many s is jitter, not a jump (> 0).

    Returns
    -------
    rows : ndarray of int
        Row ``k`` of ``stamps`` that follows each break (0 = between ``prev_t`` and the
        first stamp).
    jumps_s : ndarray
        The jump before each of those rows, s (negative = backwards).

    Both may be shared, read-only arrays (when there is no break): read them, do not
    write into them.
    """
    if stamps.size == 1:
        # One sample per pull is the real-time case (a 1 kHz stream read as it arrives):
        # a scalar test, without the temporaries of the general path, on the loop's path.
        if not math.isfinite(prev_t):
            return _NO_ROWS, _NO_JUMPS
        lead = float(stamps[0]) - prev_t
        if lead > GAP_PERIODS / rate_hz or lead < -back_tol_s:
            return np.zeros(1, np.int64), np.array([lead])
        return _NO_ROWS, _NO_JUMPS
    lead = stamps[0] - prev_t if np.isfinite(prev_t) else 1.0 / rate_hz
    jumps = np.concatenate(([lead], np.diff(stamps)))
    rows = np.flatnonzero((jumps > GAP_PERIODS / rate_hz) | (jumps < -back_tol_s))
    return rows, jumps[rows]


def missing_samples(jump_s: float | np.ndarray, rate_hz: float) -> int | np.ndarray:
    """Samples lost in a forward jump of ``jump_s`` s between two received samples."""
    return np.round(np.asarray(jump_s) * rate_hz).astype(np.int64) - 1


def count_gaps(prev_t: float, stamps: np.ndarray, rate_hz: float) -> tuple[int, int]:
    """Number of gaps in ``stamps`` (after ``prev_t``) and the samples they lost.

    Backward steps are not gaps (clock jumps are reported elsewhere); ``rate_hz <= 0``
    (an irregular stream) has none.
    """
    if rate_hz <= 0 or stamps.size == 0:
        return 0, 0
    rows, jumps = timing_breaks(prev_t, stamps, rate_hz, np.inf)
    return int(rows.size), int(np.sum(missing_samples(jumps, rate_hz))) if rows.size else 0


@dataclass(frozen=True)
class TimeGrid:
    """Maps sample indices of a regular stream to LSL times and back.

    Anchored at one sample whose index and timestamp are known (usually the newest);
    other samples are placed at the nominal rate from it. This is how a consumer turns
    an event time into the index of the sample it falls on, and back.

    Attributes
    ----------
    index : int
        Index of the anchor sample (on the time grid: lost samples counted).
    t : float
        Its timestamp, s.
    rate_hz : float
        Nominal rate in Hz.
    """

    index: int
    t: float
    rate_hz: float

    def time_of(self, index: int | np.ndarray) -> float | np.ndarray:
        """LSL time (s) of grid index ``index``."""
        return self.t + (np.asarray(index) - self.index) / self.rate_hz

    def index_of(self, t: float | np.ndarray) -> int | np.ndarray:
        """Grid index of the sample nearest LSL time ``t`` (s)."""
        idx = self.index + np.round((np.asarray(t) - self.t) * self.rate_hz).astype(np.int64)
        return int(idx) if np.ndim(idx) == 0 else idx


#: A forward jump longer than this (s) inside the first samples an inlet receives marks
#: the samples before it as stamped by liblsl from zero (see :func:`unplaced_lead`).
LEAD_JUMP_S = 10.0


def unplaced_lead(stamps: np.ndarray) -> int:
    """How many leading samples of a stream's *first* pull carry no real timestamp.

    liblsl sends one explicit timestamp per pushed chunk and marks the chunk's other
    samples "deduced" (previous stamp plus one period). An inlet that joins in the middle
    of a chunk receives deduced samples first, with nothing before them to deduce from:
    liblsl stamps them from zero (0.002, 0.004, ... s at 500 Hz), followed by a jump to the
    sender's real clock. Those samples cannot be placed in time; this many are dropped.

    Parameters
    ----------
    stamps : ndarray
        Timestamps of the first pull of a stream, s (before any clock correction).

    Returns
    -------
    int
        0 when the pull has no such jump.
    """
    if stamps.size < 2:
        return 0
    jumps = np.flatnonzero(np.diff(stamps) > LEAD_JUMP_S)
    return int(jumps[-1]) + 1 if jumps.size else 0
