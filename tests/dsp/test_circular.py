"""Circular statistics used for pulse phases and phase errors."""

from __future__ import annotations

import numpy as np
import pytest

from stimloop.dsp.circular import circular_stats


def test_mean_wraps_across_pi_and_nans_are_ignored():
    s = circular_stats(np.array([np.pi - 0.1, -np.pi + 0.1, np.nan]))
    assert s["n"] == 2
    assert abs(abs(s["mean_deg"]) - 180.0) < 1e-9
    assert s["sd_deg"] == pytest.approx(np.degrees(np.sqrt(-2 * np.log(np.cos(0.1)))))


def test_concentrated_vs_uniform_by_rayleigh():
    rng = np.random.default_rng(0)
    tight = circular_stats(rng.normal(1.0, 0.3, 100))
    flat = circular_stats(rng.uniform(-np.pi, np.pi, 100))
    assert tight["rayleigh_p"] < 1e-10 and tight["mean_deg"] == pytest.approx(57.3, abs=5)
    assert flat["rayleigh_p"] > 0.05
    assert circular_stats(np.array([np.nan]))["n"] == 0
