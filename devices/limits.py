"""Session safety limits and the rTMS train table the safety gate enforces.

Configuration may only make limits stricter. A looser value is accepted only together
with an explicit ``override_reason``; the override is logged and published as a marker
by the gate that uses the limits, so it is part of the session recording.

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

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

from stimloop.devices.errors import ConfigError, ErrorCode

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
        if not all(math.isfinite(x) for x in (*f, *i)):
            raise ConfigError(
                ErrorCode.BAD_CONFIG,
                f"rTMS table breakpoints must be finite, got frequencies {list(f)} and "
                f"intensities {list(i)}",
            )
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
        (1800.0, 1800.0, 1800.0, 360.0, 50.0),  # 1 Hz   (>1800 >1800 >1800 >360 >50)
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

    def __post_init__(self) -> None:
        # Built directly (a plug-in, a protocol's replace()) the limits skip from_config,
        # and a NaN limit compares False with everything: min_ipi_s=nan let pulses through
        # back to back, and looser_than() did not see it, so no override was asked for.
        for name in self._STRICTER:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(
                    ErrorCode.BAD_CONFIG, f"safety limit {name} must be a number, got {value!r}"
                )
            positive = name in ("max_intensity_pct", "max_pulses")
            if not math.isfinite(value) or value < 0 or (positive and value <= 0):
                raise ConfigError(
                    ErrorCode.BAD_CONFIG,
                    f"safety limit {name} must be a finite number {'>' if positive else '>='} "
                    f"0, got {value!r}",
                )
        if int(self.max_pulses) != self.max_pulses:
            raise ConfigError(
                ErrorCode.BAD_CONFIG, f"max_pulses must be an integer, got {self.max_pulses!r}"
            )
        if not isinstance(self.rtms_table, TrainTable):
            raise ConfigError(
                ErrorCode.BAD_CONFIG,
                f"rtms_table must be a TrainTable, got {type(self.rtms_table).__name__}",
            )

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
