"""The safety gate: every stimulator call passes through here before reaching hardware.

What it enforces (each refusal raises a typed :class:`SafetyError`, is logged on the
``stimloop.devices`` logger and is published as a JSON marker on the gate's LSL marker
stream; nothing is ever clamped to a "nearest allowed" value):

- per-session limits: maximum intensity (% MSO), maximum pulse count, minimum
  inter-pulse interval of single pulses;
- the rTMS train table (frequency × intensity in % of resting motor threshold → maximum
  train duration) and a minimum inter-train interval; rTMS needs the resting motor
  threshold (rMT) to be set;
- the device's own limits (e.g. Magstim Rapid² maximum frequency by power level);
- a stale-data interlock on the stream that drives the stimulator;
- a heartbeat watchdog that disarms when the controlling loop misses two periods;
- a latching, process-wide emergency stop (API, CLI over a localhost UDP datagram, GUI).

Configuration may only make limits stricter. A looser value is accepted only together
with an explicit ``override_reason``; the override is logged and published as a marker
so it is part of the session recording.

References
----------
Wassermann EM (1998). Risk and safety of repetitive transcranial magnetic stimulation.
Electroencephalogr Clin Neurophysiol 108:1-16, Table 4.
Rossi S, Hallett M, Rossini PM, Pascual-Leone A (2009). Safety, ethical considerations,
and application guidelines for the use of TMS. Clin Neurophysiol 120:2008-2039, Table 4
(reproduces Wassermann 1998).
Rossi S, Antal A, Bestmann S, et al. (2021). Safety and recommendations for TMS use in
healthy subjects and patient populations. Clin Neurophysiol 132:269-306 (reaffirms the
2009 limits for conventional rTMS).
Chen R, Gerloff C, Classen J, et al. (1997). Safety of different inter-train intervals for
rTMS. Electroencephalogr Clin Neurophysiol 105:415-421 (basis of the inter-train interval).
See docs/safety.md for the table, what was verified, and how.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

import pylsl

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
    EmergencyStopError,
    ErrorCode,
    SafetyError,
    StaleDataError,
    WatchdogError,
)

logger = logging.getLogger("stimloop.devices")

# ---------------------------------------------------------------------------------------
# rTMS train table
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainTable:
    """Maximum single-train duration by frequency and intensity (a step function).

    A query at (f, I) uses the row of the smallest tabulated frequency >= f and the
    column of the smallest tabulated intensity >= I, i.e. it always rounds *towards the
    more dangerous* tabulated condition. Frequencies above the last row or intensities
    above the last column are outside the table and refused (None). Intensities below
    the first column use the first column; frequencies below the first row use the first.

    Attributes
    ----------
    frequencies_hz : tuple of float
        Row breakpoints, ascending, Hz.
    intensities_pct_rmt : tuple of float
        Column breakpoints, ascending, % of resting motor threshold.
    max_duration_s : tuple of tuple of float
        ``max_duration_s[row][col]`` in s.
    """

    frequencies_hz: tuple[float, ...]
    intensities_pct_rmt: tuple[float, ...]
    max_duration_s: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        f, i, d = self.frequencies_hz, self.intensities_pct_rmt, self.max_duration_s
        if not f or not i:
            raise ConfigError(ErrorCode.BAD_CONFIG, "rTMS table needs at least one row and column")
        if list(f) != sorted(set(f)) or list(i) != sorted(set(i)):
            raise ConfigError(
                ErrorCode.BAD_CONFIG,
                f"rTMS table breakpoints must be strictly ascending, got frequencies {list(f)} "
                f"and intensities {list(i)}",
            )
        if len(d) != len(f) or any(len(row) != len(i) for row in d):
            raise ConfigError(
                ErrorCode.BAD_CONFIG,
                f"rTMS table must be {len(f)} x {len(i)} (frequencies x intensities), got "
                f"{[len(row) for row in d]}",
            )
        if any(not (v >= 0) or math.isinf(v) for row in d for v in row):
            raise ConfigError(
                ErrorCode.BAD_CONFIG, "rTMS table durations must be finite and >= 0 s"
            )

    def max_duration(self, frequency_hz: float, intensity_pct_rmt: float) -> float | None:
        """Maximum train duration in s, or None when (f, I) lies outside the table."""
        row = _step_index(self.frequencies_hz, frequency_hz)
        col = _step_index(self.intensities_pct_rmt, intensity_pct_rmt)
        if row is None or col is None:
            return None
        return self.max_duration_s[row][col]

    def looser_points(
        self, reference: TrainTable
    ) -> list[tuple[float, float, float, float | None]]:
        """Points where this table allows more than ``reference``: (f, I, this, reference)."""
        out = []
        for fq in sorted(set(self.frequencies_hz) | set(reference.frequencies_hz)):
            for it in sorted(set(self.intensities_pct_rmt) | set(reference.intensities_pct_rmt)):
                mine, ref = self.max_duration(fq, it), reference.max_duration(fq, it)
                if mine is not None and (ref is None or mine > ref):
                    out.append((fq, it, mine, ref))
        return out

    def scaled(self, factor: float) -> TrainTable:
        """The same table with every duration multiplied by ``factor``."""
        return replace(
            self,
            max_duration_s=tuple(tuple(v * factor for v in row) for row in self.max_duration_s),
        )

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> TrainTable:
        """Build from keys ``frequencies_hz``, ``intensities_pct_rmt``, ``max_duration_s``."""
        try:
            return cls(
                tuple(float(v) for v in cfg["frequencies_hz"]),
                tuple(float(v) for v in cfg["intensities_pct_rmt"]),
                tuple(tuple(float(v) for v in row) for row in cfg["max_duration_s"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                ErrorCode.BAD_CONFIG,
                f"rTMS table config must have keys frequencies_hz, intensities_pct_rmt, "
                f"max_duration_s (a list of rows of numbers); got {dict(cfg)!r} ({exc})",
            ) from exc


def _step_index(breaks: Sequence[float], x: float) -> int | None:
    if not (x == x):  # NaN
        return None
    for k, b in enumerate(breaks):
        if x <= b:
            return k
    return None


#: Wassermann (1998) Table 4, as reproduced in Rossi et al. (2009) Table 4: maximum safe
#: duration (s) of single rTMS trains. Rows 1, 5, 10, 20, 25 Hz; columns 90-130 % of
#: motor threshold. Entries printed as ">x" in the source (longest duration tested, no
#: adverse event) are taken as x, i.e. the tested duration is the limit. Columns above
#: 130 % are deliberately not included: intensities above 130 % rMT are refused.
WASSERMANN_1998_TABLE = TrainTable(
    frequencies_hz=(1.0, 5.0, 10.0, 20.0, 25.0),
    intensities_pct_rmt=(90.0, 100.0, 110.0, 120.0, 130.0),
    max_duration_s=(
        (1800.0, 1800.0, 360.0, 50.0, 50.0),  # 1 Hz   (>1800 >1800 360 >50 >50)
        (10.0, 10.0, 10.0, 10.0, 10.0),  # 5 Hz   (>10 in every column)
        (5.0, 5.0, 5.0, 4.2, 2.9),  # 10 Hz  (>5 >5 >5 4.2 2.9)
        (2.05, 2.05, 1.6, 1.0, 0.55),  # 20 Hz
        (1.28, 1.28, 0.84, 0.4, 0.24),  # 25 Hz
    ),
)

# ---------------------------------------------------------------------------------------
# Session limits
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SafetyLimits:
    """Per-session limits enforced by :class:`SafeStimulator`.

    Attributes
    ----------
    max_intensity_pct : float
        Highest output that may be set, % MSO.
    max_pulses : int
        Pulses allowed in the session (single pulses plus every pulse of every train).
    min_ipi_s : float
        Minimum interval between single pulses in s (the default keeps single-pulse TMS
        at or below 1 Hz; faster stimulation must be a train, which the table governs).
    min_inter_train_s : float
        Minimum pause between the last pulse of a train and the next train, in s
        (Chen et al. 1997: 5 s was safe; <= 1 s was unsafe above 100 % MT).
    max_stream_age_s : float
        Stale-data interlock: the driving stream's newest sample may be at most this old.
    rtms_table : TrainTable
        Maximum train duration by frequency and % rMT.
    """

    max_intensity_pct: float = 100.0
    max_pulses: int = 3000
    min_ipi_s: float = 1.0
    min_inter_train_s: float = 5.0
    max_stream_age_s: float = 0.050
    rtms_table: TrainTable = field(default=WASSERMANN_1998_TABLE)

    #: For each field, which direction is stricter: +1 means larger is stricter.
    _STRICTER: ClassVar[dict[str, int]] = {
        "max_intensity_pct": -1,
        "max_pulses": -1,
        "min_ipi_s": +1,
        "min_inter_train_s": +1,
        "max_stream_age_s": -1,
    }

    def looser_than(self, reference: SafetyLimits) -> list[str]:
        """Describe every way these limits are looser than ``reference`` (empty if none)."""
        out = []
        for name, sign in self._STRICTER.items():
            mine, ref = getattr(self, name), getattr(reference, name)
            if (mine - ref) * sign < 0:
                out.append(f"{name}={mine} is looser than the default {ref}")
        for fq, it, mine, ref in self.rtms_table.looser_points(reference.rtms_table):
            out.append(
                f"rtms_table at {fq:g} Hz, {it:g} % rMT allows {mine:g} s; default allows "
                f"{'nothing (outside table)' if ref is None else f'{ref:g} s'}"
            )
        return out

    @classmethod
    def from_config(
        cls, cfg: Mapping | None = None, override_reason: str | None = None
    ) -> SafetyLimits:
        """Build limits from a config mapping; only stricter values unless overridden.

        Parameters
        ----------
        cfg : mapping, optional
            Keys are the field names; ``rtms_table`` is a mapping (see
            :meth:`TrainTable.from_mapping`); ``rtms_duration_scale`` (<= 1) scales the
            default table.
        override_reason : str, optional
            Stated reason for accepting looser limits. It is logged here and published
            as a marker by the :class:`SafeStimulator` that uses these limits.

        Raises
        ------
        ConfigError
            Unknown keys, wrong types, non-physical values, or a looser limit without a
            reason.
        """
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)} | {"rtms_duration_scale"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(
                ErrorCode.BAD_CONFIG, f"unknown safety key(s) {unknown}; allowed: {sorted(known)}"
            )
        default = cls()
        kwargs: dict = {}
        for name in cls._STRICTER:
            if name not in cfg:
                continue
            value = cfg[name]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ConfigError(
                    ErrorCode.BAD_CONFIG, f"safety.{name} must be a finite number, got {value!r}"
                )
            if value < 0 or (name in ("max_intensity_pct", "max_pulses") and value <= 0):
                raise ConfigError(ErrorCode.BAD_CONFIG, f"safety.{name} must be > 0, got {value!r}")
            if name == "max_pulses":
                if int(value) != value:
                    raise ConfigError(
                        ErrorCode.BAD_CONFIG, f"safety.max_pulses must be an integer, got {value!r}"
                    )
                value = int(value)
            kwargs[name] = value
        table = default.rtms_table
        if "rtms_table" in cfg:
            if not isinstance(cfg["rtms_table"], Mapping):
                raise ConfigError(
                    ErrorCode.BAD_CONFIG,
                    f"safety.rtms_table must be a mapping, got {type(cfg['rtms_table']).__name__}",
                )
            table = TrainTable.from_mapping(cfg["rtms_table"])
        if "rtms_duration_scale" in cfg:
            scale = cfg["rtms_duration_scale"]
            if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
                raise ConfigError(
                    ErrorCode.BAD_CONFIG,
                    f"safety.rtms_duration_scale must be a number > 0, got {scale!r}",
                )
            table = table.scaled(float(scale))
        limits = cls(rtms_table=table, **kwargs)
        looser = limits.looser_than(default)
        if looser:
            if not (override_reason and override_reason.strip()):
                raise ConfigError(
                    ErrorCode.BAD_CONFIG,
                    "configuration may only make safety limits stricter; looser: "
                    + "; ".join(looser)
                    + ". Pass an explicit override_reason to accept this (it is recorded).",
                )
            logger.warning("safety override accepted (%s): %s", override_reason, "; ".join(looser))
        return limits


# ---------------------------------------------------------------------------------------
# Emergency stop (process-wide, latching)
# ---------------------------------------------------------------------------------------

#: Localhost UDP port the emergency-stop listener binds by default.
DEFAULT_ESTOP_PORT = 47999


class _EmergencyStop:
    """Process-wide latch. Engaging it disarms every live SafeStimulator at once."""

    def __init__(self) -> None:
        self._latched = threading.Event()
        self._reason = ""
        self._gates: weakref.WeakSet[SafeStimulator] = weakref.WeakSet()
        self._lock = threading.Lock()

    def register(self, gate: SafeStimulator) -> None:
        with self._lock:
            self._gates.add(gate)

    @property
    def latched(self) -> bool:
        return self._latched.is_set()

    @property
    def reason(self) -> str:
        return self._reason

    def engage(self, reason: str) -> None:
        with self._lock:
            self._reason = reason or "no reason given"
            self._latched.set()
            gates = list(self._gates)
        logger.critical("EMERGENCY STOP engaged: %s", self._reason)
        for gate in gates:
            gate._on_emergency_stop(self._reason)

    def reset(self, reason: str) -> None:
        if not (reason and reason.strip()):
            raise SafetyError(
                ErrorCode.EMERGENCY_STOP,
                "resetting the emergency stop needs a stated reason, got an empty one",
            )
        with self._lock:
            was = self._latched.is_set()
            self._latched.clear()
            self._reason = ""
            gates = list(self._gates)
        if was:
            logger.warning("emergency stop reset: %s", reason)
            for gate in gates:
                gate._publish({"event": "estop_reset", "reason": reason})


_ESTOP = _EmergencyStop()


def emergency_stop(reason: str = "") -> None:
    """Engage the latching emergency stop: disarm every stimulator in this process now.

    Every later arm/fire is refused with :class:`EmergencyStopError` until
    :func:`reset_emergency_stop` is called explicitly.
    """
    _ESTOP.engage(reason)


def reset_emergency_stop(reason: str) -> None:
    """Release the emergency stop latch. Stimulators stay disarmed until armed again."""
    _ESTOP.reset(reason)


def emergency_stop_engaged() -> bool:
    """Whether the emergency stop latch is engaged in this process."""
    return _ESTOP.latched


def send_emergency_stop(
    reason: str = "cli", port: int = DEFAULT_ESTOP_PORT, host: str = "127.0.0.1"
) -> None:
    """Ask a running session (another process) to engage its emergency stop.

    Sends one UDP datagram ``ESTOP <reason>`` to the session's
    :class:`EmergencyStopListener`. This is what ``stimloop estop`` calls. UDP is
    fire-and-forget, so the CLI should send a few datagrams; duplicates are harmless.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(f"ESTOP {reason}".encode(), (host, port))


