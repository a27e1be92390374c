"""The window's SCHED_IDLE priority and its starvation guard (gui/priority.py).

Each case runs the guard in a child process, because it changes the scheduling policy
of the thread that starts it; the machine is saturated with real busy processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from stimloop.gui.priority import IdlePriority, can_leave_idle

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux only")

# The child beats from its main thread every 20 ms, as the window's frame timer does,
# and reports its policy and the guard's state every 50 ms as JSON lines.
CHILD = """
import json, os, sys, threading, time
from stimloop.gui.priority import IdlePriority
p = IdlePriority(starve_s=0.25, recover_s=1.0, nice=10)
state = p.start()
if len(sys.argv) > 2:  # confined to one CPU, as on a session's display CPU
    p.confine({int(sys.argv[2])})
tid = threading.get_native_id()
t_end = time.monotonic() + float(sys.argv[1])
next_report = 0.0
while time.monotonic() < t_end:
    p.beat()
    now = time.monotonic()
    if now >= next_report:
        next_report = now + 0.05
        print(json.dumps({"mode": state.mode, "promoted": state.promoted,
                          "promotions": state.promotions,
                          "policy": os.sched_getscheduler(tid),
                          "nice": os.getpriority(os.PRIO_PROCESS, tid),
                          "cpus": sorted(os.sched_getaffinity(tid))}), flush=True)
    time.sleep(0.02)
p.close()
"""


def hog(cpu: int | None = None) -> subprocess.Popen:
    """A busy process at normal priority (on ``cpu`` only, if given)."""
    pin = f"import os; os.sched_setaffinity(0, {{{cpu}}})\n" if cpu is not None else ""
    return subprocess.Popen([sys.executable, "-c", pin + "while True: pass"])


def read_until(child: subprocess.Popen, pred, timeout: float) -> dict:
    """Read the child's reports until one satisfies ``pred``; fail after ``timeout`` s."""
    t_end = time.monotonic() + timeout
    last = None
    while time.monotonic() < t_end:
        line = child.stdout.readline()
        if not line:
            break
        last = json.loads(line)
        if pred(last):
            return last
    pytest.fail(f"no report satisfied the condition within {timeout} s; last: {last}")


def _stop(child: subprocess.Popen, hogs: list[subprocess.Popen]) -> None:
    """End a test's child and any busy processes still running."""
    for h in hogs:
        h.kill()
    child.kill()
    child.wait()
    child.stdout.close()


@pytest.fixture
def privileged():
    if not can_leave_idle(10):
        pytest.skip("this user may not leave SCHED_IDLE (needs CAP_SYS_NICE or ulimit -e)")


def test_starved_main_thread_is_raised_and_returns_to_idle(privileged):
    child = subprocess.Popen([sys.executable, "-c", CHILD, "60"], stdout=subprocess.PIPE, text=True)
    hogs: list[subprocess.Popen] = []
    try:
        first = read_until(child, lambda r: True, 30.0)
        assert first["mode"] == "idle"
        assert first["policy"] == os.SCHED_IDLE
        assert first["promotions"] == 0
        # Unloaded, the idle thread keeps beating on time: no raise for 1 s.
        calm = [read_until(child, lambda r: True, 5.0) for _ in range(20)]
        assert all(r["promotions"] == 0 for r in calm)

        hogs = [hog() for _ in range(2 * (os.cpu_count() or 1))]
        raised = read_until(child, lambda r: r["promoted"], 30.0)
        assert raised["policy"] == os.SCHED_OTHER
        assert raised["nice"] == 10

        for h in hogs:
            h.kill()
            h.wait()
        hogs = []
        back = read_until(child, lambda r: not r["promoted"], 30.0)
        assert back["promotions"] >= 1
        # The main thread demotes itself on its next beat; one report later it shows.
        back = read_until(child, lambda r: r["policy"] == os.SCHED_IDLE, 5.0)
        assert back["promoted"] is False
    finally:
        _stop(child, hogs)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a second CPU")
def test_confined_window_starved_on_its_cpu_may_use_every_cpu_while_raised(privileged):
    """A window confined to its display CPU: one busy process there would starve the
    emergency stop, so the raised main thread may use every CPU, and goes home after."""
    cpus = sorted(os.sched_getaffinity(0))
    home = cpus[-1]
    child = subprocess.Popen([sys.executable, "-c", CHILD, "60", str(home)],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    hogs: list[subprocess.Popen] = []
    try:
        first = read_until(child, lambda r: True, 30.0)
        assert first["cpus"] == [home] and first["policy"] == os.SCHED_IDLE
        hogs = [hog(home) for _ in range(2)]  # busy on the window's CPU only
        raised = read_until(child, lambda r: r["promoted"], 30.0)
        assert raised["cpus"] == cpus and raised["nice"] == 10
        # raised, it beats on time again on another CPU while the hogs still run
        calm = [read_until(child, lambda r: True, 5.0) for _ in range(10)]
        assert all(r["promoted"] for r in calm[-3:]), calm
        for h in hogs:
            h.kill()
            h.wait()
        hogs = []
        back = read_until(child, lambda r: r["policy"] == os.SCHED_IDLE, 30.0)
        assert back["cpus"] == [home]
    finally:
        _stop(child, hogs)


def test_unprivileged_window_falls_back_to_nice():
    # Without CAP_SYS_NICE and with RLIMIT_NICE 0 a thread cannot leave SCHED_IDLE;
    # the window must then not enter it, and run at nice 10 instead.
    if os.geteuid() != 0 or not (shutil.which("setpriv") and shutil.which("prlimit")):
        pytest.skip("needs root, setpriv and prlimit (util-linux) to drop CAP_SYS_NICE")
    code = (
        "import os; "
        "from stimloop.gui.priority import IdlePriority; "
        "s = IdlePriority(nice=10).start(); "
        "print(s.mode, os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))"
    )
    cmd = [
        "setpriv",
        "--inh-caps=-all",
        "--bounding-set=-sys_nice",
        "prlimit",
        "--nice=0",
        sys.executable,
        "-c",
        code,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    mode, policy, nice = out.stdout.split()
    assert mode == "nice"
    assert int(policy) == os.SCHED_OTHER
    assert int(nice) == 10


@pytest.mark.parametrize(
    "kwargs", [{"nice": 20}, {"nice": -1}, {"starve_s": 0.0}, {"recover_s": -1.0}]
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="must be"):
        IdlePriority(**kwargs)


def test_window_at_one_frame_per_second_is_not_taken_for_starved(privileged, tmp_path):
    # The guard's heartbeat is its own timer: slow redraws must not read as starvation.
    report = tmp_path / "window.json"
    out = subprocess.run(
        [sys.executable, "-m", "stimloop.gui", "--session", f"no-such-session-{os.getpid()}",
         "--fps", "1", "--duration", "5", "--report", str(report)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(report.read_text())
    assert got["priority"] == "idle"
    assert got["priority_raises"] == 0, out.stderr
