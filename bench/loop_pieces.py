"""Two pieces of the closed-loop path, each alone: push → ``Inlet.pull`` and the gate's fire.

``bench/loop_latency.py`` measures the whole path; this script splits off the two parts a
code change is most likely to move, so that two checkouts can be compared on the same
machine in the same hour (run it once per checkout, alternating, e.g. with
``PYTHONPATH`` pointing at each):

* **pull**: a producer process pushes 64-channel float32 EEG at 1 kHz, one sample per
  push, each stamped with ``local_clock()`` at its push; stimloop's ``Inlet.pull(0.01)``
  reads it in a loop. Latency = ``local_clock()`` when ``pull`` returns − the stamp of the
  newest sample it returned (the inlet's own checks: gaps, trusted time, finiteness).
* **fire**: ``SafeStimulator.fire()`` on a ``SimulatedStimulator`` with a bound freshness
  function, in-process: ``local_clock()`` before the call → the driver's trigger time
  (the gate's checks and locks; what it publishes after the trigger is not counted).

Usage: ``python bench/loop_pieces.py [--seconds 8] [--pulses 2500] [--json]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid

from stimloop.stream.lslconfig import use_machine_scope

use_machine_scope()  # before liblsl loads: benchmark streams stay on this machine

import numpy as np
import pylsl


def produce(source_id: str, seconds: float) -> None:
    from stimloop.stream.outlet import Outlet, channel_specs

    labels = [f"c{i}" for i in range(64)]
    out = Outlet("pieces", "EEG", source_id, channel_specs(labels, "uV", "EEG"), 1000.0,
                 "float32", 1)  # fmt: skip
    x = np.zeros((1, 64), np.float32)
    t_next = time.perf_counter()
    t_end = t_next + seconds
    while t_next < t_end:
        t_next += 0.001
        while time.perf_counter() < t_next:  # a busy wait: 1 ms pacing without sleep jitter
            pass
        out.push(x, np.array([pylsl.local_clock()]))


def pull_latency(seconds: float) -> dict:
    from stimloop.stream.inlet import Inlet

    source_id = f"bench-pieces-{uuid.uuid4().hex[:8]}"
    producer = subprocess.Popen([sys.executable, __file__, "--produce", source_id,
                                 "--seconds", str(seconds + 4.0)])  # fmt: skip
    try:
        inlet = Inlet(source_id).connect()
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:  # settle, as the engine's inlet does
            inlet.pull(0.01)
        lat, sizes = [], []
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            chunk = inlet.pull(0.01)
            now = pylsl.local_clock()
            if len(chunk):
                lat.append((now - chunk.timestamps[-1]) * 1e3)
                sizes.append(len(chunk))
    finally:
        producer.wait(30.0)
    if not lat:
        raise SystemExit("the inlet received nothing from the producer")
    a = np.asarray(lat)
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "pulls": int(a.size),
            "samples_per_pull": float(np.mean(sizes))}  # fmt: skip


def fire_cost(n: int) -> dict:
    from stimloop.devices.limits import SafetyLimits
    from stimloop.devices.safety import SafeStimulator
    from stimloop.devices.stimulators.simulated import SimulatedStimulator

    gate = SafeStimulator(SimulatedStimulator(), SafetyLimits(min_ipi_s=0.001, max_pulses=n + 10),
                          override_reason="benchmark: simulated stimulator, 1 ms IPI")  # fmt: skip
    gate.connect()
    gate.set_intensity(10.0)
    gate.arm()
    gate.bind_stream(lambda: (0.001, True, ""))
    cost = []
    for _ in range(n):
        gate.heartbeat()
        t0 = pylsl.local_clock()
        t = gate.fire()
        cost.append((t - t0) * 1e6)
        time.sleep(0.0012)
    gate.close()
    a = np.asarray(cost[n // 5 :])  # the first fifth warms caches and branch predictors
    return {"p50_us": float(np.percentile(a, 50)), "p90_us": float(np.percentile(a, 90)),
            "p99_us": float(np.percentile(a, 99)), "n": int(a.size)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="pull measurement, s")
    ap.add_argument("--pulses", type=int, default=2500, help="gate fire calls")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--produce", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.produce:
        produce(args.produce, args.seconds)
        return
    import stimloop

    result = {"code": list(stimloop.__path__), "pull": pull_latency(args.seconds),
              "fire": fire_cost(args.pulses)}  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return
    p, f = result["pull"], result["fire"]
    print(f"code: {result['code'][0]}")
    print(
        f"push -> Inlet.pull return (ms): p50 {p['p50_ms']:.3f}  p90 {p['p90_ms']:.3f}  "
        f"p99 {p['p99_ms']:.3f}  ({p['pulls']} pulls, {p['samples_per_pull']:.2f} samples each)"
    )
    print(f"gate fire() -> driver trigger (µs): p50 {f['p50_us']:.1f}  p90 {f['p90_us']:.1f}  "
          f"p99 {f['p99_us']:.1f}  ({f['n']} pulses)")  # fmt: skip


if __name__ == "__main__":
    main()
