"""The exposure section of ``stimloop analyze``: from the recording alone, equal to what
the session computed live, and the same figures in the HTML report."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest
from html_elements import Page
from report_recordings import T0, record_stages

from stimloop.devices.sim.exposure import ExposureScenario, simulate_exposure
from stimloop.dsp.exposure import (
    cue_responses,
    cue_summary,
    eda_tables,
    exercise_physiology,
    hr_series,
)
from stimloop.loop.cli import main
from stimloop.loop.exposure_analysis import LIVE_RTOL
from stimloop.loop.html_report import write_html_report
from stimloop.loop.report import analyse_session, format_report

#: A short client: 90 s rest (calibration marked 10-85 s), three 30 s exercises.
CLIENT = dict(rest_s=90.0, n_exercises=3, exercise_s=30.0, hold_s=15.0, gap_s=35.0, tail_s=20.0)


def _client(seed: int):
    return simulate_exposure(ExposureScenario(seed=seed, **CLIENT))


@pytest.fixture(scope="module")
def client_file(tmp_path_factory):
    """A simulated exposure client through the session's real stages, recorded."""
    sim = _client(1)
    path = tmp_path_factory.mktemp("client") / "client.xdf"
    record_stages(path, f"test-expo-{uuid.uuid4().hex[:8]}", sim.eda_us, sim.scenario.eda_fs,
                  sim.markers, ecg_mv=sim.ecg_mv, ecg_fs=sim.scenario.ecg_fs, seed=1)  # fmt: skip
    return path, sim


def _agree(lo: dict) -> None:
    for part in ("exercises", "arousal", "calibration", "cues"):
        p = lo[part]
        assert p is not None and p["agree"], (part, p)
        assert p["max_rel_diff"] <= LIVE_RTOL, (part, p)
    assert lo["agree"]


def test_offline_exposure_figures_equal_the_live_stage_and_the_raw_recording(client_file):
    path, sim = client_file
    a = analyse_session(path)
    x = a.report["exposure"]
    # Live (the stage's recorded exercises, arousal, calibration, cues) == offline.
    lo = x["live_vs_offline"]
    _agree(lo)
    assert lo["exercises"]["live"] == lo["exercises"]["offline"] == 3
    assert lo["arousal"]["matched"] == lo["arousal"]["live"] > 1500
    assert lo["calibration"]["compared"] >= 8 and lo["cues"]["live"] == 9
    # The markers, as the simulated PsychoPy script sent them.
    assert [e["label"] for e in x["exercises"]] == [f"elevator ride {k}" for k in (1, 2, 3)]
    assert [e["expectancy"] for e in x["exercises"]] == [85.0, 73.0, 61.0]
    assert [e["expectancy_violation"] for e in x["exercises"]] == [75.0, 63.0, 51.0]
    assert x["calibration"]["start_t"] == T0 + 10.0 and x["calibration"]["end_t"] == T0 + 85.0
    # An independent offline path: the SCRs, level and HR recomputed from the raw
    # signals (whole recording at once), then the per-exercise figures. The arousal
    # index comes from the report (its equality with live is checked above).
    sc = sim.scenario
    scrs, level = eda_tables(sim.eda_us.astype(float), sc.eda_fs, T0, 10.0)
    hr = hr_series(sim.ecg_mv.astype(float), sc.ecg_fs, T0)
    tl = a.exposure.timeline
    from stimloop.dsp.exposure import Series

    figs = exercise_physiology(
        np.array([(e["start_t"], e["end_t"]) for e in x["exercises"]]),
        scrs=scrs, level=level, hr=hr, cue_t=np.array([r["t"] for r in x["cues"]["rows"]]),
        arousal=Series(tl["t"], tl["index"]), band=Series(tl["t"], tl["state"].astype(float)),
    )  # fmt: skip
    for f, e in zip(figs, x["exercises"], strict=True):
        d = f.to_dict()
        for k in ("scr_count", "scr_amp_sum_us", "scl_change_us", "hr_change_bpm",
                  "hr_peak_bpm", "n_cue_responses", "cue_amp_mean_us", "arousal_peak"):  # fmt: skip
            assert d[k] == pytest.approx(e[k], rel=1e-12, abs=1e-12), k
    # Habituation and expectancy violation are those of the table.
    h = x["habituation"]
    assert h["measure"] == "arousal_peak" and h["value"] == [
        e["arousal_peak"] for e in x["exercises"]
    ]
    assert h["slope_per_exercise"] == pytest.approx(np.polyfit([1, 2, 3], h["value"], 1)[0])
    rows = x["expectancy"]["rows"]
    assert [r["violation"] for r in rows] == [75.0, 63.0, 51.0]
    assert [r["response"] for r in rows] == h["value"]
    # Cues: three per exercise, codes 1-3, each code answered as the rows say.
    per = x["cues"]["per_code"]
    assert {k: v["n"] for k, v in per.items()} == {"1": 3, "2": 3, "3": 3}
    for code, s in per.items():
        resp = [r for r in x["cues"]["rows"] if r["code"] == code and r["responded"]]
        assert s["responded"] == len(resp)
    text = format_report(a.report)
    assert "exposure: 3 exercise(s)" in text and "habituation (arousal_peak per exercise)" in text
    assert "live vs offline: exercises agree" in text


