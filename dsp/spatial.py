"""Spatial filters: the Hjorth (nearest-neighbour surface Laplacian) derivation.

Hjorth (1975) approximates the surface Laplacian at an electrode by the electrode's
potential minus the mean of its nearest neighbours. It removes activity shared by the
neighbourhood (volume conduction, the reference) and keeps focal rhythms such as the
sensorimotor mu rhythm at C3 (the montage used by Zrenner et al. 2018 for mu-phase TMS:
C3 minus the mean of FC1, FC5, CP1, CP5, or in the 10-20 system F3, T3, P3, Cz).

Default neighbour maps:

- ``NEIGHBOURS_1020``: the 19-channel 10-20 system (old names T3/T4/T5/T6; the new
  names T7/T8/P7/P8 are accepted as aliases), as in ``../shared/data/README.md``
  (C3: F3, T3, P3, Cz; O2: P4, T6, O1, Pz; Pz: P3, P4, Cz, O1, O2).
- :func:`neighbours_1010`: the 10-10 system laid out as rows (Fp, AF, F, FC, C/T, CP, P,
  PO, O, I) and columns; an electrode's neighbours are the nearest present electrodes
  left and right in its row and the nearest present one(s) in the rows above and below.

Labels are matched after :func:`normalise_label`, which strips prefixes and padding that
recording systems add ("EEG C3", "C3..", "C3-REF") and fixes the case ("FCZ" → "FCz").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "NEIGHBOURS_1020",
    "default_neighbours",
    "hjorth",
    "hjorth_weights",
    "neighbours_1010",
    "normalise_label",
]

NEIGHBOURS_1020: dict[str, tuple[str, ...]] = {
    "Fp1": ("F7", "F3", "Fz", "Fp2"),
    "Fp2": ("F8", "F4", "Fz", "Fp1"),
    "F7": ("Fp1", "F3", "T3"),
    "F3": ("Fp1", "F7", "Fz", "C3"),
    "Fz": ("F3", "F4", "Fp1", "Fp2", "Cz"),
    "F4": ("Fp2", "F8", "Fz", "C4"),
    "F8": ("Fp2", "F4", "T4"),
    "T3": ("F7", "C3", "T5"),
    "C3": ("F3", "T3", "P3", "Cz"),
    "Cz": ("Fz", "C3", "C4", "Pz"),
    "C4": ("F4", "T4", "P4", "Cz"),
    "T4": ("F8", "C4", "T6"),
    "T5": ("T3", "P3", "O1"),
    "P3": ("C3", "T5", "Pz", "O1"),
    "Pz": ("P3", "P4", "Cz", "O1", "O2"),
    "P4": ("C4", "T6", "Pz", "O2"),
    "T6": ("T4", "P4", "O2"),
    "O1": ("P3", "T5", "O2", "Pz"),
    "O2": ("P4", "T6", "O1", "Pz"),
}

# Old 10-20 names and their 10-10 equivalents (Oostenveld & Praamstra 2001).
_ALIASES = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
_ALIASES.update({v: k for k, v in list(_ALIASES.items())})

# 10-10 rows, each as (label, column position) with the midline at 0 and ±1 per step.
_ROWS_1010: tuple[tuple[tuple[str, float], ...], ...] = (
    (("Fp1", -2), ("Fpz", 0), ("Fp2", 2)),
    (("AF7", -4), ("AF3", -2), ("AFz", 0), ("AF4", 2), ("AF8", 4)),
    tuple(
        (n, x)
        for n, x in zip(
            ("F9", "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8", "F10"),
            range(-5, 6),
            strict=True,
        )
    ),
    tuple(
        (n, x)
        for n, x in zip(
            ("FT9", "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "FT10"),
            range(-5, 6),
            strict=True,
        )
    ),
    tuple(
        (n, x)
        for n, x in zip(
            ("T9", "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "T8", "T10"),
            range(-5, 6),
            strict=True,
        )
    ),
    tuple(
        (n, x)
        for n, x in zip(
            ("TP9", "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "TP10"),
            range(-5, 6),
            strict=True,
        )
    ),
    tuple(
        (n, x)
        for n, x in zip(
            ("P9", "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8", "P10"),
            range(-5, 6),
            strict=True,
        )
    ),
    (("PO7", -4), ("PO3", -2), ("POz", 0), ("PO4", 2), ("PO8", 4)),
    (("O1", -2), ("Oz", 0), ("O2", 2)),
    (("Iz", 0),),
)

_CANON = {n.upper(): n for row in _ROWS_1010 for n, _ in row}
_CANON.update({n.upper(): n for n in NEIGHBOURS_1020})


def normalise_label(label: str) -> str:
    """Canonical 10-20/10-10 spelling of a channel label.

    Strips a leading type ("EEG "), trailing dots/spaces (PhysioNet EDF pads with "."),
    and a reference suffix ("-REF", "-A1"), then fixes the case ("FCZ" → "FCz").
    Unknown labels are returned stripped but otherwise unchanged.

    Parameters
    ----------
    label : str
        Label as found in the recording or stream.
    """
    s = label.strip()
    if s.upper().startswith("EEG "):
        s = s[4:]
    s = s.strip().rstrip(".").strip()
    if "-" in s and s.upper().split("-")[0] in _CANON:
        s = s.split("-")[0]
    return _CANON.get(s.upper(), s)


def neighbours_1010(present: Sequence[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Nearest-neighbour map of the 10-10 system, restricted to ``present`` labels.

    Parameters
    ----------
    present : sequence of str, optional
        Canonical labels available; all 10-10 labels if None.

    Returns
    -------
    dict of str to tuple of str
        For each present electrode, its present neighbours (left/right in its row, nearest
        in the rows above and below).
    """
    have = None if present is None else {normalise_label(p) for p in present}
    rows = [[(n, x) for n, x in row if have is None or n in have] for row in _ROWS_1010]
    out: dict[str, tuple[str, ...]] = {}
    for r, row in enumerate(rows):
        for i, (name, x) in enumerate(row):
            nb: list[str] = []
            if i > 0:
                nb.append(row[i - 1][0])
            if i < len(row) - 1:
                nb.append(row[i + 1][0])
            for rr in (r - 1, r + 1):
                # Skip an empty row (e.g. no AF electrodes) to the next one that has any.
                step = rr - r
                while 0 <= rr < len(rows) and not rows[rr]:
                    rr += step
                if not 0 <= rr < len(rows):
                    continue
                d = np.array([abs(xx - x) for _, xx in rows[rr]])
                nb.extend(rows[rr][j][0] for j in np.flatnonzero(d == d.min()))
            out[name] = tuple(nb)
    return out


