"""numba kernel of the causal EDA pipeline: artifact flags, SCL/phasic split, SCR scoring.

One kernel serves both the offline function (:func:`stimloop.dsp.eda.detect_scr`) and the
streaming class (:class:`stimloop.dsp.eda.SCRDetector`). It processes samples one at a
time and keeps *all* of its memory in explicit state that is passed in and updated in
place (the ``scipy.signal.sosfilt(..., zi=zi)`` idiom): a float64 state vector plus two
ring buffers (smoothed signal and slope, indexed by absolute sample index). Processing a
recording in one call or in chunks of any size therefore gives bit-identical outputs by
construction.

Method (each step causal, i.e. it uses samples up to now only):

1. Validity: NaN, negative or above ``max_us`` conductance is invalid; below
   ``off_us`` (0.05 µS, the lower bound of Kleckner et al. 2018) is "electrode off".
   Invalid samples give NaN outputs and are skipped; the filters restart on the first
   valid sample, followed by a settling period in which no SCR may start.
2. Motion artifacts: a slope faster than ``art_slope`` (10 µS/s, Kleckner et al. 2018) in
   a 5 Hz low-passed copy flags the sample and a padding period after it; an SCR whose
   rise touches flagged samples is rejected, not counted.
3. Smoothing: 2nd-order Butterworth low-pass (1 Hz by default) in direct form II
   transposed, initialised at steady state. Sensor noise is estimated from the raw
   signal's second difference (10 s EMA); the rise thresholds below are kept at least
   ``noise_k`` noise standard deviations (of the smoothed signal and its slope) high.
4. Tonic level (SCL): a lower envelope. It follows the smoothed signal down at once and
   relaxes up with time constant ``tonic_tau`` only while no SCR is rising, so SCRs stay
   out of it. Phasic = smoothed - SCL (≥ 0). The SCL slope (EMA) is the local drift.
5. SCR scoring: trough-to-peak (Boucsein et al. 2012; the "TTP" method of Ledalab,
   Benedek & Kaernbach 2010). A rise starts when the slope exceeds ``slope_on``, both
   absolutely and relative to the tonic drift, and the signal has risen ``rise_min_us``.
   Its peak (maximum) is confirmed when the signal has fallen ``fall_us`` below it, has
   not exceeded it for ``plateau`` s, or its slope has been back at the pre-rise drift for
   ``plateau`` s. The onset is then found by looking back from the steepest point of the
   rise to the last sample whose slope was at most ``onset_frac`` of the way from the
   pre-rise slope to the maximum; the onset level is the trough (lowest value from just
   before the onset to the peak); amplitude = peak - onset level, optionally measured
   from the extrapolated recovery of a preceding SCR (see :func:`_confirm`).
   Accepted if amplitude ≥ ``min_amp`` and rise time within [``rise_lo``, ``rise_hi``]
   (0.5-5 s; Boucsein et al. 2012). Half-recovery: the time from the peak until the
   signal falls to peak - amplitude/2, reported when seen before the next SCR.
6. Overlap: the look-back never passes the previous peak, so an SCR on the recovery limb
   of another gets its own onset; a slope dip-and-rebound within one rise (a shoulder)
   splits it into two SCRs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ---- parameter vector layout -------------------------------------------------------
P_B0, P_B1, P_B2, P_A1, P_A2 = 0, 1, 2, 3, 4  # smoothing low-pass biquad
P_FB0, P_FB1, P_FB2, P_FA1, P_FA2 = 5, 6, 7, 8, 9  # fast low-pass biquad (artifacts)
P_FS = 10
P_MIN_AMP = 11  # µS
P_RISE_LO = 12  # samples
P_RISE_HI = 13  # samples
P_SLOPE_ON = 14  # µS/s
P_SLOPE_FLOOR = 15  # µS/s
P_RISE_MIN_US = 16  # µS
P_FALL_US = 17  # µS
P_PLATEAU = 18  # samples
P_OFF_US = 19  # µS
P_MAX_US = 20  # µS
P_ART_SLOPE = 21  # µS/s
P_ART_PAD = 22  # samples
P_SETTLE = 23  # samples
P_TONIC_A = 24  # EMA coefficient per sample
P_DRIFT_A = 25  # EMA coefficient per sample
P_SLOPE_A = 26  # EMA coefficient per sample
P_DELAY = 27  # samples subtracted from reported peak indices (filter delay)
P_DELAY_ON = 28  # samples subtracted from reported onset indices
P_ONSET_FRAC = 29  # onset = where the slope falls below this fraction of the rise's max slope
P_LOOKBACK = 30  # samples searched before the peak for the onset
P_TROUGH_WIN = 31  # samples before the onset searched for the onset level (trough)
P_SHOULDER = 32  # relative slope dip and rebound that split two SCRs within one rise
P_PROJECT = 33  # 1: extrapolate a decaying baseline (recovery limb) to the peak
P_PRE_LO = 34  # samples before the onset where the pre-onset slope window starts
P_PRE_HI = 35  # samples before the onset where it ends
P_PRE_WIN_LO = 36  # samples before the steepest point where the pre-rise slope window starts
P_PRE_WIN_HI = 37  # samples before the steepest point where it ends
P_KNEE = 38  # slope rebound, as a fraction of the preceding decay slope, that starts a rise
P_KNEE_W1 = 39  # samples back to the first reference slope of the knee test
P_KNEE_W2 = 40  # samples back to the second
P_NOISE_K = 41  # thresholds are at least this many noise standard deviations (0: off)
P_NOISE_A = 42  # EMA coefficient of the noise estimate per sample
P_GAIN_Y = 43  # noise gain of the smoother (std of output per unit white input)
P_GAIN_S = 44  # noise gain of the slope, per s
N_PARAMS = 45

# ---- state vector layout -----------------------------------------------------------
S_N = 0  # absolute index of the next sample
S_STARTED = 1  # 1 once a valid sample has been seen
S_VALID_PREV = 2  # 1 if the previous sample was valid
S_Z1, S_Z2 = 3, 4  # smoothing biquad state
S_FZ1, S_FZ2 = 5, 6  # fast biquad state
S_Y_PREV = 7
S_FY_PREV = 8
S_SLOPE = 9  # EMA of the smoothed slope, µS/s
S_SCL = 10
S_SCL_PREV = 11
S_DRIFT = 12  # EMA of the SCL slope, µS/s
S_MODE = 13  # 0 = waiting for a rise, 1 = rising
S_BASE_IDX = 14  # candidate onset (last low-slope sample)
S_BASE_VAL = 15
S_PEAK_IDX = 16
S_PEAK_VAL = 17
S_ONSET_IDX = 18  # sample at which the current rise was detected
S_ONSET_VAL = 19
S_ART_UNTIL = 20  # samples < this are flagged (motion or settling)
S_ART_KIND = 21  # flag bit of the current artifact period
S_LAST_ART = 22  # index of the last flagged sample
S_HR_ACTIVE = 23  # 1 while waiting for the half-recovery of the last SCR
S_HR_ID = 24
S_HR_PEAK_IDX = 25
S_HR_LEVEL = 26
S_N_SCR = 27  # SCRs emitted so far (their ids)
S_N_REJ_ART = 28  # rises rejected because of artifacts
S_N_REJ_SHAPE = 29  # rises rejected by amplitude / rise-time rules
S_WIN_START = 30  # no onset may precede this index (last peak, restart or artifact)
S_NE_TMP = 31  # scratch: event count returned by _confirm
S_SMAX = 32  # largest slope of the current rise, µS/s
S_SMIN = 33  # smallest slope since that maximum (a shoulder), µS/s
S_SMIN_IDX = 34
S_RISE_DRIFT = 35  # tonic drift when the rise started, µS/s
S_FLAT_N = 36  # samples in a row whose slope is back at the pre-rise drift
S_KNEE = 37  # 1 while a rise started by a knee (see _knee) has not turned upward yet
S_KNEE_REF = 38  # decay slope before that knee, µS/s
S_KMAX_LO = 39  # the steepest point of the rise is searched from this index on
S_SMAX_IDX = 40
S_X1 = 41  # previous raw sample
S_X2 = 42  # raw sample before that
S_NOISE = 43  # EMA of |second difference| of the raw signal, µS
S_SON = 44  # effective slope_on, µS/s (raised above the noise)
S_SFLOOR = 45  # effective slope_floor, µS/s
S_RISEMIN = 46  # effective rise_min_us, µS
S_FALL = 47  # effective fall_us, µS
N_STATE = 48

# ---- per-sample flag bits ----------------------------------------------------------
FLAG_NAN = 1
FLAG_RANGE = 2
FLAG_OFF = 4
FLAG_MOTION = 8
FLAG_SETTLING = 16
FLAG_INVALID = FLAG_NAN | FLAG_RANGE | FLAG_OFF

# ---- event record layout (rows of the event buffer) --------------------------------
E_KIND = 0  # 0 = SCR confirmed, 1 = half-recovery seen
E_ID = 1
E_ONSET = 2
E_PEAK = 3
E_AMP = 4
E_RISE = 5
E_HALF = 6
E_ONSET_VAL = 7
E_PEAK_VAL = 8
E_CONFIRM = 9
N_EVENT_COLS = 10
KIND_SCR = 0.0
KIND_HALF = 1.0


def new_state() -> np.ndarray:
    """A fresh kernel state (nothing seen yet)."""
    st = np.zeros(N_STATE, dtype=np.float64)
    st[S_ART_UNTIL] = -1.0
    st[S_LAST_ART] = -1.0e18
    return st


def history_size(params: np.ndarray) -> int:
    """Length of the ring buffers of smoothed signal and slope kept in the state."""
    return int(params[P_LOOKBACK] + params[P_PLATEAU] + params[P_TROUGH_WIN] + params[P_PRE_LO]) + 8


def event_capacity(n: int, params: np.ndarray) -> int:
    """Upper bound on event rows a chunk of ``n`` samples can produce."""
    # Each SCR needs at least rise_lo samples of rise and emits at most two rows;
    # +4 covers rows completed at the chunk's first samples from earlier state.
    return 2 * (n // max(1, int(params[P_RISE_LO])) + 1) + 4


@njit(cache=True)
def _restart(st, p, x, n, settle):
    """Restart filters and scoring at value ``x`` (first valid sample after invalid ones)."""
    # Steady-state DF-II-T initial conditions for a unity-DC-gain biquad: z1, z2 such that
    # a constant input x gives output x at once (no start-up transient to mistake for an SCR).
    st[S_Z1] = x * (1.0 - p[P_B0])
    st[S_Z2] = x * (p[P_B2] - p[P_A2])
    st[S_FZ1] = x * (1.0 - p[P_FB0])
    st[S_FZ2] = x * (p[P_FB2] - p[P_FA2])
    st[S_Y_PREV] = x
    st[S_FY_PREV] = x
    st[S_X1] = x
    st[S_X2] = x
    st[S_SLOPE] = 0.0
    st[S_SCL] = x
    st[S_SCL_PREV] = x
    st[S_DRIFT] = 0.0
    st[S_MODE] = 0.0
    st[S_BASE_IDX] = n
    st[S_BASE_VAL] = x
    st[S_HR_ACTIVE] = 0.0
    st[S_WIN_START] = n
    if settle:
        st[S_ART_UNTIL] = n + p[P_SETTLE]
        st[S_ART_KIND] = FLAG_SETTLING


@njit(cache=True)
def _confirm(st, p, hy, hs, ev, ne, n, y):
    """Score the rise whose peak has just been confirmed at sample ``n``.

    The onset is found by looking back from the steepest point of the rise: it is the
    last sample whose slope was at most ``onset_frac`` of the way from the pre-rise slope
    (lowest slope 0.4-1.2 s before the steepest point) to the maximum slope; on a decaying
    baseline this is the knee where the new SCR starts, before the composite trough. The
    onset level is the lowest smoothed value from just before the onset to the peak (the
    trough of trough-to-peak scoring, Boucsein et al. 2012). Looking back only as far as
    the previous peak keeps overlapping SCRs separate. Results are written to the event
    buffer ``ev`` and the new row count to ``st[S_NE_TMP]``.
    """
    fs = p[P_FS]
    h = hy.shape[0]
    peak = st[S_PEAK_IDX]
    lo = max(st[S_WIN_START], peak - p[P_LOOKBACK], n - h + 1.0 + p[P_TROUGH_WIN] + p[P_PRE_LO])
    # Steepest point of the rise (after the knee, for a rise started by one).
    lo_k = max(lo, st[S_KMAX_LO])
    k = peak
    kmax = peak
    smax = -1.0e300
    while k >= lo_k:
        s = hs[int(k) % h]
        if s > smax:
            smax = s
            kmax = k
        k -= 1.0
    # Slope before the rise: the lowest slope 0.4-1.2 s before the steepest point (the
    # minimum is robust to the window reaching into the rise); with the tonic drift it
    # sets the level from which the rise is measured.
    d0 = max(st[S_DRIFT], 0.0)
    k = max(kmax - p[P_PRE_WIN_LO], lo)
    pre = np.inf
    while k <= kmax - p[P_PRE_WIN_HI]:
        s = hs[int(k) % h]
        if s < pre:
            pre = s
        k += 1.0
    if pre < np.inf:
        d0 = pre
    thr = d0 + p[P_ONSET_FRAC] * (smax - d0)
    k = kmax
    while k > lo and hs[int(k - 1.0) % h] > thr:
        k -= 1.0
    onset = k
    # Onset level: the lowest point from just before the onset up to the peak (the
    # trough of trough-to-peak scoring; on a decaying baseline it follows the onset).
    level = hy[int(onset) % h]
    k = onset - 1.0
    while k >= onset - p[P_TROUGH_WIN] and k >= st[S_WIN_START]:
        v = hy[int(k) % h]
        if v < level:
            level = v
        k -= 1.0
    y_on = level
    k = onset + 1.0
    while k <= peak:
        v = hy[int(k) % h]
        if v < level:
            level = v
        k += 1.0
    rise_n = peak - onset
    # An SCR on the recovery limb of an earlier one: the baseline keeps decaying toward
    # the SCL during the rise. Extrapolate it as an exponential whose time constant
    # follows from the pre-onset slope and the residual above the SCL, tau = r0 / -slope
    # (amplitude measured from the extrapolated recovery, Boucsein 2012).
    base_at_peak = level
    if p[P_PROJECT] == 1.0:
        k0 = max(onset - p[P_PRE_LO], st[S_WIN_START])
        k1 = onset - p[P_PRE_HI]
        if k1 >= k0:
            acc = 0.0
            cnt = 0.0
            k = k0
            while k <= k1:
                acc += hs[int(k) % h]
                cnt += 1.0
                k += 1.0
            s_pre = acc / cnt - min(st[S_DRIFT], 0.0)
            r0 = y_on - st[S_SCL]
            if s_pre < 0.0 and r0 > 0.0:
                tau = r0 / -s_pre
                proj = y_on - r0 * (1.0 - np.exp(-rise_n / fs / tau))
                if proj < base_at_peak:
                    base_at_peak = proj
    amp = st[S_PEAK_VAL] - base_at_peak
    if st[S_LAST_ART] >= onset - p[P_TROUGH_WIN]:
        st[S_N_REJ_ART] += 1.0
    elif amp >= p[P_MIN_AMP] and p[P_RISE_LO] <= rise_n <= p[P_RISE_HI]:
        ev[ne, E_KIND] = KIND_SCR
        ev[ne, E_ID] = st[S_N_SCR]
        ev[ne, E_ONSET] = onset - p[P_DELAY_ON]
        ev[ne, E_PEAK] = peak - p[P_DELAY]
        ev[ne, E_AMP] = amp
        ev[ne, E_RISE] = rise_n / fs
        ev[ne, E_HALF] = np.nan
        ev[ne, E_ONSET_VAL] = level
        ev[ne, E_PEAK_VAL] = st[S_PEAK_VAL]
        ev[ne, E_CONFIRM] = n
        ne += 1
        st[S_HR_ACTIVE] = 1.0
        st[S_HR_ID] = st[S_N_SCR]
        st[S_HR_PEAK_IDX] = peak
        st[S_HR_LEVEL] = st[S_PEAK_VAL] - 0.5 * amp
        st[S_N_SCR] += 1.0
        if y <= st[S_HR_LEVEL]:
            ev[ne, E_KIND] = KIND_HALF
            ev[ne, E_ID] = st[S_HR_ID]
            ev[ne, E_HALF] = (n - peak) / fs
            ev[ne, E_CONFIRM] = n
            ne += 1
            st[S_HR_ACTIVE] = 0.0
    else:
        st[S_N_REJ_SHAPE] += 1.0
    st[S_MODE] = 0.0
    st[S_BASE_IDX] = n
    st[S_BASE_VAL] = y
    st[S_WIN_START] = peak
    st[S_NE_TMP] = ne


@njit(cache=True)
def _knee(hs, p, st, n, slope):
    """A new SCR on a steep recovery limb: the slope rebounds faster than a recovery can.

    An exponential recovery's slope rises by about a quarter of itself per second (time
    constant ~3 s); an SCR adds its own rise within a fraction of a second. A rebound by
    ``knee`` times the decay slope of 0.5-1 s earlier starts a rise, even before the signal
    itself turns upward (an SCR hidden in the recovery of a larger one).
    """
    h = hs.shape[0]
    if n - p[P_KNEE_W2] < st[S_WIN_START]:
        return False
    ref = min(hs[int(n - p[P_KNEE_W1]) % h], hs[int(n - p[P_KNEE_W2]) % h])
    return ref < -st[S_SON] and slope - ref >= max(st[S_SON], -p[P_KNEE] * ref)


@njit(cache=True)
def eda_kernel(x, p, st, hy, hs, y_out, scl_out, phasic_out, flag_out, ev):
    """Run the EDA pipeline over one chunk, updating ``st`` in place.

    Parameters
    ----------
    x : float64[:]
        Skin conductance in µS.
    p : float64[:]
        Parameters (layout ``P_*``).
    st : float64[:]
        State (layout ``S_*``), updated in place.
    hy, hs : float64[:]
        Ring buffers (length :func:`history_size`) of the smoothed signal and its slope,
        indexed by absolute sample index modulo their length; part of the state.
    y_out, scl_out, phasic_out : float64[:]
        Per-sample smoothed conductance, SCL and phasic component in µS (NaN if invalid).
    flag_out : uint8[:]
        Per-sample flag bits (``FLAG_*``).
    ev : float64[:, N_EVENT_COLS]
        Event buffer; rows ``[0, n_events)`` are filled.

    Returns
    -------
    int
        Number of event rows written.
    """
    fs = p[P_FS]
    ne = 0
    n = st[S_N]
    for i in range(x.shape[0]):
        xi = x[i]
        flag = 0
        if np.isnan(xi):
            flag = FLAG_NAN
        elif xi < 0.0 or xi > p[P_MAX_US]:
            flag = FLAG_RANGE
        elif xi < p[P_OFF_US]:
            flag = FLAG_OFF
        if flag != 0:
            # Invalid: no output, and a rise in progress cannot be trusted.
            if st[S_MODE] == 1.0:
                st[S_N_REJ_ART] += 1.0
            st[S_MODE] = 0.0
            st[S_HR_ACTIVE] = 0.0
            st[S_VALID_PREV] = 0.0
            st[S_LAST_ART] = n
            y_out[i] = np.nan
            scl_out[i] = np.nan
            phasic_out[i] = np.nan
            flag_out[i] = flag
            n += 1.0
            continue
        if st[S_VALID_PREV] == 0.0:
            _restart(st, p, xi, n, st[S_STARTED] == 1.0)
            st[S_STARTED] = 1.0
            st[S_VALID_PREV] = 1.0
        # Smoothing biquad (DF-II transposed).
        y = p[P_B0] * xi + st[S_Z1]
        st[S_Z1] = p[P_B1] * xi - p[P_A1] * y + st[S_Z2]
        st[S_Z2] = p[P_B2] * xi - p[P_A2] * y
        fy = p[P_FB0] * xi + st[S_FZ1]
        st[S_FZ1] = p[P_FB1] * xi - p[P_FA1] * fy + st[S_FZ2]
        st[S_FZ2] = p[P_FB2] * xi - p[P_FA2] * fy
        fast_slope = (fy - st[S_FY_PREV]) * fs
        st[S_FY_PREV] = fy
        raw_slope = (y - st[S_Y_PREV]) * fs
        st[S_Y_PREV] = y
        # Sensor noise: the second difference of the raw signal is 6 sigma^2 for white
        # noise and nearly free of SCRs (which are slow). Its mean absolute value, clipped
        # at 4x the running estimate so that artifacts do not inflate it, gives sigma;
        # the rise thresholds are kept at least noise_k noise-standard-deviations of the
        # smoothed signal and of its slope above zero.
        d2 = abs(xi - 2.0 * st[S_X1] + st[S_X2])
        st[S_X2] = st[S_X1]
        st[S_X1] = xi
        if st[S_NOISE] > 0.0 and d2 > 4.0 * st[S_NOISE]:
            d2 = 4.0 * st[S_NOISE]
        st[S_NOISE] += p[P_NOISE_A] * (d2 - st[S_NOISE])
        sigma = st[S_NOISE] * 1.2533 / 2.4495
        kn = p[P_NOISE_K]
        st[S_SON] = max(p[P_SLOPE_ON], kn * p[P_GAIN_S] * sigma)
        st[S_SFLOOR] = max(p[P_SLOPE_FLOOR], 0.4 * kn * p[P_GAIN_S] * sigma)
        st[S_RISEMIN] = max(p[P_RISE_MIN_US], kn * p[P_GAIN_Y] * sigma)
        st[S_FALL] = max(p[P_FALL_US], kn * p[P_GAIN_Y] * sigma)
        st[S_SLOPE] += p[P_SLOPE_A] * (raw_slope - st[S_SLOPE])
        slope = st[S_SLOPE]
        # Motion artifact: too fast for skin conductance.
        if abs(fast_slope) > p[P_ART_SLOPE]:
            st[S_ART_UNTIL] = n + p[P_ART_PAD]
            st[S_ART_KIND] = FLAG_MOTION
        if n < st[S_ART_UNTIL]:
            flag = int(st[S_ART_KIND])
            st[S_LAST_ART] = n
        # Tonic level: lower envelope that relaxes upward only while no SCR is rising.
        scl = st[S_SCL]
        if y <= scl:
            scl = y
        elif st[S_MODE] == 0.0 and flag == 0:
            scl += p[P_TONIC_A] * (y - scl)
        st[S_DRIFT] += p[P_DRIFT_A] * ((scl - st[S_SCL_PREV]) * fs - st[S_DRIFT])
        st[S_SCL_PREV] = scl
        st[S_SCL] = scl
        rel = slope - st[S_DRIFT]
        h = hy.shape[0]
        hy[int(n) % h] = y
        hs[int(n) % h] = slope
        y_out[i] = y
        scl_out[i] = scl
        phasic_out[i] = y - scl
        flag_out[i] = flag
        # Half-recovery of the last SCR.
        if st[S_HR_ACTIVE] == 1.0 and y <= st[S_HR_LEVEL]:
            ev[ne, E_KIND] = KIND_HALF
            ev[ne, E_ID] = st[S_HR_ID]
            ev[ne, E_HALF] = (n - st[S_HR_PEAK_IDX]) / fs
            ev[ne, E_CONFIRM] = n
            ne += 1
            st[S_HR_ACTIVE] = 0.0
        if flag != 0:
            # Flagged: no SCR may start or continue through it.
            if st[S_MODE] == 1.0:
                st[S_N_REJ_ART] += 1.0
            st[S_MODE] = 0.0
            st[S_BASE_IDX] = n
            st[S_BASE_VAL] = y
            st[S_WIN_START] = n + 1.0
            n += 1.0
            continue
        if st[S_MODE] == 0.0:
            # A sample is an onset candidate when the signal is not rising, either in
            # absolute terms or relative to the tonic drift (whichever is lower), so a
            # lagging drift estimate can never hold the onset back before a flat stretch.
            knee = p[P_KNEE] > 0.0 and _knee(hs, p, st, n, slope)
            if min(rel, slope) <= st[S_SFLOOR] and not knee:
                st[S_BASE_IDX] = n
                st[S_BASE_VAL] = y
            elif knee or (min(rel, slope) >= st[S_SON] and y - st[S_BASE_VAL] >= st[S_RISEMIN]):
                st[S_MODE] = 1.0
                st[S_ONSET_IDX] = n
                st[S_ONSET_VAL] = y
                st[S_PEAK_IDX] = n
                st[S_PEAK_VAL] = y
                st[S_SMAX] = slope
                st[S_SMAX_IDX] = n
                st[S_SMIN] = np.inf
                st[S_KNEE] = 1.0 if knee else 0.0
                if knee:
                    h = hs.shape[0]
                    st[S_KNEE_REF] = min(
                        hs[int(n - p[P_KNEE_W1]) % h], hs[int(n - p[P_KNEE_W2]) % h]
                    )
                    st[S_KMAX_LO] = n - p[P_KNEE_W1]
                else:
                    st[S_KMAX_LO] = st[S_WIN_START]
                st[S_RISE_DRIFT] = max(st[S_DRIFT], 0.0)
                st[S_FLAT_N] = 0.0
        elif st[S_KNEE] == 1.0 and slope <= 0.0:
            # A rise started by a knee on a recovery limb, not (yet) turned upward: its
            # "peak" is the flattest point of the composite signal (highest slope); it is
            # confirmed when the slope falls back clearly, or abandoned after rise_hi.
            if slope > st[S_SMAX]:
                st[S_SMAX] = slope
                st[S_SMAX_IDX] = n
            if st[S_SMAX] - slope >= max(st[S_SON], 0.25 * (st[S_SMAX] - st[S_KNEE_REF])):
                k = st[S_SMAX_IDX]
                st[S_PEAK_IDX] = k
                st[S_PEAK_VAL] = hy[int(k) % hy.shape[0]]
                _confirm(st, p, hy, hs, ev, ne, n, y)
                ne = int(st[S_NE_TMP])
            elif n - st[S_ONSET_IDX] > p[P_RISE_HI]:
                st[S_N_REJ_SHAPE] += 1.0
                st[S_MODE] = 0.0
                st[S_BASE_IDX] = n
                st[S_BASE_VAL] = y
        else:
            if st[S_KNEE] == 1.0:
                # The knee turned into a visible rise: score it as usual from here on,
                # from the highest value since the knee.
                st[S_KNEE] = 0.0
                st[S_SMIN] = np.inf
                st[S_FLAT_N] = 0.0
            # A second SCR starting while the first still rises (or before it has
            # visibly fallen) shows as a shoulder: the slope dips and rebounds. Split
            # there: the first SCR peaks at the dip (or its maximum before it), the second
            # starts from it.
            smax = st[S_SMAX]
            smin = st[S_SMIN]
            if (
                smin < np.inf
                and smax - smin >= p[P_SHOULDER] * smax
                and slope - smin >= max(st[S_SON], p[P_SHOULDER] * smax)
            ):
                k = st[S_SMIN_IDX]
                if st[S_PEAK_IDX] > k:
                    st[S_PEAK_IDX] = k
                    st[S_PEAK_VAL] = hy[int(k) % hy.shape[0]]
                _confirm(st, p, hy, hs, ev, ne, n, y)
                ne = int(st[S_NE_TMP])
                st[S_HR_ACTIVE] = 0.0
                st[S_MODE] = 1.0
                st[S_ONSET_IDX] = n
                st[S_PEAK_IDX] = n
                st[S_PEAK_VAL] = y
                st[S_SMAX] = slope
                st[S_SMIN] = np.inf
                st[S_FLAT_N] = 0.0
            elif slope >= smax:
                st[S_SMAX] = slope
                st[S_SMAX_IDX] = n
                st[S_SMIN] = np.inf
            elif slope < smin:
                st[S_SMIN] = slope
                st[S_SMIN_IDX] = n
            # On a rising tonic level the signal may never fall after an SCR: the peak is
            # also confirmed once the slope has been back at the pre-rise drift for a
            # plateau period.
            if slope - st[S_RISE_DRIFT] <= st[S_SFLOOR]:
                st[S_FLAT_N] += 1.0
            else:
                st[S_FLAT_N] = 0.0
            if y > st[S_PEAK_VAL]:
                st[S_PEAK_IDX] = n
                st[S_PEAK_VAL] = y
            if (
                st[S_PEAK_VAL] - y >= st[S_FALL]
                or n - st[S_PEAK_IDX] >= p[P_PLATEAU]
                or st[S_FLAT_N] >= p[P_PLATEAU]
            ):
                _confirm(st, p, hy, hs, ev, ne, n, y)
                ne = int(st[S_NE_TMP])
        n += 1.0
    st[S_N] = n
    return ne
