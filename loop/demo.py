"""``stimloop demo``: a full simulated closed-loop session that scores itself.

The simulators run in a child process and publish EEG (64 ch, 1 kHz, alpha at C3), ECG
and EDA, plus their ground truth, over LSL on this machine. This process runs the very
same :class:`~stimloop.loop.session.Session` that ``stimloop run`` runs on a real
session file (``loop/configs/demo.toml``), with the simulated stimulator behind the HAL
gate, and records everything, the simulators' truth included. At the end it reports on
that recording, scored against the truth (:mod:`stimloop.loop.evaluation`): the true
phase of every delivered pulse against its target, beat and SCR detection. The figures
are the ones ``stimloop analyze`` prints for the same file.
"""

from __future__ import annotations

import logging
import os
import shlex
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from stimloop.devices.sim.runner import SimConfig, SimulatorProcess
from stimloop.loop.config import SessionConfig, parse_session
from stimloop.loop.errors import SessionError
from stimloop.loop.report import format_report, read_session, session_report
from stimloop.loop.session import Session

log = logging.getLogger("stimloop.loop")


def demo_config(sim: SimConfig, calibration_s: float = 0.0, **protocol: Any) -> SessionConfig:
    """The packaged demo session, pointed at the simulators of ``sim``.

    Parameters
    ----------
    sim : SimConfig
        The simulators whose source_ids the session reads.
    calibration_s : float
        The session-start calibration of the phase band (``dsp.calibration_s``), s; 0
        (the default here, for tests that need pulses from the first seconds) tracks
        the IAF causally instead.
    **protocol
        Overrides of ``[protocol]`` keys (e.g. ``control="random_phase"``).
    """
    text = resources.files("stimloop.loop").joinpath("configs/demo.toml").read_text()
    data = tomllib.loads(text)
    rates = {"eeg": sim.eeg_fs, "ecg": sim.ecg_fs, "eda": sim.eda_fs}
    data["sources"] = {role: data["sources"][role] for role in sim.roles}
    for role, src in data["sources"].items():
        src["source_id"] = sim.source_id(role)
        src["rate_hz"] = rates[role]
    if "eeg" in sim.roles:
        data["sources"]["eeg"]["channels"] = sim.eeg_channels
    if "eda" in sim.roles:
        data["sources"]["events"] = {"source_id": sim.source_id("events")}
    data["channels"]["eeg_target"] = sim.target
    data["dsp"]["calibration_s"] = calibration_s
    data["protocol"].update(protocol)
    return parse_session(data, "configs/demo.toml")


