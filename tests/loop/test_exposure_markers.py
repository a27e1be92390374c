"""Exposure markers: every bad input named, builders and parser agree, exercises assembled."""

from __future__ import annotations

import json
import math

import pytest

from stimloop.loop import exposure_markers as mk
from stimloop.loop.exposure_markers import ExposureMarkerError, parse_exercises, parse_marker


def session() -> list[tuple[float, str]]:
    """A well-formed session: calibration, two exercises with ratings, cues and notes."""
    return [
        (1.0, mk.calibration_start()),
        (100.0, mk.calibration_end()),
        (110.0, mk.rating("expectancy", 80)),
        (112.0, mk.rating("suds", 30, "start")),
        (120.0, mk.exercise_start("lift, 3rd floor")),
        (140.0, mk.cue("doors close", code=1)),
        (150.0, mk.rating("suds", 70, "peak")),
        (200.0, mk.exercise_end("lift, 3rd floor")),
        (203.0, mk.rating("suds", 20, "end")),
        (210.0, mk.rating("outcome", 10)),
        (220.0, mk.learned("The doors opened again.\nI coped.")),
        (300.0, mk.rating("expectancy", 60)),
        (310.0, mk.exercise_start("lift, 5th floor")),
        (311.0, mk.rating("suds", 40, "start")),
        (330.0, mk.cue("alarm sound")),
        (380.0, mk.exercise_end()),
        (390.0, mk.rating("outcome", 5)),
    ]


# ------------------------------------------------------------------ builders
def test_builders_emit_compact_json_with_the_schema():
    obj = json.loads(mk.rating("suds", 42.5, "peak"))
    assert obj == {
        "schema": mk.SCHEMA, "kind": "rating", "scale": "suds", "value": 42.5, "moment": "peak"
    }  # fmt: skip
    assert json.loads(mk.cue("x", code=3))["code"] == 3
    assert json.loads(mk.exercise_end())["kind"] == "exercise_end"


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: mk.rating("suds", 101, "peak"), r"101 is outside the allowed 0-100"),
        (lambda: mk.rating("outcome", -0.5), r"-0.5 is outside the allowed 0-100"),
        (lambda: mk.rating("expectancy", math.nan), r"nan is outside"),
        (lambda: mk.rating("expectancy", math.inf), r"inf is outside"),
        (lambda: mk.rating("expectancy", True), r"must be a number 0-100, got true"),
        (lambda: mk.rating("expectancy", "seventy"), r"got the string 'seventy'"),
        (lambda: mk.rating("mood", 50), r"scale 'mood' is unknown; expected one of"),
        (lambda: mk.rating("suds", 50), r"SUDS rating needs 'moment'"),
        (lambda: mk.rating("suds", 50, "middle"), r"moment 'middle' is unknown"),
        (lambda: mk.rating("outcome", 50, "end"), r"'moment' applies to SUDS ratings only"),
        (lambda: mk.exercise_start(""), r"label is empty; expected 1-200 characters"),
        (lambda: mk.exercise_start("   "), r"label is empty"),
        (lambda: mk.exercise_start("x" * 201), r"201 characters long; at most 200"),
        (lambda: mk.exercise_start(None), r"label must be a string, got NoneType"),
        (lambda: mk.exercise_start("a\x00b"), r"U\+0000 at position 1"),
        (lambda: mk.exercise_start("a\x1b[31mred"), r"U\+001B at position 1"),
        (lambda: mk.exercise_start("invoice\u202egnp.exe"), r"U\+202E at position 7"),
        (lambda: mk.learned("x" * 2001), r"2001 characters long; at most 2000"),
        (lambda: mk.learned("ok\ud800"), r"U\+D800 at position 2"),
        (lambda: mk.learned("bad\ufffe"), r"U\+FFFE"),
        (lambda: mk.cue(code=2.5), r"cue code must be an integer, got 2.5"),
        (lambda: mk.cue(code=2**40), r"outside the 32-bit range"),
        (lambda: mk.cue(code=True), r"cue code must be an integer, got true"),
    ],
)
def test_builders_refuse_bad_input_with_a_clear_message(build, match):
    with pytest.raises(ExposureMarkerError, match=match):
        build()


def test_builders_accept_unicode_text_and_keep_it():
    text = "Ich habe gelernt: 😊 das ging\tgut\nzweite Zeile, 日本語, العربية"
    assert parse_marker(mk.learned(text)).text == text
    assert parse_marker(mk.exercise_start("Brücke 🌉")).label == "Brücke 🌉"


