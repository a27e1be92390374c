"""stimloop study analyze: a study of recorded demo sessions on a 2-worker Dask cluster,
checked against the per-file report, with a corrupt file, and grown by one session."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from stimloop.dsp.circular import phase_error_stats
from stimloop.loop import exposure_markers as xm
from stimloop.loop.report import read_session, session_report
from stimloop.loop.study import StudyError, find_sessions, map_jobs, run_study
from stimloop.loop.study_rows import COLUMNS, KEY_COLUMNS
from stimloop.stream.xdf import read_xdf

PARTICIPANTS = ("01", "02", "03", "04")
SESSIONS = ("1", "2", "3")


def _leaves(obj, prefix):
    """The report's figures as flat cells, written independently of study_rows.flatten."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}_{k}")
    elif isinstance(obj, list):
        yield prefix, json.dumps(obj)
    else:
        yield prefix, None if isinstance(obj, float) and not math.isfinite(obj) else obj


def _rich(demo: Path, dst: Path, rewrite_with) -> None:
    """The demo with an exposure exercise added (markers as PsychoPy would send them), so
    its rows appear."""
    f = read_xdf(demo)
    t = [float(s.synchronized_stamps()[0]) for s in f.streams if len(s.time_stamps)]
    t0 = min(t)
    markers = [
        (t0 + 0.5, xm.rating("expectancy", 70)),
        (t0 + 1.0, xm.exercise_start("lift")),
        (t0 + 3.0, xm.cue("doors close", 1)),
        (t0 + 6.0, xm.exercise_end("lift")),
        (t0 + 6.5, xm.rating("outcome", 20)),
    ]
    rewrite_with(demo, dst, decisions=[], markers=markers)


@pytest.fixture(scope="module")
def study(demo_xdf, tmp_path_factory, rewrite_recording):
    """12 sessions of 4 participants (some cut short, so they differ), one corrupt file
    and one session with exercises and HBC cycles; analysed on 2 local workers."""
    root = tmp_path_factory.mktemp("study")
    data = demo_xdf.read_bytes()
    for i, p in enumerate(PARTICIPANTS):
        for j, s in enumerate(SESSIONS):
            d = root / f"sub-{p}" / f"ses-{s}"
            d.mkdir(parents=True)
            # Cut after the header: a damaged recording, read up to the damage.
            cut = len(data) if (i + j) % 3 == 0 else int(len(data) * (0.55 + 0.1 * j))
            (d / f"sub-{p}_ses-{s}_task-demo.xdf").write_bytes(data[:cut])
    bad = root / "sub-05" / "ses-1"
    bad.mkdir(parents=True)
    (bad / "sub-05_ses-1_task-demo.xdf").write_bytes(b"not an xdf recording\n" + data[100:5000])
    rich = root / "sub-06" / "ses-1"
    rich.mkdir(parents=True)
    _rich(demo_xdf, rich / "sub-06_ses-1_task-demo.xdf", rewrite_recording)
    out = tmp_path_factory.mktemp("results")
    result = run_study([str(root)], out, workers=2)
    return root, out, result


def _table(out: Path, level: str) -> list[dict]:
    return pq.read_table(out / f"{level}.parquet").to_pylist()


@pytest.mark.slow
def test_tables_equal_the_per_file_report(study):
    root, out, result = study
    sessions = {r["file"]: r for r in _table(out, "session")}
    assert len(sessions) == len(PARTICIPANTS) * len(SESSIONS) + 2
    assert sorted(result.analysed) == sorted(sessions)
    pulses = _table(out, "pulse")
    for f, row in sessions.items():
        if f.startswith("sub-05"):
            continue
        path = root / f
        rec = read_session(path)
        report = session_report(rec)
        assert row["participant"] == f.split("/")[0][4:] and row["session"] == f.split("/")[1][4:]
        assert row["status"] == ("damaged" if rec.damage else "ok")
        assert row["damage"] == rec.damage
        pulses_section = dict(report["pulses"])
        assert json.loads(row["pulses_refused_by_reason"]) == pulses_section.pop(
            "refused_by_reason"
        )
        checked = 0
        for section in ("heart", "eda", "health", "engine", "truth"):
            for k, v in _leaves(report.get(section) or {}, section):
                assert row[k] == v, (f, k)
                checked += 1
        for k, v in _leaves(pulses_section, "pulses"):
            assert row[k] == v, (f, k)
            checked += 1
        assert checked > 50
        mine = [p for p in pulses if p["file"] == f]
        fired = [p for p in mine if p["outcome"] == "fired"]
        assert len(fired) == report["pulses"]["delivered"]
        assert len(mine) - len(fired) == report["pulses"]["refused"]
        np.testing.assert_array_equal([p["t"] for p in fired], rec.pulse_t)
        est = [np.nan if p["phase_est_rad"] is None else p["phase_est_rad"] for p in fired]
        np.testing.assert_array_equal(est, rec.pulse_phase_est)
        errs = np.radians([p["error_est_deg"] for p in fired if p["error_est_deg"] is not None])
        stats = phase_error_stats(errs, 0.0)
        assert stats["n"] == report["pulses"]["estimate_error_at_fire"]["n"]
        if stats["n"]:
            ref = report["pulses"]["estimate_error_at_fire"]["mean_deg"]
            assert abs(stats["mean_deg"] - ref) < 1e-9
    # The copies differ: cut recordings have fewer samples than whole ones.
    assert len({r["health_eeg_samples"] for r in sessions.values() if r["status"] != "error"}) > 1


