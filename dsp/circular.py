"""Circular statistics of phase angles (pulse phases, phase errors)."""

from __future__ import annotations

import math

import numpy as np


def circular_stats(angles_rad: np.ndarray) -> dict[str, float]:
    """Count, circular mean, circular SD and Rayleigh test of a set of angles.

    The circular SD is √(−2 ln R) with R the mean resultant length (Mardia 1972), the
    figure the phase-estimation literature reports. The Rayleigh test p-value uses
    Zar's (1999) approximation, good from n ≈ 10.

    Parameters
    ----------
    angles_rad : ndarray
        Angles in rad; NaN entries are ignored.

    Returns
    -------
    dict
        ``n``; ``mean_deg`` and ``sd_deg`` in degrees; ``rayleigh_p`` (small = the
        angles are concentrated, large = consistent with uniform). NaN when n is 0.
    """
    a = np.asarray(angles_rad, dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"n": 0, "mean_deg": math.nan, "sd_deg": math.nan, "rayleigh_p": math.nan}
    z = np.mean(np.exp(1j * a))
    r = float(np.abs(z))
    n = a.size
    big_r = n * r
    p = math.exp(math.sqrt(1 + 4 * n + 4 * (n * n - big_r * big_r)) - (1 + 2 * n))
    return {
        "n": n,
        "mean_deg": math.degrees(math.atan2(z.imag, z.real)),
        "sd_deg": math.degrees(math.sqrt(-2 * math.log(max(r, 1e-12)))),
        "rayleigh_p": min(1.0, p),
    }
