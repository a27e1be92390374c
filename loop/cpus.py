"""Which CPUs the closed loop and the live window run on.

Why partition at all: scheduling priority alone does not keep the window out of the
loop's way. On a 2-core virtual machine (``bench/gui.py``, docs/benchmarks.md) a plain
SCHED_IDLE busy loop taking a third of a core raised the engine's loop-latency p99 by a
median +0.6 to +0.8 ms over paired rounds, whether it spun in cache or streamed memory.
Linux counts a core that runs only SCHED_IDLE tasks as idle when it places a waking
thread (``sched_idle_cpu`` in ``select_idle_sibling``, kernel 5.4 and later), so the
threads that carry a trigger to the stimulator keep waking on the busy core, behind its
cache footprint and, in a virtual machine, on a virtual CPU the host has seen busy. With
the engine's process on one core and the busy loop on the other, the increase was
+0.02 to +0.03 ms. With the real window: see docs/gui.md.

So while a window is attached, the session keeps to :func:`split_cpus`'s session CPUs
and the window to the display CPU (the physical core of the highest-numbered allowed
CPU); the window takes it once the session's status says it has moved off it. This is the
standard isolation of real-time work from housekeeping, done per process with
sched_setaffinity(2) rather than with boot-time ``isolcpus``, which a researcher's
workstation does not have. A session without a window runs on every allowed CPU.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: SCHED_FIFO priority of the engine and pulse threads (when permitted).
REALTIME_PRIORITY = 10


def allowed_cpus() -> frozenset[int]:
    """The CPUs the calling thread may run on (all of them where affinity is unknown).

    Returns
    -------
    frozenset of int
    """
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def request_realtime_priority(priority: int = REALTIME_PRIORITY) -> bool:
    """Move the calling thread to the SCHED_FIFO real-time class, if allowed.

    On a 2-core machine the loop's latency tail comes from waiting for a core, not from
    its own work; a real-time thread preempts ordinary ones the moment its data arrive.
    It only ever runs briefly (it blocks on LSL between chunks), so it cannot starve
    the machine. Needs CAP_SYS_NICE (root, or ``ulimit -r``); without it the thread
    keeps normal priority and the session runs on.

    Parameters
    ----------
    priority : int
        SCHED_FIFO priority (1-99); low values leave room for the kernel's own threads.

    Returns
    -------
    bool
        True if the thread now runs with real-time priority.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, PermissionError, OSError) as exc:
        log.info("real-time priority not available (%s); running at normal priority", exc)
        return False
    return True


def _core_siblings(cpu: int) -> frozenset[int]:
    """The logical CPUs sharing ``cpu``'s physical core (just ``cpu`` where unknown)."""
    path = f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return frozenset({cpu})
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(out)


def split_cpus(
    cpus: frozenset[int] | set[int],
    siblings: Callable[[int], frozenset[int]] = _core_siblings,
) -> tuple[frozenset[int], frozenset[int]]:
    """Split CPUs between the session (the closed loop) and the live window.

    The window gets the physical core of the highest-numbered CPU: all of that core's
    hardware threads that are in ``cpus``, because a sibling thread shares the core's
    execution units and caches with it. The session gets the rest.

    Parameters
    ----------
    cpus : set of int
        The CPUs available (:func:`allowed_cpus`).
    siblings : callable (cpu) -> frozenset of int
        The hardware threads of a CPU's physical core (default: read from sysfs).

    Returns
    -------
    session : frozenset of int
        The CPUs not given to the window (all of them when nothing would be left).
    display : frozenset of int
        The window's CPUs (the same as ``session`` when nothing can be split).

    Raises
    ------
    ValueError
        If ``cpus`` is empty.
    """
    if not cpus:
        raise ValueError("no CPUs to split; expected at least one CPU number")
    cpus = frozenset(cpus)
    top = max(cpus)
    display = (siblings(top) & cpus) | {top}
    session = cpus - display
    if not session:  # one core: splitting its hardware threads is better than nothing
        display = frozenset({top})
        session = cpus - display
    if not session:
        return cpus, cpus
    return session, display


def pin_process(cpus: frozenset[int] | set[int]) -> bool:
    """Restrict every thread of this process to ``cpus``.

    sched_setaffinity(2) acts on one thread, so each entry of ``/proc/self/task`` is set,
    and the listing is repeated until it shows no thread not yet set: a thread started
    meanwhile by one not yet moved would otherwise keep its old CPUs. Threads started
    afterwards (Python's or liblsl's) inherit their creator's affinity.

    Parameters
    ----------
    cpus : set of int
        CPU numbers.

    Returns
    -------
    bool
        False where affinity cannot be set (not Linux, or refused for some thread); the
        threads not moved run on as before. Never raises.
    """
    if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        return False
    ok, done = True, set()
    for _ in range(10):  # each pass can only find threads started during the last one
        try:
            todo = set(os.listdir("/proc/self/task")) - done
        except OSError as exc:
            log.info("cannot list this process's threads: %s", exc)
            return False
        if not todo:
            break
        for tid in todo:
            try:
                os.sched_setaffinity(int(tid), cpus)
            except ProcessLookupError:  # the thread ended meanwhile
                pass
            except OSError as exc:
                log.info("cannot pin thread %s to CPUs %s: %s", tid, sorted(cpus), exc)
                ok = False
        done |= todo
    return ok


class SessionPinning:
    """Keeps the session on its CPUs while at least one window is attached.

    Windows announce themselves (``gui_open``) and leave (``gui_closed``) through the
    session's control channel. A window that crashes never says it left, so the session
    stays on its CPUs: that costs it a core, never timing.

    Parameters
    ----------
    cpus : set of int, optional
        The CPUs to split (default :func:`allowed_cpus` of the creating thread).
    """

    def __init__(self, cpus: frozenset[int] | set[int] | None = None) -> None:
        self.all = frozenset(cpus) if cpus is not None else allowed_cpus()
        self.session, self.display = split_cpus(self.all)
        self.windows = 0
        self.pinned = False  # every thread moved onto the session CPUs
        self._moved = False
        self._lock = threading.Lock()

    def window_opened(self) -> None:
        """A window attached: move the session onto its CPUs (if there is a spare one)."""
        with self._lock:
            self.windows += 1
            if self.windows == 1 and self.session != self.all:
                # Marked before the move: a move that fails for some thread is still
                # undone for the others when the last window leaves.
                self._moved = True
                self.pinned = pin_process(self.session)

    def window_closed(self) -> None:
        """A window left: give the session every CPU again when none is attached."""
        with self._lock:
            self.windows = max(0, self.windows - 1)
            if self.windows == 0:
                self._unpin()

    def release(self) -> None:
        """The session ends: every CPU again, whatever windows are still counted."""
        with self._lock:
            self.windows = 0
            self._unpin()

    def _unpin(self) -> None:
        if self._moved:
            pin_process(self.all)
            self._moved = self.pinned = False

    def describe(self) -> dict[str, object]:
        """The partition, for the status snapshot: ``session`` and ``display`` CPU lists
        and whether the session is pinned now."""
        return {
            "session": sorted(self.session),
            "display": sorted(self.display),
            "pinned": self.pinned,
        }
