"""The ``stimloop`` command line: one entry point, one subcommand per job.

Errors stimloop raises on purpose (:class:`~stimloop.dsp.errors.StimloopError`: a bad
config, a missing stream, a refused command) become one-line messages and exit code 2;
anything else is a bug and keeps its traceback. The window and the offline figure run
as processes of their own (``python -m stimloop.gui``, ``python -m stimloop.gui.figure``),
so nothing here imports the GUI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from stimloop.dsp.errors import StimloopError

_DEMO_HELP = """Run a full simulated closed-loop session: simulated EEG (64 ch, 1 kHz, mu rhythm
at C3), ECG (500 Hz) and EDA (100 Hz) over LSL, the phase-locked TMS protocol on a
simulated stimulator behind the HAL safety gate, live heart rate and SCRs. The session is
recorded with the simulators' ground truth, and the summary is the report of that
recording (what `stimloop analyze` prints for it), scored against the truth."""

#: Environment variable that sets the default of --lsl-scope.
SCOPE_ENV = "STIMLOOP_LSL_SCOPE"


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT, SIGTERM and SIGHUP (a closed terminal) set the returned event, so a
    session ends in order: disarm, last markers, recorder stopped, footers written."""
    stop = threading.Event()
    sigs = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    old = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        signal.signal(s, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _live(args: argparse.Namespace):
    """A one-line live display on stderr (without a window)."""

    def show(status: dict) -> None:
        counts = "  ".join(f"{r}: {n}" for r, n in status["samples"].items())
        line = f"samples {counts}  |  pulses {status['pulses']}  refused {status['refused']}"
        print(f"\r{line}", end="", file=sys.stderr, flush=True)

    return None if args.headless or args.json else show


def _has_display() -> bool:
    return any(os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def _window(args: argparse.Namespace):
    """Session hook that opens the live window in its own process (not with --headless or
    --json). The window only reads the session's streams; closing or crashing it never
    stops the session."""
    if args.headless or args.json:
        return None
    if not _has_display():
        # A machine without a screen (a server, CI) runs the session with the live
        # status line instead of failing to open a window.
        print("stimloop: no display found; showing live status here", file=sys.stderr)
        return None

    def start(session) -> None:
        cmd = [
            sys.executable,
            "-m",
            "stimloop.gui",
            "--session",
            session.prefix,
            "--exit-with-session",
        ]
        try:
            subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        except OSError as exc:
            print(f"stimloop: no window ({exc}); the session runs on", file=sys.stderr)

    return start


def _cmd_gui(args: argparse.Namespace) -> int:
    if not _has_display():
        print(
            "stimloop gui: error: no display (DISPLAY and WAYLAND_DISPLAY are unset); "
            "run the session with its text status (stimloop run --headless shows none, "
            "stimloop run without it shows a status line), or set QT_QPA_PLATFORM=offscreen "
            "to draw without a screen",
            file=sys.stderr,
        )
        return 2
    cmd = [
        sys.executable,
        "-m",
        "stimloop.gui",
        *(["--session", args.session] if args.session else []),
    ]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode < 0:
        last = (proc.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        print(
            f"stimloop gui: error: the window could not start (signal {-proc.returncode}): {last}",
            file=sys.stderr,
        )
        return 2
    sys.stderr.write(proc.stderr)
    return proc.returncode


def _cmd_demo(args: argparse.Namespace) -> int:
    from stimloop.devices.sim.runner import SimConfig
    from stimloop.loop.demo import format_summary, run_demo
    from stimloop.loop.report import report_json

    live = _live(args)
    if args.protocol == "hbc":
        from stimloop.loop.demo import run_hbc_demo

        with _stop_on_signals() as stop:
            summary = run_hbc_demo(
                args.seed, on_status=live, on_open=_window(args), recording=args.record, stop=stop
            )
        if live is not None:
            print(file=sys.stderr)
        print(report_json(summary, indent=2) if args.json else format_summary(summary))
        return 0
    sim = SimConfig(prefix=args.prefix) if args.prefix else None
    with _stop_on_signals() as stop:
        summary = run_demo(
            args.duration,
            sim,
            on_status=live,
            on_open=_window(args),
            recording=args.record,
            stop=stop,
            calibration_s=args.calibration,
        )
    if live is not None:
        print(file=sys.stderr)
    print(report_json(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from stimloop.loop.config import load_session
    from stimloop.loop.report import format_report, report_json, session_report
    from stimloop.loop.session import Session

    cfg = load_session(args.config)
    live = _live(args)

    def tick(s: Session) -> None:
        if live is not None:
            eng = s.engine
            live(
                {
                    "samples": {r: h.counts.samples for r, h in eng.streams.items()},
                    "pulses": len(eng.pulses),
                    "refused": eng.n_refused,
                }
            )

    with _stop_on_signals() as stop, Session(cfg, args.prefix) as session:
        if (open_window := _window(args)) is not None:
            open_window(session)
        result = session.run(args.duration, on_tick=tick, stop=stop)
    if live is not None:
        print(file=sys.stderr)
    # What is on disk is what counts: each part of the recording, read back.
    reports = [session_report(path) for path in result.recordings]
    if args.json:
        print(
            report_json(
                {"recordings": reports, "streams": result.streams, "engine": result.engine},
                indent=2,
            )
        )
    elif reports:
        print("\n\n".join(format_report(r) for r in reports))
    else:
        print(
            f"not recorded ([recording] path is unset): {len(result.pulses)} pulses "
            f"delivered, {len(result.refusals)} refused"
        )
    return 0


def _simulate_hbc_subject(args: argparse.Namespace) -> int:
    from stimloop.devices.sim.hbc_runner import HBCSubjectSession
    from stimloop.devices.sim.hbc_subject import SubjectConfig

    extra = {"faint_after_pulses": args.faint_after} if args.faint_after else {}
    subject = HBCSubjectSession(
        SubjectConfig(seed=args.seed, **extra), f"{args.session_prefix}-pulses", prefix=args.prefix
    )
    with _stop_on_signals() as stop, subject:
        t = subject.truth
        print(
            f"virtual subject: ECG {subject.source_id('ecg')}, truth "
            f"{subject.source_id('ecg-truth')}; rMT {t.rmt_pct:.1f} % MSO; reacting to the "
            f"pulses of session {args.session_prefix!r} (stimloop run --prefix "
            f"{args.session_prefix}); Ctrl-C stops",
            file=sys.stderr,
        )
        t_end = time.monotonic() + args.duration if args.duration else float("inf")
        while time.monotonic() < t_end and not stop.wait(0.2):
            subject.check()
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from stimloop.devices.sim.runner import SimConfig, SimulatorSession

    if args.subject == "hbc":
        return _simulate_hbc_subject(args)

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
    with _stop_on_signals() as stop, SimulatorSession(cfg) as sim:
        ids = ", ".join(cfg.source_id(r) for r in cfg.roles)
        print(f"simulating {ids} (+ truth streams); Ctrl-C stops", file=sys.stderr)
        t_end = time.monotonic() + args.duration if args.duration else float("inf")
        while time.monotonic() < t_end and not stop.wait(0.2):
            sim.check()
    return 0


def _host_pins(pins: list[str]) -> dict[str, str]:
    """``--host SOURCE_ID=HOSTNAME`` arguments as a dict (a malformed one is an error)."""
    out: dict[str, str] = {}
    for pin in pins:
        sid, sep, host = pin.rpartition("=")
        if not (sep and sid and host):
            raise SystemExit(f"stimloop record: --host {pin!r}: expected SOURCE_ID=HOSTNAME")
        out[sid] = host
    return out


def _cmd_record(args: argparse.Namespace) -> int:
    from stimloop.stream.recorder import Recorder, format_stats

    with _stop_on_signals() as stop:
        rec = Recorder(
            args.output, args.source_id or None, discover_s=args.wait,
            overwrite=args.overwrite, hostnames=_host_pins(args.host),
        ).start()  # fmt: skip
        print(f"recording to {args.output}; Ctrl-C stops", file=sys.stderr)
        for s in rec.stats():  # what was found; figures follow once data arrive
            rate = f"{s.rate_hz:g} Hz" if s.rate_hz > 0 else "irregular"
            print(f"  {s.source_id}  ({s.type}, {rate})", file=sys.stderr)
        t_start = time.monotonic()
        t_end = t_start + args.duration if args.duration else float("inf")
        tty = sys.stderr.isatty()
        try:
            while time.monotonic() < t_end and rec.running and not stop.is_set():
                stop.wait(max(0.0, min(1.0, t_end - time.monotonic())))
                if args.parent_pid and os.getppid() != args.parent_pid:
                    print(
                        "the session that started this recorder is gone; closing the file",
                        file=sys.stderr,
                    )
                    break
                line = f"{time.monotonic() - t_start:6.1f} s  " + "  ".join(
                    f"{s.source_id}: {s.samples}"
                    + (
                        f" ({s.effective_rate_hz:.1f} Hz)"
                        if s.rate_hz > 0 and s.samples > 1
                        else ""
                    )
                    + (f" gaps {s.gaps}" if s.gaps else "")
                    + (" LOST" if s.lost else "")
                    for s in rec.stats()
                )
                print(f"\r{line}" if tty else line, end="" if tty else "\n", file=sys.stderr)
        finally:
            if tty:
                print(file=sys.stderr)
            stats = rec.stop()  # footers are written on every way out
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
    w = max(len(sid) for sid in player.source_ids)
    for s, sid in zip(player.streams, player.source_ids, strict=True):
        print(
            f"  {sid:<{w}} {s.type:<9} {s.rate_hz:>8g} Hz {len(s.channels):>4} ch "
            f"{len(s):>9} samples",
            file=sys.stderr,
        )
    with _stop_on_signals() as stop:
        player.start()
        try:
            while not player.wait(0.5) and not stop.is_set():
                pass
        finally:
            player.stop()
    print("pushed " + ", ".join(f"{sid}: {n}" for sid, n in player.samples_pushed().items()))
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from stimloop.loop.html_report import (
        TextProgress,
        check_report_path,
        scaled,
        write_html_report,
    )
    from stimloop.loop.report import (
        analyse_session,
        compare_recordings,
        figure_data,
        format_comparison,
        format_report,
        report_json,
    )

    if args.report:
        check_report_path(args.report, args.recording)  # before a long analysis, not after it
    if args.plot:
        if len(args.recording) > 1:
            raise StimloopError("--plot draws one recording; give one file, or use --report")
        _check_plot_path(Path(args.plot), args.recording, args.report)
    progress = TextProgress(sys.stderr) if args.report else None
    n = len(args.recording)
    analyses = [
        analyse_session(path, scaled(progress, k / n, (k + 1) / n))
        for k, path in enumerate(args.recording)
    ]
    comparison = compare_recordings(analyses) if n > 1 else None
    if args.plot:
        a = analyses[0]
        a.report["figure"] = {"path": args.plot, **_draw_figure(figure_data(a.rec), args.plot)}
    html = None
    if args.report:
        progress("writing the HTML report", 1.0)
        html = write_html_report(args.report, analyses, comparison)
        for a in analyses:
            a.report["html_report"] = html
    reports = [a.report for a in analyses]
    if args.json:
        out = reports[0] if n == 1 else {"sessions": reports, "comparison": comparison}
        print(report_json(out, indent=2))
    else:
        print("\n\n".join(format_report(r) for r in reports))
        if comparison is not None:
            print(format_comparison(comparison))
        if args.plot:
            print(f"\nfigure: {args.plot}")
        if html is not None:
            print(f"\nHTML report: {html['path']} ({len(html['figures'])} figures)")
    return 0


def _check_plot_path(path: Path, recordings: Sequence[str], report: str | None) -> None:
    """Refuse a --plot path that cannot or must not be written, before the analysis."""
    from stimloop.loop.html_report import check_not_overwriting

    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise StimloopError(f"--plot: the folder {str(folder)!r} of {str(path)!r} does not exist")
    if path.is_dir():
        raise StimloopError(f"--plot: {str(path)!r} is a folder; give a file name (.png)")
    if report is not None and os.path.abspath(report) == os.path.abspath(path):
        raise StimloopError("--plot and --report name the same file; give each its own")
    check_not_overwriting(
        path,
        recordings,
        "--plot",
        lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"),
        "a PNG image",
    )


def _cmd_study_analyze(args: argparse.Namespace) -> int:
    from stimloop.loop.study import format_study, run_study

    result = run_study(
        args.inputs,
        args.output,
        pattern=args.pattern,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=not (args.no_progress or args.json),
    )
    if not (args.no_progress or args.json):
        print(file=sys.stderr)
    print(format_study(result, as_json=args.json))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from stimloop.loop.export import export_session, format_export

    written = export_session(
        args.recording,
        args.bids,
        subject=args.subject,
        session=args.session,
        task=args.task,
        run=args.run,
        overwrite=args.overwrite,
    )
    print(json.dumps(written, indent=2) if args.json else format_export(written))
    return 0


def _draw_figure(data: dict, path: str) -> dict:
    """Draw the offline figure in a process of its own (the GUI's panels, offscreen)."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="stimloop-figure-") as tmp:
        npz = os.path.join(tmp, "figure.npz")
        np.savez(npz, **{k: np.asarray(v) for k, v in data.items()})
        env = dict(os.environ)
        if not _has_display():
            env["QT_QPA_PLATFORM"] = "offscreen"
        proc = subprocess.run(
            [sys.executable, "-m", "stimloop.gui.figure", npz, path],
            capture_output=True,
            text=True,
            env=env,
        )
    if proc.returncode != 0:
        raise_figure = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        raise StimloopError(
            f"--plot failed (is the gui extra installed? pip install "
            f"'stimloop[gui]'): {raise_figure[0]}"
        )
    return json.loads(proc.stdout)


def _cmd_devices(args: argparse.Namespace) -> int:
    from stimloop.devices.registry import list_devices

    devices = list_devices()
    if args.json:
        print(json.dumps(devices, indent=2))
        return 0
    w = max([4, *(len(d["name"]) for d in devices)])
    print(f"{'name':<{w}} {'kind':<12} description")
    for d in devices:
        print(f"{d['name']:<{w}} {d['kind']:<12} {d['description']}")
    return 0


def _cmd_estop(args: argparse.Namespace) -> int:
    from stimloop.devices.estop import send_emergency_stop

    replies = send_emergency_stop(
        args.reason, timeout=args.timeout, prefixes=[args.session] if args.session else None
    )
    for r in replies:
        state = "ENGAGED" if r.engaged else "NOT CONFIRMED"
        print(f"{state}: {r.session} (pid {r.pid}){'' if r.engaged else ': ' + r.detail}")
    if not any(r.engaged for r in replies):
        which = f"session {args.session!r}" if args.session else "running session"
        print(
            f"stimloop estop: error: no {which} acknowledged the emergency stop within "
            f"{args.timeout:g} s; nothing was stopped by software. Use the stimulator's "
            "own stop button.",
            file=sys.stderr,
        )
        return 1
    return 0 if all(r.engaged for r in replies) else 3


def _one_session(prefix: str | None) -> str:
    """The session a command goes to: the given prefix, or the only one running."""
    from stimloop.devices.endpoints import list_sessions
    from stimloop.loop.errors import ControlError

    if prefix:
        return prefix
    live = [e.prefix for e in list_sessions() if e.alive]
    if len(live) != 1:
        raise ControlError(
            f"{len(live)} sessions are running; name one with --session: {live}"
            if live
            else "no session of this user is running"
        )
    return live[0]


def _cmd_mark(args: argparse.Namespace) -> int:
    from stimloop.loop import exposure_markers as em
    from stimloop.loop.client import send_command

    build = {
        "start": lambda: em.exercise_start(args.value),
        "end": lambda: em.exercise_end(args.value),
        "expectancy": lambda: em.rating("expectancy", float(args.value)),
        "suds": lambda: em.rating("suds", float(args.value), args.moment),
        "outcome": lambda: em.rating("outcome", float(args.value)),
        "learned": lambda: em.learned(args.value or ""),
        "cue": lambda: em.cue(args.value or "", args.code),
        "calibration-start": em.calibration_start,
        "calibration-end": em.calibration_end,
    }
    try:
        marker = build[args.kind]()
    except (ValueError, TypeError) as exc:
        raise StimloopError(f"{args.kind} {args.value!r}: {exc}") from None
    send_command(_one_session(args.session), "mark", marker=marker)
    print(f"marked: {marker}")
    return 0


def _cmd_confirm(args: argparse.Namespace) -> int:
    from stimloop.loop.client import send_command

    send_command(_one_session(args.session), "confirm", text=args.note)
    print("confirmed; the session arms and goes on")
    return 0


def _cmd_streams(args: argparse.Namespace) -> int:
    from stimloop.stream.discovery import format_streams, list_streams

    streams = list_streams(args.wait)
    print(json.dumps(streams, indent=2) if args.json else format_streams(streams))
    return 0


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already says it or there is none
    (``(default: None)`` tells the user nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return _DefaultsFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``stimloop`` command."""
    parser = argparse.ArgumentParser(
        prog="stimloop",
        formatter_class=_formatter,
        description="Closed-loop biosignal streaming, DSP and TMS control over LSL.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument(
        "--lsl-scope",
        choices=("machine", "network"),
        default=os.environ.get(SCOPE_ENV, "machine"),
        help="where LSL looks for streams and announces them: this machine only, or the "
        "lab network (liblsl's own default); LSLAPICFG, when set, overrides both "
        f"(default from ${SCOPE_ENV}, else machine; see docs/lsl.md)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _demo_parser(sub)
    _run_parser(sub)
    _gui_parser(sub)
    _simulate_parser(sub)
    _analyze_parser(sub)
    _devices_parser(sub)
    _estop_parser(sub)
    _mark_parser(sub)
    _confirm_parser(sub)
    _streams_parser(sub)
    _record_parsers(sub)
    _study_parsers(sub)
    return parser


def _add(sub, name: str, func, help: str, description: str | None = None):
    p = sub.add_parser(name, help=help, description=description or help, formatter_class=_formatter)
    p.set_defaults(func=func)
    return p


#: Calibration rest of ``stimloop demo``, s. The simulated mu rhythm stands well above
#: its 1/f background, so 24 s (11 Welch segments, one more than a result needs) find
#: its peak; the demo file itself keeps the 2 min a real session calibrates for.
DEMO_CALIBRATION_S = 24.0


def _demo_parser(sub) -> None:
    p = _add(sub, "demo", _cmd_demo, "run a full simulated session", _DEMO_HELP)
    p.add_argument(
        "--protocol",
        choices=("phase_locked", "hbc"),
        default="phase_locked",
        help="phase-locked TMS on simulated EEG, or heart-brain-coupled target "
        "localisation on the virtual subject (about 2.5 min; --duration is ignored)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the virtual subject (hbc)")
    p.add_argument(
        "--duration", type=float, default=60.0, help="session length, s (calibration included)"
    )
    p.add_argument(
        "--calibration",
        type=float,
        default=DEMO_CALIBRATION_S,
        metavar="S",
        help="calibration rest that locks the phase band before the first pulse, s "
        "(0: none, the IAF is tracked from the start; a real session file says 120)",
    )
    p.add_argument("--headless", action="store_true", help="no window and no live status line")
    p.add_argument("--json", action="store_true", help="print the summary as JSON, no live line")
    p.add_argument("--prefix", help="source_id prefix of the simulators (default: unique per run)")
    p.add_argument(
        "--record",
        metavar="XDF",
        help="keep the recording (inputs, truth, every "
        "decision) at this XDF path ({time} becomes the start time)",
    )


def _run_parser(sub) -> None:
    p = _add(
        sub,
        "run",
        _cmd_run,
        "run a closed-loop session from a TOML file",
        "Run the closed-loop session a session TOML file describes (see "
        "loop/configs/demo.toml for a commented example). The summary is read back "
        "from the recording.",
    )
    p.add_argument("config", help="the session .toml file")
    p.add_argument(
        "--prefix",
        default=None,
        help="source_id prefix of the session's own streams (default: unique "
        "per run; fix it for a virtual subject: stimloop simulate --subject hbc)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="session length, s (default: the file's duration_s, else until Ctrl-C)",
    )
    p.add_argument("--headless", action="store_true", help="no window and no live status line")
    p.add_argument(
        "--json", action="store_true", help="print the summary (the recording's report) as JSON"
    )


def _gui_parser(sub) -> None:
    p = _add(
        sub,
        "gui",
        _cmd_gui,
        "open the live window of a running session",
        "Attach the session window (signals, trends, phase, stimulator, stream health, "
        "controls and the emergency stop) to a running session, in its own process.",
    )
    p.add_argument("--session", help="session prefix (default: the only one running)")


def _simulate_parser(sub) -> None:
    p = _add(
        sub,
        "simulate",
        _cmd_simulate,
        "publish simulated EEG/ECG/EDA with ground truth",
        "Publish seeded simulators as LSL outlets until Ctrl-C or --duration.",
    )
    p.add_argument("--prefix", default="stimloop-sim", help="source_id prefix")
    p.add_argument("--seed", type=int, default=0, help="seed of every generator")
    p.add_argument(
        "--roles",
        nargs="+",
        choices=("eeg", "ecg", "eda"),
        default=["eeg", "ecg", "eda"],
        help="which signals to publish",
    )
    p.add_argument("--duration", type=float, default=0.0, help="seconds (0: until Ctrl-C)")
    p.add_argument("--eeg-rate", type=float, default=1000.0, help="EEG rate, Hz")
    p.add_argument("--eeg-channels", type=int, default=64, help="EEG channels (1-64)")
    p.add_argument("--iaf", type=float, default=10.0, help="individual alpha frequency, Hz")
    p.add_argument("--target", default="C3", help="electrode carrying the known alpha phase")
    p.add_argument("--ecg-rate", type=float, default=500.0, help="ECG rate, Hz")
    p.add_argument("--hr", type=float, default=70.0, help="heart rate, bpm")
    p.add_argument("--eda-rate", type=float, default=100.0, help="EDA rate, Hz")
    p.add_argument(
        "--subject",
        choices=("signals", "hbc"),
        default="signals",
        help="signals: EEG/ECG/EDA simulators; hbc: the virtual subject of "
        "heart-brain-coupled localisation, whose heart rate responds to a "
        "session's delivered pulses",
    )
    p.add_argument(
        "--session-prefix",
        default="stimloop-hbc-session",
        help="hbc: the session whose pulses the subject feels "
        "(stimloop run --prefix with the same value)",
    )
    p.add_argument(
        "--faint-after",
        type=int,
        default=0,
        help="hbc: faint (vasovagal) after this many pulses; 0: never",
    )


def _analyze_parser(sub) -> None:
    p = _add(
        sub,
        "analyze",
        _cmd_analyze,
        "report on recorded sessions",
        "Summarise a session recording (XDF): pulses delivered and refused by reason, "
        "the phase at the pulses, stream health, heart rate, skin conductance, the "
        "heart-brain-coupling localisation, the exposure exercises and, where the ground "
        "truth was recorded, scores against it. With several recordings (in chronological "
        "order), each is reported and their exposure exercises are compared.",
    )
    p.add_argument("recording", nargs="+", help="the sessions' .xdf files")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="also draw the session (trends, pulse-phase "
        "histogram) with the live window's panels and save it here",
    )
    p.add_argument(
        "--report",
        metavar="HTML",
        help="also write one self-contained HTML report with the figures (inline SVG, no "
        "network); a progress bar on stderr follows the analysis",
    )


def _devices_parser(sub) -> None:
    p = _add(
        sub,
        "devices",
        _cmd_devices,
        "list installed device drivers",
        "List the drivers registered in the 'stimloop.devices' entry-point group.",
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")


def _estop_parser(sub) -> None:
    p = _add(
        sub,
        "estop",
        _cmd_estop,
        "engage the emergency stop of running sessions",
        "Engage the latching emergency stop of every running session of this user "
        "(or of --session) and wait for each to acknowledge. Exit 0: all acknowledged; "
        "1: none did (nothing stopped); 3: some did not. Only the session can reset it. "
        "The stimulator's own hardware stop remains the real safeguard.",
    )
    p.add_argument("--session", metavar="PREFIX", help="only this session (default: all)")
    p.add_argument(
        "--reason", default="stimloop estop (command line)", help="why; recorded by each session"
    )
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for each answer")


def _mark_parser(sub) -> None:
    p = _add(
        sub,
        "mark",
        _cmd_mark,
        "mark an exposure exercise in a running session",
        "Send an exercise marker (schema stimloop-exposure/1, docs/exposure.md) to a "
        "running exposure session: start LABEL, end, expectancy 0-100, suds 0-100 "
        "--moment start|peak|end, outcome 0-100, learned TEXT, cue [LABEL], "
        "calibration-start, calibration-end. The session records it and refuses what "
        "breaks the schema or the order (an end without a start).",
    )
    p.add_argument(
        "kind",
        choices=(
            "start",
            "end",
            "expectancy",
            "suds",
            "outcome",
            "learned",
            "cue",
            "calibration-start",
            "calibration-end",
        ),
        help="what to mark",
    )
    p.add_argument(
        "value",
        nargs="?",
        default=None,
        help="the label, the rating (0-100) or the note, as the kind needs",
    )
    p.add_argument(
        "--moment",
        choices=("start", "peak", "end"),
        default="start",
        help="suds: when in the exercise the rating was given",
    )
    p.add_argument("--code", type=int, default=None, help="cue: a numeric event code")
    p.add_argument("--session", metavar="PREFIX", help="the session (default: the only one)")


def _confirm_parser(sub) -> None:
    p = _add(
        sub,
        "confirm",
        _cmd_confirm,
        "confirm what a running session asked the operator",
        "Tell a running session that the operator did what it asked (heart-brain-"
        "coupled localisation: the coil is on the next site; phase-locked: go on despite "
        "a weak alpha peak at calibration); the session arms again.",
    )
    p.add_argument("--note", default="", help="recorded with the confirmation")
    p.add_argument("--session", metavar="PREFIX", help="the session (default: the only one)")


def _streams_parser(sub) -> None:
    p = _add(
        sub,
        "streams",
        _cmd_streams,
        "list visible LSL streams",
        "List the LSL streams visible in the chosen --lsl-scope.",
    )
    p.add_argument("--wait", type=float, default=1.0, help="seconds to listen")
    p.add_argument("--json", action="store_true", help="print the list as JSON")


def _record_parsers(sub) -> None:
    p = _add(
        sub,
        "record",
        _cmd_record,
        "record LSL streams to an XDF file",
        "Record LSL streams (all visible ones, markers included, or those named with "
        "--source-id) to a crash-safe XDF file until Ctrl-C or --duration.",
    )
    p.add_argument("-o", "--output", required=True, help="the .xdf file to write")
    p.add_argument("--duration", type=float, default=0.0, help="seconds (0: until Ctrl-C)")
    p.add_argument(
        "--source-id",
        action="append",
        default=[],
        help="record this stream (repeatable; default: every visible stream)",
    )
    p.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="SOURCE_ID=HOSTNAME",
        help="take that --source-id stream from this host only (repeatable)",
    )
    p.add_argument("--wait", type=float, default=1.0, help="seconds to look for streams")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing file at --output (default: refuse it, keeping its data)",
    )
    p.add_argument("--parent-pid", type=int, default=0, help=argparse.SUPPRESS)
    p = _add(
        sub,
        "replay",
        _cmd_replay,
        "replay a recording as LSL streams",
        "Replay every stream of an XDF file, a file mne.io.read_raw opens (EDF, BDF, "
        "FIF, BrainVision; annotations as markers) or a WFDB record (path without "
        "extension; annotations as markers) with the original timing.",
    )
    p.add_argument("file", help=".xdf, .edf/.bdf/.fif/.vhdr, or WFDB record path")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true", help="start over at the end")
    p.add_argument(
        "--chunk-size", type=int, default=None, help="samples per push (default: 10 ms worth)"
    )
    p.add_argument(
        "--source-id-suffix",
        default="",
        help="appended to every source_id, so a replay never collides with a live stream",
    )


def _study_parsers(sub) -> None:
    p = _add(
        sub,
        "study",
        None,
        "analyse many session recordings together (a study)",
        "Group analysis of many session recordings on Dask: see 'stimloop study analyze "
        "--help' and docs/study.md.",
    )
    study = p.add_subparsers(
        dest="study_command",
        metavar="STUDY_COMMAND",
        required=True,
        help="what to do with the study: analyze",
    )
    a = study.add_parser(
        "analyze",
        formatter_class=_formatter,
        help="analyse every recording and write the group tables and figures",
        description="Run the per-session analysis of 'stimloop analyze' on every recording "
        "of a study on Dask (a local cluster sized to this machine, or --scheduler) and "
        "write one tidy table per level (session, pulse, exercise, site, cycle) as Parquet "
        "and CSV, the group figures (SVG and study.html) and errors.log. A recording that "
        "fails is a row with its error; the others complete. Re-running analyses only new "
        "or changed recordings (content hash and code version). Participant and session "
        "come from sub-XX/ses-YY in the path, or --pattern. See docs/study.md.",
    )
    a.set_defaults(func=_cmd_study_analyze)
    a.add_argument(
        "inputs",
        nargs="+",
        metavar="DIR_OR_GLOB",
        help="folders (every *.xdf below them) or glob patterns ('**' recurses)",
    )
    a.add_argument("-o", "--output", default="results", help="folder for tables and figures")
    a.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a "
        "local cluster on this machine)",
    )
    a.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes of the local cluster (default: the CPUs this process may use)",
    )
    a.add_argument(
        "--pattern",
        metavar="REGEX",
        help="regular expression with named groups 'participant' and 'session', searched "
        "in each file's path relative to the study folder (default: BIDS-like sub-<label> "
        "and ses-<label> parts)",
    )
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    p = _add(
        sub,
        "export",
        _cmd_export,
        "export a session recording to BIDS",
        "Export a session recording (XDF) into a BIDS dataset with MNE-BIDS: the EEG "
        "(BrainVision, channel types) with the session's markers as events (pulses, "
        "refusals, decisions, exercises), ECG and EDA as physio files, and the stimulation "
        "parameters in the sidecars (docs/study.md says which fields follow the BIDS "
        "brain-stimulation proposal and which are ours).",
    )
    p.add_argument("recording", help="the session's .xdf file")
    p.add_argument("--bids", required=True, metavar="ROOT", help="the BIDS dataset folder")
    p.add_argument("--subject", required=True, help="BIDS subject label (letters and digits)")
    p.add_argument("--session", required=True, help="BIDS session label (letters and digits)")
    p.add_argument("--task", required=True, help="BIDS task label (letters and digits)")
    p.add_argument("--run", type=int, help="BIDS run index (default: none)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace files of this subject/session/task"
    )
    p.add_argument("--json", action="store_true", help="print the files written as JSON")


def _use_scope(scope: str) -> None:
    """Apply --lsl-scope before anything loads liblsl (it reads its config once)."""
    from stimloop.stream.lslconfig import use_machine_scope

    if "LSLAPICFG" in os.environ:
        logging.getLogger("stimloop").info(
            "LSLAPICFG=%s is set; --lsl-scope ignored", os.environ["LSLAPICFG"]
        )
    elif scope == "machine":
        use_machine_scope()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stimloop`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    _use_scope(args.lsl_scope)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except StimloopError as exc:
        # Our own errors name what was wrong; everything else is a bug: traceback.
        print(f"stimloop {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
