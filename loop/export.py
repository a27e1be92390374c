"""``stimloop export``: a session recording into a BIDS dataset.

What goes where (the writers are :mod:`stimloop.stream.bids`; docs/study.md has the
field-by-field table):

- the EEG stream (channel types from the recording, SI units), through MNE-BIDS, with
  the session's markers as ``_events.tsv`` rows (:func:`session_events`): every
  delivered pulse (``pulse``, at its trigger time), refusals (``refused/<reason>``),
  gated decisions (``gated/<reason>``), the other decisions and stream-health events
  (``<event>`` or ``<event>/<role>``), and exposure markers (``exposure/<kind>``);
- ECG and EDA as physio recordings (``recording-ecg``: column ``cardiac`` in the
  stream's unit; ``recording-eda``: column ``eda`` in µS), with ``StartTime`` relative
  to the EEG's first sample, samples exactly as recorded;
- the delivered pulses and the stimulator settings as the BEP037 (NIBS-BIDS) table
  ``nibs/<stem>_stimsys-tms_nibs.tsv`` + ``.json``.
"""

from __future__ import annotations

import math
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from stimloop.loop.exposure_markers import ExposureMarkerError, parse_marker
from stimloop.loop.report import RecordedSession, read_session
from stimloop.loop.study_rows import marker_texts
from stimloop.stream.bids import bids_path, write_eeg, write_nibs, write_physio
from stimloop.stream.mne_io import raw_lsl_t0, read_raws_xdf
from stimloop.stream.xdf import channel_meta

#: Decision events that are records, not moments (the config, the end-of-run figures)
#: or a duplicate of another row (the phase estimate of a pulse is in the nibs table).
SKIPPED_EVENTS = frozenset({"config", "session_summary", "pulse_phase", "user_marker"})

#: Columns of the stimulation table: BEP037/TMS-BIDS names first, then ours.
NIBS_COLUMNS: dict[str, dict[str, str]] = {
    "onset": {"Description": "Pulse time relative to the first EEG sample (the trigger "
              "time the stimulator reported)", "Units": "s"},
    "StimulusMode": {"Description": "Type of stimulus (BEP037)", "Levels": "single"},
    "FirstPulseAmplitude": {"Description": "Intensity of the pulse, % of maximum "
                            "stimulator output (BEP037)", "Units": "%"},
    "MarkerID": {"Description": "Stimulation site (10-20/10-10 name) (BEP037)"},
    "TargetPhase": {"Description": "stimloop extension: the pulse's target phase of the "
                    "EEG alpha/mu rhythm (0 = positive peak)", "Units": "rad"},
    "EstimatedPhase": {"Description": "stimloop extension: the session's causal phase "
                       "estimate at the pulse", "Units": "rad"},
    "TruePhase": {"Description": "stimloop extension: the simulator's true phase at the "
                  "pulse (n/a for a live recording)", "Units": "rad"},
    "Control": {"Description": "stimloop extension: the protocol's control condition "
                "('none' = phase-locked)"},
}  # fmt: skip


def _stimloop_version() -> str:
    try:
        return version("stimloop")
    except PackageNotFoundError:
        return "unknown"


def session_events(rec: RecordedSession) -> list[tuple[float, str]]:
    """The session's moments as (LSL time s, BIDS ``trial_type``), in time order."""
    out: list[tuple[float, str]] = []
    dec = rec.stream("decisions")
    stamps = dec.time_stamps if dec is not None else []
    for t, e in zip(stamps, rec.decisions, strict=True):
        kind = str(e.get("event", "?"))
        if kind in SKIPPED_EVENTS or "event" not in e:
            continue
        if kind == "fired":
            out.append((float(e["t_trigger"]), "pulse"))
            continue
        if kind in ("refused", "gated"):
            m = re.match(r"\[(\w+)\]", e.get("error") or "")
            why = m.group(1) if m else e.get("reason", "unknown")
            out.append((float(t), f"{kind}/{why}"))
            continue
        out.append((float(t), f"{kind}/{e['role']}" if e.get("role") else kind))
    for t, text in marker_texts(rec):
        try:
            m = parse_marker(text, lenient=True)
        except ExposureMarkerError:  # plain text or not exposure JSON
            continue
        out.append((t, f"exposure/{m.kind}"))
    return sorted(out)


def _source(rec: RecordedSession, role: str):
    src = rec.config.get("sources", {}).get(role)
    return rec.streams.get(src["source_id"]) if src else None


