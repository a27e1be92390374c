"""The session kinds' views (HBC localisation, exposure) and the participant display,
against fake sessions on real LSL: a status stream with the new fields, and the catalog's
own outlets (``stimloop.loop.catalog.outlet``, as a session opens them) carrying what a
session publishes. Commands go to a real control server on a private runtime directory.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest
from pyqtgraph.Qt import QtGui

from stimloop.devices.endpoints import SessionEndpoint
from stimloop.gui.feed import LiveFeed
from stimloop.gui.hbc_view import HBCProgress
from stimloop.gui.panels import BAND_COLOURS
from stimloop.gui.participant import EASE_S, PARTICIPANT_COLOURS, ParticipantView
from stimloop.gui.window import SessionWindow
from stimloop.loop import catalog
from stimloop.loop.control import ControlServer
from stimloop.loop.errors import SessionError
from stimloop.loop.exposure_markers import parse_marker
from stimloop.stream.errors import StreamError
from stimloop.stream.inlet import MarkerInlet

pytestmark = pytest.mark.timeout(120)

HBC_KEYS = ("decisions", "safety", "heart_hr", "hbc")
EXPOSURE_KEYS = ("decisions", "arousal", "exposure", "exercises")


class FakeSession:
    """A session's status stream and catalog outlets, without a session behind them.

    The status (``snap``) is published at 10 Hz from a thread, as StatusPublisher does;
    a test changes it by assigning entries. ``commands`` records what the control
    server received when :meth:`serve` was called.
    """

    def __init__(self, kind: str, keys: tuple[str, ...], **snap) -> None:
        self.prefix = f"test-gui-{kind}-{uuid.uuid4().hex[:8]}"
        rates = {"heart_hr": 4.0}
        self.outs = {k: catalog.outlet(k, self.prefix, rates.get(k)) for k in keys}
        self.status_out = catalog.outlet("status", self.prefix)
        self.snap = {
            "session": f"fake {kind}",
            "prefix": self.prefix,
            "source_ids": {},
            "catalog": catalog.describe(self.prefix, keys),
            "stimulator": None,
            "protocol": None,
            "exposure": None,
            "streams": {},
            **snap,
        }
        self.commands: list[tuple[str, dict]] = []
        self.refuse: str | None = None  # the next command is refused with this message
        self.on_command = None  # called with (cmd, args) after recording
        self._server = self._endpoint = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, daemon=True)
        self._thread.start()

    def _publish(self) -> None:
        while not self._stop.wait(0.1):
            self.status_out.push_marker(json.dumps(self.snap))

    def serve(self, root: Path) -> None:
        """Answer commands on a control socket under ``root``, as a session does."""
        self._endpoint = SessionEndpoint(self.snap["session"], self.prefix, root).create()

        def handle(cmd: str, args: dict) -> None:
            if cmd in ("gui_open", "gui_closed"):
                return
            if self.refuse:
                why, self.refuse = self.refuse, None
                raise SessionError(why)
            self.commands.append((cmd, args))
            if self.on_command is not None:
                self.on_command(cmd, args)

        self._server = ControlServer(self._endpoint.control_socket, handle, lambda *a: None).start()

    def push(self, key: str, **msg) -> None:
        self.outs[key].push_marker(json.dumps(msg, default=float))

    def wait_consumers(self, keys, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.outs[k].have_consumers() for k in keys):
            assert time.monotonic() < deadline, f"no reader for {keys}"
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        if self._server is not None:
            self._server.close()
            self._endpoint.remove()
        for out in (*self.outs.values(), self.status_out):
            out.close()
        catalog.forget(self.prefix)


@pytest.fixture
def runtime_root(runtime_dir, monkeypatch):
    """The shared private runtime root, where the window's client looks for sessions."""
    monkeypatch.setenv("STIMLOOP_RUNTIME_DIR", str(runtime_dir))
    return runtime_dir


