"""pytest plugin of the driver conformance kit (registered via the ``pytest11`` entry point).

It only adds fixtures and a marker; it imports nothing heavy at load time (in
particular not pylsl, whose configuration a project's conftest may still need to set).
The contract tests themselves live in :mod:`stimloop.devices.testing` and are used by
subclassing ``StimulatorContract`` / ``SourceContract`` in a test module.
"""

from __future__ import annotations

import os
import threading
import time

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "conformance: a stimloop device-driver contract test (stimloop.devices.testing)"
    )


def _open_fds() -> set[int]:
    try:
        return {int(n) for n in os.listdir("/proc/self/fd")}
    except OSError:  # not Linux: fd accounting unavailable, thread accounting still runs
        return set()


class LeakCheck:
    """Snapshot of live threads and open file descriptors, compared at teardown."""

    def __init__(self) -> None:
        self.threads = set(threading.enumerate())
        self.fds = _open_fds()

    def leaked(self, deadline_s: float = 3.0) -> tuple[list[str], list[str]]:
        """Threads and fds still open ``deadline_s`` after the check started waiting."""
        end = time.monotonic() + deadline_s
        while True:
            threads = [t for t in threading.enumerate() if t not in self.threads and t.is_alive()]
            fds = sorted(_open_fds() - self.fds)
            described = []
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    continue  # closed while we looked
                # liblsl keeps process-wide sockets and eventfds once first used; only
                # files, ttys and pipes are a driver's responsibility.
                if target.startswith(("socket:", "anon_inode:")):
                    continue
                described.append(f"{fd}->{target}")
            names = [t.name for t in threads]
            if (not names and not described) or time.monotonic() > end:
                return names, described
            time.sleep(0.05)


@pytest.fixture
def leak_check() -> LeakCheck:
    """Record threads and fds now; call ``.leaked()`` after closing the driver."""
    return LeakCheck()