def export_session(
    recording: str | Path,
    root: str | Path,
    *,
    subject: str,
    session: str,
    task: str,
    run: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export one session recording into the BIDS dataset at ``root``.

    Parameters
    ----------
    recording : str or Path
        The session's XDF file.
    root : str or Path
        The BIDS dataset folder (created).
    subject, session, task : str
        BIDS labels (letters and digits).
    run : int, optional
        BIDS run index.
    overwrite : bool
        Replace this recording's files if they exist.

    Returns
    -------
    dict
        ``eeg`` (the BrainVision header), ``events`` (the events.tsv), ``events_written``,
        ``events_outside`` (moments outside the EEG, left out), ``physio`` (files),
        ``nibs`` (files), ``pulses``.

    Raises
    ------
    stimloop.stream.bids.BIDSError
        A label is not a BIDS label, or the files exist and ``overwrite`` is not set.
    stimloop.loop.errors.SessionError
        The file is not a session recording, or it holds no EEG.
    """
    from stimloop.loop.errors import SessionError

    rec = read_session(recording)
    eeg_stream = _source(rec, "eeg")
    if eeg_stream is None or not len(eeg_stream.time_stamps):
        raise SessionError(f"{recording}: no recorded EEG (sources.eeg); nothing to export")
    path = bids_path(root, subject, session, task, run)
    out, t0, n_events, n_inside = _write_eeg(rec, recording, eeg_stream, path, overwrite)
    written: dict[str, Any] = {
        "eeg": str(out.fpath),
        "events": str(out.copy().update(suffix="events", extension=".tsv").fpath),
        "events_written": n_inside,
        "events_outside": n_events - n_inside,
        "physio": _write_physio(rec, out, t0, overwrite),
        "nibs": [],
    }
    rows = _nibs_rows(rec, t0)
    files = write_nibs(out, rows, NIBS_COLUMNS, _nibs_sidecar(rec, task), overwrite=overwrite)
    written["nibs"] = [str(f) for f in files]
    written["pulses"] = len(rows)
    return written


def _write_eeg(rec: RecordedSession, recording: str | Path, eeg_stream, path, overwrite: bool):
    """Write the EEG with the session's moments inside it as annotations.

    Returns the written BIDS path, the LSL time of the first EEG sample, and the number
    of moments in the session and inside the EEG.
    """
    eeg = read_raws_xdf(recording, {"eeg": eeg_stream.text("source_id")}, markers=False)["eeg"]
    import mne

    t0 = raw_lsl_t0(eeg)
    end = (eeg.n_times - 1) / eeg.info["sfreq"]
    events = session_events(rec)
    inside = [(t - t0, d) for t, d in events if 0.0 <= t - t0 <= end]
    eeg.set_annotations(mne.Annotations([o for o, _ in inside], [0.0] * len(inside),
                                        [d for _, d in inside]))  # fmt: skip
    out = write_eeg(eeg, path, overwrite=overwrite,
                    sidecar={"SoftwareVersions": f"stimloop {_stimloop_version()}",
                             # MNE-BIDS names the maker of the file format it wrote
                             # (BrainVision); the amplifier's maker is not recorded.
                             "Manufacturer": "n/a", "RecordingType": "continuous"})  # fmt: skip
    return out, t0, len(events), len(inside)


def _write_physio(rec: RecordedSession, out, t0: float, overwrite: bool) -> list[str]:
    """Write the recorded ECG and EDA as physio recordings; the files written."""
    written: list[str] = []
    for role, label, name, what in (("ecg", "ecg", "cardiac", "ECG"),
                                    ("eda", "eda", "eda", "skin conductance (EDA)")):  # fmt: skip
        s = _source(rec, role)
        if s is None or not len(s.time_stamps):
            continue
        meta = channel_meta(s.info)
        data = np.asarray(s.time_series, dtype=np.float64)
        cols = [{"name": name if data.shape[1] == 1 else f"{name}_{m['label']}",
                 "description": f"{what}, channel {m['label']!r} of stream "
                                f"{s.text('source_id')!r}",
                 "units": m["unit"] or "n/a"} for m in meta]  # fmt: skip
        start = float(s.synchronized_stamps()[0]) - t0
        files = write_physio(out, label, data, s.rate_hz, start, cols, overwrite=overwrite)
        written += [str(f) for f in files]
    return written


def _nibs_rows(rec: RecordedSession, t0: float) -> list[dict[str, Any]]:
    """One row of the stimulation table per delivered pulse (:data:`NIBS_COLUMNS`)."""
    proto = rec.config.get("protocol", {})
    return [{"onset": float(t) - t0, "StimulusMode": "single",
             "FirstPulseAmplitude": float(proto.get("intensity_pct", math.nan)),
             "MarkerID": proto.get("site"), "TargetPhase": float(tg),
             "EstimatedPhase": float(pe), "TruePhase": float(pt),
             "Control": proto.get("control")}
            for t, tg, pe, pt in zip(rec.pulse_t, rec.pulse_target, rec.pulse_phase_est,
                                     rec.pulse_phase_true, strict=True)]  # fmt: skip


def _nibs_sidecar(rec: RecordedSession, task: str) -> dict[str, Any]:
    """The stimulation table's sidecar: the stimulator, the protocol and its limits."""
    proto = rec.config.get("protocol", {})
    stim = rec.config.get("stimulator", {})
    return {
        "TaskName": task,
        "StimulationSystemName": "tms",
        "ManufacturersModelName": stim.get("driver", "n/a"),
        "ProtocolName": proto.get("kind", "n/a"),
        "SoftwareVersions": f"stimloop {_stimloop_version()}",
        "StimloopProtocol": proto,
        "StimloopSafetyLimits": stim.get("safety", {}),
    }


def format_export(written: dict[str, Any]) -> str:
    """The export's summary for the terminal."""
    outside = written["events_outside"]
    left_out = f"; {outside} outside the EEG left out" if outside else ""
    lines = [
        f"EEG: {written['eeg']}",
        f"events: {written['events']} ({written['events_written']} events{left_out})",
        *(f"physio: {p}" for p in written["physio"] if p.endswith(".tsv.gz")),
        f"stimulation: {written['nibs'][0]} ({written['pulses']} pulses)",
    ]
    return "\n".join(lines)
