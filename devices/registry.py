"""Driver registry: discovers drivers through the ``stimloop.devices`` entry-point group.

A third-party package adds a driver without touching stimloop by declaring, in its own
``pyproject.toml``::

    [project.entry-points."stimloop.devices"]
    acme-stim = "acme_stim.driver:AcmeStimulator"

The class must subclass :class:`~stimloop.devices.base.Stimulator`,
:class:`~stimloop.devices.base.Source` or :class:`~stimloop.devices.base.TriggerLine`.
Stimulators are handed out only wrapped in :class:`~stimloop.devices.safety.SafeStimulator`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from stimloop.devices.base import Device, Source, Stimulator, TriggerLine
from stimloop.devices.errors import ConfigError, ErrorCode
from stimloop.devices.limits import SafetyLimits
from stimloop.devices.safety import SafeStimulator

logger = logging.getLogger("stimloop.devices")

ENTRY_POINT_GROUP = "stimloop.devices"

#: Built-in drivers, also declared as entry points in stimloop's pyproject.toml. Listed
#: here too so a source checkout that was never pip-installed still finds them.
BUILTIN: dict[str, str] = {
    "simulated": "stimloop.devices.stimulators.simulated:SimulatedStimulator",
    "magstim-200": "stimloop.devices.stimulators.magstim:Magstim200",
    "magstim-bistim": "stimloop.devices.stimulators.magstim:MagstimBiStim",
    "magstim-rapid": "stimloop.devices.stimulators.magstim:MagstimRapid",
    "magventure-magpro": "stimloop.devices.stimulators.magventure:MagProStimulator",
    "serial-ttl": "stimloop.devices.triggers:SerialTTL",
    "brainflow": "stimloop.devices.sources.brainflow:BrainFlowSource",
}


def _targets() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def _load(target: str) -> type[Device]:
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def load_driver(name: str) -> type[Device]:
    """The driver class registered under ``name``.

    Raises
    ------
    ConfigError
        UNKNOWN_DRIVER if no driver has that name (the message lists the known ones), or
        BAD_CONFIG if the entry point does not load or is not a Device subclass.
    """
    targets = _targets()
    if name not in targets:
        raise ConfigError(
            ErrorCode.UNKNOWN_DRIVER,
            f"no device driver named {name!r}; installed: {sorted(targets)}",
        )
    try:
        cls = _load(targets[name])
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            ErrorCode.BAD_CONFIG, f"driver {name!r} ({targets[name]}) failed to load: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Stimulator | Source | TriggerLine)):
        raise ConfigError(
            ErrorCode.BAD_CONFIG,
            f"driver {name!r} ({targets[name]}) is not a Stimulator, Source or TriggerLine",
        )
    return cls


def list_devices() -> list[dict]:
    """Every installed driver: ``name``, ``kind``, ``module``, ``description``.

    A driver whose optional dependency is missing is still listed, with kind
    ``"unavailable"`` and the import error as description. This backs ``stimloop devices``.
    """
    out = []
    for name, target in sorted(_targets().items()):
        module = target.partition(":")[0]
        try:
            cls = load_driver(name)
            out.append(
                {"name": name, "kind": cls.kind, "module": module, "description": cls.description}
            )
        except ConfigError as exc:
            out.append(
                {"name": name, "kind": "unavailable", "module": module, "description": exc.message}
            )
    return out


@dataclass(frozen=True)
class StimulatorSpec:
    """A parsed, validated ``[stimulator]`` table: the one place it is parsed.

    Attributes
    ----------
    driver : str
        Registry name of the driver.
    options : mapping
        Keyword arguments of the driver class (checked against its signature).
    limits : SafetyLimits
        The session's safety limits (only stricter than the defaults, unless overridden).
    override_reason : str or None
        Why looser limits were accepted (recorded by the gate).
    """

    driver: str
    options: Mapping[str, Any] = field(default_factory=dict)
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    override_reason: str | None = None

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> StimulatorSpec:
        """Validate a stimulator table, without opening a device or an outlet.

        Expected shape (e.g. a TOML table)::

            driver = "magstim-rapid"
            override_reason = ""            # optional; needed only for looser limits
            [options]                       # passed to the driver class
            port = "/dev/ttyUSB0"
            [safety]                        # see SafetyLimits.from_config
            max_intensity_pct = 80

        Raises
        ------
        ConfigError
            Unknown keys, an unknown driver or a non-stimulator one, options the driver
            does not take, or invalid limits; the message names the key.
        """
        if not isinstance(cfg, Mapping):
            raise ConfigError(
                ErrorCode.BAD_CONFIG, f"stimulator config must be a table, got {type(cfg).__name__}"
            )
        unknown = sorted(set(cfg) - {"driver", "options", "safety", "override_reason"})
        if unknown:
            raise ConfigError(
                ErrorCode.BAD_CONFIG,
                f"unknown key(s) {unknown}; allowed: driver, options, safety, override_reason",
            )
        name = cfg.get("driver")
        if not isinstance(name, str) or not name:
            raise ConfigError(
                ErrorCode.BAD_CONFIG, f"stimulator.driver = {name!r}: a name is needed"
            )
        options = cfg.get("options", {})
        if not isinstance(options, Mapping):
            raise ConfigError(ErrorCode.BAD_CONFIG, f"options = {options!r}: must be a table")
        driver = _stimulator_class(name)
        try:
            inspect.signature(driver).bind(**options)
        except TypeError as exc:
            raise ConfigError(
                ErrorCode.BAD_CONFIG,
                f"options {sorted(options)}: driver {name!r} does not take them "
                f"({exc}); it takes {list(inspect.signature(driver).parameters)}",
            ) from None
        reason = cfg.get("override_reason")
        if reason is not None and not isinstance(reason, str):
            raise ConfigError(ErrorCode.BAD_CONFIG, f"override_reason = {reason!r}: must be text")
        safety = cfg.get("safety", {})
        if not isinstance(safety, Mapping):
            raise ConfigError(
                ErrorCode.BAD_CONFIG,
                f"stimulator.safety = {safety!r}: must be a table of limits "
                "(see SafetyLimits.from_config)",
            )
        limits = SafetyLimits.from_config(safety, override_reason=reason)
        return cls(name, dict(options), limits, reason)

    @property
    def intensity_range_pct(self) -> tuple[float, float]:
        """The driver's intensity range, % MSO."""
        return _stimulator_class(self.driver).intensity_range_pct