def _open(qtbot, fake: FakeSession) -> SessionWindow:
    win = SessionWindow(LiveFeed(fake.prefix, retry_s=0.2).start())
    qtbot.addWidget(win)
    win.resize(1500, 900)
    win.show()
    qtbot.waitUntil(lambda: win.feed.status() is not None, timeout=15_000)
    return win


HBC_PROTOCOL = {"name": "hbc", "running": True, "waiting": True, "site": "F3",
                "site_number": 1, "sites": ["F3", "FC1"], "state": "prompt"}  # fmt: skip
STIMULATOR = {"driver": "simulated", "armed": False, "ready": True, "intensity_pct": 0.0}
PLAN = {"event": "plan", "order": ["F3", "FC1"], "order_seed": 7,
        "intensities": [90.0, 100.0, 110.0], "unit": "pct_rmt", "train": [10.0, 30],
        "cycle_s": 16.0, "threshold": 2.5}  # fmt: skip


def _cycle(site: str, index: int, intensity: float, hbc: float, onset: float,
           valid: bool = True) -> dict:  # fmt: skip
    return {"event": "cycle", "site": site, "index": index, "intensity": intensity,
            "onset_s": onset, "hr_pre_bpm": 70.0, "hr_train_bpm": 66.0,
            "delta_hr_bpm": -4.0, "delta_hr_pct": -5.7, "hbc": hbc,
            "nan_fraction": 0.0, "valid": valid}  # fmt: skip


def _ranking(best: str, sites: list[dict]) -> dict:
    return {"best_site": best, "target_found": True, "best_site_alt": best, "sites": sites}


