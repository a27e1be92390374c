"""The safety gate: every stimulator call passes through here before reaching hardware.

What it enforces (each refusal raises a typed :class:`SafetyError`, is logged on the
``stimloop.devices`` logger and is published as a JSON marker on the gate's LSL marker
stream; nothing is ever clamped to a "nearest allowed" value):

- per-session limits (:class:`~stimloop.devices.limits.SafetyLimits`): intensity, count, IPI;
- the rTMS train table and a minimum inter-train interval, for configured trains and for
  runs of single pulses at >= 1 Hz; rTMS needs the resting motor threshold (rMT);
- the device's own limits (e.g. Magstim Rapid² maximum frequency by power level);
- a stale-data interlock: the driving stream's newest sample recent, not in the future;
- punctuality: a pulse later than the caller's tolerance is refused as ``late``;
- a heartbeat watchdog (:mod:`~stimloop.devices.watchdog`) and the latching, process-wide
  emergency stop (:mod:`~stimloop.devices.estop`).

``fire`` and ``fire_train`` share one path: for a planned pulse, a pre-flight check under
the lock and the wait for its (finite) time without the lock, so the e-stop and the
watchdog can always disarm; then, for every pulse, the checks under the lock right before
the trigger.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace

import pylsl

from stimloop.devices import rules
from stimloop.devices.base import (
    FreshnessFn,
    Stimulator,
    StimulatorStatus,
    TrainSpec,
    is_number,
    wait_until,
)
from stimloop.devices.errors import (
    ConfigError,
    DeviceError,
    ErrorCode,
    SafetyError,
)
from stimloop.devices.estop import LATCH
from stimloop.devices.limits import SafetyLimits
from stimloop.devices.watchdog import Watchdog

logger = logging.getLogger("stimloop.devices")

#: Default for ``late_tolerance_s`` of :meth:`SafeStimulator.fire`, s.
LATE_TOLERANCE_S = 0.001
#: Disarms remembered for :meth:`SafeStimulator.first_disarm_after`.
DISARMS_KEPT = 32


class SafeStimulator:
    """A stimulator behind the safety gate; the only stimulator research code holds.

    Parameters
    ----------
    driver : Stimulator
        The device driver (not yet connected).
    limits : SafetyLimits, optional
        Session limits; defaults to :class:`SafetyLimits` ().
    override_reason : str, optional
        The reason under which looser-than-default ``limits`` were accepted. Required if
        ``limits`` is looser than the defaults; recorded as a marker.
    marker_source_id : str, optional
        LSL source_id of the gate's marker stream (default: unique per gate).

    Calls are serialised by a lock never held while waiting for a scheduled time, so the
    emergency stop and the watchdog can always disarm immediately.
    """

    def __init__(
        self,
        driver: Stimulator,
        limits: SafetyLimits | None = None,
        override_reason: str | None = None,
        marker_source_id: str | None = None,
    ) -> None:
        from stimloop.stream.outlet import marker_outlet

        self.limits = limits or SafetyLimits()
        looser = self.limits.looser_than(SafetyLimits())
        if looser and not (override_reason and override_reason.strip()):
            raise ConfigError(
                ErrorCode.BAD_CONFIG,
                "safety limits looser than the defaults need an override_reason; looser: "
                + "; ".join(looser),
            )
        self._driver = driver
        self.marker_source_id = marker_source_id or f"stimloop-safety-{uuid.uuid4().hex[:12]}"
        self._markers = marker_outlet(
            f"stimloop-safety-{driver.name or 'stimulator'}", self.marker_source_id
        )
        self._lock = threading.RLock()
        self._ledger = rules.Ledger(self.limits)
        self._freshness: FreshnessFn | None = None
        # (LSL time, reason) of the latest disarms by any path, so the engine can tell
        # whether a train in progress was cut short and after how many pulses.
        self._disarms: deque[tuple[float, str]] = deque(maxlen=DISARMS_KEPT)
        self._max_age_s = self.limits.max_stream_age_s
        self.watchdog = Watchdog(self._on_watchdog_trip)
        # Published again with every arm: a recorder that joins later must have it.
        self._override = {"reason": override_reason, "looser": looser} if looser else None
        if looser:
            self._publish({"event": "override", **self._override})
            logger.warning("safety override (%s): %s", override_reason, "; ".join(looser))
        LATCH.register(self)

    # -- bookkeeping -------------------------------------------------------------------
    @property
    def driver_name(self) -> str:
        """Registry name of the wrapped driver."""
        return self._driver.name

    @property
    def pulses_delivered(self) -> int:
        """Pulses triggered so far in this session."""
        return self._ledger.pulses

    @property
    def intensity_pct(self) -> float:
        """The output set through the gate, % MSO."""
        return self._ledger.intensity_pct

    @property
    def train(self) -> TrainSpec | None:
        """The train configured through the gate, or None."""
        return self._ledger.train

    @property
    def resting_motor_threshold_pct(self) -> float | None:
        """Resting motor threshold in % MSO, or None if not set."""
        return self._ledger.rmt_pct

    def first_disarm_after(self, t_lsl: float) -> tuple[float, str] | None:
        """The first disarm completed after LSL time ``t_lsl`` (s): its LSL time, once the
        driver's disarm returned, and its reason; None if there was none.

        Every path that disarms is counted (:meth:`disarm`, the e-stop, the watchdog, a
        device error), not a device that disarms itself without the gate calling it.
        """
        return next(((t, why) for t, why in list(self._disarms) if t > t_lsl), None)

    def _publish(self, payload: dict) -> None:
        try:
            self._markers.push_marker(json.dumps(payload, default=str), pylsl.local_clock())
        except Exception:  # a marker failure must never mask the refusal itself
            logger.exception("could not publish safety marker %r", payload)

    @contextlib.contextmanager
    def _refusals(self) -> Iterator[None]:
        """Every rule broken inside is logged and published as a refusal, then raised."""
        try:
            yield
        except SafetyError as err:
            logger.error("refused: %s", err)
            self._publish({"event": "refused", "code": err.code.value, "message": err.message})
            raise

    def _safe_disarm(self, why: str) -> str | None:
        """Disarm, never raising; return why the driver could not (None: disarmed)."""
        try:
            if self._driver.connected:
                self._driver.disarm()
        except Exception as exc:
            logger.exception("disarm after %s failed", why)
            failure = f"{self._driver.name or 'stimulator'}: {exc}"
            self._publish({"event": "disarm_failed", "reason": why, "error": str(exc)})
            return failure
        self._disarms.append((pylsl.local_clock(), why))
        self._publish({"event": "disarmed", "reason": why})
        return None

    def _call(self, what: str, fn, *args, **kwargs):
        """Call the driver; on any device error disarm first, record it, then re-raise."""
        try:
            return fn(*args, **kwargs)
        except DeviceError as exc:
            logger.error("%s failed: %s; disarming", what, exc)
            self._publish({"event": "device_error", "during": what, "code": exc.code.value,
                           "message": exc.message})  # fmt: skip
            self._safe_disarm(f"device error during {what}")
            raise

    # -- checks (the rules live in stimloop.devices.rules) -------------------------------
    def _check_common(self) -> None:
        rules.check_latch(LATCH.latched, LATCH.reason)
        rules.check_watchdog(self.watchdog)

    def _check_pulse(self, t: float) -> None:
        self._check_common()
        self._ledger.check_pulse(t)
        rules.check_fresh(self._freshness, self._max_age_s)

    def _check_train_fire(self, t: float) -> None:
        self._check_common()
        self._ledger.check_train_start(t, self._driver)
        rules.check_fresh(self._freshness, self._max_age_s)

    def _gated(self, at: float | None, late_tolerance_s: float, check: Callable[[float], None],
               trigger: Callable[[], float]) -> float:  # fmt: skip
        """The one path of ``fire`` and ``fire_train``: a planned pulse (``at``, a finite
        LSL time) is checked, waited for unlocked and checked again at its time, an
        immediate one is checked once; then refuse if late, else trigger."""
        with self._refusals():
            rules.check_positive("late_tolerance_s", late_tolerance_s)
            if at is not None:
                at = rules.check_planned_time(at)
                # A planned pulse is checked for its time now, so a refusal comes before
                # the wait; an immediate one needs only the check right below.
                with self._lock:
                    check(at)
                wait_until(at)
            with self._lock:
                # Re-check what the wait may have changed (e-stop, watchdog, another
                # caller, the stream), then refuse rather than fire a pulse that is late;
                # the clock is read again after the checks, so a stall inside them (a
                # slow freshness read, a GIL hand-off) cannot let a late pulse out.
                check(pylsl.local_clock())
                rules.check_late(pylsl.local_clock(), at, late_tolerance_s)
                return trigger()

    # -- configuration -----------------------------------------------------------------
    def set_resting_motor_threshold(self, rmt_pct: float) -> None:
        """Set the resting motor threshold in % MSO (needed for rTMS)."""
        with self._refusals(), self._lock:
            if not (is_number(rmt_pct) and 0 < rmt_pct <= 100):
                raise SafetyError(
                    ErrorCode.BAD_ARGUMENT, f"rMT must be in (0, 100] % MSO, got {rmt_pct!r}"
                )
            led = self._ledger
            old, led.rmt_pct = led.rmt_pct, float(rmt_pct)
            if led.train is not None:
                try:
                    led.check_train(led.train, led.intensity_pct, self._driver)
                except SafetyError:
                    led.rmt_pct = old
                    raise
        self._publish({"event": "rmt", "rmt_pct": rmt_pct})

    def bind_stream(self, freshness_fn: FreshnessFn, max_age_s: float | None = None) -> None:
        """Tie firing to a stream: refuse when ``freshness_fn()`` says it is old or bad.

        Parameters
        ----------
        freshness_fn : callable () -> (age_s, ok) or (age_s, ok, reason)
            Age in s of the stream's newest sample, whether the stream is good, and why
            not. Called right before every pulse; an exception counts as stale, and an
            age below -5 ms (a sample stamped in the future) is refused too.
        max_age_s : float, optional
            Threshold in s; defaults to ``limits.max_stream_age_s`` (50 ms). May only be
            stricter (smaller) than the limit.
        """
        limit = self.limits.max_stream_age_s
        max_age = limit if max_age_s is None else float(max_age_s)
        with self._refusals():
            if not (0 < max_age <= limit):
                raise SafetyError(
                    ErrorCode.BAD_ARGUMENT,
                    f"max_age_s must be in (0, {limit}] s, got {max_age_s!r}",
                )
        with self._lock:
            self._freshness = freshness_fn
            self._max_age_s = max_age

    def check_stream(self) -> None:
        """Apply the stale-data rule of :meth:`bind_stream` now, outside a fire (the
        engine re-checks it while a train runs); nothing is published.

        Raises
        ------
        StaleDataError
            The bound stream is flagged bad, too old, or stamped in the future.
        """
        rules.check_fresh(self._freshness, self._max_age_s)

    def start_watchdog(self, period_s: float) -> None:
        """Require :meth:`heartbeat` at least every ``period_s``; two missed periods disarm
        and refuse every fire until the loop heartbeats and calls :meth:`arm` again."""
        with self._refusals():
            self.watchdog.start(rules.check_positive("watchdog period", period_s))

    def stop_watchdog(self) -> None:
        """Stop the watchdog thread (heartbeats are no longer required)."""
        self.watchdog.stop()

    def heartbeat(self) -> None:
        """Tell the watchdog the controlling loop is alive (a timestamp write, no lock)."""
        self.watchdog.heartbeat()

    def _on_watchdog_trip(self, limit_s: float) -> None:
        self._safe_disarm("watchdog")  # act first, then record
        self._publish({"event": "watchdog_trip", "period_s": limit_s / 2})

    def _on_emergency_stop(self, reason: str) -> str | None:
        """Disarm for the e-stop; return why the driver could not (None: disarmed)."""
        failure = self._safe_disarm("emergency stop")  # act first, then record
        self._publish({"event": "estop", "reason": reason})
        return failure

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the driver is connected."""
        return self._driver.connected

    def connect(self) -> None:
        """Connect the driver."""
        with self._lock:
            self._driver.connect()
            self._publish({"event": "connected", "driver": self._driver.name})

    def close(self) -> None:
        """Stop the watchdog, disarm and close the driver, destroy the marker outlet. Idempotent."""
        self.stop_watchdog()
        with self._lock:
            try:
                self._driver.close()
            finally:
                if self._markers is not None:
                    self._publish({"event": "closed"})
                    self._markers.close()
                    self._markers = _NullOutlet()

    def __enter__(self) -> SafeStimulator:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def arm(self) -> None:
        """Arm, after checking the emergency stop and the watchdog."""
        with self._refusals(), self._lock:
            self.watchdog.clear_if_beating()
            self._check_common()
            self._call("arm", self._driver.arm)
            armed = {"intensity_pct": self._ledger.intensity_pct, "override": self._override}
            self._publish({"event": "armed", **armed})

    def disarm(self, reason: str = "request") -> None:
        """Disarm. Never refused."""
        with self._lock:
            self._driver.disarm()
            self._disarms.append((pylsl.local_clock(), reason))
            self._publish({"event": "disarmed", "reason": reason})

    def set_intensity(self, intensity_pct: float) -> None:
        """Set the output in % MSO, after checking the session and train limits."""
        with self._refusals(), self._lock:
            intensity_pct = rules.check_intensity(
                intensity_pct, self._driver.intensity_range_pct, self.limits.max_intensity_pct
            )
            self._check_common()
            if self._ledger.train is not None:
                self._ledger.check_train(self._ledger.train, intensity_pct, self._driver)
            self._call("set_intensity", self._driver.set_intensity, intensity_pct)
            self._ledger.intensity_pct = intensity_pct

    def configure_train(self, train: TrainSpec) -> None:
        """Load an rTMS train after checking rMT, the table and the device limit."""
        with self._refusals(), self._lock:
            try:
                train.validate()
            except DeviceError as exc:
                raise SafetyError(exc.code, exc.message) from exc
            self._check_common()
            self._ledger.check_train(train, self._ledger.intensity_pct, self._driver)
            self._call("configure_train", self._driver.configure_train, train)
            self._ledger.train = train
            self._publish(
                {"event": "train", "frequency_hz": train.frequency_hz, "n_pulses": train.n_pulses}
            )

    def fire(self, at: float | None = None, *, site: str = "", reason: str = "",
             late_tolerance_s: float = LATE_TOLERANCE_S) -> float:  # fmt: skip
        """Fire one pulse now or at LSL time ``at``, after every check; return trigger time.

        Checks run before waiting and again immediately before the trigger (emergency
        stop, watchdog, stream freshness, limits), so a condition that arises during the
        wait still stops the pulse; a pulse that would leave more than
        ``late_tolerance_s`` (s) after ``at`` is refused as ``late``.
        """

        def trigger() -> float:
            t = self._call("fire", self._driver.fire, None, site=site, reason=reason)
            self._ledger.record_pulse(t)
            return t

        t = self._gated(at, late_tolerance_s, self._check_pulse, trigger)
        self._publish({"event": "fire", "t_lsl": t, "intensity_pct": self._ledger.intensity_pct,
                       "site": site, "reason": reason, "t_planned": at})  # fmt: skip
        return t

    def fire_train(self, at: float | None = None, *, site: str = "", reason: str = "",
                   late_tolerance_s: float = LATE_TOLERANCE_S) -> float:  # fmt: skip
        """Start the configured train now or at ``at``; return the LSL time of its first
        pulse. Checked and timed like :meth:`fire`."""

        def trigger() -> float:
            t0 = self._call("fire_train", self._driver.fire_train, None, site=site, reason=reason)
            self._ledger.record_train(t0)
            return t0

        t0 = self._gated(at, late_tolerance_s, self._check_train_fire, trigger)
        train = self._ledger.train
        self._publish({"event": "train_fired", "t_lsl": t0, "frequency_hz": train.frequency_hz,
                       "n_pulses": train.n_pulses, "intensity_pct": self._ledger.intensity_pct,
                       "site": site, "reason": reason, "t_planned": at})  # fmt: skip
        return t0

    def status(self) -> StimulatorStatus:
        """Device status, with the gate's own fault (estop, watchdog) in ``error`` if any."""
        st = self._driver.status()
        gate_error = None
        if LATCH.latched:
            gate_error = f"emergency stop: {LATCH.reason}"
        elif self.watchdog.tripped:
            gate_error = "watchdog tripped"
        if gate_error:
            st = replace(st, error=gate_error if st.error is None else f"{gate_error}; {st.error}")
        return st


class _NullOutlet:
    """Stands in for the marker outlet after close so late refusals still log."""

    def push_marker(self, *args: object, **kwargs: object) -> None:
        logger.info("marker after close dropped: %r", args[:1])

    close = push_marker
