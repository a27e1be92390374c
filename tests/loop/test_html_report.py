"""``stimloop analyze --report``: the HTML report holds every figure of the session, and
every number it shows is the JSON report's."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from html_elements import Page
from report_recordings import hbc_recording

from stimloop.loop.html_report import TextProgress, write_html_report
from stimloop.loop.report import analyse_session, format_report, read_session, session_report
from stimloop.loop.svg import nice_ticks, thin


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=float) == json.dumps(
        b, sort_keys=True, default=float
    )


def _floats(els, key: str) -> list[float]:
    return [float(e[key]) for e in els]


@pytest.fixture(scope="module")
def hbc_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hbc") / "hbc.xdf"
    made = hbc_recording(path, "report-hbc-test")
    return path, made


def test_hbc_report_draws_the_localisation_of_the_json_report(hbc_file, tmp_path):
    path, made = hbc_file
    a = analyse_session(path)
    r = a.report
    h = r["hbc"]
    # The analysis recomputes the localisation from the recorded HR: the one made
    # with the recording (its cycles), to floating point.
    assert h["live_vs_offline_max_rel"] < 1e-9
    assert [s["site"] for s in h["localisation"]["sites"]] == [
        s["site"] for s in made["localisation"]["sites"]
    ]
    out = write_html_report(tmp_path / "r.html", [a])
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert _same(page.json["sessions"][0], r)
    assert {"session", "hbc", "streams", "health", "events"} <= page.ids()
    assert not {"phase-locked", "exposure", "physiology"} & page.ids()  # no EDA; HR is above
    assert set(out["figures"]) == {"fig-hbc-hr", "fig-hbc-intensity"}
    # HR timeline: the trains of the scored cycles, the HR series, the cardiac stop.
    trains = page.find("rect", "span", within="fig-hbc-hr")
    want = sorted(c["onset_s"] for c in h["cycles"] if c["index"] > 0)
    assert sorted(_floats(trains, "data-a")) == want and len(want) == made["fired"]
    (series,) = page.find("path", "series", within="fig-hbc-hr")
    assert int(series["data-n"]) == r["derived"]["heart_hr"]
    (stop,) = page.find("line", "event", within="fig-hbc-hr")
    assert float(stop["data-t"]) == h["stops"][0]["t"] == made["stop_t"]
    # HBC by intensity: one point per scored cycle, the value of the JSON, per site.
    for s in h["localisation"]["sites"]:
        pts = page.find("circle", "point", within="fig-hbc-intensity", data_name=s["site"])
        got = sorted(zip(_floats(pts, "data-x"), _floats(pts, "data-y"), strict=True))
        want = sorted(
            (x, y) for x, y in zip(s["intensities"], s["hbc"], strict=True) if y is not None
        )
        assert got == want and len(got) == 3
    (thr,) = page.find("line", "ref", within="fig-hbc-intensity")
    assert float(thr["data-y"]) == h["threshold"] == 2.0  # the published default (plan)
    # Ranking table in the ranking's order, the chosen target marked, the truth beside.
    rows = page.rows("hbc-ranking")
    assert [row[1] for row in rows] == [s["site"] for s in h["localisation"]["sites"]]
    assert [row[2] for row in rows] == [str(s["n_above"]) for s in h["localisation"]["sites"]]
    assert [row[3] for row in rows] == [f"{s['mean_hbc']:.3f}" for s in h["localisation"]["sites"]]
    best = h["localisation"]["best_site"]
    assert page.find("tr", "chosen") and best in page.text_of["hbc-target"]
    assert made["truth_best_site"] in page.text_of["hbc-truth"]
    assert "floor" in " ".join(c for row in page.rows("hbc-stops") for c in row)


def test_report_json_and_text_name_the_stop_target_and_threshold(hbc_file):
    path, made = hbc_file
    r = session_report(path)
    assert r["hbc"]["stops"][0]["rule"] == "floor" and r["pulses"]["kind"] == "hbc"
    assert r["hbc"]["threshold"] == 2.0 and "exposure" not in r
    text = format_report(r)
    assert "CARDIAC STOP: floor" in text and f"true best site: {made['truth_best_site']}" in text


@pytest.mark.slow
def test_demo_session_report_has_every_figure_and_the_numbers_of_the_json(tmp_path, demo_xdf):
    """The acceptance test of issue 17: the HTML report of a recorded demo session (the
    8 s demo the study and export tests read, tests/loop/conftest.py)."""
    xdf = demo_xdf
    html = tmp_path / "demo.html"
    proc = subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", "analyze", str(xdf), "--report", str(html),
         "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    # The progress bar went to stderr, step by step, to the end.
    bars = [ln for ln in proc.stderr.splitlines() if ln.startswith("[")]
    assert len(bars) >= 5 and bars[-1].startswith("[" + "#" * 30 + "]") and "100 %" in bars[-1]
    assert report["html_report"]["path"] == str(html)
    page = Page(html.read_text(encoding="utf-8"))
    embedded = page.json["sessions"][0]
    assert _same(embedded, {k: v for k, v in report.items() if k != "html_report"})
    assert {"session", "phase-locked", "streams", "health", "events"} <= page.ids()
    figures = {"fig-phase-polar", "fig-refusals", "fig-hr", "fig-eda"}
    assert set(report["html_report"]["figures"]) == figures
    assert len(page.find("svg")) == len(figures)
    # Polar histogram: the wedges are the JSON's counts, they sum to the pulses delivered
    # (each with its recorded true phase), the target and the mean direction are drawn.
    p = report["pulses"]
    hist = p["phase_histogram"]
    wedges = page.find("path", "wedge", within="fig-phase-polar")
    assert [int(w["data-count"]) for w in wedges] == hist["counts"]
    assert sum(hist["counts"]) == p["delivered"] == hist["n"] == hist["n_true"] > 0
    assert _floats(wedges, "data-lo-deg") == hist["edges_deg"][:-1]
    (target,) = page.find("line", "target", within="fig-phase-polar")
    assert float(target["data-deg"]) == p["target_phase_deg"]
    (mean,) = page.find("line", "mean", within="fig-phase-polar")
    assert (
        float(mean["data-deg"]) == hist["mean_deg"] and float(mean["data-r"]) == hist["resultant"]
    )
    # The histogram is the recording's true phases, binned independently here.
    rec = read_session(xdf)
    deg = np.degrees(rec.pulse_phase_true)
    assert (
        np.histogram((deg + 180) % 360 - 180, bins=18, range=(-180, 180))[0].tolist()
        == hist["counts"]
    )
    # Refusals by reason next to the pulses delivered.
    bars = page.find("rect", "bar", within="fig-refusals")
    got = {b["data-category"]: float(b["data-value"]) for b in bars}
    assert got == {"delivered": p["delivered"], **p["refused_by_reason"]}
    # HR and EDA: the whole recorded series, with the report's figures in the captions.
    (hr,) = page.find("path", "series", within="fig-hr")
    assert int(hr["data-n"]) == report["derived"]["heart_hr"]
    assert len(page.find("line", "event", within="fig-hr")) == p["delivered"]
    eda = page.find("path", "series", within="fig-eda")
    assert [int(e["data-n"]) for e in eda] == [report["derived"]["eda_level"]] * 2
    assert len(page.find("line", "event", within="fig-eda")) == report["eda"]["scr_count"]
    assert f"mean {report['heart']['hr_mean_bpm']:.1f} bpm" in html.read_text(encoding="utf-8")
    # Streams table: one row per recorded stream, its sample count.
    rows = page.rows("streams-table")
    assert {r[0]: int(r[2]) for r in rows} == {
        k: v["samples"] for k, v in report["streams"].items()
    }
    assert "<script src" not in html.read_text() and "http://" not in html.read_text().replace(
        "http://www.w3.org/2000/svg", ""
    )


def test_progress_bar_on_a_terminal_redraws_one_line_and_ends_it():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    bar = TextProgress(s, width=10)
    bar("reading", 0.0)
    bar("exposure", 0.5)
    bar("done", 1.0)
    text = s.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "[#####-----]  50 %  exposure" in text and "[##########] 100 %  done" in text


def test_nice_ticks_and_thinning_keep_what_a_reader_needs():
    assert nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(-0.37, 0.81, 6) == pytest.approx([-0.2, 0.0, 0.2, 0.4, 0.6, 0.8])
    # Thinning keeps every extreme of a long series and its NaN breaks.
    x = np.arange(100_000) / 10.0
    y = np.sin(x / 7.0)
    y[5000:5100] = np.nan
    y[77_777] = 9.0
    tx, ty = thin(x, y, 500)
    assert tx.size <= 1500 and np.nanmax(ty) == 9.0 and np.isnan(ty).any()
    assert np.all(np.diff(tx) > 0) and math.isclose(np.nanmin(ty), np.nanmin(y))


def test_report_path_is_checked_before_the_analysis(hbc_file, tmp_path, capsys):
    from stimloop.loop.cli import main

    path, _ = hbc_file
    assert main(["analyze", str(path), "--report", str(tmp_path / "no" / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "reading" not in err  # refused before any work
    assert main(["analyze", str(path), "--report", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
