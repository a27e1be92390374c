"""The window process's CPU priority: it takes only the CPU time the closed loop leaves.

Why SCHED_IDLE and not a nice value: the loop's latency tail on a small machine comes
from the threads that carry samples to the engine (liblsl's receive threads, the
acquisition process) waiting for a core the window holds. Linux preempts a SCHED_IDLE
task as soon as any normal task wakes on its core; a niced task is preempted only when
the fair scheduler finds it has run long enough. ``bench/gui.py`` (2 cores, 64 ch × 1 kHz,
window at 32 fps) measured the engine's p99 increase with the window as +0.5 to +0.8 ms
at nice 10, +0.2 to +2.1 ms at nice 19 and +0.06 to +0.68 ms (median +0.24 ms) at
SCHED_IDLE (``docs/benchmarks.md``). See sched(7) for the policies. Priority alone was
not enough: the rest came from the loop's threads waking on the window's core, which
``stimloop.loop.cpus`` prevents by giving the window a CPU of its own.

The risk, and the guard against it: a SCHED_IDLE thread gets almost no CPU while normal
work saturates the machine, and the emergency-stop button is handled on the Qt main
thread. A guard thread at normal priority watches the main thread's heartbeat (a 50 ms
Qt timer). When the heartbeat is late by ``starve_s``, the guard moves the main
thread to SCHED_OTHER at nice ``nice``, and onto every CPU if the window was confined to
its display CPU (:meth:`IdlePriority.confine`), so the e-stop stays reachable at the cost
of the loop's tail (already at risk on a saturated machine). After ``recover_s`` of on-time
beats the main thread returns itself to SCHED_IDLE. Feed threads stay idle throughout:
they only feed the display.

Leaving SCHED_IDLE again needs CAP_SYS_NICE or an RLIMIT_NICE that allows ``nice``
(``ulimit -e``); see sched(7), "Privileges and resource limits". Without it the window
never enters SCHED_IDLE and runs at nice ``nice`` from the start: a window whose
e-stop could starve is worse than a slightly longer latency tail.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from stimloop.loop.client import allowed_cpus, pin_process

log = logging.getLogger(__name__)


def _set_affinity(tid: int, cpus: frozenset[int]) -> None:
    try:
        os.sched_setaffinity(tid, cpus)
    except (AttributeError, OSError) as exc:  # not Linux, or the thread is gone
        log.info("could not set the CPUs of thread %s: %s", tid, exc)


def can_leave_idle(nice: int) -> bool:
    """Whether a thread of this process may return from SCHED_IDLE to nice ``nice``.

    Tried, not inferred from uid or limits (capabilities and container setups vary): a
    short-lived probe thread enters SCHED_IDLE and tries to come back.

    Parameters
    ----------
    nice : int
        The niceness (0-19) the thread would come back at.

    Returns
    -------
    bool
        False also on systems without SCHED_IDLE (not Linux).
    """
    if not hasattr(os, "SCHED_IDLE"):
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, name="gui-priority-probe")
    t.start()
    t.join()
    return result[0]


@dataclass
class PriorityState:
    """What the guard has done, for the window and the benchmark report.

    Attributes
    ----------
    mode : str
        ``"idle"`` (SCHED_IDLE with the starvation guard) or ``"nice"`` (no privilege to
        leave SCHED_IDLE, or not Linux: plain niceness).
    promoted : bool
        The main thread is at normal priority now because it was starved.
    promotions : int
        How often the guard has promoted the main thread.
    """

    mode: str = "nice"
    promoted: bool = False
    promotions: int = 0

    def describe(self) -> str:
        """One line for the status bar."""
        if self.mode != "idle":
            return "window priority: nice (SCHED_IDLE not available to this user)"
        if self.promoted:
            return "window priority: raised, the machine is saturated (loop tail at risk)"
        return "window priority: idle (yields every core to the closed loop)"


class IdlePriority:
    """Run the calling (main) thread and every thread it starts later at SCHED_IDLE,
    with a guard that raises the main thread when it starves.

    Call :meth:`start` on the main thread before any other thread exists (before Qt),
    and :meth:`beat` from the main thread's event loop, from a timer that fires well
    within ``starve_s`` whatever the frame rate.

    Parameters
    ----------
    starve_s : float
        Heartbeat lateness, in s, after which the main thread is raised. It must exceed
        the longest frame (a few ms; tens of ms when channels are rebuilt).
    recover_s : float
        On-time beats, in s, after which a raised main thread returns to SCHED_IDLE.
    nice : int
        Niceness (0-19) of the raised main thread, and of the whole process in ``nice``
        mode.
    startup_s : float
        Allowance, in s, for the first beat: building the window and starting the event
        loop take a few hundred ms, with no beat while they run.
    """

    def __init__(
        self,
        starve_s: float = 0.25,
        recover_s: float = 5.0,
        nice: int = 10,
        startup_s: float = 10.0,
    ) -> None:
        if not 0 <= nice <= 19:
            raise ValueError(f"nice must be 0-19, got {nice}")
        if starve_s <= 0 or recover_s <= 0:
            raise ValueError(
                f"starve_s and recover_s must be > 0 s, got {starve_s} and {recover_s}"
            )
        self.starve_s = starve_s
        self.recover_s = recover_s
        self.nice = nice
        self.startup_s = startup_s
        self._beats = 0
        self.state = PriorityState()
        self._main_tid = 0
        self._last_beat = time.monotonic()
        self._last_late = 0.0  # the last time a beat came late or the guard raised
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.all_cpus = allowed_cpus()
        self.home_cpus: frozenset[int] | None = None  # set by confine()

    def start(self) -> PriorityState:
        """Choose the mode and apply it to the calling thread (see the module text)."""
        self._main_tid = threading.get_native_id()
        if not can_leave_idle(self.nice):
            if hasattr(os, "setpriority"):
                os.setpriority(os.PRIO_PROCESS, 0, self.nice)
            self.state.mode = "nice"
            log.info("window runs at nice %d: it may not leave SCHED_IDLE", self.nice)
            return self.state
        self.state.mode = "idle"
        self._last_beat = time.monotonic()
        # The guard is started first so that it keeps the main thread's normal policy;
        # every thread started after the switch below inherits SCHED_IDLE.
        threading.Thread(target=self._guard, name="gui-priority-guard", daemon=True).start()
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return self.state

    def confine(self, cpus: frozenset[int] | set[int]) -> bool:
        """Keep the whole window process on ``cpus`` (the session's display CPU,
        ``stimloop.loop.cpus``). A raised main thread may use every CPU until it is
        back at SCHED_IDLE: on a CPU of its own, one busy process there would otherwise
        starve the emergency stop.

        Parameters
        ----------
        cpus : set of int
            CPUs; intersected with those this process may use.

        Returns
        -------
        bool
            True if every thread now runs on them.
        """
        home = frozenset(cpus) & self.all_cpus
        if not home:
            return False
        with self._lock:
            self.home_cpus = home
            ok = pin_process(home)
            if self.state.promoted:
                _set_affinity(self._main_tid, self.all_cpus)
        return ok

    def beat(self) -> None:
        """Heartbeat of the main thread; call it from the main thread only."""
        now = time.monotonic()
        with self._lock:
            self._beats += 1
            if now - self._last_beat >= self.starve_s:
                self._last_late = now
            self._last_beat = now
            back_to_idle = self.state.promoted and now - self._last_late >= self.recover_s
            if back_to_idle:
                self.state.promoted = False
        if back_to_idle:
            # Entering SCHED_IDLE needs no privilege, so the thread does it itself.
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            if self.home_cpus is not None:
                _set_affinity(0, self.home_cpus)

    def close(self) -> None:
        """Stop the guard thread (before the event loop ends, or it would count as a
        starved main thread)."""
        self._stop.set()

    def _guard(self) -> None:
        while not self._stop.wait(self.starve_s / 4):
            with self._lock:
                late = time.monotonic() - self._last_beat
                allowed = self.starve_s if self._beats else self.startup_s
                if self.state.promoted or late < allowed:
                    continue
                self.state.promoted = True
                self.state.promotions += 1
                self._last_late = time.monotonic()
            try:
                os.setpriority(os.PRIO_PROCESS, self._main_tid, self.nice)
                os.sched_setscheduler(self._main_tid, os.SCHED_OTHER, os.sched_param(0))
                if self.home_cpus is not None:
                    _set_affinity(self._main_tid, self.all_cpus)
            except OSError as exc:  # the thread is gone (window closing), or rights lost
                log.warning("could not raise the window's main thread: %s", exc)
                continue
            log.warning(
                "window main thread starved for %.2f s: raised to nice %d so the "
                "emergency stop stays reachable",
                late,
                self.nice,
            )
