"""A localisation scores only the cycles whose train went out (review finding: a train
the gate refused (not armed, stale ECG, a pause) left its cycle unstimulated, yet the
cycle was scored at its intensity, live and in ``stimloop analyze``, as if the train had
been delivered; a site whose trains were refused could be chosen as the target from
cycles without stimulation. Offline, a site restarted after an ECG loss also had its
unreached cycles scored)."""

from __future__ import annotations

from hbc_offline import localise


def _localise(source_id, refuse_cycles):
    """Every train fires in full except those of ``refuse_cycles``, which the gate
    refuses (not armed)."""

    def fate(cycle: int, n: int) -> tuple[bool, int, str]:
        return (False, 0, "not armed") if cycle in refuse_cycles else (True, n, "")

    return localise(source_id, fate)


def test_a_refused_train_leaves_its_cycle_unscored(source_id):
    p, markers = _localise(source_id, {2, 3})
    scored = [(m["index"], m["intensity"]) for m in markers if m["event"] == "cycle"]
    assert scored == [(0, 0.0), (1, 80.0), (4, 110.0)]
    refused = [m["cycle"] for m in markers if m["event"] == "train_refused"]
    assert refused == [2, 3]
    [site] = p.tracker.localisation().ranking
    assert list(site.intensities) == [80.0, 110.0]


def test_every_fired_train_is_scored(source_id):
    _, markers = _localise(source_id, set())
    scored = [m["index"] for m in markers if m["event"] == "cycle"]
    assert scored == [0, 1, 2, 3, 4]
