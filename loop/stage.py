"""The contract between the session runner and each real-time DSP consumer.

A *stage* turns one raw stream (ECG, EDA or EEG) into derived outputs: it runs the
numba kernels of ``stimloop.dsp`` and publishes the results as LSL outlets, so that the
recorder and the GUI see them like any other stream. The engine owns inlets and timing;
a stage owns only its DSP state. Stages do not score themselves: evaluation against a
ground truth reads what they published (:mod:`stimloop.loop.evaluation`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from stimloop.stream.errors import StreamError
from stimloop.stream.inlet import Chunk


class Stage(Protocol):
    """One DSP consumer of one raw stream role.

    Attributes
    ----------
    name : str
        Short name of the stage (``"heart"``).
    role : str
        The raw stream it consumes: ``"ecg"``, ``"eda"`` or ``"eeg"``.
    """

    name: str
    role: str

    def start(self, fs: float, channel_labels: Sequence[str], source_prefix: str) -> None:
        """Open the stage's outlets (from :mod:`stimloop.loop.catalog`) and warm up kernels.

        Parameters
        ----------
        fs : float
            Nominal sampling rate of the consumed stream in Hz.
        channel_labels : sequence of str
            Labels of the consumed stream's channels, in stream order.
        source_prefix : str
            The session prefix that makes this session's source_ids unique.
        """

    def update(self, chunk: Chunk) -> None:
        """Consume one chunk of the role's stream.

        A chunk's gaps are already bridged with NaN rows (``chunk.finite`` False there);
        ``chunk.restart`` says the samples do not continue the previous chunk's, so the
        stage resets its DSP state first. The arrays may be views into a reused buffer:
        copy what must outlive the call.
        """

    def add_event(self, t_lsl: float, text: str = "") -> None:
        """A marker of the session's ``events`` stream arrived, stamped ``t_lsl`` (s);
        stages without event-related outputs ignore it."""

    def note_pulses(self, t_lsl: np.ndarray) -> None:
        """The gate fired stimulation pulses at these LSL times (s), a train's every
        pulse included. Called on the pulse thread as soon as the gate returns, before
        the samples carrying their artifact arrive; a stage whose input picks the
        artifact up blanks those samples (the heart stage), the others ignore it."""

    def close(self) -> None:
        """Release outlets."""


def channel_index(channel: int | str, labels: Sequence[str], what: str) -> int:
    """Index of a stage's input channel, given by label or by index.

    Parameters
    ----------
    channel : int or str
        Channel label, or index into ``labels``.
    labels : sequence of str
        The stream's channel labels.
    what : str
        What the channel is, for the error message (e.g. ``"ECG"``).

    Raises
    ------
    StreamError
        The label is not in the stream, or the index is out of range.
    """
    labels = list(labels)
    if isinstance(channel, str):
        if channel not in labels:
            raise StreamError(f"{what} channel {channel!r} is not among the stream's {labels}")
        return labels.index(channel)
    if not 0 <= int(channel) < max(1, len(labels)):
        raise StreamError(
            f"{what} channel index {channel} is out of range for {len(labels)} channel(s)"
        )
    return int(channel)


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, or None (JSON null) when it is NaN or infinite."""
    value = float(value)
    return value if np.isfinite(value) else None


class RowFeed:
    """The rows a stage published recently, for in-process readers (protocols, other
    stages), each with its own cursor.

    Bounded: it keeps the last ``maxlen`` rows (about 1 MB at 4096 rows of 6 values), and
    a reader that falls more than ``maxlen`` rows behind loses the oldest (it is told
    how many).

    Parameters
    ----------
    width : int
        Values per row.
    maxlen : int
        Rows kept.
    """

    def __init__(self, width: int, maxlen: int = 4096) -> None:
        self.width = int(width)
        self._rows: deque[tuple[float, ...]] = deque(maxlen=maxlen)
        self._n = 0  # rows appended so far

    def append(self, row: Sequence[float]) -> None:
        """Add one row."""
        self._rows.append(tuple(float(v) for v in row))
        self._n += 1

    def reader(self) -> RowReader:
        """A reader that starts at the next row appended."""
        return RowReader(self, self._n)


class RowReader:
    """One reader's position in a :class:`RowFeed`."""

    def __init__(self, feed: RowFeed, start: int) -> None:
        self._feed = feed
        self._next = start
        self.dropped = 0  # rows lost because this reader fell behind

    def take(self) -> np.ndarray:
        """The rows appended since the last call, shape (n, width)."""
        feed = self._feed
        new = feed._n - self._next
        held = len(feed._rows)
        if new > held:
            self.dropped += new - held
            new = held
        rows = list(feed._rows)[held - new :] if new else []
        self._next = feed._n
        return np.array(rows, dtype=np.float64).reshape(-1, feed.width)
