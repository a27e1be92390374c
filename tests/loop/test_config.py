"""Session files: every kind of mistake is named, with its key, value and what is allowed."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from stimloop.loop.config import SessionConfigError, load_session, parse_session


def _demo() -> dict:
    text = resources.files("stimloop.loop").joinpath("configs/demo.toml").read_text()
    return tomllib.loads(text)


def test_shipped_demo_config_is_valid(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(resources.files("stimloop.loop").joinpath("configs/demo.toml").read_text())
    cfg = load_session(path)
    assert cfg.protocol.target_phase_deg == 180
    assert cfg.sources["eeg"].rate_hz == 1000
    assert cfg.stimulator["driver"] == "simulated"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["protocol"].update(target_phase_deg="trough"),
         r"protocol\.target_phase_deg = 'trough'"),
        (lambda d: d["protocol"].update(min_confidence=1.5),
         r"protocol\.min_confidence = 1\.5: Input should be less than or equal to 1"),
        (lambda d: d["protocol"].update(contol="random_phase"),
         r"protocol\.contol: unknown key"),
        (lambda d: d["protocol"].update(control="sham"),
         r"protocol\.control = 'sham': Input should be 'none' or 'random_phase'"),
        (lambda d: d["protocol"].update(min_lead_s=0.3, max_lead_s=0.1),
         r"max_lead_s \(0\.1\) must be greater than min_lead_s"),
        (lambda d: d["protocol"].update(max_lead_s=10),
         r"protocol\.max_lead_s = 10: Input should be less than or equal to 1"),
        (lambda d: d["sources"].pop("eeg"), r"sources\.eeg is required"),
        (lambda d: d["sources"]["eeg"].update(source_id="x' or source_id='victim"),
         r"sources\.eeg\.source_id = .*\"'\" is not allowed"),
        (lambda d: d["sources"]["ecg"].update(hostname="lab\npc"),
         r"sources\.ecg\.hostname = .*'\\n' is not allowed"),
        (lambda d: d["sources"]["eeg"].update(rate_hz=-5), r"sources\.eeg\.rate_hz = -5"),
        (lambda d: d["sources"].update(emg={"source_id": "x"}), r"sources\.emg"),
        (lambda d: d["sources"]["ecg"].pop("source_id"),
         r"sources\.ecg\.source_id: required key is missing"),
        (lambda d: d["dsp"].update(phase_band_hz=[12, 8]), r"0 < low < high"),
        (lambda d: d["stimulator"].update(driver="magic-coil"), r"magic-coil"),
        (lambda d: d["stimulator"]["safety"].update(max_intensity_pct=120),
         r"stricter.*max_intensity_pct"),
        (lambda d: d["stimulator"].update(colour="red"), r"unknown key\(s\) \['colour'\]"),
    ],
    ids=["phase-not-number", "confidence-range", "misspelt-key", "bad-enum", "lead-order",
         "lead-too-far",
         "no-eeg", "quote-in-source-id", "newline-in-hostname", "negative-rate",
         "unknown-role", "missing-source-id", "band-order",
         "unknown-driver", "looser-safety", "unknown-stimulator-key"],
)  # fmt: skip
def test_each_mistake_is_named(edit, message):
    data = _demo()
    edit(data)
    with pytest.raises(SessionConfigError, match=message):
        parse_session(data, "s.toml")


def test_all_mistakes_are_listed_at_once():
    data = _demo()
    data["protocol"]["n_pulses"] = 0
    data["dsp"]["hr_rate_hz"] = -1
    with pytest.raises(SessionConfigError) as err:
        parse_session(data)
    assert "protocol.n_pulses" in str(err.value) and "dsp.hr_rate_hz" in str(err.value)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(SessionConfigError, match="does not exist"):
        load_session(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[protocol\nkind = 1\n")
    with pytest.raises(SessionConfigError, match=r"not valid TOML.*line 1"):
        load_session(bad)


@pytest.mark.parametrize("name", ["demo.toml", "hbc.toml", "exposure.toml", "exposure_rtms.toml"])
def test_every_packaged_session_template_is_valid(name):
    from importlib import resources

    path = resources.files("stimloop.loop").joinpath("configs", name)
    cfg = load_session(str(path))
    assert cfg.name


def test_a_protocol_without_kind_is_phase_locked():
    # Wave-1 session files have no protocol.kind; they must load as they did.
    data = _demo()
    data["protocol"].pop("kind", None)
    cfg = parse_session(data, "old.toml")
    assert cfg.protocol is not None and cfg.protocol.kind == "phase_locked"
    assert cfg.protocol.target_phase_deg == data["protocol"]["target_phase_deg"]
    data["protocol"]["kind"] = "nonsense"
    with pytest.raises(SessionConfigError, match="kind"):
        parse_session(data, "bad.toml")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(duration_s=float("inf")), r"duration_s = inf: .*finite"),
        (lambda d: d["protocol"].update(min_ipi_s=float("nan")), r"min_ipi_s = nan"),
        (lambda d: d["channels"].update(eeg_target=""), r"channels\.eeg_target"),
        (lambda d: d["channels"].update(ecg=-1), r"channels\.ecg"),
    ],
    ids=["inf-duration", "nan-interval", "empty-target", "negative-channel"],
)
def test_non_finite_and_empty_values_are_named(edit, message):
    data = _demo()
    data.setdefault("channels", {})
    edit(data)
    with pytest.raises(SessionConfigError, match=message):
        parse_session(data, "s.toml")


def test_a_large_or_deep_value_is_shortened_in_the_message():
    data = _demo()
    data["sources"] = {"eeg": {"source_id": "x", "extra": list(range(10_000))}}
    deep: list = []
    for _ in range(5_000):
        deep = [deep]
    data["protocol"]["site"] = deep
    with pytest.raises(SessionConfigError) as err:
        parse_session(data, "s.toml")
    assert len(str(err.value)) < 2_000
    assert "sources.eeg.extra: unknown key" in str(err.value)
