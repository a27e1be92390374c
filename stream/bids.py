"""BIDS datasets: EEG through MNE-BIDS, physiological recordings and stimulation tables.

Written from the BIDS specification (https://bids-specification.readthedocs.io):

- EEG (``eeg/``): :func:`write_eeg` hands an ``mne.io.Raw`` and its events to MNE-BIDS
  (``mne_bids.write_raw_bids``), which converts to BrainVision and writes
  ``_eeg.json``, ``_channels.tsv`` (channel types), ``_events.tsv``/``.json``, the
  dataset description and ``participants.tsv``.
- Physiological recordings ("Physiological recordings" in the spec's modality-agnostic
  files): :func:`write_physio` writes ``<stem>_recording-<label>_physio.tsv.gz`` (no
  header row, one column per signal) and its ``_physio.json`` (``SamplingFrequency``,
  ``StartTime`` in s relative to the first sample of the data it accompanies,
  ``Columns``, and per column ``Description`` and ``Units``). One file per sampling rate,
  so ECG and EDA are two recordings.
- Stimulation: BIDS has no datatype for brain stimulation yet. The proposal for it,
  BEP037 "NIBS-BIDS" (non-invasive brain stimulation; the v5+ structure of
  github.com/nigelrogasch/nibs-bids), puts stimulation in a ``nibs/`` datatype folder,
  one row per stimulation event in ``<stem>_stimsys-tms_nibs.tsv`` with a ``_nibs.json``
  sidecar; its column names for TMS (``StimulusMode``, ``FirstPulseAmplitude``,
  ``MarkerID``, ``CoilID``, ...) come from the TMS-BIDS draft it builds on.
  :func:`write_nibs` writes that pair and lists ``**/nibs`` in ``.bidsignore`` so that
  today's validator, which does not know the datatype, accepts the dataset.
"""

from __future__ import annotations

import gzip
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stimloop.stream.errors import StreamError

log = logging.getLogger("stimloop.stream.bids")


class BIDSError(StreamError):
    """A BIDS export cannot be written: a bad label, an existing file, bad data."""


def check_label(value: str, what: str) -> str:
    """A BIDS label: letters and digits only (the spec's ``<label>``)."""
    v = str(value)
    if not v or not v.isascii() or not v.isalnum():
        raise BIDSError(f"{what} {value!r} is not a BIDS label; allowed: letters and digits "
                        "only (e.g. '01', 'pre')")  # fmt: skip
    return v


def _mne_bids():
    try:
        import mne_bids
    except ImportError as exc:
        raise BIDSError("MNE-BIDS is not installed; install the study extra: "
                        "pip install 'stimloop[study]'") from exc  # fmt: skip
    return mne_bids


def bids_path(root: str | Path, subject: str, session: str, task: str, run: int | None = None):
    """The ``mne_bids.BIDSPath`` of an EEG recording (labels, run index and root checked)."""
    BIDSPath = _mne_bids().BIDSPath
    if run is not None and (isinstance(run, bool) or not isinstance(run, int) or run < 0):
        raise BIDSError(f"run {run!r} is not a BIDS run index; allowed: an integer >= 0")
    if Path(root).exists() and not Path(root).is_dir():
        raise BIDSError(f"the BIDS root {str(root)!r} exists and is not a folder; give the "
                        "dataset's folder (created if missing)")  # fmt: skip
    return BIDSPath(
        root=root, subject=check_label(subject, "subject"), session=check_label(session, "session"),
        task=check_label(task, "task"), run=run, datatype="eeg", suffix="eeg",
    )  # fmt: skip


def write_eeg(raw, path, *, overwrite: bool = False, sidecar: Mapping[str, Any] | None = None):
    """Write EEG and its annotations (as events) with MNE-BIDS.

    Parameters
    ----------
    raw : mne.io.Raw
        EEG channels (any other channel types are written as they are typed). Its
        annotations become ``_events.tsv`` rows: ``trial_type`` = description.
    path : mne_bids.BIDSPath
        From :func:`bids_path`.
    overwrite : bool
        Replace existing files of this recording.
    sidecar : mapping, optional
        Entries added to ``_eeg.json`` after MNE-BIDS wrote it.

    Returns
    -------
    mne_bids.BIDSPath
        The path written.

    Notes
    -----
    MNE-BIDS announces its conversion to BrainVision and its defaults with warnings;
    they are expected here and logged at INFO instead.
    """
    mne_bids = _mne_bids()
    update_sidecar_json, write_raw_bids = mne_bids.update_sidecar_json, mne_bids.write_raw_bids

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = write_raw_bids(raw, path, format="BrainVision", allow_preload=True,
                                 overwrite=overwrite, verbose="error")  # fmt: skip
        except FileExistsError as exc:
            raise BIDSError(f"{exc}; pass overwrite to replace it") from exc
    for w in caught:
        log.info("MNE-BIDS: %s", w.message)
    if sidecar:
        update_sidecar_json(out.copy().update(extension=".json"), dict(sidecar), verbose="error")
    return out