def test_hbc_view_follows_the_localisation(qtbot):
    """Shown for an HBC session only; HBC points, trains, the ranking, the prompt and the
    cardiac stop follow what the session publishes."""
    fake = FakeSession("hbc", HBC_KEYS, protocol=dict(HBC_PROTOCOL), stimulator=STIMULATOR)
    win = _open(qtbot, fake)
    view = win.hbc_view
    try:
        qtbot.waitUntil(lambda: view.isVisible(), timeout=5000)
        assert not win.exposure_view.isVisible()
        assert not win.eeg_box.isVisible() and not win.phase_box.isVisible()  # no EEG here
        # the prompt, and Confirm enabled while the session waits
        assert "F3" in view.prompt_label.text() and "site 1 of 2" in view.prompt_label.text()
        assert view.confirm_button.isEnabled() and "F3" in view.confirm_button.text()
        fake.wait_consumers(HBC_KEYS)
        now = pylsl.local_clock()
        t0 = now - 60.0
        fake.push("hbc", **PLAN)
        fake.push("hbc", event="site_start", site="F3", onset_s=t0)
        hbc = {1: 1.2, 2: 2.9, 3: 3.4}
        fake.push("hbc", **_cycle("F3", 0, 0.0, 0.4, t0))
        for k, inten in zip((1, 2, 3), PLAN["intensities"], strict=True):
            fake.push("hbc", **_cycle("F3", k, inten, hbc[k], t0 + 16 * k, valid=k != 2))
            fake.push("safety", event="train_fired", t_lsl=t0 + 16 * k, frequency_hz=10.0,
                      n_pulses=30, intensity_pct=45.0, site="F3")  # fmt: skip
        fake.push("safety", event="fire", t_lsl=now - 5, intensity_pct=45.0)  # not a train
        hr_t = now - 1.5 + np.arange(8) / 4.0  # (the window's inlets keep a 2 s backlog)
        hr = np.column_stack([70 + np.sin(hr_t / 3), np.full((8, 4), 1.0)])
        fake.outs["heart_hr"].push(hr, hr_t)
        fake.snap["protocol"] = {**HBC_PROTOCOL, "waiting": False, "state": "running"}

        def points() -> None:
            x, y = view.hbc_curve.getData()
            assert x is not None and list(x) == [90.0, 110.0]  # valid cycles only
            assert list(y) == [1.2, 3.4]

        qtbot.waitUntil(points, timeout=5000)
        ix, iy = view.hbc_invalid.getData()
        assert list(ix) == [100.0] and list(iy) == [2.9]  # the invalid one, hollow
        assert view.threshold_line.value() == 2.5  # from the plan, not the default
        assert view.rest_line.isVisible() and view.rest_line.value() == 0.4
        assert "% rMT" in view.hbc_plot.getPlotItem().getAxis("bottom").labelText
        # the three trains, 30 pulses at 10 Hz = 3 s each, where they were fired
        qtbot.waitUntil(lambda: len(view.trains.opts["x0"]) == 3, timeout=5000)
        x0 = np.asarray(view.trains.opts["x0"])
        assert np.allclose(np.diff(x0), 16.0, atol=1e-3)
        assert np.allclose(view.trains.opts["width"], 3.0)
        hr_x, _ = view.hr_curve.getData()
        assert hr_x is not None and hr_x.size == 8
        assert not view.confirm_button.isEnabled()
        # the running site's provisional row: 1 valid intensity above 2.5 (3.4)
        qtbot.waitUntil(lambda: view.ranking.rowCount() == 1, timeout=3000)
        assert view.ranking.item(0, 0).text() == "F3 (running)"
        assert view.ranking.item(0, 1).text() == "1"
        assert view.ranking.item(0, 2).text() == f"{(1.2 + 3.4) / 2:.2f}"
        # F3 done; FC1 runs: the finished ranking first, the running site after it
        f3 = {"site": "F3", "intensities": [90, 100, 110], "hbc": [1.2, None, 3.4],
              "n_above": 1, "mean_hbc": 2.3, "slope": 0.11, "passes": True}  # fmt: skip
        fake.push("hbc", event="site_done", site="F3", ranking=_ranking("F3", [f3]))
        fake.push("hbc", event="site_start", site="FC1", onset_s=now)
        for k, value in ((1, 2.6), (2, 2.7)):
            fake.push("hbc", **_cycle("FC1", k, PLAN["intensities"][k - 1], value, now + 16 * k))
        fake.snap["protocol"] = {**HBC_PROTOCOL, "waiting": False, "state": "running",
                                 "site": "FC1", "site_number": 2}  # fmt: skip
        qtbot.waitUntil(lambda: view.ranking.rowCount() == 2, timeout=5000)
        assert [view.ranking.item(r, 0).text() for r in range(2)] == ["F3", "FC1 (running)"]
        assert view.ranking.item(1, 1).text() == "2"
        assert view.best_row() == "F3"
        assert "best so far: F3" in view.best_label.text()
        x, y = view.hbc_curve.getData()
        assert list(x) == [90.0, 100.0] and list(y) == [2.6, 2.7]  # the current site's
        assert any(list(o.getData()[1] if o.getData()[1] is not None else []) == [1.2, 3.4]
                   for o in view.others)  # F3 in grey  # fmt: skip
        fc1 = {**f3, "site": "FC1", "n_above": 3, "mean_hbc": 2.8}
        fake.push("hbc", event="site_done", site="FC1", ranking=_ranking("FC1", [fc1, f3]))
        qtbot.waitUntil(lambda: view.best_row() == "FC1", timeout=5000)
        assert view.ranking.item(1, 0).text() == "F3"
        # the cardiac stop rule fired: a visible alert that names the rule
        assert not view.alert_label.isVisible()
        fake.push("decisions", event="alert", reason="cardiac_stop", rule="floor", site="FC1",
                  baseline_bpm=68.0, hr_bpm=41.2, floor_bpm=45.0)  # fmt: skip
        fake.snap["protocol"] = {**HBC_PROTOCOL, "waiting": False, "state": "done",
                                 "running": True, "site": "FC1", "site_number": 2}  # fmt: skip
        qtbot.waitUntil(lambda: view.alert_label.isVisible(), timeout=5000)
        text = view.alert_label.text()
        assert "CARDIAC STOP at FC1" in text and "41 bpm below the 45 bpm floor" in text
        qtbot.waitUntil(lambda: "cardiac stop" in view.prompt_label.text(), timeout=3000)
        assert not view.confirm_button.isEnabled()
        assert win.last_error is None, win.last_error
        # another kind of session: the view goes
        fake.snap["protocol"] = {"name": "phase_locked", "running": True, "waiting": False,
                                 "target_phase_deg": 180.0, "control": "none"}  # fmt: skip
        qtbot.waitUntil(lambda: not view.isVisible(), timeout=5000)
        assert not win.views_column.isVisible()
    finally:
        win.close()
        fake.close()


