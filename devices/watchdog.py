"""The gate's heartbeat watchdog: two missed periods of the controlling loop disarm.

A thread waits on an Event with a timeout until the deadline the last heartbeat set (no
polling, no wake-up per heartbeat); a missed deadline calls ``on_trip`` once and keeps
watching. The gate refuses every fire while the watchdog is tripped, until the loop
heartbeats and arms again.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

import pylsl

logger = logging.getLogger("stimloop.devices")


class Watchdog:
    """Requires :meth:`heartbeat` at least every ``period_s`` once started.

    Parameters
    ----------
    on_trip : callable (limit_s) -> None
        Called from the watchdog thread when two periods pass without a heartbeat.
    """

    def __init__(self, on_trip: Callable[[float], None]) -> None:
        self._on_trip = on_trip
        self.period_s: float | None = None
        self.last_beat = -math.inf
        self.tripped = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether heartbeats are required now."""
        return self.period_s is not None

    def start(self, period_s: float) -> None:
        """Require a heartbeat every ``period_s`` from now (restarts a running one)."""
        self.stop()
        self.period_s = float(period_s)
        self.last_beat = pylsl.local_clock()
        self.tripped = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stimloop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (heartbeats are no longer required)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2.0)
            self._thread = None
        self.period_s = None

    def heartbeat(self) -> None:
        """The loop is alive. Only a timestamp is written: no lock, no system call and
        no thread wake-up, so a loop can heartbeat every iteration for free."""
        self.last_beat = pylsl.local_clock()

    def silence_s(self) -> float:
        """Seconds since the last heartbeat."""
        return pylsl.local_clock() - self.last_beat

    def overdue(self) -> bool:
        """Tripped, or two periods without a heartbeat (False when not running)."""
        return self.period_s is not None and (self.tripped or self.silence_s() > 2 * self.period_s)

    def clear_if_beating(self) -> None:
        """Un-trip once heartbeats have resumed within the last period (arm does this)."""
        if self.tripped and self.period_s is not None and self.silence_s() <= self.period_s:
            self.tripped = False

    def _run(self) -> None:
        assert self.period_s is not None
        limit = 2 * self.period_s
        while not self._stop.is_set():
            # Sleep exactly until the deadline the last heartbeat set, then look again:
            # the thread wakes about twice per limit, never once per heartbeat.
            remaining = self.last_beat + limit - pylsl.local_clock()
            if remaining > 0:
                self._stop.wait(remaining)
                continue
            if self._stop.is_set():
                return
            if not self.tripped:
                self.tripped = True
                logger.error("watchdog: no heartbeat for 2 periods (%g s); disarming", limit)
                self._on_trip(limit)
            self._stop.wait(self.period_s)  # tripped: keep watching, never spin
