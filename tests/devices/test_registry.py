"""Registry: entry points, `stimloop devices` listing, bad names and malformed configs."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from stimloop.devices.errors import ConfigError, ErrorCode
from stimloop.devices.registry import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    StimulatorSpec,
    list_devices,
    load_driver,
    open_source,
    open_stimulator,
)
from stimloop.devices.safety import SafeStimulator


def test_builtin_drivers_are_declared_as_entry_points():
    declared = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert declared == BUILTIN


def test_list_devices_describes_every_driver():
    rows = {r["name"]: r for r in list_devices()}
    assert set(rows) >= set(BUILTIN)
    assert rows["simulated"]["kind"] == "stimulator"
    assert rows["brainflow"]["kind"] == "source"
    assert rows["serial-ttl"]["kind"] == "trigger"
    assert all(
        r["description"] and r["module"].startswith("stimloop.devices") for r in rows.values()
    )


def test_unknown_driver_names_the_installed_ones():
    with pytest.raises(ConfigError) as exc:
        load_driver("magstim-9000")
    assert exc.value.code == ErrorCode.UNKNOWN_DRIVER
    assert "magstim-9000" in exc.value.message and "magstim-rapid" in exc.value.message


def test_stimulators_are_only_handed_out_gated(source_id):
    gate = open_stimulator({"driver": "simulated", "options": {"source_id": source_id}})
    assert isinstance(gate, SafeStimulator)
    gate.close()
    with pytest.raises(ConfigError):
        open_stimulator({"driver": "brainflow"})
    with pytest.raises(ConfigError):
        open_source("simulated")


def test_a_stimulator_table_is_parsed_once_into_a_spec(source_id):
    spec = StimulatorSpec.from_mapping(
        {"driver": "simulated", "options": {"source_id": source_id}, "safety": {"max_pulses": 10}}
    )
    assert spec.limits.max_pulses == 10 and spec.intensity_range_pct == (0.0, 100.0)
    gate = open_stimulator(spec)
    assert gate.limits is spec.limits
    gate.close()


@pytest.mark.parametrize(
    ("cfg", "code"),
    [
        ("simulated", ErrorCode.BAD_CONFIG),
        ({"options": {}}, ErrorCode.BAD_CONFIG),
        ({"driver": "nope"}, ErrorCode.UNKNOWN_DRIVER),
        ({"driver": "simulated", "colour": "red"}, ErrorCode.BAD_CONFIG),
        ({"driver": "simulated", "options": [1]}, ErrorCode.BAD_CONFIG),
        ({"driver": "simulated", "options": {"volume": 11}}, ErrorCode.BAD_CONFIG),
        ({"driver": "simulated", "safety": {"max_intensity_pct": 120}}, ErrorCode.BAD_CONFIG),
    ],
    ids=["not-mapping", "no-driver", "unknown-driver", "unknown-key", "options-type",
         "bad-option", "looser-safety"],
)  # fmt: skip
def test_malformed_config_is_a_clear_error(cfg, code):
    with pytest.raises(ConfigError) as exc:
        StimulatorSpec.from_mapping(cfg)
    assert exc.value.code == code
