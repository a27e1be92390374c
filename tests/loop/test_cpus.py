"""The CPU split between the session and the live window (loop/cpus.py).

Pinning changes a whole process, so it is exercised in a child process: the test
process keeps every CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stimloop.loop.cpus import split_cpus

CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
needs_two = pytest.mark.skipif(len(CPUS) < 2, reason="a split needs at least two CPUs")


def _no_smt(cpu: int) -> frozenset[int]:
    return frozenset({cpu})


def _smt_pairs(cpu: int) -> frozenset[int]:
    """4 cores x 2 threads numbered as Linux does on x86: core k = CPUs k and k + 4."""
    return frozenset({cpu % 4, cpu % 4 + 4})


def test_split_keeps_the_highest_cpu_for_the_window():
    assert split_cpus({0, 1}, _no_smt) == ({0}, {1})
    assert split_cpus({0, 2, 5}, _no_smt) == ({0, 2}, {5})
    assert split_cpus(frozenset({3}), _no_smt) == ({3}, {3})  # one CPU: nothing to split


def test_split_gives_the_window_a_whole_physical_core():
    # its sibling hardware thread shares the core's units and caches: not the session's
    assert split_cpus(set(range(8)), _smt_pairs) == ({0, 1, 2, 4, 5, 6}, {3, 7})
    # only part of that core allowed: the allowed part of it
    assert split_cpus({0, 1, 2, 7}, _smt_pairs) == ({0, 1, 2}, {7})
    # a single core with two threads: split the threads rather than not at all
    assert split_cpus({0, 4}, _smt_pairs) == ({0}, {4})
    # this machine's own topology: a split of disjoint, non-empty parts of all CPUs
    session, display = split_cpus(set(CPUS))
    assert session | display == set(CPUS)
    assert len(CPUS) < 2 or (session and display and not session & display)


def test_split_of_nothing_is_refused_by_name():
    with pytest.raises(ValueError, match="no CPUs to split"):
        split_cpus(set())


# Threads exist before the pinning (as the engine's and liblsl's do when a window
# attaches) and after it; every /proc/self/task entry is reported at each step.
CHILD = """
import json, os, threading
from stimloop.loop.cpus import SessionPinning

def tasks():
    return sorted({tuple(sorted(os.sched_getaffinity(int(t))))
                   for t in os.listdir("/proc/self/task")})

stop = threading.Event()
for _ in range(3):
    threading.Thread(target=stop.wait, daemon=True).start()

def spawner():  # keeps starting threads while the session is being moved
    while not stop.is_set():
        threading.Thread(target=stop.wait, args=(0.2,), daemon=True).start()
        stop.wait(0.0005)

threading.Thread(target=spawner, daemon=True).start()
p = SessionPinning()
out = {"before": tasks()}
p.window_opened()
p.window_opened()
late = threading.Thread(target=stop.wait, daemon=True)
late.start()
out["two_windows"] = tasks()  # every thread, also those started during the move
out["late_thread"] = sorted(os.sched_getaffinity(late.native_id))
out["status"] = p.describe()
p.window_closed()
out["one_left"] = tasks()
p.window_closed()
out["none_left"] = tasks()
p.window_closed()  # a stray gui_closed (a window that never announced itself)
out["stray_close"] = tasks()
p.window_opened()
p.release()
out["released"] = tasks()
print(json.dumps(out))
"""


@needs_two
def test_session_threads_keep_off_the_window_cpu_while_a_window_is_attached():
    run = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    out = json.loads(run.stdout)
    every, session = [CPUS], [CPUS[:-1]]
    assert out["before"] == every
    assert out["two_windows"] == session  # old threads moved, every one of them
    assert out["late_thread"] == CPUS[:-1]  # new threads inherit it
    assert out["status"] == {"session": CPUS[:-1], "display": CPUS[-1:], "pinned": True}
    assert out["one_left"] == session  # one window is still attached
    assert out["none_left"] == every
    assert out["stray_close"] == every
    assert out["released"] == every
