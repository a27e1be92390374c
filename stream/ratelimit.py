"""Report a recurring condition at most once per period, with a count of the rest.

A stream at half its declared rate has a gap at every sample, and NaN EEG is non-finite
in every chunk: reported one by one, such a condition floods the log and the marker
stream (thousands a second) and hides everything else. Each key is reported at most
once per period; the report that goes out says how many were held back since the last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class RateLimiter:
    """Allow one report per key per ``period_s``; count the suppressed ones.

    Parameters
    ----------
    period_s : float
        Shortest interval between two reports of the same key, s.
    clock : callable () -> float
        Time source in s (monotonic).
    """

    def __init__(self, period_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.period_s = float(period_s)
        self._clock = clock
        self._next: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def allow(self, key: Hashable) -> int | None:
        """Whether a report of ``key`` may go out now.

        Returns
        -------
        int or None
            None: hold it back (it is counted). Otherwise the number held back since the
            last report of this key, to be stated with this one.
        """
        now = self._clock()
        if now < self._next.get(key, -float("inf")):
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._next[key] = now + self.period_s
        return self._held.pop(key, 0)

    def flush(self) -> dict[Hashable, int]:
        """The reports held back since each key's last one, and forget them: at the end,
        so that none is lost with nothing after it to carry its count."""
        held, self._held = {k: n for k, n in self._held.items() if n > 0}, {}
        return held