def test_confirm_sends_confirm_once_per_prompt(qtbot, runtime_root):
    """Confirm sends ``confirm`` to the session's control channel, once, only while the
    session waits; a refusal is shown and the button may be pressed again."""
    fake = FakeSession("confirm", HBC_KEYS, protocol=dict(HBC_PROTOCOL), stimulator=STIMULATOR)
    fake.serve(runtime_root)

    def act(cmd: str, args: dict) -> None:  # the session arms and runs the site
        fake.snap["protocol"] = {**fake.snap["protocol"], "waiting": False, "state": "running"}

    fake.on_command = act
    win = _open(qtbot, fake)
    view = win.hbc_view
    try:
        qtbot.waitUntil(lambda: view.confirm_button.isEnabled(), timeout=5000)
        view.confirm_button.click()
        view.confirm_button.click()  # a double click confirms once
        assert not view.confirm_button.isEnabled()
        qtbot.waitUntil(lambda: len(fake.commands) == 1, timeout=5000)
        assert fake.commands[0] == ("confirm", {"text": "window: coil placed on F3"})
        qtbot.wait(500)
        assert not view.confirm_button.isEnabled() and len(fake.commands) == 1
        # the next site's prompt enables it again; the session refuses this time
        fake.snap["protocol"] = {**HBC_PROTOCOL, "site": "FC1", "site_number": 2}
        qtbot.waitUntil(lambda: view.confirm_button.isEnabled(), timeout=5000)
        assert "FC1" in view.confirm_button.text()
        fake.refuse = "confirm: the protocol is not waiting for the operator"
        view.confirm_button.click()
        qtbot.waitUntil(lambda: "confirm refused" in view.info_label.text(), timeout=5000)
        assert "not waiting for the operator" in view.info_label.text()
        assert view.confirm_button.isEnabled()  # may be pressed again
        view.confirm_button.click()
        qtbot.waitUntil(lambda: len(fake.commands) == 2, timeout=5000)
        assert fake.commands[1] == ("confirm", {"text": "window: coil placed on FC1"})
    finally:
        win.close()
        fake.close()


EXPOSURE = {"calibrated": False, "band": "unknown", "alert": False, "band_low": 1.0,
            "band_high": 4.0, "alert_after_s": 20.0}  # fmt: skip


