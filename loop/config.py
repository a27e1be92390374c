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

import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
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


class SessionConfigError(StimloopError, ValueError):
    """The session file is missing, not TOML, or has invalid settings (all listed)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    source_id: str = Field(min_length=1)
    hostname: str | None = None
    rate_hz: float | None = Field(default=None, gt=0)
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

    eeg_target: str = "C3"
    eeg_neighbours: list[str] | None = None
    ecg: str | int = 0
    eda: str | int = 0


class DSPConfig(_Model):
    """DSP settings.

    Attributes
    ----------
    phase_band_hz : (float, float) or None
        Alpha/mu pass band in Hz; None tracks the IAF causally (IAF ± 2 Hz).
    hr_rate_hz : float
        Rate of the derived heart-rate stream in Hz.
    hrv_window_s : float
        Rolling HRV window in s.
    scr_min_amplitude_us : float
        Smallest SCR counted, in µS.
    """

    phase_band_hz: tuple[float, float] | None = None
    hr_rate_hz: float = Field(default=4.0, gt=0, le=100)
    hrv_window_s: float = Field(default=60.0, gt=0)
    scr_min_amplitude_us: float = Field(default=0.01, gt=0)

    @field_validator("phase_band_hz")
    @classmethod
    def _band(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 < v[0] < v[1]:
            raise ValueError(f"must be (low, high) with 0 < low < high Hz, got {v}")
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
    max_lead_s: float = Field(default=0.03, gt=0)
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
        Keys are roles: ``eeg`` (required: the protocol reads it), ``ecg``, ``eda``, and
        ``events``, a marker stream of stimuli (e.g. exposure cues) whose event-related
        SCRs are scored live.
    channels : ChannelRoles
    dsp : DSPConfig
    protocol : PhaseLockedConfig
    stimulator : dict
        HAL section (driver, options, safety, override_reason), parsed once by
        :meth:`~stimloop.devices.registry.StimulatorSpec.from_mapping` into
        :attr:`stimulator_spec`.
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
    protocol: PhaseLockedConfig = PhaseLockedConfig()
    stimulator: dict[str, Any] = Field(default_factory=lambda: {"driver": "simulated"})
    recording: RecordingConfig = RecordingConfig()
    disarm_on_gui_close: bool = True
    watchdog_period_s: float = Field(default=0.25, gt=0.01, le=5.0)
    _spec: tuple[int, StimulatorSpec] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> SessionConfig:
        if "eeg" not in self.sources:
            raise ValueError("sources.eeg is required: the phase-locked protocol reads EEG")
        if not math.isfinite(self.protocol.intensity_pct):
            raise ValueError("protocol.intensity_pct must be finite")
        return self

    @property
    def stimulator_spec(self) -> StimulatorSpec:
        """The parsed ``[stimulator]`` table (driver, options, safety limits)."""
        # Keyed by the table it came from: model_copy copies private attributes, and a
        # copy with another stimulator table must not keep the first one's spec.
        if self._spec is None or self._spec[0] != id(self.stimulator):
            self._spec = (id(self.stimulator), _check_stimulator(self))
        return self._spec[1]



def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (value {e['input']!r}); check the spelling")
        elif e["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            lines.append(f"{key} = {e.get('input')!r}: {e['msg']}")
    return "\n  ".join(lines)


def _check_stimulator(cfg: SessionConfig) -> StimulatorSpec:
    """Parse the HAL section without opening a device or an outlet, and check the
    protocol's intensity against the limits it sets and the driver's range."""
    try:
        spec = StimulatorSpec.from_mapping(cfg.stimulator)
    except DeviceConfigError as exc:
        raise SessionConfigError(f"stimulator: {exc.message}") from None
    want = cfg.protocol.intensity_pct
    lo, hi = spec.intensity_range_pct
    limit = spec.limits.max_intensity_pct
    if not lo <= want <= hi:
        raise SessionConfigError(
            f"protocol.intensity_pct = {want:g}: driver {spec.driver!r} takes {lo:g}-{hi:g} % MSO"
        )
    if want > limit:
        raise SessionConfigError(
            f"protocol.intensity_pct = {want:g}: above stimulator.safety.max_intensity_pct "
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
        The file is missing, is not valid TOML (with line and column), or has invalid
        settings.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SessionConfigError(f"session config {path} does not exist") from None
    except OSError as exc:
        raise SessionConfigError(f"session config {path} cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SessionConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_session(data, str(path))
