"""Run the virtual HBC subject live: stimulator pulses in over LSL, ECG and truth out.

The subject listens to the delivered-pulse marker stream of the simulated stimulator
(``SimulatedStimulator``: JSON markers ``{"event": "pulse", "intensity_pct", "site",
...}`` stamped with the pulse's LSL time) and publishes, paced on the LSL clock like the
other simulators (``devices/sim/runner.py``):

==========================  =========================================================
source_id                   content
==========================  =========================================================
``{prefix}-ecg``            ECG, mV, one channel at ``fs``, with TMS artifacts
``{prefix}-ecg-truth``      one sample per R peak, stamped at it: absolute sample
                            index, HR (bpm) and vagal deceleration (bpm) at the beat,
                            faint (0/1). Its ``desc`` holds the subject's truth:
                            ``best_site``, ``coupling`` (JSON, per site), ``rmt_pct``
                            and ``truth`` (every field as JSON)
==========================  =========================================================

The ECG goes out ``output_delay_s`` behind real time (50 ms, an amplifier's typical
acquisition latency), so a pulse marker that arrives a few ms after the pulse still
puts its artifact on the right samples; the model (:class:`HBCSubject`) is the one
:func:`~stimloop.devices.sim.hbc_subject.simulate` runs offline.
"""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pylsl

from stimloop.devices.sim.hbc_subject import HBCSubject, SubjectConfig, SubjectTruth
from stimloop.stream.errors import StreamError
from stimloop.stream.inlet import MarkerInlet
from stimloop.stream.outlet import Outlet, channel_specs

log = logging.getLogger("stimloop.devices.sim")