def test_exercise_controls_send_valid_markers(qtbot, runtime_root):
    """Each control sends a marker the schema's parser accepts, with what was entered;
    the session's echo on its exposure stream opens and closes the exercise; bad input
    is named and nothing is sent."""
    fake = FakeSession("marks", EXPOSURE_KEYS, exposure=dict(EXPOSURE))
    fake.serve(runtime_root)
    fake.on_command = lambda cmd, args: fake.outs["exposure"].push_marker(args["marker"])
    win = _open(qtbot, fake)
    view = win.exposure_view
    try:
        qtbot.waitUntil(lambda: view.isVisible(), timeout=5000)
        assert not win.hbc_view.isVisible()
        assert not win.stim_box.isVisible() and not win.arm_button.isEnabled()
        fake.wait_consumers(("exposure",))
        sent = []

        def send(action, **expected) -> None:
            """``action`` sends one mark command whose marker parses to ``expected``."""
            n = len(fake.commands)
            action()
            qtbot.waitUntil(lambda: len(fake.commands) == n + 1, timeout=5000)
            cmd, args = fake.commands[-1]
            assert cmd == "mark" and set(args) == {"marker"}
            m = parse_marker(args["marker"], lenient=False)
            assert {k: getattr(m, k) for k in expected} == expected, m
            sent.append(m.kind)
            qtbot.waitUntil(lambda: view.feedback.text().startswith("sent"), timeout=5000)

        # nothing open: Start enabled, End not; an empty label is refused here
        qtbot.waitUntil(lambda: view.start_button.isEnabled(), timeout=3000)
        assert not view.end_button.isEnabled()
        view.start_exercise()
        assert "not sent" in view.feedback.text() and "label is empty" in view.feedback.text()
        assert fake.commands == []
        view.expectancy_spin.setValue(80)
        send(view.expectancy_button.click, kind="rating", scale="expectancy", value=80.0)
        view.label_edit.setText("lift, 3rd floor")
        send(view.start_button.click, kind="exercise_start", label="lift, 3rd floor")
        qtbot.waitUntil(lambda: view.end_button.isEnabled(), timeout=5000)
        assert not view.start_button.isEnabled()
        assert "exercise 1 running: lift, 3rd floor" in view.state_label.text()
        for moment, value in (("start", 40), ("peak", 75), ("end", 30)):
            view.suds_spin.setValue(value)
            send(view.suds_buttons[moment].click, scale="suds", moment=moment, value=value)
        view.cue_edit.setText("doors close")
        send(view.cue_button.click, kind="cue", label="doors close", code=None)
        send(view.end_button.click, kind="exercise_end", label="lift, 3rd floor")
        qtbot.waitUntil(lambda: view.start_button.isEnabled(), timeout=5000)
        view.outcome_spin.setValue(10)
        send(view.outcome_button.click, scale="outcome", value=10.0)
        note = "The doors opened again.\nI could stay."
        view.note_edit.setPlainText(note)
        send(view.note_button.click, kind="learned", text=note)
        qtbot.waitUntil(lambda: view.note_edit.toPlainText() == "", timeout=3000)
        assert sent == ["rating", "exercise_start", "rating", "rating", "rating", "cue",
                        "exercise_end", "rating", "learned"]  # fmt: skip
        # the table has the exercise with its ratings (figures pending)
        qtbot.waitUntil(lambda: view.table.rowCount() == 1, timeout=5000)
        row = [view.table.item(0, c).text() for c in range(view.table.columnCount())]
        assert row[:2] == ["1", "lift, 3rd floor"] and row[3:6] == ["80", "10", "40/75/30"]
        # odd text is named and not sent; a refusal by the session is shown
        n = len(fake.commands)
        view.note_edit.setPlainText("evil \u202etext")
        view.note_button.click()
        assert "U+202E" in view.feedback.text() and len(fake.commands) == n
        fake.refuse = "exposure marker refused: exercise end at 1.0 s without an open exercise"
        view.end_exercise()  # the button is disabled; the session is the last word
        qtbot.waitUntil(lambda: view.feedback.text().startswith("refused"), timeout=5000)
        assert "without an open exercise" in view.feedback.text()
        assert win.command_error is None  # shown in the view, not in the window's banner
    finally:
        win.close()
        fake.close()


