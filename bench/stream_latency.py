"""Acquisition latency and CPU: stimloop's Inlet vs MNE-LSL's StreamLSL vs raw pylsl.

One producer process pushes a 64-channel float32 stream every millisecond, stamping each
chunk with ``local_clock()`` at the moment of the push. Each consumer then runs in its
own process against that same outlet, one after the other, and records the *age of the
newest sample when the consumer sees it* (``local_clock() - timestamp``) and its own CPU
time. Consumers:

- ``stimloop``: ``Inlet.pull(timeout)`` (blocking wait for the first sample, then drain);
- ``mne_lsl``: ``StreamLSL`` with ``acquisition_delay=0.001`` (its 1 ms acquisition
  thread), polled by the consumer every 0.2 ms for new samples;
- ``pylsl_floor``: raw ``pull_sample`` blocking + ``pull_chunk`` drain, no bookkeeping.

Usage: ``python bench/stream_latency.py [--seconds 20] [--rate 5000] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from stimloop.stream.lslconfig import use_machine_scope

use_machine_scope()  # before liblsl loads: benchmark streams stay on this machine

import numpy as np
import pylsl

N_CH = 64


def produce(source_id: str, rate: float, seconds: float) -> None:
    """Push ``rate`` Hz × 64 ch in 1 ms chunks, stamped at push time."""
    info = pylsl.StreamInfo("bench", "EEG", N_CH, rate, pylsl.cf_float32, source_id)
    outlet = pylsl.StreamOutlet(info, 1)
    per_ms = max(1, round(rate / 1000.0))
    chunk = np.random.default_rng(0).standard_normal((per_ms, N_CH)).astype(np.float32)
    print("ready", flush=True)
    t_next = time.perf_counter()
    t_end = t_next + seconds
    while t_next < t_end:
        t_next += per_ms / rate
        while (wait := t_next - time.perf_counter()) > 0:
            time.sleep(wait)
        outlet.push_chunk(chunk, pylsl.local_clock())


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def consume(kind: str, source_id: str, seconds: float) -> dict:
    """Run one consumer; return its ages (ms) and CPU share of one core."""
    ages: list[float] = []
    n = 0
    if kind == "stimloop":
        from stimloop.stream.inlet import Inlet

        inlet = Inlet(source_id, chunk_period_s=0.001).connect()
        inlet.pull(0.5)
        cpu0, t_end = _cpu_s(), time.monotonic() + seconds
        while time.monotonic() < t_end:
            chunk = inlet.pull(0.1)
            if len(chunk):
                ages.append(pylsl.local_clock() - chunk.timestamps[-1])
                n += len(chunk)
        inlet.close()
    elif kind == "mne_lsl":
        from mne_lsl.stream import StreamLSL

        stream = StreamLSL(bufsize=1.0, source_id=source_id).connect(acquisition_delay=0.001)
        time.sleep(0.5)
        cpu0, t_end = _cpu_s(), time.monotonic() + seconds
        while time.monotonic() < t_end:
            new = stream.n_new_samples
            if new:
                _, ts = stream.get_data(winsize=new / stream.info["sfreq"])
                ages.append(pylsl.local_clock() - ts[-1])
                n += new
            else:
                time.sleep(0.0002)
        stream.disconnect()
    elif kind == "pylsl_floor":
        info = pylsl.resolve_byprop("source_id", source_id, 1, 5.0)[0]
        inlet = pylsl.StreamInlet(info, recover=False)
        inlet.open_stream(5.0)
        offset = inlet.time_correction(5.0)
        buf = np.empty((8192, N_CH), np.float32)
        cpu0, t_end = _cpu_s(), time.monotonic() + seconds
        while time.monotonic() < t_end:
            _, ts = inlet.pull_chunk(0.1, 8192, buf, min_samples=1, as_numpy=True)
            if len(ts):
                ages.append(pylsl.local_clock() - (ts[-1] + offset))
                n += len(ts)
    else:
        raise ValueError(f"unknown consumer {kind!r}")
    cpu = (_cpu_s() - cpu0) / seconds * 100.0
    a = np.asarray(ages) * 1000.0
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "cpu_percent_of_one_core": cpu,
        "samples": n,
        "wakeups": int(a.size),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="per consumer")
    ap.add_argument("--rate", type=float, default=5000.0, help="Hz, 64 channels")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--role", choices=["produce", "consume"], help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--source-id", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "produce":
        produce(args.source_id, args.rate, args.seconds)
        return
    if args.role == "consume":
        print(json.dumps(consume(args.kind, args.source_id, args.seconds)))
        return

    sid = f"bench-latency-{uuid.uuid4().hex[:8]}"
    kinds = ["stimloop", "mne_lsl", "pylsl_floor"]
    total = len(kinds) * (args.seconds + 4.0) + 5.0
    me = [sys.executable, __file__, "--rate", str(args.rate), "--source-id", sid]
    producer = subprocess.Popen(
        [*me, "--role", "produce", "--seconds", str(total)], stdout=subprocess.PIPE, text=True
    )
    producer.stdout.readline()
    results = {}
    # MNE-LSL bundles its own liblsl, which resolves nothing through the loopback
    # broadcast address and does not merge the duplicate answers of the two addresses in
    # stimloop's config; it gets liblsl's plain machine scope (fine with one producer).
    plain = Path(tempfile.mkdtemp()) / "lsl_plain_machine.cfg"
    plain.write_text("[multicast]\nResolveScope = machine\n[log]\nlevel = -3\n")
    try:
        for kind in kinds:
            env = {**os.environ, "LSLAPICFG": str(plain)} if kind == "mne_lsl" else None
            out = subprocess.run(
                [*me, "--role", "consume", "--kind", kind, "--seconds", str(args.seconds)],
                capture_output=True, text=True, check=True, env=env,
            )  # fmt: skip
            results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        producer.kill()
    results["setup"] = {"channels": N_CH, "rate_hz": args.rate, "push_period_ms": 1.0,
                        "seconds_per_consumer": args.seconds, "cpus": os.cpu_count()}  # fmt: skip
    if args.json:
        print(json.dumps(results))
        return
    print(f"64 ch x {args.rate:g} Hz, pushed every 1 ms; age of newest sample when seen")
    print(f"{'consumer':<14} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU %core':>10}")
    for kind in kinds:
        r = results[kind]
        print(
            f"{kind:<14} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['max_ms']:>8.2f} "
            f"{r['cpu_percent_of_one_core']:>10.1f}"
        )


if __name__ == "__main__":
    main()
