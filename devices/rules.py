"""The safety gate's rules, one function each: they raise, naming what was asked, what
was seen and what is allowed; the gate (:mod:`stimloop.devices.safety`) applies them in
order, records every refusal and is the only caller.

Kept apart from the gate so each rule reads on its own and the gate is only the order
in which they apply, the lock, and the waiting.
"""

from __future__ import annotations

import math

from stimloop.devices.base import FreshnessFn, Stimulator, TrainSpec, is_number
from stimloop.devices.errors import (
    EmergencyStopError,
    ErrorCode,
    SafetyError,
    StaleDataError,
    WatchdogError,
)
from stimloop.devices.limits import SafetyLimits, TrainTable
from stimloop.devices.watchdog import Watchdog

#: A newest sample stamped more than this (s) after the local clock is refused: the
#: stream's clock runs ahead, so nothing can be timed from it.
FUTURE_TOLERANCE_S = 0.005


def check_latch(latched: bool, reason: str) -> None:
    """The emergency stop must not be engaged."""
    if latched:
        raise EmergencyStopError(
            ErrorCode.EMERGENCY_STOP,
            f"emergency stop is engaged ({reason}); reset it explicitly first",
        )


def check_watchdog(wd: Watchdog) -> None:
    """The controlling loop must have heartbeaten within two periods."""
    if wd.overdue():
        tripped = "; watchdog tripped, heartbeat then arm() again" if wd.tripped else ""
        raise WatchdogError(
            ErrorCode.WATCHDOG,
            f"no heartbeat for {wd.silence_s():.3f} s; allowed {2 * wd.period_s:.3f} s "
            f"(2 periods of {wd.period_s:g} s){tripped}",
        )


def check_fresh(freshness: FreshnessFn | None, max_age_s: float) -> None:
    """The driving stream must be good, its newest sample recent and not in the future."""
    if freshness is None:
        return
    try:
        age, ok, *why = freshness()
    except Exception as exc:  # fail closed
        raise StaleDataError(
            ErrorCode.STALE_DATA, f"stream freshness check failed: {exc!r}"
        ) from exc
    if not ok:
        reason = why[0] if why and why[0] else "driving stream is flagged bad"
        raise StaleDataError(ErrorCode.STALE_DATA, f"{reason}; allowed: good")
    if not (-FUTURE_TOLERANCE_S <= age <= max_age_s):
        what = "stamped in the future: " if age < 0 else ""
        raise StaleDataError(
            ErrorCode.STALE_DATA,
            f"driving stream's newest sample is {what}{age * 1e3:.1f} ms old; allowed "
            f"{-FUTURE_TOLERANCE_S * 1e3:g} to {max_age_s * 1e3:.1f} ms",
        )


def check_rmt_set(rmt_pct: float | None) -> float:
    """rTMS needs the resting motor threshold; return it."""
    if rmt_pct is None:
        raise SafetyError(
            ErrorCode.RMT_REQUIRED,
            "rTMS needs the resting motor threshold; call "
            "set_resting_motor_threshold(pct_mso) first (seen: not set)",
        )
    return rmt_pct


def check_table(table: TrainTable, f_hz: float, n: int, rel: float, what: str,
                hint: str = "") -> None:  # fmt: skip
    """``n`` pulses at ``f_hz`` and ``rel`` % rMT (a train, or a run of single pulses)
    must fit the rTMS table."""
    limit = table.max_duration(f_hz, rel)
    if limit is None:
        raise SafetyError(
            ErrorCode.TRAIN_LIMIT,
            f"{what} {n} pulses at {f_hz:.3g} Hz and {rel:.1f} % rMT is outside the rTMS "
            f"table; allowed <= {table.frequencies_hz[-1]:g} Hz and "
            f"<= {table.intensities_pct_rmt[-1]:g} % rMT{hint}",
        )
    if n / f_hz > limit + 1e-9:
        raise SafetyError(
            ErrorCode.TRAIN_LIMIT,
            f"{what} {n} pulses at {f_hz:.3g} Hz lasts {n / f_hz:.3g} s at {rel:.1f} % "
            f"rMT; allowed <= {limit:g} s{hint}",
        )


def check_device_rate(device: str, f_hz: float, intensity_pct: float, max_hz: float) -> None:
    """The device's own maximum repetition rate at this power."""
    if f_hz > max_hz:
        raise SafetyError(
            ErrorCode.DEVICE_LIMIT,
            f"{device}: {f_hz:g} Hz at {intensity_pct:g} % MSO; the device allows <= "
            f"{max_hz:g} Hz at this power",
        )


def check_budget(delivered: int, n: int, max_pulses: int) -> None:
    """``n`` more pulses must fit the session's pulse budget."""
    if delivered + n > max_pulses:
        raise SafetyError(
            ErrorCode.PULSE_LIMIT,
            f"{delivered} pulses delivered + {n} requested = {delivered + n}; "
            f"session allows <= {max_pulses}",
        )


def check_gap(gap_s: float, minimum_s: float, code: ErrorCode, what: str) -> None:
    """The time since the last pulse or train must reach the minimum."""
    if gap_s < minimum_s:
        raise SafetyError(code, f"{what} {gap_s:.4f} s; session allows >= {minimum_s:g} s")


def check_late(now: float, at: float | None, tolerance_s: float) -> None:
    """A scheduled pulse must not leave later than the tolerance after its time."""
    if at is not None and now - at > tolerance_s:
        raise SafetyError(
            ErrorCode.LATE,
            f"the pulse would leave {(now - at) * 1e3:.2f} ms after its planned time; "
            f"allowed <= {tolerance_s * 1e3:g} ms",
        )


