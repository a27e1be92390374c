"""A fixed-capacity ring buffer of samples with absolute, monotonic sample indices."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Keeps the newest ``capacity`` samples of a stream and their timestamps.

    Writes copy into preallocated arrays (no ``np.roll``, no allocation); reads return
    fresh, time-ordered copies, so a reader never sees a later write.

    Parameters
    ----------
    capacity : int
        Number of samples kept.
    n_channels : int
        Channels per sample.
    dtype : numpy dtype
        Sample type (the stream's channel format).
    """

    def __init__(self, capacity: int, n_channels: int, dtype: np.dtype | type = np.float32):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 sample, got {capacity}")
        self.capacity = int(capacity)
        self.data = np.zeros((self.capacity, n_channels), dtype=dtype)
        self.timestamps = np.zeros(self.capacity, dtype=np.float64)
        self.n_written = 0  # absolute index of the next sample to be written

    @property
    def first_index(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.n_written - self.capacity)

    def write(self, data: np.ndarray, timestamps: np.ndarray) -> int:
        """Append samples; returns the absolute index of ``data[0]``.

        Parameters
        ----------
        data : ndarray, shape (n, n_channels)
            Samples to append.
        timestamps : ndarray, shape (n,)
            Their timestamps in s.
        """
        n = data.shape[0]
        start = self.n_written
        if n >= self.capacity:  # only the newest capacity samples survive
            data, timestamps = data[-self.capacity :], timestamps[-self.capacity :]
            skipped = n - self.capacity
            self.n_written += skipped
            n = self.capacity
        pos = self.n_written % self.capacity
        first = min(n, self.capacity - pos)
        self.data[pos : pos + first] = data[:first]
        self.timestamps[pos : pos + first] = timestamps[:first]
        if first < n:
            self.data[: n - first] = data[first:]
            self.timestamps[: n - first] = timestamps[first:]
        self.n_written += n
        return start

    def skip(self, n: int) -> None:
        """Advance the absolute index over ``n`` samples that were never received.

        They are not held (a read never returns them); the next write gets index
        ``n_written + n``. Used when a stream restarts after a gap too long to bridge.
        """
        if n < 0:
            raise ValueError(f"cannot skip back: n must be >= 0, got {n}")
        self.n_written += int(n)

    def latest(self, n: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Copy of the newest ``n`` samples in time order.

        Parameters
        ----------
        n : int
            Samples wanted; fewer are returned if fewer are held.

        Returns
        -------
        data : ndarray, shape (m, n_channels)
        timestamps : ndarray, shape (m,)
        first_index : int
            Absolute index of ``data[0]``.
        """
        n = min(n, self.n_written - self.first_index)
        start = self.n_written - n
        idx = np.arange(start, self.n_written) % self.capacity
        return self.data[idx], self.timestamps[idx], start