class HBCSubjectSession:
    """The virtual subject, live, in a background thread.

    Parameters
    ----------
    config : SubjectConfig
        The subject.
    pulse_source_id : str
        source_id of the stimulator's delivered-pulse marker stream.
    prefix : str
        Prefix of the published source_ids (make it unique per session).
    chunk_s : float
        Push period, s.
    output_delay_s : float
        How far behind real time the ECG is published, s (0.01-0.5).
    resolve_timeout : float
        Seconds per attempt to find the pulse stream (attempts repeat until it appears).

    Examples
    --------
    >>> with HBCSubjectSession(SubjectConfig(seed=1), stim.source_id, "demo") as subj:
    ...     pass  # doctest: +SKIP
    """

    def __init__(
        self,
        config: SubjectConfig,
        pulse_source_id: str,
        prefix: str = "stimloop-hbc",
        chunk_s: float = 0.01,
        output_delay_s: float = 0.05,
        resolve_timeout: float = 10.0,
    ) -> None:
        if not 0.001 <= chunk_s <= 1.0:
            raise ValueError(f"chunk_s must be in 0.001..1 s, got {chunk_s}")
        if not 0.01 <= output_delay_s <= 0.5:
            raise ValueError(f"output_delay_s must be in 0.01..0.5 s, got {output_delay_s}")
        self.subject = HBCSubject(config)
        self.fs = self.subject.fs
        self.prefix = prefix
        self.pulse_source_id = pulse_source_id
        self.chunk = max(1, round(chunk_s * self.fs))
        self.output_delay_s = float(output_delay_s)
        self.resolve_timeout = float(resolve_timeout)
        self.error: BaseException | None = None
        self.n_pulses = 0
        self.t0 = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._inlet: MarkerInlet | None = None
        self._ecg: Outlet | None = None
        self._truth: Outlet | None = None

    @property
    def truth(self) -> SubjectTruth:
        """The subject's truth (best site, coupling per site, rMT, ...)."""
        return self.subject.truth

    def source_id(self, role: str) -> str:
        """source_id of a published stream (``"ecg"`` or ``"ecg-truth"``)."""
        return f"{self.prefix}-{role}"

    def start(self) -> HBCSubjectSession:
        """Open the outlets and start publishing; the pulse stream is joined as soon as
        it appears (a session's stimulator exists only after the session has found
        this ECG, so waiting for it first would deadlock)."""
        truth = self.subject.truth
        self._inlet = MarkerInlet(self.pulse_source_id, resolve_timeout=self.resolve_timeout)
        self._ecg = Outlet(
            "stimloop-sim HBC subject ECG", "ECG", self.source_id("ecg"),
            channel_specs(["ECG"], "mV", "ECG"), self.fs, "float32", self.chunk,
        )  # fmt: skip
        self._truth = Outlet(
            "stimloop-sim HBC subject truth", "Truth", self.source_id("ecg-truth"),
            (*channel_specs(["rpeak_index"], "samples", "Index"),
             *channel_specs(["hr", "vagal"], "bpm", "HR"),
             *channel_specs(["faint"], "bool", "Flag")),
            0.0, "float64",
            extra_desc={
                "best_site": truth.best_site or "",
                "coupling": json.dumps(truth.coupling, sort_keys=True),
                "rmt_pct": f"{truth.rmt_pct:.6g}",
                "truth": truth.to_json(),
            },
        )  # fmt: skip
        self.t0 = pylsl.local_clock() + 0.05
        self._pulses_connected = threading.Event()
        threading.Thread(target=self._join_pulses, name="sim-hbc-pulses", daemon=True).start()
        self._thread = threading.Thread(target=self._run, name="sim-hbc-subject", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> HBCSubjectSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def faint(self) -> None:
        """Make the subject faint now (a vasovagal episode)."""
        with self._lock:
            self.subject.faint(pylsl.local_clock() - self.t0)

    @property
    def late_pulses(self) -> int:
        """Pulses that arrived too late to be modelled exactly (should stay 0)."""
        return self.subject.late_pulses

    def check(self) -> None:
        """Raise the error the publishing thread hit, if any."""
        if self.error is not None:
            raise RuntimeError(f"virtual HBC subject failed: {self.error!r}")

    def _take_pulses(self) -> None:
        if not self._pulses_connected.is_set():
            return
        t, inten, sites = [], [], []
        try:
            received = self._inlet.pull()
        except StreamError:  # the session ended: its stimulator's stream is gone
            self._pulses_connected.clear()
            return
        for text, t_lsl in received:
            try:
                msg = json.loads(text)
            except ValueError:
                log.warning("virtual subject: ignored a non-JSON marker %r", text)
                continue
            if not isinstance(msg, dict) or msg.get("event") != "pulse":
                continue
            t.append(t_lsl - self.t0)
            inten.append(float(msg.get("intensity_pct", 0.0)))
            sites.append(str(msg.get("site", "")))
        if t:
            order = np.argsort(t, kind="stable")
            self.subject.add_pulses(
                np.asarray(t)[order], np.asarray(inten)[order], [sites[i] for i in order]
            )
            self.n_pulses += len(t)

    def _join_pulses(self) -> None:
        """Find the pulse stream, retrying until it appears (its own thread: a resolve
        blocks, and the ECG must keep flowing meanwhile)."""
        while not self._stop.is_set():
            try:
                self._inlet.connect()
            except StreamError:
                continue
            self._pulses_connected.set()
            return

    def _run(self) -> None:
        subj = self.subject
        try:
            while not self._stop.is_set():
                n0 = subj.n_samples
                due = self.t0 + (n0 + self.chunk - 1) / self.fs + self.output_delay_s
                wait = due - pylsl.local_clock()
                if wait > 0 and self._stop.wait(wait):
                    break
                now = pylsl.local_clock() - self.output_delay_s
                n = max(self.chunk, int((now - self.t0) * self.fs) + 1 - n0)
                with self._lock:
                    self._take_pulses()
                    ecg, peaks = subj.generate(n)
                    hr, vagal = subj.beat_info(peaks)
                    fainting = subj.faint_onset_s is not None
                self._ecg.push(ecg[:, None], self.t0 + (n0 + n - 1) / self.fs)
                for p, h, v in zip(peaks, hr, vagal, strict=True):
                    row = np.array([p, h, v, float(fainting)])
                    self._truth.push(row, self.t0 + p / self.fs)
        except BaseException as exc:  # reported by check()
            self.error = exc
            log.exception("virtual HBC subject failed")

    def stop(self) -> None:
        """Stop publishing and close the streams."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=2.0)
        for obj in (self._inlet, self._ecg, self._truth):
            if obj is not None:
                obj.close()
        self._inlet = self._ecg = self._truth = None