def _stimulator_class(name: str) -> type[Stimulator]:
    cls = load_driver(name)
    if not issubclass(cls, Stimulator):
        raise ConfigError(
            ErrorCode.BAD_CONFIG, f"driver {name!r} is a {cls.kind}, not a stimulator"
        )
    return cls


def open_stimulator(
    spec: StimulatorSpec | Mapping, marker_source_id: str | None = None
) -> SafeStimulator:
    """Instantiate the driver of ``spec`` and wrap it in the safety gate.

    Parameters
    ----------
    spec : StimulatorSpec or mapping
        A parsed spec, or a stimulator table (parsed with :meth:`StimulatorSpec.from_mapping`).
    marker_source_id : str, optional
        LSL source_id of the gate's marker stream.

    Returns
    -------
    SafeStimulator
        Not connected yet; call ``connect()`` (or use ``with``).
    """
    if not isinstance(spec, StimulatorSpec):
        spec = StimulatorSpec.from_mapping(spec)
    driver = _stimulator_class(spec.driver)(**spec.options)
    return SafeStimulator(
        driver, spec.limits, override_reason=spec.override_reason, marker_source_id=marker_source_id
    )


def open_source(name: str, **options: object) -> Source:
    """Instantiate source driver ``name`` (not yet connected)."""
    cls = load_driver(name)
    if not issubclass(cls, Source):
        raise ConfigError(ErrorCode.BAD_CONFIG, f"driver {name!r} is a {cls.kind}, not a source")
    return cls(**options)


def open_trigger(name: str, **options: object) -> TriggerLine:
    """Instantiate trigger-line driver ``name`` (not yet opened)."""
    cls = load_driver(name)
    if not issubclass(cls, TriggerLine):
        raise ConfigError(
            ErrorCode.BAD_CONFIG, f"driver {name!r} is a {cls.kind}, not a trigger line"
        )
    return cls(**options)
