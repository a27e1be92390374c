"""Finding 11 of issue #15: the 1 Hz row of the rTMS table was shifted one column to the
stricter side (360 s at 110 % rMT and 50 s at 120 %, where Rossi et al. 2009 Table 4,
reproducing Wassermann 1998 Table 4, gives >1800 s and >360 s).

Rossi S, Hallett M, Rossini PM, Pascual-Leone A (2009). Safety, ethical considerations,
and application guidelines for the use of TMS. Clin Neurophysiol 120:2008-2039, Table 4.
"""

from __future__ import annotations

import pylsl
import pytest

from stimloop.devices.errors import ErrorCode, SafetyError
from stimloop.devices.safety import SafeStimulator, SafetyLimits
from stimloop.devices.stimulators.simulated import SimulatedStimulator

#: Rossi et al. 2009 Table 4, 1 Hz row: ">x" s at 90, 100, 110, 120, 130 % rMT. A ">x"
#: entry (the longest duration tested without adverse event) is used as x.
ROSSI_2009_1HZ = {90.0: 1800.0, 100.0: 1800.0, 110.0: 1800.0, 120.0: 360.0, 130.0: 50.0}


def test_the_1_hz_row_matches_rossi_2009_table_4():
    """Finding 11: the table's 1 Hz row is Rossi et al. 2009 Table 4's, every column,
    and an intensity between columns takes the stricter one."""
    table = SafetyLimits().rtms_table
    assert {i: table.max_duration(1.0, i) for i in ROSSI_2009_1HZ} == ROSSI_2009_1HZ
    assert table.max_duration(1.0, 115.0) == 360.0  # rounds to the 120 % column
    assert table.max_duration(0.5, 110.0) == 1800.0  # below 1 Hz: the 1 Hz row
    assert table.max_duration(1.0, 131.0) is None  # above 130 % rMT: refused


@pytest.mark.parametrize("rel_rmt, allowed", [(110.0, 400), (120.0, 360)])
def test_a_1_hz_run_is_limited_by_the_corrected_row(source_id, monkeypatch, rel_rmt, allowed):
    """Finding 11: through the HAL gate, a run of single pulses at 1 Hz and 110 % rMT
    lasting 400 s (more than the old row's 360 s) is allowed; at 120 % rMT the run stops
    at 360 s, as ">360" used as 360 says. Time runs on a virtual LSL clock, one second
    per pulse, so the 400 s run takes a moment."""
    clock = [float(round(pylsl.local_clock()))]  # whole seconds: the steps stay exact
    monkeypatch.setattr(pylsl, "local_clock", lambda: clock[0])
    gate = SafeStimulator(SimulatedStimulator(arm_time_s=0.0),
                          marker_source_id=f"{source_id}-safety")  # fmt: skip
    try:
        gate.connect()
        gate.set_resting_motor_threshold(50.0)
        gate.set_intensity(50.0 * rel_rmt / 100.0)
        gate.arm()
        for _ in range(allowed):
            clock[0] += 1.0
            gate.fire()
        assert gate.pulses_delivered == allowed
        if allowed < 400:
            clock[0] += 1.0
            with pytest.raises(SafetyError) as err:
                gate.fire()
            assert err.value.code is ErrorCode.TRAIN_LIMIT
            assert f"run of {allowed + 1} pulses" in str(err.value)
            assert "allowed <= 360 s" in str(err.value)
    finally:
        gate.close()
