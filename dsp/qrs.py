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
  confirmed about 40-60 ms after its R wave (MIT-BIH 100) instead of 200+ ms.
* The band-pass is a first-order Butterworth 5-20 Hz (half the group delay of the
  paper's 5-15 Hz cascade) designed for the actual sampling rate (the paper's
  integer filters assume 200 Hz). All filters start in their steady state for the
  first sample, so there is no start-up transient.
* A QRS is a *complex*, not a single MWI peak. The first MWI peak opens it; it stays
  open while it goes on, and closes, once its MWI is falling, as soon as either its
  dominant wave has come halfway back towards the level before the complex (a narrow
  QRS: about 45 ms after R, as fast as the 1985 rule) or its band-passed slope
  (smoothed over 4 ms) has stayed below 25 % of the complex's maximal slope, and below
  3 x the slope noise floor, for 0.6 x the RMS spread of the complex's slope energy
  (at least 6 ms). A wide ventricular complex, whose MWI has two humps and whose slope
  pauses at its nadir for about a quarter of its RMS spread, thus stays one complex; a
  step, which never comes back, closes by its slope. A complex closes anyway 250 ms
  after its largest MWI value. Its search window starts 200 ms + the MWI length before
  the MWI peak, but never inside the last beat or artifact.
* The R-peak index is the extremum of the *dominant deflection* of the raw ECG, searched
  only in the *core* of the complex: the span around the largest band-passed slope
  where the slope stays above 50 % of that maximum (gaps of up to 60 ms bridged, since
  the slope vanishes at R itself and at the nadir of a wide complex), i.e. the flanks
  of the main wave. A T wave or the slow deep S/T deflection after a wide PVC, which
  can take the fiducial 150 ms past the R peak, lies outside it, and so does motion
  around a QRS. The extremum is found on an 8 ms centred moving average, so noise
  cannot move it, then refined to the exact sample within 10 ms. The raw signal, not a
  high-passed one, is used because a causal high-pass shifts a flat-topped R peak by a
  sample. Deflections are measured from the isoelectric level: the mean of the 20 ms
  that end 10 ms before the complex (its 25 % slope span). The lead's polarity is
  learnt from the dominant deflections of normal beats and tracked (an inverted lead
  gives R-wave *minima*); a complex that deflects more than twice as far against it (a
  PVC, negative in an upright lead) is marked at that larger extremum, so biphasic
  normal complexes do not flip from beat to beat.
