"""LSL outlets with self-describing metadata.

Every stream stimloop publishes (raw simulator data, ground truth, derived metrics,
markers) goes through :class:`Outlet`, so that channel labels, units and types always
land in the stream's ``desc`` and any LSL consumer (recorder, GUI, LabRecorder) can
interpret it without knowing stimloop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pylsl

from stimloop.stream.errors import StreamError

# Map numpy dtypes to LSL channel formats. float32 is LSL's default for biosignals;
# derived metrics use float64 so that LSL timestamps and indices survive exactly.
_FORMATS: dict[str, int] = {
    "float32": pylsl.cf_float32,
    "float64": pylsl.cf_double64,
    "int32": pylsl.cf_int32,
    "int16": pylsl.cf_int16,
    "string": pylsl.cf_string,
}


@dataclass(frozen=True)
class ChannelSpec:
    """One channel of a stream: its label, unit and type (e.g. ``("C3", "uV", "EEG")``)."""

    label: str
    unit: str = ""
    type: str = ""


def channel_specs(
    labels: Sequence[str], unit: str = "", ch_type: str = ""
) -> tuple[ChannelSpec, ...]:
    """Build channel specs that share one unit and type.

    Parameters
    ----------
    labels : sequence of str
        Channel labels, in stream order.
    unit : str
        Unit of every channel, e.g. ``"uV"``, ``"uS"``, ``"bpm"``, ``"rad"``.
    ch_type : str
        Channel type as written in the XDF ``desc`` (``"EEG"``, ``"ECG"``, ``"EDA"`` …).
    """
    return tuple(ChannelSpec(label, unit, ch_type) for label in labels)


class Outlet:
    """A ``pylsl.StreamOutlet`` with channel metadata and validated pushes.

    Parameters
    ----------
    name : str
        Stream name shown to consumers.
    stype : str
        LSL stream type (``"EEG"``, ``"ECG"``, ``"EDA"``, ``"Markers"``, ``"HR"`` …).
    source_id : str
        Unique source identifier; inlets resolve by it.
    channels : sequence of ChannelSpec
        One spec per channel. Its length is the channel count.
    rate_hz : float
        Nominal sampling rate in Hz, or 0 for irregular streams (markers, events).
    fmt : {"float32", "float64", "int32", "int16", "string"}
        Channel format.
    chunk_size : int
        Preferred chunk granularity in samples passed to liblsl (0 lets it choose).
    extra_desc : dict of str to str, optional
        Additional key/value pairs written under ``desc`` (e.g. provenance).

    Notes
    -----
    Timestamps passed to :meth:`push` are LSL local-clock seconds
    (``pylsl.local_clock()``) of the *last* sample in the chunk; liblsl back-dates the
    earlier samples by ``1 / rate_hz`` each, which is exact for a regular stream.
    """

    def __init__(
        self,
        name: str,
        stype: str,
        source_id: str,
        channels: Sequence[ChannelSpec],
        rate_hz: float,
        fmt: str = "float32",
        chunk_size: int = 0,
        extra_desc: dict[str, str] | None = None,
    ) -> None:
        if fmt not in _FORMATS:
            raise StreamError(
                f"Outlet {name!r}: channel format {fmt!r} is not supported; "
                f"expected one of {sorted(_FORMATS)}"
            )
        if not channels:
            raise StreamError(f"Outlet {name!r}: needs at least one channel, got none")
        if rate_hz < 0:
            raise StreamError(f"Outlet {name!r}: rate_hz must be >= 0, got {rate_hz}")
        self.name = name
        self.source_id = source_id
        self.channels = tuple(channels)
        self.rate_hz = float(rate_hz)
        self.fmt = fmt
        self.n_channels = len(self.channels)
        info = pylsl.StreamInfo(
            name, stype, self.n_channels, self.rate_hz, _FORMATS[fmt], source_id
        )
        desc = info.desc()
        chans = desc.append_child("channels")
        for ch in self.channels:
            c = chans.append_child("channel")
            c.append_child_value("label", ch.label)
            c.append_child_value("unit", ch.unit)
            c.append_child_value("type", ch.type)
        desc.append_child_value("manufacturer", "stimloop")
        for key, value in (extra_desc or {}).items():
            desc.append_child_value(key, str(value))
        self._outlet = pylsl.StreamOutlet(info, chunk_size)
        self._dtype = None if fmt == "string" else np.dtype(fmt)

    @property
    def info(self) -> pylsl.StreamInfo:
        """The full stream info, including ``desc`` (as sent to consumers)."""
        return self._outlet.get_info()

    def have_consumers(self) -> bool:
        """Whether at least one inlet is connected."""
        return self._outlet.have_consumers()

    def push(self, data: np.ndarray, timestamp: float | np.ndarray = 0.0) -> None:
        """Push a chunk of samples.

        Parameters
        ----------
        data : ndarray, shape (n_samples, n_channels)
            Samples in the outlet's units. A 1-D array is taken as one sample.
        timestamp : float or ndarray
            LSL local-clock time of the last sample in s (0 means "now"; the others are
            placed at the nominal rate before it), or one time per sample.
        """
        if self._dtype is None:
            raise StreamError(f"Outlet {self.name!r} carries strings; use push_marker()")
        arr = np.asarray(data, dtype=self._dtype)
        if arr.ndim == 1:
            arr = arr[np.newaxis, :]
        if arr.ndim != 2 or arr.shape[1] != self.n_channels:
            raise StreamError(
                f"Outlet {self.name!r}: expected chunk of shape (n, {self.n_channels}), "
                f"got {arr.shape}"
            )
        n = arr.shape[0]
        if n == 0:
            return
        if np.ndim(timestamp):
            stamps = np.asarray(timestamp, dtype=np.float64)
            if stamps.shape != (n,):
                raise StreamError(
                    f"Outlet {self.name!r}: {n} samples need {n} timestamps, got {stamps.shape}"
                )
            self._outlet.push_chunk(np.ascontiguousarray(arr), stamps.tolist())
        elif n > 1 and self.rate_hz > 0:
            # One explicit stamp per sample: with one stamp per chunk, liblsl marks the
            # others "deduced", and an inlet joining mid-chunk receives them stamped from
            # zero (stream/timing.py: unplaced_lead).
            t_last = timestamp or pylsl.local_clock()
            stamps = t_last - (n - 1 - np.arange(n)) / self.rate_hz
            self._outlet.push_chunk(np.ascontiguousarray(arr), stamps.tolist())
        else:
            self._outlet.push_chunk(np.ascontiguousarray(arr), timestamp)

    def push_marker(self, text: str | Sequence[str], timestamp: float = 0.0) -> None:
        """Push one sample of a string stream (a marker).

        Parameters
        ----------
        text : str or sequence of str
            The marker; a sequence gives one value per channel.
        timestamp : float
            LSL local-clock time of the event in s; 0 means "now".
        """
        values = [text] if isinstance(text, str) else list(text)
        if len(values) != self.n_channels:
            raise StreamError(
                f"Outlet {self.name!r}: expected {self.n_channels} marker value(s), "
                f"got {len(values)}"
            )
        if self._dtype is None:
            self._outlet.push_sample(values, timestamp)
        else:
            self._outlet.push_sample([float(v) for v in values], timestamp)

    def close(self) -> None:
        """Destroy the outlet; connected inlets see the stream vanish."""
        outlet, self._outlet = self._outlet, None
        del outlet


def marker_outlet(name: str, source_id: str, stype: str = "Markers") -> Outlet:
    """A single-channel, irregular string stream for event markers.

    Parameters
    ----------
    name : str
        Stream name.
    source_id : str
        Unique source identifier.
    stype : str
        Stream type; ``"Markers"`` is what LabRecorder and MNE expect.
    """
    return Outlet(name, stype, source_id, (ChannelSpec("marker", "", "Marker"),), 0.0, "string")
