"""Session configuration: one TOML file, validated completely before anything starts.

A session file names its sources (by source_id), the channel roles, the DSP settings,
the protocol, the stimulator with its safety limits, and where to record. Every mistake
is reported with the key, the value seen and what is allowed, and nothing starts until
the whole file is valid. Validation uses pydantic models with ``extra="forbid"``, so a
misspelt key is an error rather than a silently ignored setting.

The stimulator table is validated by the HAL itself (``stimloop.devices``), so the
rules for safety limits live in one place: the gate that enforces them.
"""

from __future__ import annotations

import itertools
import math
import reprlib
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from stimloop.devices.errors import ConfigError as DeviceConfigError
from stimloop.devices.registry import StimulatorSpec
from stimloop.dsp.circular import wrap_phase
from stimloop.dsp.errors import StimloopError
from stimloop.dsp.spatial import normalise_label


class SessionConfigError(StimloopError, ValueError):
    """The session file is missing, not TOML, or has invalid settings (all listed)."""


class _Model(BaseModel):
    # No inf or NaN anywhere: "duration_s = inf" or "min_ipi_s = nan" is a typo, not a
    # setting, and a NaN limit compares False with everything. Strict types: a value of
    # the wrong TOML type is a mistake too, never converted ("intensity_pct = true" was
    # 1 % MSO, "disarm_on_gui_close = 'no'" False, "channels = true" 1); an integer
    # still counts as a float.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


def _lsl_identifier(value: str) -> str:
    # The values go into liblsl's XPath predicate, whose literals cannot escape a quote
    # (stream/inlet.py refuses them too; here the session file and key are named).
    bad = [c for c in value if c in "'\"\\" or not c.isprintable()]
    if bad:
        raise ValueError(
            f"{bad[0]!r} is not allowed (no quotes, backslashes or control characters)"
        )
    return value


class SourceConfig(_Model):
    """One input stream.

    Attributes
    ----------
    source_id : str
        LSL source_id to resolve.
    hostname : str or None
        Optional host pin.
    rate_hz : float or None
        Expected nominal rate in Hz; a different stream rate is an error at start.
    channels : int or None
        Expected channel count.
    """

    source_id: Annotated[str, AfterValidator(_lsl_identifier)] = Field(min_length=1, max_length=256)
    hostname: Annotated[str, AfterValidator(_lsl_identifier)] | None = Field(
        default=None, min_length=1, max_length=256
    )
    rate_hz: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    channels: int | None = Field(default=None, ge=1)


class ChannelRoles(_Model):
    """Which channel is what.

    Attributes
    ----------
    eeg_target : str
        EEG channel whose rhythm drives the protocol (e.g. ``"C3"``).
    eeg_neighbours : list of str or None
        Hjorth neighbours of the target; None takes the default 10-10 neighbours.
    ecg : str or int
        ECG channel label or index in the ECG stream.
    eda : str or int
        EDA channel label or index in the EDA stream.
    """

    eeg_target: str = Field(default="C3", min_length=1)
    eeg_neighbours: list[str] | None = None
    ecg: Annotated[int, Field(ge=0)] | Annotated[str, Field(min_length=1)] = 0
    eda: Annotated[int, Field(ge=0)] | Annotated[str, Field(min_length=1)] = 0


#: Shortest calibration rest, s: ``min_segments`` (10) Welch segments of 4 s with 50 %
#: overlap (:func:`stimloop.dsp.calibration.calibrate`).
MIN_CALIBRATION_S = 22.0