def default_neighbours(labels: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The default neighbour map for a recording's labels.

    Uses ``NEIGHBOURS_1020`` when every EEG label belongs to the 19-channel 10-20 set
    (old or new temporal names), otherwise :func:`neighbours_1010` over the present labels.

    Parameters
    ----------
    labels : sequence of str
        Channel labels of the recording (any spelling :func:`normalise_label` accepts).
    """
    canon = [normalise_label(lb) for lb in labels]
    known_1010 = {n for row in _ROWS_1010 for n, _ in row}
    eeg = [c for c in canon if c in known_1010 or c in NEIGHBOURS_1020]
    in_1020 = [c in NEIGHBOURS_1020 or _ALIASES.get(c) in NEIGHBOURS_1020 for c in eeg]
    if eeg and all(in_1020):
        return dict(NEIGHBOURS_1020)
    return neighbours_1010(eeg)


def _find(canon: list[str], name: str) -> int | None:
    for cand in (name, _ALIASES.get(name)):
        if cand is not None and cand in canon:
            return canon.index(cand)
    return None


def hjorth_weights(
    labels: Sequence[str],
    target: str,
    neighbours: Mapping[str, Sequence[str]] | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Channel weights of the Hjorth derivation at ``target``.

    Parameters
    ----------
    labels : sequence of str
        Channel labels in data order.
    target : str
        Target electrode, e.g. ``"C3"``.
    neighbours : mapping, optional
        Neighbour map; :func:`default_neighbours` of ``labels`` if None. Neighbours that
        are not in the recording are left out.

    Returns
    -------
    weights : ndarray, shape (n_channels,)
        +1 at the target, -1/k at each of its k present neighbours, 0 elsewhere.
    used : tuple of str
        The neighbours used (as spelled in the map).

    Raises
    ------
    ValueError
        If the target is not among the labels, or none of its neighbours is.
    """
    canon = [normalise_label(lb) for lb in labels]
    tgt = normalise_label(target)
    it = _find(canon, tgt)
    if it is None:
        raise ValueError(f"hjorth: target {target!r} not among channel labels {list(labels)}")
    nmap = default_neighbours(labels) if neighbours is None else neighbours
    nb = nmap.get(tgt)
    if nb is None and _ALIASES.get(tgt) is not None:
        nb = nmap.get(_ALIASES[tgt])
    if not nb:
        raise ValueError(f"hjorth: no neighbours of {target!r} in the neighbour map")
    idx = []
    used = []
    for n in nb:
        j = _find(canon, normalise_label(n))
        if j is not None and j != it:
            idx.append(j)
            used.append(n)
    if not idx:
        raise ValueError(
            f"hjorth: none of the neighbours {tuple(nb)} of {target!r} is among the labels"
        )
    w = np.zeros(len(labels))
    w[it] = 1.0
    w[idx] -= 1.0 / len(idx)
    return w, tuple(used)


def hjorth(
    data: np.ndarray,
    labels: Sequence[str],
    target: str,
    neighbours: Mapping[str, Sequence[str]] | None = None,
) -> np.ndarray:
    """Hjorth (1975) derivation: the target channel minus the mean of its neighbours.

    Parameters
    ----------
    data : ndarray, shape (n_samples, n_channels)
        Multichannel EEG (any unit u), channels in ``labels`` order.
    labels : sequence of str
        Channel labels.
    target : str
        Target electrode.
    neighbours : mapping, optional
        Neighbour map; default as in :func:`hjorth_weights`.

    Returns
    -------
    ndarray, shape (n_samples,)
        The derivation, in u. NaN where the target or a used neighbour is NaN.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != len(labels):
        raise ValueError(
            f"hjorth: data must have shape (n_samples, {len(labels)}), got {data.shape}"
        )
    w, _ = hjorth_weights(labels, target, neighbours)
    nz = np.flatnonzero(w)
    return data[:, nz] @ w[nz]
