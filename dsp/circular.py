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
    r = min(float(np.abs(z)), 1.0)  # rounding can put one angle's |e^ia| a hair above 1
    n = a.size
    big_r = n * r
    p = math.exp(math.sqrt(1 + 4 * n + 4 * (n * n - big_r * big_r)) - (1 + 2 * n))
    return {
        "n": n,
        "mean_deg": math.degrees(math.atan2(z.imag, z.real)),
        "sd_deg": math.degrees(math.sqrt(-2 * math.log(max(r, 1e-12)))),
        "rayleigh_p": min(1.0, p),
    }


def wrap_phase(angle_rad: float | np.ndarray) -> float | np.ndarray:
    """Wrap angles to (-π, π] rad (NaN stays NaN).

    Parameters
    ----------
    angle_rad : float or ndarray
        Angles in rad.
    """
    a = np.asarray(angle_rad, dtype=float)
    w = np.pi - np.mod(np.pi - a, 2.0 * np.pi)
    return float(w) if w.ndim == 0 else w


def phase_error_stats(phase_rad: np.ndarray, target_rad: float | np.ndarray) -> dict[str, float]:
    """Circular statistics of ``phase - target``: how close pulses landed to their targets.

    The one pulse-phase scorer of stimloop (demo, ``analyze``, validation, benchmarks):
    each pulse is scored against its own target, so a random-phase control, whose
    target differs per pulse, is scored against the right truth.

    Parameters
    ----------
    phase_rad : ndarray
        Phase at each pulse (true or estimated), rad; NaN entries are ignored.
    target_rad : float or ndarray
        The target phase, one for all or one per pulse, rad.

    Returns
    -------
    dict
        :func:`circular_stats` of the wrapped errors (``mean_deg`` is the bias).
    """
    return circular_stats(wrap_phase(np.asarray(phase_rad, float) - np.asarray(target_rad, float)))