* Steps and spikes are not beats. A complex whose largest rise is less than 0.3 x its
  largest fall, or the other way round, moves one way only: a baseline step (an
  electrode pop, or motion). A QRS rises and falls back by similar amounts, however
  steep each side is (the ratio is >= 0.7 for 99 % of the beats of MIT-BIH 100 and of
  the arrhythmia generator, <= 0.27 for 95 % of the generator's steps). A complex
  narrower than 12 ms (its 25 % slope span) is a spike (a stimulation artifact). Above
  THR1 such a complex is reported as an *artifact* detection (one per 200 ms) and kept
  out of every threshold, interval and template; below it, it is a noise peak that
  only the rhythm-guided search-back may use (the shape of a QRS shrunk to noise level
  tells nothing).
* Each beat is classed normal or ectopic when it is accepted (see :func:`_classify`):
  by its rhythm (a causal reading of Lipponen and Tarvainen 2019) and its shape (width
  and correlation with the normal-beat template). An ectopic-looking complex unlike the
  normal beats is held until the next beat, which decides between an ectopic beat and
  an extra detection (L&T's look-ahead, see :func:`_release`); it is then reported,
  still in time order. The template learns only from normal beats that match it, and
  is replaced when six beats in a row match each other but not it (:func:`_relearn`).
* Blanked samples (e.g. around a TMS pulse) are not used: a run of up to 100 ms is
  replaced by the straight line between the samples on either side, once the next
  usable sample has arrived, and processed then (a beat found there is confirmed at
  that sample); a longer run is a gap like missing data.
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
P_SBACK = 3  # how far before the MWI peak the QRS is searched (samples)
P_SMOOTH = 4  # half-width of the centred moving average used to locate R (samples)
P_FLAT = 5  # identical samples in a row that make a flat (bad) segment
P_SETTLE = 6  # blanking after recovery from bad input (samples)
P_LEARN = 7  # learning phase length (samples)
P_LOST = 8  # minimum time without beats before re-learning (samples)
P_MASK = 9  # ring buffer length - 1 (length is a power of two)
P_REFINE = 10  # radius of the search for the exact extremum around the smoothed one
P_TPRE = 11  # template: samples before R
P_TPOST = 12  # template: samples after R
P_QUIET = 13  # low-slope samples in a row that end a QRS
P_GAP = 14  # longest low-slope gap bridged inside one QRS (samples)
P_BASE = 15  # length of the isoelectric stretch before the QRS (samples)
P_TIMEOUT = 16  # a QRS is closed at the latest this long after its MWI peak (samples)
P_BLANKMAX = 17  # longest blanked run bridged by interpolation (samples)
P_SPIKE = 18  # a QRS narrower than this is a spike, not a heartbeat (samples)
N_P = 19

# --- float parameters (array prmf) -----------------------------------------------------
PF_FS = 0
PF_DROP = 1  # MWI peak is declared when MWI < DROP * running max
PF_THETA = 2  # slope fraction (of the complex's maximal slope) that belongs to the QRS
PF_BALANCE = 3  # balance below which a complex is a step (it moves one way only)
PF_WIDE = 4  # QRS width ratio (to normal beats) above which a complex is ventricular
PF_CORR = 5  # template correlation below which a wide complex is ventricular
PF_PREM = 6  # prematurity (L&T normalised) below which a beat is premature
PF_ALPHA = 7  # Lipponen & Tarvainen threshold factor (5.2)
PF_THMIN = 8  # floor of the L&T thresholds, as a fraction of the reference NN interval
PF_CORE = 9  # slope fraction that delimits the core of the QRS, where R is searched
PF_NOISEW = 10  # weight of one sample in the EMA of the slope noise floor (1 / samples)
PF_SMOOTHW = 11  # weight of one sample in the EMA F_ADS
N_PF = 12

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
F_OA = 10  # open QRS: largest MWI value so far
F_OMAXD = 11  # open QRS: largest band-passed slope so far
F_WN = 12  # QRS width of normal beats (EMA, samples)
F_PREVRR = 13  # the previous RR interval (samples)
F_E0 = 14  # open QRS: sum of squared slopes over its window
F_E1 = 15  # open QRS: first moment of the squared slopes (samples from the window start)
F_E2 = 16  # open QRS: second moment
F_DNOISE = 17  # band-passed slope noise floor outside QRS complexes (clipped EMA, 0.5 s)
F_ADS = 18  # band-passed slope, smoothed over a few ms (EMA): what the QRS end is judged on
F_WN2 = 19  # QRS width of the beats in the second template
F_OBASE = 20  # open QRS: the level before it
F_OHI = 21  # open QRS: its maximum so far
F_OLOW = 22  # open QRS: its minimum so far
N_F = 23

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
I_OPEN = 19  # 1 while a QRS is open (its MWI peak seen, its end not yet)
I_OLO = 20  # open QRS: first sample of its search window
I_OP = 21  # open QRS: index of its largest MWI value
I_QUIET = 22  # open QRS: low-slope samples in a row so far
I_PEND = 23  # blanked samples waiting to be bridged
I_PREVCLS = 24  # class of the last accepted beat (-1 none)
I_NNN = 25  # number of stored NN intervals
I_NNPOS = 26  # write position in the NN ring
I_NQ = 27  # number of stored L&T deviations
I_QPOS = 28  # write position in the L&T rings
I_LASTART = 29  # absolute index of the last reported artifact (-1 none)
I_LASTCLOSE = 30  # last sample of the window of the last beat or artifact
I_HASPEND = 31  # 1 while an ectopic-looking detection waits for the next beat
I_NOISEN = 32  # samples that have fed the slope noise floor (counted until it settles)
I_T2N = 33  # beats in a row gathered in the second template (see _relearn)
I_PREVNN = 34  # 1 if the interval that ended at the last beat was an NN interval
N_I = 35

# --- candidate columns (array cands, shape (N_CAND, N_C)) -------------------------------
C_P = 0  # index of the MWI peak
C_A = 1  # MWI peak amplitude
C_RPOS = 2  # R index if the complex is marked at its maximum
C_RNEG = 3  # R index if the complex is marked at its minimum
C_SLOPE = 4  # max |slope| of the band-passed ECG in the QRS
C_POL = 5  # polarity score of this complex, (pos - neg) / (pos + neg)
C_POSAMP = 6  # upward deflection of the smoothed ECG from the isoelectric level
C_NEGAMP = 7  # downward deflection of the smoothed ECG from the isoelectric level
C_WIDTH = 8  # QRS width: RMS spread of the band-passed slope energy (samples)
C_ENDPOS = 9  # fall from the maximum to the level at the QRS end
C_ENDNEG = 10  # rise from the minimum to the level at the QRS end
C_ART = 11  # 1 if the complex is a step or a spike, not a heartbeat
C_BAL = 12  # balance: the smaller of the largest rise and the largest fall over the larger
C_END = 13  # last sample of the complex's search window
N_C = 14
N_CAND = 256
OPPOSITE = 2.0  # ratio of deflections above which a complex overrides the lead polarity
NOISE_FACTOR = 3.0  # slopes below this many times the noise floor do not extend a QRS
RELEARN = 6  # beats in a row unlike the template but alike each other that replace it
WARMUP_TH = 0.1  # L&T thresholds (x the NN reference) before 8 NN deviations are known
N_RR = 8
N_NN = 11  # Lipponen & Tarvainen: median of 11 intervals
N_Q = 91  # Lipponen & Tarvainen: quartile deviation over 91 beats

# --- beat classes ---------------------------------------------------------------------
CLS_NORMAL = 0
CLS_ECTOPIC = 1
CLS_ARTIFACT = 2

# --- a detection held until the next beat (array pend, length N_PD) ---------------------
PD_R = 0  # its R index
PD_SIM = 1  # its template correlation
PD_PREVR = 2  # the beat before it: R index
PD_PREVCLS = 3  # ... its class
PD_PREVRR = 4  # ... the interval that ended at it
PD_PREVVALID = 5  # ... whether it may start an interval
PD_PREVNN = 6  # ... whether the interval that ended at it was an NN interval
PD_FEAT = 7  # its features (N_FEAT values)

# --- per-beat features (array feat, shape (n, N_FEAT)) ---------------------------------
X_WIDTH = 0  # QRS width: RMS spread of its slope energy (samples)
X_RETURN = 1  # fraction of the dominant deflection the signal returned by the QRS end
X_CORR = 2  # correlation with the normal-beat template (NaN before one exists)
X_DRR = 3  # L&T dRR / Th1 (NaN without history)
X_MRR = 4  # L&T mRR / Th2 (negative values doubled; NaN without history)
X_WRATIO = 5  # QRS width / width of normal beats
X_BALANCE = 6  # rise/fall balance of the complex (C_BAL)
X_AMP = 7  # MWI peak / signal level SPKI before this beat
N_FEAT = 8
N_PD = PD_FEAT + N_FEAT


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
def _span(ring_d, mask, lo, hi, imax, thr, gmax):
    # the span around imax where the slope stays >= thr, gaps up to gmax bridged
    qs = imax
    gap = 0
    j = imax
    while j > lo:
        j -= 1
        if ring_d[j & mask] >= thr:
            qs = j
            gap = 0
        else:
            gap += 1
            if gap > gmax:
                break
    qe = imax
    gap = 0
    j = imax
    while j < hi:
        j += 1
        if ring_d[j & mask] >= thr:
            qe = j
            gap = 0
        else:
            gap += 1
            if gap > gmax:
                break
    return qs, qe


@njit(cache=True)
def _smoothed(ring_s, mask, i, h):
    acc = 0.0
    for j in range(i - h, i + h + 1):
        acc += ring_s[j & mask]
    return acc / (2 * h + 1)


@njit(cache=True)
def _runs_on(ring_s, mask, i, a, b, lo, hi, h, g, sign):
    """True if the extremum at ``i`` (a maximum for sign +1) is no turn of the signal.

    An extremum on the edge of the searched core [a, b] is followed outwards; if the
    smoothed signal keeps growing for ``g`` more samples, or up to the newest sample, it
    was the middle of a slope (e.g. the rise from a wide QS into a tall T wave), not a
    peak. A flat-topped R just outside the core turns within a few samples and stays a
    candidate.
    """
    if i >= b:
        step = 1
    elif i <= a:
        step = -1
    else:
        return False
    v = sign * _smoothed(ring_s, mask, i, h)
    for k in range(1, g + 1):
        j = i + step * k
        if j + h > hi:
            return True  # still growing where the data known so far ends
        if j - h < lo:
            return False
        w = sign * _smoothed(ring_s, mask, j, h)
        if w < v:
            return False
        v = w
    return True


@njit(cache=True)
def _locate(ring_s, ring_d, prm, prmf, lo, hi, dnoise, out):
    """Delimit the QRS in [lo, hi] by its slope, then find its extrema and features.

    The QRS is the span around the largest band-passed slope where the slope stays above
    ``PF_THETA`` times that maximum (gaps up to ``P_GAP`` bridged, since the slope
    vanishes at the R peak itself). Only this span is searched for R, so a T wave or a
    slow ST deflection next to a wide ventricular complex cannot be taken for it.
    Deflections are measured from the isoelectric level just before the span.
    """
    mask = prm[P_MASK]
    maxd = -1.0
    imax = lo
    for j in range(lo, hi + 1):
        v = ring_d[j & mask]
        if v > maxd:
            maxd = v
            imax = j
    gmax = prm[P_GAP]
    floor = NOISE_FACTOR * dnoise  # slopes of this size may be noise
    qs, qe = _span(ring_d, mask, lo, hi, imax, max(prmf[PF_THETA] * maxd, floor), gmax)
    # R is searched in the core of the QRS, where the slope exceeds PF_CORE x its maximum
    # (the flanks of the main wave): motion or a T wave next to the QRS cannot reach it
    cs, ce = _span(ring_d, mask, lo, hi, imax, max(prmf[PF_CORE] * maxd, floor), gmax)
    g = prm[P_REFINE]
    a0 = max(lo, cs - g)
    b0 = min(hi, ce + g)
    pre = max(lo, qs - g)
    # isoelectric level: mean of the stretch before the QRS
    nb = prm[P_BASE]
    bl = max(lo, pre - nb)
    if pre - bl >= 1:
        base = 0.0
        for j in range(bl, pre):
            base += ring_s[j & mask]
        base /= pre - bl
    else:
        base = ring_s[pre & mask]
    # extrema of a centred moving average (noise cannot move them), then the exact sample
    h = prm[P_SMOOTH]
    a = a0 + h
    b = b0 - h
    if b < a:
        a = (a0 + b0) // 2
        b = a
        h = 0
    acc = 0.0
    for j in range(a - h, a + h + 1):
        acc += ring_s[j & mask]
    best_hi = acc
    best_lo = acc
    i_hi = a
    i_lo = a
    for i in range(a + 1, b + 1):
        acc += ring_s[(i + h) & mask] - ring_s[(i - h - 1) & mask]
        if acc > best_hi:
            best_hi = acc
            i_hi = i
        if acc < best_lo:
            best_lo = acc
            i_lo = i
    best_hi /= 2 * h + 1
    best_lo /= 2 * h + 1
    r_pos = i_hi
    r_neg = i_lo
    for j in range(max(lo, i_hi - g), min(hi, i_hi + g) + 1):
        if ring_s[j & mask] > ring_s[r_pos & mask]:
            r_pos = j
    for j in range(max(lo, i_lo - g), min(hi, i_lo + g) + 1):
        if ring_s[j & mask] < ring_s[r_neg & mask]:
            r_neg = j
    # level at the end of the window: a QRS returns towards baseline, a step does not
    nq = max(1, prm[P_QUIET])
    el = max(lo, hi - nq + 1)
    end = 0.0
    for j in range(el, hi + 1):
        end += ring_s[j & mask]
    end /= hi - el + 1
    # balance: a QRS rises and falls back (by similar amounts, however steep each side
    # is), a step moves one way only
    rise = 0.0
    fall = 0.0
    vmin = ring_s[pre & mask]
    vmax = vmin
    for j in range(pre, min(hi, qe + g) + 1):
        v = ring_s[j & mask]
        vmin = min(vmin, v)
        vmax = max(vmax, v)
        rise = max(rise, v - vmin)
        fall = max(fall, vmax - v)
    out[C_BAL] = min(rise, fall) / max(rise, fall) if max(rise, fall) > 0.0 else 0.0
    pos = max(best_hi - base, 0.0)
    neg = max(base - best_lo, 0.0)
    # an extremum that is the middle of a slope is no candidate for R
    if _runs_on(ring_s, mask, i_hi, a, b, lo, hi, h, max(3, g), 1.0):
        pos = 0.0
    if _runs_on(ring_s, mask, i_lo, a, b, lo, hi, h, max(3, g), -1.0):
        neg = 0.0
    tot = pos + neg
    out[C_RPOS] = r_pos
    out[C_RNEG] = r_neg
    out[C_SLOPE] = maxd
    out[C_POL] = (pos - neg) / tot if tot > 0.0 else 0.0
    out[C_POSAMP] = pos
    out[C_NEGAMP] = neg
    # width: RMS spread of the slope energy over the QRS (a threshold span would jump
    # whenever a small Q or S wave crosses the threshold)
    e0 = 0.0
    e1 = 0.0
    for j in range(qs, qe + 1):
        v = ring_d[j & mask] ** 2
        e0 += v
        e1 += v * (j - qs)
    tbar = e1 / e0 if e0 > 0.0 else 0.0
    e2 = 0.0
    for j in range(qs, qe + 1):
        e2 += ring_d[j & mask] ** 2 * (j - qs - tbar) ** 2
    out[C_WIDTH] = np.sqrt(e2 / e0) if e0 > 0.0 else 0.0
    out[C_ENDPOS] = best_hi - end
    out[C_ENDNEG] = end - best_lo
    out[C_ART] = 0.0
    out[C_END] = hi
    # a step moves one way (a QRS rises and falls); a spike (e.g. a stimulation artifact)
    # is far narrower than any QRS
    if qe - qs + 1 < prm[P_SPIKE] or out[C_BAL] < prmf[PF_BALANCE]:
        out[C_ART] = 1.0


@njit(cache=True)
def _dominant_up(cand, pol):
    # The lead's dominant polarity decides, unless this complex deflects more than twice
    # as far the other way (e.g. a PVC that is negative in an upright lead).
    if pol >= 0.0:
        return not cand[C_NEGAMP] > OPPOSITE * cand[C_POSAMP]
    return cand[C_POSAMP] > OPPOSITE * cand[C_NEGAMP]


@njit(cache=True)
def _return(cand, up):
    # fraction of the dominant deflection the signal has come back by the QRS end
    if up:
        return cand[C_ENDPOS] / cand[C_POSAMP] if cand[C_POSAMP] > 0.0 else 0.0
    return cand[C_ENDNEG] / cand[C_NEGAMP] if cand[C_NEGAMP] > 0.0 else 0.0


@njit(cache=True)
def _r_index(cand, fst):
    if _dominant_up(cand, fst[F_POL]):
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
def _median(v, n):
    tmp = np.sort(v[:n])
    if n % 2 == 1:
        return tmp[n // 2]
    return 0.5 * (tmp[n // 2 - 1] + tmp[n // 2])


@njit(cache=True)
def _quartile_dev(v, n):
    # (Q3 - Q1) / 2 with linear interpolation between order statistics
    tmp = np.sort(v[:n])
    q = np.empty(2)
    for k, f in enumerate((0.25, 0.75)):
        pos = f * (n - 1)
        i = int(np.floor(pos))
        j = min(i + 1, n - 1)
        q[k] = tmp[i] + (pos - i) * (tmp[j] - tmp[i])
    return 0.5 * (q[1] - q[0])


@njit(cache=True)
def _correlate(r, nabs, ring_s, prm, ist, tmpl, has):
    """Correlation of the beat at ``r`` with a beat template (NaN if ``has`` is False).

    Template-matching signal quality after Orphanidou et al. (2015), "Signal-quality
    indices for the electrocardiogram and photoplethysmogram: derivation and
    applications to wireless monitoring", IEEE J Biomed Health Inform 19(3):832-838:
    beats of a real ECG resemble each other (r > ~0.9), detections in noise do not.
    Only samples up to ``nabs`` are used (causal).
    """
    mask = prm[P_MASK]
    pre = prm[P_TPRE]
    lo = max(r - pre, ist[I_RESTART])
    hi = min(r + prm[P_TPOST], nabs)
    n = hi - lo + 1
    if n < 4 or not has:
        return np.nan
    m = 0.0
    for j in range(lo, hi + 1):
        m += ring_s[j & mask]
    m /= n
    v = 0.0
    for j in range(lo, hi + 1):
        d = ring_s[j & mask] - m
        v += d * d
    if v == 0.0:
        return np.nan
    off = lo - (r - pre)
    tm = 0.0
    for j in range(n):
        tm += tmpl[off + j]
    tm /= n
    sxy = 0.0
    syy = 0.0
    for j in range(n):
        zy = tmpl[off + j] - tm
        sxy += (ring_s[(lo + j) & mask] - m) * zy
        syy += zy * zy
    return sxy / np.sqrt(v * syy) if syy > 0.0 else np.nan


@njit(cache=True)
def _template_update(r, nabs, ring_s, prm, ist, tmpl, fresh):
    # A template is the exponential average (weight 0.2) of z-scored beats, so it follows
    # slow morphology changes; ``fresh`` starts it from this beat.
    mask = prm[P_MASK]
    pre = prm[P_TPRE]
    lo = max(r - pre, ist[I_RESTART])
    hi = min(r + prm[P_TPOST], nabs)
    n = hi - lo + 1
    if n < 4:
        return
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
        return
    off = lo - (r - pre)
    if not fresh:
        for j in range(n):
            tmpl[off + j] = 0.8 * tmpl[off + j] + 0.2 * (ring_s[(lo + j) & mask] - m) / sd
    else:
        tmpl[:] = 0.0
        for j in range(n):
            tmpl[off + j] = (ring_s[(lo + j) & mask] - m) / sd


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
def _threshold(q, ref, prmf, ist):
    # L&T: alpha x quartile deviation over the window, floored (a perfectly regular rhythm
    # has QD 0, and RR is quantised to one sample)
    if ist[I_NQ] < 8:
        # until the rhythm's own variability is known: a conservative prior (a beat must
        # come 15 % early, by 10 % more than the previous interval, to count as premature)
        return WARMUP_TH * ref
    return max(prmf[PF_ALPHA] * _quartile_dev(q, ist[I_NQ]), prmf[PF_THMIN] * ref)


@njit(cache=True)
def _classify(cand, r, corr, prmf, fst, ist, hist, x):
    """Class of an accepted beat: normal or ectopic, from its rhythm and its shape.

    Rhythm: a causal reading of Lipponen JA, Tarvainen MP (2019), "A robust algorithm for
    heart rate variability time series artefact correction using novel beat
    classification", J Med Eng Technol 43(3):173-181. The paper's two series are formed
    for this beat from past beats only: dRR (difference of successive RR) normalised by
    Th1 = alpha * QD(|dRR|), and mRR (RR minus the median of the last 11 NN intervals,
    negative values doubled) normalised by Th2 = alpha * QD(|mRR|), with QD the quartile
    deviation over the last 91 beats (the paper centres its windows; causally they
    trail). A beat is premature when mRR/Th2 < PF_PREM and dRR/Th1 < -1. The paper's
    look-ahead (the compensatory pause that confirms an ectopic beat, extra and missed
    beats) is resolved by the RR correction when the next normal beat arrives
    (:mod:`stimloop.dsp.rr`).

    Shape: a QRS wider than PF_WIDE times that of normal beats and unlike the normal-beat
    template (correlation below PF_CORR) is ventricular, premature or not. QRS width
    and template matching are the classic features of ventricular beats (e.g. Hamilton P
    (2002), "Open source ECG analysis", Computers in Cardiology 29:101-104).
    """
    rrn = hist[0]
    qd = hist[1]
    qm = hist[2]
    for j in range(N_FEAT):
        x[j] = np.nan
    x[X_WIDTH] = cand[C_WIDTH]
    x[X_RETURN] = _return(cand, _dominant_up(cand, fst[F_POL]))
    x[X_CORR] = corr
    x[X_BALANCE] = cand[C_BAL]
    x[X_AMP] = cand[C_A] / fst[F_SPKI] if fst[F_SPKI] > 0.0 else np.nan
    cls = CLS_NORMAL
    if fst[F_WN] > 0.0:
        x[X_WRATIO] = cand[C_WIDTH] / fst[F_WN]
        if x[X_WRATIO] > prmf[PF_WIDE] and not corr >= prmf[PF_CORR]:
            cls = CLS_ECTOPIC
    if ist[I_LASTVALID] == 1 and ist[I_PREVCLS] >= 0:
        rr_now = float(r - ist[I_LASTR])
        if ist[I_NNN] >= 3 and fst[F_PREVRR] > 0.0:
            ref = _median(rrn, ist[I_NNN])
            drr = rr_now - fst[F_PREVRR]
            mrr = rr_now - ref
            if mrr < 0.0:
                mrr *= 2.0
            th1 = _threshold(qd, ref, prmf, ist)
            th2 = _threshold(qm, ref, prmf, ist)
            x[X_DRR] = drr / th1
            x[X_MRR] = mrr / th2
            if x[X_MRR] < prmf[PF_PREM] and x[X_DRR] < -1.0:
                cls = CLS_ECTOPIC
    return cls


@njit(cache=True)
def _note_rhythm(r, cls, x, fst, ist, hist):
    # After classification. Only NN intervals (two normal beats) enter the reference
    # median and the L&T threshold windows: with frequent ectopy (10 % of beats give 20 %
    # of large dRR values) the quartiles of all beats would widen the thresholds until
    # ectopic beats pass for normal ones.
    # dRR is a difference of two successive NN intervals: the NN interval after an
    # ectopic beat minus the post-ectopic one is not sinus variability.
    nn = False
    if ist[I_LASTVALID] == 1 and ist[I_PREVCLS] >= 0:
        rr_now = float(r - ist[I_LASTR])
        if cls == CLS_NORMAL and ist[I_PREVCLS] == CLS_NORMAL:
            nn = True
            if ist[I_NNN] >= 3 and ist[I_PREVNN] == 1:
                ref = _median(hist[0], ist[I_NNN])
                mrr = rr_now - ref
                k = ist[I_QPOS]
                hist[1, k] = abs(rr_now - fst[F_PREVRR])
                hist[2, k] = abs(2.0 * mrr if mrr < 0.0 else mrr)
                ist[I_QPOS] = (k + 1) % N_Q
                if ist[I_NQ] < N_Q:
                    ist[I_NQ] += 1
            k = ist[I_NNPOS]
            hist[0, k] = rr_now
            ist[I_NNPOS] = (k + 1) % N_NN
            if ist[I_NNN] < N_NN:
                ist[I_NNN] += 1
        fst[F_PREVRR] = rr_now
    else:
        fst[F_PREVRR] = 0.0
    ist[I_PREVNN] = 1 if nn else 0


@njit(cache=True)
def _relearn(r, nabs, cand, corr, ring_s, prm, prmf, fst, ist, tmpl):
    """Track beats that do not match the template; adopt them if they keep coming.

    Beats unlike the template that resemble each other are gathered in a second
    template. RELEARN of them in a row (no matching beat between) mean the normal
    morphology has changed (electrodes moved, the template was learnt from noise): the
    second template becomes the first. Ectopic beats between normal ones never get there.
    Returns the correlation of this beat with the (possibly new) template.
    """
    c2 = _correlate(r, nabs, ring_s, prm, ist, tmpl[1], ist[I_T2N] > 0)
    w = cand[C_WIDTH]
    if ist[I_T2N] > 0 and c2 >= prmf[PF_CORR]:
        _template_update(r, nabs, ring_s, prm, ist, tmpl[1], False)
        ist[I_T2N] += 1
        fst[F_WN2] = 0.8 * fst[F_WN2] + 0.2 * w
    else:
        _template_update(r, nabs, ring_s, prm, ist, tmpl[1], True)
        ist[I_T2N] = 1
        fst[F_WN2] = w
    if ist[I_T2N] < RELEARN:
        return corr
    tmpl[0, :] = tmpl[1, :]
    fst[F_WN] = fst[F_WN2]
    ist[I_T2N] = 0
    return _correlate(r, nabs, ring_s, prm, ist, tmpl[0], True)


@njit(cache=True)
def _emit(r, now, corr, cls, x, out, npk):
    peaks, dec, sim, cls_out, feat = out
    peaks[npk] = r
    dec[npk] = now
    sim[npk] = corr
    cls_out[npk] = cls
    for j in range(N_FEAT):
        feat[npk, j] = x[j]
    return npk + 1


@njit(cache=True)
def _release(r_next, next_odd, now, prmf, fst, ist, hist, pend, out, npk):
    """Decide the held detection now that the next beat (at ``r_next``) is known.

    Lipponen & Tarvainen (2019) call a short interval followed by a short one whose sum is
    one normal interval an *extra* beat: |RR(n) + RR(n+1) - medRR| < Th2. A detection
    that looked unlike the normal beats and passes this test was motion or noise, not a
    heartbeat: it becomes an artifact and the rhythm state forgets it. Anything else
    (a compensatory pause, or another odd complex next) keeps it an ectopic beat.
    """
    ist[I_HASPEND] = 0
    cls = CLS_ECTOPIC
    if r_next >= 0 and not next_odd and pend[PD_PREVVALID] == 1.0 and ist[I_NNN] >= 3:
        ref = _median(hist[0], ist[I_NNN])
        th2 = _threshold(hist[2], ref, prmf, ist)
        if abs((r_next - pend[PD_PREVR]) - ref) < th2:
            cls = CLS_ARTIFACT
            ist[I_LASTR] = np.int64(pend[PD_PREVR])
            ist[I_PREVCLS] = np.int64(pend[PD_PREVCLS])
            fst[F_PREVRR] = pend[PD_PREVRR]
            ist[I_PREVNN] = np.int64(pend[PD_PREVNN])
    sim = pend[PD_SIM] if cls != CLS_ARTIFACT else np.nan
    return _emit(np.int64(pend[PD_R]), now, sim, cls, pend[PD_FEAT:], out, npk)


@njit(cache=True)
def _accept(
    cand, searchback, nabs, now, prm, prmf, fst, ist, rr, ring_s, tmpl, hist, pend, out, npk
):  # fmt: skip
    feat = out[4]
    x = feat[npk]  # scratch row: this beat's features, written before any release
    r = _r_index(cand, fst)
    corr = _correlate(r, nabs, ring_s, prm, ist, tmpl[0], ist[I_TMPL] == 1)
    if ist[I_TMPL] == 1 and not corr >= prmf[PF_CORR]:
        corr = _relearn(r, nabs, cand, corr, ring_s, prm, prmf, fst, ist, tmpl)
    # a complex unlike the normal beats (or none to compare with yet) may be an artifact
    odd = not corr >= prmf[PF_CORR]
    if ist[I_HASPEND] == 1:
        keep = x.copy()
        npk = _release(r, odd, now, prmf, fst, ist, hist, pend, out, npk)
        x = feat[npk]
        x[:] = keep
    prev_r = ist[I_LASTR]
    prev_cls = ist[I_PREVCLS]
    prev_rr = fst[F_PREVRR]
    prev_valid = ist[I_LASTVALID]
    prev_nn = ist[I_PREVNN]
    cls = _classify(cand, r, corr, prmf, fst, ist, hist, x)
    _note_rhythm(r, cls, x, fst, ist, hist)
    if cls == CLS_NORMAL and (ist[I_TMPL] == 0 or not odd):
        # only beats that match it teach the template (noise detections must not)
        _template_update(r, nabs, ring_s, prm, ist, tmpl[0], ist[I_TMPL] == 0)
        ist[I_TMPL] = 1
        ist[I_T2N] = 0
        w = cand[C_WIDTH]
        fst[F_WN] = w if fst[F_WN] == 0.0 else 0.9 * fst[F_WN] + 0.1 * w
    if ist[I_LASTVALID] == 1:
        k = ist[I_RRPOS]
        rr[k] = r - ist[I_LASTR]
        ist[I_RRPOS] = (k + 1) % N_RR
        if ist[I_NRR] < N_RR:
            ist[I_NRR] += 1
        fst[F_RRMED] = _median(rr, ist[I_NRR])
    a = cand[C_A]
    if searchback:
        fst[F_SPKI] = 0.25 * a + 0.75 * fst[F_SPKI]
    else:
        fst[F_SPKI] = 0.125 * a + 0.875 * fst[F_SPKI]
    fst[F_LASTSLOPE] = cand[C_SLOPE]
    if cls == CLS_NORMAL:
        fst[F_POL] = 0.9 * fst[F_POL] + 0.1 * cand[C_POL]
    ist[I_LASTR] = r
    ist[I_LASTVALID] = 1
    ist[I_PREVCLS] = cls
    ist[I_ALIVE] = nabs
    ist[I_SBDONE] = 0
    ist[I_LASTCLOSE] = max(ist[I_LASTCLOSE], np.int64(cand[C_END]))
    if cls == CLS_ECTOPIC and odd and ist[I_TMPL] == 1:
        # Held until the next beat, which tells an ectopic beat (a pause follows) from an
        # extra detection (the next beat comes on time): L&T's look-ahead, made causal by
        # reporting this detection one beat later.
        pend[PD_R] = r
        pend[PD_SIM] = corr
        pend[PD_PREVR] = prev_r
        pend[PD_PREVCLS] = prev_cls
        pend[PD_PREVRR] = prev_rr
        pend[PD_PREVVALID] = prev_valid
        pend[PD_PREVNN] = prev_nn
        for j in range(N_FEAT):
            pend[PD_FEAT + j] = x[j]
        ist[I_HASPEND] = 1
        return npk
    return _emit(r, now, corr, cls, x, out, npk)


@njit(cache=True)
def _artifact(cand, nabs, now, prmf, fst, ist, hist, pend, out, npk):
    # a step or spike that passed the amplitude threshold: reported, not a beat, and
    # kept out of every threshold, interval and template
    if ist[I_HASPEND] == 1:
        npk = _release(-1, True, now, prmf, fst, ist, hist, pend, out, npk)  # keep order
    peaks, dec, sim, cls_out, feat = out
    r = _r_index(cand, fst)
    for j in range(N_FEAT):
        feat[npk, j] = np.nan
    feat[npk, X_WIDTH] = cand[C_WIDTH]
    feat[npk, X_RETURN] = _return(cand, _dominant_up(cand, fst[F_POL]))
    feat[npk, X_BALANCE] = cand[C_BAL]
    peaks[npk] = r
    dec[npk] = now
    sim[npk] = np.nan
    cls_out[npk] = CLS_ARTIFACT
    ist[I_LASTCLOSE] = max(ist[I_LASTCLOSE], np.int64(cand[C_END]))
    return npk + 1


@njit(cache=True)
def _decide(cand, nabs, now, prm, prmf, fst, ist, cands, rr, ring_s, tmpl, hist, pend, out, npk):
    """Pan-Tompkins decision for one MWI peak in detection mode."""
    r = _r_index(cand, fst)
    thr1 = fst[F_NPKI] + 0.25 * (fst[F_SPKI] - fst[F_NPKI])
    a = cand[C_A]
    if cand[C_ART] != 0.0 and a > thr1:
        # A step or spike big enough to pass for a beat is reported as an artifact (one
        # per refractory period) and kept out of every threshold, interval and template.
        # Within the refractory period of a beat it is that beat's tail (the second half
        # of a wide complex closed at its nadir), not worth a report.
        if ist[I_LASTVALID] == 1 and r - ist[I_LASTR] < prm[P_REFR]:
            return npk
        if ist[I_LASTART] < 0 or r - ist[I_LASTART] >= prm[P_REFR]:
            ist[I_LASTART] = r
            return _artifact(cand, nabs, now, prmf, fst, ist, hist, pend, out, npk)
        return npk
    if ist[I_LASTVALID] == 1 and r - ist[I_LASTR] < prm[P_REFR]:
        return npk  # same QRS as the last beat
    if a > thr1:
        if (
            ist[I_LASTVALID] == 1
            and r - ist[I_LASTR] < prm[P_TWAVE]
            and cand[C_SLOPE] < 0.5 * fst[F_LASTSLOPE]
        ):
            fst[F_NPKI] = 0.125 * a + 0.875 * fst[F_NPKI]  # T wave: a noise peak
            return npk
        ist[I_NCAND] = 0
        return _accept(
            cand, False, nabs, now, prm, prmf, fst, ist, rr, ring_s, tmpl, hist, pend, out, npk
        )
    # Below THR1 it is a noise peak and search-back material, whatever its shape: the
    # shape of a complex this small is mostly noise (a QRS shrunk to 1/6 by electrode
    # contact in MIT-BIH 100 V5 measures like a step); only the rhythm-guided stage may
    # recover a complex flagged as a step.
    fst[F_NPKI] = 0.125 * a + 0.875 * fst[F_NPKI]
    _store(cands, ist, cand)
    return npk


@njit(cache=True)
def _end_learning(nabs, now, prm, prmf, fst, ist, cands, rr, ring_s, tmpl, hist, pend, out, npk):
    n = ist[I_NCAND]
    if n == 0:
        ist[I_LEARNEND] = nabs + prm[P_LEARN]
        return npk
    amax = 0.0
    for k in range(n):
        if cands[k, C_A] > amax and cands[k, C_ART] == 0.0:
            amax = cands[k, C_A]
    if amax == 0.0:
        ist[I_NCAND] = 0
        ist[I_LEARNEND] = nabs + prm[P_LEARN]
        return npk
    # polarity: amplitude-weighted vote of the large complexes
    wsum = 0.0
    psum = 0.0
    nsum = 0.0
    nn = 0
    for k in range(n):
        if cands[k, C_ART] != 0.0:
            continue
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
        npk = _decide(
            saved[k], nabs, now, prm, prmf, fst, ist, cands, rr, ring_s, tmpl, hist, pend, out, npk
        )
    return npk


@njit(cache=True)
def _open_qrs(idx, prm, prmf, fst, ist, ring_s, ring_d):
    # an MWI peak opens a QRS; it stays open while its slope lasts
    mask = prm[P_MASK]
    p = ist[I_SEGMAXIDX]
    # the window never reaches back into the last beat or artifact (e.g. a baseline step
    # just before this QRS, whose slope would otherwise be taken for the QRS); it may
    # overlap a complex that was only a noise peak, which can be the first hump of a
    # wide ventricular QRS
    lo = max(p - prm[P_SBACK], ist[I_RESTART], ist[I_LASTCLOSE] + 1)
    ist[I_OPEN] = 1
    ist[I_OLO] = lo
    ist[I_OP] = p
    fst[F_OA] = fst[F_SEGMAX]
    maxd = 0.0
    imax = lo
    for j in range(lo, idx + 1):
        if ring_d[j & mask] > maxd:
            maxd = ring_d[j & mask]
            imax = j
    fst[F_OMAXD] = maxd
    thr = max(prmf[PF_THETA] * maxd, NOISE_FACTOR * fst[F_DNOISE])
    e0 = 0.0
    e1 = 0.0
    e2 = 0.0
    for j in range(lo, idx + 1):
        if ring_d[j & mask] < thr:
            continue  # only the slope of the complex itself, not noise far from it
        v = ring_d[j & mask] ** 2
        e0 += v
        e1 += v * (j - lo)
        e2 += v * (j - lo) ** 2
    fst[F_E0] = e0
    fst[F_E1] = e1
    fst[F_E2] = e2
    q = 0
    j = idx
    while j >= lo and ring_d[j & mask] < thr:
        q += 1
        j -= 1
    ist[I_QUIET] = q
    # the level before the complex and its extremes so far, for the early close
    qs, _ = _span(ring_d, mask, lo, idx, imax, thr, prm[P_GAP])
    g = prm[P_REFINE]
    pre = max(lo, qs - g)
    bl = max(lo, pre - prm[P_BASE])
    base = ring_s[pre & mask]
    if pre > bl:
        base = 0.0
        for j in range(bl, pre):
            base += ring_s[j & mask]
        base /= pre - bl
    fst[F_OBASE] = base
    hi_v = base
    lo_v = base
    for j in range(pre, idx + 1):
        hi_v = max(hi_v, ring_s[j & mask])
        lo_v = min(lo_v, ring_s[j & mask])
    fst[F_OHI] = hi_v
    fst[F_OLOW] = lo_v


@njit(cache=True)
def _turned_back(fst, xi):
    """True once the signal has come halfway back from the complex's dominant extremum.

    The dominant wave of the complex has then turned: a narrow QRS is complete enough to
    locate its R (~45 ms after it), while a wide complex still on its way to its nadir,
    or rising from it, is not. A step never turns back.
    """
    up = fst[F_OHI] - fst[F_OBASE]
    dn = fst[F_OBASE] - fst[F_OLOW]
    if up >= dn:
        return up > 0.0 and fst[F_OHI] - xi >= 0.5 * up
    return fst[F_OLOW] - xi <= -0.5 * dn


@njit(cache=True)
def _quiet_needed(fst, prm):
    e0 = fst[F_E0]
    if e0 <= 0.0:
        return prm[P_QUIET]
    m = fst[F_E1] / e0
    var = fst[F_E2] / e0 - m * m
    w = np.sqrt(var) if var > 0.0 else 0.0
    return max(prm[P_QUIET], np.int64(0.6 * w + 0.5))


@njit(cache=True)
def _close_qrs(idx, now, prm, prmf, fst, ist, cands, rr, ring_s, ring_d, tmpl, hist, pend,
               out, npk, cand):  # fmt: skip
    # the open complex is complete: locate its R and features, then decide or store it
    ist[I_OPEN] = 0
    cand[C_P] = ist[I_OP]
    cand[C_A] = fst[F_OA]
    _locate(ring_s, ring_d, prm, prmf, ist[I_OLO], idx, fst[F_DNOISE], cand)
    if ist[I_MODE] == 0:
        _store(cands, ist, cand)
        return npk
    return _decide(
        cand, idx, now, prm, prmf, fst, ist, cands, rr, ring_s, tmpl, hist, pend, out, npk
    )


@njit(cache=True)
def _search_back(idx, now, prm, prmf, fst, ist, cands, rr, ring_s, tmpl, hist, pend, out, npk,
                 cand):  # fmt: skip
    """Search-back for a missed beat, once 1.66 x the median RR has passed without one."""
    thr2 = 0.5 * (fst[F_NPKI] + 0.25 * (fst[F_SPKI] - fst[F_NPKI]))
    best = -1
    abest = thr2
    for j in range(ist[I_NCAND]):
        rj = _r_index(cands[j], fst)
        if cands[j, C_ART] != 0.0:
            continue  # a step or spike; only the rhythm-guided stage may use it
        if rj - ist[I_LASTR] >= prm[P_TWAVE] and cands[j, C_A] > abest:
            abest = cands[j, C_A]
            best = j
    if best < 0 and _rr_regular(rr, ist[I_NRR], fst[F_RRMED]):
        best = _rhythm_candidate(cands, ist, fst, prm)
    if best < 0:
        ist[I_SBDONE] = 1
        return npk
    for j in range(N_C):
        cand[j] = cands[best, j]
    # keep only the candidates after the recovered beat
    nrem = ist[I_NCAND] - best - 1
    for j in range(nrem):
        for c in range(N_C):
            cands[j, c] = cands[best + 1 + j, c]
    ist[I_NCAND] = nrem
    return _accept(cand, True, idx, now, prm, prmf, fst, ist, rr, ring_s, tmpl, hist, pend, out,
                   npk)  # fmt: skip


@njit(cache=True)
def _restart(xv, nabs, zi_bp, z_bp, ring_e, fst, ist, prm):
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
    ist[I_PREVCLS] = -1
    ist[I_OPEN] = 0
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


@njit(cache=True)
def qrs_kernel(
    x, blank, sos_bp, zi_bp, z_bp, ring_s, ring_d, ring_e, cands, rr, tmpl, hist, pend,
    fst, ist, prm, prmf, peaks, dec, sim, cls, feat, bad,
):  # fmt: skip
    """Run the detector over ``x``; state arrays are updated in place.

    Returns the number of detections written to ``peaks`` (absolute R indices), ``dec``
    (absolute index of the sample at which each was confirmed), ``sim`` (correlation of
    each beat with the normal-beat template, NaN when there is none), ``cls``
    (``CLS_NORMAL``, ``CLS_ECTOPIC`` or ``CLS_ARTIFACT``) and ``feat`` (``X_*`` columns).
    ``bad[k]`` receives 0 (usable), 1 (not finite, or a blanked run too long to bridge),
    2 (flat: lead-off or saturation) or 3 (blanked and bridged) for ``x[k]``.
    Samples where ``blank`` is nonzero are not used: runs of up to ``P_BLANKMAX`` of them
    are replaced by the straight line between their neighbours once the next usable
    sample has arrived (so a beat found there is confirmed at that sample).
    """
    npk = 0
    out = (peaks, dec, sim, cls, feat)
    cand = np.zeros(N_C)
    mask = prm[P_MASK]
    w = prm[P_W]
    fs = prmf[PF_FS]
    drop = prmf[PF_DROP]
    for k in range(x.shape[0]):
        xv = x[k]
        nabs = ist[I_N]
        ist[I_N] = nabs + 1
        if blank[k] != 0:
            if ist[I_STARTED] == 1 and ist[I_BAD] == 0 and ist[I_PEND] < prm[P_BLANKMAX]:
                ist[I_PEND] += 1
                bad[k] = 3
            else:
                # nothing to bridge from, or too long to bridge: a gap, like missing data
                ist[I_PEND] = 0
                ist[I_BAD] = 1
                bad[k] = 1
            continue
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
            ist[I_PEND] = 0
            continue
        if ist[I_STARTED] == 0 or ist[I_BAD] == 1:
            ist[I_PEND] = 0
            if ist[I_HASPEND] == 1:
                npk = _release(-1, True, nabs, prmf, fst, ist, hist, pend, out, npk)
            _restart(xv, nabs, zi_bp, z_bp, ring_e, fst, ist, prm)
        # the bridged samples of a blanked run (if any), then this one
        m = ist[I_PEND]
        x0 = fst[F_LASTX]
        ist[I_PEND] = 0
        fst[F_LASTX] = xv
        for jj in range(m + 1):
            if jj < m:
                xi = x0 + (xv - x0) * (jj + 1) / (m + 1)
                idx = nabs - m + jj
            else:
                xi = xv
                idx = nabs
            # --- one usable sample xi at absolute index idx; ``nabs`` is the newest real
            # sample, what a beat found now is confirmed at (the per-sample work stays in
            # this loop: a call per sample with all the state arrays costs 8x the work)
            bp = _sos_step(sos_bp, z_bp, xi)
            d = (bp - fst[F_BPPREV]) * fs
            fst[F_BPPREV] = bp
            ad = abs(d)
            ring_s[idx & mask] = xi
            ring_d[idx & mask] = ad
            fst[F_ADS] += (ad - fst[F_ADS]) * prmf[PF_SMOOTHW]
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

            if ist[I_OPEN] == 1:
                if xi > fst[F_OHI]:
                    fst[F_OHI] = xi
                if xi < fst[F_OLOW]:
                    fst[F_OLOW] = xi
                # a second MWI hump while the slope lasts belongs to the same (wide) QRS
                if mwi > fst[F_OA]:
                    fst[F_OA] = mwi
                    ist[I_OP] = idx
                if ad > fst[F_OMAXD]:
                    fst[F_OMAXD] = ad
                thr = max(prmf[PF_THETA] * fst[F_OMAXD], NOISE_FACTOR * fst[F_DNOISE])
                if fst[F_ADS] >= thr:
                    ist[I_QUIET] = 0
                else:
                    ist[I_QUIET] += 1
                if ad >= thr:
                    v = ad * ad
                    t = idx - ist[I_OLO]
                    fst[F_E0] += v
                    fst[F_E1] += v * t
                    fst[F_E2] += v * t * t
            else:
                # clipped at twice the floor once it has settled (after one time
                # constant), so the QRS slopes before its MWI peak hardly count
                nf = fst[F_DNOISE]
                settled = ist[I_NOISEN] * prmf[PF_NOISEW] >= 1.0
                v = min(ad, 2.0 * nf) if settled else ad
                fst[F_DNOISE] = nf + (v - nf) * prmf[PF_NOISEW]
                if not settled:
                    ist[I_NOISEN] += 1
            # hysteresis peak detector on the MWI
            if ist[I_RISING] == 1:
                if mwi > fst[F_SEGMAX]:
                    fst[F_SEGMAX] = mwi
                    ist[I_SEGMAXIDX] = idx
                elif mwi < drop * fst[F_SEGMAX]:
                    ist[I_RISING] = 0
                    fst[F_SEGMIN] = mwi
                    if idx >= ist[I_BLANK] and ist[I_OPEN] == 0:
                        if ist[I_MODE] == 1 and fst[F_SEGMAX] < 0.5 * fst[F_NPKI]:
                            # a ripple far below the noise level: no search-back stage
                            # could ever take it (THR2 and the rhythm-guided stage need
                            # more), so it only updates the noise level
                            fst[F_NPKI] = 0.125 * fst[F_SEGMAX] + 0.875 * fst[F_NPKI]
                        else:
                            _open_qrs(idx, prm, prmf, fst, ist, ring_s, ring_d)
            else:
                if mwi < fst[F_SEGMIN]:
                    fst[F_SEGMIN] = mwi
                elif mwi > fst[F_SEGMIN] / drop and mwi > 0.0:
                    ist[I_RISING] = 1
                    fst[F_SEGMAX] = mwi
                    ist[I_SEGMAXIDX] = idx

            # Close the open QRS, once its MWI falls, when its dominant wave has come
            # halfway back (a narrow QRS, ~45 ms after R) or its slope has stayed low for
            # 0.6 x the RMS spread of its slope energy (at least P_QUIET; the slope pause
            # at the nadir of a wide ventricular complex, about 0.25 x its RMS spread,
            # does not split it in two). A QRS is closed anyway after P_TIMEOUT.
            if ist[I_OPEN] == 1 and (
                (
                    mwi < drop * fst[F_OA]
                    and (ist[I_QUIET] >= _quiet_needed(fst, prm) or _turned_back(fst, xi))
                )
                or idx - ist[I_OP] >= prm[P_TIMEOUT]
            ):
                npk = _close_qrs(
                    idx, nabs, prm, prmf, fst, ist, cands, rr, ring_s, ring_d, tmpl, hist,
                    pend, out, npk, cand,
                )  # fmt: skip

            if ist[I_MODE] == 0:
                if idx >= ist[I_LEARNEND] and ist[I_OPEN] == 0:
                    npk = _end_learning(
                        idx, nabs, prm, prmf, fst, ist, cands, rr, ring_s, tmpl, hist, pend,
                        out, npk,
                    )  # fmt: skip
                continue
            if (
                ist[I_SBDONE] == 0
                and ist[I_LASTVALID] == 1
                and ist[I_NRR] > 0
                and idx - ist[I_LASTR] > 1.66 * fst[F_RRMED]
            ):
                npk = _search_back(
                    idx, nabs, prm, prmf, fst, ist, cands, rr, ring_s, tmpl, hist, pend, out,
                    npk, cand,
                )  # fmt: skip
            # lost: no beat for too long -> learn again
            lost = prm[P_LOST]
            if ist[I_NRR] > 0 and 3.0 * fst[F_RRMED] > lost:
                lost = np.int64(3.0 * fst[F_RRMED])
            if idx - ist[I_ALIVE] > lost:
                if ist[I_HASPEND] == 1:
                    npk = _release(-1, True, nabs, prmf, fst, ist, hist, pend, out, npk)
                ist[I_MODE] = 0
                ist[I_LEARNEND] = idx + prm[P_LEARN]
                ist[I_NCAND] = 0
                ist[I_LASTVALID] = 0
                ist[I_PREVCLS] = -1
    return npk
