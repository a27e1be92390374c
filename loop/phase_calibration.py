"""Calibration of the phase band at the start of a phase-locked session (issue #18).

Without an explicit ``dsp.phase_band_hz``, a phase-locked session first records
``dsp.calibration_s`` seconds (default 2 min) of the target derivation at rest and
gives them to :class:`~stimloop.dsp.calibration.Calibrator`: the aperiodic-corrected
spectrum (after Donoghue et al. 2020) yields the IAF, the alpha peak's height above the
1/f background, a band (IAF ± 2 Hz) and the phase error that height leads one to
expect. No pulse is requested meanwhile.

What happens with the result:

- ``ok`` (the peak is strong enough): the band is locked; the estimator restarts with
  that fixed band, primed with the last :data:`PRIME_S` seconds so it is valid at once,
  and the protocol goes on.
- ``weak``, ``no_peak``, ``insufficient_data``: the protocol prompts the operator with
  the figures (the session disarms) and waits for ``confirm``. Confirming locks the
  measured band if a peak was found, else goes on with the causally tracked IAF; the
  operator may instead stop the session. Nothing here refuses a session: the operator
  decides, knowing the expected phase SD.

The result is published on the decision stream (``phase_calibration`` markers, so it
is recorded and ``stimloop analyze`` reports it) and in the session status (the window
shows it). ``calibration_s = 0`` skips the calibration and tracks the IAF causally
from the first sample.

Causality and chunking: the calibration ends at a fixed sample index of the EEG time
grid (``calibration_s × fs`` samples after the first), whatever the chunk sizes; the
chunk that holds that index is split there, so the locked estimator sees exactly the
same samples for any chunking. A gap that restarts the stream restarts the calibration.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stimloop.dsp.calibration import CalibrationResult, Calibrator
from stimloop.dsp.phase import PhaseEstimator

#: Seconds of the derivation the locked estimator is primed with. Its filter window is
#: 0.75 s; 10 s also give its forecast model (autocorrelation blocks) data to refit on.
PRIME_S = 10.0

#: States of a calibration, as published.
RUNNING, LOCKED, AWAITING_CONFIRM, TRACKING = "running", "locked", "awaiting_confirm", "tracking"


class BandCalibration:
    """The calibration phase of one phase-locked session (see module docstring).

    Parameters
    ----------
    fs : float
        EEG sampling rate, Hz.
    duration_s : float
        Calibration length in s of stream time (> 0).
    """

    def __init__(self, fs: float, duration_s: float) -> None:
        self.fs = float(fs)
        self.duration_s = float(duration_s)
        self.calibrator = Calibrator(fs, duration_s)
        self.state = RUNNING
        self.result: CalibrationResult | None = None
        #: The locked band (Hz), once there is one.
        self.band_hz: tuple[float, float] | None = None
        self.confirmed = False  # set from the control thread, applied by the engine's
        n = max(1, round(PRIME_S * fs))
        self._x = np.full(n, np.nan)
        self._t = np.full(n, np.nan)
        self._n = 0
        self._fed = 0  # samples given to the calibrator

    @property
    def running(self) -> bool:
        """True until the calibration samples have all arrived."""
        return self.state == RUNNING

    @property
    def progress(self) -> float:
        """Share of the calibration received, in [0, 1]."""
        return self.calibrator.progress

    def restart(self) -> None:
        """Start over (the stream restarted: its earlier samples are not this rest)."""
        if self.state == RUNNING:
            self.calibrator.reset()
            self._fed = 0

    def feed(self, x: np.ndarray, t: np.ndarray) -> int:
        """Take the derivation's samples (µV) and their LSL times (s).

        Returns
        -------
        int
            How many of them belong to the calibration: ``len(x)`` while it runs; at the
            sample that completes it, that sample's index + 1, and :attr:`result` is set.
        """
        if self.state != RUNNING:
            if self.state == AWAITING_CONFIRM:  # a confirm primes from the newest samples
                self._remember(x, t)
            return 0
        k = min(len(x), self.calibrator.n_total - self._fed)
        # Only up to the completing sample: the locked estimator is primed with these
        # and then continues with the rest of the chunk.
        self._remember(x[:k], t[:k])
        self._fed += k
        self.result = self.calibrator.update(x[:k])
        if self.result is not None:
            self.state = LOCKED if self.result.lockable else AWAITING_CONFIRM
            if self.result.lockable:
                self.band_hz = tuple(float(v) for v in self.result.band_hz)
            else:
                self._remember(x[k:], t[k:])
        return k

    def on_confirm(self) -> None:
        """The operator confirmed a weak result: lock its band, or track the IAF if no
        peak was found (applied by :meth:`apply_confirm` on the engine's thread)."""
        self.confirmed = True

    def apply_confirm(self) -> bool:
        """On the engine's thread: act on a confirm. True if the band was just locked."""
        if not (self.confirmed and self.state == AWAITING_CONFIRM):
            return False
        r = self.result
        if r is not None and math.isfinite(r.iaf_hz):
            self.band_hz = tuple(float(v) for v in r.band_hz)
            self.state = LOCKED
            return True
        self.state = TRACKING
        return False

    def primed_estimator(self) -> PhaseEstimator:
        """A warmed-up estimator on the locked band, fed the last :data:`PRIME_S` s."""
        est = PhaseEstimator(self.fs, self.band_hz)
        est.warmup()
        n = min(self._n, self._x.size)
        idx = (self._n - n + np.arange(n)) % self._x.size
        if n:
            est.update(self._x[idx], self._t[idx])
        return est

    def _remember(self, x: np.ndarray, t: np.ndarray) -> None:
        size = self._x.size
        if x.size > size:
            self._n += x.size - size
            x, t = x[-size:], t[-size:]
        idx = (self._n + np.arange(x.size)) % size
        self._x[idx] = x
        self._t[idx] = t
        self._n += x.size

    def describe(self) -> dict[str, Any]:
        """The state and result, JSON-able (NaN as None): the status and the markers."""
        out: dict[str, Any] = {
            "state": self.state,
            "duration_s": self.duration_s,
            "progress": round(self.progress, 4),
            "band_hz": list(self.band_hz) if self.band_hz else None,
        }
        r = self.result
        if r is not None:
            out.update(
                recommendation=r.recommendation,
                iaf_hz=_finite(r.iaf_hz),
                snr_db=_finite(r.snr_db),
                measured_band_hz=[float(v) for v in r.band_hz],
                expected_sd_deg=_finite(r.expected_sd_deg),
                ambiguous=r.ambiguous,
                candidates=[[float(f), float(h)] for f, h in r.candidates],
                aperiodic_exponent=_finite(r.aperiodic_exponent),
                r_squared=_finite(r.r_squared),
                n_segments=r.n_segments,
                reason=r.reason,
            )
        return out

    def prompt_message(self, target: str) -> str:
        """What the operator is asked after a result that is not ``ok``."""
        r = self.result
        assert r is not None
        if math.isfinite(r.iaf_hz):
            return (
                f"calibration at {target}: the alpha peak is weak ({r.snr_db:.1f} dB above "
                f"the 1/f background at {r.iaf_hz:.2f} Hz; expected phase SD "
                f"{r.expected_sd_deg:.0f}°). Confirm to phase-lock in "
                f"{r.band_hz[0]:.2f}-{r.band_hz[1]:.2f} Hz anyway, or stop the session"
            )
        return (
            f"calibration at {target}: {r.reason or r.recommendation}. Confirm to go on "
            "with the causally tracked IAF, or stop the session"
        )


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None
