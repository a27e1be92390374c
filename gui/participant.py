"""The participant's display: the window-of-tolerance band as a calm colour and a few
words, full screen on a second monitor (issue #19).

Design (docs/gui.md, "Participant display"):

- **Only the band**, as the colour of one large soft circle on a dark, quiet background,
  and one short sentence. No numbers, no index trace, no timer and no alert: figures
  invite the client to monitor and judge themselves, and an alarm is the therapist's to
  handle (the therapist's window shows it). The words invite, they do not judge; they are
  defaults in :data:`PARTICIPANT_TEXT`, to be agreed with the clinician.
- **Changes are slow**: the colour eases towards the new band over about
  :data:`EASE_S` s, so a change of band is a gentle shift, never a flash.
- **Nothing the client can do changes the session**: the display sends no command.
- It reads only the session's status (10 Hz), which carries the band, so it costs the
  machine almost nothing. It opens from the therapist's window (the "Participant display"
  button: a second top-level window of the same process) or on its own with
  ``python -m stimloop.gui --participant`` (another process, e.g. started by the
  participant screen's own session).
"""

from __future__ import annotations

import math
import time

from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from stimloop.gui.feed import LiveFeed
from stimloop.gui.panels import BAND_COLOURS, band_state

#: What the participant reads in each state (no numbers, nothing alarming).
PARTICIPANT_TEXT = {
    "uncalibrated": "Sit comfortably and rest.",
    "hypo": "Stay with the exercise.",
    "within": "You are within your window.",
    "hyper": "Slow, easy breaths.",
    "unknown": "",
    "none": "",
}
#: Circle colours: the therapist's band colours, except the neutral states, which are a
#: muted blue-grey that reads as "resting" on the dark background.
PARTICIPANT_COLOURS = {**BAND_COLOURS, "unknown": "#7f8c99", "uncalibrated": "#7f8c99",
                       "none": "#5b6670"}  # fmt: skip
BACKGROUND = "#1e2227"
#: Time constant of the colour change, s.
EASE_S = 1.5
#: Redraw period, ms.
TICK_MS = 50


class ParticipantView(QtWidgets.QWidget):
    """The participant's full-screen band display.

    Parameters
    ----------
    feed : LiveFeed
        The session's feed (only its status is read).
    closable : bool
        Esc and Q close it (the stand-alone ``--participant`` window). In the
        therapist's process they do not: Esc is the therapist's emergency stop there.
    ease_s : float
        Time constant of the colour change, s.
    """

    def __init__(self, feed: LiveFeed, closable: bool = False, ease_s: float = EASE_S) -> None:
        super().__init__()
        self.feed = feed
        self.ease_s = ease_s
        self.setWindowTitle("stimloop feedback")
        self.setStyleSheet(f"background: {BACKGROUND};")
        self.state = "none"
        start = QtGui.QColor(PARTICIPANT_COLOURS["none"])
        self._rgb = [float(start.red()), float(start.green()), float(start.blue())]
        self._last = time.monotonic()
        lay = QtWidgets.QVBoxLayout(self)
        lay.addStretch(5)
        self.text = QtWidgets.QLabel("")
        self.text.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.text.setWordWrap(True)
        self.text.setStyleSheet(
            "color: #e6e6e6; font-size: 34px; font-weight: 300; background: transparent;"
        )
        lay.addWidget(self.text, 1)
        lay.addStretch(1)
        if closable:
            for key in (QtCore.Qt.Key.Key_Escape, QtCore.Qt.Key.Key_Q):
                QtGui.QShortcut(QtGui.QKeySequence(key), self).activated.connect(self.close)
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.timer.start(TICK_MS)
        self.resize(800, 600)

    @property
    def colour(self) -> QtGui.QColor:
        """The circle's colour now (easing towards the band's)."""
        return QtGui.QColor(*(round(v) for v in self._rgb))

    def tick(self) -> None:
        """Follow the status: set the text, ease the colour, repaint."""
        now = time.monotonic()
        dt, self._last = now - self._last, now
        self.state = band_state(self.feed.status(), age_s=self.feed.status_age_s())
        text = PARTICIPANT_TEXT[self.state]
        if self.text.text() != text:
            self.text.setText(text)
        target = QtGui.QColor(PARTICIPANT_COLOURS[self.state])
        a = 1.0 - math.exp(-max(dt, 0.0) / max(self.ease_s, 1e-3))
        goal = (target.red(), target.green(), target.blue())
        self._rgb = [v + a * (g - v) for v, g in zip(self._rgb, goal, strict=True)]
        self.update()

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        """A soft circle, centred in the upper part, filling most of the height."""
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        r = 0.32 * min(w, h)
        cx, cy = w / 2, 0.42 * h
        grad = QtGui.QRadialGradient(QtCore.QPointF(cx, cy), r)
        colour = self.colour
        grad.setColorAt(0.0, colour.lighter(115))
        grad.setColorAt(0.85, colour)
        edge = QtGui.QColor(colour)
        edge.setAlpha(0)
        grad.setColorAt(1.0, edge)
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.setBrush(QtGui.QBrush(grad))
        p.drawEllipse(QtCore.QPointF(cx, cy), r, r)
        p.end()

    def texts(self) -> list[str]:
        """Every text the participant can see (for tests: no numbers among them)."""
        shown = [w.text() for w in self.findChildren(QtWidgets.QLabel) if w.isVisible()]
        return [self.windowTitle(), *shown]


def show_participant(view: QtWidgets.QWidget, avoid: QtWidgets.QWidget | None = None) -> None:
    """Show ``view`` full screen on a screen other than ``avoid``'s (the therapist's
    window); with only one screen, as an ordinary window beside it when ``avoid`` is
    given (the therapist's window is never covered), full screen otherwise."""
    screens = QtGui.QGuiApplication.screens()
    mine = avoid.screen() if avoid is not None else None
    others = [s for s in screens if s is not mine]
    if avoid is None or (others and len(screens) > 1):
        target = others[-1] if others else QtGui.QGuiApplication.primaryScreen()
        view.setGeometry(target.geometry())
        view.setCursor(QtCore.Qt.CursorShape.BlankCursor)
        view.showFullScreen()
    else:
        view.show()
