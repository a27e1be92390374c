"""The contract between the session runner and each real-time DSP consumer.

A *stage* turns one raw stream (ECG, EDA or EEG) into derived outputs: it runs the
numba kernels of ``stimloop.dsp`` and publishes the results as LSL outlets, so that the
recorder and the GUI see them like any other stream. The runner (``stimloop demo`` now,
the closed-loop engine later) owns inlets and timing; a stage owns only its DSP state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from stimloop.stream.errors import StreamError


class Stage(Protocol):
    """One DSP consumer of one raw stream role.

    Attributes
    ----------
    name : str
        Short name used as the key of this stage in the demo summary (``"heart"``).
    role : str
        The raw stream it consumes: ``"ecg"``, ``"eda"`` or ``"eeg"``.
    """

    name: str
    role: str

    def start(self, fs: float, channel_labels: Sequence[str], source_prefix: str) -> None:
        """Create outlets (source_id ``f"{source_prefix}-{name}-..."``) and warm up kernels.

        Parameters
        ----------
        fs : float
            Nominal sampling rate of the consumed stream in Hz.
        channel_labels : sequence of str
            Labels of the consumed stream's channels, in stream order.
        source_prefix : str
            Prefix that makes this session's source_ids unique.
        """

    def update(self, data: np.ndarray, timestamps: np.ndarray, first_index: int) -> None:
        """Consume one chunk.

        Parameters
        ----------
        data : ndarray, shape (n_samples, n_channels)
            Raw samples in the stream's units. May contain NaN (flagged by the inlet).
            The array is a view into a reused buffer: copy what must outlive the call.
        timestamps : ndarray, shape (n_samples,)
            LSL local-clock time of each sample in s.
        first_index : int
            Absolute, monotonic index of ``data[0]`` in the stream.
        """

    def score(self, truth: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """JSON-serialisable summary scored against the simulators' ground truth.

        Parameters
        ----------
        truth : mapping of str to ndarray
            Ground truth gathered from the simulators' truth streams; keys are documented
            in ``stimloop.devices.sim`` (e.g. ``"ecg_rpeak_t"``, LSL s).
        """
        ...

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


def samples_missing(last_t: float, first_t: float, fs: float) -> int:
    """Samples lost between the last sample a stage fed and a new chunk's first one.

    Parameters
    ----------
    last_t : float
        LSL time of the last sample fed, s (NaN before the first chunk).
    first_t : float
        LSL time of the new chunk's first sample, s.
    fs : float
        Nominal rate in Hz.

    Returns
    -------
    int
        0 when nothing is missing (or nothing was fed yet).
    """
    if not np.isfinite(last_t):
        return 0
    return max(0, round((first_t - last_t) * fs) - 1)


def nan_fill(last_t: float, missing: int, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """NaN samples and their times for a gap, so a kernel sees the hole as invalid data.

    Parameters
    ----------
    last_t : float
        LSL time of the last sample before the gap, s.
    missing : int
        Samples missing.
    fs : float
        Nominal rate in Hz.
    """
    return np.full(missing, np.nan), last_t + np.arange(1, missing + 1) / fs
