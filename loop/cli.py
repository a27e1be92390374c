"""The ``stimloop`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

_DEMO_HELP = """Run a full simulated closed-loop session: simulated EEG (64 ch, 1 kHz, mu rhythm
at C3), ECG (500 Hz) and EDA (100 Hz) over LSL, the phase-locked TMS protocol on a
simulated stimulator behind the HAL safety gate, live heart rate and SCRs. The summary
scores the session against the simulators' ground truth."""


def _live(args: argparse.Namespace):
    """A one-line live display on stderr (until the GUI window exists)."""

    def show(status: dict) -> None:
        counts = "  ".join(f"{r}: {n}" for r, n in status["samples"].items())
        line = f"samples {counts}  |  pulses {status['pulses']}  refused {status['refused']}"
        print(f"\r{line}", end="", file=sys.stderr, flush=True)

    return None if args.headless or args.json else show


def _window(args: argparse.Namespace):
    """Session hook that opens the live window in its own process (not with --headless or
    --json). The window only reads the session's streams; closing or crashing it never
    stops the session."""
    if args.headless or args.json:
        return None
    if not (
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM")
    ):
        # A machine without a screen (a server, CI) runs the session with the live
        # status line instead of failing to open a window.
        print("stimloop: no display found; showing live status here", file=sys.stderr)
        return None

    def start(session) -> None:
        import subprocess

        cmd = [sys.executable, "-m", "stimloop.gui", "--session", session.prefix,
               "--exit-with-session"]  # fmt: skip
        try:
            subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        except OSError as exc:
            print(f"stimloop: no window ({exc}); the session runs on", file=sys.stderr)

    return start


def _cmd_gui(args: argparse.Namespace) -> int:
    from stimloop.stream.lslconfig import use_machine_scope

    # Sessions are local (their control channel is on 127.0.0.1); so is the window.
    use_machine_scope()
    from stimloop.gui.app import main as gui_main

    return gui_main(["--session", args.session] if args.session else [])