class EmergencyStopListener:
    """Listens on a localhost UDP port and engages the emergency stop on ``ESTOP ...``.

    Only engaging is possible remotely; resetting needs the in-process API. A blocking
    ``recvfrom`` thread (no polling); :meth:`close` wakes it with a datagram to itself.

    Parameters
    ----------
    port : int
        UDP port on 127.0.0.1 (0 picks a free one; read it back from :attr:`port`).
    """

    def __init__(self, port: int = DEFAULT_ESTOP_PORT) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind(("127.0.0.1", port))
        except OSError as exc:
            self._sock.close()
            raise DeviceError(
                ErrorCode.PORT_UNAVAILABLE, f"cannot bind emergency-stop UDP port {port}: {exc}"
            ) from exc
        self.port = self._sock.getsockname()[1]
        self._token = uuid.uuid4().hex.encode()
        self._thread = threading.Thread(target=self._run, name="stimloop-estop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data, _ = self._sock.recvfrom(1024)
            except OSError:
                return
            if data == self._token:
                return
            if data.startswith(b"ESTOP"):
                emergency_stop(data[5:].decode(errors="replace").strip() or "remote request")

    def close(self) -> None:
        """Stop listening and release the port. Idempotent."""
        if self._thread.is_alive():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(self._token, ("127.0.0.1", self.port))
            self._thread.join(timeout=2.0)
        self._sock.close()


# ---------------------------------------------------------------------------------------
# The gate
# ---------------------------------------------------------------------------------------


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

    Notes
    -----
    Calls are serialised by a lock that is never held while waiting for a scheduled
    time, so the emergency stop and the watchdog can always disarm immediately.
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
        self._rmt_pct: float | None = None
        self._intensity_pct = 0.0
        self._pulses = 0
        self._last_pulse_t = -math.inf
        self._last_train_end_t = -math.inf
        # A "run" is a sequence of single pulses whose gaps are all shorter than the
        # minimum inter-train interval: repeated single pulses are rTMS too, so a run is
        # checked against the train table like a configured train (when rMT is known).
        self._run_n = 0
        self._run_min_gap_s = math.inf
        self._train: TrainSpec | None = None
        self._freshness: FreshnessFn | None = None
        self._max_age_s = self.limits.max_stream_age_s
        self._wd_period_s: float | None = None
        self._wd_last_beat = -math.inf
        self._wd_stop = threading.Event()
        self._wd_thread: threading.Thread | None = None
        self._wd_tripped = False
        if looser:
            self._publish({"event": "override", "reason": override_reason, "looser": looser})
            logger.warning("safety override (%s): %s", override_reason, "; ".join(looser))
        _ESTOP.register(self)

    # -- bookkeeping -------------------------------------------------------------------
    @property
    def driver_name(self) -> str:
        """Registry name of the wrapped driver."""
        return self._driver.name

    @property
    def pulses_delivered(self) -> int:
        """Pulses triggered so far in this session."""
        return self._pulses

    @property
    def resting_motor_threshold_pct(self) -> float | None:
        """Resting motor threshold in % MSO, or None if not set."""
        return self._rmt_pct

    def _publish(self, payload: dict) -> None:
        try:
            self._markers.push_marker(json.dumps(payload, default=str), pylsl.local_clock())
        except Exception:  # a marker failure must never mask the refusal itself
            logger.exception("could not publish safety marker %r", payload)

    def _refuse(self, err: DeviceError) -> DeviceError:
        logger.error("refused: %s", err)
        self._publish({"event": "refused", "code": err.code.value, "message": err.message})
        return err

    def _safe_disarm(self, why: str) -> None:
        try:
            if self._driver.connected:
                self._driver.disarm()
        except Exception:
            logger.exception("disarm after %s failed", why)
        self._publish({"event": "disarmed", "reason": why})

    def _call(self, what: str, fn, *args, **kwargs):
        """Call the driver; on any device error disarm first, record it, then re-raise."""
        try:
            return fn(*args, **kwargs)
        except DeviceError as exc:
            logger.error("%s failed: %s; disarming", what, exc)
            self._publish(
                {
                    "event": "device_error",
                    "during": what,
                    "code": exc.code.value,
                    "message": exc.message,
                }
            )
            self._safe_disarm(f"device error during {what}")
            raise

    def _check_common(self) -> None:
        if _ESTOP.latched:
            raise self._refuse(
                EmergencyStopError(
                    ErrorCode.EMERGENCY_STOP,
                    f"emergency stop is engaged ({_ESTOP.reason}); reset it explicitly first",
                )
            )
        if self._wd_period_s is not None:
            age = pylsl.local_clock() - self._wd_last_beat
            if self._wd_tripped or age > 2 * self._wd_period_s:
                raise self._refuse(
                    WatchdogError(
                        ErrorCode.WATCHDOG,
                        f"no heartbeat for {age:.3f} s; allowed {2 * self._wd_period_s:.3f} s "
                        f"(2 periods of {self._wd_period_s:g} s)"
                        + (
                            "; watchdog tripped, heartbeat then arm() again"
                            if self._wd_tripped
                            else ""
                        ),
                    )
                )

    def _check_fresh(self) -> None:
        if self._freshness is None:
            return
        try:
            age, ok = self._freshness()
        except Exception as exc:  # fail closed
            raise self._refuse(
                StaleDataError(ErrorCode.STALE_DATA, f"stream freshness check failed: {exc!r}")
            ) from exc
        if not ok:
            raise self._refuse(
                StaleDataError(ErrorCode.STALE_DATA, "driving stream is flagged bad; allowed: good")
            )
        if not (age <= self._max_age_s):
            raise self._refuse(
                StaleDataError(
                    ErrorCode.STALE_DATA,
                    f"driving stream's newest sample is {age * 1e3:.1f} ms old; "
                    f"allowed <= {self._max_age_s * 1e3:.1f} ms",
                )
            )

    def _intensity_rmt(self, intensity_pct: float) -> float:
        assert self._rmt_pct is not None
        return 100.0 * intensity_pct / self._rmt_pct

    def _check_train(self, train: TrainSpec, intensity_pct: float) -> None:
        if self._rmt_pct is None:
            raise self._refuse(
                SafetyError(
                    ErrorCode.RMT_REQUIRED,
                    "rTMS needs the resting motor threshold; call "
                    "set_resting_motor_threshold(pct_mso) first (seen: not set)",
                )
            )
        rel = self._intensity_rmt(intensity_pct)
        limit = self.limits.rtms_table.max_duration(train.frequency_hz, rel)
        if limit is None:
            t = self.limits.rtms_table
            raise self._refuse(
                SafetyError(
                    ErrorCode.TRAIN_LIMIT,
                    f"train at {train.frequency_hz:g} Hz and {rel:.1f} % rMT is outside the rTMS "
                    f"table; allowed <= {t.frequencies_hz[-1]:g} Hz and "
                    f"<= {t.intensities_pct_rmt[-1]:g} % rMT",
                )
            )
        if train.duration_s > limit + 1e-9:
            raise self._refuse(
                SafetyError(
                    ErrorCode.TRAIN_LIMIT,
                    f"train of {train.n_pulses} pulses at {train.frequency_hz:g} Hz lasts "
                    f"{train.duration_s:g} s at {rel:.1f} % rMT; allowed <= {limit:g} s",
                )
            )
        dev_max = self._driver.max_frequency_hz(intensity_pct)
        if train.frequency_hz > dev_max:
            raise self._refuse(
                SafetyError(
                    ErrorCode.DEVICE_LIMIT,
                    f"{self._driver.name}: {train.frequency_hz:g} Hz at {intensity_pct:g} % MSO; "
                    f"the device allows <= {dev_max:g} Hz at this power",
                )
            )

    # -- configuration -----------------------------------------------------------------
    def set_resting_motor_threshold(self, rmt_pct: float) -> None:
        """Set the resting motor threshold in % MSO (needed for rTMS)."""
        if not (0 < rmt_pct <= 100):
            raise self._refuse(
                SafetyError(
                    ErrorCode.BAD_ARGUMENT, f"rMT must be in (0, 100] % MSO, got {rmt_pct!r}"
                )
            )
        with self._lock:
            if self._train is not None:
                old, self._rmt_pct = self._rmt_pct, float(rmt_pct)
                try:
                    self._check_train(self._train, self._intensity_pct)
                except SafetyError:
                    self._rmt_pct = old
                    raise
            self._rmt_pct = float(rmt_pct)
        self._publish({"event": "rmt", "rmt_pct": rmt_pct})

    def bind_stream(self, freshness_fn: FreshnessFn, max_age_s: float | None = None) -> None:
        """Tie firing to a stream: refuse when ``freshness_fn()`` says it is old or bad.

        Parameters
        ----------
        freshness_fn : callable () -> (age_s, ok)
            Age in s of the stream's newest sample and whether the stream is good.
            Called right before every pulse; an exception counts as stale.
        max_age_s : float, optional
            Threshold in s; defaults to ``limits.max_stream_age_s`` (50 ms). May only be
            stricter (smaller) than the limit.
        """
        max_age = self.limits.max_stream_age_s if max_age_s is None else float(max_age_s)
        if not (0 < max_age <= self.limits.max_stream_age_s):
            raise self._refuse(
                SafetyError(
                    ErrorCode.BAD_ARGUMENT,
                    f"max_age_s must be in (0, {self.limits.max_stream_age_s}] s, "
                    f"got {max_age_s!r}",
                )
            )
        with self._lock:
            self._freshness = freshness_fn
            self._max_age_s = max_age

    def start_watchdog(self, period_s: float) -> None:
        """Require :meth:`heartbeat` at least every ``period_s``; two missed periods disarm.

        A thread waits on an Event with a timeout of two periods (no polling); a missed
        deadline disarms the device, publishes a marker and refuses every fire until the
        loop heartbeats and calls :meth:`arm` again.
        """
        if not (period_s > 0) or math.isinf(period_s):
            raise self._refuse(
                SafetyError(
                    ErrorCode.BAD_ARGUMENT, f"watchdog period must be > 0 s, got {period_s!r}"
                )
            )
        self.stop_watchdog()
        self._wd_period_s = float(period_s)
        self._wd_last_beat = pylsl.local_clock()
        self._wd_tripped = False
        self._wd_stop.clear()
        self._wd_thread = threading.Thread(
            target=self._watchdog, name="stimloop-watchdog", daemon=True
        )
        self._wd_thread.start()

    def stop_watchdog(self) -> None:
        """Stop the watchdog thread (heartbeats are no longer required)."""
        if self._wd_thread is not None:
            self._wd_stop.set()
            self._wd_thread.join(timeout=2.0)
            self._wd_thread = None
        self._wd_period_s = None

    def heartbeat(self) -> None:
        """Tell the watchdog the controlling loop is alive.

        Only a timestamp is written: no lock, no system call and no thread wake-up, so
        a loop can heartbeat every iteration without its latency paying for it.
        """
        self._wd_last_beat = pylsl.local_clock()

    def _watchdog(self) -> None:
        assert self._wd_period_s is not None
        limit = 2 * self._wd_period_s
        while not self._wd_stop.is_set():
            # Sleep exactly until the deadline the last heartbeat set, then look again:
            # the thread wakes about twice per limit, never once per heartbeat.
            remaining = self._wd_last_beat + limit - pylsl.local_clock()
            if remaining > 0:
                self._wd_stop.wait(remaining)
                continue
            if self._wd_stop.is_set():
                return
            if not self._wd_tripped:
                self._wd_tripped = True
                logger.error("watchdog: no heartbeat for 2 periods (%g s); disarming", limit)
                self._safe_disarm("watchdog")  # act first, then record
                self._publish({"event": "watchdog_trip", "period_s": self._wd_period_s})
            self._wd_stop.wait(self._wd_period_s)  # tripped: keep watching, never spin

    def _on_emergency_stop(self, reason: str) -> None:
        self._safe_disarm("emergency stop")  # act first, then record
        self._publish({"event": "estop", "reason": reason})

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
        with self._lock:
            if self._wd_tripped and self._wd_period_s is not None:
                if pylsl.local_clock() - self._wd_last_beat <= self._wd_period_s:
                    self._wd_tripped = False
            self._check_common()
            self._call("arm", self._driver.arm)
            self._publish({"event": "armed", "intensity_pct": self._intensity_pct})

    def disarm(self) -> None:
        """Disarm. Never refused."""
        with self._lock:
            self._driver.disarm()
            self._publish({"event": "disarmed", "reason": "request"})

    def set_intensity(self, intensity_pct: float) -> None:
        """Set the output in % MSO, after checking the session and train limits."""
        lo, hi = self._driver.intensity_range_pct
        if not (is_number(intensity_pct) and lo <= intensity_pct <= hi):
            raise self._refuse(
                SafetyError(
                    ErrorCode.BAD_ARGUMENT,
                    f"intensity {intensity_pct!r} % MSO is outside the device range "
                    f"[{lo:g}, {hi:g}]",
                )
            )
        intensity_pct = float(intensity_pct)
        if intensity_pct > self.limits.max_intensity_pct:
            raise self._refuse(
                SafetyError(
                    ErrorCode.INTENSITY_LIMIT,
                    f"intensity {intensity_pct:g} % MSO; session allows <= "
                    f"{self.limits.max_intensity_pct:g} % MSO",
                )
            )
        with self._lock:
            self._check_common()
            if self._train is not None:
                self._check_train(self._train, intensity_pct)
            self._call("set_intensity", self._driver.set_intensity, intensity_pct)
            self._intensity_pct = float(intensity_pct)

    def configure_train(self, train: TrainSpec) -> None:
        """Load an rTMS train after checking rMT, the table and the device limit."""
        try:
            train.validate()
        except DeviceError as exc:
            raise self._refuse(SafetyError(exc.code, exc.message)) from exc
        with self._lock:
            self._check_common()
            self._check_train(train, self._intensity_pct)
            self._call("configure_train", self._driver.configure_train, train)
            self._train = train
            self._publish(
                {"event": "train", "frequency_hz": train.frequency_hz, "n_pulses": train.n_pulses}
            )

    def _run_after(self, gap_s: float) -> tuple[int, float]:
        """Length and shortest gap of the single-pulse run if a pulse follows after ``gap_s``."""
        if gap_s < self.limits.min_inter_train_s and self._run_n >= 1:
            return self._run_n + 1, min(self._run_min_gap_s, gap_s)
        return 1, math.inf

    def _check_gap(
        self, minimum_s: float, code: ErrorCode, what: str, t_plan: float | None = None
    ) -> None:
        t = pylsl.local_clock() if t_plan is None else t_plan
        gap = t - max(self._last_pulse_t, self._last_train_end_t)
        if gap < minimum_s:
            raise self._refuse(
                SafetyError(code, f"{what} {gap:.4f} s; session allows >= {minimum_s:g} s")
            )

    def _check_pulse_budget(self, n: int) -> None:
        if self._pulses + n > self.limits.max_pulses:
            raise self._refuse(
                SafetyError(
                    ErrorCode.PULSE_LIMIT,
                    f"{self._pulses} pulses delivered + {n} requested = {self._pulses + n}; "
                    f"session allows <= {self.limits.max_pulses}",
                )
            )

    def fire(self, at: float | None = None, *, site: str = "", reason: str = "") -> float:
        """Fire one pulse now or at LSL time ``at``, after every check; return trigger time.

        Checks run before waiting and again immediately before the trigger (emergency
        stop, watchdog, stream freshness), so a condition that arises during the wait
        still stops the pulse.
        """
        with self._lock:
            self._check_common()
            t_plan = pylsl.local_clock() if at is None else float(at)
            self._check_pulse_budget(1)
            gap = t_plan - max(self._last_pulse_t, self._last_train_end_t)
            if gap < self.limits.min_ipi_s:
                raise self._refuse(
                    SafetyError(
                        ErrorCode.IPI_LIMIT,
                        f"inter-pulse interval {gap:.4f} s; session allows >= "
                        f"{self.limits.min_ipi_s:g} s",
                    )
                )
            run_n, run_gap = self._run_after(gap)
            # The table covers rTMS at >= 1 Hz; slower single pulses (e.g. phase-locked
            # TMS every 2-5 s) are single-pulse TMS and outside its scope. 10 ms of
            # tolerance keeps a nominal 1 Hz run in scope despite trigger jitter.
            if run_n > 1 and self._rmt_pct is not None and run_gap <= 1.01:
                f_hz = 1.0 / run_gap
                rel = self._intensity_rmt(self._intensity_pct)
                limit = self.limits.rtms_table.max_duration(f_hz, rel)
                if limit is None or run_n / f_hz > limit + 1e-9:
                    raise self._refuse(
                        SafetyError(
                            ErrorCode.TRAIN_LIMIT,
                            f"run of {run_n} single pulses at {f_hz:.3g} Hz lasts "
                            f"{run_n / f_hz:.3g} s at {rel:.1f} % rMT; allowed "
                            + (
                                "nothing (outside the table)"
                                if limit is None
                                else f"<= {limit:g} s"
                            )
                            + f" (pause >= {self.limits.min_inter_train_s:g} s to start a new run)",
                        )
                    )
            self._check_fresh()
        if at is not None:
            wait_until(float(at))
        with self._lock:
            self._check_common()
            # Re-check what another caller may have changed while we waited unlocked.
            self._check_pulse_budget(1)
            self._check_gap(self.limits.min_ipi_s, ErrorCode.IPI_LIMIT, "inter-pulse interval")
            self._check_fresh()
            t = self._call("fire", self._driver.fire, None, site=site, reason=reason)
            self._run_n, self._run_min_gap_s = self._run_after(
                t - max(self._last_pulse_t, self._last_train_end_t)
            )
            self._pulses += 1
            self._last_pulse_t = t
        self._publish(
            {
                "event": "fire",
                "t_lsl": t,
                "intensity_pct": self._intensity_pct,
                "site": site,
                "reason": reason,
            }
        )
        return t

    def fire_train(self, at: float | None = None, *, site: str = "", reason: str = "") -> float:
        """Start the configured train now or at ``at``; return the LSL time of its first pulse."""
        with self._lock:
            self._check_common()
            if self._train is None:
                raise self._refuse(
                    SafetyError(
                        ErrorCode.BAD_ARGUMENT, "no train configured; call configure_train first"
                    )
                )
            train = self._train
            self._check_train(train, self._intensity_pct)
            self._check_pulse_budget(train.n_pulses)
            # A train needs the inter-train pause after *any* earlier pulse (a single
            # pulse just before a train would lengthen it).
            t_plan = pylsl.local_clock() if at is None else float(at)
            self._check_gap(
                self.limits.min_inter_train_s, ErrorCode.INTER_TRAIN_LIMIT, "inter-train interval",
                t_plan,
            )  # fmt: skip
            self._check_fresh()
        if at is not None:
            wait_until(float(at))
        with self._lock:
            self._check_common()
            self._check_pulse_budget(train.n_pulses)
            self._check_gap(
                self.limits.min_inter_train_s, ErrorCode.INTER_TRAIN_LIMIT, "inter-train interval"
            )
            self._check_fresh()
            t0 = self._call("fire_train", self._driver.fire_train, None, site=site, reason=reason)
            self._pulses += train.n_pulses
            self._last_train_end_t = t0 + (train.n_pulses - 1) / train.frequency_hz
            self._last_pulse_t = self._last_train_end_t
            self._run_n, self._run_min_gap_s = 0, math.inf
        self._publish(
            {
                "event": "train_fired",
                "t_lsl": t0,
                "frequency_hz": train.frequency_hz,
                "n_pulses": train.n_pulses,
                "intensity_pct": self._intensity_pct,
                "site": site,
                "reason": reason,
            }
        )
        return t0

    def status(self) -> StimulatorStatus:
        """Device status, with the gate's own fault (estop, watchdog) in ``error`` if any."""
        st = self._driver.status()
        gate_error = None
        if _ESTOP.latched:
            gate_error = f"emergency stop: {_ESTOP.reason}"
        elif self._wd_tripped:
            gate_error = "watchdog tripped"
        if gate_error:
            st = replace(st, error=gate_error if st.error is None else f"{gate_error}; {st.error}")
        return st


class _NullOutlet:
    """Stands in for the marker outlet after close so late refusals still log."""

    def push_marker(self, *args: object, **kwargs: object) -> None:
        logger.info("marker after close dropped: %r", args[:1])

    def close(self) -> None:
        pass