def test_html_exposure_section_draws_the_report_numbers(client_file, tmp_path):
    path, _ = client_file
    a = analyse_session(path)
    x = a.report["exposure"]
    out = write_html_report(tmp_path / "r.html", [a])
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert {"exposure", "physiology", "session", "streams", "health", "events"} <= page.ids()
    assert {"fig-habituation", "fig-expectancy", "fig-violation-response", "fig-arousal",
            "fig-hr", "fig-eda"} == set(out["figures"])  # fmt: skip
    # The table: one row per exercise, the report's values as printed.
    rows = page.rows("exposure-table")
    assert [r[1] for r in rows] == [e["label"] for e in x["exercises"]]
    assert [r[4] for r in rows] == [f"{e['scr_count']:.0f}" for e in x["exercises"]]
    assert [r[12] for r in rows] == [f"{e['arousal_peak']:.2f}" for e in x["exercises"]]
    # Habituation points, rating bars, the violation/response points.
    pts = page.find("circle", "point", within="fig-habituation")
    assert [float(p["data-y"]) for p in pts] == x["habituation"]["value"]
    bars = page.find("rect", "bar", within="fig-expectancy")
    got = {(b["data-category"], b["data-name"]): float(b["data-value"]) for b in bars}
    for r in x["expectancy"]["rows"]:
        assert got[(str(r["number"]), "expectancy")] == r["expectancy"]
        assert got[(str(r["number"]), "outcome")] == r["outcome"]
    pts = page.find("circle", "point", within="fig-violation-response")
    assert [(float(p["data-x"]), float(p["data-y"])) for p in pts] == [
        (r["violation"], r["response"]) for r in x["expectancy"]["rows"]
    ]
    # Arousal over time: every offline sample, the band edges, the exercises, the alerts.
    (series,) = page.find("path", "series", within="fig-arousal")
    assert int(series["data-n"]) == x["arousal"]["samples"]
    refs = {float(r["data-y"]) for r in page.find("line", "ref", within="fig-arousal")}
    b = x["bands"]
    assert {b["low"], b["high"], b["low"] - b["hysteresis"], b["high"] + b["hysteresis"]} == refs
    spans = page.find("rect", "span", within="fig-arousal")
    assert [float(s["data-a"]) for s in spans] == [e["start_t"] for e in x["exercises"]]
    alerts = page.find("line", "event", within="fig-arousal")
    assert [float(e["data-t"]) for e in alerts] == x["arousal"]["alerts_t"] and alerts
    cue_rows = page.rows("cue-table")
    assert [(r[0], int(r[1]), int(r[3])) for r in cue_rows] == [
        (k, v["n"], v["responded"]) for k, v in x["cues"]["per_code"].items()
    ]
    assert all(r[1] == "agree" for r in page.rows("live-offline-table"))


