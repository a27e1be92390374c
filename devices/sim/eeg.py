"""Synthetic multichannel EEG with an alpha rhythm of known instantaneous phase.

The background is 1/f ("pink") noise, half of it shared by all channels (volume
conduction, which a Hjorth filter removes) and half independent per channel. Pink noise
comes from white noise through the -3 dB/octave IIR filter given by J. O. Smith,
"Spectral Audio Signal Processing" (pink-noise section).

One alpha/mu source sits under the ``target`` electrode. Its instantaneous frequency
wanders around the individual alpha frequency (an Ornstein-Uhlenbeck process, SD 0.3 Hz),
and its amplitude waxes and wanes in bursts (a log-normal envelope with a 0.4 s time
constant). Each electrode sees it with a Gaussian weight of its distance from the target
(sigma 35 mm), so the rhythm is focal and the Hjorth derivation at the target keeps it.
The ground truth is the phase of that source: 0 at its positive peak, ±π at its trough.

Optional artefacts: mains interference on every channel, blinks on the frontopolar
channels and muscle bursts on temporal channels.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter, lfilter_zi

from stimloop.devices.sim.montage import montage_labels, positions_m

# J. O. Smith's pink-noise filter (accurate to ±0.05 dB above 9e-4 of the sampling rate).
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
_PINK_GAIN = 1.0 / 0.0865  # measured rms of the filter's output for unit white noise


class EEGGenerator:
    """Seeded EEG source with ground-truth alpha phase.

    The output does not depend on the block sizes requested, up to floating-point
    rounding of the integrated phase.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz.
    n_channels : int
        Number of channels (1-64), labelled from the 10-20 / 10-10 system.
    iaf_hz : float
        Individual alpha frequency in Hz (7-14).
    target : str
        Electrode under which the alpha source sits; must be among the labels.
    seed : int
        Seed of every random stream.
    alpha_snr_db : float
        Ratio in dB of the alpha rms to the background rms at the target electrode.
    background_uv : float
        RMS of the 1/f background per channel in µV.
    line_noise_uv : float
        Amplitude in µV of 50 Hz mains interference (0 = none).
    blinks_per_min, muscle_per_min : float
        Rates of blink and muscle artefacts (0 = none).
    """

    def __init__(
        self,
        fs: float = 1000.0,
        n_channels: int = 64,
        iaf_hz: float = 10.0,
        target: str = "C3",
        seed: int = 0,
        alpha_snr_db: float = 3.0,
        background_uv: float = 10.0,
        line_noise_uv: float = 0.0,
        blinks_per_min: float = 0.0,
        muscle_per_min: float = 0.0,
    ) -> None:
        if not 7.0 <= iaf_hz <= 14.0:
            raise ValueError(f"iaf_hz must be in 7..14 Hz, got {iaf_hz}")
        if fs < 4 * 14.0:
            raise ValueError(f"fs must be >= 56 Hz to carry alpha, got {fs}")
        self.fs = float(fs)
        self.labels = montage_labels(n_channels)
        if target not in self.labels:
            raise ValueError(f"target {target!r} is not among the {n_channels} labels")
        self.target = target
        self.iaf_hz = float(iaf_hz)
        self.background_uv = float(background_uv)
        self.line_noise_uv = float(line_noise_uv)
        self.blinks_per_min = float(blinks_per_min)
        self.muscle_per_min = float(muscle_per_min)
        pos = positions_m(self.labels)
        dist = np.linalg.norm(pos - pos[self.labels.index(target)], axis=1)
        self.weights = np.exp(-(dist**2) / (2 * 0.035**2))
        # Mean envelope of the log-normal burst process is exp(σ²/2) with σ = 0.6.
        alpha_rms = background_uv * 10 ** (alpha_snr_db / 20.0)
        self._env_scale = alpha_rms * np.sqrt(2.0) / np.exp(0.6**2)
        self._seed = int(seed)
        seeds = np.random.SeedSequence(seed).spawn(5)
        self._bg_rng, self._osc_rng, self._art_rng, self._common_rng, _ = (
            np.random.default_rng(s) for s in seeds
        )
        zi = lfilter_zi(_PINK_B, _PINK_A)
        self._zi_local = np.zeros((zi.size, len(self.labels)))
        self._zi_common = np.zeros(zi.size)
        # Ornstein-Uhlenbeck processes as AR(1) filters with explicit state.
        self._a_freq = np.exp(-1.0 / (1.0 * fs))
        self._a_env = np.exp(-1.0 / (0.4 * fs))
        self._freq_state = 0.0
        self._env_state = 0.0
        self._phase = float(self._osc_rng.uniform(-np.pi, np.pi))
        self._n = 0
        self._events: list[tuple[int, int, str]] = []  # (start, length, kind)

    def _pink(self, white: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, zf = lfilter(_PINK_B, _PINK_A, white, axis=0, zi=zi)
        return y * _PINK_GAIN, zf

    def generate(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Generate the next ``n`` samples.

        Parameters
        ----------
        n : int
            Number of samples.

        Returns
        -------
        eeg_uv : ndarray, shape (n, n_channels)
            EEG in µV.
        truth : ndarray, shape (n, 3)
            Per sample: alpha phase at the target in rad (0 = peak, ±π = trough), the
            alpha envelope at the target in µV, and the instantaneous frequency in Hz.
        """
        n_ch = len(self.labels)
        local, self._zi_local = self._pink(self._bg_rng.standard_normal((n, n_ch)), self._zi_local)
        common, self._zi_common = self._pink(self._common_rng.standard_normal(n), self._zi_common)
        eeg = (local + common[:, None]) * (self.background_uv / np.sqrt(2.0))

        # Oscillator: frequency and log-envelope are AR(1) processes; phase integrates
        # frequency. Stationary SDs: 0.3 Hz and 0.6 (log units).
        drive = self._osc_rng.standard_normal((n, 2))
        a_f, a_e = self._a_freq, self._a_env
        f_dev, self._freq_state = _ar1(
            drive[:, 0] * 0.3 * np.sqrt(1 - a_f**2), a_f, self._freq_state
        )
        log_env, self._env_state = _ar1(
            drive[:, 1] * 0.6 * np.sqrt(1 - a_e**2), a_e, self._env_state
        )
        freq = self.iaf_hz + f_dev
        phase = self._phase + np.cumsum(2 * np.pi * freq / self.fs)
        self._phase = float(np.angle(np.exp(1j * phase[-1]))) if n else self._phase
        env = self._env_scale * np.exp(log_env)
        alpha = env * np.cos(phase)
        eeg += alpha[:, None] * self.weights[None, :]

        t = (self._n + np.arange(n)) / self.fs
        if self.line_noise_uv:
            eeg += self.line_noise_uv * np.sin(2 * np.pi * 50.0 * t)[:, None]
        self._add_artifacts(eeg, n)
        truth = np.column_stack(
            [np.angle(np.exp(1j * phase)), env * self.weights[self.labels.index(self.target)], freq]
        )
        self._n += n
        return eeg, truth

    def _add_artifacts(self, eeg: np.ndarray, n: int) -> None:
        for rate, kind in ((self.blinks_per_min, "blink"), (self.muscle_per_min, "muscle")):
            if rate <= 0:
                continue
            # One Bernoulli draw per 100 ms slot keeps the draws independent of block size.
            first_slot = -(-self._n // int(self.fs / 10))
            last_slot = -(-(self._n + n) // int(self.fs / 10))
            kind_code = 1 if kind == "blink" else 2
            for slot in range(first_slot, last_slot):
                slot_rng = np.random.default_rng([self._seed, kind_code, slot])
                if slot_rng.uniform() < rate / 600.0:
                    length = int(0.3 * self.fs) if kind == "blink" else int(0.5 * self.fs)
                    self._events.append((slot * int(self.fs / 10), length, kind))
        keep = []
        for start, length, kind in self._events:
            lo, hi = max(start, self._n), min(start + length, self._n + n)
            if lo < hi:
                k = np.arange(lo, hi) - start
                rows = slice(lo - self._n, hi - self._n)
                if kind == "blink":
                    chans = [i for i, lb in enumerate(self.labels) if lb.startswith(("Fp", "AF"))]
                    eeg[rows, chans] += (150.0 * np.sin(np.pi * k / length))[:, None]
                else:
                    chans = [i for i, lb in enumerate(self.labels) if lb.startswith(("T", "FT"))]
                    burst = np.random.default_rng([self._seed, 3, start])
                    noise = burst.standard_normal((length, len(chans)))[k]
                    eeg[rows, chans] += 30.0 * noise
            if start + length > self._n + n:
                keep.append((start, length, kind))
        self._events = keep


def _ar1(x: np.ndarray, a: float, state: float) -> tuple[np.ndarray, float]:
    """y[t] = a*y[t-1] + x[t], with the state carried across blocks."""
    if x.size == 0:
        return x, state
    y, _ = lfilter([1.0], [1.0, -a], x, zi=[a * state])
    return y, float(y[-1])
