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
    optional: np.ndarray | None = None,
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
    optional : ndarray of bool, optional
        True SCRs that need not be found either (for example those whose rise a motion
        artifact hides); like the small ones, a detection matching one is neither a hit
        nor a false alarm.

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
    if optional is not None:
        must &= ~np.asarray(optional, dtype=bool)
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


@dataclass(frozen=True)
class ArtifactScore:
    """How well motion artifacts are flagged, and whether SCRs are reported at them.

    Attributes
    ----------
    n_artifacts : int
        Labelled artifact intervals.
    found : int
        Intervals with a flagged sample from ``pad_before_s`` before their start to
        ``pad_after_s`` after their end.
    recall : float
        found / n_artifacts.
    false_flag_fraction : float
        Fraction of the samples outside every padded interval that are flagged.
    clean_samples, clean_flagged : int
        Samples outside every padded interval, and how many of them are flagged.
    scrs_at_artifacts : int
        Detections with an onset in a padded interval that match no true SCR: artifacts
        counted as SCRs.
    """

    n_artifacts: int
    found: int
    recall: float
    false_flag_fraction: float
    clean_samples: int
    clean_flagged: int
    scrs_at_artifacts: int

    def as_dict(self) -> dict[str, float]:
        """JSON-ready dict."""
        return {k: (float(v) if isinstance(v, float) else int(v)) for k, v in asdict(self).items()}


def score_artifacts(
    flagged: np.ndarray,
    fs: float,
    start_s: np.ndarray,
    end_s: np.ndarray,
    det_onset_s: np.ndarray,
    true_onset_s: np.ndarray,
    tol_s: float = 0.5,
    pad_before_s: float = 0.5,
    pad_after_s: float = 2.0,
) -> ArtifactScore:
    """Score artifact flags against labelled artifact intervals.

    Parameters
    ----------
    flagged : ndarray of bool, shape (n,)
        Per-sample artifact flag of the detector (sample k at k / fs s).
    fs : float
        Sampling rate, Hz.
    start_s, end_s : ndarray
        Labelled artifact intervals, s.
    det_onset_s : ndarray
        Onsets of all detected SCRs, s.
    true_onset_s : ndarray
        Onsets of all true SCRs, s (a detection within ``tol_s`` of one is not blamed on
        an artifact).
    tol_s : float
        Onset tolerance, s.
    pad_before_s, pad_after_s : float
        Padding of each interval, s: a flag may trail the artifact (it is causal) and the
        filters ring for a while after it.

    Returns
    -------
    ArtifactScore
    """
    fl = np.asarray(flagged, dtype=bool)
    n = fl.size
    lo = np.clip(np.floor((np.asarray(start_s) - pad_before_s) * fs).astype(np.int64), 0, n)
    hi = np.clip(np.ceil((np.asarray(end_s) + pad_after_s) * fs).astype(np.int64) + 1, 0, n)
    inside = np.zeros(n, dtype=bool)
    found = 0
    for a, b in zip(lo, hi, strict=True):
        inside[a:b] = True
        found += int(fl[a:b].any())
    outside = ~inside
    false_frac = float(fl[outside].mean()) if outside.any() else float("nan")
    do = np.asarray(det_onset_s, dtype=float)
    to = np.asarray(true_onset_s, dtype=float)
    unmatched = np.ones(do.size, dtype=bool)
    if do.size and to.size:
        unmatched = np.abs(do[:, None] - to[None, :]).min(axis=1) > tol_s
    k = np.clip(np.round(do * fs).astype(np.int64), 0, max(n - 1, 0))
    at_art = inside[k] & unmatched if n else np.zeros(do.size, dtype=bool)
    n_art = int(lo.size)
    return ArtifactScore(
        n_artifacts=n_art,
        found=found,
        recall=found / n_art if n_art else float("nan"),
        false_flag_fraction=false_frac,
        clean_samples=int(outside.sum()),
        clean_flagged=int(fl[outside].sum()),
        scrs_at_artifacts=int(at_art.sum()),
    )
