"""What a consumer saw of one stream: samples, gaps, bad values, timing.

One record for every consumer that counts (the session engine and the recorder), so the
same stream gives the same figures wherever they are printed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stimloop.stream.events import Gap, NonFinite, Stale
from stimloop.stream.timing import count_gaps


@dataclass
class StreamStats:
    """Counters of one stream over a session or a recording.

    Attributes
    ----------
    rate_hz : float
        Nominal rate in Hz (0 = irregular).
    source_id, name, type : str
        From the stream's info (empty where the consumer does not need them).
    stream_id : int
        Id of the stream inside an XDF file (-1 outside a recorder).
    samples : int
        Samples received (bridged gap rows not counted).
    gaps, lost_samples : int
        Gaps (jumps of more than 1.5 sample periods) and the samples they lost.
    nonfinite : int
        Samples received with a NaN or ±inf value.
    stale_events : int
        Times the stream went stale.
    first_t, last_t : float
        First and last timestamp seen, s (NaN before any).
    lost : bool
        The stream's outlet vanished.
    """

    rate_hz: float
    source_id: str = ""
    name: str = ""
    type: str = ""
    stream_id: int = -1
    samples: int = 0
    gaps: int = 0
    lost_samples: int = 0
    nonfinite: int = 0
    stale_events: int = 0
    first_t: float = math.nan
    last_t: float = math.nan
    lost: bool = False

    def add_stamps(self, stamps: np.ndarray) -> None:
        """Count received samples by their timestamps (gaps found by the shared rule)."""
        if not stamps.size:
            return
        gaps, missing = count_gaps(self.last_t, stamps, self.rate_hz)
        self.gaps += gaps
        self.lost_samples += missing
        self._span(stamps, stamps.size)

    def add_chunk(self, chunk) -> None:
        """Count an :class:`~stimloop.stream.inlet.Chunk`: the inlet already found its
        gaps (their NaN rows are not samples), bad values and staleness."""
        bridged = 0
        for ev in chunk.events:
            if isinstance(ev, Gap):
                self.gaps += 1
                self.lost_samples += ev.missing
                bridged += ev.missing if ev.bridged else 0
            elif isinstance(ev, NonFinite):
                self.nonfinite += ev.n_samples
            elif isinstance(ev, Stale):
                self.stale_events += 1
        if len(chunk):
            self._span(chunk.timestamps, len(chunk) - bridged)

    def _span(self, stamps: np.ndarray, n: int) -> None:
        if not self.samples:
            self.first_t = float(stamps[0])
        self.samples += n
        self.last_t = float(stamps[-1])

    @property
    def effective_rate_hz(self) -> float:
        """Samples per second of timestamps, ``(samples - 1) / (last - first)``; NaN if < 2."""
        span = self.last_t - self.first_t
        return (self.samples - 1) / span if self.samples > 1 and span > 0 else math.nan

    @property
    def expected_samples(self) -> int:
        """Samples the nominal rate puts between the first and last timestamp."""
        if not self.samples or self.rate_hz <= 0:
            return self.samples
        return round((self.last_t - self.first_t) * self.rate_hz) + 1

    def summary(self) -> dict[str, float | int | None]:
        """JSON-ready counters (NaN as None)."""
        eff = self.effective_rate_hz
        return {
            "rate_hz": self.rate_hz,
            "samples": self.samples,
            "expected_samples": self.expected_samples,
            "effective_rate_hz": None if math.isnan(eff) else eff,
            "gaps": self.gaps,
            "lost_samples": self.lost_samples,
            "nonfinite_samples": self.nonfinite,
            "stale_events": self.stale_events,
        }
