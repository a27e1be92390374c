"""Causal artifact detection on one EEG derivation (amplitude, step, range, flat line).

Why
---
The phase estimator (:mod:`stimloop.dsp.phase`) learns the spectrum of its input: one
200 ms step of a few mV at the target electrode dominates its autocorrelation and the
IAF tracker's spectrum for minutes (issue #15: 69 s to recover after 1 mV, never within
11 min after 5 mV, the IAF pulled by 2.5 Hz), and a railed amplifier looks like a
confident rhythm. The detector marks such samples so that the protocol can replace them
by NaN, which the estimator bridges like a gap, and refuse to stimulate meanwhile.

Criteria (each sample, on the derivation ``x`` in µV)
-----------------------------------------------------
``AMPLITUDE``
    ``|x - b| > thr`` with ``b`` the running level (an exponential average of the clean
    samples, ``level_tau_s``: the DC offset of a DC-coupled amplifier and slow drift are
    not artifacts; the phase estimator's own high-pass removes them) and
    ``thr = min(ceiling_uv, max(floor_uv, k * s))``. ``s`` is a running median of
    ``|x - b|`` (tracked in the log domain with a sign rule, so one sample moves it by a
    factor ``exp(±1 / (scale_tau_s * fs))`` at most, whatever its size: a 200 ms artifact
    raises it by 10 % at most; clipped to ``[floor_uv, ceiling_uv] / k``). For Gaussian
    noise ``k = 10`` puts the threshold at 6.7 SD, for a sinusoid at 7 times its
    amplitude: a subject with large alpha raises the threshold instead of being gated.

    - ``floor_uv`` = 150 µV: the usual absolute limits on *referenced* scalp EEG are
      ±100–200 µV (Luck 2014, ch. 6, about 100 µV outside the EOG; MNE-BIDS-Pipeline's
      example ``reject = {"eeg": 100e-6}``; eegR's ``artrejOptions`` ±200 µV). A Hjorth
      derivation is several times smaller than referenced EEG (EEGMAT C3: at most 45 µV
      in 180 s), so 150 µV there is a generous floor.
    - ``ceiling_uv`` = 500 µV: however large the rhythm, the threshold stays below the
      smallest artifact the issue names (a 1 mV step).
    - ``level_tau_s`` = 1 s, ``scale_tau_s`` = 2 s.

    A level shift that persists (the new DC level after an electrode pop of a
    DC-coupled amplifier) is accepted after ``reacquire_s`` = 2 s: the level jumps to the
    current sample. Not while ``RANGE`` or ``FLAT`` holds: those stay marked.
``STEP``
    ``|x[t] - x[t-1]| > max_step_uv`` per sample period: 50 µV, eegR's maximal gradient
    (50 µV/ms) at 1 kHz, stricter below 1 kHz. A true step is a one-sample jump at any
    rate; the EEG's own change per sample is small (EEGMAT Hjorth C3, 500 Hz: at most
    7.7 µV; a 100 µV alpha wave at 12 Hz sampled at 250 Hz: 30 µV).
``RANGE``
    ``|x| > range_uv`` = 5e4 µV (50 mV): no derivation is ever that large. It catches a
    railed channel from its first sample, including one railed before the stream
    started (then the running level starts at the rail). It lies below the input range
    of DC-coupled amplifiers (an ADS1299 at gain 24: ±187.5 mV) and above usual
    electrode offsets; raise it for a setup with larger offsets.
``FLAT``
    One of the derivation's channels (``channels``) stays within ``flat_uv`` = 0.5 µV
    for ``flat_s`` = 0.1 s: a railed (saturated) or disconnected input, which reads a
    constant (eegR's lowest allowed activity is 0.5 µV; on EEGMAT every EEG channel
    moves by at least 3.6 µV in every 100 ms window, on EEGMMIDB by 12 µV). A railed
    target reads as a constant at any level, and the derivation then carries the
    neighbours' rhythm: no amplitude test can see it, only this one. The run is tracked
    greedily (it restarts when a sample leaves the band of the run so far), which can
    only make a run shorter than a sliding window would.
``HOLD``
    Hang-over: ``hold_s`` = 0.2 s after the last marked sample are marked too (the tail
    of an artifact decays below any threshold before it is gone; eegR and eeguana mark
    ±200 ms around a violation by default).

What the detector cannot do causally: mark samples *before* an onset. Those have already
been output (and, in a session, fed to the phase estimator) when the onset arrives;
marking them later would make the outputs depend on the future and on the chunking.
:class:`~stimloop.loop.phase_locked.PhaseLockedProtocol` gives the "before" margin its
causal meaning instead: at an onset it vetoes a pending pulse and names the pulses
delivered in the ``lookback_s`` before it.

Streaming
---------
A numba kernel runs per sample with explicit state; :func:`detect_artifacts` runs the
same class on a whole array, so chunked and whole outputs are equal bit for bit, and
outputs up to t never depend on samples after t. Non-finite samples (bridged gaps) are
not marked (they are invalid already) and leave the level and scale untouched; the step
test and the flat runs restart after them; they count towards a running hang-over.

References: Luck SJ (2014) An Introduction to the Event-Related Potential Technique,
2nd ed., MIT Press, ch. 6. Defaults of eegR ``artrejOptions`` (maxgrad 50 µV/ms,
amplitude ±200 µV, lowest max−min 0.5 µV, marks ±200 ms) and eeguana ``eeg_artif_*``
(±0.2 s around a violation). MNE-BIDS-Pipeline, ``reject`` setting.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from stimloop.dsp.errors import DSPError

__all__ = [
    "AMPLITUDE",
    "FLAT",
    "HOLD",
    "RANGE",
    "STEP",
    "ArtifactDetector",
    "ArtifactOutput",
    "artifact_kinds",
    "detect_artifacts",
]

AMPLITUDE = 1  #: |x - running level| above the adaptive threshold
STEP = 2  #: sample-to-sample change above ``max_step_uv``
RANGE = 4  #: |x| above ``range_uv``
FLAT = 8  #: a channel of the derivation flat for ``flat_s`` (railed or disconnected)
HOLD = 16  #: within ``hold_s`` after a marked sample

_NAMES = ((AMPLITUDE, "amplitude"), (STEP, "step"), (RANGE, "range"), (FLAT, "flat"))


def artifact_kinds(code: int) -> list[str]:
    """Names of the criteria set in a code (``HOLD`` alone gives an empty list)."""
    return [name for bit, name in _NAMES if int(code) & bit]


class ArtifactOutput(NamedTuple):
    """Per-sample outputs of :meth:`ArtifactDetector.update`.

    Attributes
    ----------
    code : ndarray of uint8
        Bit set of ``AMPLITUDE``, ``STEP``, ``RANGE``, ``FLAT``, ``HOLD``; 0 = clean.
    deviation_uv : ndarray
        ``x - b``, the sample's distance from the running level in µV (NaN where the
        sample is not finite).
    step_uv : ndarray
        ``|x[t] - x[t-1]|`` in µV (NaN after a non-finite sample and at the start).
    threshold_uv : ndarray
        The amplitude threshold in force at each sample in µV.
    """

    code: np.ndarray
    deviation_uv: np.ndarray
    step_uv: np.ndarray
    threshold_uv: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """True where the sample is marked (any criterion or the hang-over)."""
        return self.code != 0


@njit(cache=True)
def _artifact_kernel(x, chans, par, ipar, fstate, istate, ch_lohi, ch_len, o_code, o_dev, o_step,
                     o_thr):  # fmt: skip
    """Per-sample criteria, hang-over, level and scale; state updated in place.

    par = [level_alpha, scale_eta, k, floor, ceiling, max_step, range, flat_uv];
    ipar = [hold_n, reacquire_n, flat_n]; fstate = [level, log_scale, x_prev];
    istate = [level_set, hold_left, amplitude_run]; ch_lohi (k, 2), ch_len (k,).
    """
    alpha = par[0]
    eta = par[1]
    k = par[2]
    lo_log = np.log(par[3] / k)
    hi_log = np.log(par[4] / k)
    hold_n = ipar[0]
    n_ch = chans.shape[1]
    for i in range(x.size):
        v = x[i]
        code = 0
        thr = min(par[4], max(par[3], k * np.exp(fstate[1])))
        if np.isfinite(v):
            for j in range(n_ch):
                c = chans[i, j]
                if not np.isfinite(c):
                    ch_len[j] = 0
                    continue
                lo = min(ch_lohi[j, 0], c)
                hi = max(ch_lohi[j, 1], c)
                if ch_len[j] > 0 and hi - lo <= par[7]:
                    ch_len[j] += 1
                    ch_lohi[j, 0] = lo
                    ch_lohi[j, 1] = hi
                else:
                    ch_len[j] = 1
                    ch_lohi[j, 0] = c
                    ch_lohi[j, 1] = c
                if ch_len[j] >= ipar[2]:
                    code |= 8
            if istate[0] == 0:
                fstate[0] = v
                istate[0] = 1
            dev = v - fstate[0]
            ad = abs(dev)
            if abs(v) > par[6]:
                code |= 4
            if ad > thr:
                code |= 1
                istate[2] += 1
            else:
                istate[2] = 0
            step = abs(v - fstate[2])  # NaN after a gap: no step test
            if step > par[5]:
                code |= 2
            fstate[2] = v
            # Log-domain sign rule: the running median of |x - b|, bounded per sample.
            s = np.exp(fstate[1])
            if ad > s:
                fstate[1] = min(fstate[1] + eta, hi_log)
            elif ad < s:
                fstate[1] = max(fstate[1] - eta, lo_log)
            if code == 0 and istate[1] == 0:
                fstate[0] += alpha * (v - fstate[0])
            elif istate[2] >= ipar[1] and (code & 12) == 0:
                fstate[0] = v  # a level shift that persists is the new level
                istate[2] = 0
            o_dev[i] = dev
            o_step[i] = step
        else:
            fstate[2] = np.nan
            for j in range(n_ch):
                ch_len[j] = 0
            o_dev[i] = np.nan
            o_step[i] = np.nan
        if code != 0:
            istate[1] = hold_n
        elif istate[1] > 0:
            code = 16
            istate[1] -= 1
        o_code[i] = code
        o_thr[i] = thr


class ArtifactDetector:
    """Streaming, causal artifact detector for one EEG derivation (module docstring).

    Parameters
    ----------
    fs : float
        Sampling rate in Hz (> 0).
    n_channels : int
        Number of raw channels passed to :meth:`update` for the flat-line test (0: none).
    floor_uv, ceiling_uv : float
        Bounds of the adaptive amplitude threshold in µV (0 < floor <= ceiling).
    k : float
        Threshold in units of the running median of ``|x - level|`` (> 0).
    max_step_uv : float
        Largest allowed change between consecutive samples in µV (> 0).
    range_uv : float
        Largest allowed ``|x|`` in µV (> ceiling_uv).
    flat_uv, flat_s : float
        A channel that stays within ``flat_uv`` µV for ``flat_s`` s is flat.
    hold_s : float
        Hang-over after the last marked sample in s (>= 0).
    level_tau_s, scale_tau_s : float
        Time constants of the running level and of the scale in s (> 0).
    reacquire_s : float
        A deviation that has lasted this long (s) is taken as the new level.
    """

    def __init__(
        self,
        fs: float,
        n_channels: int = 0,
        *,
        floor_uv: float = 150.0,
        ceiling_uv: float = 500.0,
        k: float = 10.0,
        max_step_uv: float = 50.0,
        range_uv: float = 5e4,
        flat_uv: float = 0.5,
        flat_s: float = 0.1,
        hold_s: float = 0.2,
        level_tau_s: float = 1.0,
        scale_tau_s: float = 2.0,
        reacquire_s: float = 2.0,
    ) -> None:
        try:
            fs = float(fs)
        except (TypeError, ValueError):
            raise DSPError(f"ArtifactDetector: fs must be a number in Hz, got {fs!r}") from None
        if not (np.isfinite(fs) and fs > 0):
            raise DSPError(f"ArtifactDetector: fs must be a finite rate > 0 Hz, got {fs}")
        positive = {
            "floor_uv": floor_uv, "ceiling_uv": ceiling_uv, "k": k, "max_step_uv": max_step_uv,
            "range_uv": range_uv, "flat_uv": flat_uv, "flat_s": flat_s,
            "level_tau_s": level_tau_s, "scale_tau_s": scale_tau_s, "reacquire_s": reacquire_s,
        }  # fmt: skip
        for name, val in positive.items():
            if not (np.isfinite(val) and val > 0):
                raise DSPError(f"ArtifactDetector: {name} must be finite and > 0, got {val}")
        if not (np.isfinite(hold_s) and hold_s >= 0):
            raise DSPError(f"ArtifactDetector: hold_s must be finite and >= 0 s, got {hold_s}")
        if ceiling_uv < floor_uv:
            raise DSPError(
                f"ArtifactDetector: ceiling_uv ({ceiling_uv}) must be >= floor_uv ({floor_uv})"
            )
        if range_uv <= ceiling_uv:
            raise DSPError(
                f"ArtifactDetector: range_uv ({range_uv}) must be > ceiling_uv ({ceiling_uv})"
            )
        if int(n_channels) != n_channels or n_channels < 0:
            raise DSPError(
                f"ArtifactDetector: n_channels must be an integer >= 0, got {n_channels}"
            )
        self.fs = fs
        self.n_channels = int(n_channels)
        self.floor_uv = float(floor_uv)
        self.ceiling_uv = float(ceiling_uv)
        self.max_step_uv = float(max_step_uv)
        self.range_uv = float(range_uv)
        self.hold_n = round(hold_s * fs)
        self._par = np.array([
            1.0 - np.exp(-1.0 / (level_tau_s * fs)), 1.0 / (scale_tau_s * fs), float(k),
            self.floor_uv, self.ceiling_uv, self.max_step_uv, self.range_uv, float(flat_uv),
        ])  # fmt: skip
        self._ipar = np.array(
            [self.hold_n, max(1, round(reacquire_s * fs)), max(2, round(flat_s * fs))], np.int64
        )
        self.reset()
        self.warmup()

    def reset(self) -> None:
        """Forget everything: back to the state right after construction."""
        self._fstate = np.array([0.0, np.log(self.floor_uv / self._par[2]), np.nan])
        self._istate = np.zeros(3, np.int64)
        self._ch_lohi = np.zeros((self.n_channels, 2))
        self._ch_len = np.zeros(self.n_channels, np.int64)

    def warmup(self) -> None:
        """Compile the kernel now (cached on disk), so :meth:`update` never compiles."""
        e = np.zeros(0)
        _artifact_kernel(
            e, np.zeros((0, self.n_channels)), self._par, self._ipar, self._fstate.copy(),
            self._istate.copy(), self._ch_lohi.copy(), self._ch_len.copy(), np.zeros(0, np.uint8),
            e, e, e,
        )  # fmt: skip

    @property
    def level_uv(self) -> float:
        """The running level of the derivation in µV (0 before the first sample)."""
        return float(self._fstate[0])

    @property
    def threshold_uv(self) -> float:
        """The amplitude threshold the next sample is tested against, in µV."""
        return float(
            min(self.ceiling_uv, max(self.floor_uv, self._par[2] * np.exp(self._fstate[1])))
        )

    def update(self, x: np.ndarray, channels: np.ndarray | None = None) -> ArtifactOutput:
        """Test a chunk of the derivation (and of its raw channels); per-sample outputs.

        Parameters
        ----------
        x : ndarray, shape (n,) or (n, 1)
            The derivation in µV. NaN marks missing samples (bridged gaps).
        channels : ndarray, shape (n, n_channels), optional
            The raw channels the derivation is made of, in µV, for the flat-line test.
            Required when the detector was built with ``n_channels > 0``.

        Returns
        -------
        ArtifactOutput
            ``code``, ``deviation_uv``, ``step_uv`` and ``threshold_uv`` per sample.
        """
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise DSPError(f"ArtifactDetector.update: x must have shape (n,), got {arr.shape}")
        n = arr.size
        if self.n_channels:
            if channels is None:
                raise DSPError(
                    f"ArtifactDetector.update: channels of shape ({n}, {self.n_channels}) "
                    "are required for the flat-line test, got None"
                )
            ch = np.asarray(channels, dtype=np.float64)
            if ch.shape != (n, self.n_channels):
                raise DSPError(
                    f"ArtifactDetector.update: channels must have shape ({n}, "
                    f"{self.n_channels}), got {ch.shape}"
                )
        else:
            if channels is not None and np.asarray(channels).size:
                raise DSPError(
                    "ArtifactDetector.update: this detector has n_channels=0; pass no channels"
                )
            ch = np.zeros((n, 0))
        code = np.empty(n, np.uint8)
        dev = np.empty(n)
        step = np.empty(n)
        thr = np.empty(n)
        _artifact_kernel(
            np.ascontiguousarray(arr), np.ascontiguousarray(ch), self._par, self._ipar,
            self._fstate, self._istate, self._ch_lohi, self._ch_len, code, dev, step, thr,
        )  # fmt: skip
        return ArtifactOutput(code, dev, step, thr)


def detect_artifacts(
    x: np.ndarray, fs: float, channels: np.ndarray | None = None, **kwargs
) -> ArtifactOutput:
    """Artifacts of a whole array: :class:`ArtifactDetector` run in one chunk.

    Parameters
    ----------
    x : ndarray, shape (n,)
        The derivation in µV.
    fs : float
        Sampling rate in Hz.
    channels : ndarray, shape (n, k), optional
        Its raw channels in µV, for the flat-line test.
    **kwargs
        Further :class:`ArtifactDetector` parameters.

    Returns
    -------
    ArtifactOutput
    """
    k = 0 if channels is None else np.asarray(channels).shape[1]
    return ArtifactDetector(fs, k, **kwargs).update(x, channels)
