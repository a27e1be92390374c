"""Electrode labels and positions the simulators use (10-20 / 10-10 system).

Positions are in mm, head-centred (x right, y nose, z up), taken from MNE-Python's
``standard_1005`` template montage (Oostenveld & Praamstra 2001) and stored here so the
simulators neither import MNE at start-up nor depend on a template name MNE deprecates.
The first 19 labels are the classic 10-20 set; larger montages add 10-10 positions.
"""

from __future__ import annotations

import numpy as np

POSITIONS_MM: dict[str, tuple[int, int, int]] = {
    "Fp1": (-29, 84, -7),
    "Fp2": (30, 85, -7),
    "F7": (-70, 42, -11),
    "F3": (-50, 53, 42),
    "Fz": (0, 59, 66),
    "F4": (52, 54, 41),
    "F8": (73, 44, -12),
    "T7": (-84, -16, -9),
    "C3": (-65, -12, 64),
    "Cz": (0, -9, 100),
    "C4": (67, -11, 64),
    "T8": (85, -15, -9),
    "P7": (-72, -73, -2),
    "P3": (-53, -79, 56),
    "Pz": (0, -81, 83),
    "P4": (56, -79, 57),
    "P8": (73, -73, -3),
    "O1": (-29, -112, 9),
    "O2": (30, -112, 9),
    "Fpz": (0, 88, -2),
    "AF7": (-55, 69, -11),
    "AF3": (-34, 77, 21),
    "AFz": (0, 81, 35),
    "AF4": (36, 78, 22),
    "AF8": (56, 70, -11),
    "F5": (-64, 48, 17),
    "F1": (-27, 57, 60),
    "F2": (30, 58, 60),
    "F6": (68, 50, 16),
    "FT7": (-81, 14, -11),
    "FC5": (-77, 19, 24),
    "FC3": (-60, 23, 56),
    "FC1": (-34, 26, 80),
    "FCz": (0, 27, 89),
    "FC2": (35, 26, 79),
    "FC4": (62, 24, 56),
    "FC6": (80, 20, 24),
    "FT8": (82, 15, -11),
    "C5": (-80, -14, 29),
    "C1": (-36, -10, 90),
    "C2": (38, -10, 88),
    "C6": (83, -13, 29),
    "TP7": (-85, -46, -7),
    "CP5": (-80, -47, 31),
    "CP3": (-64, -47, 66),
    "CP1": (-36, -47, 91),
    "CPz": (0, -47, 99),
    "CP2": (38, -47, 91),
    "CP4": (67, -47, 66),
    "CP6": (83, -46, 31),
    "TP8": (86, -46, -7),
    "P5": (-67, -76, 28),
    "P1": (-29, -81, 75),
    "P2": (32, -80, 77),
    "P6": (68, -76, 28),
    "PO7": (-55, -98, 3),
    "PO3": (-37, -101, 37),
    "POz": (0, -102, 51),
    "PO4": (37, -101, 36),
    "PO8": (56, -98, 3),
    "Oz": (0, -115, 15),
    "Iz": (0, -119, -23),
    "T9": (-86, -16, -48),
    "T10": (86, -16, -48),
}

#: Labels in the order a montage of N channels takes them (10-20 core first).
LABELS: tuple[str, ...] = tuple(POSITIONS_MM)

#: Old 10-20 names (used e.g. by the EEGMAT recordings) mapped to their 10-10 names.
LEGACY_ALIASES: dict[str, str] = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}


def montage_labels(n_channels: int) -> tuple[str, ...]:
    """Return the first ``n_channels`` labels (10-20 core first).

    Parameters
    ----------
    n_channels : int
        Number of channels, 1 to 64.
    """
    if not 1 <= n_channels <= len(LABELS):
        raise ValueError(f"n_channels must be in 1..{len(LABELS)}, got {n_channels}")
    return LABELS[:n_channels]


def positions_m(labels: tuple[str, ...]) -> np.ndarray:
    """Positions of ``labels`` in metres, shape (n, 3)."""
    return np.array([POSITIONS_MM[LEGACY_ALIASES.get(lb, lb)] for lb in labels], float) / 1000.0
