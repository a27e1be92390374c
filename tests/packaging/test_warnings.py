"""The suite's warning rule: our warnings fail, a third party's deprecation never does.

Each case runs a small test file under the project's own pytest configuration (the
``filterwarnings`` list in pyproject.toml) in a child pytest, and reads its outcome.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for wfdb under pandas 3.1 (issue #14): a package that, when imported,
# calls a deprecated API of another package, which warns with the importer's frame.
THIRD_PARTY = """
import warnings

def _deprecated_api():
    warnings.warn("inplace is deprecated (PDEP-8)", DeprecationWarning, stacklevel=3)

def _also_deprecated():
    warnings.warn("this will change", FutureWarning, stacklevel=2)

_deprecated_api()
_also_deprecated()
"""


def _run(tmp_path: Path, test_source: str) -> subprocess.CompletedProcess:
    (tmp_path / "thirdparty_pkg.py").write_text(THIRD_PARTY)
    (tmp_path / "test_case.py").write_text(textwrap.dedent(test_source))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-q", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin",
             "QT_QPA_PLATFORM": "offscreen"},
    )  # fmt: skip


def test_a_third_party_deprecation_at_import_cannot_fail_collection(tmp_path):
    proc = _run(
        tmp_path,
        """
        import thirdparty_pkg  # warns DeprecationWarning and FutureWarning at import

        def test_runs():
            assert thirdparty_pkg is not None
        """,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    # Reported, not hidden: the summary still names the deprecation.
    assert "DeprecationWarning" in proc.stdout


def test_a_warning_from_our_own_code_is_still_an_error(tmp_path):
    proc = _run(
        tmp_path,
        """
        import warnings

        import numpy as np

        def test_nan_cast():  # the kind of bug issue #14 found in the EDA stage
            np.array([np.nan]).astype(np.int64)

        def test_our_runtime_warning():
            warnings.warn("something is off", RuntimeWarning)
        """,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 failed" in proc.stdout, proc.stdout
