"""Numba kernel of the causal, streaming QRS detector behind :mod:`stimloop.dsp.heart`.

The method is the Pan–Tompkins family, reworked for low latency and explicit state:

* Pan J, Tompkins WJ (1985). A real-time QRS detection algorithm. IEEE Trans Biomed
  Eng 32(3):230-236. Band-pass (5-15 Hz), derivative, squaring, moving-window
  integration (MWI); adaptive signal/noise peak levels ``SPKI``/``NPKI`` with
  ``THR1 = NPKI + 0.25 (SPKI - NPKI)``; 200 ms refractory period; T-wave rejection
  (a candidate within 360 ms whose maximal slope is below half that of the previous
  QRS); search-back with ``THR2 = 0.5 THR1`` after 1.66 x the RR average; a 2 s
  learning phase.
* Hamilton PS, Tompkins WJ (1986). Quantitative investigation of QRS detection rules
  using the MIT/BIH arrhythmia database. IEEE Trans Biomed Eng 33(12):1157-1165.
  The median of the recent RR intervals, rather than their mean, sets the search-back
  time.

What differs from the 1985 paper, and why:

* The MWI is 60 ms instead of 150 ms and an MWI peak is declared as soon as the MWI
  has fallen 5% below its running maximum (a hysteresis peak detector), so a beat is
  confirmed about 45-60 ms after its R wave (MIT-BIH 100) instead of 200+ ms.
* The band-pass is a first-order Butterworth 5-20 Hz (half the group delay of the
  paper's 5-15 Hz cascade) designed for the actual sampling rate (the paper's
  integer filters assume 200 Hz). All filters start in their steady state for the
  first sample, so there is no start-up transient.
* The R-peak index is not the MWI peak (which lags the R wave by the filter and
  integration delays) but the extremum of the raw ECG in the window that fed that MWI
  peak, first on an 8 ms centred moving average so noise cannot move it, then refined
  to the exact sample extremum within 10 ms. The raw signal, not a high-passed one, is
  used because a causal high-pass shifts a flat-topped R peak by a sample; over a
  ~200 ms window baseline wander is a negligible tilt. Deflections are measured from
  the window's first sample (the PR segment). The
  extremum's sign (``polarity``) is learnt from the dominant QRS deflection and tracked
  beat by beat, so inverted leads give the R-wave *minimum* (the extremum of
  ``polarity * ecg``). A complex that deflects more than twice as far against the
  lead's polarity (a PVC, negative in an upright lead) is marked at that larger extremum:
  the maximum of ``|ecg|`` with a bias towards the lead's polarity.
* The learning phase is retroactive: MWI peaks seen while learning are replayed
  through the decision rules once the thresholds exist, so the first beats are not lost.
  The same learning restarts when no beat has been accepted for max(3 s, 3 RR).
* Search-back has a second, rhythm-guided stage for regular rhythms (RR within 20% of
  the median): an MWI peak at a whole number of RR intervals (+-15%) and above twice
  the noise level is accepted even below ``THR2``, so a few beats whose QRS shrinks
  (electrode contact, MIT-BIH 100 V5 around 4:56) are not lost.
* Bad input (NaN, or a flat run of identical values >= 100 ms: lead-off or saturation)
  is flagged per sample and skipped; on recovery the filters restart in their steady
  state, detection is blanked for 250 ms while the MWI refills, and no RR interval is
  formed across the gap.

Everything is per sample and all state lives in arrays passed to the kernel, so the
output is identical for any chunking of the input by construction.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --- integer parameters (array prm) ---------------------------------------------------
P_W = 0  # MWI length (samples)
P_REFR = 1  # refractory period after a beat (samples)
P_TWAVE = 2  # T-wave check window after a beat (samples)
P_SBACK = 3  # how far before the MWI peak the R wave is searched (samples)
P_SMOOTH = 4  # half-width of the centred moving average used to locate R (samples)
P_FLAT = 5  # identical samples in a row that make a flat (bad) segment
P_SETTLE = 6  # blanking after recovery from bad input (samples)
P_LEARN = 7  # learning phase length (samples)
P_LOST = 8  # minimum time without beats before re-learning (samples)
P_MASK = 9  # ring buffer length - 1 (length is a power of two)
P_REFINE = 10  # radius of the search for the exact extremum around the smoothed one
P_TPRE = 11  # template: samples before R
P_TPOST = 12  # template: samples after R
N_P = 13

# --- float parameters (array prmf) -----------------------------------------------------
PF_FS = 0
PF_DROP = 1  # MWI peak is declared when MWI < DROP * running max
N_PF = 2

# --- float state (array fst) -----------------------------------------------------------
F_LASTX = 0  # last finite input sample
F_SPKI = 1  # running signal-peak level of the MWI
F_NPKI = 2  # running noise-peak level of the MWI
F_SEGMAX = 3  # hysteresis peak detector: running max while rising
F_SEGMIN = 4  # hysteresis peak detector: running min while falling
F_MWISUM = 5  # running sum of the MWI window
F_BPPREV = 6  # previous band-passed sample (for the derivative)
F_LASTSLOPE = 7  # max |slope| of the last accepted QRS
F_POL = 8  # polarity score, EMA of (pos - neg) / (pos + neg) over beats
F_RRMED = 9  # median of the recent RR intervals (samples)
N_F = 10

# --- integer state (array ist) ---------------------------------------------------------
I_N = 0  # absolute index of the next input sample
I_EPOS = 1  # write position in the MWI ring
I_FLATRUN = 2  # identical samples in a row so far
I_BAD = 3  # currently in a bad segment
I_MODE = 4  # 0 learning, 1 detecting
I_LEARNEND = 5  # absolute index at which learning ends
I_LASTR = 6  # absolute index of the last accepted R peak (-1 none)
I_LASTVALID = 7  # 1 if I_LASTR may form an RR interval with the next beat
I_BLANK = 8  # candidates before this absolute index are ignored
I_SEGMAXIDX = 9  # index of F_SEGMAX
I_RISING = 10  # hysteresis peak detector direction
I_NCAND = 11  # number of stored candidates
I_NRR = 12  # number of stored RR intervals
I_RRPOS = 13  # write position in the RR ring
I_SBDONE = 14  # 1 when search-back found nothing since the last new candidate
I_STARTED = 15  # 1 after the first finite sample
I_ALIVE = 16  # absolute index of the last accepted beat or (re)arming
I_RESTART = 17  # absolute index of the first usable sample after the last (re)start
I_TMPL = 18  # 1 once the beat template holds a beat
N_I = 19

# --- candidate columns (array cands, shape (N_CAND, N_C)) -------------------------------
C_P = 0  # index of the MWI peak
C_A = 1  # MWI peak amplitude
C_RPOS = 2  # R index if polarity is positive
C_RNEG = 3  # R index if polarity is negative
C_SLOPE = 4  # max |slope| of the band-passed ECG in the window
C_POL = 5  # polarity score of this complex, (pos - neg) / (pos + neg)
C_POSAMP = 6  # upward deflection of the smoothed ECG from the window start
C_NEGAMP = 7  # downward deflection of the smoothed ECG from the window start
N_C = 8
N_CAND = 256
OPPOSITE = 2.0  # ratio of deflections above which a complex overrides the lead polarity
N_RR = 8


@njit(cache=True)
def _sos_step(sos, z, x):
    # Direct form II transposed, one sample, as scipy.signal.sosfilt.
    for s in range(sos.shape[0]):
        y = sos[s, 0] * x + z[s, 0]
        z[s, 0] = sos[s, 1] * x - sos[s, 4] * y + z[s, 1]
        z[s, 1] = sos[s, 2] * x - sos[s, 5] * y
        x = y
    return x


@njit(cache=True)
def _locate(ring_s, ring_d, prm, lo, hi, out):
    """R candidates (max and min of the smoothed ECG), slope and polarity in [lo, hi]."""
    mask = prm[P_MASK]
    h = prm[P_SMOOTH]
    a = lo + h
    b = hi - h
    if b < a:
        a = (lo + hi) // 2
        b = a
        h = 0
    # centred moving sum, updated incrementally
    acc = 0.0
    for j in range(a - h, a + h + 1):
        acc += ring_s[j & mask]
    best_hi = acc
    best_lo = acc
    i_hi = a
    i_lo = a
    first = acc
    for i in range(a + 1, b + 1):
        acc += ring_s[(i + h) & mask] - ring_s[(i - h - 1) & mask]
        if acc > best_hi:
            best_hi = acc
            i_hi = i
        if acc < best_lo:
            best_lo = acc
            i_lo = i
    # refine to the exact sample extremum near the smoothed one
    r_pos = i_hi
    r_neg = i_lo
    g = prm[P_REFINE]
    for j in range(max(lo, i_hi - g), min(hi, i_hi + g) + 1):
        if ring_s[j & mask] > ring_s[r_pos & mask]:
            r_pos = j
    for j in range(max(lo, i_lo - g), min(hi, i_lo + g) + 1):
        if ring_s[j & mask] < ring_s[r_neg & mask]:
            r_neg = j
    slope = 0.0
    for j in range(lo, hi + 1):
        v = ring_d[j & mask]
        if v > slope:
            slope = v
    pos = best_hi - first
    neg = first - best_lo
    tot = pos + neg
    out[C_RPOS] = r_pos
    out[C_RNEG] = r_neg
    out[C_SLOPE] = slope
    out[C_POL] = (pos - neg) / tot if tot > 0.0 else 0.0
    out[C_POSAMP] = pos
    out[C_NEGAMP] = neg


@njit(cache=True)
def _r_index(cand, fst):
    # The lead's dominant polarity decides, unless this complex deflects more than twice
    # as far the other way (e.g. a PVC that is negative in an upright lead).
    if fst[F_POL] >= 0.0:
        if cand[C_NEGAMP] > OPPOSITE * cand[C_POSAMP]:
            return np.int64(cand[C_RNEG])
        return np.int64(cand[C_RPOS])
    if cand[C_POSAMP] > OPPOSITE * cand[C_NEGAMP]:
        return np.int64(cand[C_RPOS])
    return np.int64(cand[C_RNEG])


@njit(cache=True)
def _store(cands, ist, cand):
    n = ist[I_NCAND]
    if n == cands.shape[0]:
        # full: drop the oldest so the newest candidates stay
        for k in range(n - 1):
            for j in range(N_C):
                cands[k, j] = cands[k + 1, j]
        n -= 1
    for j in range(N_C):
        cands[n, j] = cand[j]
    ist[I_NCAND] = n + 1
    ist[I_SBDONE] = 0


@njit(cache=True)
def _rr_median(rr, n):
    tmp = np.sort(rr[:n])
    if n % 2 == 1:
        return tmp[n // 2]
    return 0.5 * (tmp[n // 2 - 1] + tmp[n // 2])


@njit(cache=True)
def _similarity(r, nabs, ring_s, prm, ist, tmpl):
    """Correlation of the beat at ``r`` with the running template, then update it.

    Template-matching signal quality after Orphanidou et al. (2015), "Signal-quality
    indices for the electrocardiogram and photoplethysmogram: derivation and
    applications to wireless monitoring", IEEE J Biomed Health Inform 19(3):832-838:
    beats of a real ECG resemble each other (r > ~0.9), detections in noise do not.
    Only samples up to ``nabs`` are used (causal); the template is the exponential
    average (weight 0.2) of z-scored beats, so it follows slow morphology changes.
    """
    mask = prm[P_MASK]
    pre = prm[P_TPRE]
    lo = max(r - pre, ist[I_RESTART])
    hi = min(r + prm[P_TPOST], nabs)
    n = hi - lo + 1
    if n < 4:
        return np.nan
    m = 0.0
    for j in range(lo, hi + 1):
        m += ring_s[j & mask]
    m /= n
    v = 0.0
    for j in range(lo, hi + 1):
        d = ring_s[j & mask] - m
        v += d * d
    sd = np.sqrt(v / n)
    if sd == 0.0:
        return np.nan
    off = lo - (r - pre)
    corr = np.nan
    if ist[I_TMPL] == 1:
        tm = 0.0
        for j in range(n):
            tm += tmpl[off + j]
        tm /= n
        sxy = 0.0
        syy = 0.0
        for j in range(n):
            zx = (ring_s[(lo + j) & mask] - m) / sd
            zy = tmpl[off + j] - tm
            sxy += zx * zy
            syy += zy * zy
        corr = sxy / np.sqrt(n * syy) if syy > 0.0 else np.nan
        for j in range(n):
            tmpl[off + j] = 0.8 * tmpl[off + j] + 0.2 * (ring_s[(lo + j) & mask] - m) / sd
    else:
        tmpl[:] = 0.0
        for j in range(n):
            tmpl[off + j] = (ring_s[(lo + j) & mask] - m) / sd
        ist[I_TMPL] = 1
    return corr


@njit(cache=True)
def _rr_regular(rr, n, med):
    # at least 4 intervals, all within 20% of their median
    if n < 4:
        return False
    for k in range(n):
        if abs(rr[k] - med) > 0.2 * med:
            return False
    return True


@njit(cache=True)
def _rhythm_candidate(cands, ist, fst, prm):
    """Rhythm-guided search-back for a low-amplitude beat in a regular rhythm.

    When nothing exceeds THR2, take the largest MWI peak that lies within 15% of a whole
    number of median RR intervals after the last beat and is at least twice the noise
    level NPKI. This catches beats whose QRS briefly shrinks (electrode contact), which
    amplitude thresholds alone cannot. Rhythm-based search-back in the spirit of
    Hamilton and Tompkins (1986).
    """
    med = fst[F_RRMED]
    best = -1
    abest = 2.0 * fst[F_NPKI]
    for j in range(ist[I_NCAND]):
        dist = _r_index(cands[j], fst) - ist[I_LASTR]
        if dist < prm[P_TWAVE]:
            continue
        k = np.floor(dist / med + 0.5)
        if k < 1.0 or abs(dist - k * med) > 0.15 * med:
            continue
        if cands[j, C_A] > abest:
            abest = cands[j, C_A]
            best = j
    return best


@njit(cache=True)
def _accept(cand, searchback, nabs, prm, fst, ist, rr, ring_s, tmpl, peaks, dec, sim, npk):
    r = _r_index(cand, fst)
    sim[npk] = _similarity(r, nabs, ring_s, prm, ist, tmpl)
    if ist[I_LASTVALID] == 1:
        k = ist[I_RRPOS]
        rr[k] = r - ist[I_LASTR]
        ist[I_RRPOS] = (k + 1) % N_RR
        if ist[I_NRR] < N_RR:
            ist[I_NRR] += 1
        fst[F_RRMED] = _rr_median(rr, ist[I_NRR])
    a = cand[C_A]
    if searchback:
        fst[F_SPKI] = 0.25 * a + 0.75 * fst[F_SPKI]
    else:
        fst[F_SPKI] = 0.125 * a + 0.875 * fst[F_SPKI]
    fst[F_LASTSLOPE] = cand[C_SLOPE]
    fst[F_POL] = 0.9 * fst[F_POL] + 0.1 * cand[C_POL]
    ist[I_LASTR] = r
    ist[I_LASTVALID] = 1
    ist[I_ALIVE] = nabs
    ist[I_SBDONE] = 0
    peaks[npk] = r
    dec[npk] = nabs
    return npk + 1


@njit(cache=True)
def _decide(cand, nabs, prm, fst, ist, cands, rr, ring_s, tmpl, peaks, dec, sim, npk):
    """Pan-Tompkins decision for one MWI peak in detection mode."""
    r = _r_index(cand, fst)
    if ist[I_LASTVALID] == 1 and r - ist[I_LASTR] < prm[P_REFR]:
        return npk  # same QRS as the last beat
    thr1 = fst[F_NPKI] + 0.25 * (fst[F_SPKI] - fst[F_NPKI])
    a = cand[C_A]
    if a > thr1:
        if (
            ist[I_LASTVALID] == 1
            and r - ist[I_LASTR] < prm[P_TWAVE]
            and cand[C_SLOPE] < 0.5 * fst[F_LASTSLOPE]
        ):
            fst[F_NPKI] = 0.125 * a + 0.875 * fst[F_NPKI]  # T wave: a noise peak
            return npk
        ist[I_NCAND] = 0
        return _accept(cand, False, nabs, prm, fst, ist, rr, ring_s, tmpl, peaks, dec, sim, npk)
    fst[F_NPKI] = 0.125 * a + 0.875 * fst[F_NPKI]
    _store(cands, ist, cand)
    return npk


@njit(cache=True)
def _end_learning(nabs, prm, fst, ist, cands, rr, ring_s, tmpl, peaks, dec, sim, npk):
    n = ist[I_NCAND]
    if n == 0:
        ist[I_LEARNEND] = nabs + prm[P_LEARN]
        return npk
    amax = 0.0
    for k in range(n):
        if cands[k, C_A] > amax:
            amax = cands[k, C_A]
    # polarity: amplitude-weighted vote of the large complexes
    wsum = 0.0
    psum = 0.0
    nsum = 0.0
    nn = 0
    for k in range(n):
        a = cands[k, C_A]
        if a >= 0.5 * amax:
            wsum += a
            psum += a * cands[k, C_POL]
        else:
            nsum += a
            nn += 1
    fst[F_POL] = psum / wsum if wsum > 0.0 else 0.0
    fst[F_SPKI] = 0.75 * amax
    fst[F_NPKI] = nsum / nn if nn > 0 else 0.0
    ist[I_MODE] = 1
    ist[I_ALIVE] = nabs
    saved = cands[:n].copy()
    ist[I_NCAND] = 0
    for k in range(n):
        npk = _decide(saved[k], nabs, prm, fst, ist, cands, rr, ring_s, tmpl, peaks, dec, sim, npk)
    return npk


@njit(cache=True)
def qrs_kernel(
    x, sos_bp, zi_bp, z_bp, ring_s, ring_d, ring_e, cands, rr, tmpl,
    fst, ist, prm, prmf, peaks, dec, sim, bad,
):  # fmt: skip
    """Run the detector over ``x``; state arrays are updated in place.

    Returns the number of R peaks written to ``peaks`` (absolute R indices), ``dec``
    (absolute index of the sample at which each was confirmed) and ``sim`` (correlation
    of each beat with the running beat template, NaN for the first). ``bad[k]`` receives
    0 (usable), 1 (not finite) or 2 (flat: lead-off or saturation) for ``x[k]``.
    """
    npk = 0
    mask = prm[P_MASK]
    w = prm[P_W]
    fs = prmf[PF_FS]
    drop = prmf[PF_DROP]
    cand = np.zeros(N_C)
    for k in range(x.shape[0]):
        xv = x[k]
        nabs = ist[I_N]
        ist[I_N] = nabs + 1
        code = 0
        if not np.isfinite(xv) or abs(xv) > 1e100:  # absurd values would overflow d*d
            code = 1
        else:
            if ist[I_STARTED] == 1 and xv == fst[F_LASTX]:
                ist[I_FLATRUN] += 1
            else:
                ist[I_FLATRUN] = 0
            if ist[I_FLATRUN] >= prm[P_FLAT]:
                code = 2
        bad[k] = code
        if code != 0:
            ist[I_BAD] = 1
            continue
        fst[F_LASTX] = xv
        if ist[I_STARTED] == 0 or ist[I_BAD] == 1:
            # (re)start filters in their steady state for this level: no step transient
            for s in range(z_bp.shape[0]):
                z_bp[s, 0] = zi_bp[s, 0] * xv
                z_bp[s, 1] = zi_bp[s, 1] * xv
            ring_e[:] = 0.0
            ist[I_EPOS] = 0
            fst[F_MWISUM] = 0.0
            fst[F_BPPREV] = 0.0
            ist[I_RISING] = 0
            fst[F_SEGMIN] = 0.0
            ist[I_NCAND] = 0
            ist[I_LASTVALID] = 0
            ist[I_SBDONE] = 1
            ist[I_ALIVE] = nabs
            if ist[I_STARTED] == 0:
                ist[I_MODE] = 0
                ist[I_LEARNEND] = nabs + prm[P_LEARN]
                ist[I_BLANK] = nabs
            else:
                ist[I_BLANK] = nabs + prm[P_SETTLE]
                if ist[I_MODE] == 0:
                    ist[I_LEARNEND] = nabs + prm[P_LEARN]
            ist[I_RESTART] = nabs
            ist[I_STARTED] = 1
            ist[I_BAD] = 0
        bp = _sos_step(sos_bp, z_bp, xv)
        d = (bp - fst[F_BPPREV]) * fs
        fst[F_BPPREV] = bp
        ring_s[nabs & mask] = xv
        ring_d[nabs & mask] = abs(d)
        e = d * d
        ep = ist[I_EPOS]
        fst[F_MWISUM] += e - ring_e[ep]
        ring_e[ep] = e
        ep += 1
        if ep == w:
            ep = 0
            # exact re-sum once per window so rounding never accumulates
            acc = 0.0
            for j in range(w):
                acc += ring_e[j]
            fst[F_MWISUM] = acc
        ist[I_EPOS] = ep
        mwi = fst[F_MWISUM] / w

        # hysteresis peak detector on the MWI
        if ist[I_RISING] == 1:
            if mwi > fst[F_SEGMAX]:
                fst[F_SEGMAX] = mwi
                ist[I_SEGMAXIDX] = nabs
            elif mwi < drop * fst[F_SEGMAX]:
                ist[I_RISING] = 0
                fst[F_SEGMIN] = mwi
                if nabs >= ist[I_BLANK]:
                    p = ist[I_SEGMAXIDX]
                    lo = max(p - prm[P_SBACK], ist[I_RESTART])
                    cand[C_P] = p
                    cand[C_A] = fst[F_SEGMAX]
                    _locate(ring_s, ring_d, prm, lo, nabs, cand)
                    if ist[I_MODE] == 0:
                        _store(cands, ist, cand)
                    else:
                        npk = _decide(
                            cand, nabs, prm, fst, ist, cands, rr, ring_s, tmpl, peaks, dec, sim, npk
                        )
        else:
            if mwi < fst[F_SEGMIN]:
                fst[F_SEGMIN] = mwi
            elif mwi > fst[F_SEGMIN] / drop and mwi > 0.0:
                ist[I_RISING] = 1
                fst[F_SEGMAX] = mwi
                ist[I_SEGMAXIDX] = nabs

        if ist[I_MODE] == 0:
            if nabs >= ist[I_LEARNEND]:
                npk = _end_learning(
                    nabs, prm, fst, ist, cands, rr, ring_s, tmpl, peaks, dec, sim, npk
                )
            continue
        # search-back for a missed beat
        if ist[I_SBDONE] == 0 and ist[I_LASTVALID] == 1 and ist[I_NRR] > 0:
            if nabs - ist[I_LASTR] > 1.66 * fst[F_RRMED]:
                thr2 = 0.5 * (fst[F_NPKI] + 0.25 * (fst[F_SPKI] - fst[F_NPKI]))
                best = -1
                abest = thr2
                for j in range(ist[I_NCAND]):
                    rj = _r_index(cands[j], fst)
                    if rj - ist[I_LASTR] >= prm[P_TWAVE] and cands[j, C_A] > abest:
                        abest = cands[j, C_A]
                        best = j
                if best < 0 and _rr_regular(rr, ist[I_NRR], fst[F_RRMED]):
                    best = _rhythm_candidate(cands, ist, fst, prm)
                if best >= 0:
                    for j in range(N_C):
                        cand[j] = cands[best, j]
                    # keep only the candidates after the recovered beat
                    nrem = ist[I_NCAND] - best - 1
                    for j in range(nrem):
                        for c in range(N_C):
                            cands[j, c] = cands[best + 1 + j, c]
                    ist[I_NCAND] = nrem
                    npk = _accept(
                        cand, True, nabs, prm, fst, ist, rr, ring_s, tmpl, peaks, dec, sim, npk
                    )
                else:
                    ist[I_SBDONE] = 1
        # lost: no beat for too long -> learn again
        lost = prm[P_LOST]
        if ist[I_NRR] > 0 and 3.0 * fst[F_RRMED] > lost:
            lost = np.int64(3.0 * fst[F_RRMED])
        if nabs - ist[I_ALIVE] > lost:
            ist[I_MODE] = 0
            ist[I_LEARNEND] = nabs + prm[P_LEARN]
            ist[I_NCAND] = 0
            ist[I_LASTVALID] = 0
    return npk
