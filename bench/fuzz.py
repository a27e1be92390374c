"""Fuzz the XDF reader and the session-config loader for longer than CI can.

Targets (inputs from ``tests/faults/fuzz_inputs.py``, the same strategies the bounded CI
runs in ``tests/faults/test_fuzz_*.py`` use):

* ``xdf``: ``stream/xdf.py: read_xdf`` and the replay loader on structured, mutated and
  raw files; each must return (intact or with ``damage`` named) or raise ``XDFError`` /
  ``ReplayError`` naming the file, and a returned file must be consistent (as many
  stamps as samples, the declared channel count);
* ``session-dict``: ``loop/config.py: parse_session`` on the demo session with keys
  replaced, added or removed; valid or ``SessionConfigError``;
* ``session-file``: ``load_session`` on mutated demo TOML and arbitrary bytes; valid or
  ``SessionConfigError`` naming the file.

Anything else is a **crash**: it is counted, its input saved under ``--crash-dir`` and
its traceback printed. Distinct errors are the typed messages with numbers, quoted
values and the path blanked. Generation runs in batches of ``--batch`` examples with
successive seeds until ``--seconds`` per target have passed; the slowest example shows
that nothing came near a hang.

Usage: ``python bench/fuzz.py [--seconds 60] [--targets xdf session-dict session-file]
[--seed 0] [--json] [--out FILE.json]``; exits 1 if anything crashed.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import resource
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "faults"))

import fuzz_inputs
from hypothesis import HealthCheck, Phase, given, seed, settings

TARGETS = ("xdf", "session-dict", "session-file")


def template(message: str, path: str) -> str:
    """A message with its varying parts blanked, to count distinct errors."""
    m = message.replace(path, "<file>").splitlines()[0] if message else ""
    m = re.sub(r"b'[^']*'|'[^']*'|\"[^\"]*\"", "'…'", m)
    # Numbers, but not the digits of a word such as UTF-8 or float32.
    m = re.sub(r"(?<![\w.-])[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|\bnan\b|\binf\b", "N", m)
    return m[:160]


def fuzz(target: str, seconds: float, batch: int, first_seed: int, crash_dir: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"stimloop-fuzz-{target}-"))
    path = work / ("input.toml" if target.startswith("session") else "input.xdf")
    outcomes: Counter = Counter()
    errors: Counter = Counter()
    crashes: list[dict] = []  # the first of each kind
    crash_kinds: Counter = Counter()
    slowest = [0.0]
    examples = [0]

    def one(value) -> None:
        examples[0] += 1
        t = time.perf_counter()
        try:
            if target == "session-dict":
                kind, msg = fuzz_inputs.session_dict_outcome(value)
            else:
                path.write_bytes(value)
                if target == "xdf":
                    kind, msg = fuzz_inputs.xdf_outcome(path)
                else:
                    kind, msg = fuzz_inputs.session_file_outcome(path)
        except Exception as exc:
            kind, msg = "crash", f"{type(exc).__name__}: {exc}"
            key = f"{type(exc).__name__}: {template(str(exc), str(path))}"
            if key not in crash_kinds:  # keep one input per kind of crash
                crash_dir.mkdir(parents=True, exist_ok=True)
                ext = "json" if target == "session-dict" else "bin"
                saved = crash_dir / f"{target}-crash-{len(crash_kinds)}.{ext}"
                if target == "session-dict":
                    saved.write_text(json.dumps(value, default=repr))
                else:
                    saved.write_bytes(value)
                crashes.append({"kind": key, "error": msg[:300], "input": str(saved),
                                "traceback": traceback.format_exc(limit=-4)})  # fmt: skip
            crash_kinds[key] += 1
        slowest[0] = max(slowest[0], time.perf_counter() - t)
        outcomes[kind] += 1
        if kind not in ("valid", "intact", "crash"):
            errors[f"{kind}: {template(msg, str(path))}"] += 1

    strategy = {
        "xdf": fuzz_inputs.xdf_inputs(),
        "session-dict": fuzz_inputs.session_dicts(),
        "session-file": fuzz_inputs.session_texts(),
    }[target]
    opts = settings(
        max_examples=batch,
        database=None,
        deadline=None,
        phases=[Phase.generate],  # count every example; no shrinking of non-failures
        suppress_health_check=list(HealthCheck),
    )
    t_end = time.monotonic() + seconds
    s = first_seed
    while time.monotonic() < t_end:
        seed(s)(opts(given(strategy)(one)))()
        s += 1
    return {
        "target": target,
        "examples": examples[0],
        "seeds": [first_seed, s - 1],
        "seconds": seconds,
        "outcomes": dict(outcomes),
        "distinct_errors": len(errors),
        "errors": errors.most_common(),
        "crashes": sum(crash_kinds.values()),
        "distinct_crashes": len(crash_kinds),
        "crash_kinds": crash_kinds.most_common(),
        "crash_details": [{**c, "count": crash_kinds[c["kind"]]} for c in crashes],
        "slowest_example_ms": slowest[0] * 1e3,
    }


def report(results: list[dict]) -> str:
    lines = [
        f"{'target':<13} {'examples':>9} {'valid/intact':>12} {'damaged':>8} "
        f"{'typed errors':>12} {'distinct':>8} {'crashes':>7} {'slowest ms':>10}"
    ]
    for r in results:
        o = r["outcomes"]
        typed = sum(v for k, v in o.items() if k.endswith("Error"))
        lines.append(
            f"{r['target']:<13} {r['examples']:>9} {o.get('valid', 0) + o.get('intact', 0):>12} "
            f"{o.get('damaged', 0):>8} {typed:>12} {r['distinct_errors']:>8} "
            f"{r['crashes']:>7} {r['slowest_example_ms']:>10.1f}"
        )
    for r in results:
        lines += ["", f"{r['target']}: most frequent of {r['distinct_errors']} distinct errors"]
        lines += [f"  {n:>6}  {e}" for e, n in r["errors"][:8]]
        if r["crashes"]:
            lines += ["", f"{r['target']}: {r['crashes']} crashes of {r['distinct_crashes']} kinds"]
        for c in r["crash_details"]:
            lines += [f"  CRASH x{c['count']} {c['error']}  (input {c['input']})", c["traceback"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="per target (60)")
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    ap.add_argument("--batch", type=int, default=500, help="examples per seed")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"))
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    ap.add_argument("--out", type=Path, help="also write the raw figures to this JSON file")
    ap.add_argument("--memory-gb", type=float, default=4.0,
                    help="address-space limit of this process (a blow-up becomes a counted "
                    "MemoryError instead of the machine's OOM killer)")  # fmt: skip
    args = ap.parse_args(argv)
    limit = int(args.memory_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    # Repairs and damage are logged as warnings on every other example; they are counted.
    logging.getLogger("stimloop").setLevel(logging.ERROR)
    results = [fuzz(t, args.seconds, args.batch, args.seed, args.crash_dir) for t in args.targets]
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1) if args.json else report(results))
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