# ------------------------------------------------------------------ parsing one marker
@pytest.mark.parametrize(
    "text, match",
    [
        ('{"kind": "jump"}', r"kind 'jump' is unknown; expected one of \['calibration_start'"),
        ('{"label": "x"}', r"has no 'kind'"),
        ('{"kind": 5}', r"kind must be one of"),
        ('{"kind": "rating", "scale": "suds", "value": 120, "moment": "end"}', r"120 is outside"),
        ('{"kind": "rating", "scale": "suds", "moment": "end"}', r"needs 'value'"),
        ('{"kind": "rating", "value": 5}', r"needs 'scale'"),
        ('{"kind": "rating", "scale": "outcome", "value": NaN}', r"nan is outside"),
        ('{"kind": "rating", "scale": "outcome", "value": null}', r"got null"),
        ('{"kind": "exercise_start"}', r"exercise_start needs 'label'"),
        ('{"kind": "learned", "text": ""}', r"text is empty"),
        ('{"kind": "learned", "text": 7}', r"text must be a string, got int"),
        ('{"kind": "cue", "code": "x"}', r"cue code must be an integer, got 'x'"),
        ('{"schema": "stimloop-exposure/2", "kind": "cue"}', r"schema 'stimloop-exposure/2'"),
        ('{"kind": "rating"', r"not valid JSON"),
        ("{" * 5000, r"not valid JSON"),
        ('{"a":' * 2000 + "1" + "}" * 2000, r"not valid JSON"),
        ('{"kind": "learned", "text": "' + "x" * 20000 + '"}', r"bytes long; at most 16384"),
    ],
)
def test_parse_marker_names_what_is_wrong(text, match):
    with pytest.raises(ExposureMarkerError, match=match):
        parse_marker(text)


def test_parse_marker_tolerates_what_other_senders_send():
    # PsychoPy-style: no schema, key order of its own, integer value, numeric string,
    # a one-element sample list, whitespace and a BOM, dashes and capitals in words.
    m = parse_marker(['\ufeff  {"value": "70", "scale": "Expectancy", "kind": "RATING"}'])
    assert (m.kind, m.scale, m.value) == ("rating", "expectancy", 70.0)
    m = parse_marker('{"kind": "exercise-start", "label": "x", "participant": "P01"}')
    assert m.kind == "exercise_start" and m.extra == {"participant": "P01"}
    assert parse_marker('{"kind": "cue", "code": 3.0}').code == 3


def test_lenient_parsing_sanitises_and_bounds_text_and_says_so():
    raw = json.dumps({"kind": "learned", "text": "a\x00b\u202ec" + "y" * 3000})
    m = parse_marker(raw)
    assert len(m.text) == mk.MAX_NOTE_CHARS
    assert m.text.startswith("a\ufffdb\ufffdc")
    assert any("odd character" in n for n in m.notes)
    assert any("truncated from 3005 to 2000" in n for n in m.notes)
    m.text.encode("utf-8")  # storable as UTF-8 (no lone surrogate)
    lone = parse_marker('{"kind": "learned", "text": "x\\ud800y"}')
    assert lone.text == "x\ufffdy"
    with pytest.raises(ExposureMarkerError, match="U\\+0000"):
        parse_marker(raw, lenient=False)


def test_sanitize_text_reports_each_change():
    clean, changes = mk.sanitize_text("  a\r\nb\x07  ", 100)
    assert clean == "a\nb\ufffd"
    assert changes == ["1 odd character(s) replaced by U+FFFD (first: U+0007 at position 3)"]
    assert mk.sanitize_text("plain", 100) == ("plain", [])


# ------------------------------------------------------------------ exercises
def test_a_session_assembles_into_exercises_with_every_rating_in_place():
    log = parse_exercises(session())
    assert log.issues == [] and log.rejected == [] and log.ignored == 0
    assert log.calibration() == (1.0, 100.0)
    e1, e2 = log.exercises
    assert (e1.number, e1.label, e1.start_t, e1.end_t) == (1, "lift, 3rd floor", 120.0, 200.0)
    assert (e1.expectancy, e1.suds_start, e1.suds_peak, e1.suds_end, e1.outcome) == (
        80,
        30,
        70,
        20,
        10,
    )
    assert e1.expectancy_violation == 70
    assert e1.learned == "The doors opened again.\nI coped."
    assert [c.t for c in e1.cues] == [140.0] and e1.cues[0].code == 1
    assert (e2.expectancy, e2.suds_start, e2.outcome) == (60, 40, 5)
    assert math.isnan(e2.suds_peak) and e2.learned == ""
    assert log.intervals().tolist() == [[120.0, 200.0], [310.0, 380.0]]
    assert log.cue_times().tolist() == [140.0, 330.0]


