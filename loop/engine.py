"""The closed-loop engine: one real-time thread from LSL samples to the HAL.

Per iteration the thread

1. waits for the next EEG chunk (blocking-first pull, bounded by one chunk period, so
   it wakes the moment data arrive and never sleeps through a stream loss),
2. runs the protocol (spatial filter + phase kernel) and hands any pulse request to the
   :class:`~stimloop.loop.scheduler.PulseScheduler` without waiting for it,
3. heartbeats the HAL watchdog,
4. drains the other streams (ECG, EDA) into their DSP stages.

Every decision (scheduled, fired, refused, gated) and every stream-health event goes out
as a JSON marker on the session's decision stream, so the recording is the complete
truth of the session. The thread never waits on a GUI, a disk or a network peer: LSL
pushes are non-blocking, recording runs elsewhere, and the only blocking call is the
bounded pull. The cyclic garbage collector is frozen and disabled while the loop runs
(reference counting still frees every temporary); ``bench/loop_latency.py`` measures
the effect rather than assuming it.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pylsl

from stimloop.devices.errors import SafetyError
from stimloop.devices.safety import SafeStimulator
from stimloop.loop.cpus import request_realtime_priority
from stimloop.loop.protocol import (
    Hold,
    Notice,
    Prompt,
    PulseOutcome,
    PulseRequest,
    StimProtocol,
    Stop,
)
from stimloop.loop.scheduler import PulseScheduler
from stimloop.loop.stage import Stage
from stimloop.stream.errors import StreamError, StreamLostError
from stimloop.stream.events import ClockJump, Gap, NonFinite, Recovered, Stale, Trusted, Untrusted
from stimloop.stream.inlet import Chunk, Inlet, MarkerInlet
from stimloop.stream.outlet import Outlet
from stimloop.stream.ratelimit import RateLimiter
from stimloop.stream.stats import StreamStats

log = logging.getLogger("stimloop.loop")

#: GIL switch interval while an engine runs, s (CPython's default is 5 ms).
SWITCH_INTERVAL_S = 0.0005
#: Period at which the non-EEG streams are drained, s.
OTHERS_PERIOD_S = 0.005
#: How long after a train's last pulse the engine waits before counting it, s: a disarm
#: still under way at the last pulse (a serial command to the device) is then recorded.
TRAIN_END_GRACE_S = 0.25
#: The decision-stream event of each stream-health condition (Engine._health).
_HEALTH_EVENT = {Gap: "gap", Stale: "stale", Recovered: "recovered", NonFinite: "nonfinite",
                 ClockJump: "clock_jump", Untrusted: "untrusted_timing",
                 Trusted: "trusted_timing"}  # fmt: skip
#: Refusals kept in memory for the status and the run's result (all are on the markers).
REFUSALS_KEPT = 10_000


@dataclass
class EngineStats:
    """What the engine measured about itself.

    Attributes
    ----------
    iterations : int
        Loop iterations that processed an EEG chunk.
    busy_us : ndarray
        Processing time per iteration in µs (ring of the last 100 000).
    allocated_blocks_growth : int
        Net growth of Python's allocated memory blocks over the session (after warm-up).
    gc_collections : int
        Cyclic-GC collections that ran on any thread while the loop was running.
    realtime : bool
        Whether the engine thread got real-time (SCHED_FIFO) priority.
    """

    iterations: int = 0
    busy_us: np.ndarray = field(default_factory=lambda: np.zeros(100_000))
    allocated_blocks_growth: int = 0
    gc_collections: int = 0
    realtime: bool = False

    def busy_percentiles(self) -> dict[str, float]:
        n = min(self.iterations, self.busy_us.size)
        if n == 0:
            return {}
        b = self.busy_us[:n]
        return {"p50_us": float(np.percentile(b, 50)), "p99_us": float(np.percentile(b, 99)),
                "max_us": float(b.max())}  # fmt: skip


@dataclass
class StreamHealth:
    """What the engine saw of one input stream: the shared counters plus sample ages.

    Attributes
    ----------
    counts : StreamStats
        Samples, gaps, lost and non-finite samples, staleness (stimloop's one record).
    ages_ms : ndarray
        Age of the newest sample at each non-empty pull, ms (ring of the last 100 000).
    pulls : int
        Non-empty pulls so far.
    """

    counts: StreamStats
    ages_ms: np.ndarray = field(default_factory=lambda: np.zeros(100_000))
    pulls: int = 0

    def account(self, chunk: Chunk) -> None:
        """Add one pull's chunk: its counts and the newest sample's age."""
        self.counts.add_chunk(chunk)
        if len(chunk):
            age = (pylsl.local_clock() - float(chunk.timestamps[-1])) * 1e3
            self.ages_ms[self.pulls % self.ages_ms.size] = age
            self.pulls += 1

    def summary(self) -> dict[str, float | int | None]:
        """Counters, effective rate and age percentiles (JSON-ready)."""
        ages = self.ages_ms[: min(self.pulls, self.ages_ms.size)]
        return {
            **self.counts.summary(),
            "age_ms_p50": float(np.percentile(ages, 50)) if ages.size else None,
            "age_ms_p99": float(np.percentile(ages, 99)) if ages.size else None,
        }


class Engine:
    """The real-time thread of a closed-loop session.

    Parameters
    ----------
    eeg : Inlet
        The connected inlet that drives the loop (the engine waits on it): the
        protocol's input (EEG for phase-locked TMS, ECG for heart-brain coupling), or the
        first input of a session without a protocol. Its role is ``driver_role``.
    protocol : StimProtocol or None
        Decides when to fire; None: the session only measures.
    stimulator : SafeStimulator or None
        Gated stimulator (connected, intensity set and armed by the caller); None
        without a protocol.
    markers : Outlet
        String outlet for decision and health markers.
    others : mapping of role to Inlet, optional
        Further connected inlets (``"ecg"``, ``"eda"``) drained every iteration.
    stages : sequence of Stage, optional
        DSP stages (already started); each gets the chunks of its role.
    chunk_period_s : float
        Longest wait for an EEG chunk per iteration, s.
    watchdog_period_s : float
        HAL watchdog period in s; the loop heartbeats every iteration (at least every
        ``chunk_period_s``), and two missed periods disarm. 0.25 s leaves room for a
        loaded 2-core machine without tripping on scheduling hiccups, and still stops a
        hung loop within half a second.
    site : str
        Stimulation site written into each pulse's log.
    events : MarkerInlet, optional
        Stimulus markers; each is passed to the stages that score event-related
        responses (``add_event(t_lsl)``) and echoed on the decision stream.
    estimates : Outlet, optional
        Irregular 3-channel outlet for the protocol's ``last_estimate`` (phase rad,
        amplitude µV, confidence), pushed once per EEG chunk for displays.
    driver_role : str
        Role of ``eeg`` (default ``"eeg"``).
    on_prompt, on_stop : callable, optional
        Called (on this thread) with the protocol's :class:`Prompt` or :class:`Stop`
        after it is published; the session disarms in them.
    """

    def __init__(
        self,
        eeg: Inlet,
        protocol: StimProtocol,
        stimulator: SafeStimulator,
        markers: Outlet,
        *,
        others: Mapping[str, Inlet] | None = None,
        stages: Sequence[Stage] = (),
        chunk_period_s: float = 0.01,
        watchdog_period_s: float = 0.25,
        site: str = "",
        estimates: Outlet | None = None,
        events: MarkerInlet | None = None,
        driver_role: str = "eeg",
        on_prompt: Callable[[Prompt], None] | None = None,
        on_stop: Callable[[Stop], None] | None = None,
    ) -> None:
        self.events = events
        self.eeg = eeg
        self.driver_role = driver_role
        self.on_prompt = on_prompt
        self.on_stop = on_stop
        self.estimates = estimates
        #: Cleared to pause the protocol (estimates continue, no pulses are requested);
        #: use :meth:`pause` and :meth:`resume`, which also void pulses already planned.
        self.protocol_enabled = threading.Event()
        self.protocol_enabled.set()
        self._paused_t = -math.inf  # LSL time of the last pause
        self.protocol = protocol
        self.stimulator = stimulator
        self.markers = markers
        self.others = dict(others or {})
        self.stages = list(stages)
        self.chunk_period_s = chunk_period_s
        self.watchdog_period_s = watchdog_period_s
        self.stats = EngineStats()
        self.streams = {
            role: StreamHealth(StreamStats(inlet.rate_hz, inlet.source_id))
            for role, inlet in {driver_role: eeg, **self.others}.items()
        }
        self.pulses: list[dict] = []  # bounded by the gate's pulse limit
        self.refusals: deque[dict] = deque(maxlen=REFUSALS_KEPT)
        self.n_refused = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._stall = threading.Event()  # test hook: freeze the loop to trip the watchdog
        # LSL time of the last pulse of a train in progress (-inf: none): until then the
        # driving stream must stay fresh and finite, or the train is stopped.
        self._train_until = -math.inf
        # That train's outcome: the protocol hears of it once the train is over, with the
        # pulses that went out (set on the pulse thread, after _train_until).
        self._train: PulseOutcome | None = None
        self._lookups: list[dict] = []  # fired pulses awaiting the estimate at their time
        self._lookups_lock = threading.Lock()
        self._switch_interval: float | None = None
        self._next_others = 0.0
        self._limit = RateLimiter(1.0)  # one health marker per condition per second
        # The protocol gets the last word right before the trigger (phase-locked: an
        # EEG gap voids its forecast), and bounds how far ahead and how late a pulse may be.
        self._scheduler = None
        if protocol is not None and stimulator is not None:
            self._scheduler = PulseScheduler(
                stimulator, self._on_outcome, site, veto=self._fire_veto,
                max_lead_s=protocol.max_lead_s, late_tolerance_s=protocol.late_tolerance_s,
            )  # fmt: skip
            stimulator.bind_stream(self._freshness)
        self._thread = threading.Thread(target=self._run, name="stimloop-engine", daemon=True)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Engine:
        """Start the watchdog and the real-time thread."""
        # A full collection of a process that has loaded numba, scipy and MNE takes a
        # noticeable time: do it here, before the watchdog starts counting, then move
        # every survivor to the permanent generation so the loop never rescans them.
        gc.collect()
        gc.freeze()
        # A thread woken by data or by a pulse deadline must get the GIL promptly:
        # CPython's default 5 ms switch interval would let another thread of this
        # process hold it that long and make a scheduled pulse late by as much.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_S))
        if self._scheduler is not None:
            self.stimulator.start_watchdog(self.watchdog_period_s)
            self._scheduler.start()
        self._thread.start()
        return self

    def pause(self) -> None:
        """Pause the protocol: no new pulse is requested, none already planned fires, and
        a train in progress stops (disarmed: the operator arms again to go on)."""
        self._paused_t = pylsl.local_clock()
        self.protocol_enabled.clear()
        self._stop_train_if_paused()

    def _stop_train_if_paused(self) -> None:
        # Called by pause() and by the pulse thread once a train started, so a train whose
        # trigger raced with the pause is stopped by one or the other (or both: harmless).
        if self.protocol_enabled.is_set() or pylsl.local_clock() > self._train_until:
            return
        self.stimulator.disarm("train stopped: protocol paused")
        self._mark("train_stopped", role=self.driver_role, reason="protocol paused")
        log.warning("train stopped: protocol paused; disarmed")
        # Only now, with the disarm on the gate's record: the loop then ends the train
        # (_guard_train → _end_train) and counts it cut short at that disarm.
        self._train_until = -math.inf

    def resume(self) -> None:
        """Resume the protocol; pulses planned before the pause stay void."""
        self.protocol_enabled.set()

    def _fire_veto(self, request: PulseRequest) -> str:
        # A pause must stop what the scheduler already holds: a pulse planned up to the
        # protocol's lead (HBC: 0.6 s, a 5 s train) would otherwise leave after the
        # operator's pause was acknowledged, and after a quick resume too.
        if not self.protocol_enabled.is_set():
            return "protocol paused"
        if request.info.get("t_decided", math.inf) <= self._paused_t:
            return "protocol paused after this pulse was planned"
        return self.protocol.fire_veto(request)

    @property
    def running(self) -> bool:
        """True while the real-time thread runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and the pulse thread, then stop the watchdog."""
        self._stop.set()
        self._stall.clear()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._scheduler is not None:
            self._scheduler.close()
            self.stimulator.stop_watchdog()
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None

    def stall(self, seconds: float) -> None:
        """Freeze the loop for ``seconds`` (fault injection: the watchdog must trip)."""
        self._stall_until = time.monotonic() + seconds
        self._stall.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the protocol is done or the loop stopped; True if it is."""
        t_end = math.inf if timeout is None else time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.done or not self._thread.is_alive():
                return True
            time.sleep(0.05)
        return False

    @property
    def done(self) -> bool:
        """True once the protocol has ended (never, without a protocol)."""
        return self.protocol is not None and self.protocol.done

    # -- interlock -----------------------------------------------------------------------
    def _freshness(self) -> tuple[float, bool, str]:
        """Age of the driving stream's newest sample, whether it is good, and why not."""
        what = self.driver_role.upper()
        if not self.eeg.connected:
            return math.inf, False, f"the {what} stream is not connected"
        if problem := self.eeg.timing_problem:
            return self.eeg.age_s(), False, f"{what} timestamps untrusted: {problem}"
        if self.eeg.is_stale():
            return self.eeg.age_s(), False, f"the {what} stream is stale"
        return self.eeg.age_s(), True, ""

    # -- markers -------------------------------------------------------------------------
    def _mark(self, event: str, **info: object) -> None:
        info["event"] = event
        self.markers.push_marker(json.dumps(info, default=_jsonable, allow_nan=True))

    # -- the loop ------------------------------------------------------------------------
    def _run(self) -> None:
        self.stats.realtime = request_realtime_priority()
        collections_before = sum(s["collections"] for s in gc.get_stats())
        gc.disable()
        blocks_before = sys.getallocatedblocks()
        try:
            name = self.protocol.name if self.protocol is not None else None
            self._mark("session_start", protocol=name)
            while not self._stop.is_set() and not self.done:
                if self._stall.is_set():
                    while time.monotonic() < self._stall_until and not self._stop.is_set():
                        time.sleep(0.005)
                    self._stall.clear()
                self._iterate()
            running = self._train
            if running is not None and self.stimulator.first_disarm_after(running.t_trigger):
                self._end_train(running)  # e.g. a cardiac stop ended the loop mid-train
            self._flush_held_back()
            self._mark("session_end", reason="protocol done" if self.done else "stopped")
            # A loop that ends on purpose stops its watchdog rather than letting it trip.
            if self.stimulator is not None:
                self.stimulator.stop_watchdog()
        except BaseException as exc:  # reported to the session runner, never swallowed
            self.error = exc
            log.exception("engine loop failed")
            self._mark("engine_error", error=repr(exc))
            if self.stimulator is not None:
                self.stimulator.disarm("engine error")  # not waiting for the watchdog
        finally:
            self.stats.allocated_blocks_growth = sys.getallocatedblocks() - blocks_before
            # Count before re-enabling: the first allocation after enable() may collect.
            after = sum(s["collections"] for s in gc.get_stats())
            self.stats.gc_collections = after - collections_before
            gc.enable()
            gc.unfreeze()

    def _iterate(self) -> None:
        chunk, role = None, self.driver_role
        if self.eeg.connected:
            try:
                chunk = self.eeg.pull(self.chunk_period_s)
            except StreamLostError as exc:
                self._mark("stream_lost", role=role, error=str(exc))
        else:
            self._stop.wait(self.chunk_period_s)
        self._guard_train(chunk)
        t0 = time.perf_counter()
        if chunk is not None:
            self.streams[role].account(chunk)
            self._health(role, chunk.events)
            if len(chunk):
                # A protocol that reads the stages' outputs (heart rate) gets them first;
                # phase-locked TMS decides first (its latency is the pulse's).
                first = self.protocol is not None and self.protocol.reads_stages
                if first:
                    self._update_stages(role, chunk)
                if self.protocol is not None:
                    self._decide(chunk)
                    self._resolve_lookups()
                if not first:
                    self._update_stages(role, chunk)
        if self.stimulator is not None:
            self.stimulator.heartbeat()
        now = time.perf_counter()
        if now >= self._next_others:
            # ECG and EDA feed displays and scores, not decisions: draining them every
            # 5 ms instead of every EEG sample keeps the loop's own cost low.
            self._next_others = now + OTHERS_PERIOD_S
            self._drain_others()
            if self.events is not None:
                self._forward_events()
        self._finish_iteration(chunk, t0)

    def _guard_train(self, chunk: Chunk | None) -> None:
        """Stop a train in progress when the driving stream goes stale, lost or non-finite;
        once it is over (or stopped), tell the protocol (:meth:`_end_train`).

        The gate checks the stream before a train starts; a train then runs for seconds
        (heart-brain-coupled localisation: 5 s at 10 Hz), and the protocol's cardiac
        stop rule is blind without the ECG that drives it. So the same rule, plus finite
        samples, holds every loop iteration until the train's last pulse; a breach
        disarms (which aborts the train) and is recorded as ``train_stopped``. The
        stimulator stays disarmed until the operator arms it again.
        """
        running = self._train
        if running is None:
            return
        if (now := pylsl.local_clock()) > self._train_until:
            if now > self._train_until + TRAIN_END_GRACE_S:
                self._end_train(running)
            return
        why = ""
        if chunk is None:
            why = f"the {self.driver_role.upper()} stream was lost"
        elif len(chunk) and not chunk.finite.all():
            why = f"the {self.driver_role.upper()} stream sent NaN/inf samples"
        else:
            try:
                self.stimulator.check_stream()
            except SafetyError as exc:
                why = exc.message
        if why:
            self._train_until = -math.inf
            self.stimulator.disarm(f"train stopped: {why}")
            self._mark("train_stopped", role=self.driver_role, reason=why)
            log.error("train stopped: %s; disarmed", why)
            self._end_train(running)

    def _end_train(self, result: PulseOutcome) -> None:
        """Count what went out of a train that is over or stopped, and tell the protocol.

        Whatever disarmed the stimulator after the first pulse (this guard, the operator,
        a prompt or stop of the protocol, the e-stop, the watchdog, a device error)
        aborted the train there: the pulses due before that disarm went out, at most
        (:meth:`~stimloop.devices.base.TrainSpec.pulses_due`). Fewer than planned is
        recorded as ``train_cut_short``, and the protocol learns it from the outcome.
        """
        self._train, self._train_until = None, -math.inf
        train, t0 = result.request.train, result.t_trigger
        cut = self.stimulator.first_disarm_after(t0)
        delivered = train.pulses_due(cut[0] - t0) if cut is not None else train.n_pulses
        result = dataclasses.replace(result, pulses_delivered=delivered)
        if result.cut_short:
            result = dataclasses.replace(result, error=f"disarmed: {cut[1]}")
            self._mark("train_cut_short", **{
                **result.request.info, "t_trigger": t0, "t_planned": result.request.t_fire,
                "t_disarmed": cut[0], "pulses_delivered": delivered,
                "pulses_planned": train.n_pulses, "reason": result.error})  # fmt: skip
            log.warning("train cut short after %d of %d pulses (%s)", delivered,
                        train.n_pulses, result.error)  # fmt: skip
        self.protocol.outcome(result)

    def _drain_others(self) -> None:
        for role, inlet in self.others.items():
            if not inlet.connected:
                continue
            try:
                other = inlet.pull(0.0)
            except StreamError as exc:
                self._mark("stream_lost", role=role, error=str(exc))
                continue
            self.streams[role].account(other)
            self._health(role, other.events)
            if len(other):
                self._update_stages(role, other)

    def _update_stages(self, role: str, chunk: Chunk) -> None:
        for stage in self.stages:
            if stage.role == role:
                stage.update(chunk)

    def _finish_iteration(self, chunk, t0: float) -> None:
        if chunk is not None and len(chunk):
            k = self.stats.iterations % self.stats.busy_us.size
            self.stats.busy_us[k] = (time.perf_counter() - t0) * 1e6
            self.stats.iterations += 1

    def _forward_events(self) -> None:
        try:
            received = self.events.pull()
        except StreamError as exc:
            self._mark("stream_lost", role="events", error=str(exc))
            self.events = None
            return
        for text, t in received:
            self._mark("stimulus", text=text, t_event=t)
            for stage in self.stages:
                stage.add_event(t, text)

    def _decide(self, chunk: Chunk) -> None:
        decision = self.protocol.update(chunk)
        estimate = self.protocol.last_estimate
        newest = float(chunk.timestamps[-1])
        if self.estimates is not None and estimate is not None:
            self.estimates.push(np.asarray(estimate), newest)
        if not self.protocol_enabled.is_set():
            if isinstance(decision, PulseRequest):  # release it: nothing is fired
                self.protocol.outcome(PulseOutcome(decision, False, error="protocol paused"))
            return
        if isinstance(decision, PulseRequest):
            t_decided = pylsl.local_clock()
            info = dict(decision.info)
            info["t_decided"] = t_decided
            info["decision_latency_ms"] = (t_decided - newest) * 1e3
            request = dataclasses.replace(decision, info=info)
            if decision.t_fire is None:
                # An immediate pulse fires from this thread: a hand-over to the pulse
                # thread would add a thread wake-up (and a GIL hand-off) to its latency.
                self._on_outcome(self._scheduler.fire(request))
            else:
                self._scheduler.submit(request)
                self._mark("scheduled", t_fire=decision.t_fire, **info)
        elif isinstance(decision, Hold):
            info = decision.info
            if decision.reason == "eeg_gap" and not info.get("pending_vetoed"):
                # A stream at half its declared rate has a gap in every chunk: like the
                # health markers, once a second with a count of the rest (issue #15). A
                # gap that voided a planned pulse always goes out.
                repeats = self._limit.allow(("gated", decision.reason))
                if repeats is None:
                    return
                info = {**info, "repeats": repeats}
            self._mark("gated", reason=decision.reason, **info)
        elif isinstance(decision, Prompt):
            self._mark("prompt", message=decision.message, **decision.info)
            if self.on_prompt is not None:
                self.on_prompt(decision)
        elif isinstance(decision, Stop):
            self._mark("protocol_stop", reason=decision.reason, **decision.info)
            if self.on_stop is not None:
                self.on_stop(decision)
        elif isinstance(decision, Notice):
            self._mark(decision.event, **decision.info)

    def _note_pulses(self, result: PulseOutcome) -> None:
        """Tell the stages when the gate fired (every pulse of a train): the heart stage
        blanks their artifact in the ECG."""
        train = result.request.train
        n, f = (train.n_pulses, train.frequency_hz) if train is not None else (1, 1.0)
        times = result.t_trigger + np.arange(n) / f
        for stage in self.stages:
            stage.note_pulses(times)

    def _on_outcome(self, result: PulseOutcome) -> None:
        """Runs on the pulse thread."""
        train = result.request.train
        running = result.fired and train is not None and train.n_pulses > 1
        if running:
            self._train_until = result.t_trigger + (train.n_pulses - 1) / train.frequency_hz
            self._train = result  # the protocol hears of it at its end (_end_train)
            self._stop_train_if_paused()
        if result.fired:
            self._note_pulses(result)  # first: the ECG with their artifact is on its way
        if not running:
            self.protocol.outcome(result)
        info = dict(result.request.info)
        if result.fired:
            planned = result.request.t_fire
            entry = {
                **info,
                "t_trigger": result.t_trigger,
                "t_planned": planned,
                "fire_error_ms": None if planned is None else (result.t_trigger - planned) * 1e3,
            }
            self.pulses.append(entry)
            self._mark("fired", **entry)
            if self.protocol.last_estimate is not None:  # a protocol that estimates phase
                with self._lookups_lock:
                    self._lookups.append(entry)
        else:
            entry = {**info, "error": result.error, "t_planned": result.request.t_fire}
            self.refusals.append(entry)
            self.n_refused += 1
            self._mark("refused", **entry)

    def _resolve_lookups(self) -> None:
        """Log the phase estimate at each fire time once the data for it has arrived."""
        phase_at = self.protocol.phase_at
        if not self._lookups:
            return
        with self._lookups_lock:
            pending = []
            for entry in self._lookups:
                est = phase_at(entry["t_trigger"])
                if math.isnan(est) and pylsl.local_clock() - entry["t_trigger"] < 1.0:
                    pending.append(entry)  # its samples have not arrived yet
                    continue
                entry["phase_at_fire_rad"] = est
                self._mark("pulse_phase", t_trigger=entry["t_trigger"], phase_rad=est)
            self._lookups = pending

    def _flush_held_back(self) -> None:
        """Publish what the rate limit still holds: one ``held_back`` marker per condition
        (``of``: the event, ``count``), since no later marker of it will carry the count
        (a recording said "stale 11" where the session counted 12)."""
        for key, n in self._limit.flush().items():
            first, second = key
            if first == "gated":
                self._mark("held_back", of="gated", reason=second, count=n)
            else:
                self._mark("held_back", of=_HEALTH_EVENT[second], role=first, count=n)

    def _health(self, role: str, events: tuple) -> None:
        """Publish stream-health events, each condition at most once a second per role
        (``repeats``: how many of it were held back since the last one published)."""
        for ev in events:
            repeats = self._limit.allow((role, type(ev)))
            if repeats is None:
                continue
            if isinstance(ev, Gap):
                self._mark("gap", role=role, index=ev.index, missing=ev.missing,
                           bridged=ev.bridged, repeats=repeats)  # fmt: skip
            elif isinstance(ev, Stale):
                self._mark("stale", role=role, age_s=ev.age_s, repeats=repeats)
            elif isinstance(ev, Recovered):
                self._mark("recovered", role=role, index=ev.index, repeats=repeats)
            elif isinstance(ev, NonFinite):
                self._mark("nonfinite", role=role, index=ev.index, samples=ev.n_samples,
                           repeats=repeats)  # fmt: skip
            elif isinstance(ev, ClockJump):
                self._mark("clock_jump", role=role, jump_s=ev.jump_s, cause=ev.cause,
                           repeats=repeats)  # fmt: skip
            elif isinstance(ev, Untrusted):
                self._mark("untrusted_timing", role=role, reason=ev.reason, repeats=repeats)
            elif isinstance(ev, Trusted):
                self._mark("trusted_timing", role=role, repeats=repeats)


def _jsonable(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    return str(x)
