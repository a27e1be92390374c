"""Events an :class:`~stimloop.stream.inlet.Inlet` reports about its stream's health.

They are plain records so that a runner can log them, publish them as markers and
record them, and so that a test can assert on them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gap:
    """Samples are missing: consecutive timestamps jumped by more than 1.5 periods.

    Attributes
    ----------
    index : int
        Absolute index of the first sample after the gap.
    t_before, t_after : float
        Timestamps (local LSL clock, s) either side of the gap.
    missing : int
        Estimated number of missing samples (``round(jump * rate) - 1``).
    """

    index: int
    t_before: float
    t_after: float
    missing: int

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


StreamEvent = Gap | NonFinite | ClockJump | Stale | Recovered
