"""Synthetic ECG with known R-peak times.

Morphology follows the dynamical model of McSharry et al. (2003), "A dynamical model
for generating synthetic electrocardiogram signals", IEEE TBME 50(3):289-294 (ECGSYN):
each beat is a sum of five Gaussian waves (P, Q, R, S, T) placed at fixed angles of the
cardiac phase, whose widths scale with heart rate as in ECGSYN (``sqrt(hr / 60)``).
Here the waves are evaluated in closed form around each beat's R time instead of
integrating the ODE, which gives the same shape and makes R-peak times exact.

The RR tachogram carries respiratory sinus arrhythmia (0.25 Hz), a Mayer wave (0.1 Hz),
beat-to-beat variability and a target heart rate that can be changed while running
(approached with a first-order lag, as heart rate does after a stimulus).

The generator is deterministic for a given seed and independent of the block sizes it
is asked for: beats and noise come from separate random streams consumed in order.
"""

from __future__ import annotations

import numpy as np

# ECGSYN wave angles (rad), amplitudes (mV here) and widths (rad) for P, Q, R, S, T.
_THETA = np.array([-70.0, -15.0, 0.0, 15.0, 100.0]) * np.pi / 180.0
_AMP_MV = np.array([0.15, -0.15, 1.2, -0.25, 0.3])
_WIDTH = np.array([0.25, 0.1, 0.1, 0.1, 0.4])


