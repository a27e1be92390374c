"""Safety limits built directly (not through ``SafetyLimits.from_config``) are checked
too (review finding: ``SafetyLimits(min_ipi_s=nan)`` made a gate, without an override,
that fired pulses back to back: NaN compares False with every limit and with the
defaults in ``looser_than``)."""

from __future__ import annotations

import math

import pytest

from stimloop.devices.errors import ConfigError, SafetyError
from stimloop.devices.limits import WASSERMANN_1998_TABLE, SafetyLimits, TrainTable
from stimloop.devices.safety import SafeStimulator
from stimloop.devices.stimulators.simulated import SimulatedStimulator

FIELDS = ["max_intensity_pct", "max_pulses", "min_ipi_s", "min_inter_train_s",
          "max_stream_age_s"]  # fmt: skip
BAD = [math.nan, math.inf, -math.inf, -1.0, True, "1", None]


@pytest.mark.parametrize("value", BAD, ids=repr)
@pytest.mark.parametrize("name", FIELDS)
def test_a_malformed_limit_is_refused_naming_it(name, value):
    with pytest.raises(ConfigError, match=name) as err:
        SafetyLimits(**{name: value})
    assert err.value.code.value == "bad_config"


@pytest.mark.parametrize("name", ["max_intensity_pct", "max_pulses"])
def test_a_zero_maximum_is_refused(name):
    with pytest.raises(ConfigError, match=name):
        SafetyLimits(**{name: 0})


def test_a_fractional_pulse_budget_is_refused():
    with pytest.raises(ConfigError, match="max_pulses"):
        SafetyLimits(max_pulses=10.5)


def test_a_nan_interval_cannot_make_a_gate_that_fires_back_to_back():
    with pytest.raises(ConfigError, match="min_ipi_s"):
        SafeStimulator(SimulatedStimulator(), SafetyLimits(min_ipi_s=math.nan))
    # The default limits refuse the second of two back-to-back pulses.
    gate = SafeStimulator(SimulatedStimulator(), SafetyLimits())
    gate.connect()
    gate.set_intensity(30.0)
    gate.arm()
    try:
        gate.fire()
        with pytest.raises(SafetyError, match="inter-pulse interval"):
            gate.fire()
        assert gate.pulses_delivered == 1
    finally:
        gate.close()


def test_valid_limits_built_directly_still_work():
    limits = SafetyLimits(max_intensity_pct=60, max_pulses=100, min_ipi_s=2.0,
                          min_inter_train_s=10, max_stream_age_s=0.0)  # fmt: skip
    assert limits.looser_than(SafetyLimits()) == []
    assert SafetyLimits(max_pulses=100.0).max_pulses == 100


@pytest.mark.parametrize("where", ["frequencies_hz", "intensities_pct_rmt"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_table_breakpoint_is_refused(where, value):
    t = WASSERMANN_1998_TABLE
    cols = {"frequencies_hz": t.frequencies_hz, "intensities_pct_rmt": t.intensities_pct_rmt}
    cols[where] = (*cols[where][:-1], value)
    with pytest.raises(ConfigError, match="finite"):
        TrainTable(max_duration_s=t.max_duration_s, **cols)
