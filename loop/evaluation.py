"""Score a recorded session against the ground truth recorded with it.

The runtime runs; evaluation evaluates. Nothing here runs during a session: the live
stages publish what they find, the recorder writes it next to the simulators' (or a
replay's) truth streams, and these functions read both from the recording. So the demo's
summary and ``stimloop analyze`` of the same file print the same figures, because they
are the same computation on the same data.

Truth streams (``devices/sim/runner.py``): ``eeg`` (phase rad, envelope µV, frequency
Hz per EEG sample), ``ecg`` (one sample per R peak: index, HR), ``eda`` (one sample per
SCR stamped at its onset: onset index, peak index, amplitude µS, evoked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from stimloop.dsp.circular import phase_error_stats
from stimloop.dsp.eda_score import score_scrs
from stimloop.dsp.heart import BEAT_ARTIFACT
from stimloop.dsp.series import value_at

if TYPE_CHECKING:
    from stimloop.loop.report import RecordedSession

#: Beats: one-to-one matching tolerance, s (50 ms, the usual QRS-detection standard;
#: ANSI/AAMI EC57 uses 150 ms).
BEAT_TOLERANCE_S = 0.05
#: A beat in the last this many s of the ECG cannot be confirmed yet, s.
BEAT_CONFIRM_S = 0.2
#: SCRs: onset matching tolerance, s.
SCR_TOLERANCE_S = 0.5
#: An SCR can be confirmed up to this long after its onset (rise <= 5 s + 1 s plateau).
SCR_CONFIRM_S = 7.0
#: SCRs in the first this many s of the EDA are not scored (the level is settling).
SCR_SETTLE_S = 2.0


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _pct(values: np.ndarray, q: float) -> float | None:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(np.percentile(v, q)) if v.size else None


def score_pulses(rec: RecordedSession) -> dict[str, Any]:
    """Where the delivered pulses landed: true phase minus each pulse's own target.

    Returns
    -------
    dict
        ``true_phase_error`` and ``estimate_vs_truth`` (:func:`phase_error_stats`:
        n, mean_deg = bias, sd_deg, rayleigh_p); ``true_phase`` (of the phases).
    """
    truth = rec.truth_series("eeg")
    true_phase = value_at(truth[0], truth[1][:, 0], rec.pulse_t) if truth else rec.pulse_t * np.nan
    return {
        "true_phase_error": phase_error_stats(true_phase, rec.pulse_target),
        "true_phase": phase_error_stats(true_phase, 0.0),
        "estimate_vs_truth": phase_error_stats(rec.pulse_phase_est, true_phase),
    }


def _match(t_true: np.ndarray, t_det: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches within ``tol``, nearest first: (true indices, detected indices)."""
    if not (t_true.size and t_det.size):
        return np.zeros(0, int), np.zeros(0, int)
    d = np.abs(t_true[:, None] - t_det[None, :])
    ti, di = np.nonzero(d <= tol)
    order = np.argsort(d[ti, di], kind="stable")
    used_t, used_d, pairs = set(), set(), []
    for k in order:
        if ti[k] not in used_t and di[k] not in used_d:
            used_t.add(ti[k])
            used_d.add(di[k])
            pairs.append((ti[k], di[k]))
    arr = np.array(sorted(pairs), int).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def beat_scores(t_true: np.ndarray, beats: dict[str, np.ndarray],
                span: tuple[float, float]) -> dict[str, Any]:  # fmt: skip
    """Beat detection and HR error of detected beats against true R-peak times.

    Parameters
    ----------
    t_true : ndarray
        True R-peak times, s.
    beats : dict of ndarray
        ``t`` (R peak, s), ``confirmed_t`` (s) and ``hr_bpm`` of the detections, and
        optionally ``beat_class``: detections of class 2 (artifacts, see
        :data:`stimloop.dsp.heart.BEAT_ARTIFACT`) are not beats and are left out.
    span : (float, float)
        Only beats in ``[lo, hi]`` count, true and detected alike, so
        ``beats_detected = true_positives + false_positives``.
    """
    lo, hi = span
    if "beat_class" in beats:
        is_beat = np.asarray(beats["beat_class"]) != BEAT_ARTIFACT
        beats = {k: np.asarray(v)[is_beat] for k, v in beats.items()}
    t_det = np.asarray(beats["t"], float)
    ti, di = _match(t_true, t_det, BEAT_TOLERANCE_S)
    in_true = (t_true >= lo) & (t_true <= hi)
    in_det = (t_det >= lo) & (t_det <= hi)
    keep = in_true[ti] & in_det[di]
    ti, di = ti[keep], di[keep]
    tp, n_true, n_det = int(ti.size), int(in_true.sum()), int(in_det.sum())
    out: dict[str, Any] = {
        "beats_true": n_true, "beats_detected": n_det, "true_positives": tp,
        "false_positives": n_det - tp, "false_negatives": n_true - tp,
        "sensitivity": tp / n_true if n_true else None,
        "ppv": tp / n_det if n_det else None,
        "f1": 2 * tp / (n_true + n_det) if n_true + n_det else None,
    }  # fmt: skip
    # HR of a matched beat against the true interval ending at it (consecutive true beats)
    ok = ti > 0
    hr_true = np.full(ti.size, np.nan)
    hr_true[ok] = 60.0 / (t_true[ti[ok]] - t_true[ti[ok] - 1])
    err = np.abs(np.asarray(beats["hr_bpm"], float)[di] - hr_true)
    delay_ms = (np.asarray(beats["confirmed_t"], float)[di] - t_det[di]) * 1e3
    out.update(
        hr_mae_bpm=_finite(np.nanmean(err)) if np.isfinite(err).any() else None,
        hr_p95_abs_err_bpm=_pct(err, 95),
        detection_delay_ms_p50=_pct(delay_ms, 50),
        detection_delay_ms_p95=_pct(delay_ms, 95),
    )
    return out


