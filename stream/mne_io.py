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

:func:`read_raws_xdf` gives one Raw per modality (every regularly sampled numeric
stream, or the ones named), each with every marker inside its span;
:func:`write_raws_xdf` writes such Raws back to XDF (SI units, float64, their markers as
one string stream), so XDF -> Raws -> XDF -> Raws gives the same Raws. A Raw keeps the
LSL time of its first sample in ``info["description"]`` (``lsl_t0=<s>``), so the
modalities stay aligned through the round trip.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

import numpy as np

from stimloop.stream.xdf import (
    XDFError,
    XDFFile,
    XDFStream,
    channel_meta,
    info_xml,
    read_xdf,
    write_xdf,
)

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
    if len(chosen[0].time_stamps) == 0:
        raise XDFError(f"{str(path)!r}: stream {chosen[0].name!r} has no samples")
    return _raw_of(f, chosen[0])


def _raw_of(f: XDFFile, stream: XDFStream, markers: bool = True):
    """One numeric stream of a read file as RawArray, every marker inside it annotated
    (none with ``markers=False``)."""
    import mne

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
    for s in f.streams if markers else ():
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
    t0_exact = float(stream.synchronized_stamps()[0])
    raw.info["description"] = (
        f"stimloop XDF stream {stream.text('source_id')!r}; lsl_t0={t0_exact!r}"
    )
    return raw


_T0 = re.compile(r"lsl_t0=([-+0-9.eE]+|nan|inf)")


def raw_lsl_t0(raw) -> float:
    """LSL time (s) of a Raw's first sample, as :func:`read_raws_xdf` recorded it (0.0 for
    a Raw from elsewhere)."""
    m = _T0.search(raw.info.get("description") or "")
    return float(m.group(1)) if m else 0.0


def read_raws_xdf(
    path: str | os.PathLike, source_ids: Mapping[str, str] | None = None, markers: bool = True
) -> dict:
    """One ``mne.io.RawArray`` per modality of an XDF file, markers as annotations.

    Parameters
    ----------
    path : str or path-like
        The ``.xdf`` file (a damaged file is read up to the damage).
    source_ids : mapping of str to str, optional
        Modality name -> source_id (or stream name), e.g. a session's
        ``{"eeg": "...-eeg", "ecg": "...-ecg", "eda": "...-eda"}``. Default: every
        regularly sampled numeric stream, keyed by its source_id.

    Returns
    -------
    dict of str to mne.io.RawArray
        As :func:`read_raw_xdf` gives each (SI units, channel types, every marker inside
        its span as an annotation; none with ``markers=False``), with
        ``info["description"]`` holding ``lsl_t0`` (:func:`raw_lsl_t0`).

    Raises
    ------
    XDFError
        The file cannot be read, or a named stream is missing, ambiguous or empty.
    """
    f = read_xdf(path)
    if f.damage:
        log.warning("%s is damaged (%s); reading the data before the damage", path, f.damage)
    numeric = [s for s in f.streams if s.fmt != "string" and s.rate_hz > 0]
    wanted = source_ids or {s.text("source_id") or s.name: s.text("source_id") or s.name
                            for s in numeric if len(s.time_stamps)}  # fmt: skip
    out = {}
    for name, sid in wanted.items():
        chosen = [s for s in numeric if sid in (s.text("source_id"), s.name)]
        if len(chosen) != 1 or not len(chosen[0].time_stamps):
            have = [s.text("source_id") or s.name for s in numeric]
            raise XDFError(f"{str(path)!r}: modality {name!r}: source_id {sid!r} matches "
                           f"{len(chosen)} non-empty regularly sampled streams; available: "
                           f"{have}")  # fmt: skip
        out[name] = _raw_of(f, chosen[0], markers)
    return out


_XDF_TYPES = {"eeg": "EEG", "ecg": "ECG", "emg": "EMG", "eog": "EOG", "resp": "RESP",
              "bio": "BIO", "misc": "MISC"}  # fmt: skip


def write_raws_xdf(raws: Mapping[str, object], path: str | os.PathLike) -> None:
    """Write Raws (one per modality) to one XDF file: the inverse of :func:`read_raws_xdf`.

    Each Raw becomes a float64 stream with source_id = its key, channel labels, XDF types
    (``bio`` channels in siemens become ``EDA``) and SI units (``V``, ``S``), starting at
    :func:`raw_lsl_t0`; the annotations of all Raws become one string stream
    ``annotations`` at their LSL times (the same marker in several Raws once).
    """
    import mne

    streams = []
    marks: list[tuple[str, float, float, str]] = []  # description, LSL time, tolerance, edge
    for name, raw in raws.items():
        t0 = raw_lsl_t0(raw)
        chans = []
        for ch, kind in zip(raw.info["chs"], raw.get_channel_types(), strict=True):
            unit = {mne.io.constants.FIFF.FIFF_UNIT_V: "V",
                    mne.io.constants.FIFF.FIFF_UNIT_S: "S"}.get(int(ch["unit"]), "")  # fmt: skip
            xtype = "EDA" if kind == "bio" and unit == "S" else _XDF_TYPES.get(kind, "MISC")
            chans.append({"label": ch["ch_name"], "unit": unit, "type": xtype})
        data = raw.get_data().T
        ts = t0 + np.arange(data.shape[0]) / raw.info["sfreq"]
        streams.append((info_xml(name, chans[0]["type"] if chans else "MISC", name, chans,
                                 raw.info["sfreq"], "double64"), "double64", ts, data))  # fmt: skip
        half = 0.5 / raw.info["sfreq"]
        end = (raw.n_times - 1) / raw.info["sfreq"]
        for onset, desc in zip(raw.annotations.onset, raw.annotations.description, strict=True):
            edge = "start" if onset == 0.0 else ("end" if onset == end else "")
            marks.append((str(desc), t0 + float(onset), half, edge))
    kept = sorted(_merge_copies(marks))
    if kept:
        streams.append((info_xml("annotations", "Markers", "annotations", [{"label": "marker"}],
                                 0.0, "string"), "string", np.array([k[0] for k in kept]),
                        [[k[1]] for k in kept]))  # fmt: skip
    write_xdf(path, streams)


def _merge_copies(marks: list[tuple[str, float, float, str]]) -> list[tuple[float, str]]:
    """One marker in several Raws once.

    :func:`read_raw_xdf` moves a marker up to half a sample outside a stream onto its
    first or last sample, so copies of one marker can differ by that much. A copy inside
    a Raw is exact and wins; otherwise the earliest copy moved onto a start (the latest
    onto an end), which every Raw moves back onto the same sample when read again.
    """
    out: list[tuple[float, str]] = []
    group: list[tuple[str, float, float, str]] = []

    def close() -> None:
        inside = [m for m in group if not m[3]]
        if inside:
            out.append((inside[0][1], group[0][0]))
        elif any(m[3] == "start" for m in group):
            out.append((min(m[1] for m in group), group[0][0]))
        else:
            out.append((max(m[1] for m in group), group[0][0]))

    for m in sorted(marks):
        if group and (m[0] != group[0][0] or m[1] - group[0][1] > 2 * max(m[2], group[0][2])):
            close()
            group = []
        group.append(m)
    if group:
        close()
    return out
