"""README's set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_gives_exactly_two_setup_commands():
    commands = _setup_commands()
    assert len(commands) == 2, commands
    assert commands[0].rstrip().endswith("stimloop demo")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _setup_commands()[1].strip() in ci.splitlines()


def test_the_pinned_versions_cover_every_requirement():
    """`STIMLOOP_PINNED=1 bash .ci/run` must pin everything pyproject asks for."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra

    def name(req: str) -> str:
        return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")

    pins = {}
    for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            pkg, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[name(pkg)] = version
    missing = sorted({name(r) for r in wanted} - set(pins) - {"stimloop"})
    assert not missing, f"not pinned in .ci/constraints.txt: {missing}"
