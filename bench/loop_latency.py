"""Closed-loop latency: from the LSL push of the sample that completes a firing condition
to the stimulator driver's fire call, with the raw pylsl floor from the same run.

Setup (this machine, 2 cores): a producer process pushes 64-channel EEG at 1000 Hz one
sample at a time (each stamped with ``local_clock()`` at its push), plus ECG at 500 Hz
and EDA at 100 Hz. Every ``--every`` ms one EEG sample carries a trigger value. The
stimloop side is the real :class:`~stimloop.loop.engine.Engine`: Inlets, a threshold
protocol, the HAL gate (interlocks, watchdog) and the simulated stimulator, while the
engine also runs the Hjorth + phase kernel on the EEG and the heart stage on the ECG,
so the DSP load is that of a real session. Latency = driver fire time − push time of the
trigger sample.

The floor: a bare ``pylsl`` inlet on the same stream (blocking ``pull_sample``, nothing
else), push → pull of the trigger samples.

Scheduled pulses (issue #15): the same engine, but each trigger asks for a pulse
``--lead`` ms after the trigger sample's stamp, as the phase-locked protocol plans its
pulses ahead. Fire-time error = driver fire time − planned time; a pulse the gate would
fire later than the protocol's tolerance (1 ms) is refused as ``late`` and counted.

Usage: ``python bench/loop_latency.py [--triggers 2000] [--scheduled 1000] [--lead 20]
[--every 40] [--json]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid

from stimloop.stream.lslconfig import use_machine_scope

use_machine_scope()  # before liblsl loads: benchmark streams stay on this machine

import numpy as np
import pylsl

TRIGGER_UV = 5000.0


def produce(prefix: str, every_ms: int, seconds: float) -> None:
    """Push EEG 64 ch @ 1 kHz sample by sample, ECG @ 500 Hz, EDA @ 100 Hz."""
    from stimloop.devices.sim.ecg import ECGGenerator
    from stimloop.devices.sim.eda import EDAGenerator
    from stimloop.devices.sim.eeg import EEGGenerator
    from stimloop.stream.outlet import Outlet, channel_specs

    eeg_gen = EEGGenerator(1000.0, 64, seed=1)
    eeg_out = Outlet("bench EEG", "EEG", f"{prefix}-eeg",
                     channel_specs(eeg_gen.labels, "uV", "EEG"), 1000.0, "float32", 1)  # fmt: skip
    ecg_out = Outlet("bench ECG", "ECG", f"{prefix}-ecg", channel_specs(["ECG"], "mV"), 500.0)
    eda_out = Outlet("bench EDA", "EDA", f"{prefix}-eda", channel_specs(["EDA"], "uS"), 100.0)
    eeg, _ = eeg_gen.generate(int(seconds * 1000) + 1000)
    ecg, _ = ECGGenerator(500.0, 70.0, seed=2).generate(int(seconds * 500) + 500)
    eda, _ = EDAGenerator(100.0, seed=3).generate(int(seconds * 100) + 100)
    eeg = eeg.astype(np.float32)
    print("ready", flush=True)
    # Each sample is stamped with its nominal time and pushed as soon as that time comes,
    # so the stamp is never later than the push: latencies are, if anything, overstated.
    t0 = pylsl.local_clock() + 0.1
    for n in range(int(seconds * 1000)):
        t_stamp = t0 + n / 1000.0
        while (wait := t_stamp - pylsl.local_clock()) > 0:
            time.sleep(wait if wait > 0.0005 else 0)
        x = eeg[n : n + 1].copy()
        if n % every_ms == every_ms - 1 and n > 3000:
            x[0, 0] = TRIGGER_UV
            # How late this push is against the sample's stamp, in µs, rides in channel
            # 1, so latency can be measured from the actual push as well as the stamp.
            x[0, 1] = (pylsl.local_clock() - t_stamp) * 1e6
        eeg_out.push(x, t_stamp)
        if n % 2 == 1:
            ecg_out.push(ecg[n // 2 : n // 2 + 1, None], t_stamp)
        if n % 10 == 9:
            eda_out.push(eda[n // 10 : n // 10 + 1, None], t_stamp)


def run_engine(
    prefix: str,
    n_triggers: int,
    per_pulse: bool = False,
    lead_s: float = 0.0,
    timeout_s: float = 600.0,
) -> dict:
    """Run the engine until ``n_triggers`` pulses; latency figures in ms (with
    ``per_pulse``, also each pulse's sample stamp ``t_sample`` and ``from_push_ms``).
    ``lead_s`` > 0 plans each pulse that long after its trigger sample instead of at
    once, and adds the fire-time error and the late refusals. After ``timeout_s`` the
    figures cover the pulses fired so far (refused triggers do not count toward
    ``n_triggers``, so a run with many refusals could otherwise outlast its producer)."""
    from stimloop.devices.limits import SafetyLimits
    from stimloop.devices.safety import SafeStimulator
    from stimloop.devices.stimulators.simulated import SimulatedStimulator
    from stimloop.dsp.phase import PhaseEstimator
    from stimloop.dsp.spatial import hjorth_weights
    from stimloop.loop.engine import Engine
    from stimloop.loop.heart_stage import HeartStage
    from stimloop.loop.protocol import ThresholdProtocol
    from stimloop.stream.inlet import Inlet
    from stimloop.stream.outlet import marker_outlet

    class PhaseLoad:
        """The phase-locked protocol's per-chunk DSP, run as an EEG stage."""

        name, role = "phase", "eeg"

        def start(self, fs, labels, prefix):
            self.w, _ = hjorth_weights(labels, "C3")
            self.est = PhaseEstimator(fs)
            self.est.warmup()

        def update(self, chunk):
            self.est.update(chunk.data @ self.w, chunk.timestamps)

        def add_event(self, t_lsl, text=""):
            pass

        def note_pulses(self, t_lsl):
            pass

        def close(self):
            pass

    inlets = {r: Inlet(f"{prefix}-{r}").connect() for r in ("eeg", "ecg", "eda")}
    stages = [PhaseLoad(), HeartStage()]
    for st in stages:
        st.start(inlets[st.role].rate_hz, inlets[st.role].channel_labels, prefix)
    gate = SafeStimulator(
        SimulatedStimulator(), SafetyLimits(min_ipi_s=0.02, max_pulses=n_triggers + 10),
        override_reason="latency benchmark: simulated stimulator, 25 Hz single pulses",
    )  # fmt: skip
    gate.connect()
    gate.set_intensity(10.0)
    gate.arm()
    markers = marker_outlet("bench decisions", f"{prefix}-decisions")
    for inlet in inlets.values():
        inlet.pull(0.0)

    class PushAwareThreshold(ThresholdProtocol):
        """The threshold protocol, also logging the trigger sample's push lateness, and
        planning the pulse ``lead_s`` after the trigger sample when asked to."""

        max_lead_s = lead_s + 0.01  # the scheduler refuses plans further ahead

        def update(self, chunk):
            request = super().update(chunk)
            if request is not None:
                k = request.info["index"] - chunk.first_index
                request.info["push_late_s"] = float(chunk.data[k, 1]) * 1e-6
                if lead_s > 0:
                    t_fire = request.info["t_sample"] + lead_s
                    request = dataclasses.replace(request, t_fire=t_fire)
            return request

    protocol = PushAwareThreshold(0, TRIGGER_UV / 2, n_pulses=n_triggers)
    engine = Engine(inlets["eeg"], protocol, gate, markers,
                    others={"ecg": inlets["ecg"], "eda": inlets["eda"]}, stages=stages,
                    chunk_period_s=0.01)  # fmt: skip
    engine.start()
    if not engine.wait(timeout_s):
        print(f"warning: {len(engine.pulses)} of {n_triggers} pulses fired in {timeout_s:.0f} s "
              f"({len(engine.refusals)} refused); figures over those", file=sys.stderr)  # fmt: skip
    engine.stop()
    gate.close()
    if not engine.pulses:
        reasons = sorted({r.get("error", "?") for r in engine.refusals})[:3]
        raise SystemExit(f"no pulse fired in {timeout_s:.0f} s; refusals: {reasons}")
    if lead_s > 0:
        err = np.array([p["fire_error_ms"] for p in engine.pulses])
        late = sum("[late]" in r.get("error", "") for r in engine.refusals)
        return {
            "lead_ms": lead_s * 1e3,
            "fire_error_p50_ms": float(np.percentile(err, 50)),
            "fire_error_p99_ms": float(np.percentile(err, 99)),
            "fire_error_max_ms": float(err.max()),
            "fired": int(err.size),
            "late_refused": int(late),
            "refused": len(engine.refusals),
        }
    lat = np.array([(p["t_trigger"] - p["t_sample"]) * 1e3 for p in engine.pulses])
    push = np.array([p["push_late_s"] * 1e3 for p in engine.pulses])
    from_push = lat - push
    detail = {}
    if per_pulse:
        detail = {"t_sample": [p["t_sample"] for p in engine.pulses],
                  "from_push_ms": from_push.tolist()}  # fmt: skip
    return {
        **detail,
        "p50_ms": float(np.percentile(from_push, 50)),
        "p99_ms": float(np.percentile(from_push, 99)),
        "max_ms": float(from_push.max()),
        "n": int(lat.size),
        "from_stamp_p50_ms": float(np.percentile(lat, 50)),
        "from_stamp_p99_ms": float(np.percentile(lat, 99)),
        "refused": len(engine.refusals),
        "engine_busy": engine.stats.busy_percentiles(),
        "gc_collections": engine.stats.gc_collections,
        "realtime_priority": engine.stats.realtime,
        "allocated_blocks_growth": engine.stats.allocated_blocks_growth,
        "iterations": engine.stats.iterations,
    }


def run_floor(prefix: str, n_triggers: int, timeout_s: float = 600.0) -> dict:
    info = pylsl.resolve_byprop("source_id", f"{prefix}-eeg", 1, 5.0)[0]
    inlet = pylsl.StreamInlet(info, recover=False)
    inlet.open_stream(5.0)
    inlet.time_correction(5.0)
    buf = np.empty((64, 64), np.float32)
    lat = []
    t_end = time.monotonic() + 0.5  # let the new inlet settle, as the engine's does
    while time.monotonic() < t_end:
        inlet.pull_chunk(0.1, 64, buf)
    deadline = time.monotonic() + timeout_s
    while len(lat) < n_triggers and time.monotonic() < deadline:
        # The floor: wake on the first sample, drain the rest, nothing else.
        _, ts = inlet.pull_chunk(1.0, 64, buf, min_samples=1, as_numpy=True)
        now = pylsl.local_clock()
        hits = np.flatnonzero(buf[: len(ts), 0] > TRIGGER_UV / 2)
        lat += [(now - ts[k]) * 1e3 - buf[k, 1] * 1e-3 for k in hits]  # from the push
    if not lat:
        raise SystemExit(f"the bare pylsl inlet saw no trigger in {timeout_s:.0f} s")
    lat = np.asarray(lat)
    return {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max()), "n": int(lat.size)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--triggers", type=int, default=2000)
    ap.add_argument("--scheduled", type=int, default=1000, help="scheduled pulses (0: none)")
    ap.add_argument("--lead", type=float, default=20.0, help="ms from trigger to planned fire")
    ap.add_argument("--every", type=int, default=40, help="ms between trigger samples")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--produce", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.produce:
        produce(args.produce, args.every, args.seconds)
        return
    prefix = f"bench-loop-{uuid.uuid4().hex[:8]}"
    floor_n = max(200, args.triggers // 4)
    seconds = 3.0 + (args.triggers + floor_n + args.scheduled) * args.every / 1000.0 + 20.0
    producer = subprocess.Popen(
        [sys.executable, __file__, "--produce", prefix, "--every", str(args.every),
         "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    producer.stdout.readline()
    try:
        per_trigger_s = 2.0 * args.every / 1000.0  # twice the nominal pace, then give up
        engine = run_engine(prefix, args.triggers, timeout_s=10.0 + per_trigger_s * args.triggers)
        floor = run_floor(prefix, floor_n, timeout_s=10.0 + per_trigger_s * floor_n)
        sched = (
            run_engine(
                prefix,
                args.scheduled,
                lead_s=args.lead / 1e3,
                timeout_s=10.0 + per_trigger_s * args.scheduled,
            )
            if args.scheduled
            else {}
        )
    finally:
        producer.kill()
    result = {"stimloop": engine, "pylsl_floor": floor, "scheduled": sched,
              "setup": {"eeg": "64 ch x 1000 Hz, 1-sample pushes", "ecg_hz": 500, "eda_hz": 100,
                        "trigger_every_ms": args.every, "cpus": os.cpu_count()}}  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return
    print("push of the triggering sample -> stimulator fire call (ms; from the actual push)")
    print(f"{'path':<14} {'p50':>7} {'p99':>7} {'max':>7} {'n':>6}")
    for name in ("stimloop", "pylsl_floor"):
        r = result[name]
        print(f"{name:<14} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} {r['max_ms']:>7.2f} {r['n']:>6}")
    p50, p99 = engine["from_stamp_p50_ms"], engine["from_stamp_p99_ms"]
    print(f"stimloop from the sample's nominal stamp (includes producer lateness): "
          f"p50 {p50:.3f}, p99 {p99:.3f}")  # fmt: skip
    print(f"engine busy per iteration: {engine['engine_busy']}")
    print(f"engine thread real-time priority: {engine['realtime_priority']}")
    print(f"GC collections during the loop: {engine['gc_collections']}; "
          f"net allocated blocks: {engine['allocated_blocks_growth']}")  # fmt: skip
    if sched:
        print(
            f"scheduled pulses ({sched['lead_ms']:g} ms after the trigger sample): fire-time "
            f"error p50 {sched['fire_error_p50_ms']:.3f}, p99 {sched['fire_error_p99_ms']:.3f}, "
            f"max {sched['fire_error_max_ms']:.3f} ms over {sched['fired']} fired; "
            f"{sched['late_refused']} refused as late, {sched['refused']} refused in all"
        )


if __name__ == "__main__":
    main()