@pytest.mark.slow
def test_a_corrupt_file_is_a_row_with_its_error_and_the_rest_complete(study):
    _, out, result = study
    sessions = {r["file"]: r for r in _table(out, "session")}
    bad = "sub-05/ses-1/sub-05_ses-1_task-demo.xdf"
    assert sessions[bad]["status"] == "error"
    assert "not an XDF file" in sessions[bad]["error"]
    assert result.failed == {bad: sessions[bad]["error"]}
    assert all(r["status"] in ("ok", "damaged") for f, r in sessions.items() if f != bad)
    assert "not an XDF file" in (out / "errors.log").read_text()


@pytest.mark.slow
def test_csv_holds_the_same_values_as_parquet(study):
    _, out, _ = study
    for level in ("session", "pulse", "exercise", "site", "cycle"):
        t = pq.read_table(out / f"{level}.parquet")
        # Empty cells are nulls (docs/study.md): read them so.
        opts = pcsv.ConvertOptions(column_types=t.schema, strings_can_be_null=True)
        csv = pcsv.read_csv(out / f"{level}.csv", convert_options=opts)
        assert csv.column_names == t.column_names
        assert csv.to_pylist() == t.to_pylist(), level
        if level in COLUMNS:  # declared columns, even while empty
            assert t.column_names == [*KEY_COLUMNS, *(c for c, _ in COLUMNS[level])]


@pytest.mark.slow
def test_exercise_rows_appear_when_the_recording_holds_them(study):
    _, out, _ = study
    rich = "sub-06/ses-1/sub-06_ses-1_task-demo.xdf"
    ex = [r for r in _table(out, "exercise") if r["file"] == rich]
    assert len(ex) == 1 and ex[0]["label"] == "lift" and ex[0]["ended"] is True
    assert ex[0]["expectancy"] == 70.0 and ex[0]["outcome"] == 20.0
    assert ex[0]["expectancy_violation"] == 50.0
    assert ex[0]["duration_s"] == pytest.approx(5.0) and ex[0]["n_cues"] in (0, 1)
    assert _table(out, "site") == [] and _table(out, "cycle") == []  # no localisation
    others = [r for r in _table(out, "exercise") if r["file"] != rich]
    assert others == []


@pytest.mark.slow
def test_figures_agree_with_the_tables(study):
    _, out, result = study
    numbers = json.loads((out / "figures.json").read_text())
    assert numbers == json.loads(json.dumps(result.figures, default=float))
    pulses = [p for p in _table(out, "pulse") if p["outcome"] == "fired"]
    for who, s in numbers["phase_by_participant"].items():
        errs = [p["error_true_deg"] if p["error_true_deg"] is not None else p["error_est_deg"]
                for p in pulses if p["participant"] == who]  # fmt: skip
        ref = phase_error_stats(np.radians(errs), 0.0)
        assert s["n"] == ref["n"] and s["mean_deg"] == pytest.approx(ref["mean_deg"], abs=1e-9)
    html = (out / "study.html").read_text()
    assert html.count("<svg") == 3 and "not an XDF file" in html


