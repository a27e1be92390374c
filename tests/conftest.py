"""Test-wide setup: LSL stays on this machine and every stream gets a unique source_id."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from stimloop.stream.lslconfig import use_machine_scope

# liblsl reads its configuration once, when the library is first used, so this must
# happen before anything imports pylsl. Tests always stay on this machine.
use_machine_scope(force=True)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: numba kernels (``cache=True``) that call njit functions of other modules, and those
#: modules. numba keys a cached kernel on its own file only, so an edit of a callee's
#: module (a pull, a branch switch) would leave the old callee compiled into it.
CROSS_MODULE_KERNELS = {"eda_kernel": ("eda_shape_fit",)}


def _drop_stale_numba_caches() -> None:
    """Delete the cache of a kernel older than a module it calls (numba/numba#1833)."""
    import stimloop.dsp

    dsp = Path(stimloop.dsp.__path__[0])
    for kernel, callees in CROSS_MODULE_KERNELS.items():
        newest = max((dsp / f"{c}.py").stat().st_mtime for c in callees)
        for cached in (dsp / "__pycache__").glob(f"{kernel}.*.nb[ic]"):
            if cached.stat().st_mtime < newest:
                cached.unlink(missing_ok=True)


_drop_stale_numba_caches()


@pytest.fixture
def shared_data() -> Path:
    """Path to the read-only real recordings in ``../shared/data``.

    A missing folder fails the test rather than skipping it: validation on real data
    is part of every acceptance criterion, and a silent skip would hide its absence.
    """
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real recordings not found at {SHARED_DATA}; expected ../shared/data")
    return SHARED_DATA


@pytest.fixture
def source_id(request) -> str:
    """A source_id unique to this test run and test, so no two streams ever collide."""
    return f"test-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def runtime_dir():
    """A private, short runtime root for session endpoints (Unix socket paths are
    limited to 107 bytes), removed afterwards."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="sl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cli_demo(tmp_path_factory) -> tuple[dict, Path, str]:
    """One ``stimloop demo`` run as a user would run it, read by the CLI test
    (``tests/loop/test_cli.py``) and the figure test (``tests/gui/test_figure.py``):
    a 35 s headless session that calibrates for 22 s, recorded, with its JSON summary.

    Returns the summary it printed, the recording and the simulators' source_id prefix.
    A demo costs ~40 s of real time; the two tests used to run one each.
    """
    import json
    import os
    import subprocess
    import sys

    xdf = tmp_path_factory.mktemp("cli-demo") / "demo.xdf"
    prefix = f"test-cli-demo-{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [sys.executable, "-m", "stimloop.loop.cli", "demo", "--headless", "--duration", "35",
         "--calibration", "22", "--json", "--record", str(xdf), "--prefix", prefix],
        capture_output=True, text=True, timeout=180, env=dict(os.environ),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), xdf, prefix