def run_demo(
    duration_s: float = 30.0,
    sim: SimConfig | None = None,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    on_open: Callable[[Session], None] | None = None,
    recording: str | None = None,
    stop: threading.Event | None = None,
    calibration_s: float = 0.0,
    **protocol: Any,
) -> dict[str, Any]:
    """Run a simulated closed-loop session and return its report, scored on the truth.

    The session always records (to ``recording``, or to a temporary file that is
    deleted afterwards), and the summary is :func:`~stimloop.loop.report.session_report`
    of that file: what ``stimloop analyze`` prints for it, figure for figure.

    Parameters
    ----------
    duration_s : float
        Session length in s.
    sim : SimConfig, optional
        Simulator settings; a unique source_id prefix is chosen when not given.
    on_status : callable, optional
        Called about once a second with a live status dict (the CLI's live display).
    on_open : callable, optional
        Called with the opened session before it runs (e.g. to start the window).
    recording : str, optional
        Keep the recording (inputs, truth, every derived stream and decision) at this
        XDF path; ``{time}`` is replaced by the start time.
    stop : threading.Event, optional
        Set it to end the session early (signals do, from the CLI).
    calibration_s : float
        Calibration rest at the start, s (:func:`demo_config`); ``stimloop demo``
        passes its ``--calibration`` (24 s by default).
    **protocol
        Overrides of the demo config's ``[protocol]`` keys.

    Returns
    -------
    dict
        The session report (:func:`~stimloop.loop.report.session_report`), with
        ``duration_s``, ``recordings`` (the files kept; empty when none was asked for).
    """
    if not duration_s > 0:
        raise SessionError(f"duration_s must be > 0 s, got {duration_s}")
    sim = sim or SimConfig(prefix=f"stimloop-demo-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    with tempfile.TemporaryDirectory(prefix="stimloop-demo-") as tmp:
        path = recording or str(Path(tmp) / "demo.xdf")
        cfg = demo_config(sim, calibration_s, **protocol)
        cfg = cfg.model_copy(update={"recording": cfg.recording.model_copy(update={"path": path})})
        truth_ids = {role: sim.source_id(f"{role}-truth") for role in sim.roles}
        with SimulatorProcess(sim):
            with Session(cfg, f"{sim.prefix}-session", truth_source_ids=truth_ids) as session:
                if on_open is not None:
                    on_open(session)
                status = _Status(on_status)
                result = session.run(duration_s, on_tick=status, stop=stop)
        report = session_report(read_session(result.recordings[0]))
        for part in result.recordings[1:]:
            log.warning("the recorder was restarted; part %s is not in this summary", part)
    report["duration_s"] = duration_s
    report["recordings"] = result.recordings if recording else []
    return report


class _Status:
    """Throttles the live status callback to about once a second."""

    def __init__(self, callback: Callable[[dict[str, Any]], None] | None) -> None:
        self.callback = callback
        self.next_t = 0.0

    def __call__(self, session: Session) -> None:
        if self.callback is None or time.monotonic() < self.next_t:
            return
        self.next_t = time.monotonic() + 1.0
        eng = session.engine
        self.callback(
            {
                "samples": {r: h.counts.samples for r, h in eng.streams.items()},
                "pulses": len(eng.pulses),
                "refused": eng.n_refused,
            }
        )


def format_summary(summary: dict[str, Any]) -> str:
    """The demo's report as text: the session report, with the loop's own figures."""
    kind = "heart-brain-coupled localisation" if "hbc" in summary else "closed-loop session"
    lines = [f"stimloop demo: {summary['duration_s']:.0f} s simulated {kind}", ""]
    lines.append(format_report(summary))
    if eng := summary.get("engine"):
        busy = eng.get("busy") or {}
        if busy:
            lines.append(
                f"loop: {eng['iterations']} iterations, processing p50 "
                f"{busy['p50_us']:.0f} µs, p99 {busy['p99_us']:.0f} µs"
            )
    for rec in summary.get("recordings", []):
        lines += ["", f"recorded to {rec}",
                  f"report: stimloop analyze {shlex.quote(rec)} --plot report.png"]  # fmt: skip
    return "\n".join(lines)


#: The shortened localisation of ``stimloop demo --protocol hbc``: two sites, a rest
#: cycle and three intensities each, 16 s cycles: about 2 min 20 s with the baselines.
HBC_DEMO_SITES = ("F3", "FC1")
HBC_DEMO_INTENSITIES = (90.0, 100.0, 110.0)


def hbc_demo_config(
    ecg_source_id: str,
    rmt_pct_mso: float,
    sites=HBC_DEMO_SITES,
    intensities=HBC_DEMO_INTENSITIES,
    seed: int = 0,
) -> SessionConfig:
    """A shortened heart-brain-coupled localisation on the virtual subject's ECG."""
    return parse_session(
        {
            "name": "hbc-demo",
            "sources": {"ecg": {"source_id": ecg_source_id, "rate_hz": 500.0}},
            "protocol": {
                "kind": "hbc",
                "sites": list(sites),
                "intensities": list(intensities),
                "rmt_pct_mso": rmt_pct_mso,
                "order_seed": seed,
                # A demo run is too short for the published 4 intensities above threshold.
                "min_above": 1,
            },
            "stimulator": {"driver": "simulated", "safety": {"max_intensity_pct": 90}},
        },
        "hbc demo",
    )


def run_hbc_demo(
    seed: int = 1,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    on_open: Callable[[Session], None] | None = None,
    recording: str | None = None,
    stop: threading.Event | None = None,
    **subject: Any,
) -> dict[str, Any]:
    """Run the shortened localisation on the virtual subject; return the recording's
    report with the chosen site and the subject's true best site.

    The demo plays the operator: each "move the coil" prompt is confirmed through the
    session's control channel, as the window's button would.

    Parameters
    ----------
    seed : int
        Seed of the virtual subject (who it is, its best site) and of the site order.
    on_status, on_open, recording, stop
        As for :func:`run_demo`.
    **subject
        Overrides of the virtual subject (:class:`~stimloop.devices.sim.hbc_subject.
        SubjectConfig`), e.g. ``faint_after_pulses=60``.
    """
    from stimloop.devices.sim.hbc_runner import HBCSubjectSession
    from stimloop.devices.sim.hbc_subject import SubjectConfig
    from stimloop.loop.client import send_command

    tag = f"stimloop-hbcdemo-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    prefix = f"{tag}-session"
    subj = HBCSubjectSession(
        SubjectConfig(seed=seed, sites=HBC_DEMO_SITES, **subject),
        f"{prefix}-pulses",
        prefix=f"{tag}-subject",
    )
    with tempfile.TemporaryDirectory(prefix="stimloop-demo-") as tmp:
        path = recording or str(Path(tmp) / "hbc.xdf")
        cfg = hbc_demo_config(subj.source_id("ecg"), subj.truth.rmt_pct, seed=seed)
        cfg = cfg.model_copy(update={"recording": cfg.recording.model_copy(update={"path": path})})
        status = _Status(on_status)

        def tick(session: Session) -> None:
            status(session)
            if session.protocol.asking and session.stimulator is not None:
                try:
                    send_command(
                        session.prefix,
                        "confirm",
                        text="demo: coil placed",
                        root=session.runtime_root,
                    )
                except Exception as exc:  # the next tick retries
                    log.info("demo confirm: %s", exc)

        with (
            subj,
            Session(
                cfg, prefix, seed=seed, truth_source_ids={"ecg": subj.source_id("ecg-truth")}
            ) as session,
        ):
            if on_open is not None:
                on_open(session)
            t_run = time.monotonic()
            result = session.run(None, on_tick=tick, stop=stop)
            duration = time.monotonic() - t_run
        report = session_report(read_session(result.recordings[0]))
    report["duration_s"] = duration
    report["recordings"] = result.recordings if recording else []
    return report