def _cmd_demo(args: argparse.Namespace) -> int:
    from stimloop.stream.lslconfig import use_machine_scope

    # Simulated streams stay on this machine unless the user chose an LSL config.
    use_machine_scope()
    from stimloop.devices.sim.runner import SimConfig
    from stimloop.loop.demo import format_summary, run_demo

    sim = SimConfig(prefix=args.prefix) if args.prefix else None
    summary = run_demo(
        args.duration, sim, on_status=_live(args), on_open=_window(args), recording=args.record
    )
    if _live(args) is not None:
        print(file=sys.stderr)
    print(json.dumps(summary, default=float) if args.json else format_summary(summary))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from stimloop.loop.config import load_session
    from stimloop.loop.session import Session

    cfg = load_session(args.config)
    live = _live(args)
    with Session(cfg) as session:
        if (open_window := _window(args)) is not None:
            open_window(session)

        def tick(s: Session) -> None:
            if live is not None:
                eng = s.engine
                live({"samples": {r: st.samples for r, st in eng.streams.items()},
                      "pulses": len(eng.pulses), "refused": len(eng.refusals)})  # fmt: skip

        result = session.run(args.duration, on_tick=tick)
    summary = {
        "pulses": len(result.pulses),
        "refused": len(result.refusals),
        "streams": result.streams,
        "engine": result.engine,
    }
    if live is not None:
        print(file=sys.stderr)
    print(json.dumps(summary, default=float, indent=None if args.json else 2))
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from stimloop.devices.sim.runner import SimConfig, SimulatorSession

    cfg = SimConfig(
        prefix=args.prefix,
        seed=args.seed,
        roles=tuple(args.roles),
        eeg_fs=args.eeg_rate,
        eeg_channels=args.eeg_channels,
        iaf_hz=args.iaf,
        target=args.target,
        ecg_fs=args.ecg_rate,
        hr_bpm=args.hr,
        eda_fs=args.eda_rate,
    )
    with SimulatorSession(cfg) as sim:
        ids = ", ".join(cfg.source_id(r) for r in cfg.roles)
        print(f"simulating {ids} (+ truth streams); Ctrl-C stops", file=sys.stderr)
        t_end = time.monotonic() + args.duration if args.duration else float("inf")
        try:
            while time.monotonic() < t_end:
                time.sleep(0.2)
                sim.check()
        except KeyboardInterrupt:
            pass
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from stimloop.stream.recorder import Recorder, format_stats

    rec = Recorder(args.output, args.source_id or None, discover_s=args.wait).start()
    print(f"recording to {args.output}; Ctrl-C stops", file=sys.stderr)
    print(format_stats(rec.stats()), file=sys.stderr)
    t_start = time.monotonic()
    t_end = t_start + args.duration if args.duration else float("inf")
    tty = sys.stderr.isatty()
    try:
        while time.monotonic() < t_end and rec.running:
            time.sleep(max(0.0, min(1.0, t_end - time.monotonic())))
            parts = [
                f"{s.source_id}: {s.n_samples}"
                + (f" ({s.effective_rate_hz:.1f} Hz)" if s.rate_hz > 0 else "")
                + (f" gaps {s.n_gaps}" if s.n_gaps else "")
                + (" LOST" if s.lost else "")
                for s in rec.stats()
            ]
            line = f"{time.monotonic() - t_start:6.1f} s  " + "  ".join(parts)
            print(f"\r{line}" if tty else line, end="" if tty else "\n", file=sys.stderr)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the recording cleanly: footers are written below
    finally:
        if tty:
            print(file=sys.stderr)
        stats = rec.stop()
    print(format_stats(stats))
    print(f"wrote {args.output} ({rec.bytes_written} bytes)")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from stimloop.stream.replay import Player

    player = Player(
        args.file,
        speed=args.speed,
        loop=args.loop,
        chunk_size=args.chunk_size,
        suffix=args.source_id_suffix,
    )
    if player.damage:
        print(f"warning: {player.damage}; replaying the data before it", file=sys.stderr)
    print(
        f"replaying {args.file} ({player.recording.duration_s:.1f} s at {args.speed:g}x"
        f"{', looped' if args.loop else ''}); Ctrl-C stops",
        file=sys.stderr,
    )
    for s, sid in zip(player.streams, player.source_ids, strict=True):
        print(
            f"  {sid:<40} {s.type:<9} {s.rate_hz:>8g} Hz {len(s.channels):>4} ch "
            f"{len(s):>9} samples",
            file=sys.stderr,
        )
    player.start()
    try:
        while not player.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        player.stop()
    pushed = player.samples_pushed()
    print("pushed " + ", ".join(f"{sid}: {n}" for sid, n in pushed.items()))
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from stimloop.loop.report import format_report, read_session, session_report

    rec = read_session(args.recording)
    report = session_report(rec)
    if args.plot:
        try:
            from stimloop.gui.figure import save_session_figure
        except ImportError as exc:
            print(f"stimloop analyze: error: --plot needs the gui extra "
                  f"(pip install 'stimloop[gui]'): {exc}", file=sys.stderr)  # fmt: skip
            return 2
        report["figure"] = {"path": args.plot, **save_session_figure(rec, args.plot)}
    print(json.dumps(report, default=float, indent=2) if args.json else format_report(report))
    if args.plot and not args.json:
        print(f"\nfigure: {args.plot}")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from stimloop.devices.registry import list_devices

    devices = list_devices()
    if args.json:
        print(json.dumps(devices, indent=2))
        return 0
    print(f"{'name':<20} {'kind':<12} description")
    for d in devices:
        print(f"{d['name']:<20} {d['kind']:<12} {d['description']}")
    return 0


def _cmd_estop(args: argparse.Namespace) -> int:
    from stimloop.devices.safety import send_emergency_stop

    # UDP is fire-and-forget: send a few datagrams; the latch ignores duplicates.
    for _ in range(3):
        send_emergency_stop(args.reason, port=args.port)
    print(f"emergency stop sent to 127.0.0.1:{args.port} ({args.reason})", file=sys.stderr)
    return 0