class DSPConfig(_Model):
    """DSP settings.

    Attributes
    ----------
    phase_band_hz : (float, float) or None
        Alpha/mu pass band in Hz. None: the band comes from the calibration at session
        start, or, with ``calibration_s = 0``, from the causally tracked IAF (IAF ± 2 Hz).
    calibration_s : float
        Rest at the start of a phase-locked session without ``phase_band_hz``, in s:
        the aperiodic-corrected spectrum of the target derivation gives the IAF, the
        peak's SNR and the band, which is then locked (a weak peak asks the operator;
        :mod:`stimloop.loop.phase_calibration`). 0 skips it.
    hr_rate_hz : float
        Rate of the derived heart-rate stream in Hz.
    hrv_window_s : float
        Rolling HRV window in s.
    scr_min_amplitude_us : float
        Smallest SCR counted, in µS.
    """

    # TOML has no tuples: the band is a list of two numbers (strict elsewhere).
    phase_band_hz: Annotated[tuple[float, float], Field(strict=False)] | None = None
    # Two minutes: 59 Welch segments of 4 s, the length the calibration was measured
    # with (dsp/calibration.py). At least 22 s: the 10 segments it needs for a result.
    calibration_s: float = Field(default=120.0, ge=0, le=1800)
    hr_rate_hz: float = Field(default=4.0, gt=0, le=100)
    hrv_window_s: float = Field(default=60.0, gt=0)
    scr_min_amplitude_us: float = Field(default=0.01, gt=0)

    @field_validator("phase_band_hz")
    @classmethod
    def _band(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 < v[0] < v[1]:
            raise ValueError(f"must be (low, high) with 0 < low < high Hz, got {v}")
        return v

    @field_validator("calibration_s")
    @classmethod
    def _calibration(cls, v: float) -> float:
        if 0 < v < MIN_CALIBRATION_S:
            raise ValueError(
                f"must be 0 (none) or at least {MIN_CALIBRATION_S:g} s (the 10 half-overlapping "
                f"4 s spectra a calibration needs), got {v}"
            )
        return v


class PhaseLockedConfig(_Model):
    """Phase-locked single-pulse TMS.

    Attributes
    ----------
    kind : "phase_locked"
    target_phase_deg : float
        Target phase in degrees: 0 = positive peak, ±180 = trough.
    control : {"none", "random_phase"}
        ``random_phase`` fires at a uniformly random phase (the control condition).
    n_pulses : int
        Pulses to deliver, then the protocol ends.
    min_ipi_s : float
        Minimum interval between pulses in s (the HAL may be stricter).
    jitter_s : float
        Extra random wait added to each interval, uniform in [0, jitter_s].
    min_amplitude_uv : float
        Gate: refuse while the estimated envelope is below this, in µV.
    min_confidence : float
        Gate: refuse while the estimator's confidence is below this (0-1).
    min_lead_s, max_lead_s : float
        A forecast target time must lie this far ahead of now, in s.
    trigger_latency_s : float
        Known delay from the fire call to the pulse; pulses are scheduled this much
        earlier.
    late_tolerance_s : float
        A pulse that would leave later than this after its planned time is refused as
        ``late`` by the gate (1 ms is 3.6° at 10 Hz).
    intensity_pct : float
        Output in % of maximum stimulator output.
    site : str
        Stimulation site written into each pulse's log.
    artifact_gate : bool
        Detect artifacts on the target derivation (:mod:`stimloop.dsp.artifact`):
        marked samples reach the phase estimator as NaN (bridged like a gap) and the
        protocol refuses to fire (``artifact``) until the estimate is valid again.
    artifact_floor_uv, artifact_ceiling_uv : float
        Bounds in µV of the adaptive amplitude threshold on the derivation's distance
        from its running level (10 × its running median, clipped to these bounds).
    artifact_max_step_uv : float
        Largest change between two consecutive samples, in µV per sample period.
    artifact_range_uv : float
        Largest |value| of the derivation in µV (a railed or saturated amplifier).
    artifact_hold_s : float
        Hang-over: samples this long after the last marked one are marked too, s.
    artifact_lookback_s : float
        Pulses delivered this long before an artifact's onset are named in its
        ``artifact`` hold (they may have been planned on its leading edge), s.
    """

    kind: Literal["phase_locked"] = "phase_locked"
    target_phase_deg: float = Field(default=180.0, ge=-180.0, le=360.0)
    control: Literal["none", "random_phase"] = "none"
    n_pulses: int = Field(default=100, ge=1)
    min_ipi_s: float = Field(default=2.0, gt=0)
    jitter_s: float = Field(default=0.5, ge=0)
    min_amplitude_uv: float = Field(default=0.0, ge=0)
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    # Forecast error grows with the horizon; 10-30 ms ahead keeps pulses close to the
    # estimator's own error (measured on EEGMAT, docs/loop.md). The window must stay
    # wider than the chunk period, so that some chunk always falls inside it.
    min_lead_s: float = Field(default=0.01, ge=0)
    # 1 s is ten alpha cycles ahead, far past any useful forecast; the bound keeps a
    # typo (10 for 0.010) from planning pulses seconds ahead of the data.
    max_lead_s: float = Field(default=0.03, gt=0, le=1.0)
    trigger_latency_s: float = Field(default=0.0, ge=0, le=0.1)
    late_tolerance_s: float = Field(default=0.001, gt=0, le=0.05)
    intensity_pct: float = Field(default=50.0, gt=0, le=100)
    site: str = "C3"
    # Defaults and their sources: stimloop.dsp.artifact (module docstring).
    artifact_gate: bool = True
    artifact_floor_uv: float = Field(default=150.0, gt=0, allow_inf_nan=False)
    artifact_ceiling_uv: float = Field(default=500.0, gt=0, allow_inf_nan=False)
    artifact_max_step_uv: float = Field(default=50.0, gt=0, allow_inf_nan=False)
    artifact_range_uv: float = Field(default=5e4, gt=0, allow_inf_nan=False)
    artifact_hold_s: float = Field(default=0.2, ge=0, le=2.0, allow_inf_nan=False)
    artifact_lookback_s: float = Field(default=0.2, ge=0, le=2.0, allow_inf_nan=False)

    @property
    def target_phase_rad(self) -> float:
        """The target phase in rad, wrapped to (-π, π] (0 = positive peak, ±π = trough)."""
        return float(wrap_phase(math.radians(self.target_phase_deg)))

    @model_validator(mode="after")
    def _leads(self) -> PhaseLockedConfig:
        if self.max_lead_s <= self.min_lead_s:
            raise ValueError(
                f"max_lead_s ({self.max_lead_s}) must be greater than min_lead_s "
                f"({self.min_lead_s})"
            )
        return self

    @model_validator(mode="after")
    def _artifact_bounds(self) -> PhaseLockedConfig:
        if self.artifact_ceiling_uv < self.artifact_floor_uv:
            raise ValueError(
                f"artifact_ceiling_uv ({self.artifact_ceiling_uv}) must be at least "
                f"artifact_floor_uv ({self.artifact_floor_uv})"
            )
        if self.artifact_range_uv <= self.artifact_ceiling_uv:
            raise ValueError(
                f"artifact_range_uv ({self.artifact_range_uv}) must be greater than "
                f"artifact_ceiling_uv ({self.artifact_ceiling_uv})"
            )
        return self


class CardiacStopConfig(_Model):
    """The cardiac stop rule of heart-brain-coupled localisation (vasovagal syncope has
    been reported during the protocol): disarm, alert and end the protocol.

    Attributes
    ----------
    floor_bpm : float
        Stop when HR falls below this, bpm.
    max_drop_bpm : float
        Stop when HR falls more than this below the site's baseline (its rest cycle), bpm.
    asystole_s : float
        Stop when no beat has come for this long, s.
    """

    floor_bpm: float = Field(default=45.0, gt=20, le=80)
    max_drop_bpm: float = Field(default=25.0, gt=0, le=80)
    asystole_s: float = Field(default=3.0, gt=1.0, le=10.0)


class HBCConfig(_Model):
    """Heart-brain-coupled TMS target localisation (NCG-TMS; docs/hbc.md).

    Attributes
    ----------
    kind : "hbc"
    sites : list of str
        Candidate scalp sites (10-20/10-10 names), run in a random order.
    order_seed : int or None
        Seed of the site order (None: drawn at start); recorded either way.
    train_frequency_hz : float
        Train pulse rate, Hz (10).
    train_s : float
        Train length, s (5).
    cycle_s : float
        Train onset to train onset, s (16: 5 s on, 11 s off).
    intensities : list of float
        Intensity of cycles 1..N, increasing (cycle 0 is rest), in ``intensity_unit``.
    intensity_unit : {"pct_rmt", "pct_mso"}
        % of the resting motor threshold, or % of maximum stimulator output.
    rmt_pct_mso : float
        The subject's resting motor threshold, % MSO. Required: rTMS trains need it.
    train_override_reason : str or None
        A 5 s train at 10 Hz exceeds the rTMS table above 110 % rMT. With a stated reason
        the table's 10 Hz row is widened to ``train_s`` (the override is recorded by the
        gate); without one such trains are refused.
    prompt_between_sites : bool
        Disarm and wait for the operator's ``confirm`` before each site (moving the coil).
    cardiac_stop : CardiacStopConfig
    threshold : float or None
        Coupling threshold on HBC, ln(bpm²) (None: :data:`stimloop.dsp.hbc.DEFAULT_THRESHOLD`).
    min_above : int
        A site passes when at least this many intensities exceed the threshold.
    late_tolerance_s : float
        A train that would start later than this after its time is refused as late, s.
    """

    kind: Literal["hbc"] = "hbc"
    sites: list[str] = Field(default_factory=lambda: ["F3", "FC3", "F5", "AF3", "F1", "FC1"],
                             min_length=1)  # fmt: skip
    order_seed: int | None = None
    train_frequency_hz: float = Field(default=10.0, gt=0, le=25)
    train_s: float = Field(default=5.0, gt=0, le=10)
    cycle_s: float = Field(default=16.0, gt=0, le=60)
    intensities: list[float] = Field(
        default_factory=lambda: [50.0 + 5.0 * k for k in range(15)], min_length=1
    )
    intensity_unit: Literal["pct_rmt", "pct_mso"] = "pct_rmt"
    rmt_pct_mso: float | None = Field(default=None, gt=0, le=100)
    train_override_reason: str | None = None
    prompt_between_sites: bool = True
    cardiac_stop: CardiacStopConfig = CardiacStopConfig()
    threshold: float | None = None
    min_above: int = Field(default=4, ge=1)
    late_tolerance_s: float = Field(default=0.005, gt=0, le=0.05)

    @model_validator(mode="after")
    def _valid(self) -> HBCConfig:
        if self.rmt_pct_mso is None:
            raise ValueError(
                "rmt_pct_mso is required: the resting motor threshold (% MSO) scales the "
                "intensities and the rTMS table needs it; measure it before localisation"
            )
        if any(b <= a for a, b in itertools.pairwise(self.intensities)):
            raise ValueError(f"intensities must increase, got {self.intensities}")
        if self.train_s >= self.cycle_s:
            raise ValueError(f"train_s ({self.train_s}) must be shorter than cycle_s")
        # One scalp site under two spellings ("F3", "f3", " F3", "EEG F3") would get
        # twice the trains and be ranked against itself.
        canon = [normalise_label(s) for s in self.sites]
        if "" in canon:
            raise ValueError(f"sites must be named, got {self.sites}")
        if len(set(canon)) != len(canon):
            same = sorted({c for c in canon if canon.count(c) > 1})
            raise ValueError(
                f"sites must be distinct scalp sites, got {self.sites}: {same} named more "
                "than once (labels are compared as 10-20 names: case, spaces and an 'EEG ' "
                "prefix do not count)"
            )
        return self

    def intensity_pct_mso(self, value: float) -> float:
        """An intensity of :attr:`intensities` in % MSO."""
        return value * self.rmt_pct_mso / 100.0 if self.intensity_unit == "pct_rmt" else value


class ExposureConfig(_Model):
    """Exposure sessions: exercise markers, the arousal index and its band (docs/exposure.md).

    Attributes
    ----------
    band_low, band_high : float
        Window of tolerance on the arousal index (z against the calibration rest).
    hysteresis : float
        Band hysteresis, z.
    min_dwell_s : float
        A band is taken after the index stayed in it this long, s.
    alert_after_s : float
        Alert when above the window this long, s.
    calibration_s : float or None
        Length of the calibration rest at the start, s (the index exists after it); None:
        the operator marks it with ``calibration_start``/``calibration_end``.
    """

    band_low: float = 1.0
    band_high: float = 4.0
    hysteresis: float = Field(default=0.25, ge=0)
    min_dwell_s: float = Field(default=3.0, ge=0)
    alert_after_s: float = Field(default=20.0, gt=0)
    calibration_s: float | None = Field(default=120.0, ge=60.0)

    @model_validator(mode="after")
    def _band(self) -> ExposureConfig:
        if not self.band_high - self.band_low > 2 * self.hysteresis:
            raise ValueError(
                f"band_low ({self.band_low}) and band_high ({self.band_high}) must be more "
                f"than twice the hysteresis ({self.hysteresis}) apart"
            )
        if self.alert_after_s < self.min_dwell_s:
            raise ValueError("alert_after_s must be >= min_dwell_s")
        return self


class RecordingConfig(_Model):
    """Where the session is recorded.

    Attributes
    ----------
    path : str or None
        XDF file; ``{time}`` is replaced by the start time. None records nothing.
    """

    path: str | None = None


class SessionConfig(_Model):
    """A whole session, as loaded from TOML.

    Attributes
    ----------
    name : str
        Session name (recorded with the data).
    duration_s : float or None
        Session length in s; None runs until stopped.
    sources : dict of str to SourceConfig
        Keys are roles: ``eeg`` (the phase-locked protocol reads it), ``ecg`` (the heart-
        brain-coupled one reads it), ``eda``, and ``events``, a marker stream of stimuli
        (e.g. exposure cues) whose event-related SCRs are scored live. At least one of
        eeg, ecg, eda.
    channels : ChannelRoles
    dsp : DSPConfig
    protocol : PhaseLockedConfig, HBCConfig or None
        The stimulation protocol (``kind`` picks it; a table without ``kind`` is
        phase-locked, as every session file before the HBC protocol); None: monitoring only.
    stimulator : dict or None
        HAL section (driver, options, safety, override_reason), parsed once by
        :meth:`~stimloop.devices.registry.StimulatorSpec.from_mapping` into
        :attr:`stimulator_spec`; needed by a protocol, None without one.
    exposure : ExposureConfig or None
        Exposure markers, arousal index and band (needs EDA); None: off.
    recording : RecordingConfig
    disarm_on_gui_close : bool
        Whether closing the GUI disarms the stimulator (recording always continues).
    watchdog_period_s : float
        HAL watchdog period in s; the stimulator disarms after two missed heartbeats.
    """

    name: str = "session"
    duration_s: float | None = Field(default=None, gt=0)
    sources: dict[Literal["eeg", "ecg", "eda", "events"], SourceConfig]
    channels: ChannelRoles = ChannelRoles()
    dsp: DSPConfig = DSPConfig()
    protocol: PhaseLockedConfig | HBCConfig | None = Field(default=None, discriminator="kind")
    stimulator: dict[str, Any] | None = None
    exposure: ExposureConfig | None = None
    recording: RecordingConfig = RecordingConfig()
    disarm_on_gui_close: bool = True
    watchdog_period_s: float = Field(default=0.25, gt=0.01, le=5.0)
    _spec: tuple[int, StimulatorSpec] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _phase_locked_by_default(cls, data: Any) -> Any:
        # Session files written before the HBC protocol existed have no protocol.kind;
        # they are phase-locked sessions and must keep loading unchanged.
        if isinstance(data, dict) and isinstance(data.get("protocol"), dict):
            if "kind" not in data["protocol"]:
                data = {**data, "protocol": {"kind": "phase_locked", **data["protocol"]}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> SessionConfig:
        if not {"eeg", "ecg", "eda"} & set(self.sources):
            raise ValueError("sources: at least one of eeg, ecg, eda is needed")
        needs = {"phase_locked": "eeg", "hbc": "ecg"}
        if self.protocol is not None:
            role = needs[self.protocol.kind]
            if role not in self.sources:
                raise ValueError(
                    f"sources.{role} is required: the {self.protocol.kind} protocol reads it"
                )
            if self.stimulator is None:
                raise ValueError(
                    f"stimulator: the {self.protocol.kind} protocol needs a [stimulator] "
                    'table (e.g. driver = "simulated")'
                )
        if self.exposure is not None and "eda" not in self.sources:
            raise ValueError("sources.eda is required: exposure sessions index arousal by EDA")
        return self

    @property
    def driving_role(self) -> str:
        """The input the engine waits on: the protocol's, else EEG, ECG or EDA."""
        if self.protocol is not None:
            return {"phase_locked": "eeg", "hbc": "ecg"}[self.protocol.kind]
        return next(r for r in ("eeg", "ecg", "eda") if r in self.sources)

    @property
    def stimulator_spec(self) -> StimulatorSpec | None:
        """The parsed ``[stimulator]`` table (driver, options, safety limits), or None."""
        # Keyed by the table it came from: model_copy copies private attributes, and a
        # copy with another stimulator table must not keep the first one's spec.
        if self.stimulator is None:
            return None
        if self._spec is None or self._spec[0] != id(self.stimulator):
            self._spec = (id(self.stimulator), _check_stimulator(self))
        return self._spec[1]


_PROTOCOL_KINDS = ("phase_locked", "hbc")


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = list(e["loc"])
        if loc[:1] == ["protocol"] and len(loc) > 1 and loc[1] in _PROTOCOL_KINDS:
            del loc[1]  # the union's tag: the user wrote protocol.x, not protocol.kind.x
        key = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (value {_short(e['input'])}); check the spelling")
        elif e["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            lines.append(f"{key} = {_short(e.get('input'))}: {e['msg']}")
    return "\n  ".join(lines)


def _short(value: Any) -> str:
    # A whole table (``sources = {}`` echoes the config) or a deeply nested value would
    # bury the message or recurse without end; the key already says where to look.
    return _REPR.repr(value)


_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist = 3, 6, 6
_REPR.maxstring = _REPR.maxother = 80


def _check_stimulator(cfg: SessionConfig) -> StimulatorSpec | None:
    """Parse the HAL section without opening a device or an outlet, and check the
    protocol's intensities against the limits it sets and the driver's range."""
    if cfg.stimulator is None:
        return None
    try:
        spec = StimulatorSpec.from_mapping(cfg.stimulator)
    except DeviceConfigError as exc:
        raise SessionConfigError(f"stimulator: {exc.message}") from None
    lo, hi = spec.intensity_range_pct
    limit = spec.limits.max_intensity_pct
    p = cfg.protocol
    if p is None:
        return spec
    if p.kind == "phase_locked":
        wanted = {"protocol.intensity_pct": p.intensity_pct}
    else:
        wanted = {f"protocol.intensities[{k}] ({v:g} {p.intensity_unit})": p.intensity_pct_mso(v)
                  for k, v in enumerate(p.intensities)}  # fmt: skip
    for key, want in wanted.items():
        if not lo <= want <= hi:
            raise SessionConfigError(
                f"{key} = {want:g} % MSO: driver {spec.driver!r} takes {lo:g}-{hi:g} % MSO"
            )
        if want > limit:
            raise SessionConfigError(
                f"{key} = {want:g} % MSO: above stimulator.safety.max_intensity_pct "
                f"= {limit:g} % MSO"
            )
    return spec


def parse_session(data: dict[str, Any], origin: str = "<config>") -> SessionConfig:
    """Validate a session mapping (as parsed from TOML).

    Parameters
    ----------
    data : dict
        The parsed TOML document.
    origin : str
        Where it came from, for error messages.

    Raises
    ------
    SessionConfigError
        Listing every invalid key with its value and what is allowed.
    """
    try:
        cfg = SessionConfig.model_validate(data)
    except ValidationError as err:
        raise SessionConfigError(f"{origin}: invalid session config:\n  {_describe(err)}") from None
    try:
        cfg._spec = (id(cfg.stimulator), _check_stimulator(cfg))
    except SessionConfigError as err:
        raise SessionConfigError(f"{origin}: {err}") from None
    return cfg


def load_session(path: str | Path) -> SessionConfig:
    """Read and validate a session TOML file.

    Parameters
    ----------
    path : str or Path
        The ``.toml`` file.

    Raises
    ------
    SessionConfigError
        The file is missing, is not a regular file, is larger than
        ``MAX_SESSION_FILE_BYTES``, is not UTF-8 text, is not valid TOML (with line and
        column), nests tables or arrays deeper than ``MAX_SESSION_NESTING``, or has
        invalid settings. Every message starts with the file's path.
    """
    path = Path(path)
    data = _parse_toml(path, _read_text(path))
    return parse_session(data, str(path))


# A session file is a few kB of TOML, three tables deep. The bounds keep a wrong path
# (a device, a FIFO, a 4 GB recording) and hostile input from exhausting memory, blocking
# the reader or overflowing the recursion limit of tomllib and of the validation.
MAX_SESSION_FILE_BYTES = 1 << 20
MAX_SESSION_NESTING = 16


def _read_text(path: Path) -> str:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise SessionConfigError(f"session config {path} cannot be read: it is {kind}")
        if st.st_size > MAX_SESSION_FILE_BYTES:
            raise SessionConfigError(
                f"session config {path} is {st.st_size} bytes; a session file is TOML text "
                f"of at most {MAX_SESSION_FILE_BYTES} bytes"
            )
        with path.open("rb") as f:
            raw = f.read(MAX_SESSION_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SessionConfigError(f"session config {path} does not exist") from None
    except OSError as exc:
        raise SessionConfigError(f"session config {path} cannot be read: {exc}") from None
    if len(raw) > MAX_SESSION_FILE_BYTES:  # it grew while being read
        raise SessionConfigError(
            f"session config {path} is over {MAX_SESSION_FILE_BYTES} bytes; a session file "
            "is TOML text"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SessionConfigError(
            f"session config {path} is not UTF-8 text: byte {exc.start} (line {line}) is "
            f"{raw[exc.start : exc.start + 1]!r}; a session file is TOML text"
        ) from None


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SessionConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise SessionConfigError(
            f"{path}: not a session file: arrays or tables nest too deeply for the TOML "
            f"reader (a session nests at most {MAX_SESSION_NESTING} levels)"
        ) from None
    depth, where = _nesting(data)
    if depth > MAX_SESSION_NESTING:
        raise SessionConfigError(
            f"{path}: not a session file: {where or 'a value'} nests more than "
            f"{MAX_SESSION_NESTING} levels deep, the most a session file may"
        )
    return data


def _nesting(value: Any) -> tuple[int, str]:
    """Deepest nesting of tables and arrays in ``value`` (counted up to one level past
    ``MAX_SESSION_NESTING``) and the key path to it."""
    deepest, where = 0, ""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:  # iterative: the point is to survive what recursion would not
        v, depth, key = stack.pop()
        if isinstance(v, dict):
            children = [(c, f"{key}.{k}" if key else str(k)) for k, c in v.items()]
        elif isinstance(v, list):
            children = [(c, f"{key}[{i}]") for i, c in enumerate(v)]
        else:
            continue
        if depth + 1 > deepest:
            deepest, where = depth + 1, key
        if deepest > MAX_SESSION_NESTING:
            break
        stack += [(c, depth + 1, k) for c, k in children]
    return deepest, where
