"""The wheel carries every subpackage and works outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Folders the design card maps onto `stimloop.*`; tests/ and bench/ are not shipped.
MAPPED = ("stream", "devices", "dsp", "gui", "loop")


def _source_packages() -> set[str]:
    """Every folder with an __init__.py under the mapped top-level folders."""
    pkgs = set()
    for top in MAPPED:
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).as_posix().replace("/", ".")
            pkgs.add(f"stimloop.{rel}")
    return pkgs


@pytest.mark.slow
def test_wheel_contains_every_subpackage_and_imports_in_a_clean_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(dist)],
        check=True,
    )  # fmt: skip
    (wheel,) = dist.glob("stimloop-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    in_wheel = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    expected = _source_packages()
    assert expected, "no packages found in the source tree"
    missing = expected - in_wheel
    assert not missing, f"subpackages missing from the wheel: {sorted(missing)}"
    assert any(n.endswith("entry_points.txt") for n in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    target = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # Install the wheel itself (no editable finder, no source tree on the path)...
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target,
         str(wheel)],
        check=True,
    )  # fmt: skip
    # ...and borrow the already-installed dependencies through PYTHONPATH. .pth files
    # on PYTHONPATH are not processed, so this venv cannot see the editable install.
    deps = sysconfig.get_paths()["purelib"]
    code = (
        "import importlib, stimloop, sys\n"
        f"mods = {sorted(expected)!r}\n"
        "for m in mods: importlib.import_module(m)\n"
        "import stimloop.loop.cli as cli\n"
        "paths = [p for p in stimloop.__path__]\n"
        "assert all('site-packages' in p for p in paths), paths\n"
        "print(len(mods))\n"
    )
    env = {**os.environ, "PYTHONPATH": deps}
    out = subprocess.run(
        [str(py), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(len(expected))
