"""A virtual subject for heart-brain-coupled TMS: an ECG whose heart rate answers pulses.

Each TMS pulse at a scalp site drives a vagal deceleration of the heart whose size
depends on the site (one best site, the coupling falling off with scalp distance from
it) and on the intensity relative to the subject's own resting motor threshold (rMT),
as NCG-TMS assumes (Iseger et al. 2020, Brain Stimulation 13(1):1-9; Dijkstra et al.
2023, Biol Psychiatry Glob Open Sci 3(4):939-947: HBC rises with intensity and is
site-specific). On top: respiratory sinus arrhythmia (RSA) at the subject's breathing
rate, a Mayer wave (0.1 Hz), slow HR fluctuations (an Ornstein-Uhlenbeck process),
beat-to-beat variability, a small site-independent arousal acceleration (pain and
discomfort raise HBC at any site: Feng, Martin et al. 2025, bioRxiv
10.1101/2025.02.19.638988), TMS artifacts in the ECG at every pulse, white noise, and
an optional vasovagal faint (HR below 45 bpm and asystole; vasovagal syncope has been
reported during frontal 10 Hz trains: Kaur et al., "Vasovagal syncope as a specific
side effect of rTMS: a frontal-vagal dose-finding study").

The model of one pulse (docs/hbc.md gives the reasoning):

* vagal drive v(t) = sum_k w_k h(t - t_k - latency), h a normalised difference of
  exponentials (rise ``rise_s``, decay ``decay_s``, integral 1), so a sustained train
  at ``ref_rate_hz`` settles at ``w * ref_rate_hz`` bpm of deceleration. Vagal effects
  on the sinus node start within a beat and fade over seconds (Levy & Zieske 1969,
  J Appl Physiol 27:465-470); the latency adds the cortical-brainstem path.
* w_k = coupling[site] * max_decel_bpm * s(I_k / rMT) / ref_rate_hz, s a logistic in
  % rMT (midpoint ``i50_pct_rmt``, width ``slope_pct_rmt``).

Beats are scheduled one RR ahead: the interval after a beat is set by the heart rate at
that beat, which depends only on pulses at least ``latency_s`` older. With a latency
longer than the lookahead (``LOOKAHEAD_S`` plus a margin), beats never depend on
pulses not yet delivered, so the live subject (pulses arriving over LSL) and the
offline one (the whole schedule given first) produce the same ECG: :func:`simulate`
and :class:`stimloop.devices.sim.hbc_runner.HBCSubjectSession` share this class.
The ECG morphology is ECGSYN's (McSharry et al. 2003), through
:meth:`stimloop.devices.sim.ecg.ECGGenerator._waves`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from stimloop.devices.sim.ecg import ECGGenerator
from stimloop.devices.sim.montage import POSITIONS_MM

#: How far ahead of the last generated sample beats are scheduled, s. A beat's waves are
#: drawn from ``LOOKAHEAD_S`` before its R peak (the P wave is at most ~0.5 s before).
LOOKAHEAD_S = 1.0
#: Smallest latency accepted: beats never depend on pulses less than 0.3 s old.
MIN_LATENCY_S = LOOKAHEAD_S + 0.3
DASH_SITES = ("F3", "FC3", "F5", "AF3", "F1", "FC1")


@dataclass
class SubjectConfig:
    """Who the virtual subject is. ``None`` fields are drawn from ``seed``.

    Attributes
    ----------
    seed : int
        Seed of the subject's draws and of every random stream.
    sites : tuple of str
        Candidate sites (10-20/10-10 names known to the montage).
    best_site : str or None
        The site of strongest coupling; None draws one of ``sites``.
    coupling : dict or None
        Explicit coupling (0-1) per site name; overrides the spatial model.
    coupling_sigma_mm : float
        Spatial model: coupling = exp(-d**2 / (2 sigma**2)), d the scalp distance in mm
        from the best site (montage positions).
    coupling_scale : float
        Multiplies every coupling (0 = sham: no site couples).
    max_decel_bpm : float or None
        Deceleration at coupling 1 and saturating intensity for sustained stimulation at
        ``ref_rate_hz``, bpm (a 5 s train reaches about 70 % of it). Drawn in 10-16 bpm.
    rmt_pct : float or None
        Resting motor threshold in % MSO (drawn in 35-60).
    i50_pct_rmt : float or None
        Intensity in % rMT of half the maximal response (drawn in 75-100).
    slope_pct_rmt : float
        Width of the logistic intensity-response curve, % rMT.
    latency_s, rise_s, decay_s : float
        Vagal response: delay from pulse to onset, rise and decay time constants, s.
    ref_rate_hz : float
        Pulse rate at which ``max_decel_bpm`` is defined (10 Hz trains).
    arousal_bpm : float
        Site-independent acceleration for sustained stimulation at 120 % rMT, bpm
        (scales with intensity / rMT; kept in sham).
    hr_bpm : float or None
        Resting heart rate, bpm (drawn in 60-80).
    resp_hz : float or None
        Breathing rate, Hz (drawn in 0.2-0.3).
    rsa_bpm : float or None
        RSA amplitude, bpm (drawn in 1.5-3.5).
    mayer_bpm : float
        Mayer-wave (0.1 Hz) amplitude, bpm.
    lf_sd_bpm, lf_tau_s : float
        SD (bpm) and time constant (s) of the slow HR fluctuation.
    hrv_sd_ms : float
        Beat-to-beat RR noise SD, ms.
    transient_per_min, transient_bpm : float
        Spontaneous HR transients (a deep breath, a movement, an arousal): Poisson events
        at this rate per minute, each a bump of N(0, ``transient_bpm``) bpm with the
        vagal kernel's shape. They give the heavy tail real resting HR has at 1/16 Hz.
    noise_scale : float
        Multiplies every HRV amplitude (RSA, Mayer, slow, beat-to-beat); 1 = realistic.
    fs : float
        ECG sampling rate, Hz.
    ecg_snr_db : float or None
        White noise relative to the clean ECG power, dB (None: none).
    baseline_wander_mv : float
        Respiratory baseline wander amplitude, mV.
    artifact_mv : float
        Peak of the TMS artifact in the ECG, mV (0: no artifacts).
    artifact_decay_ms : float
        Time constant of the artifact's decaying tail, ms.
    faint_after_pulses : int or None
        Faint (vasovagal episode) once this many pulses have been delivered.
    faint_hr_bpm : float
        Heart rate the faint falls towards, bpm.
    faint_asystole_after_s, faint_asystole_s : float
        Asystole starts this long after the faint's onset and lasts this long, s (0: none).
    faint_duration_s : float
        After this long the heart rate recovers, s.
    """

    seed: int = 0
    sites: tuple[str, ...] = DASH_SITES
    best_site: str | None = None
    coupling: dict[str, float] | None = None
    coupling_sigma_mm: float = 20.0
    coupling_scale: float = 1.0
    max_decel_bpm: float | None = None
    rmt_pct: float | None = None
    i50_pct_rmt: float | None = None
    slope_pct_rmt: float = 8.0
    latency_s: float = 1.5
    rise_s: float = 1.0
    decay_s: float = 4.0
    ref_rate_hz: float = 10.0
    arousal_bpm: float = 0.5
    hr_bpm: float | None = None
    resp_hz: float | None = None
    rsa_bpm: float | None = None
    mayer_bpm: float = 1.0
    lf_sd_bpm: float = 2.0
    lf_tau_s: float = 8.0
    hrv_sd_ms: float = 10.0
    transient_per_min: float = 2.0
    transient_bpm: float = 6.0
    noise_scale: float = 1.0
    fs: float = 500.0
    ecg_snr_db: float | None = 30.0
    baseline_wander_mv: float = 0.05
    artifact_mv: float = 1.0
    artifact_decay_ms: float = 6.0
    faint_after_pulses: int | None = None
    faint_hr_bpm: float = 35.0
    faint_asystole_after_s: float = 6.0
    faint_asystole_s: float = 4.0
    faint_duration_s: float = 60.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sites = tuple(self.sites)
        unknown = [s for s in self.sites if s not in POSITIONS_MM]
        if not self.sites or unknown:
            raise ValueError(
                f"sites must be known 10-20/10-10 names, got unknown {unknown} "
                f"(known: {sorted(POSITIONS_MM)})"
            )
        if self.best_site is not None and self.best_site not in self.sites:
            raise ValueError(f"best_site {self.best_site!r} is not one of sites {self.sites}")
        if self.latency_s < MIN_LATENCY_S:
            raise ValueError(
                f"latency_s must be >= {MIN_LATENCY_S} s (beats are scheduled "
                f"{LOOKAHEAD_S} s ahead and must not depend on undelivered pulses), "
                f"got {self.latency_s}"
            )
        for name in ("rise_s", "decay_s", "lf_tau_s", "ref_rate_hz", "slope_pct_rmt"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.rise_s >= self.decay_s:
            raise ValueError(f"rise_s must be < decay_s, got {self.rise_s}, {self.decay_s}")
        if self.coupling_scale < 0 or self.noise_scale < 0:
            raise ValueError("coupling_scale and noise_scale must be >= 0")
        if not 100.0 <= self.fs <= 2048.0:
            raise ValueError(f"fs must be within 100-2048 Hz, got {self.fs}")
        if self.faint_after_pulses is not None and self.faint_after_pulses < 1:
            raise ValueError(f"faint_after_pulses must be >= 1, got {self.faint_after_pulses}")


@dataclass(frozen=True)
class SubjectTruth:
    """What the virtual subject really is (published on its truth stream).

    Attributes
    ----------
    best_site : str
        Site of the strongest coupling (None in sham, where no site couples).
    coupling : dict of str to float
        Coupling per site, 0-1 (after ``coupling_scale``).
    rmt_pct : float
        Resting motor threshold, % MSO.
    max_decel_bpm, i50_pct_rmt, slope_pct_rmt : float
        Intensity-response curve.
    hr_bpm, resp_hz, rsa_bpm : float
        Resting heart rate, breathing rate, RSA amplitude.
    """

    best_site: str | None
    coupling: dict[str, float]
    rmt_pct: float
    max_decel_bpm: float
    i50_pct_rmt: float
    slope_pct_rmt: float
    hr_bpm: float
    resp_hz: float
    rsa_bpm: float

    def to_json(self) -> str:
        """JSON text of every field."""
        return json.dumps(asdict(self), sort_keys=True)


def _distance_mm(a: str, b: str) -> float:
    pa, pb = np.asarray(POSITIONS_MM[a], float), np.asarray(POSITIONS_MM[b], float)
    return float(np.linalg.norm(pa - pb))


class HBCSubject:
    """The virtual subject: pulses in, ECG with ground truth out.

    Parameters
    ----------
    config : SubjectConfig

    Notes
    -----
    Time is the subject's own clock: 0 at ECG sample 0 (sample i at ``i / fs``). Pulses
    must be given in time order, before the ECG samples they fall on are generated
    (:attr:`late_pulses` counts those that came too late to be modelled exactly).
    """

    def __init__(self, config: SubjectConfig) -> None:
        self.config = cfg = config
        draw_rng, beat_seed, noise_seed = np.random.SeedSequence(cfg.seed).spawn(3)
        d = np.random.default_rng(draw_rng)
        # Draw every optional field in a fixed order, so a given seed is one subject.
        drawn = {
            "best_site": cfg.sites[int(d.integers(len(cfg.sites)))],
            "max_decel_bpm": float(d.uniform(10.0, 16.0)),
            "rmt_pct": float(d.uniform(35.0, 60.0)),
            "i50_pct_rmt": float(d.uniform(75.0, 100.0)),
            "hr_bpm": float(d.uniform(60.0, 80.0)),
            "resp_hz": float(d.uniform(0.2, 0.3)),
            "rsa_bpm": float(d.uniform(1.5, 3.5)),
        }
        self._phases = d.uniform(0, 2 * np.pi, 2)  # RSA, Mayer
        pick = {
            k: (getattr(cfg, k) if getattr(cfg, k) is not None else v) for k, v in drawn.items()
        }
        best = pick["best_site"]
        if cfg.coupling is not None:
            missing = set(cfg.sites) - set(cfg.coupling)
            if missing:
                raise ValueError(f"coupling has no value for sites {sorted(missing)}")
            base = {s: float(cfg.coupling[s]) for s in cfg.sites}
            best = max(base, key=base.get)
        else:
            sig = cfg.coupling_sigma_mm
            base = {s: math.exp(-(_distance_mm(s, best) ** 2) / (2 * sig**2)) for s in cfg.sites}
        coupling = {s: c * cfg.coupling_scale for s, c in base.items()}
        self.truth = SubjectTruth(
            best_site=best if cfg.coupling_scale > 0 and max(coupling.values()) > 0 else None,
            coupling=coupling,
            rmt_pct=pick["rmt_pct"],
            max_decel_bpm=pick["max_decel_bpm"],
            i50_pct_rmt=pick["i50_pct_rmt"],
            slope_pct_rmt=cfg.slope_pct_rmt,
            hr_bpm=pick["hr_bpm"],
            resp_hz=pick["resp_hz"],
            rsa_bpm=pick["rsa_bpm"],
        )
        self.fs = float(cfg.fs)
        self._beat_rng = np.random.default_rng(beat_seed)
        self._noise_rng = np.random.default_rng(noise_seed)
        # pulses: time (s), vagal weight (bpm s), arousal weight (bpm s)
        self._pt = np.zeros(0)
        self._pv = np.zeros(0)
        self._pa = np.zeros(0)
        self._n_pulses = 0
        self.late_pulses = 0
        self.faint_onset_s: float | None = None
        # beats: R time (s) and the RR that follows it (s), the RR computed only when the
        # next beat is needed (so from pulses old enough); HR and vagal drive at the beat
        self._r: list[float] = [0.6]
        self._rr: list[float] = []
        self._hr_at: list[float] = []
        self._vagal_at: list[float] = []
        self._ou = 0.0
        self._tr_t: list[float] = []  # spontaneous transients: onset (s), size (bpm)
        self._tr_a: list[float] = []
        self._tr_next = 0.0
        self._n = 0
        self._noise_sd = 0.0
        if cfg.ecg_snr_db is not None:
            self._noise_sd = math.sqrt(self._clean_power() / 10 ** (cfg.ecg_snr_db / 10.0))

    # -- the model ---------------------------------------------------------------------
    def response_bpm(self, site: str, intensity_pct: float) -> float:
        """Sustained-train deceleration (bpm) a site and intensity (% MSO) would drive."""
        t = self.truth
        rel = 100.0 * intensity_pct / t.rmt_pct
        s = 1.0 / (1.0 + math.exp(-(rel - t.i50_pct_rmt) / t.slope_pct_rmt))
        return t.coupling.get(site, 0.0) * t.max_decel_bpm * s

    def _kernel(self, dt: np.ndarray) -> np.ndarray:
        c = self.config
        dt = np.maximum(dt, 0.0)
        return (np.exp(-dt / c.decay_s) - np.exp(-dt / c.rise_s)) / (c.decay_s - c.rise_s)

    def drive_bpm(self, t_s: float) -> tuple[float, float]:
        """Vagal deceleration and arousal acceleration at time ``t_s`` (bpm, both >= 0)."""
        c = self.config
        t_eff = t_s - c.latency_s
        hi = np.searchsorted(self._pt, t_eff, side="right")
        lo = np.searchsorted(self._pt, t_eff - 12.0 * c.decay_s)
        if hi <= lo:
            return 0.0, 0.0
        k = self._kernel(t_eff - self._pt[lo:hi])
        return float(k @ self._pv[lo:hi]), float(k @ self._pa[lo:hi])

    def _faint_factor(self, t: float) -> tuple[float, bool]:
        """Fraction of the way to the faint HR (0-1) and whether t is in the asystole."""
        if self.faint_onset_s is None or t < self.faint_onset_s:
            return 0.0, False
        c = self.config
        dt = t - self.faint_onset_s
        if dt > c.faint_duration_s:
            return max(0.0, 1.0 - (dt - c.faint_duration_s) / 20.0), False
        a0 = c.faint_asystole_after_s
        return 1.0 - math.exp(
            -dt / 3.0
        ), c.faint_asystole_s > 0 and a0 <= dt < a0 + c.faint_asystole_s

    def _next_rr(self, t_r: float) -> float:
        c, tr, ns = self.config, self.truth, self.config.noise_scale
        # slow fluctuation: exact OU update over the elapsed RR
        dt = self._rr[-1] if self._rr else 1.0
        a = math.exp(-dt / c.lf_tau_s)
        self._ou = (
            self._ou * a
            + c.lf_sd_bpm * ns * math.sqrt(1 - a * a) * self._beat_rng.standard_normal()
        )
        vagal, arousal = self.drive_bpm(t_r)
        hr = (
            self._transients(t_r)
            + tr.hr_bpm
            + ns * tr.rsa_bpm * math.sin(2 * math.pi * tr.resp_hz * t_r + self._phases[0])
            + ns * c.mayer_bpm * math.sin(2 * math.pi * 0.1 * t_r + self._phases[1])
            + self._ou
            - vagal
            + arousal
        )
        frac, _ = self._faint_factor(t_r)
        hr = hr + frac * (c.faint_hr_bpm - hr)
        rr = 60.0 / max(hr, 20.0) + ns * c.hrv_sd_ms / 1000.0 * self._beat_rng.standard_normal()
        rr = float(np.clip(rr, 60.0 / 230.0, 3.0))
        if self.faint_onset_s is not None and c.faint_asystole_s > 0:
            # no beat falls in the asystole: the next one waits for its end
            a0 = self.faint_onset_s + c.faint_asystole_after_s
            a1 = a0 + c.faint_asystole_s
            if a0 <= t_r + rr < a1 or a0 <= t_r < a1:
                rr = a1 - t_r
        self._hr_at.append(hr)
        self._vagal_at.append(vagal)
        return rr

    def _transients(self, t: float) -> float:
        c = self.config
        if c.transient_per_min <= 0 or c.noise_scale == 0:
            return 0.0
        while self._tr_next <= t:
            self._tr_t.append(self._tr_next)
            self._tr_a.append(c.noise_scale * c.transient_bpm * self._beat_rng.standard_normal())
            self._tr_next += self._beat_rng.exponential(60.0 / c.transient_per_min)
        while self._tr_t and t - self._tr_t[0] > 12.0 * c.decay_s:
            self._tr_t.pop(0)
            self._tr_a.pop(0)
        if not self._tr_t:
            return 0.0
        k = self._kernel(t - np.asarray(self._tr_t)) * c.decay_s
        return float(k @ np.asarray(self._tr_a))

    # -- inputs ------------------------------------------------------------------------
    def add_pulses(self, t_s: np.ndarray, intensity_pct: np.ndarray, sites) -> None:
        """Deliver pulses to the subject.

        Parameters
        ----------
        t_s : ndarray
            Pulse times on the subject's clock, s, not before the last pulse given.
        intensity_pct : ndarray
            Intensity of each, % MSO.
        sites : sequence of str or str
            Site of each (one name for all); unknown sites couple with 0.
        """
        t = np.atleast_1d(np.asarray(t_s, np.float64))
        inten = np.broadcast_to(np.asarray(intensity_pct, np.float64), t.shape)
        names = [sites] * t.size if isinstance(sites, str) else list(sites)
        if len(names) != t.size or not np.all(np.isfinite(t)) or not np.all(np.isfinite(inten)):
            raise ValueError("pulses need finite times and intensities and one site each")
        if t.size == 0:
            return
        if np.any(np.diff(t) < 0) or (self._pt.size and t[0] < self._pt[-1]):
            raise ValueError("pulses must be given in time order")
        c = self.config
        # A beat already scheduled may have needed this pulse, or the ECG samples of its
        # artifact may already be out: count it, the live == offline guarantee is off.
        last = self._r[len(self._rr) - 1] if self._rr else -math.inf
        late = (t + c.latency_s <= last) | (np.rint(t * self.fs) < self._n)
        self.late_pulses += int(late.sum())
        v = np.array([self.response_bpm(s, i) for s, i in zip(names, inten, strict=True)])
        rel = 100.0 * inten / self.truth.rmt_pct / 120.0
        self._pt = np.concatenate([self._pt, t])
        self._pv = np.concatenate([self._pv, v / c.ref_rate_hz])
        self._pa = np.concatenate([self._pa, c.arousal_bpm * rel / c.ref_rate_hz])
        for tk in t:
            self._n_pulses += 1
            if c.faint_after_pulses is not None and self._n_pulses == c.faint_after_pulses:
                self.faint(float(tk) + c.latency_s)

    def faint(self, t_s: float) -> None:
        """Start a vasovagal episode at ``t_s`` (subject clock, s; not in the past)."""
        if self.faint_onset_s is None:
            last = self._r[len(self._rr) - 1] if self._rr else 0.0
            self.faint_onset_s = max(float(t_s), last)

    # -- output ------------------------------------------------------------------------
    def _clean_power(self) -> float:
        hr = self.truth.hr_bpm
        t = np.arange(int(10 * self.fs)) / self.fs
        r = 0.5 + np.arange(12) * 60.0 / hr
        clean = ECGGenerator._waves(t, r, np.full(r.size, 60.0 / hr))
        return float(np.mean((clean - clean.mean()) ** 2))

    def _extend_beats(self, t_until: float) -> None:
        while self._r[-1] < t_until:
            rr = self._next_rr(self._r[-1])
            self._rr.append(rr)
            self._r.append(self._r[-1] + rr)

    def _artifacts(self, idx0: int, n: int) -> np.ndarray:
        c = self.config
        out = np.zeros(n)
        if c.artifact_mv == 0 or self._pt.size == 0:
            return out
        tail = max(1, math.ceil(8 * c.artifact_decay_ms / 1000.0 * self.fs))
        k = np.arange(tail)
        # a sharp biphasic discharge spike, then an exponentially decaying tail of the
        # opposite sign (electrode and amplifier recovery)
        shape = -0.3 * np.exp(-k / (c.artifact_decay_ms / 1000.0 * self.fs))
        shape[0] = 1.0
        if tail > 1:
            shape[1] = -0.6
        shape *= c.artifact_mv
        p_idx = np.rint(self._pt * self.fs).astype(np.int64)
        sel = p_idx[(p_idx + tail > idx0) & (p_idx < idx0 + n)]
        for p in sel:
            lo, hi = max(p, idx0), min(p + tail, idx0 + n)
            out[lo - idx0 : hi - idx0] += shape[lo - p : hi - p]
        return out

    def generate(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` ECG samples.

        Returns
        -------
        ecg_mv : ndarray, shape (n,)
            ECG in mV, with TMS artifacts and noise.
        rpeaks : ndarray of int64
            Absolute sample indices of the R peaks in this block.
        """
        t = (self._n + np.arange(n)) / self.fs
        t_end = (self._n + n) / self.fs
        self._extend_beats(t_end + LOOKAHEAD_S)
        ecg = np.zeros(n)
        if n:
            r = np.asarray(self._r[: len(self._rr)])
            rr = np.asarray(self._rr)
            sel = np.flatnonzero((r + rr > t[0]) & (r - LOOKAHEAD_S < t_end))
            for b in sel:
                # each beat is drawn from LOOKAHEAD_S before its R peak, whatever the block
                lo, hi = np.searchsorted(t, (r[b] - LOOKAHEAD_S, r[b] + rr[b]))
                if hi > lo:
                    ecg[lo:hi] += ECGGenerator._waves(t[lo:hi], r[b : b + 1], rr[b : b + 1])
            c = self.config
            if c.baseline_wander_mv:
                ecg += c.baseline_wander_mv * np.sin(
                    2 * np.pi * self.truth.resp_hz * t + self._phases[0]
                )
            ecg += self._artifacts(self._n, n)
            if self._noise_sd:
                ecg += self._noise_sd * self._noise_rng.standard_normal(n)
        r_idx = np.rint(np.asarray(self._r) * self.fs).astype(np.int64)
        peaks = r_idx[(r_idx >= self._n) & (r_idx < self._n + n)]
        self._n += n
        return ecg, peaks

    @property
    def n_samples(self) -> int:
        """Samples generated so far."""
        return self._n

    def beat_info(self, peaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HR (bpm) and vagal deceleration (bpm) at the beats of the given R-peak indices."""
        m = len(self._hr_at)
        r_idx = np.rint(np.asarray(self._r[:m]) * self.fs).astype(np.int64)
        pos = np.clip(np.searchsorted(r_idx, np.asarray(peaks, np.int64)), 0, max(m - 1, 0))
        return np.asarray(self._hr_at)[pos], np.asarray(self._vagal_at)[pos]

    def beats(self) -> dict[str, np.ndarray]:
        """Every beat scheduled so far: R time (s), HR (bpm) and vagal drive (bpm) at it."""
        m = len(self._hr_at)
        return {
            "t_s": np.asarray(self._r[:m]),
            "hr_bpm": np.asarray(self._hr_at),
            "vagal_bpm": np.asarray(self._vagal_at),
        }


@dataclass(frozen=True)
class Recording:
    """An offline session of the virtual subject.

    Attributes
    ----------
    ecg_mv : ndarray
        The ECG, mV, at ``fs``; sample i at ``i / fs`` s.
    fs : float
        Sampling rate, Hz.
    rpeaks : ndarray of int64
        True R-peak sample indices.
    truth : SubjectTruth
    beats : dict
        Per beat: ``t_s``, ``hr_bpm``, ``vagal_bpm`` (see :meth:`HBCSubject.beats`).
    faint_onset_s : float or None
        When the faint began.
    """

    ecg_mv: np.ndarray
    fs: float
    rpeaks: np.ndarray
    truth: SubjectTruth
    beats: dict
    faint_onset_s: float | None


def simulate(
    config: SubjectConfig,
    pulse_t_s: np.ndarray,
    pulse_intensity_pct: np.ndarray,
    pulse_sites,
    duration_s: float,
    block_s: float | None = None,
) -> Recording:
    """Offline: the subject's ECG for a given pulse schedule, faster than real time.

    Parameters
    ----------
    config : SubjectConfig
    pulse_t_s, pulse_intensity_pct, pulse_sites
        The pulses (times on the subject's clock in s, % MSO, site names), in time order.
    duration_s : float
        Length of the ECG, s.
    block_s : float, optional
        Generate in blocks of this many seconds, giving each block's pulses just before
        it as the live subject receives them (None: all pulses first, one block).

    Returns
    -------
    Recording
    """
    subj = HBCSubject(config)
    n = round(duration_s * subj.fs)
    t = np.asarray(pulse_t_s, np.float64)
    inten = np.broadcast_to(np.asarray(pulse_intensity_pct, np.float64), t.shape)
    sites = [pulse_sites] * t.size if isinstance(pulse_sites, str) else list(pulse_sites)
    if block_s is None:
        subj.add_pulses(t, inten, sites)
        ecg, peaks = subj.generate(n)
    else:
        step = max(1, round(block_s * subj.fs))
        parts, pk, given = [], [], 0
        while subj.n_samples < n:
            m = min(step, n - subj.n_samples)
            upto = np.searchsorted(t, (subj.n_samples + m) / subj.fs)
            if upto > given:
                subj.add_pulses(t[given:upto], inten[given:upto], sites[given:upto])
                given = upto
            e, p = subj.generate(m)
            parts.append(e)
            pk.append(p)
        ecg, peaks = np.concatenate(parts), np.concatenate(pk)
    return Recording(ecg, subj.fs, peaks, subj.truth, subj.beats(), subj.faint_onset_s)


def train_pulses(
    onsets_s: np.ndarray,
    intensities_pct: np.ndarray,
    sites,
    rate_hz: float = 10.0,
    n_pulses: int = 50,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Expand train onsets into pulses (10 Hz, 50 pulses = 5 s by default).

    Trains with intensity 0 (rest cycles) give no pulses.

    Returns
    -------
    t_s, intensity_pct : ndarray
    sites : list of str
    """
    on = np.asarray(onsets_s, np.float64)
    inten = np.asarray(intensities_pct, np.float64)
    names = [sites] * on.size if isinstance(sites, str) else list(sites)
    keep = inten > 0
    k = np.arange(n_pulses) / rate_hz
    t = (on[keep][:, None] + k[None, :]).ravel()
    i = np.repeat(inten[keep], n_pulses)
    s = [n for n, kk in zip(names, keep, strict=True) if kk for _ in range(n_pulses)]
    return t, i, s
