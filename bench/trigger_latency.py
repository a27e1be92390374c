"""Trigger latency and jitter: from ``fire()`` to the device seeing the trigger.

What is measured (one run, p50 / p99 / max, in ms):

1. **Magstim serial fire command** — ``Magstim200.fire()`` called → the pty emulator
   has received the complete, checksum-valid ``EH`` command (timestamped by the emulator
   thread right after ``select`` wakes). Real driver code, real pyserial, real tty.
2. **MagPro serial fire frame** — same for ``MagProStimulator.fire()`` and its 6-byte frame.
3. **QuickFire / RTS proxy** — a Linux pty has no modem-control lines, so the RTS
   edge cannot be observed here. The proxy is the host-side path QuickFire takes:
   ``fire()`` entry → pyserial ``rts = True`` returned (``ioctl(TIOCMBIS)`` issued; on
   the pty the kernel rejects it with ENOTTY at the tty layer, after the same syscall
   entry). On a native UART the edge follows the ioctl return by a register write; a
   USB-serial adapter adds its USB frame (up to ~1 ms).
4. **Scheduled fire accuracy** — ``SimulatedStimulator.fire(at=t)``: trigger time − t
   (sleep, then spin the last 1 ms).

A pty transfers bytes without baud-rate delay, so rows 1-2 also print the line time a
real port adds (10 bits per byte in 8N1: 3 bytes at 9600 baud = 3.125 ms; 6 bytes at
38400 baud = 1.5625 ms). Reference figures (published, quoted in the issue): parallel-
port TTL ~0.25 ms, QuickFire ~1 ms, serial fire command 5-8 ms.

Usage: ``python bench/trigger_latency.py [--n 300] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from stimloop.stream.lslconfig import use_machine_scope

use_machine_scope()  # before liblsl loads: benchmark streams stay on this machine

import numpy as np
import pylsl
import serial

from stimloop.devices.base import wait_until
from stimloop.devices.emulators.magstim import MagstimEmulator
from stimloop.devices.emulators.magventure import MagProEmulator
from stimloop.devices.stimulators.magstim import Magstim200
from stimloop.devices.stimulators.magventure import MagProStimulator
from stimloop.devices.stimulators.simulated import SimulatedStimulator

GAP_S = 0.01  # between trials, so each fire starts from an idle line


def _stats(ms: np.ndarray) -> dict:
    return {
        "n": int(ms.size),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "mean_ms": float(ms.mean()),
    }


def serial_command(make_emu, make_drv, command: bytes, n: int) -> np.ndarray:
    emu = make_emu().start()
    drv = make_drv(emu.port)
    drv.connect()
    try:
        drv.set_intensity(30)
        drv.arm()
        out = []
        for _ in range(n):
            wait_until(pylsl.local_clock() + GAP_S)
            k = len(emu.received)
            t_call = pylsl.local_clock()
            drv.fire()
            t_recv = next(t for t, c in emu.received[k:] if c == command)
            out.append(t_recv - t_call)
        return np.array(out) * 1e3
    finally:
        drv.close()
        emu.close()


def rts_proxy(n: int) -> np.ndarray:
    emu = MagstimEmulator()
    ser = serial.Serial(emu.port, 9600)
    out = []
    try:
        for _ in range(n):
            wait_until(pylsl.local_clock() + GAP_S)
            t_call = pylsl.local_clock()
            try:
                ser.rts = True
            except (serial.SerialException, OSError):
                pass  # ENOTTY on a pty: the ioctl was issued and rejected by the tty layer
            out.append(pylsl.local_clock() - t_call)
        return np.array(out) * 1e3
    finally:
        ser.close()
        emu.close()


def scheduled(n: int) -> np.ndarray:
    drv = SimulatedStimulator(arm_time_s=0.0, heat_c_per_pulse=0.0)
    drv.connect()
    try:
        drv.set_intensity(30)
        drv.arm()
        out = []
        for _ in range(n):
            at = pylsl.local_clock() + GAP_S
            out.append(drv.fire(at=at) - at)
        return np.array(out) * 1e3
    finally:
        drv.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="trials per row")
    ap.add_argument("--json", action="store_true", help="print machine-readable figures")
    args = ap.parse_args(argv)
    rows = [
        (
            "Magstim 'EH' serial command (pty)",
            _stats(serial_command(lambda: MagstimEmulator(arm_time_s=0.0, heat_c_per_pulse=0.0),
                                  Magstim200, b"EH", args.n)),
            3 * 10 / 9600 * 1e3,
            "serial fire command 5-8 ms",
        ),
        (
            "MagPro fire frame (pty)",
            _stats(serial_command(lambda: MagProEmulator(arm_time_s=0.0, heat_c_per_pulse=0.0),
                                  MagProStimulator, b"\x03\x01", args.n)),
            6 * 10 / 38400 * 1e3,
            "serial fire command 5-8 ms",
        ),
        ("QuickFire proxy: rts=True ioctl returned", _stats(rts_proxy(args.n)), 0.0,
         "QuickFire ~1 ms; parallel port ~0.25 ms"),
        ("fire(at=t): trigger - t (simulated)", _stats(scheduled(args.n)), 0.0, "-"),
    ]  # fmt: skip
    machine = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps({"machine": machine, "rows": [
            {"row": r, **s, "line_time_ms": lt, "reference": ref} for r, s, lt, ref in rows
        ]}, indent=2))  # fmt: skip
        return 0
    print(f"trigger latency, {args.n} trials per row; {machine}")
    head = (
        f"{'path':44s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'+line ms':>9s}"
        "  reference (published)"
    )
    print(head)
    print("-" * len(head))
    for r, s, lt, ref in rows:
        print(f"{r:44s} {s['p50_ms']:8.3f} {s['p99_ms']:8.3f} {s['max_ms']:8.3f} {lt:9.3f}  {ref}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
