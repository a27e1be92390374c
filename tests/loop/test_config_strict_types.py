"""A session-file value of the wrong TOML type is refused, naming the key, never
converted (review finding: ``intensity_pct = true`` ran at 1 % MSO, ``n_pulses = true``
as 1, ``channels = true`` expected 1 channel, ``disarm_on_gui_close = "no"`` or ``0``
turned the safety setting off, ``"50"`` became 50)."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources

import pytest

from stimloop.loop.config import SessionConfigError, parse_session

DEMO = tomllib.loads(resources.files("stimloop.loop").joinpath("configs/demo.toml").read_text())
HBC = tomllib.loads(resources.files("stimloop.loop").joinpath("configs/hbc.toml").read_text())


def _with(base: dict, keys: tuple[str, ...], value: object) -> dict:
    data = copy.deepcopy(base)
    node = data
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return data


WRONG = [
    (DEMO, ("protocol", "intensity_pct"), True),
    (DEMO, ("protocol", "intensity_pct"), "50"),
    (DEMO, ("protocol", "n_pulses"), True),
    (DEMO, ("protocol", "n_pulses"), "5"),
    (DEMO, ("protocol", "min_ipi_s"), "2"),
    (DEMO, ("protocol", "artifact_gate"), "false"),
    (DEMO, ("disarm_on_gui_close",), "no"),
    (DEMO, ("disarm_on_gui_close",), 0),
    (DEMO, ("watchdog_period_s",), "0.25"),
    (DEMO, ("sources", "eeg", "channels"), True),
    (DEMO, ("sources", "eeg", "rate_hz"), "1000"),
    (DEMO, ("sources", "eeg", "source_id"), 7),
    (DEMO, ("dsp", "phase_band_hz"), ["8", 12]),
    (HBC, ("protocol", "intensities"), [True, 2.0]),
    (HBC, ("protocol", "rmt_pct_mso"), "45"),
    (HBC, ("protocol", "prompt_between_sites"), 1),
]


@pytest.mark.parametrize(("base", "keys", "value"), WRONG, ids=lambda v: repr(v)[:30])
def test_a_value_of_the_wrong_type_is_refused_naming_its_key(base, keys, value):
    with pytest.raises(SessionConfigError) as err:
        parse_session(_with(base, keys, value))
    assert ".".join(k for k in keys if k not in ("protocol",)) in str(err.value)


def test_integers_are_still_numbers_and_the_band_is_a_list():
    data = _with(DEMO, ("protocol", "intensity_pct"), 50)
    data = _with(data, ("dsp", "phase_band_hz"), [8, 12])
    cfg = parse_session(data)
    assert cfg.protocol.intensity_pct == 50.0 and isinstance(cfg.protocol.intensity_pct, float)
    assert cfg.dsp.phase_band_hz == (8.0, 12.0)
    assert parse_session(HBC).protocol.kind == "hbc"  # the templates parse as they are
