"""Plotting helpers shared by the live window and offline views: decimation, stacking,
phase statistics. Pure numpy; no Qt, no LSL."""

from __future__ import annotations

import numpy as np


def minmax_decimate(t: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a trace to a min and a max per bin, so that no peak is lost on screen.

    A line drawn through the (min, max) pairs of ``n_bins`` equal bins looks like the
    full trace at a width of ``n_bins`` pixels, at a fixed cost per redraw whatever the
    sampling rate (the "min/max envelope" of waveform displays).

    Parameters
    ----------
    t : ndarray, shape (n,)
        Sample times in s.
    y : ndarray, shape (n,) or (n, n_channels)
        Samples; NaNs stay NaN in their bin (a gap on screen).
    n_bins : int
        Bins (about the plot's width in pixels).

    Returns
    -------
    t_out : ndarray, shape (m,)
        Times, two per bin (bin start, bin middle), or ``t`` unchanged when short.
    y_out : ndarray, shape (m,) or (m, n_channels)
        Alternating min and max of each bin.
    """
    n = len(t)
    n_bins = max(1, int(n_bins))
    if n <= 2 * n_bins:
        return t, y
    k = n // n_bins
    start = n - k * n_bins  # keep the newest samples; drop the oldest remainder
    yy = y[start:].reshape(n_bins, k, *y.shape[1:])
    tt = t[start:].reshape(n_bins, k)
    with np.errstate(invalid="ignore"):
        lo = yy.min(axis=1)
        hi = yy.max(axis=1)
    y_out = np.empty((2 * n_bins, *y.shape[1:]), y.dtype)
    y_out[0::2], y_out[1::2] = lo, hi
    t_out = np.empty(2 * n_bins)
    t_out[0::2], t_out[1::2] = tt[:, 0], tt[:, k // 2]
    return t_out, y_out


def merge_envelope(
    t: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`minmax_decimate`, from block minima and maxima already reduced.

    Parameters
    ----------
    t : ndarray, shape (n,)
        Block start times in s.
    lo, hi : ndarray, shape (n, n_channels)
        Per-block minima and maxima.
    n_bins : int
        Bins wanted (about the plot's width in pixels).

    Returns
    -------
    t_out : ndarray, shape (2 m,)
    y_out : ndarray, shape (2 m, n_channels)
        Alternating min and max per bin (blocks merged ``n // n_bins`` at a time).
    """
    n = len(t)
    k = max(1, n // max(1, int(n_bins)))
    m = n // k
    start = n - m * k
    with np.errstate(invalid="ignore"):
        lo_b = lo[start:].reshape(m, k, -1).min(axis=1)
        hi_b = hi[start:].reshape(m, k, -1).max(axis=1)
    y_out = np.empty((2 * m, lo.shape[1]), lo.dtype)
    y_out[0::2], y_out[1::2] = lo_b, hi_b
    tt = t[start:].reshape(m, k)
    t_out = np.empty(2 * m)
    t_out[0::2], t_out[1::2] = tt[:, 0], tt[:, k // 2]
    return t_out, y_out


def stack_channels(
    t: np.ndarray, y: np.ndarray, scales: np.ndarray, spacing: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lay channels out as one polyline (one draw call), channel 0 on top.

    Parameters
    ----------
    t : ndarray, shape (n,)
        Times in s.
    y : ndarray, shape (n, n_channels)
        Samples in the stream's units.
    scales : ndarray, shape (n_channels,)
        Units per ``spacing`` for each channel (µV per row for EEG).
    spacing : float
        Vertical distance between rows.

    Returns
    -------
    x, yy : ndarray, shape (n * n_channels,)
        Concatenated rows; each row is centred on its own mean.
    connect : ndarray of bool
        False at the last point of each row, so rows are not joined.
    """
    n, n_ch = y.shape
    with np.errstate(invalid="ignore"):
        # nanmean, not nanmedian: several times cheaper, and fine for centring a row.
        med = np.nanmean(y, axis=0) if n else np.zeros(n_ch)
    med = np.where(np.isfinite(med), med, 0.0)
    rows = (y - med) / np.where(scales > 0, scales, 1.0) * spacing
    offsets = (n_ch - 1 - np.arange(n_ch)) * spacing
    rows = rows + offsets
    finite = np.isfinite(rows)
    # NaN samples are drawn as breaks in the line, never as a jump to a made-up value.
    conn = finite.copy()
    conn[:-1] &= finite[1:]
    if n:
        conn[-1] = False
    rows[~finite] = np.broadcast_to(offsets, rows.shape)[~finite]
    yy = rows.T.reshape(-1)
    x = np.tile(t, n_ch)
    return x, yy, conn.T.reshape(-1)