def _json(path: Path, obj: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_physio(
    eeg_path,
    label: str,
    data: np.ndarray,
    rate_hz: float,
    start_s: float,
    columns: Sequence[Mapping[str, str]],
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write one physiological recording next to an EEG recording.

    Parameters
    ----------
    eeg_path : mne_bids.BIDSPath
        The EEG recording it accompanies (its entities name the file).
    label : str
        The ``recording-<label>`` entity (``"ecg"``, ``"eda"``).
    data : ndarray, shape (n,) or (n, n_columns)
        Samples in the units of ``columns``.
    rate_hz : float
        Sampling frequency, Hz.
    start_s : float
        Time of the first sample relative to the EEG's first sample, s (``StartTime``).
    columns : sequence of mapping
        Per column ``name``, ``description``, ``units``.
    overwrite : bool
        Replace existing files.

    Returns
    -------
    (Path, Path)
        The ``.tsv.gz`` and the ``.json`` written.
    """
    x = np.asarray(data, dtype=np.float64)
    x = x.reshape(-1, 1) if x.ndim == 1 else x
    if x.shape[1] != len(columns):
        raise BIDSError(f"physio {label!r}: {x.shape[1]} data columns for {len(columns)} names")
    if not (np.isfinite(rate_hz) and rate_hz > 0):
        raise BIDSError(f"physio {label!r}: sampling rate must be > 0 Hz, got {rate_hz!r}")
    stem = eeg_path.copy().update(suffix=None, extension=None, datatype="eeg").basename
    folder = Path(eeg_path.directory)
    folder.mkdir(parents=True, exist_ok=True)
    tsv = folder / f"{stem}_recording-{check_label(label, 'recording')}_physio.tsv.gz"
    side = tsv.with_name(tsv.name.replace(".tsv.gz", ".json"))
    if not overwrite and (tsv.exists() or side.exists()):
        raise BIDSError(f"{tsv} exists; pass overwrite to replace it")
    # 9 significant digits hold a float32 sample exactly; NaN is written as n/a.
    lines = ["\t".join("n/a" if not np.isfinite(v) else f"{v:.9g}" for v in row) for row in x]
    # No name and no time in the gzip header: the validator flags both (they leak the
    # conversion's context and make exports irreproducible).
    with open(tsv, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
    meta: dict[str, Any] = {"SamplingFrequency": float(rate_hz), "StartTime": float(start_s),
                            "Columns": [c["name"] for c in columns]}  # fmt: skip
    for c in columns:
        meta[c["name"]] = {"Description": c["description"], "Units": c["units"]}
    _json(side, meta)
    return tsv, side


def read_physio(tsv: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A physio file back: samples (n, n_columns) and its sidecar."""
    tsv = Path(tsv)
    with gzip.open(tsv, "rt", encoding="utf-8") as f:
        rows = [[np.nan if v == "n/a" else float(v) for v in line.split("\t")]
                for line in f.read().splitlines()]  # fmt: skip
    meta = json.loads(tsv.with_name(tsv.name.replace(".tsv.gz", ".json")).read_text())
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(meta["Columns"])), meta


def write_nibs(
    eeg_path,
    rows: Sequence[Mapping[str, Any]],
    columns: Mapping[str, Mapping[str, str]],
    sidecar: Mapping[str, Any],
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write the stimulation table of a recording as BEP037 proposes (``nibs/``).

    Parameters
    ----------
    eeg_path : mne_bids.BIDSPath
        The recording the stimulation belongs to (its subject, session, task, run).
    rows : sequence of mapping
        One per stimulation event; keys are the column names (missing: ``n/a``).
    columns : mapping of str to mapping
        Column name -> ``Description`` (and ``Units``, ``Levels`` where they apply), in
        the order of the table; written into the sidecar.
    sidecar : mapping
        Further ``_nibs.json`` entries (device, protocol).
    overwrite : bool
        Replace existing files.

    Returns
    -------
    (Path, Path)
        The ``_nibs.tsv`` and ``_nibs.json`` written.
    """
    root = Path(eeg_path.root)
    ent = eeg_path.entities
    stem = "_".join(f"{k}-{ent[v]}" for k, v in (("sub", "subject"), ("ses", "session"),
                                                 ("task", "task"), ("run", "run"))
                    if ent.get(v) is not None)  # fmt: skip
    folder = Path(eeg_path.directory).parent / "nibs"
    folder.mkdir(parents=True, exist_ok=True)
    tsv = folder / f"{stem}_stimsys-tms_nibs.tsv"
    side = tsv.with_suffix(".json")
    if not overwrite and (tsv.exists() or side.exists()):
        raise BIDSError(f"{tsv} exists; pass overwrite to replace it")

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "n/a"
        return f"{v:.9g}" if isinstance(v, float) else str(v)

    names = list(columns)
    body = "".join("\t".join(cell(r.get(n)) for n in names) + "\n" for r in rows)
    tsv.write_text("\t".join(names) + "\n" + body, encoding="utf-8")
    _json(side, {**sidecar, **{n: dict(columns[n]) for n in names}})
    ignore = root / ".bidsignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    if "**/nibs" not in lines:
        ignore.write_text("\n".join([*lines, "**/nibs"]) + "\n")
    return tsv, side
