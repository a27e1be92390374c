"""A localisation scores only the cycles whose train went out in full (review finding: a
train that started but was cut short (the engine's train guard on a stale or NaN ECG,
the operator's disarm, the e-stop, the watchdog, a device error) was scored as a whole
cycle at its nominal intensity, live and in ``stimloop analyze``: a site could be ranked
on a dose it did not receive).

Live: the protocol, driven by a real heart stage on the virtual subject's ECG, told of
its trains as the engine tells it (once a train is over, with the pulses that went
out); the engine's side (counting the pulses, the ``train_cut_short`` decision) is in
``test_engine_train_guard``. Offline: ``analyze`` on a recording holding the engine's
``train_cut_short`` decision."""

from __future__ import annotations

import dataclasses

import pytest
from hbc_offline import localise
from report_recordings import hbc_recording

from stimloop.loop.html_report import write_html_report
from stimloop.loop.protocol import PulseOutcome, PulseRequest
from stimloop.loop.report import analyse_session, format_report


def _localise(source_id: str, delivered: dict[int, int]):
    """Each train fires; the protocol hears of it at its end, with ``delivered[cycle]``
    pulses (default all 20)."""

    def fate(cycle: int, n: int) -> tuple[bool, int, str]:
        got = delivered.get(cycle, n)
        return True, got, "" if got == n else "disarmed: operator"

    return localise(source_id, fate)


def test_a_train_cut_short_leaves_its_cycle_unscored_live(source_id):
    p, markers = _localise(source_id, {2: 7, 4: 19})
    scored = [(m["index"], m["intensity"]) for m in markers if m["event"] == "cycle"]
    assert scored == [(0, 0.0), (1, 80.0), (3, 100.0)]
    cut = [m for m in markers if m["event"] == "train_cut_short"]
    assert [(m["cycle"], m["intensity"]) for m in cut] == [(2, 90.0), (4, 110.0)]
    assert [(m["pulses_delivered"], m["pulses_planned"]) for m in cut] == [(7, 20), (19, 20)]
    assert all(m["error"] == "disarmed: operator" for m in cut)
    [site] = p.tracker.localisation().ranking
    assert list(site.intensities) == [80.0, 100.0]
    [done] = [m for m in markers if m["event"] == "site_done"]
    assert done["ranking"]["sites"][0]["intensities"] == [80.0, 100.0]


@pytest.fixture(scope="module")
def cut_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hbc-cut") / "hbc.xdf"
    made = hbc_recording(path, "hbc-cut-test", sites=("F3",), cut_short=[("F3", 2)])
    return path, made


def test_analyze_leaves_a_cut_short_cycle_unscored(cut_file, tmp_path):
    path, made = cut_file
    a = analyse_session(path)
    h = a.report["hbc"]
    assert [(c["index"], c["intensity"]) for c in h["cycles"]] == [(0, 0.0), (1, 60.0), (3, 80.0)]
    # The recording's own localisation, made without the cut cycle, and its live cycles.
    assert h["localisation"] == made["localisation"]
    assert h["live_cycles"] == 3 and h["live_vs_offline_max_rel"] < 1e-9
    [cut] = h["cut_short_trains"]
    assert (cut["site"], cut["cycle"], cut["pulses_delivered"], cut["pulses_planned"]) == (
        "F3",
        2,
        21,
        50,
    )
    # What analyze prints, and the HTML report it writes, say the same.
    text = format_report(a.report)
    assert "train cut short, cycle not scored: F3 cycle 2 (intensity 70), 21 of 50" in text
    assert "HBC by intensity" in text
    line = next(x for x in text.splitlines() if x.startswith("F3 "))
    assert line.split()[-2:] == [f"{v:.2f}" for v in h["localisation"]["sites"][0]["hbc"]]
    write_html_report(tmp_path / "r.html", [a])
    assert "1 train(s) cut short; their cycles are not scored." in (tmp_path / "r.html").read_text(
        encoding="utf-8"
    )


def test_analyze_of_the_same_trains_in_full_scores_every_cycle(tmp_path):
    """The control: without the ``train_cut_short`` decision the cycle is scored."""
    path = tmp_path / "full.xdf"
    made = hbc_recording(path, "hbc-full-test", sites=("F3",))
    h = analyse_session(path).report["hbc"]
    assert [c["index"] for c in h["cycles"]] == [0, 1, 2, 3] and not h["cut_short_trains"]
    assert h["localisation"] == made["localisation"]


def test_an_outcome_counts_a_train_cut_short():
    """``PulseOutcome.cut_short``: fired, counted, and fewer than planned."""
    from stimloop.devices.base import TrainSpec

    req = PulseRequest(1.0, {}, train=TrainSpec(10.0, 20))
    full = PulseOutcome(req, True, 1.0, pulses_delivered=20)
    assert not full.cut_short and full.pulses_planned == 20
    assert dataclasses.replace(full, pulses_delivered=19).cut_short
    assert not PulseOutcome(req, False, error="not armed", pulses_delivered=0).cut_short
    assert not PulseOutcome(PulseRequest(1.0), True, 1.0).cut_short  # a single pulse
    assert TrainSpec(10.0, 20).pulses_due(0.65) == 7
    assert TrainSpec(10.0, 20).pulses_due(0.0) == 0 and TrainSpec(10.0, 20).pulses_due(9.0) == 20