def score_beats(rec: RecordedSession) -> dict[str, Any] | None:
    """:func:`beat_scores` of the recorded beats against the recorded R-peak truth (None
    without it), over the span both the ECG and the truth cover, minus the last
    :data:`BEAT_CONFIRM_S` (not confirmable yet)."""
    truth = rec.truth_series("ecg")
    ecg = rec.input_span("ecg")
    if truth is None or ecg is None:
        return None
    t_true = truth[0]
    lo = max(ecg[0], float(t_true[0]) if t_true.size else ecg[0]) - BEAT_TOLERANCE_S
    return beat_scores(t_true, rec.beats(), (lo, ecg[1] - BEAT_CONFIRM_S))


def scr_scores(t_true: np.ndarray, a_true: np.ndarray, scrs: dict[str, np.ndarray],
               span: tuple[float, float]) -> dict[str, Any]:  # fmt: skip
    """SCR detection, amplitude and onset error of detected SCRs against true ones.

    Parameters
    ----------
    t_true, a_true : ndarray
        True onsets (s) and amplitudes (µS).
    scrs : dict of ndarray
        ``onset_t``, ``confirmed_t`` (s) and ``amplitude_us`` of the detected SCRs.
    span : (float, float)
        Only SCRs with onsets in ``[lo, hi]`` count, true and detected alike, so
        ``scr_detected = tp + fp``.
    """
    lo, hi = span
    on = np.asarray(scrs["onset_t"], float)
    keep_t = (t_true >= lo) & (t_true <= hi)
    keep_d = (on >= lo) & (on <= hi)
    s = score_scrs(on[keep_d], np.asarray(scrs["amplitude_us"], float)[keep_d], t_true[keep_t],
                   a_true[keep_t], SCR_TOLERANCE_S)  # fmt: skip
    delay = (np.asarray(scrs["confirmed_t"], float) - on)[keep_d]
    return {
        "span_s": [lo, hi], "scr_true": s.n_truth, "scr_detected": s.n_detected,
        "tp": s.tp, "fp": s.fp, "fn": s.fn, "f1": _finite(s.f1),
        "amplitude_err_median": _finite(s.amp_err_median),
        "amplitude_bias_median": _finite(s.amp_bias_median),
        "onset_err_median_s": _finite(s.onset_err_median_s),
        "onset_bias_s": _finite(s.onset_bias_s),
        "detection_delay_s_p50": _pct(delay, 50),
        "detection_delay_s_p95": _pct(delay, 95),
    }  # fmt: skip


def score_scr(rec: RecordedSession) -> dict[str, Any] | None:
    """:func:`scr_scores` of the recorded SCRs against the recorded SCR truth (None
    without it), from :data:`SCR_SETTLE_S` after the EDA's first sample to
    :data:`SCR_CONFIRM_S` before its last."""
    truth = rec.truth_series("eda")
    eda = rec.input_span("eda")
    if truth is None or eda is None:
        return None
    a_true = truth[1][:, 2] if truth[1].size else np.empty(0)
    return scr_scores(truth[0], a_true, rec.scrs(),
                      (eda[0] + SCR_SETTLE_S, eda[1] - SCR_CONFIRM_S))  # fmt: skip


def evaluate(rec: RecordedSession) -> dict[str, Any]:
    """Every score the recorded truth allows: ``pulses``, ``heart``, ``eda`` (each only
    when its truth stream was recorded)."""
    out: dict[str, Any] = {}
    if rec.truth_series("eeg") is not None:
        out["pulses"] = score_pulses(rec)
    if (heart := score_beats(rec)) is not None:
        out["heart"] = heart
    if (eda := score_scr(rec)) is not None:
        out["eda"] = eda
    return out
