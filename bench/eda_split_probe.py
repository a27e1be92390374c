"""Probe (go/no-go): a causal per-SCR shape fit that splits overlapping SCRs.

Result: no-go for splitting (docs/eda.md); its K = 1 onset refinement became the
detector's own, in numba, in ``dsp/eda_shape_fit.py``. This script keeps its own numpy
version of the fit so that the splitting experiment stays reproducible as measured.

Post-processes the SCRs of the streaming ``SCRDetector`` (issue #18: overlapping SCRs
are the largest share of the misses on ``simulate_wearable_eda``). For every SCR, at the
sample ``confirmed`` that confirmed it and with samples up to that index only, the
signal from ``FIT_BEFORE_S`` before its onset to ``confirmed`` is fitted with

    baseline (constant + linear trend + the earlier fitted components, one free scale)
    + K = 1 or 2 SCR components,

each component a shape from a small dictionary: a Gaussian sudomotor burst of width σ
(or an impulse) convolved with a Bateman function exp(-t/τ2) - exp(-t/τ1). That family
contains both published forms: the Bateman SCR of Benedek & Kaernbach (2010, J Neurosci
Methods 190:80-91; CDA) and, approximately (τ1 → 0), the canonical SCRF of Bach,
Flandin, Friston & Dolan (2010, Int J Psychophysiol 75:349-356), a Gaussian burst
convolved with decaying exponentials. Onsets lie on a 0.1 s grid; amplitudes are solved
by linear least squares (variable projection: for fixed onsets and shapes the model is
linear). K = 2 is found greedily (best K = 1, then the best second component, then the
first one again given the second, twice). K = 2 is accepted when it lowers the residual
sum of squares by a factor and both components pass amplitude and spacing tests (a
penalised criterion in the spirit of an F-test; the 1/f noise and quantisation make the
residuals correlated, so the factor is set on seeds 1-4, not from a nominal χ²).
A component's onset is where it reaches 2 % of its own peak (the truth's definition).

With ``--refit-onset avg`` (the default) a K = 1 SCR is reported at the mean of the
detector's onset and the fitted one (``all``: the fitted one; ``prev``: the fitted one
only within 8 s of an earlier component; ``none``: the detector's).

Scored with ``dsp.eda_score.score_scrs`` exactly as ``bench/eda.py`` does; real data:
the systole picture task (responses = first onset 1-4 s after an event). ``--clean``
fits the generator's noise-free curve instead (same detector SCRs): a diagnostic of
whether the noise or the shape model limits the fit.

Findings (go/no-go, December 2026): splitting (``--rss-ratio`` > 0) adds more false SCRs
than it finds, at every threshold and even on the noise-free curve; the fitted onset,
averaged with the detector's, removes about a third of the mis-timed pairs.

Usage: ``python bench/eda_split_probe.py [--rates 4 16 100] [--first-seed 1]
[--rss-ratio 0] [--refit-onset avg] [--real] [--clean]``.
Not part of the package; a prototype to decide whether to port this into the kernel.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eda import DATA, wearable_config

from stimloop.devices.sim.wearable_eda import simulate_wearable_eda
from stimloop.dsp.eda import FLAG_MOTION, SCRDetector, event_related_scr
from stimloop.dsp.eda_score import score_scrs

ONSET_FRACTION = 0.02
FIT_RATE_HZ = 10.0  # the fit runs on block means at this rate (or the raw rate below it)
FIT_BEFORE_S = 2.0  # the window starts this long before the detector's onset
ONSET_STEP_S = 0.1
MIN_GAP_S = 0.8  # two components' onsets at least this far apart
PREV_SPAN_S = 40.0  # earlier components within this many s enter the baseline
SIGMAS = (0.0, 0.25, 0.5, 0.75, 1.0)
TAU1 = (0.05, 0.3, 0.7, 1.2)
TAU2 = (2.5, 6.0)
FINE_DT = 0.01
SHAPE_LEN_S = 60.0


def _shape(sigma: float, tau1: float, tau2: float) -> tuple[np.ndarray, float]:
    """Unit-peak response on a FINE_DT grid starting at its 2 % onset, and its rise time."""
    t = np.arange(0.0, SHAPE_LEN_S, FINE_DT)
    bat = np.exp(-t / tau2) - np.exp(-t / tau1)
    if sigma > 0:
        tg = np.arange(-4 * sigma, 4 * sigma + FINE_DT / 2, FINE_DT)
        g = np.exp(-0.5 * (tg / sigma) ** 2)
        y = np.convolve(bat, g / g.sum())
    else:
        y = bat
    y = y / y.max()
    k0 = int(np.argmax(y >= ONSET_FRACTION))
    y = y[k0 : k0 + t.size]
    return y, float(np.argmax(y) * FINE_DT)


SHAPES = [(s, a, b) for s in SIGMAS for a in TAU1 for b in TAU2]
BANK = [_shape(*p) for p in SHAPES]


def _columns(t_rel: np.ndarray) -> np.ndarray:
    """Every shape at times ``t_rel`` (s after its onset; 0 before): (n_shapes, n)."""
    k = t_rel / FINE_DT
    i = np.floor(k).astype(np.int64)
    f = k - i
    out = np.zeros((len(BANK), t_rel.size))
    ok = (i >= 0) & (i < BANK[0][0].size - 1)
    for j, (y, _) in enumerate(BANK):
        out[j, ok] = y[i[ok]] * (1 - f[ok]) + y[i[ok] + 1] * f[ok]
    return out


class Component:
    __slots__ = ("amp", "onset_s", "shape")

    def __init__(self, onset_s: float, shape: int, amp: float) -> None:
        self.onset_s, self.shape, self.amp = onset_s, shape, amp

    def at(self, t: np.ndarray) -> np.ndarray:
        k = (t - self.onset_s) / FINE_DT
        y = BANK[self.shape][0]
        i = np.floor(k).astype(np.int64)
        out = np.zeros(t.size)
        ok = (i >= 0) & (i < y.size - 1)
        f = k[ok] - i[ok]
        out[ok] = y[i[ok]] * (1 - f) + y[i[ok] + 1] * f
        return self.amp * out


def _block_means(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Means over aligned blocks (fit rate), their centre times (s), block length."""
    m = max(1, round(fs / FIT_RATE_HZ))
    n = x.size // m
    y = x[: n * m].reshape(n, m).mean(axis=1)
    t = (np.arange(n) * m + (m - 1) / 2) / fs
    return y, t, m