class ECGGenerator:
    """Seeded, block-size-independent ECG source with ground-truth R-peaks.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz.
    hr_bpm : float
        Initial mean heart rate in bpm (30-220).
    seed : int
        Seed of every random stream.
    snr_db : float or None
        White-noise level as signal-to-noise ratio in dB relative to the clean ECG's
        power; None means no noise.
    powerline_hz : float or None
        Adds mains interference at this frequency (0.05 mV) when given.
    baseline_wander_mv : float
        Amplitude in mV of a 0.3 Hz respiratory baseline wander.
    invert : bool
        Flip the polarity, as an inverted lead would.
    rsa_bpm : float
        Peak-to-centre amplitude of respiratory sinus arrhythmia in bpm.
    hrv_sd_ms : float
        Standard deviation of beat-to-beat RR noise in ms.
    """

    def __init__(
        self,
        fs: float = 500.0,
        hr_bpm: float = 70.0,
        seed: int = 0,
        snr_db: float | None = None,
        powerline_hz: float | None = None,
        baseline_wander_mv: float = 0.0,
        invert: bool = False,
        rsa_bpm: float = 3.0,
        hrv_sd_ms: float = 15.0,
    ) -> None:
        if not 50.0 <= fs <= 10000.0:
            raise ValueError(f"fs must be in 50..10000 Hz, got {fs}")
        self.fs = float(fs)
        self.snr_db = snr_db
        self.powerline_hz = powerline_hz
        self.baseline_wander_mv = float(baseline_wander_mv)
        self.sign = -1.0 if invert else 1.0
        self.rsa_bpm = float(rsa_bpm)
        self.hrv_sd_s = float(hrv_sd_ms) / 1000.0
        beats_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
        self._beat_rng = np.random.default_rng(beats_seed)
        self._noise_rng = np.random.default_rng(noise_seed)
        self._mayer_phase = float(self._beat_rng.uniform(0, 2 * np.pi))
        self._hr_now = float(hr_bpm)
        self._hr_target = float(hr_bpm)
        self.set_heart_rate(hr_bpm)
        # Beat schedule: R times (s) and the RR that follows each, extended lazily.
        self._r_times: list[float] = [0.5]
        self._rr: list[float] = [self._next_rr(0.5)]
        self._n = 0  # absolute index of the next sample to generate
        self._noise_sd = 0.0
        if snr_db is not None:
            self._noise_sd = float(np.sqrt(self._clean_power() / 10 ** (snr_db / 10.0)))

    @property
    def hr_target_bpm(self) -> float:
        """Heart rate in bpm the tachogram is moving towards."""
        return self._hr_target

    def set_heart_rate(self, bpm: float) -> None:
        """Change the target mean heart rate.

        Parameters
        ----------
        bpm : float
            New target in bpm (30-220). Beats already scheduled keep their timing; the
            rate approaches the target with a 3 s time constant.
        """
        if not 30.0 <= bpm <= 220.0:
            raise ValueError(f"heart rate must be in 30..220 bpm, got {bpm}")
        self._hr_target = float(bpm)

    def _next_rr(self, t_r: float) -> float:
        # First-order lag towards the target, advanced by one beat.
        rr_prev = 60.0 / self._hr_now
        self._hr_now += (self._hr_target - self._hr_now) * (1.0 - np.exp(-rr_prev / 3.0))
        hr = (
            self._hr_now
            + self.rsa_bpm * np.sin(2 * np.pi * 0.25 * t_r)
            + 0.5 * self.rsa_bpm * np.sin(2 * np.pi * 0.1 * t_r + self._mayer_phase)
        )
        rr = 60.0 / max(hr, 25.0) + self.hrv_sd_s * self._beat_rng.standard_normal()
        return float(np.clip(rr, 60.0 / 230.0, 2.4))

    def _extend_beats(self, t_until: float) -> None:
        while self._r_times[-1] < t_until:
            t_next = self._r_times[-1] + self._rr[-1]
            self._r_times.append(t_next)
            self._rr.append(self._next_rr(t_next))

    def _clean_power(self) -> float:
        t = np.arange(int(10 * self.fs)) / self.fs
        r = 0.5 + np.arange(12) * 60.0 / self._hr_target
        clean = self._waves(t, r, np.full(r.size, 60.0 / self._hr_target))
        return float(np.mean((clean - clean.mean()) ** 2))

    @staticmethod
    def _waves(t: np.ndarray, r_times: np.ndarray, rr: np.ndarray) -> np.ndarray:
        out = np.zeros(t.size)
        for t_r, rr_k in zip(r_times, rr, strict=True):
            hrfact = np.sqrt(60.0 / rr_k / 60.0)
            # ECGSYN: P angle scales with sqrt(hrfact), Q/S/T with hrfact; widths with hrfact.
            theta = _THETA * np.array([np.sqrt(hrfact), hrfact, 1.0, hrfact, hrfact])
            # Waves beyond one RR on either side are below 1e-6 of their peak.
            lo, hi = np.searchsorted(t, (t_r - rr_k, t_r + rr_k))
            if lo == hi:
                continue
            dtheta = 2 * np.pi * (t[lo:hi] - t_r) / rr_k
            d = dtheta[:, None] - theta[None, :]
            out[lo:hi] += np.exp(-(d**2) / (2 * (_WIDTH * hrfact) ** 2)) @ _AMP_MV
        return out

    def generate(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Generate the next ``n`` samples.

        Parameters
        ----------
        n : int
            Number of samples.

        Returns
        -------
        ecg_mv : ndarray, shape (n,)
            ECG in mV.
        rpeaks : ndarray of int64
            Absolute sample indices of the R-wave maxima that fall in this block.
        """
        idx = self._n + np.arange(n)
        t = idx / self.fs
        t_end = (self._n + n) / self.fs
        self._extend_beats(t_end + 3.0)
        r = np.asarray(self._r_times)
        rr = np.asarray(self._rr)
        window = (r > t[0] - 3.0) & (r < t_end + 3.0) if n else np.zeros(r.size, bool)
        ecg = self._waves(t, r[window], rr[window])
        if self.baseline_wander_mv:
            ecg += self.baseline_wander_mv * np.sin(2 * np.pi * 0.3 * t)
        if self.powerline_hz:
            ecg += 0.05 * np.sin(2 * np.pi * self.powerline_hz * t)
        if self._noise_sd:
            ecg += self._noise_sd * self._noise_rng.standard_normal(n)
        r_idx = np.rint(r * self.fs).astype(np.int64)
        rpeaks = r_idx[(r_idx >= self._n) & (r_idx < self._n + n)]
        self._n += n
        # Drop beats that can no longer influence future samples.
        keep = next((i for i, tr in enumerate(self._r_times) if tr > t_end - 3.0), 0)
        if keep > 1:
            del self._r_times[: keep - 1]
            del self._rr[: keep - 1]
        return self.sign * ecg, rpeaks
