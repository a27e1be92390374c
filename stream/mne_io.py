"""XDF recordings as ``mne.io.Raw``: channel types, SI units and markers as annotations.

MNE stores every channel in SI units (V, S …) and classifies channels by type; an XDF
stream written through :class:`stimloop.stream.outlet.Outlet` carries per-channel
``label``, ``unit`` and ``type`` in its ``desc`` (the XDF channel meta-data convention,
github.com/sccn/xdf/wiki/Meta-Data). This module maps one to the other:

=================  ==============  ==========================================
XDF channel type   MNE type        unit conversion
=================  ==============  ==========================================
EEG                eeg             µV/mV/nV/V → V
ECG, EKG           ecg             µV/mV/V → V
EDA, GSR           bio             µS/mS/nS/S → S (FIFF unit siemens)
EMG, EOG           emg, eog        → V
RESP               resp            none
other / none       misc            none
=================  ==============  ==========================================

Marker (string) streams become :class:`mne.Annotations` with onsets relative to the
first sample of the chosen numeric stream; all streams are put on the recording host's
clock first (ClockOffset chunks), so marker times are consistent with the data.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from stimloop.stream.xdf import XDFError, XDFStream, channel_meta, read_xdf

log = logging.getLogger("stimloop.stream.mne_io")

_TYPES = {
    "EEG": "eeg",
    "ECG": "ecg",
    "EKG": "ecg",
    "EDA": "bio",
    "GSR": "bio",
    "EMG": "emg",
    "EOG": "eog",
    "RESP": "resp",
}
_VOLTS = {"V": 1.0, "mV": 1e-3, "uV": 1e-6, "µV": 1e-6, "μV": 1e-6, "microvolts": 1e-6}
_VOLTS |= {"nV": 1e-9, "millivolts": 1e-3, "volts": 1.0}
_SIEMENS = {"S": 1.0, "mS": 1e-3, "uS": 1e-6, "µS": 1e-6, "μS": 1e-6, "nS": 1e-9}


def xdf_channel_types(stream: XDFStream) -> tuple[list[str], list[str], np.ndarray]:
    """Labels, MNE channel types and SI scale factors of one numeric XDF stream."""
    labels, kinds, scales = [], [], []
    for ch in channel_meta(stream.info):
        declared = (ch["type"] or stream.text("type")).upper()
        kind = _TYPES.get(declared, "misc")
        unit = ch["unit"]
        if unit in _VOLTS:
            scale = _VOLTS[unit]
        elif unit in _SIEMENS:
            scale = _SIEMENS[unit]
        else:
            scale = 1.0
        labels.append(ch["label"])
        kinds.append(kind)
        scales.append(scale)
    return _unique(labels), kinds, np.asarray(scales)


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        n = seen.get(label, 0)
        seen[label] = n + 1
        out.append(label if n == 0 else f"{label}-{n}")
    return out


def read_raw_xdf(path: str | os.PathLike, source_id: str | None = None):
    """Read one numeric stream of an XDF file as ``mne.io.RawArray``, markers as annotations.

    Parameters
    ----------
    path : str or path-like
        The ``.xdf`` file (a truncated file is read up to the damage, with a warning
        in the log).
    source_id : str, optional
        Which numeric stream to read (by source_id or name). Required when the file
        holds more than one numeric stream with a nominal rate.

    Returns
    -------
    mne.io.RawArray
        Data in SI units (V for EEG/ECG/EMG/EOG, S for EDA), channel types from the
        stream's ``desc``, sampling frequency = the nominal rate (Hz), and every marker
        of every string stream as an annotation (duration 0) at its time relative to
        the first sample.

    Raises
    ------
    XDFError
        The file cannot be read, or the stream choice is missing or ambiguous.
    """
    import mne

    f = read_xdf(path)
    if f.damage:
        log.warning("%s is damaged (%s); reading the data before the damage", path, f.damage)
    numeric = [s for s in f.streams if s.fmt != "string" and s.rate_hz > 0]
    if source_id is not None:
        chosen = [s for s in numeric if source_id in (s.text("source_id"), s.name)]
    else:
        chosen = numeric
    available = [s.text("source_id") or s.name for s in numeric]
    if len(chosen) != 1:
        what = f"source_id {source_id!r} matches {len(chosen)}" if source_id else (
            f"{len(chosen)} regularly sampled numeric streams; pick one with source_id="
        )  # fmt: skip
        raise XDFError(f"{str(path)!r}: {what}; available: {available}")
    stream = chosen[0]
    if len(stream.time_stamps) == 0:
        raise XDFError(f"{str(path)!r}: stream {stream.name!r} has no samples")
    labels, kinds, scales = xdf_channel_types(stream)
    info = mne.create_info(labels, stream.rate_hz, kinds)
    for ch, meta in zip(info["chs"], channel_meta(stream.info), strict=True):
        if meta["unit"] in _SIEMENS:
            ch["unit"] = mne.io.constants.FIFF.FIFF_UNIT_S
    data = (np.asarray(stream.time_series, dtype=np.float64) * scales).T
    raw = mne.io.RawArray(data, info, verbose="error")
    t0 = stream.synchronized_stamps()[0]
    duration = (len(stream.time_stamps) - 1) / stream.rate_hz
    onsets, texts = [], []
    for s in f.streams:
        if s.fmt != "string":
            continue
        rel = s.synchronized_stamps() - t0
        for t, sample in zip(rel, s.time_series, strict=True):
            onsets.append(t)
            texts.append(sample[0] if len(sample) == 1 else "|".join(sample))
    onsets_arr = np.asarray(onsets, dtype=np.float64)
    # Each stream's clock offset is estimated separately, so a marker sent with the
    # first sample can land microseconds before it: half a sample period is tolerated.
    half = 0.5 / stream.rate_hz
    inside = (onsets_arr >= -half) & (onsets_arr <= duration + half)
    onsets_arr = np.clip(onsets_arr, 0.0, duration)
    if (~inside).any():
        log.warning(
            "%d marker(s) fall outside the data of %r and are left out",
            int((~inside).sum()),
            stream.name,
        )
    kept = [t for t, k in zip(texts, inside, strict=True) if k]
    raw.set_annotations(mne.Annotations(onsets_arr[inside], np.zeros(len(kept)), kept))
    return raw