def _project(A: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Residual of the columns ``v`` (n, m) after least squares on ``A`` (n, p)."""
    if A.shape[1] == 0:
        return v
    q, _ = np.linalg.qr(A)
    return v - q @ (q.T @ v)


def _best_added(A: np.ndarray, y: np.ndarray, cand: np.ndarray):
    """Best single column of ``cand`` (m, n) added to the design ``A``: index, RSS, coef."""
    r = _project(A, y[:, None])[:, 0]
    c = _project(A, cand.T)  # (n, m)
    cc = np.einsum("ij,ij->j", c, c)
    cr = c.T @ r
    ok = cc > 1e-12
    coef = np.where(ok, cr / np.where(ok, cc, 1.0), 0.0)
    rss = r @ r - np.where(ok & (coef > 0), cr * coef, 0.0)
    j = int(np.argmin(rss))
    return j, float(rss[j]), float(coef[j])


class SplitFitter:
    """Causal post-processing of confirmed SCRs by a K = 1 / 2 shape fit.

    Parameters
    ----------
    x : ndarray
        The whole recording (µS); the fit at an SCR confirmed at sample c reads x[: c + 1]
        only (``--causal-check``: cutting the recording changes no earlier report).
    fs : float
        Sampling rate, Hz.
    """

    def __init__(
        self,
        x: np.ndarray,
        fs: float,
        flags: np.ndarray,
        rss_ratio: float = 0.0,
        min_amp: float = 0.015,
        refit_onset: str = "none",
        use_prev: bool = True,
        decay_taus: tuple[float, ...] = (2.0, 5.0),
        early_s: float = 0.8,
        late_s: float = 0.5,
        delay_s: float = 0.0,
    ) -> None:
        self.delay_s = delay_s
        self.use_prev, self.decay_taus = use_prev, decay_taus
        self.early_s, self.late_s = early_s, late_s
        self.x, self.fs, self.flags = x, fs, flags
        self.rss_ratio, self.min_amp, self.refit_onset = rss_ratio, min_amp, refit_onset
        self.comps: list[Component] = []
        self.fit_ms: list[float] = []
        self.log: list[dict] = []

    def process(self, scr) -> list[tuple[float, float, bool]]:
        """SCRs to report for one detector SCR: (onset s, amplitude µS, split?)."""
        fs = self.fs
        on_s, conf = scr["onset"] / fs, int(scr["confirmed"])
        t0 = time.perf_counter()
        out = self._fit(on_s, conf, scr)
        self.fit_ms.append((time.perf_counter() - t0) * 1e3)
        return out

    def _baseline(self, A: np.ndarray, t: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Add the recovery of earlier SCRs: the best decaying exponential, fitted on the
        part of the window before the detector's onset only (so it cannot eat the rise)."""
        if not self.decay_taus:
            return A
        pre = t <= t[0] + FIT_BEFORE_S
        best, col = np.inf, None
        for tau in self.decay_taus:
            e = np.exp(-(t - t[0]) / tau)
            D = np.column_stack([A, e])
            coef, *_ = np.linalg.lstsq(D[pre], y[pre], rcond=None)
            r = float(np.sum((D[pre] @ coef - y[pre]) ** 2))
            if r < best:
                best, col = r, e
        return np.column_stack([A, col])

    def _fit(self, on_s: float, conf: int, scr) -> list[tuple[float, float, bool]]:
        fs = self.fs
        keep = [(on_s, float(scr["amplitude"]), False)]
        w0 = max(0.0, on_s - FIT_BEFORE_S)
        i0 = int(w0 * fs)
        # causal: nothing after the confirming sample (plus delay_s, a later report)
        end = min(conf + 1 + round(self.delay_s * fs), self.x.size)
        seg = self.x[i0:end]
        if np.any(self.flags[i0:end] & FLAG_MOTION) or seg.size < 4:
            return keep
        y, t, _ = _block_means(seg, fs)
        t = t + i0 / fs
        if y.size < 8:
            return keep
        prev = [c for c in self.comps if c.onset_s > t[0] - PREV_SPAN_S and c.onset_s < on_s - 0.3]
        cols = [np.ones_like(t), t - t[-1]]
        if prev and self.use_prev:
            cols.append(sum(c.at(t) for c in prev))
        A = self._baseline(np.column_stack(cols), t, y)
        last_prev = max((c.onset_s for c in prev), default=-np.inf)
        grid = np.arange(
            max(w0 + 0.3, on_s - self.early_s, last_prev + MIN_GAP_S),
            t[-1] - self.late_s + 1e-9,
            ONSET_STEP_S,
        )
        if grid.size == 0:
            return keep
        cand = np.stack([_columns(t - g) for g in grid])  # (n_grid, n_shapes, n)
        ns = len(BANK)
        flat = cand.reshape(-1, t.size)
        j1, rss1, a1 = _best_added(A, y, flat)
        g1, s1 = divmod(j1, ns)
        # K = 2: best second component given the first, then the first again given it.
        g2 = s2 = -1
        rss2 = np.inf
        for _ in range(2):
            A1 = np.column_stack([A, flat[g1 * ns + s1]])
            far = np.abs(grid - grid[g1]) >= MIN_GAP_S
            if not far.any():
                break
            sub = cand[far].reshape(-1, t.size)
            j, r2, _ = _best_added(A1, y, sub)
            g2 = int(np.flatnonzero(far)[j // ns])
            s2 = j % ns
            A2 = np.column_stack([A, flat[g2 * ns + s2]])
            far = np.abs(grid - grid[g2]) >= MIN_GAP_S
            sub = cand[far].reshape(-1, t.size)
            j, r2, _ = _best_added(A2, y, sub)
            g1 = int(np.flatnonzero(far)[j // ns])
            s1 = j % ns
            rss2 = r2
        comps1 = [Component(grid[divmod(j1, ns)[0]], divmod(j1, ns)[1], a1)]
        if g2 >= 0 and np.isfinite(rss2):
            D = np.column_stack([A, flat[g1 * ns + s1], flat[g2 * ns + s2]])
            coef, *_ = np.linalg.lstsq(D, y, rcond=None)
            a_1, a_2 = coef[-2], coef[-1]
            self.log.append(
                dict(
                    on=on_s,
                    conf=conf / fs,
                    rss1=rss1,
                    rss2=rss2,
                    a1=a_1,
                    a2=a_2,
                    o1=grid[g1],
                    o2=grid[g2],
                    s1=s1,
                    s2=s2,
                    n=y.size,
                    det_amp=float(scr["amplitude"]),
                    k1=comps1[0].onset_s,
                    pk=scr["peak"] / fs,
                    rss0=float(np.sum(_project(A, y[:, None]) ** 2)),
                )
            )
            # the extra component is the one farther from the detector's onset; a second
            # SCR hidden in this rise starts after it (the look-back already covers before)
            extra = grid[g2] if abs(grid[g1] - on_s) <= abs(grid[g2] - on_s) else grid[g1]
            if rss2 < self.rss_ratio * rss1 and min(a_1, a_2) >= self.min_amp and extra > on_s:
                c1, c2 = Component(grid[g1], s1, a_1), Component(grid[g2], s2, a_2)
                self.comps += [c1, c2]
                return [(c1.onset_s, c1.amp, True), (c2.onset_s, c2.amp, True)]
        self.comps += comps1
        if self.refit_onset == "all" or (self.refit_onset == "prev" and on_s - last_prev < 8.0):
            return [(comps1[0].onset_s, float(scr["amplitude"]), False)]
        if self.refit_onset == "avg":
            return [(0.5 * (comps1[0].onset_s + on_s), float(scr["amplitude"]), False)]
        return keep


def detector_run(x: np.ndarray, fs: float):
    det = SCRDetector(fs)
    scrs = det.update(x)
    return scrs, det.last_flags.copy()


def post(x, fs, scrs, flags, **kw):
    f = SplitFitter(x, fs, flags, **kw)
    on, amp, split = [], [], []
    for s in scrs:
        for o, a, sp in f.process(s):
            on.append(o)
            amp.append(a)
            split.append(sp)
    return np.array(on), np.array(amp), np.array(split, bool), f.fit_ms


def wearable(rates, first_seed, n_seeds, clean: bool = False, **kw) -> None:
    print(
        f"seeds {first_seed}-{first_seed + n_seeds - 1}, fit params {kw}"
        f"{' (fit on the noise-free curve)' if clean else ''}\n"
        f"{'Hz':>5s} {'n':>4s} {'old TP/FP/FN':>13s} {'new TP/FP/FN':>13s} {'F1 old':>7s} "
        f"{'new':>6s} {'amp err old':>11s} {'new':>6s} {'splits':>6s} {'fit ms p50/p99':>15s}"
    )
    for fs in rates:
        old_on, old_amp, new_on, new_amp, t_on, t_amp, opt = [], [], [], [], [], [], []
        ms: list[float] = []
        n_split = 0
        for k, seed in enumerate(range(first_seed, first_seed + n_seeds)):
            rec = simulate_wearable_eda(fs, 20.0, seed, wearable_config(seed))
            scrs, flags = detector_run(rec.eda_us, fs)
            # clean: fit the noise-free, unquantised curve (same detector SCRs): is the
            # limit the noise or the shape model?
            fit_x = rec.clean_us if clean else rec.eda_us
            on, amp, split, fm = post(fit_x, fs, scrs, flags, **kw)
            off = k * 10_000.0
            old_on.append(scrs["onset"] / fs + off)
            old_amp.append(scrs["amplitude"])
            new_on.append(on + off)
            new_amp.append(amp)
            n_split += int(split.sum()) // 2
            ms += fm
            s = rec.scrs
            t_on.append(s["onset_s"] + off)
            t_amp.append(s["amplitude"])
            opt.append(s["near_artifact"] | s["masked"])
        tr = np.concatenate(t_on), np.concatenate(t_amp)
        o = np.concatenate(opt)
        a = score_scrs(np.concatenate(old_on), np.concatenate(old_amp), *tr, optional=o)
        b = score_scrs(np.concatenate(new_on), np.concatenate(new_amp), *tr, optional=o)
        print(
            f"{fs:5g} {a.n_truth:4d} {a.tp:4d}/{a.fp:3d}/{a.fn:3d} {b.tp:5d}/{b.fp:3d}/{b.fn:3d} "
            f"{a.f1:7.3f} {b.f1:6.3f} {a.amp_err_median:11.3f} {b.amp_err_median:6.3f} "
            f"{n_split:6d} {np.percentile(ms, 50):7.1f}/{np.percentile(ms, 99):6.1f}"
        )


def real(**kw) -> None:
    d = np.load(DATA)
    fs = float(d["fs"])
    x = d["eda"].astype(np.float64)
    events = np.flatnonzero(d["stim"])
    scrs, flags = detector_run(x, fs)
    on, amp, split, ms = post(x, fs, scrs, flags, **kw)
    new = np.zeros(on.size, dtype=scrs.dtype)
    new["onset"] = np.round(on * fs).astype(np.int64)
    new["amplitude"] = amp
    order = np.argsort(new["onset"], kind="stable")
    new = new[order]
    er_old = event_related_scr(scrs, events, fs)
    er_new = event_related_scr(new, events, fs)
    print(
        f"systole: responses {int(er_old['responded'].sum())} -> {int(er_new['responded'].sum())}, "
        f"SCRs {len(scrs)} -> {len(new)} ({int(split.sum()) // 2} splits), "
        f"fit ms p50 {np.percentile(ms, 50):.1f}"
    )


def causal_check(fs: float = 16.0, seed: int = 1, cut_s: float = 600.0, **kw) -> None:
    """The reports of SCRs confirmed before a cut must not change when the rest is cut off."""
    rec = simulate_wearable_eda(fs, 20.0, seed, wearable_config(seed))
    cut = int(cut_s * fs)
    runs = []
    for x in (rec.eda_us, rec.eda_us[:cut]):
        scrs, flags = detector_run(x, fs)
        f = SplitFitter(x, fs, flags, **kw)
        runs.append([f.process(s) for s in scrs if s["confirmed"] < cut])
    same = runs[0] == runs[1]
    print(f"causal check ({fs:g} Hz, cut at {cut_s:g} s): {len(runs[1])} SCRs, identical: {same}")
    if not same:
        raise SystemExit("causal check failed")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[4.0, 16.0, 100.0])
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument(
        "--rss-ratio", type=float, default=0.0, help="split when RSS2 < this x RSS1 (0: never)"
    )
    ap.add_argument("--min-amp", type=float, default=0.015)
    ap.add_argument("--refit-onset", choices=("none", "prev", "all", "avg"), default="avg")
    ap.add_argument("--no-prev", action="store_true")
    ap.add_argument("--decay-taus", type=float, nargs="*", default=[2.0, 5.0])
    ap.add_argument("--real", action="store_true")
    ap.add_argument("--causal-check", action="store_true")
    ap.add_argument("--clean", action="store_true", help="fit the noise-free curve (diagnostic)")
    args = ap.parse_args(argv)
    kw = {
        "rss_ratio": args.rss_ratio,
        "min_amp": args.min_amp,
        "refit_onset": args.refit_onset,
        "use_prev": not args.no_prev,
        "decay_taus": tuple(args.decay_taus),
    }
    wearable(args.rates, args.first_seed, args.seeds, clean=args.clean, **kw)
    if args.real:
        real(**kw)
    if args.causal_check:
        causal_check(**kw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
