"""Events an :class:`~stimloop.stream.inlet.Inlet` reports about its stream's health.

They are plain records so that a runner can log them, publish them as markers and
record them, and so that a test can assert on them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gap:
    """Samples are missing: consecutive timestamps jumped by more than 1.5 periods
    (:data:`~stimloop.stream.timing.GAP_PERIODS`).

    Attributes
    ----------
    index : int
        Grid index of the first missing sample (the first NaN row when bridged).
    t_before, t_after : float
        Timestamps (local LSL clock, s) either side of the gap.
    missing : int
        Estimated number of missing samples (``round(jump * rate) - 1``).
    bridged : bool
        True: the chunk carries ``missing`` NaN rows in their place. False: the gap was
        longer than the inlet's ``max_gap_s``; the samples after it start a new segment
        (``Chunk.restart``).
    """

    index: int
    t_before: float
    t_after: float
    missing: int
    bridged: bool = True

    @property
    def duration_s(self) -> float:
        """Length of the hole in the data in s (jump minus one sample period)."""
        return self.t_after - self.t_before


@dataclass(frozen=True)
class NonFinite:
    """A chunk held NaN or ±inf values; they are kept as they are and flagged.

    Attributes
    ----------
    index : int
        Absolute index of the first sample of the chunk.
    n_samples : int
        Samples in the chunk with at least one non-finite value.
    """

    index: int
    n_samples: int


@dataclass(frozen=True)
class ClockJump:
    """The stream's time base jumped: timestamps went backwards or the clock offset
    to the sender changed by more than the tolerance.

    Attributes
    ----------
    index : int
        Absolute index of the first affected sample.
    jump_s : float
        Size of the jump in s (negative = backwards).
    cause : str
        ``"timestamps"`` or ``"offset"``.
    """

    index: int
    jump_s: float
    cause: str


@dataclass(frozen=True)
class Stale:
    """No new sample arrived for longer than the staleness threshold.

    Attributes
    ----------
    age_s : float
        Time since the newest sample arrived, in s.
    threshold_s : float
        The threshold that was exceeded, in s.
    """

    age_s: float
    threshold_s: float


@dataclass(frozen=True)
class Recovered:
    """Samples flow again after a :class:`Stale` event."""

    index: int


@dataclass(frozen=True)
class Untrusted:
    """The stream's timestamps cannot be trusted; nothing may be timed from them.

    Attributes
    ----------
    index : int
        Grid index of the first sample of the chunk that showed it.
    reason : str
        What was seen and what was expected, e.g. "timestamps run 20.0 s ahead of the
        local clock; allowed <= 0.05 s".
    """

    index: int
    reason: str


@dataclass(frozen=True)
class Trusted:
    """The stream's timestamps pass the checks again after :class:`Untrusted`."""

    index: int


StreamEvent = Gap | NonFinite | ClockJump | Stale | Recovered | Untrusted | Trusted