def _cmd_streams(args: argparse.Namespace) -> int:
    from stimloop.stream.discovery import format_streams, list_streams

    streams = list_streams(args.wait)
    print(json.dumps(streams, indent=2) if args.json else format_streams(streams))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``stimloop`` command."""
    parser = argparse.ArgumentParser(
        prog="stimloop",
        description="Closed-loop biosignal streaming, DSP and TMS control over LSL.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a full simulated session", description=_DEMO_HELP)
    demo.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    demo.add_argument("--headless", action="store_true", help="no window or live display")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.add_argument(
        "--prefix", help="source_id prefix of the simulators (default: unique per run)"
    )
    demo.add_argument(
        "--record",
        metavar="XDF",
        help="record the session, with the simulators' truth, to this XDF file "
        "({time} becomes the start time); read it with stimloop analyze",
    )
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser(
        "run",
        help="run a closed-loop session from a TOML file",
        description="Run the closed-loop session described by a session TOML file "
        "(see loop/configs/demo.toml for a commented example).",
    )
    run.add_argument("config", help="session .toml file")
    run.add_argument("--duration", type=float, default=None, help="seconds (overrides the file)")
    run.add_argument("--headless", action="store_true", help="no window or live display")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(func=_cmd_run)

    gui = sub.add_parser(
        "gui",
        help="open the live window of a running session",
        description="Attach the session window (signals, trends, phase, stimulator, stream "
        "health, controls and the emergency stop) to a running session.",
    )
    gui.add_argument("--session", help="session prefix (default: the only one running)")
    gui.set_defaults(func=_cmd_gui)

    sim = sub.add_parser(
        "simulate",
        help="publish simulated EEG/ECG/EDA with ground truth",
        description="Publish seeded simulators as LSL outlets until Ctrl-C or --duration.",
    )
    sim.add_argument("--prefix", default="stimloop-sim", help="source_id prefix")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--roles", nargs="+", default=["eeg", "ecg", "eda"], help="which signals")
    sim.add_argument("--duration", type=float, default=0.0, help="seconds (0 = until Ctrl-C)")
    sim.add_argument("--eeg-rate", type=float, default=1000.0, help="Hz")
    sim.add_argument("--eeg-channels", type=int, default=64)
    sim.add_argument("--iaf", type=float, default=10.0, help="individual alpha frequency, Hz")
    sim.add_argument("--target", default="C3", help="electrode carrying the known alpha phase")
    sim.add_argument("--ecg-rate", type=float, default=500.0, help="Hz")
    sim.add_argument("--hr", type=float, default=70.0, help="heart rate, bpm")
    sim.add_argument("--eda-rate", type=float, default=100.0, help="Hz")
    sim.set_defaults(func=_cmd_simulate)

    analyze = sub.add_parser(
        "analyze",
        help="report on a recorded session",
        description="Summarise a session recording (XDF): pulses delivered and refused "
        "by reason, the phase estimate at the pulses, stream health, heart rate and skin "
        "conductance.",
    )
    analyze.add_argument("recording", help="the session's .xdf file")
    analyze.add_argument("--json", action="store_true")
    analyze.add_argument(
        "--plot",
        metavar="PNG",
        help="also draw the session (trends, pulse-phase histogram) with the live "
        "window's panels and save it here",
    )
    analyze.set_defaults(func=_cmd_analyze)

    devices = sub.add_parser(
        "devices",
        help="list installed device drivers",
        description="List the drivers registered in the 'stimloop.devices' entry-point group.",
    )
    devices.add_argument("--json", action="store_true")
    devices.set_defaults(func=_cmd_devices)

    estop = sub.add_parser(
        "estop",
        help="engage a running session's emergency stop",
        description="Engage the latching emergency stop of the session listening on PORT "
        "(sessions listen on 47999 unless another session holds it; the status stream "
        "announces the port). Only the session can reset it.",
    )
    estop.add_argument("--port", type=int, default=47999)
    estop.add_argument("--reason", default="stimloop estop (command line)")
    estop.set_defaults(func=_cmd_estop)

    streams = sub.add_parser(
        "streams",
        help="list visible LSL streams",
        description="List the LSL streams visible from this machine.",
    )
    streams.add_argument("--wait", type=float, default=1.0, help="seconds to listen")
    streams.add_argument("--json", action="store_true")
    streams.set_defaults(func=_cmd_streams)

    rec = sub.add_parser(
        "record",
        help="record LSL streams to an XDF file",
        description="Record LSL streams (all visible ones, markers included, or those "
        "named with --source-id) to a crash-safe XDF file until Ctrl-C or --duration.",
    )
    rec.add_argument("-o", "--output", required=True, help="the .xdf file to write")
    rec.add_argument("--duration", type=float, default=0.0, help="seconds (0 = until Ctrl-C)")
    rec.add_argument(
        "--source-id", action="append", default=[], help="record this stream (repeatable)"
    )
    rec.add_argument("--wait", type=float, default=1.0, help="seconds to look for streams")
    rec.set_defaults(func=_cmd_record)

    rep = sub.add_parser(
        "replay",
        help="replay a recording as LSL streams",
        description="Replay every stream of an XDF file, a file mne.io.read_raw opens "
        "(EDF, BDF, FIF, BrainVision; annotations as markers) or a WFDB record (path "
        "without extension; annotations as markers) with the original timing.",
    )
    rep.add_argument("file", help=".xdf, .edf/.bdf/.fif/.vhdr, or WFDB record path")
    rep.add_argument("--speed", type=float, default=1.0, help="playback speed factor")
    rep.add_argument("--loop", action="store_true", help="start over at the end")
    rep.add_argument("--chunk-size", type=int, default=None, help="samples per push")
    rep.add_argument(
        "--source-id-suffix", default="", help="appended to every source_id (avoid clashes)"
    )
    rep.set_defaults(func=_cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stimloop`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError) as exc:
        # Typed stimloop errors subclass these; show the message, not a traceback.
        print(f"stimloop {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
