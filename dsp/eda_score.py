"""Scoring of detected skin conductance responses against known (simulated) ones.

Used by the tests, ``bench/eda.py`` and the demo stage, so that every figure in
``docs/benchmarks.md`` comes from one definition.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class SCRScore:
    """Detection and amplitude accuracy.

    Attributes
    ----------
    n_truth : int
        True SCRs at or above ``min_amplitude`` (the ones that must be found).
    n_detected : int
        Detections considered (all, minus those matching a true SCR below
        ``min_amplitude``, which are neither hits nor false alarms).
    tp, fp, fn : int
        One-to-one matches within the onset tolerance, unmatched detections, missed SCRs.
    f1 : float
        2 tp / (2 tp + fp + fn).
    amp_err_median : float
        Median of |detected - true| / true amplitude over matches (fraction).
    amp_bias_median : float
        Median of (detected - true) / true amplitude (fraction; negative = under).
    onset_err_median_s, onset_bias_s : float
        Median absolute and mean signed onset error of matches, s.
    """

    n_truth: int
    n_detected: int
    tp: int
    fp: int
    fn: int
    f1: float
    amp_err_median: float
    amp_bias_median: float
    onset_err_median_s: float
    onset_bias_s: float

    def as_dict(self) -> dict[str, float]:
        """JSON-ready dict."""
        return {k: (float(v) if isinstance(v, float) else int(v)) for k, v in asdict(self).items()}


def score_scrs(
    det_onset_s: np.ndarray,
    det_amplitude_us: np.ndarray,
    true_onset_s: np.ndarray,
    true_amplitude_us: np.ndarray,
    tol_s: float = 0.5,
    min_amplitude_us: float = 0.02,
) -> SCRScore:
    """Match detected to true SCRs one-to-one by onset and score them.

    Matching is greedy by smallest onset difference (each true and each detected SCR is
    used at most once), within ``tol_s``. True SCRs below ``min_amplitude_us`` need not be
    found; a detection matching one of them counts neither as hit nor as false alarm.

    Parameters
    ----------
    det_onset_s, det_amplitude_us : ndarray
        Detected onsets (s, any common time base) and amplitudes (µS).
    true_onset_s, true_amplitude_us : ndarray
        True onsets (s, same time base) and amplitudes (µS).
    tol_s : float
        Onset tolerance, s.
    min_amplitude_us : float
        Smallest true amplitude that must be detected, µS.

    Returns
    -------
    SCRScore
    """
    do = np.asarray(det_onset_s, dtype=float)
    da = np.asarray(det_amplitude_us, dtype=float)
    to = np.asarray(true_onset_s, dtype=float)
    ta = np.asarray(true_amplitude_us, dtype=float)
    pairs = []
    if len(do) and len(to):
        diff = np.abs(do[:, None] - to[None, :])
        i_det, i_true = np.nonzero(diff <= tol_s)
        order = np.argsort(diff[i_det, i_true], kind="stable")
        used_d = np.zeros(len(do), bool)
        used_t = np.zeros(len(to), bool)
        for k in order:
            a, b = i_det[k], i_true[k]
            if not used_d[a] and not used_t[b]:
                used_d[a] = used_t[b] = True
                pairs.append((a, b))
    pairs_arr = np.array(pairs, dtype=int).reshape(-1, 2)
    must = ta >= min_amplitude_us
    hit_pairs = pairs_arr[must[pairs_arr[:, 1]]] if len(pairs_arr) else pairs_arr
    small_hits = len(pairs_arr) - len(hit_pairs)
    tp = len(hit_pairs)
    fn = int(must.sum()) - tp
    fp = len(do) - len(pairs_arr)
    f1 = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else float("nan")
    if tp:
        t_amp = ta[hit_pairs[:, 1]]
        rel = (da[hit_pairs[:, 0]] - t_amp) / t_amp
        d_on = do[hit_pairs[:, 0]] - to[hit_pairs[:, 1]]
        amp_err, amp_bias = float(np.median(np.abs(rel))), float(np.median(rel))
        on_err, on_bias = float(np.median(np.abs(d_on))), float(np.mean(d_on))
    else:
        amp_err = amp_bias = on_err = on_bias = float("nan")
    return SCRScore(
        n_truth=int(must.sum()),
        n_detected=len(do) - small_hits,
        tp=tp,
        fp=fp,
        fn=fn,
        f1=float(f1),
        amp_err_median=amp_err,
        amp_bias_median=amp_bias,
        onset_err_median_s=on_err,
        onset_bias_s=on_bias,
    )
