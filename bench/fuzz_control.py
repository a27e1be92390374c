"""Fuzz the control channel's parser for longer than CI can (issue #15).

``loop/control.py: parse_command`` gets every request a local process writes on a
session's control socket. It must return a known command with known, typed arguments
(which then reads back the same when sent again) or raise ``ControlError``; anything
else is a **crash**, counted, with its input and traceback printed. The inputs are the
five families of ``tests/faults/fuzz_control_inputs.py`` (raw bytes, any JSON, command-
shaped objects with forged keys, mutated valid commands, deep nesting), the same
strategies the bounded CI run (``tests/faults/test_fault_control_fuzz.py``) uses.

Generation runs in batches of ``--batch`` examples per family with successive seeds
until ``--seconds`` per family have passed. Distinct errors are the ControlError
messages with numbers and quoted values blanked. The slowest example shows that
nothing came near a hang.

Usage: ``python bench/fuzz_control.py [--seconds 30] [--batch 500] [--seed 0] [--json]``;
exits 1 if anything crashed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "faults"))

import fuzz_control_inputs as inputs
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from stimloop.loop.control import parse_command
from stimloop.loop.errors import ControlError

FAMILIES = {
    "bytes": st.binary(max_size=inputs.MAX_REQUEST + 64),
    "json": inputs.json_values.map(lambda v: json.dumps(v).encode()),
    "command-like": inputs.command_like(),
    "mutated": inputs.mutated(),
    "deep": inputs.deep(),
}


def template(message: str) -> str:
    """A message with its varying parts blanked, to count distinct errors."""
    m = re.sub(r"\(.*\)", "(…)", message)  # json's own detail: line/column/char
    m = re.sub(r"b'[^']*'|'[^']*'|\"[^\"]*\"", "'…'", m)
    return re.sub(r"(?<![\w.-])[-+]?\d+(\.\d+)?", "N", m)[:120]


def fuzz(family: str, seconds: float, batch: int, first_seed: int) -> dict:
    outcomes: Counter = Counter()
    errors: Counter = Counter()
    crashes: list[dict] = []
    slowest = [0.0, 0]

    def one(data: bytes) -> None:
        t0 = time.perf_counter()
        try:
            cmd, args = parse_command(data)
            inputs.check_outcome(data, cmd, args)
            assert parse_command(inputs.encode(cmd, args)) == (cmd, args), "no round trip"
            outcomes["accepted"] += 1
        except ControlError as exc:
            outcomes["refused"] += 1
            errors[template(str(exc))] += 1
        except Exception as exc:  # a crash: anything else, or a broken promise
            outcomes["crash"] += 1
            if len(crashes) < 5:
                crashes.append({"input": data[:200].hex(), "size": len(data), "error": repr(exc),
                                "traceback": traceback.format_exc()})  # fmt: skip
        dt = time.perf_counter() - t0
        if dt > slowest[0]:
            slowest[:] = [dt, len(data)]

    t_end = time.monotonic() + seconds
    s = first_seed
    while time.monotonic() < t_end:
        run = settings(max_examples=batch, database=None, deadline=None,
                       phases=[Phase.generate],
                       suppress_health_check=list(HealthCheck))(
            seed(s)(given(FAMILIES[family])(one)))  # fmt: skip
        run()
        s += 1
    return {
        "family": family,
        "examples": sum(outcomes.values()),
        "accepted": outcomes["accepted"],
        "refused": outcomes["refused"],
        "distinct_errors": len(errors),
        "crashes": outcomes["crash"],
        "slowest_ms": round(slowest[0] * 1e3, 3),
        "slowest_input_bytes": slowest[1],
        "seeds": [first_seed, s - 1],
        "errors": dict(errors.most_common()),
        "crash_samples": crashes,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="per family, s")
    p.add_argument("--batch", type=int, default=500, help="examples per Hypothesis run")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=list(FAMILIES))
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = p.parse_args()
    results = [fuzz(f, args.seconds, args.batch, args.seed) for f in args.families]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'family':<13} {'examples':>9} {'accepted':>9} {'refused':>9} "
              f"{'distinct err':>12} {'crashes':>7} {'slowest ms':>10} {'(bytes)':>8}")  # fmt: skip
        for r in results:
            print(f"{r['family']:<13} {r['examples']:>9} {r['accepted']:>9} {r['refused']:>9} "
                  f"{r['distinct_errors']:>12} {r['crashes']:>7} {r['slowest_ms']:>10} "
                  f"{r['slowest_input_bytes']:>8}")  # fmt: skip
        total = Counter()
        for r in results:
            total.update({k: r[k] for k in ("examples", "accepted", "refused", "crashes")})
        distinct = len({e for r in results for e in r["errors"]})
        print(f"{'all':<13} {total['examples']:>9} {total['accepted']:>9} {total['refused']:>9} "
              f"{distinct:>12} {total['crashes']:>7}")  # fmt: skip
        for r in results:
            for c in r["crash_samples"]:
                print(f"\nCRASH in {r['family']} ({c['size']} bytes): {c['error']}\n"
                      f"{c['traceback']}")  # fmt: skip
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
