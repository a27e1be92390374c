"""Synthetic electrodermal activity with known skin conductance responses.

Skin conductance = a slowly drifting tonic level (SCL) + phasic SCRs + sensor noise, in
µS. Each SCR has the bi-exponential shape used by model-based EDA analysis
(Alexander et al. 2005; Bach et al. 2010, "Modelling event-related skin conductance
responses", Int J Psychophysiol 75:349-356): ``exp(-t/τd) - exp(-t/τr)`` scaled so its
peak equals the SCR amplitude, with a rise of about 1-2 s and recovery over seconds.

SCRs are spontaneous (a Poisson process, "non-specific SCRs") or evoked by
:meth:`EDAGenerator.trigger_event` with a 1-3 s latency, so responses overlap as they do
in real recordings. Amplitudes are log-normal with most between 0.02 and 1 µS.
"""

from __future__ import annotations

import numpy as np

#: dtype of the ground-truth SCR records.
SCR_TRUTH_DTYPE = np.dtype(
    [("onset", np.int64), ("peak", np.int64), ("amplitude", np.float64), ("evoked", np.bool_)]
)


class EDAGenerator:
    """Seeded, block-size-independent EDA source with ground-truth SCRs.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz (4-2048).
    seed : int
        Seed of every random stream.
    scl_us : float
        Mean tonic skin conductance level in µS.
    spontaneous_per_min : float
        Rate of non-specific SCRs per minute.
    noise_us : float
        Standard deviation of white sensor noise in µS.
    median_amplitude_us : float
        Median SCR amplitude in µS (log-normal, sigma 0.8).
    min_amplitude_us : float
        Smallest SCR amplitude generated, in µS.
    """

    def __init__(
        self,
        fs: float = 100.0,
        seed: int = 0,
        scl_us: float = 5.0,
        spontaneous_per_min: float = 2.0,
        noise_us: float = 0.002,
        median_amplitude_us: float = 0.15,
        min_amplitude_us: float = 0.02,
    ) -> None:
        if not 4.0 <= fs <= 2048.0:
            raise ValueError(f"fs must be in 4..2048 Hz, got {fs}")
        if scl_us <= 0:
            raise ValueError(f"scl_us must be > 0 µS, got {scl_us}")
        self.fs = float(fs)
        self.scl_us = float(scl_us)
        self.noise_us = float(noise_us)
        self.median_amplitude_us = float(median_amplitude_us)
        self.min_amplitude_us = float(min_amplitude_us)
        self.spontaneous_per_min = float(spontaneous_per_min)
        spont, evoked, shape, noise = np.random.SeedSequence(seed).spawn(4)
        self._spont_rng = np.random.default_rng(spont)
        self._evoked_rng = np.random.default_rng(evoked)
        self._shape_rng = np.random.default_rng(shape)
        self._noise_rng = np.random.default_rng(noise)
        drift = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)
        self._drift_phase = drift
        self._n = 0
        # Active and scheduled SCRs: (onset_s, amplitude, tau_rise, tau_decay, evoked).
        self._scrs: list[tuple[float, float, float, float, bool]] = []
        self._next_spont_s = self._draw_spont_gap()

    def _draw_spont_gap(self) -> float:
        if self.spontaneous_per_min <= 0:
            return np.inf
        return float(self._spont_rng.exponential(60.0 / self.spontaneous_per_min))

    def _new_scr(self, onset_s: float, evoked: bool) -> None:
        amp = self.median_amplitude_us * float(np.exp(0.8 * self._shape_rng.standard_normal()))
        amp = max(amp, self.min_amplitude_us)
        tau_r = 0.75 * float(self._shape_rng.uniform(0.8, 1.2))
        tau_d = 3.0 * float(self._shape_rng.uniform(0.8, 1.3))
        self._scrs.append((onset_s, amp, tau_r, tau_d, evoked))

    @staticmethod
    def _peak_delay(tau_r: float, tau_d: float) -> float:
        return tau_r * tau_d / (tau_d - tau_r) * np.log(tau_d / tau_r)

    def trigger_event(self) -> int:
        """Present a stimulus now: an SCR follows with a 1-3 s latency.

        Returns
        -------
        int
            Absolute sample index of the event (the next sample to be generated).
        """
        latency = float(self._evoked_rng.uniform(1.0, 3.0))
        self._new_scr(self._n / self.fs + latency, evoked=True)
        return self._n

    def generate(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Generate the next ``n`` samples.

        Parameters
        ----------
        n : int
            Number of samples.

        Returns
        -------
        eda_us : ndarray, shape (n,)
            Skin conductance in µS.
        scrs : structured ndarray (``SCR_TRUTH_DTYPE``)
            SCRs whose onset falls in this block: ``onset`` and ``peak`` (absolute sample
            indices), ``amplitude`` (µS) and ``evoked``.
        """
        t = (self._n + np.arange(n)) / self.fs
        t_end = (self._n + n) / self.fs
        while self._next_spont_s < t_end:
            self._new_scr(self._next_spont_s, evoked=False)
            self._next_spont_s += self._draw_spont_gap()
        ph = self._drift_phase
        eda = self.scl_us * (
            1.0
            + 0.06 * np.sin(2 * np.pi * t / 400.0 + ph[0])
            + 0.03 * np.sin(2 * np.pi * t / 170.0 + ph[1])
            + 0.01 * np.sin(2 * np.pi * t / 61.0 + ph[2])
        )
        new = []
        for onset, amp, tau_r, tau_d, evoked in self._scrs:
            tp = self._peak_delay(tau_r, tau_d)
            norm = np.exp(-tp / tau_d) - np.exp(-tp / tau_r)
            dt = t - onset
            on = dt > 0
            eda[on] += amp / norm * (np.exp(-dt[on] / tau_d) - np.exp(-dt[on] / tau_r))
            onset_idx = int(np.ceil(onset * self.fs))
            if self._n <= onset_idx < self._n + n:
                peak_idx = int(np.rint((onset + tp) * self.fs))
                new.append((onset_idx, peak_idx, amp, evoked))
        if self.noise_us:
            eda += self.noise_us * self._noise_rng.standard_normal(n)
        self._n += n
        # After 40 decay constants an SCR contributes < 1e-17 of its amplitude, so
        # dropping it cannot make the output depend on the block sizes requested.
        self._scrs = [s for s in self._scrs if t_end - s[0] < 40 * s[3]]
        return eda, np.array(new, dtype=SCR_TRUTH_DTYPE)


def simulate_labelled_eda(
    fs: float, minutes: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate an event task: EDA with evoked and spontaneous SCRs, and its ground truth.

    An :class:`EDAGenerator` with its defaults (2 non-specific SCRs per minute,
    log-normal amplitudes with median 0.15 µS, noise 0.002 µS) is run in blocks of
    8-20 s (uniform); after every block but the last a stimulus is presented
    (:meth:`EDAGenerator.trigger_event`), which evokes an SCR 1-3 s later. Evoked and
    spontaneous SCRs therefore overlap as in a real task. The same arguments always give
    the same arrays.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz (4-2048).
    minutes : float
        Length of the recording in min.
    seed : int
        Seed of the generator; the block lengths use ``seed + 1000``.

    Returns
    -------
    eda_us : ndarray, shape (n,)
        Skin conductance in µS, ``n = int(minutes * 60 * fs)`` samples.
    truth : structured ndarray (``SCR_TRUTH_DTYPE``)
        Every SCR whose onset falls in the recording, sorted by onset: ``onset`` and
        ``peak`` (sample indices), ``amplitude`` (µS) and ``evoked``.
    events : ndarray of int64
        Sample index of each stimulus.
    """
    gen = EDAGenerator(fs=fs, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    n = int(minutes * 60 * fs)
    xs, truth, events = [], [], []
    done = 0
    while done < n:
        k = min(int(rng.uniform(8.0, 20.0) * fs), n - done)
        x, t = gen.generate(k)
        xs.append(x)
        truth.append(t)
        done += k
        if done < n:
            events.append(gen.trigger_event())
    tr = np.concatenate(truth)
    tr = tr[np.argsort(tr["onset"], kind="stable")]
    return np.concatenate(xs), tr, np.asarray(events, dtype=np.int64)
