"""A localisation's candidate sites are distinct scalp sites (review finding:
``sites = ["F3", "f3", " F3 "]`` was accepted as three sites, so F3 got three times the
trains and the ranking compared it with itself)."""

from __future__ import annotations

import pytest

from stimloop.loop.config import SessionConfigError, parse_session


def _hbc(sites):
    return parse_session(
        {
            "sources": {"ecg": {"source_id": "x", "rate_hz": 500.0}},
            "protocol": {"kind": "hbc", "sites": sites, "intensities": [90.0],
                         "rmt_pct_mso": 50.0},
            "stimulator": {"driver": "simulated"},
        },
        "t.toml",
    )  # fmt: skip


@pytest.mark.parametrize(
    "sites", [["F3", "f3"], ["F3", " F3 "], ["FC3", "F3", "EEG F3"], ["Fz", "FZ"]]
)
def test_one_site_under_two_spellings_is_refused(sites):
    with pytest.raises(SessionConfigError, match=r"distinct scalp sites.*named more than once"):
        _hbc(sites)


@pytest.mark.parametrize("sites", [["F3", ""], ["  "]])
def test_a_blank_site_is_refused(sites):
    with pytest.raises(SessionConfigError, match="sites must be named"):
        _hbc(sites)


def test_distinct_sites_are_kept_as_written():
    assert _hbc(["F3", "FC3", "af3"]).protocol.sites == ["F3", "FC3", "af3"]