def test_several_recordings_are_compared_between_sessions(client_file, tmp_path, capsys):
    first, _ = client_file
    sim = _client(2)
    second = tmp_path / "second.xdf"
    record_stages(second, f"test-expo2-{uuid.uuid4().hex[:8]}", sim.eda_us, sim.scenario.eda_fs,
                  sim.markers, ecg_mv=sim.ecg_mv, ecg_fs=sim.scenario.ecg_fs, seed=2)  # fmt: skip
    html = tmp_path / "both.html"
    cmd = ["analyze", str(first), str(second)]
    assert main([*cmd, "--json", "--report", str(html)]) == 0
    captured = capsys.readouterr()
    assert "100 %" in captured.err  # the progress bar
    out = json.loads(captured.out)
    reports, cmp = out["sessions"], out["comparison"]
    assert cmp["sessions"] == ["client.xdf", "second.xdf"] and not cmp["without_exercises"]
    peaks = [[e["arousal_peak"] for e in r["exposure"]["exercises"]] for r in reports]
    rows = cmp["measures"]["arousal_peak"]
    assert [r["mean"] for r in rows] == pytest.approx([np.mean(p) for p in peaks], rel=1e-12)
    assert rows[0]["mean_change_from_first_session"] == 0.0
    assert rows[1]["mean_change_from_first_session"] == pytest.approx(
        np.mean(peaks[1]) - np.mean(peaks[0]), rel=1e-12
    )
    assert rows[1]["first_change_from_first_session"] == pytest.approx(peaks[1][0] - peaks[0][0])
    assert main(cmd) == 0
    text = capsys.readouterr().out
    assert "between sessions (first session = reference):" in text and "second.xdf" in text
    page = Page(html.read_text(encoding="utf-8"))
    assert {"s1-exposure", "s2-exposure", "comparison", "fig-compare-arousal_peak"} <= page.ids()
    bars = page.find("rect", "bar", within="fig-compare-arousal_peak", data_name="mean")
    assert [float(b["data-value"]) for b in bars] == [r["mean"] for r in rows]
    assert main([*cmd, "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot draws one recording" in capsys.readouterr().err


def test_bad_markers_and_a_flat_sensor_are_reported_and_live_still_equals_offline(tmp_path):
    sim = _client(3)
    sc = sim.scenario
    eda = sim.eda_us.copy()
    s1 = sc.intervals()[0][0]
    i, j = int((s1 + 5) * sc.eda_fs), int((s1 + 20) * sc.eda_fs)
    eda[i:j] = eda[i]  # a stuck sensor for 15 s inside exercise 1
    bad = [
        (40.0, json.dumps({"kind": "exercise_end", "label": "nothing open"})),
        (
            s1 + 2.0,
            json.dumps({"kind": "rating", "scale": "suds", "moment": "start", "value": 150}),
        ),
        (s1 + 25.0, json.dumps({"kind": "cue", "label": "door\u202eclosed", "code": 7})),
        (s1 + 26.0, "beep"),
    ]
    path = tmp_path / "bad.xdf"
    record_stages(path, f"test-expo-bad-{uuid.uuid4().hex[:8]}", eda, sc.eda_fs,
                  sim.markers + bad, ecg_mv=sim.ecg_mv, ecg_fs=sc.ecg_fs, seed=3)  # fmt: skip
    a = analyse_session(path)
    x = a.report["exposure"]
    # The stage refused the four markers and scored each as a plain cue; offline lists
    # them with the reason and scores them the same way, so live still equals offline.
    refused = x["markers"]["refused_live"]
    assert [r["t"] for r in refused] == [T0 + t for t, _ in bad]
    assert "without an open exercise" in refused[0]["reason"]
    assert "150" in refused[1]["reason"] and "0-100" in refused[1]["reason"]
    assert "U+202E" in refused[2]["reason"] or "bidirectional" in refused[2]["reason"].lower()
    assert "not" in refused[3]["reason"].lower()  # plain text is not a JSON object
    _agree(x["live_vs_offline"])
    # The flat sensor makes exercise 1's EDA figures missing (null), never zero.
    e = x["exercises"][0]
    assert e["eda_valid"] is False and e["scr_count"] is None and e["scl_change_us"] is None
    assert any("flatline" in why for why in e["issues"])
    assert x["exercises"][1]["eda_valid"] is True
    text = format_report(a.report)
    assert text.count("marker refused live") == 4 and "EDA invalid" in text
    write_html_report(tmp_path / "r.html", [a])
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert page.rows("exposure-table")[0][4] == "–" and page.rows("exposure-table")[0][3] == "no"
    assert "refused live" in page.text_of["exposure-issues"]
    assert "\u202e" not in (tmp_path / "r.html").read_text(encoding="utf-8").split("report-json")[0]


@pytest.mark.slow
def test_systole_cues_per_code_live_equal_offline(shared_data, tmp_path):
    """Real data: each systole event a cue, its code the cue code; the recording runs
    in chunks through the EDA and exposure stages (no ECG), and the evoked SCRs per code
    from the recording equal the live ones and those of the raw EDA."""
    d = np.load(shared_data / "eda" / "systole_task1_1000hz.npz")
    fs = float(d["fs"])
    x = d["eda"].astype(np.float64)
    idx = np.flatnonzero(d["stim"])
    codes = d["stim"][idx].astype(int)

    def m(kind, **f):
        return json.dumps({"kind": kind, **f})

    marks = [(20.0, m("calibration_start")), (85.0, m("calibration_end")),
             (idx[0] / fs - 10.0, m("exercise_start", label="picture task")),
             (idx[-1] / fs + 10.0, m("exercise_end", label="picture task"))]  # fmt: skip
    marks += [(i / fs, m("cue", code=int(c))) for i, c in zip(idx, codes, strict=True)]
    path = tmp_path / "systole.xdf"
    t = time.monotonic()
    record_stages(path, f"test-systole-{uuid.uuid4().hex[:8]}", x, fs, marks, max_chunk_s=1.0)
    a = analyse_session(path)
    print(f"systole through the stages and analysed in {time.monotonic() - t:.1f} s")
    ex = a.report["exposure"]
    _agree(ex["live_vs_offline"])
    per = ex["cues"]["per_code"]
    assert {k: v["n"] for k, v in per.items()} == {"1": 36, "2": 36}
    assert ex["live_vs_offline"]["cues"]["live"] == 72
    # The raw EDA, detected offline in one pass, gives the same responses per code.
    scrs, _ = eda_tables(x, fs, T0)
    raw = cue_summary(cue_responses(scrs, T0 + idx / fs), codes)
    assert raw == per
    assert sum(v["responded"] for v in per.values()) > 10
    print({k: f"{v['responded']}/{v['n']}" for k, v in per.items()})


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_recorded_exposure_session_live_equals_offline(tmp_path, source_id):
    """Acceptance (issue 19): a real session with ``[exposure]`` (EDA and ECG only, no
    EEG, no stimulator) on the simulated client replayed over LSL in real time, recorded;
    ``analyze`` of the file gives every per-exercise figure, the arousal index and band,
    the calibration and the cue responses the session computed live. The client's first
    seconds are cut so that the 61 s rest starts once the session runs (~2 min)."""
    from stimloop.loop.config import parse_session
    from stimloop.loop.session import Session
    from stimloop.stream.replay import Player
    from stimloop.stream.xdf import info_xml, write_xdf

    sc = ExposureScenario(seed=2, rest_s=90.0, n_exercises=2, exercise_s=15.0, rise_s=4.0,
                          hold_s=6.0, gap_s=8.0, tail_s=13.0)  # fmt: skip
    sim = simulate_exposure(sc)
    cut = 14.0  # the rest is marked 11-72 s of the cut recording; exercises from 76 s
    eda = sim.eda_us[int(cut * sc.eda_fs) :]
    ecg = sim.ecg_mv[int(cut * sc.ecg_fs) :]

    def m(kind, **f):
        return json.dumps({"kind": kind, **f})

    marks = [(11.0, m("calibration_start")), (72.0, m("calibration_end"))]
    cues = sim.truth.cue_t - cut
    for k, (s, e) in enumerate(sc.intervals() - cut):
        label = f"lift {k + 1}"
        marks += [(s - 3, m("rating", scale="expectancy", value=80 - 20 * k)),
                  (s, m("exercise_start", label=label)),
                  (s + 1, m("rating", scale="suds", moment="start", value=40)),
                  (e, m("exercise_end", label=label)),
                  (e + 0.5, m("rating", scale="suds", moment="peak", value=60 - 10 * k)),
                  (e + 1, m("rating", scale="outcome", value=10)),
                  (e + 1.5, m("learned", text=f"lift {k + 1}: nothing bad happened"))]  # fmt: skip
        marks += [(float(c), m("cue", label="doors", code=i + 1))
                  for i, c in enumerate(cues[(cues >= s) & (cues < e)])]  # fmt: skip
    marks.sort(key=lambda x: x[0])
    mk = [{"label": "marker", "unit": "", "type": "Marker"}]
    client = tmp_path / "client.xdf"
    write_xdf(client, [
        (info_xml("EDA", "EDA", f"{source_id}-eda", [{"label": "EDA", "unit": "uS", "type": "EDA"}],
                  sc.eda_fs, "float32"), "float32", np.arange(eda.size) / sc.eda_fs, eda[:, None]),
        (info_xml("ECG", "ECG", f"{source_id}-ecg", [{"label": "ECG", "unit": "mV", "type": "ECG"}],
                  sc.ecg_fs, "float32"), "float32", np.arange(ecg.size) / sc.ecg_fs, ecg[:, None]),
        (info_xml("PsychoPy", "Markers", f"{source_id}-markers", mk, 0.0, "string"), "string",
         np.array([t for t, _ in marks]), [[x] for _, x in marks]),
    ], samples_per_chunk=1000)  # fmt: skip
    cfg = parse_session({
        "name": "exposure-acceptance",
        "sources": {"eda": {"source_id": f"{source_id}-eda"},
                    "ecg": {"source_id": f"{source_id}-ecg"},
                    "events": {"source_id": f"{source_id}-markers"}},
        "exposure": {"calibration_s": None},
        "recording": {"path": str(tmp_path / "session.xdf")},
    })  # fmt: skip
    with Player(client, wait_for_consumers_s=30.0), Session(cfg, f"{source_id}-s") as session:
        result = session.run(eda.size / sc.eda_fs + 1.0)
    a = analyse_session(result.recording)
    r, x = a.report, a.report["exposure"]
    assert "eeg" not in r["session"]["config"]["sources"] and r["pulses"]["delivered"] == 0
    level_t, _ = a.rec.series("eda_level")
    assert level_t[0] < x["calibration"]["start_t"], "the session started after the rest began"
    lo = x["live_vs_offline"]
    _agree(lo)
    assert lo["exercises"]["live"] == 2 and lo["cues"]["live"] == 6
    assert lo["arousal"]["matched"] == lo["arousal"]["live"] > 400
    assert [e["expectancy_violation"] for e in x["exercises"]] == [70.0, 50.0]
    assert all(e["eda_valid"] and e["hr_valid"] for e in x["exercises"])
    out = write_html_report(tmp_path / "session.html", [a])
    assert {"fig-habituation", "fig-expectancy", "fig-arousal", "fig-hr", "fig-eda"} <= set(
        out["figures"]
    )


def test_markers_on_the_events_stream_only_and_a_clock_going_back(tmp_path):
    """A session without the exposure stage: the markers come from the decision stream's
    stimulus events, nothing live to compare; recorded EDA whose timestamps go back is
    named as unusable instead of crashing the report."""
    from stimloop.loop import catalog
    from stimloop.stream.xdf import info_xml, write_xdf

    prefix = "test-events-only"

    def ev(t, kind, **f):
        return (T0 + t, {"event": "stimulus", "t_event": T0 + t,
                         "text": json.dumps({"kind": kind, **f})})  # fmt: skip

    dec = [ev(5, "exercise_start", label="one"), ev(6, "cue", code=3), ev(9, "exercise_end"),
           ev(10, "rating", scale="outcome", value=101)]  # fmt: skip
    config = {"name": "events-only", "sources": {"eda": {"source_id": "x"}}}
    t = T0 + np.arange(200) / 10.0
    t[120] = t[100]  # the clock stepped back
    lv = np.column_stack([np.full(200, 5.0), np.zeros(200), np.zeros(200), np.zeros(200)])
    mk = [{"label": "m", "unit": "", "type": "Marker"}]
    cols = [{"label": c, "unit": "", "type": "EDA"} for c in ("scl", "ph", "rate", "flags")]
    write_xdf(tmp_path / "e.xdf", [
        (info_xml("d", "Markers", catalog.get("decisions").source_id(prefix), mk, 0.0, "string",
                  {"session_config": json.dumps(config)}), "string",
         np.array([d[0] for d in dec]), [[json.dumps(d[1])] for d in dec]),
        (info_xml("l", "EDA", catalog.get("eda_level").source_id(prefix), cols, 10.0, "double64"),
         "double64", t, lv),
    ])  # fmt: skip
    a = analyse_session(tmp_path / "e.xdf")
    x = a.report["exposure"]
    assert x["source"] == "events stream" and x["live_vs_offline"] is None
    assert x["markers"]["exercises"] == 1 and x["exercises"] == []
    assert any("cannot be used" in i and "must not decrease" in i for i in x["issues"])
    assert any("outside the allowed 0-100" in r["reason"] for r in x["markers"]["rejected"])
    text = format_report(a.report)
    assert "cannot be used" in text and "marker rejected" in text
