"""Train abort latency: from a disarm (gate or e-stop) to the device, and the last pulse.

Real drivers (``MagstimRapid``, ``MagProStimulator``) over real pyserial to their pty
emulators, behind the real ``SafeStimulator``. Each trial starts a 10-pulse 20 Hz train,
stops it after a random 0.10-0.35 s (between its 3rd and 8th pulse) through the gate's
``disarm`` or the e-stop (``emergency_stop``), and reads the emulator's record: when the
disarm command (Magstim ``EA``, MagPro disable frame) arrived, and when each pulse was
delivered (the emulators run the train on the unit's clock and end it on that command).

Per row (p50 / p99 / max in ms over ``--n`` trials):

- ``to device``: stop called → the emulator has the complete disarm command;
- ``acked``: stop called → the call returned (the disarm's reply read by the driver);
- ``last pulse``: the last delivered pulse − stop called (negative: before the call);
- ``after ack``: pulses delivered after the call returned, summed over the trials (the
  guarantee: 0).

A pty has no baud rate: a real line adds ``+line ms`` to ``to device`` (8N1, 10 bits per
byte: Magstim's 3-byte ``EA`` at 9600 baud 3.125 ms, MagPro's 6-byte frame at 38400 baud
1.5625 ms), plus the unit's own command processing, which neither vendor publishes. No
published reference for the stop latency exists; the serial fire command's 5-8 ms
(``bench/trigger_latency.py``) is the nearest, the same path in the other direction.

Usage: ``python bench/train_abort.py [--n 30] [--json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time

from stimloop.stream.lslconfig import use_machine_scope

use_machine_scope()  # before liblsl loads: benchmark streams stay on this machine

import numpy as np
import pylsl

from stimloop.devices.base import TrainSpec
from stimloop.devices.emulators.magstim import MagstimEmulator
from stimloop.devices.emulators.magventure import MagProEmulator
from stimloop.devices.estop import emergency_stop, reset_emergency_stop
from stimloop.devices.limits import SafetyLimits
from stimloop.devices.safety import SafeStimulator
from stimloop.devices.stimulators.magstim import MagstimRapid
from stimloop.devices.stimulators.magventure import MagProStimulator

TRAIN = TrainSpec(frequency_hz=20.0, n_pulses=10)
DEVICES = {
    "Magstim Rapid2": (lambda: MagstimEmulator("rapid", arm_time_s=0.02), MagstimRapid,
                       lambda p: p == b"EA", 3 * 10 / 9600),
    "MagPro": (lambda: MagProEmulator(arm_time_s=0.02), MagProStimulator,
               lambda p: p == bytes([2, 0]), 6 * 10 / 38400),
}  # fmt: skip


def _stop(gate: SafeStimulator, path: str) -> None:
    if path == "gate disarm":
        gate.disarm("bench")
    else:
        emergency_stop("bench")


def _trial(gate: SafeStimulator, emu, is_stop, path: str, rng: random.Random) -> dict:
    if path == "e-stop":
        reset_emergency_stop("bench: next trial")
    gate.arm()
    n0, r0 = len(emu.pulses), len(emu.received)
    t0 = gate.fire_train()
    time.sleep(rng.uniform(0.10, 0.35))
    t_req = pylsl.local_clock()
    _stop(gate, path)
    t_ack = pylsl.local_clock()
    # To the train's planned end and past the inter-train interval: the gate's ledger
    # counts a stopped train whole (pulses and end time), which errs on the safe side.
    time.sleep(max(t0 + TRAIN.duration_s + 0.15 - pylsl.local_clock(), 0.0))
    pulses = [t for t, _ in emu.pulses[n0:]]
    t_recv = next(t for t, p in emu.received[r0:] if t >= t_req and is_stop(p))
    return {
        "to_device_ms": (t_recv - t_req) * 1e3,
        "acked_ms": (t_ack - t_req) * 1e3,
        "last_pulse_ms": (max(pulses) - t_req) * 1e3,
        "after_ack": sum(t > t_ack for t in pulses),
        "delivered": len(pulses),
    }


def run(device: str, path: str, n: int, seed: int) -> list[dict]:
    make_emu, driver, is_stop, _ = DEVICES[device]
    rng = random.Random(seed)
    limits = SafetyLimits(min_inter_train_s=0.1)
    with make_emu() as emu:
        gate = SafeStimulator(driver(emu.port), limits, "bench: back-to-back trains")
        try:
            gate.connect()
            gate.set_resting_motor_threshold(60.0)
            gate.set_intensity(30.0)
            gate.configure_train(TRAIN)
            return [_trial(gate, emu, is_stop, path, rng) for _ in range(n)]
        finally:
            reset_emergency_stop("bench done")
            gate.close()


def _pct(values: list[float]) -> tuple[float, float, float]:
    a = np.asarray(values)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=30, help="trials per row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print raw figures as JSON")
    args = ap.parse_args()
    rows = []
    for device, (_, _, _, line_s) in DEVICES.items():
        for path in ("gate disarm", "e-stop"):
            trials = run(device, path, args.n, args.seed)
            rows.append({"device": device, "path": path, "line_ms": line_s * 1e3,
                         "trials": trials})  # fmt: skip
    if args.json:
        meta = {"machine": platform.platform(), "python": sys.version.split()[0], "n": args.n}
        print(json.dumps({"meta": meta, "rows": rows}, indent=1))
        return
    head = (f"{'device / stop path':32s} {'to device p50/p99/max ms':>26s} {'+line':>6s} "
            f"{'acked p50/p99/max ms':>22s} {'last pulse p50/max ms':>22s} "
            f"{'after ack':>9s}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in rows:
        t = r["trials"]
        dev = _pct([x["to_device_ms"] for x in t])
        ack = _pct([x["acked_ms"] for x in t])
        last = _pct([x["last_pulse_ms"] for x in t])
        after = sum(x["after_ack"] for x in t)
        print(f"{r['device'] + ' / ' + r['path']:32s} {dev[0]:8.3f}{dev[1]:9.3f}{dev[2]:9.3f} "
              f"{r['line_ms']:6.3f} {ack[0]:7.3f}{ack[1]:8.3f}{ack[2]:7.3f} "
              f"{last[0]:11.1f}{last[2]:11.1f} {after:9d}")  # fmt: skip


if __name__ == "__main__":
    main()