def check_planned_time(at: object) -> float:
    """A planned pulse time must be a finite LSL time in s; return it as float.

    ``nan`` would pass every comparison that follows (the interval limits, the wait, the
    late test) and fire at once; ``inf`` would block the caller for ever.
    """
    if not (is_number(at) and math.isfinite(at)):
        raise SafetyError(
            ErrorCode.BAD_ARGUMENT,
            f"a planned pulse time must be a finite LSL time in s, got {at!r}",
        )
    return float(at)


def check_positive(name: str, value: object, unit: str = "s") -> float:
    """An argument that must be a finite number > 0; return it as float."""
    if not (is_number(value) and 0 < value < math.inf):
        raise SafetyError(ErrorCode.BAD_ARGUMENT, f"{name} must be > 0 {unit}, got {value!r}")
    return float(value)


def check_intensity(value: object, device_range: tuple[float, float], max_pct: float) -> float:
    """An intensity in % MSO within the device's range and the session maximum."""
    lo, hi = device_range
    if not (is_number(value) and lo <= value <= hi):
        raise SafetyError(
            ErrorCode.BAD_ARGUMENT,
            f"intensity {value!r} % MSO is outside the device range [{lo:g}, {hi:g}]",
        )
    if value > max_pct:
        raise SafetyError(
            ErrorCode.INTENSITY_LIMIT,
            f"intensity {value:g} % MSO; session allows <= {max_pct:g} % MSO",
        )
    return float(value)


class Ledger:
    """What the gate has delivered, and the checks that depend on it.

    A "run" is a sequence of single pulses whose gaps are all shorter than the minimum
    inter-train interval: repeated single pulses are rTMS too, so a run is checked
    against the train table like a configured train (when rMT is known).

    Parameters
    ----------
    limits : SafetyLimits
        The session limits.
    """

    def __init__(self, limits: SafetyLimits) -> None:
        self.limits = limits
        self.pulses = 0
        self.rmt_pct: float | None = None
        self.intensity_pct = 0.0
        self.train: TrainSpec | None = None
        self._last_pulse_t = -math.inf
        self._last_train_end_t = -math.inf
        self._run_n = 0
        self._run_min_gap_s = math.inf

    def since_last(self, t: float) -> float:
        """Seconds from the end of the last pulse or train to ``t``."""
        return t - max(self._last_pulse_t, self._last_train_end_t)

    def _run_after(self, gap_s: float) -> tuple[int, float]:
        """Length and shortest gap of the single-pulse run if a pulse follows after ``gap_s``."""
        if gap_s < self.limits.min_inter_train_s and self._run_n >= 1:
            return self._run_n + 1, min(self._run_min_gap_s, gap_s)
        return 1, math.inf

    def rel_intensity(self, intensity_pct: float) -> float:
        """``intensity_pct`` in % rMT (rMT must be set)."""
        return 100.0 * intensity_pct / check_rmt_set(self.rmt_pct)

    def check_train(self, train: TrainSpec, intensity_pct: float, device: Stimulator) -> None:
        """A configured train at ``intensity_pct``: rMT, the table, the device's rate."""
        rel = self.rel_intensity(intensity_pct)
        check_table(self.limits.rtms_table, train.frequency_hz, train.n_pulses, rel, "train of")
        check_device_rate(device.name, train.frequency_hz, intensity_pct,
                          device.max_frequency_hz(intensity_pct))  # fmt: skip

    def check_pulse(self, t: float) -> None:
        """A single pulse at ``t``: budget, inter-pulse interval, the table for a run."""
        lim = self.limits
        check_budget(self.pulses, 1, lim.max_pulses)
        gap = self.since_last(t)
        check_gap(gap, lim.min_ipi_s, ErrorCode.IPI_LIMIT, "inter-pulse interval")
        run_n, run_gap = self._run_after(gap)
        # The table covers rTMS at >= 1 Hz; slower single pulses (e.g. phase-locked
        # TMS every 2-5 s) are single-pulse TMS and outside its scope. 10 ms of
        # tolerance keeps a nominal 1 Hz run in scope despite trigger jitter.
        if run_n > 1 and self.rmt_pct is not None and run_gap <= 1.01:
            hint = f" (pause >= {lim.min_inter_train_s:g} s to start a new run)"
            rel = self.rel_intensity(self.intensity_pct)
            check_table(lim.rtms_table, 1.0 / run_gap, run_n, rel, "run of", hint)

    def check_train_start(self, t: float, device: Stimulator) -> None:
        """The configured train starting at ``t``: the train, budget, inter-train pause."""
        if self.train is None:
            raise SafetyError(ErrorCode.BAD_ARGUMENT, "no train configured; call configure_train")
        self.check_train(self.train, self.intensity_pct, device)
        check_budget(self.pulses, self.train.n_pulses, self.limits.max_pulses)
        # A train needs the inter-train pause after *any* earlier pulse (a single pulse
        # just before a train would lengthen it).
        check_gap(self.since_last(t), self.limits.min_inter_train_s,
                  ErrorCode.INTER_TRAIN_LIMIT, "inter-train interval")  # fmt: skip

    def record_pulse(self, t: float) -> None:
        """A single pulse left at ``t``."""
        self._run_n, self._run_min_gap_s = self._run_after(self.since_last(t))
        self.pulses += 1
        self._last_pulse_t = t

    def record_train(self, t0: float) -> None:
        """The configured train started at ``t0``."""
        train = self.train
        self.pulses += train.n_pulses
        self._last_train_end_t = t0 + (train.n_pulses - 1) / train.frequency_hz
        self._last_pulse_t = self._last_train_end_t
        self._run_n, self._run_min_gap_s = 0, math.inf
