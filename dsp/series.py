"""Reading a sampled series at arbitrary times (pulse times on a truth or estimate stream)."""

from __future__ import annotations

import numpy as np


def value_at(stamps: np.ndarray, values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The sample of ``values`` nearest in time to each of ``t``; NaN outside the series.

    Nearest, not interpolated: the series read this way are phases (interpolating
    across the ±π wrap would be wrong) and per-sample truths. One function, so that the
    live window, the demo's score and ``stimloop analyze`` give a pulse the same phase.

    Parameters
    ----------
    stamps : ndarray, shape (n,)
        Increasing sample times in s.
    values : ndarray, shape (n,)
        The samples.
    t : ndarray, shape (m,)
        Query times in s (same clock as ``stamps``).

    Returns
    -------
    ndarray, shape (m,)
        ``values`` at the nearest stamp (ties go to the later sample); NaN where ``t``
        lies before the first or after the last stamp, or the series is empty.
    """
    stamps = np.asarray(stamps, dtype=float)
    t = np.atleast_1d(np.asarray(t, dtype=float))
    out = np.full(t.shape, np.nan)
    if stamps.size == 0:
        return out
    if stamps.size == 1:
        out[t == stamps[0]] = float(values[0])
        return out
    k = np.clip(np.searchsorted(stamps, t), 1, stamps.size - 1)
    k -= (t - stamps[k - 1]) < (stamps[k] - t)
    inside = (t >= stamps[0]) & (t <= stamps[-1])
    out[inside] = np.asarray(values, dtype=float)[k[inside]]
    return out