@pytest.mark.slow
def test_rerun_analyses_only_the_added_session(study, demo_xdf, tmp_path):
    root, out, _ = study
    # A copy of the study (its kept results too), so the other tests' study stays as is.
    root2, out2 = tmp_path / "study", tmp_path / "results"
    shutil.copytree(root, root2)
    shutil.copytree(out, out2)
    new = root2 / "sub-07" / "ses-1" / "sub-07_ses-1_task-demo.xdf"
    new.parent.mkdir(parents=True)
    shutil.copy(demo_xdf, new)
    result = run_study([str(root2)], out2, workers=2)
    assert result.analysed == ["sub-07/ses-1/sub-07_ses-1_task-demo.xdf"]
    assert len(result.reused) == len(PARTICIPANTS) * len(SESSIONS) + 2
    rows = {r["file"]: r for r in _table(out2, "session")}
    assert rows["sub-07/ses-1/sub-07_ses-1_task-demo.xdf"]["participant"] == "07"
    # The kept rows are the first run's, unchanged.
    first = {r["file"]: r for r in _table(out, "session")}
    for f, r in first.items():
        assert rows[f] == r
    # Through the command line: nothing new, nothing analysed; the summary says so.
    cli = subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", "study", "analyze", str(root2), "-o",
         str(out2), "--no-progress"],
        capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert f"study: {len(rows)} recordings, 0 analysed, {len(rows)} unchanged" in cli.stdout
    assert "failed: sub-05/ses-1/sub-05_ses-1_task-demo.xdf: XDFError" in cli.stdout


def test_participant_and_session_come_from_the_path(tmp_path):
    for rel in ("sub-01/ses-pre/a.xdf", "sub-02_ses-3_task-x.xdf", "sub-03/sub-04_x.xdf",
                "lab/P7/visit2/rec.xdf", "loose.xdf"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"XDF:")
    found = {s.file: s for s in find_sessions([str(tmp_path)])}
    assert (found["sub-01/ses-pre/a.xdf"].participant, found["sub-01/ses-pre/a.xdf"].session) == (
        "01", "pre")  # fmt: skip
    assert (found["sub-02_ses-3_task-x.xdf"].participant,
            found["sub-02_ses-3_task-x.xdf"].session) == ("02", "3")  # fmt: skip
    assert "more than one participant" in found["sub-03/sub-04_x.xdf"].identity_error
    assert found["loose.xdf"].participant == "n/a" and found["loose.xdf"].identity_error is None
    pat = find_sessions([str(tmp_path / "lab" / "**" / "*.xdf")],
                        r"(?P<participant>P\d+)/visit(?P<session>\d+)")  # fmt: skip
    assert [(s.file, s.participant, s.session) for s in pat] == [("P7/visit2/rec.xdf", "P7", "2")]
    with pytest.raises(StudyError, match="no named group 'participant'"):
        find_sessions([str(tmp_path)], r"(?P<who>\d+)")
    with pytest.raises(StudyError, match="not a regular expression"):
        find_sessions([str(tmp_path)], r"(unclosed")
    with pytest.raises(StudyError, match="no recordings found"):
        find_sessions([str(tmp_path / "nothing-here" / "*.xdf")])


def _square(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative input {x}")
    return x * x


def test_map_jobs_keeps_order_and_raises_a_jobs_error():
    from stimloop.loop.cluster import open_client

    with open_client(workers=2) as client:
        assert map_jobs(_square, list(range(7)), client=client) == [x * x for x in range(7)]
        assert map_jobs(_square, [], client=client) == []
        with pytest.raises(ValueError, match="negative input -3"):
            map_jobs(_square, [1, -3, 2], client=client)


def test_hbc_rows_are_the_localisation_analyze_reports(tmp_path):
    """A localisation recording as the session writes it (plan, site starts and cycles
    on its ``hbc`` stream, the heart stage's 4 Hz HR), from the virtual subject: the
    site and cycle rows are exactly ``dsp.hbc.localise`` of that HR, the figures
    ``analyze`` reports, and the session row names its choice."""
    from report_recordings import hbc_recording

    from stimloop.loop.study_rows import session_tables

    path = tmp_path / "hbc.xdf"
    made = hbc_recording(path, "P", sites=("F3", "FC3", "F5"), intensities=(60.0, 80.0, 100.0))
    rec = read_session(path)
    tables = session_tables(rec, {"file": "hbc.xdf", "participant": "01", "session": "1"})
    loc = made["localisation"]
    assert [s["site"] for s in tables["site"]] == [s["site"] for s in loc["sites"]]
    for row, s in zip(tables["site"], loc["sites"], strict=True):
        assert row["mean_hbc"] == s["mean_hbc"] and row["n_above"] == s["n_above"]
        assert row["passes"] == s["passes"] and row["best"] == (s["site"] == loc["best_site"])
    assert [c["hbc"] for c in tables["cycle"]] == [
        None if not math.isfinite(v) else v for v in made["metrics"]["hbc"].tolist()
    ]
    assert tables["session"][0]["hbc_best_site"] == loc["best_site"]
    assert tables["session"][0]["hbc_target_found"] == loc["target_found"]
    assert session_report(rec)["hbc"]["localisation"] == loc
    # trains are pulse rows too, without a target phase (an empty cell, not NaN)
    assert len(tables["pulse"]) == made["fired"]
    assert all(r["target_phase_rad"] is None for r in tables["pulse"])
