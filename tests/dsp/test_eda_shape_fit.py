"""Onset refinement by the causal shape fit (``stimloop.dsp.eda_shape_fit``).

The signals here are written out from the published shapes (the Bateman function of
Benedek & Kaernbach 2010; a Gaussian sudomotor burst convolved with it, the form of Bach et
al. 2010's canonical SCRF), not drawn from either simulator.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import fftconvolve

from stimloop.devices.sim import wearable_eda as W
from stimloop.dsp import eda_shape_fit as F
from stimloop.dsp.eda import SCR_DTYPE, EDAInputError, EDAParams, SCRDetector, detect_scr

OFF = EDAParams(onset_fit="off")


def _bateman(t, onset, amp, tr, td):
    """Bateman SCR (rise tr, decay td, s) of peak ``amp`` µS starting at ``onset`` s."""
    tp = tr * td / (td - tr) * np.log(td / tr)
    norm = np.exp(-tp / td) - np.exp(-tp / tr)
    d = np.clip(t - onset, 0, None)
    return amp / norm * (np.exp(-d / td) - np.exp(-d / tr))


def _burst(t, onset, amp, sigma, tr, td):
    """A Gaussian burst (width sigma, centred 3 sigma after ``onset``) convolved with a
    Bateman function, scaled to peak ``amp`` µS."""
    g = np.exp(-0.5 * ((t - 3 * sigma) / sigma) ** 2)
    y = fftconvolve(g, _bateman(t, 0.0, 1.0, tr, td))[: t.size]
    y *= amp / y.max()
    k = round(onset / t[1])  # t[1] is the sample period
    out = np.zeros_like(t)
    out[k:] = y[: t.size - k]
    return out


def test_shape_table_holds_unit_peak_responses_from_their_2_percent_point():
    tab = F.shape_table()
    assert tab.shape == (round(F.TABLE_S / F.TABLE_DT_S), F.n_shapes())
    np.testing.assert_allclose(tab.max(axis=0), 1.0, atol=2e-3)
    np.testing.assert_allclose(tab[0], F.ONSET_FRACTION, atol=1e-3)
    # Impulse-driven shapes are Bateman functions: compare one with the formula.
    j = F.SHAPE_TAU1_S.index(0.3) * len(F.SHAPE_TAU2_S) + F.SHAPE_TAU2_S.index(6.0)
    t = np.arange(0.0, 30.0, 1e-4)
    b = _bateman(t, 0.0, 1.0, 0.3, 6.0)
    t0 = t[np.argmax(b >= F.ONSET_FRACTION)]
    u = np.arange(0, 400) * F.TABLE_DT_S
    np.testing.assert_allclose(tab[:400, j], _bateman(u + t0, 0.0, 1.0, 0.3, 6.0), atol=2e-3)


@pytest.mark.parametrize("fs", [4.0, 100.0], ids=["4Hz", "100Hz"])
def test_onset_of_an_scr_starting_on_the_rise_or_peak_of_another(fs):
    """A second SCR starting 0.4 s before to 0.8 s after the peak of a 0.4 µS one (Bateman
    or burst shape, 0.15 or 0.3 µS): the previous response bends the slope the rule-based
    onset reads, so it comes up to 0.75 s late; with the shape fit every onset is within
    0.3 s of where the second SCR reached 2 % of its amplitude. Peaks and amplitudes are
    those of the rule-based scoring, and chunked streaming gives the same SCRs."""
    rng = np.random.default_rng(0)
    t = np.arange(int(40 * fs)) / fs
    first_peak = 10.0 + 0.75 * 3.0 / 2.25 * np.log(4.0)
    err_fit, err_rule = [], []
    for rel in (-0.4, 0.0, 0.4, 0.8):
        for shape in ("bateman", "burst"):
            for amp2 in (0.15, 0.3):
                on = first_peak + rel
                if shape == "bateman":
                    c2 = _bateman(t, on, amp2, 0.5, 2.5)
                else:
                    c2 = _burst(t, on, amp2, 0.5, 0.3, 3.0)
                x = 5.0 + _bateman(t, 10.0, 0.4, 0.75, 3.0) + c2 + rng.normal(0, 0.002, t.size)
                truth = np.argmax(c2 >= 0.02 * c2.max()) / fs
                new = detect_scr(x, fs)
                old = detect_scr(x, fs, params=OFF)
                np.testing.assert_array_equal(new["peak"], old["peak"])
                np.testing.assert_array_equal(new["amplitude"], old["amplitude"])
                if len(new) != 2:  # finding the second SCR is not this feature's job
                    continue
                err_fit.append(new["onset"][1] / fs - truth)
                err_rule.append(old["onset"][1] / fs - truth)
    err_fit, err_rule = np.abs(err_fit), np.abs(err_rule)
    print(f"\n{fs:g} Hz, {err_fit.size} pairs: |onset error| fit {err_fit}, rule {err_rule}")
    assert err_fit.size >= 10
    assert err_fit.max() <= 0.3 + 1e-9
    assert err_rule.max() > 0.4  # the case the fit is for
    assert np.median(err_fit) < np.median(err_rule)
    sizes = np.random.default_rng(1).integers(1, int(3 * fs), size=len(x))
    det = SCRDetector(fs)
    i = 0
    for k in sizes:
        det.update(x[i : i + k])
        i += k
    for name in SCR_DTYPE.names:
        np.testing.assert_array_equal(det.scrs[name], new[name])


@pytest.mark.parametrize("fs", [4.0, 32.0, 1000.0], ids=["4Hz", "32Hz", "1kHz"])
def test_onsets_of_isolated_scrs_are_not_made_worse(fs):
    """The 24 isolated SCRs of the generator's shapes per rate (as in
    test_isolated_scrf_and_bateman_shapes_onset_and_amplitude): the worst onset error with
    the fit is no larger than without it, and the median stays within 0.05 s."""
    rng = np.random.default_rng(4)
    cfg = W.WearableEDAConfig()
    t = np.arange(int(40 * fs)) / fs
    err = {"fit": [], "rule": []}
    for _ in range(24):
        s = W._draw_scr(rng, cfg, 15.0, evoked=False, in_burst=False)
        scale, on, _pk = s.landmarks()
        x = 5.0 + 0.3 / scale * s.curve(t - 15.0)
        for key, prm in (("fit", None), ("rule", OFF)):
            scrs = detect_scr(x, fs, params=prm)
            assert len(scrs) == 1
            err[key].append(abs(scrs["onset"][0] / fs - 15.0 - on))
    print(f"\n{fs:g} Hz isolated: fit max {max(err['fit']):.3f}, rule {max(err['rule']):.3f}")
    assert max(err["fit"]) <= max(err["rule"]) + 0.5 / fs + 1e-9
    assert np.median(err["fit"]) <= 0.05


def test_onset_fit_modes():
    fs = 16.0
    t = np.arange(int(40 * fs)) / fs
    # A burst-shaped SCR starting 0.4 s before the peak of a Bateman one: the rule-based
    # onset is late there, the fitted one is not.
    x = 5.0 + _bateman(t, 10.0, 0.4, 0.75, 3.0) + _burst(t, 11.0, 0.3, 0.5, 0.3, 3.0)
    fit = detect_scr(x, fs, params=EDAParams(onset_fit="fit"))
    mean = detect_scr(x, fs)
    rule = detect_scr(x, fs, params=OFF)
    assert len(fit) == len(mean) == len(rule) == 2
    # The mean lies between the fitted and the rule-based onset (half a sample rounding).
    lo = np.minimum(fit["onset"], rule["onset"])
    hi = np.maximum(fit["onset"], rule["onset"])
    assert np.all((lo <= mean["onset"]) & (mean["onset"] <= hi))
    assert np.any(fit["onset"] != rule["onset"])
    with pytest.raises(EDAInputError, match="onset_fit"):
        detect_scr(x, fs, params=EDAParams(onset_fit="median"))
