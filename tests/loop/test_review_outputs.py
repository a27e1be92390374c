"""A suspicious user's checks of ``stimloop analyze`` and ``stimloop export``: hostile
inputs and outputs, and figures printed against the file they come from.

The recordings are real XDF files written here (``stream.xdf.write_xdf``): a small
phase-locked session with EEG, its decisions (pulses, a refusal, rate-limited health
events), the heart stage's beats (one of them an artifact) and its 4 Hz HR series. The
commands run through the CLI's ``main``, as a user's shell runs them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from stimloop.dsp.heart import BEAT_ARTIFACT
from stimloop.loop import catalog
from stimloop.loop.cli import main
from stimloop.loop.demo import format_summary
from stimloop.loop.report import session_report
from stimloop.stream.xdf import info_xml, read_xdf, write_xdf

PREFIX = "review-session"
T0 = 5000.0
EEG_FS = 250.0


def _events() -> list[tuple[float, dict]]:
    fired = [T0 + 2.0, T0 + 4.5]
    rows = [(T0 + 0.1, {"event": "session_start"})]
    rows += [
        (T0 + 1.0, {"event": "stale", "role": "eeg", "age_s": 0.03, "repeats": 0}),
        (T0 + 1.1, {"event": "recovered", "role": "eeg", "index": 275, "repeats": 0}),
        (T0 + 3.0, {"event": "stale", "role": "eeg", "age_s": 0.03, "repeats": 3}),
        (T0 + 3.1, {"event": "recovered", "role": "eeg", "index": 775, "repeats": 3}),
        # What the rate limit still held when the session ended (Engine._flush_held_back).
        (T0 + 6.9, {"event": "held_back", "of": "stale", "role": "eeg", "count": 2}),
    ]
    for t in fired:
        rows += [
            (t - 0.02, {"event": "fired", "t_trigger": t, "target_phase_rad": math.pi}),
            (t + 0.1, {"event": "pulse_phase", "t_trigger": t, "phase_rad": 3.0}),
        ]
    rows.append((T0 + 6.0, {"event": "refused", "error": "[late] 2 ms late; allowed <= 1 ms"}))
    return sorted(rows, key=lambda r: r[0])


def write_session(
    path: Path,
    *,
    hr_nan: bool = False,
    decision_rows: list | None = None,
    config_text: str | None = None,
    beat_text: dict[int, str] | None = None,
) -> Path:
    """A small phase-locked session recording (see the module docstring)."""
    eeg_id = f"{PREFIX}-in-eeg"
    config = {
        "name": "review",
        "sources": {"eeg": {"source_id": eeg_id, "rate_hz": EEG_FS}},
        "protocol": {
            "kind": "phase_locked",
            "target_phase_deg": 180.0,
            "control": "none",
            "intensity_pct": 50.0,
            "site": "C3",
        },
        "stimulator": {"driver": "simulated", "safety": {"max_intensity_pct": 80}},
    }
    events = _events()
    rows = decision_rows if decision_rows is not None else [[json.dumps(e)] for _, e in events]
    dec = catalog.get("decisions")
    desc = {"session_config": config_text or json.dumps(config), "truth_source_ids": "{}"}
    n = int(8 * EEG_FS)
    eeg_t = T0 + np.arange(n) / EEG_FS
    eeg = np.random.default_rng(1).standard_normal((n, 2))
    beats_t = T0 + np.array([0.5, 1.35, 2.2, 2.3, 3.05, 3.9])
    beats = [
        {
            "beat_class": BEAT_ARTIFACT if k == 3 else 0,
            "hr_bpm": 70.0,
            "confirmed_t": float(t) + 0.1,
            "flags": 0,
        }
        for k, t in enumerate(beats_t)
    ]
    beat_rows = [[(beat_text or {}).get(k, json.dumps(b))] for k, b in enumerate(beats)]
    hr_t = T0 + np.arange(16) / 4.0
    hr = np.column_stack([np.full(16, np.nan if hr_nan else 70.0), np.full((16, 4), 0.0)])
    hr_entry, beat_entry = catalog.get("heart_hr"), catalog.get("heart_beats")

    def header(entry, rate: float, **extra: str) -> str:
        chans = [{"label": c.label, "unit": c.unit, "type": entry.type} for c in entry.channels]
        return info_xml(
            entry.name,
            entry.type,
            entry.source_id(PREFIX),
            chans,
            rate,
            "string" if entry.is_marker else "double64",
            extra,
        )

    eeg_chans = [{"label": c, "unit": "µV", "type": "EEG"} for c in ("C3", "C4")]
    write_xdf(
        path,
        [
            (info_xml("EEG", "EEG", eeg_id, eeg_chans, EEG_FS, "float32"), "float32", eeg_t, eeg),
            (
                header(dec, 0.0, **desc),
                "string",
                np.array([t for t, _ in events][: len(rows)]),
                rows,
            ),
            (header(beat_entry, 0.0), "string", beats_t, beat_rows),
            (header(hr_entry, 4.0), "double64", hr_t, hr),
        ],
    )
    return path


@pytest.fixture
def session_xdf(tmp_path) -> Path:
    return write_session(tmp_path / "my session ü.xdf")


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------ outputs that exist
def test_report_refuses_to_overwrite_the_recording_it_reads(session_xdf, capsys):
    before = session_xdf.read_bytes()
    rc, _, err = _run(capsys, "analyze", str(session_xdf), "--report", str(session_xdf))
    assert rc == 2
    assert "--report" in err and "recording" in err
    assert session_xdf.read_bytes() == before


def test_report_refuses_a_link_to_a_file_that_is_not_a_report(session_xdf, tmp_path, capsys):
    other = tmp_path / "notes.txt"
    other.write_text("a week of lab notes\n")
    link = tmp_path / "report.html"
    link.symlink_to(other)
    rc, _, err = _run(capsys, "analyze", str(session_xdf), "--report", str(link))
    assert rc == 2 and "not a stimloop HTML report" in err
    assert other.read_text() == "a week of lab notes\n"


def test_report_replaces_an_earlier_report(session_xdf, tmp_path, capsys):
    page = tmp_path / "r.html"
    assert _run(capsys, "analyze", str(session_xdf), "--report", str(page))[0] == 0
    first = page.read_text()
    page.write_text(first.replace("<h1>", "<h1>OLD "))
    assert _run(capsys, "analyze", str(session_xdf), "--report", str(page))[0] == 0
    assert page.read_text() == first


def test_plot_refuses_to_overwrite_the_recording_it_reads(session_xdf, capsys):
    before = session_xdf.read_bytes()
    rc, _, err = _run(capsys, "analyze", str(session_xdf), "--plot", str(session_xdf))
    assert rc == 2 and "--plot" in err
    assert session_xdf.read_bytes() == before


# ------------------------------------------------------------------ damaged decisions
@pytest.mark.parametrize("bad", ["{not json", "[1, 2]"])
def test_a_decision_that_is_not_a_json_object_is_named(tmp_path, capsys, bad):
    rows = [[json.dumps(e)] for _, e in _events()]
    rows[2] = [bad]
    path = write_session(tmp_path / "bad.xdf", decision_rows=rows)
    for argv in (
        ["analyze", str(path)],
        [
            "export",
            str(path),
            "--bids",
            str(tmp_path / "bids"),
            "--subject",
            "01",
            "--session",
            "1",
            "--task",
            "tms",
        ],
    ):
        rc, _, err = _run(capsys, *argv)
        assert rc == 2, err
        assert "decision 2" in err and "JSON object" in err


def test_a_config_that_is_not_json_is_named(tmp_path, capsys):
    path = write_session(tmp_path / "badcfg.xdf", config_text="{oops")
    rc, _, err = _run(capsys, "analyze", str(path))
    assert rc == 2 and "session_config" in err


# ------------------------------------------------------------------ export arguments
def test_export_into_a_file_is_refused_and_the_file_kept(session_xdf, tmp_path, capsys):
    target = tmp_path / "bids"
    target.write_text("not a folder")
    rc, _, err = _run(
        capsys,
        "export",
        str(session_xdf),
        "--bids",
        str(target),
        "--subject",
        "01",
        "--session",
        "1",
        "--task",
        "tms",
    )
    assert rc == 2 and "not a folder" in err
    assert target.read_text() == "not a folder"


def test_export_negative_run_is_refused(session_xdf, tmp_path, capsys):
    rc, _, err = _run(
        capsys,
        "export",
        str(session_xdf),
        "--bids",
        str(tmp_path / "b"),
        "--subject",
        "01",
        "--session",
        "1",
        "--task",
        "tms",
        "--run",
        "-3",
    )
    assert rc == 2 and "run" in err and "-3" in err
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------ figures vs the file
def test_health_event_counts_include_the_rate_limited_repeats(session_xdf):
    report = session_report(session_xdf)
    f = read_xdf(session_xdf)
    dec = next(s for s in f.streams if s.info.find("desc/session_config") is not None)
    rows = [json.loads(r[0]) for r in dec.time_series]
    stale = [e for e in rows if e["event"] == "stale"]
    held = [e["count"] for e in rows if e["event"] == "held_back" and e["of"] == "stale"]
    assert held, "the recording must hold a held_back marker for this test"
    assert report["events"]["stale"] == sum(1 + e["repeats"] for e in stale) + sum(held)
    assert "held_back" not in report["events"]  # a count of other events, not an event


def test_heart_beats_leave_out_artifacts(session_xdf, capsys):
    report = session_report(session_xdf)
    f = read_xdf(session_xdf)
    beats = next(s for s in f.streams if s.text("source_id").endswith("heart-beats"))
    classes = [json.loads(r[0])["beat_class"] for r in beats.time_series]
    assert report["heart"]["beats"] == sum(c != BEAT_ARTIFACT for c in classes)
    _, out, _ = _run(capsys, "analyze", str(session_xdf))
    assert f"heart rate: {report['heart']['beats']} beats" in out


def test_heart_line_is_printed_when_no_hr_is_valid(tmp_path, capsys):
    path = write_session(tmp_path / "hrnan.xdf", hr_nan=True)
    rc, out, _ = _run(capsys, "analyze", str(path))
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("heart rate:"))
    assert "valid 0 %" in line and "nan" not in line.lower()


def test_json_output_is_strict_json(tmp_path, capsys):
    # No pulses: the phase statistics have n = 0 and no mean.
    rows = [[json.dumps(e)] for _, e in _events() if e["event"] not in ("fired", "pulse_phase")]
    path = write_session(tmp_path / "nopulse.xdf", decision_rows=rows)
    rc, out, _ = _run(capsys, "analyze", str(path), "--json")
    assert rc == 0

    def refuse(token: str):
        raise AssertionError(f"{token} in --json output")

    report = json.loads(out, parse_constant=refuse)
    assert report["pulses"]["estimate_error_at_fire"] == {
        "n": 0,
        "mean_deg": None,
        "sd_deg": None,
        "rayleigh_p": None,
    }


def test_demo_summary_quotes_the_path_it_suggests(session_xdf):
    summary = {**session_report(session_xdf), "duration_s": 8.0, "recordings": [str(session_xdf)]}
    line = next(ln for ln in format_summary(summary).splitlines() if ln.startswith("report:"))
    assert f"'{session_xdf}'" in line


def test_phase_figures_without_pulses_print_no_nan(tmp_path, capsys):
    rows = [[json.dumps(e)] for _, e in _events() if e["event"] not in ("fired", "pulse_phase")]
    path = write_session(tmp_path / "nopulse.xdf", decision_rows=rows)
    rc, out, _ = _run(capsys, "analyze", str(path))
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("target 180°"))
    assert "nan" not in line.lower() and "(n = 0)" in line


def test_a_fired_pulse_without_its_trigger_time_is_named(tmp_path, capsys):
    rows = [[json.dumps(e)] for _, e in _events()]
    k = next(i for i, (_, e) in enumerate(_events()) if e["event"] == "fired")
    rows[k] = [json.dumps({"event": "fired", "t_trig": T0 + 2.0})]
    path = write_session(tmp_path / "notrigger.xdf", decision_rows=rows)
    rc, _, err = _run(capsys, "analyze", str(path))
    assert rc == 2 and f"decision {k}" in err and "t_trigger" in err


def test_a_beat_that_is_not_a_json_object_is_named(tmp_path, capsys):
    path = write_session(tmp_path / "badbeat.xdf", beat_text={2: '{"beat_class": 0,'})
    rc, _, err = _run(capsys, "analyze", str(path))
    assert rc == 2 and "beat 2" in err and "JSON object" in err


@pytest.mark.parametrize(
    "protocol", [5, {"kind": "phase_locked", "control": "none"}, {"kind": "phase_locked"}]
)
def test_a_config_without_the_phase_target_is_named(tmp_path, capsys, protocol):
    config = {"name": "review", "sources": {}, "protocol": protocol}
    path = write_session(tmp_path / "noproto.xdf", config_text=json.dumps(config))
    rc, _, err = _run(capsys, "analyze", str(path))
    assert rc == 2 and "protocol" in err


@pytest.mark.parametrize(
    ("field", "value"),
    [("event", ["fired"]), ("t_trigger", "soon"), ("error", 5.0), ("repeats", {"n": 2})],
)
def test_a_decision_field_of_the_wrong_type_is_named(tmp_path, capsys, field, value):
    events = [dict(e) for _, e in _events()]
    k = next(i for i, e in enumerate(events) if field in e)
    events[k][field] = value
    path = write_session(tmp_path / "typed.xdf", decision_rows=[[json.dumps(e)] for e in events])
    rc, _, err = _run(capsys, "analyze", str(path))
    assert rc == 2 and f"decision {k}" in err and field in err


def test_a_refusal_without_its_error_text_is_counted(tmp_path, capsys):
    events = [dict(e) for _, e in _events()]
    for e in events:
        if e["event"] == "refused":
            e["error"] = None
    path = write_session(tmp_path / "noerr.xdf", decision_rows=[[json.dumps(e)] for e in events])
    report = session_report(path)
    assert report["pulses"]["refused"] == 1 and report["pulses"]["refused_by_reason"] == {"?": 1}


@pytest.mark.parametrize("where", ["no-folder", "a-folder", "the-report"])
def test_plot_path_is_checked_before_the_analysis(session_xdf, tmp_path, capsys, where):
    plot = {"no-folder": tmp_path / "none" / "f.png", "a-folder": tmp_path,
            "the-report": tmp_path / "r.html"}[where]  # fmt: skip
    rc, _, err = _run(
        capsys,
        "analyze",
        str(session_xdf),
        "--plot",
        str(plot),
        "--report",
        str(tmp_path / "r.html"),
    )
    assert rc == 2 and "--plot" in err and "gui extra" not in err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("option", ["--report", "--plot"])
def test_a_dangling_link_as_output_is_refused(session_xdf, tmp_path, capsys, option):
    target = tmp_path / "elsewhere" / "planted.txt"
    target.parent.mkdir()
    link = tmp_path / "out.file"
    link.symlink_to(target)
    rc, _, err = _run(capsys, "analyze", str(session_xdf), option, str(link))
    assert rc == 2 and option in err and "link" in err
    assert not target.exists()


def test_study_outputs_never_write_through_a_planted_link(session_xdf, tmp_path, capsys):
    study = tmp_path / "in" / "sub-01" / "ses-1"
    study.mkdir(parents=True)
    (study / "rec.xdf").write_bytes(session_xdf.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    planted = ["study.html", "figures.json", "errors.log", "session.csv.tmp"]
    for k, name in enumerate(planted):
        (tmp_path / f"victim{k}.txt").write_text("precious\n")
        (out / name).symlink_to(tmp_path / f"victim{k}.txt")
    argv = ["study", "analyze", str(tmp_path / "in"), "-o", str(out), "--workers", "1"]
    rc = main([*argv, "--no-progress"])
    capsys.readouterr()
    assert rc == 0
    for k, name in enumerate(planted):
        assert (tmp_path / f"victim{k}.txt").read_text() == "precious\n", name
        assert not (out / name.removesuffix(".tmp")).is_symlink()