def test_markers_in_any_order_give_the_same_exercises():
    items = session()
    shuffled = items[::-1]
    a, b = parse_exercises(items), parse_exercises(shuffled)
    assert [vars(e) for e in a.exercises] == [vars(e) for e in b.exercises]


def test_end_without_start_is_listed_not_fatal():
    log = parse_exercises([(5.0, mk.exercise_end()), *session()])
    assert [i.reason for i in log.issues] == [
        "exercise_end without an exercise_start; expected a start first"
    ]
    assert log.issues[0].t == 5.0 and len(log.exercises) == 2
    with pytest.raises(ExposureMarkerError, match=r"t=5\.000 s: exercise_end without"):
        parse_exercises([(5.0, mk.exercise_end())], strict=True)


def test_start_while_open_and_missing_end_are_kept_and_flagged():
    log = parse_exercises(
        [
            (10.0, mk.exercise_start("a")),
            (20.0, mk.exercise_start("b")),
            (30.0, mk.cue()),
        ]
    )
    a, b = log.exercises
    assert not a.ended and not b.ended and math.isnan(a.duration_s)
    assert "still open" in a.issues[0] and "has no exercise_end" in b.issues[0]
    assert [c.t for c in b.cues] == [30.0]
    assert log.intervals().shape == (0, 2)
    assert log.intervals(ended_only=False).shape == (2, 2)


def test_ratings_replaced_orphaned_or_dangling_are_listed():
    log = parse_exercises(
        [
            (1.0, mk.rating("outcome", 50)),  # before any exercise
            (2.0, mk.cue("early")),  # outside any exercise
            (3.0, mk.rating("expectancy", 90)),
            (4.0, mk.rating("expectancy", 70)),  # replaces 90 for the next exercise
            (5.0, mk.exercise_start("x")),
            (6.0, mk.rating("suds", 40, "peak")),
            (7.0, mk.rating("suds", 60, "peak")),  # replaces 40
            (8.0, mk.exercise_end("y")),  # label differs
            (9.0, mk.rating("expectancy", 20)),  # no exercise follows
            (10.0, mk.learned("late note")),  # goes to the last exercise
        ]
    )
    (e,) = log.exercises
    assert e.expectancy == 70 and e.suds_peak == 60 and e.learned == "late note"
    assert [r.value for r in e.ratings] == [90, 70, 40, 60]  # nothing dropped
    reasons = " | ".join(i.reason for i in log.issues)
    for part in (
        "outcome rating 50 comes before any exercise",
        "cue outside any exercise",
        "expectancy 70 at t=4.000 s replaces the earlier 90",  # applied at the start
        "SUDS peak 60 at t=7.000 s replaces the earlier 40",
        "exercise_end label 'y' differs from the open exercise's 'x'",
        "expectancy rating 20 has no exercise after it",
    ):
        assert part in reasons
    assert [c.label for c in log.orphan_cues] == ["early"]


def test_bad_markers_in_a_stream_are_rejected_with_reasons_and_the_rest_is_used():
    items = [
        *session(),
        (150.5, '{"kind": "rating", "scale": "suds", "value": 140, "moment": "peak"}'),
        (151.0, "not json at all"),
        (151.5, '{"kind": "rating",'),
        (152.0, '{"kind": "teleport"}'),
        (float("nan"), mk.cue()),
        (153.0, 42),
    ]
    log = parse_exercises(items)
    assert log.exercises[0].suds_peak == 70  # the bad 140 did not replace it
    assert log.ignored == 1
    reasons = [r.reason for r in log.rejected]
    assert any("140 is outside" in r for r in reasons)
    assert any("not valid JSON" in r for r in reasons)
    assert any("'teleport' is unknown" in r for r in reasons)
    assert any("not a finite LSL time" in r for r in reasons)
    assert any("must be a string, got int" in r for r in reasons)
    assert all(len(r.marker) <= 80 for r in log.rejected)


def test_calibration_errors_are_listed():
    log = parse_exercises(
        [(1.0, mk.calibration_end()), (2.0, mk.calibration_start()), (3.0, mk.calibration_start())]
    )
    assert log.calibration() is None
    reasons = " | ".join(i.reason for i in log.issues)
    assert "calibration_end without a calibration_start" in reasons
    assert "while the one from t=2.000 s is open" in reasons
    assert "calibration_start has no calibration_end" in reasons


def test_every_builder_output_parses_back_to_the_same_content():
    for text in (m for _, m in session()):
        m = parse_marker(text, lenient=False)
        obj = json.loads(text)
        assert m.kind == obj["kind"] and m.notes == ()
        if m.kind == "rating":
            assert m.value == obj["value"]
