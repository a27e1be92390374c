"""Hjorth derivation and the default 10-20 / 10-10 neighbour maps."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from stimloop.dsp.spatial import (
    NEIGHBOURS_1020,
    default_neighbours,
    hjorth,
    hjorth_weights,
    neighbours_1010,
    normalise_label,
)


@pytest.mark.parametrize(
    ("raw", "canon"),
    [("EEG C3", "C3"), ("Fcz.", "FCz"), ("C3..", "C3"), ("O2-REF", "O2"), ("AF7", "AF7")],
)
def test_normalise_label(raw, canon):
    assert normalise_label(raw) == canon


def test_readme_neighbours_on_eegmat_labels(shared_data):
    raw = mne.io.read_raw_edf(
        shared_data / "eeg" / "eegmat_subject00_rest.edf", preload=True, verbose=False
    )
    data = raw.get_data().T
    names = raw.ch_names
    for target, nb in {
        "C3": ("F3", "T3", "P3", "Cz"),
        "O2": ("P4", "T6", "O1", "Pz"),
        "Pz": ("P3", "P4", "Cz", "O1", "O2"),
    }.items():
        w, used = hjorth_weights(names, target)
        assert set(used) == set(nb)
        manual = data[:, names.index(f"EEG {target}")] - np.mean(
            [data[:, names.index(f"EEG {n}")] for n in nb], axis=0
        )
        assert np.allclose(hjorth(data, names, target), manual, rtol=1e-12, atol=1e-15)
        assert w.sum() == pytest.approx(0.0, abs=1e-12)


def test_1010_map_on_eegmmidb_labels(shared_data):
    raw = mne.io.read_raw_edf(
        shared_data / "eeg" / "eegmmidb_s001r01_eyes_open.edf", preload=False, verbose=False
    )
    nmap = default_neighbours(raw.ch_names)
    assert set(nmap["C3"]) == {"C5", "C1", "FC3", "CP3"}
    assert set(nmap["O2"]) == {"Oz", "PO4", "Iz"}
    _, used = hjorth_weights(raw.ch_names, "C3")
    assert set(used) == {"C5", "C1", "FC3", "CP3"}


def test_new_temporal_names_alias_old_ones():
    labels = [n.replace("T3", "T7").replace("T6", "P8") for n in NEIGHBOURS_1020]
    _, used = hjorth_weights(labels, "C3")
    assert set(used) == {"F3", "T3", "P3", "Cz"}  # T3 found as T7
    _, used = hjorth_weights(labels, "O2")
    assert "T6" in used


def test_missing_neighbours_are_dropped_and_errors_are_clear():
    labels = ["C3", "Cz", "F3"]
    w, used = hjorth_weights(labels, "C3", neighbours=NEIGHBOURS_1020)
    assert set(used) == {"Cz", "F3"} and np.allclose(w, [1.0, -0.5, -0.5])
    with pytest.raises(ValueError, match="target 'C4'"):
        hjorth_weights(labels, "C4")
    with pytest.raises(ValueError, match="none of the neighbours"):
        hjorth_weights(["C3", "O1"], "C3", neighbours=NEIGHBOURS_1020)
    with pytest.raises(ValueError, match="shape"):
        hjorth(np.zeros((10, 2)), labels, "C3")


def test_1010_map_is_symmetric_enough():
    nmap = neighbours_1010()
    assert set(nmap["Cz"]) == {"C1", "C2", "FCz", "CPz"}
    assert nmap["Iz"] == ("Oz",)
    assert all(len(v) >= 2 for k, v in nmap.items() if k != "Iz")