def test_exposure_view_band_alert_index_and_table(qtbot):
    """The band indicator shows each state; the alert shows when the session says so;
    the index trace, band edges, exercise table and habituation follow the streams."""
    fake = FakeSession("band", EXPOSURE_KEYS, exposure=dict(EXPOSURE))
    win = _open(qtbot, fake)
    view = win.exposure_view
    ind = view.indicator
    try:
        qtbot.waitUntil(lambda: view.isVisible(), timeout=5000)
        qtbot.waitUntil(lambda: ind.state == "uncalibrated", timeout=5000)
        assert ind.headline.text() == "calibrating"
        seen = {}
        for band in ("hypo", "within", "hyper", "unknown"):
            fake.snap["exposure"] = {**EXPOSURE, "calibrated": True, "band": band}
            qtbot.waitUntil(lambda b=band: ind.state == b, timeout=5000)
            img = ind.grab().toImage()
            seen[band] = QtGui.QColor(img.pixel(img.width() // 2, 4)).name()
        assert seen == {b: BAND_COLOURS[b] for b in seen}, seen
        assert ind.headline.text() == "no reading"
        assert not view.alert_label.isVisible()
        # the index and the alert: above the window for the last second (the window's
        # inlets keep a 2 s backlog)
        fake.wait_consumers(("arousal", "exposure", "exercises"))
        now = pylsl.local_clock()
        t = now - 1.9 + np.arange(19) / 10.0
        index = np.where(t < now - 1.0, 2.0, 5.0)
        band = np.where(t < now - 1.0, 2, 3)
        rows = np.column_stack([index, index, 0 * t, 0 * t, band, (t > now - 0.5).astype(float)])
        fake.outs["arousal"].push(rows, t)
        fake.snap["exposure"] = {**EXPOSURE, "calibrated": True, "band": "hyper", "alert": True}
        qtbot.waitUntil(lambda: view.alert_label.isVisible(), timeout=5000)
        qtbot.waitUntil(lambda: "for " in view.alert_label.text(), timeout=5000)
        text = view.alert_label.text()
        secs = int(re.search(r"for (\d+) s", text).group(1))
        assert 1 <= secs <= 4 and "alert after 20 s" in text, text
        x, y = view.index_curve.getData()
        assert x is not None and np.nanmax(y) == 5.0 and np.nanmin(y) == 2.0
        assert [e.value() for e in view.edges] == [1.0, 4.0]
        assert view.within_region.getRegion() == (1.0, 4.0)
        # exercises: labels and ratings from the markers, figures from the exercises stream
        for k, peak in ((1, 6.5), (2, 4.8)):
            fake.push("exposure", schema="stimloop-exposure/1", kind="exercise_start",
                      label=f"lift {k}")  # fmt: skip
            fake.push("exposure", schema="stimloop-exposure/1", kind="exercise_end")
            fake.push("exercises", number=k, duration_s=150.0, eda_valid=k == 1,
                      arousal_peak=peak, time_hyper_s=42.0 if k == 1 else 0.0, scr_count=9,
                      scl_change_us=0.31, hr_peak_change_bpm=12.5, issues=[])  # fmt: skip
        fake.push("exposure", event="calibrated", scl_mean_us=2.0)  # a stage event: no row
        qtbot.waitUntil(lambda: view.table.rowCount() == 2, timeout=5000)
        qtbot.waitUntil(lambda: view.table.item(1, 6).text() == "4.8", timeout=5000)
        row = [view.table.item(0, c).text() for c in range(view.table.columnCount())]
        assert row[1] == "lift 1" and row[6:] == ["6.5", "42", "9", "0.31", "12.5"]
        hx, hy = view.habituation_curve.getData()
        assert list(hx) == [1.0, 2.0] and list(hy) == [6.5, 4.8]
        assert view.habituation_high.value() == 4.0
        assert win.last_error is None, win.last_error
        # a session without exposure: the view goes
        fake.snap["exposure"] = None
        qtbot.waitUntil(lambda: not view.isVisible(), timeout=5000)
    finally:
        win.close()
        fake.close()


def _distance(a: QtGui.QColor, b: str) -> int:
    c = QtGui.QColor(b)
    return max(abs(a.red() - c.red()), abs(a.green() - c.green()), abs(a.blue() - c.blue()))


def test_participant_display_shows_the_band_and_no_numbers(qtbot, tmp_path):
    """Each state's colour and words, eased in; no digit anywhere the client can see;
    the therapist's button opens and closes it."""
    fake = FakeSession("participant", ("arousal",), exposure=dict(EXPOSURE))
    win = _open(qtbot, fake)
    view = ParticipantView(LiveFeed(fake.prefix, only=()).start(), ease_s=0.2)
    qtbot.addWidget(view)
    view.show()
    try:
        texts = {}
        for state, exposure in (
            ("uncalibrated", EXPOSURE),
            ("hypo", {**EXPOSURE, "calibrated": True, "band": "hypo"}),
            ("within", {**EXPOSURE, "calibrated": True, "band": "within"}),
            ("hyper", {**EXPOSURE, "calibrated": True, "band": "hyper", "alert": True}),
            ("unknown", {**EXPOSURE, "calibrated": True, "band": "unknown"}),
        ):
            fake.snap["exposure"] = exposure
            qtbot.waitUntil(lambda s=state: view.state == s, timeout=5000)
            qtbot.waitUntil(lambda s=state: _distance(view.colour, PARTICIPANT_COLOURS[s]) <= 3,
                            timeout=5000)  # fmt: skip
            shown = view.texts()
            assert not any(re.search(r"\d", s) for s in shown), shown
            texts[state] = view.text.text()
            img = view.grab().toImage()
            centre = QtGui.QColor(img.pixel(img.width() // 2, int(0.42 * img.height())))
            assert _distance(centre, PARTICIPANT_COLOURS[state]) < 40, (state, centre.name())
            if state == "hyper":
                img.save(str(tmp_path / "participant.png"))
        # at the default pace a change is a gentle shift, never a flash
        view.ease_s = EASE_S
        fake.snap["exposure"] = {**EXPOSURE, "calibrated": True, "band": "within"}
        start = _distance(view.colour, PARTICIPANT_COLOURS["within"])
        qtbot.waitUntil(lambda: view.state == "within", timeout=5000)
        qtbot.wait(400)
        assert _distance(view.colour, PARTICIPANT_COLOURS["within"]) > 0.5 * start > 10
        assert texts["within"] and texts["hyper"] and texts["hypo"] and texts["uncalibrated"]
        assert len({texts[s] for s in ("hypo", "within", "hyper")}) == 3
        assert len({PARTICIPANT_COLOURS[s] for s in ("hypo", "within", "hyper")}) == 3
        # the status goes silent: neutral, no words
        fake._stop.set()
        qtbot.waitUntil(lambda: view.state == "none", timeout=5000)
        assert view.text.text() == ""
        # the therapist's button opens it (a window of its own) and closes it
        fake._stop.clear()
        fake._thread = threading.Thread(target=fake._publish, daemon=True)
        fake._thread.start()
        qtbot.waitUntil(lambda: win.exposure_view.isVisible(), timeout=5000)
        win.exposure_view.participant_button.click()
        assert win.participant is not None and win.participant.isVisible()
        assert win.participant.isWindow() and win.exposure_view.participant_button.isChecked()
        win.exposure_view.participant_button.click()
        assert win.participant is None and not win.exposure_view.participant_button.isChecked()
    finally:
        view.close()
        view.feed.close()
        win.close()
        fake.close()


def test_participant_process(tmp_path):
    """``python -m stimloop.gui --participant`` shows the band on its own, full screen."""
    fake = FakeSession("participant-proc", ("arousal",),
                       exposure={**EXPOSURE, "calibrated": True, "band": "within"})  # fmt: skip
    shot = tmp_path / "participant.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "stimloop.gui", "--participant", "--session", fake.prefix,
             "--duration", "4", "--screenshot", str(shot)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        fake.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = QtGui.QImage(str(shot))
    assert img.width() >= 640  # the offscreen screen, full
    centre = QtGui.QColor(img.pixel(img.width() // 2, int(0.42 * img.height())))
    assert _distance(centre, PARTICIPANT_COLOURS["within"]) < 40, centre.name()


def test_hbc_progress_ignores_malformed_events():
    """Odd events on the hbc stream never break the view's bookkeeping."""
    p = HBCProgress()
    odd = [
        {"event": "cycle"},
        {"event": "site_done", "ranking": "x"},
        {"event": 3},
        {"event": "plan", "train": "x", "threshold": "nan"},
        {"event": "cycle", "site": "F3", "index": 1, "intensity": "a", "hbc": None},
    ]
    for msg in odd:
        p.add(msg)
    assert p.threshold == 2.0 and not p.threshold_known  # the published default
    x, y, ok, rest = p.points("F3")
    assert np.isnan(x).all() and np.isnan(y).all() and not ok.any() and math.isnan(rest)
    assert [r["n_above"] for r in p.table("F3")] == [0]
    p.add({"event": "cycle", "site": "F3", "index": "x"})  # no index: ignored
    assert list(p.cycles["F3"]) == [1]


HBC_CHILD = Path(__file__).with_name("hbc_session_child.py")


@pytest.mark.slow
def test_hbc_view_on_a_real_localisation(qtbot):
    """A real session on the virtual subject (its own process) waits for the window's
    Confirm, then the view shows its trains, HBC points and ranking as published."""
    tag = f"test-gui-hbc-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, str(HBC_CHILD), tag], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    win = None
    try:
        line = proc.stdout.readline()
        assert line, f"the session process ended (exit {proc.poll()})"
        prefix = json.loads(line)["prefix"]
        hbc_stream = MarkerInlet(f"{prefix}-hbc", resolve_timeout=30.0).connect()
        events = []

        def take() -> None:  # the session closes its streams once the protocol is done
            with contextlib.suppress(StreamError):  # StreamLostError, then not connected
                events.extend(json.loads(text) for text, _ in hbc_stream.pull())

        win = SessionWindow(LiveFeed(prefix).start())
        qtbot.addWidget(win)
        win.resize(1500, 900)
        win.show()
        view = win.hbc_view
        qtbot.waitUntil(lambda: view.isVisible() and view.confirm_button.isEnabled(),
                        timeout=60_000)  # fmt: skip
        assert "F3 (site 1 of 1)" in view.prompt_label.text()
        status = win.feed.status()
        assert not status["stimulator"]["armed"]  # disarmed while it waits
        view.confirm_button.click()

        def running() -> None:
            st = win.feed.status()
            assert st["protocol"]["state"] == "running" and st["stimulator"]["armed"]

        qtbot.waitUntil(running, timeout=10_000)
        qtbot.waitUntil(lambda: "Stimulating F3" in view.prompt_label.text(), timeout=3000)
        assert not view.confirm_button.isEnabled()
        # the first train (cycle 1: 10 pulses at 10 Hz = 1 s), and then its HBC point
        qtbot.waitUntil(lambda: len(view.trains.opts["x0"]) >= 1, timeout=30_000)
        assert np.allclose(view.trains.opts["width"], 1.0)

        def point_at_100() -> None:
            take()
            x_ok, _ = view.hbc_curve.getData()
            x_bad, _ = view.hbc_invalid.getData()
            xs = [*(x_ok if x_ok is not None else []), *(x_bad if x_bad is not None else [])]
            assert 100.0 in xs

        qtbot.waitUntil(point_at_100, timeout=30_000)
        # the site is done: its ranking, with the best site highlighted
        qtbot.waitUntil(lambda: take() or view.best_row() == "F3", timeout=30_000)
        take()
        hbc_stream.close()
        # what the view shows is what the session published
        cycles = [e for e in events if e["event"] == "cycle" and e["index"] > 0]
        assert [c["intensity"] for c in cycles] == [100.0, 110.0]
        x_ok, y_ok = view.hbc_curve.getData()
        valid = [(c["intensity"], c["hbc"]) for c in cycles if c["valid"]]
        assert list(zip(x_ok, y_ok, strict=True)) == valid
        (ranked,) = next(e for e in events if e["event"] == "site_done")["ranking"]["sites"]
        assert view.ranking.rowCount() == 1
        assert view.ranking.item(0, 1).text() == str(ranked["n_above"])
        mean = ranked["mean_hbc"]
        assert view.ranking.item(0, 2).text() == ("–" if mean is None else f"{mean:.2f}")
        assert view.best_label.text().startswith("best so far: F3")
        assert len(view.trains.opts["x0"]) == 2
        assert win.last_error is None, win.last_error
    finally:
        if win is not None:
            win.close()
        proc.stdin.close()
        try:
            proc.wait(30.0)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.stdout.close()
