"""Alpha phase: stimloop's causal Wiener phase estimator vs three published baselines.

All methods run on the same points of the same real recording
(``../shared/data/eeg/eegmat_subject00_rest.edf``, Hjorth derivations at C3, O2 and Pz)
and are scored against the field's ground truth (README of the data folder: Butterworth
order 4 at IAF ± 2 Hz, ``sosfiltfilt`` over the whole recording, Hilbert, first/last 2 s
ignored). IAFs are the README's (9.5 Hz at C3, 10.5 Hz at O2 and Pz), the ones behind
its phastimate reference figures.

Baselines, reimplemented from the papers' descriptions (no code copied):

- **phastimate** (Zrenner et al. 2020, NeuroImage 214:116761; Zrenner et al. 2018):
  last 750 ms, zero-phase FIR band-pass IAF ± 1 Hz (window method, order 192 at 1 kHz),
  ``edge`` samples cut at both ends (64 at 1 kHz), Yule-Walker AR(30) fitted to the rest,
  forward prediction by ``edge + hilbert/2`` samples, Hilbert transform of the last
  ``hilbert`` samples (128 at 1 kHz), phase at the sample of "now". Rescaled to the
  sampling rate.
- **ecHT** (Schreglmann et al. 2021, Nat Commun 12:363): endpoint-corrected Hilbert
  transform: FFT of the last 500 ms, analytic spectrum (negative frequencies zeroed,
  positive doubled), multiplied by the frequency response of a *causal* 2nd-order
  Butterworth band-pass (IAF ± 2 Hz), inverse FFT; the phase of the last sample.
- **ETP** (Shirinpour et al. 2020, J Neural Eng 17:046002): educated temporal
  prediction: from training data (the first 30 s) learn the mean inter-peak interval of
  the band-passed signal; in real time, band-pass the last 500 ms (zero-phase FIR,
  IAF ± 1 Hz), find the most recent peak that is not in the distorted edge, and
  extrapolate phase linearly from it with the learned period; the learned phase bias on
  the training data is subtracted ("educated").

Forecasts: at every evaluation point, each method predicts when the phase will next be
0 (peak) and π (trough), at least 20 ms ahead; forecasts 20–100 ms ahead are scored by
the circular SD of the *true* phase at the forecast time. The baselines extrapolate their
phase at the IAF (ETP at its learned period); stimloop uses
``PhaseEstimator.next_target_time``.

Confidence gate: for the protocol's ``min_confidence`` choices, the share of samples
that pass each gate and their error (circular SD, share beyond ±90°).

Cost: per-update time at 1 kHz with 10 ms chunks (stimloop) and per-estimate time of
each baseline at 1 kHz (one estimate per 10 ms update), on eegmat C3 upsampled to 1 kHz.

Usage: ``python bench/phase.py [--json] [--step-ms 10]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import mne
import numpy as np
import scipy.linalg
import scipy.signal

from stimloop.dsp.phase import PhaseEstimator
from stimloop.dsp.spatial import hjorth

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "eeg"
CHANNELS = {"C3": 9.5, "O2": 10.5, "Pz": 10.5}
REF_PHASTIMATE = {"C3": (55.7, 38.3), "O2": (30.8, 17.6), "Pz": (39.1, 22.8)}


# --------------------------------------------------------------------------- baselines
class Phastimate:
    """Zrenner et al. 2020 defaults, rescaled from 1 kHz to ``fs``."""

    name = "phastimate"

    def __init__(self, fs: float, iaf: float) -> None:
        k = fs / 1000.0
        self.win = round(750 * k)
        order = 2 * round(96 * k)  # 192 at 1 kHz, even
        self.edge = round(64 * k)
        self.hw = 2 * round(64 * k)
        self.ar = 30
        self.b = scipy.signal.firwin(order + 1, [iaf - 1, iaf + 1], pass_zero=False, fs=fs)
        self.freq = iaf

    def phase(self, x: np.ndarray, t: int) -> float:
        seg = x[t - self.win + 1 : t + 1]
        y = scipy.signal.filtfilt(self.b, [1.0], seg)[self.edge : -self.edge]
        n = y.size
        r = np.array([np.dot(y[: n - k], y[k:]) / n for k in range(self.ar + 1)])
        a = scipy.linalg.solve_toeplitz(r[: self.ar], r[1:])
        npred = self.edge + self.hw // 2
        buf = np.concatenate((y, np.zeros(npred)))
        for i in range(n, n + npred):
            buf[i] = np.dot(a, buf[i - 1 : i - self.ar - 1 : -1])
        an = scipy.signal.hilbert(buf[-self.hw :])
        return float(np.angle(an[self.hw // 2 - 1]))


class ECHT:
    """Schreglmann et al. 2021: endpoint-corrected Hilbert transform, 500 ms window."""

    name = "ecHT"

    def __init__(self, fs: float, iaf: float, half_bw: float = 2.0) -> None:
        self.win = round(0.5 * fs)
        b, a = scipy.signal.butter(2, [iaf - half_bw, iaf + half_bw], "bandpass", fs=fs)
        n = self.win
        f = np.fft.fftfreq(n, 1.0 / fs)
        _, h = scipy.signal.freqz(b, a, worN=np.abs(f), fs=fs)
        gain = np.zeros(n)
        gain[f > 0] = 2.0
        gain[0] = 1.0
        if n % 2 == 0:
            gain[n // 2] = 1.0
        self.mult = gain * h
        self.freq = iaf

    def phase(self, x: np.ndarray, t: int) -> float:
        seg = x[t - self.win + 1 : t + 1]
        z = np.fft.ifft(np.fft.fft(seg) * self.mult)
        return float(np.angle(z[-1]))


class ETP:
    """Shirinpour et al. 2020: educated temporal prediction."""

    name = "ETP"

    def __init__(self, fs: float, iaf: float, train: np.ndarray) -> None:
        self.fs = fs
        self.win = round(0.5 * fs)
        order = 2 * round(96 * fs / 1000.0)
        self.b = scipy.signal.firwin(order + 1, [iaf - 1, iaf + 1], pass_zero=False, fs=fs)
        self.edge = round(0.04 * fs)  # peaks in the last 40 ms are distorted by the edge
        y = scipy.signal.filtfilt(self.b, [1.0], train)
        pk, _ = scipy.signal.find_peaks(y)
        ipi = np.diff(pk)
        ipi = ipi[(ipi > fs / 14.0) & (ipi < fs / 7.0)]
        self.period = float(np.mean(ipi))  # samples
        self.freq = fs / self.period
        # Educated bias: the mean error of the prediction rule on the training data.
        truth = np.angle(scipy.signal.hilbert(y))
        self.bias = 0.0
        pts = np.arange(self.win, train.size - self.win, max(1, round(0.01 * fs)))
        errs = [self.phase(train, t) - truth[t] for t in pts]
        self.bias = float(np.angle(np.mean(np.exp(1j * np.array(errs)))))

    def phase(self, x: np.ndarray, t: int) -> float:
        seg = x[t - self.win + 1 : t + 1]
        y = scipy.signal.filtfilt(self.b, [1.0], seg, padlen=min(3 * self.b.size, self.win - 1))
        pk, _ = scipy.signal.find_peaks(y[: self.win - self.edge])
        if pk.size == 0:
            return np.nan
        since = (self.win - 1) - pk[-1]
        return float(np.angle(np.exp(1j * (2 * np.pi * since / self.period - self.bias))))


# --------------------------------------------------------------------------- scoring
def circ(err: np.ndarray) -> tuple[float, float]:
    """Circular SD and mean of angles in degrees."""
    m = np.mean(np.exp(1j * err))
    return float(np.degrees(np.sqrt(-2 * np.log(np.abs(m))))), float(np.degrees(np.angle(m)))


def forecast_phase(ph_now: float, freq: float, target: float) -> float:
    """Seconds until ``target`` by linear extrapolation at ``freq``, at least 20 ms ahead."""
    tau = np.mod(target - ph_now, 2 * np.pi) / (2 * np.pi * freq)
    while tau < 0.02:
        tau += 1.0 / freq
    return tau


def true_at(ph_unwrapped: np.ndarray, fs: float, t_s: float) -> float:
    """Ground-truth phase at time t_s (s from the first sample), linear interpolation."""
    return float(np.interp(t_s * fs, np.arange(ph_unwrapped.size), ph_unwrapped))


def run_channel(fs: float, x: np.ndarray, iaf: float, step: int) -> dict:
    sos = scipy.signal.butter(4, [iaf - 2, iaf + 2], "bandpass", fs=fs, output="sos")
    a = scipy.signal.hilbert(scipy.signal.sosfiltfilt(sos, x))
    truth, amp = np.angle(a), np.abs(a)
    unwrapped = np.unwrap(truth)
    # Evaluation points at the last sample of each streamed chunk of `step` samples.
    pts = np.arange(int(2 * fs) + step - 1, x.size - int(2 * fs), step)
    methods = [Phastimate(fs, iaf), ECHT(fs, iaf), ETP(fs, iaf, x[: int(30 * fs)])]
    est = {m.name: np.array([m.phase(x, t) for t in pts]) for m in methods}
    freqs = {m.name: m.freq for m in methods}
    # stimloop: stream in chunks of `step` samples, read the phase at each chunk's end.
    for label, band in (("stimloop", (iaf - 2, iaf + 2)), ("stimloop auto-IAF", None)):
        pe = PhaseEstimator(fs, band)
        ph = np.full(pts.size, np.nan)
        fc = {0.0: np.full(pts.size, np.nan), np.pi: np.full(pts.size, np.nan)}
        ts = np.arange(x.size) / fs
        j = 0
        for i in range(0, pts[-1] + 1, step):
            end = min(i + step, x.size)
            out = pe.update(x[i:end], ts[i:end])
            while j < pts.size and pts[j] < end:
                if pts[j] == end - 1:
                    ph[j] = out.phase_rad[-1]
                    for target in fc:
                        fc[target][j] = pe.next_target_time(target, min_lead_s=0.02)[0]
                j += 1
        est[label] = ph
        freqs[label] = fc
    valid = np.all([np.isfinite(v) for v in est.values() if isinstance(v, np.ndarray)], axis=0)
    top = amp[pts] >= np.median(amp[pts])
    res = {}
    for name, ph in est.items():
        err = np.angle(np.exp(1j * (ph - truth[pts])))
        sd_all, m_all = circ(err[valid])
        sd_top, m_top = circ(err[valid & top])
        fres = {}
        for target in (0.0, np.pi):
            hits = []
            for k in np.flatnonzero(valid):
                t_now = pts[k] / fs
                if isinstance(freqs[name], dict):
                    t_hit = freqs[name][target][k]
                else:
                    t_hit = t_now + forecast_phase(ph[k], freqs[name], target)
                if np.isfinite(t_hit) and t_hit - t_now <= 0.1 and t_hit * fs < x.size - 1:
                    hits.append(true_at(unwrapped, fs, t_hit) - target)
            sd, mean = circ(np.array(hits))
            fres["peak" if target == 0.0 else "trough"] = {
                "sd_deg": sd,
                "mean_deg": mean,
                "n": len(hits),
            }
        res[name] = {
            "all": {"sd_deg": sd_all, "mean_deg": m_all},
            "top50": {"sd_deg": sd_top, "mean_deg": m_top},
            "forecast": fres,
        }
    res["_n_points"] = int(valid.sum())
    return res


#: Confidence gates tabulated by :func:`gate_table` (the protocol's ``min_confidence``).
GATES = (0.0, 0.5, 0.6, 0.7, 0.8)


def gate_table(fs: float, x: np.ndarray, iaf: float) -> dict:
    """What a confidence gate buys: for each gate in :data:`GATES`, the fraction of
    samples that pass it and their phase error (circular SD and mean, deg; share of
    errors beyond ±90°, %) against the README's ground truth. The estimator streams the
    whole recording (IAF tracked), as in a session."""
    sos = scipy.signal.butter(4, [iaf - 2, iaf + 2], "bandpass", fs=fs, output="sos")
    truth = np.angle(scipy.signal.hilbert(scipy.signal.sosfiltfilt(sos, x)))
    out = PhaseEstimator(fs).update(x)
    inner = slice(int(2 * fs), x.size - int(2 * fs))
    err = np.angle(np.exp(1j * (out.phase_rad[inner] - truth[inner])))
    conf = out.confidence[inner]
    valid = np.isfinite(err)
    rows = {}
    for gate in GATES:
        passed = valid & (conf >= gate)
        sd, mean = circ(err[passed])
        rows[f"{gate:g}"] = {
            "fraction": float(passed.sum() / valid.sum()),
            "sd_deg": sd,
            "mean_deg": mean,
            "beyond_90_pct": float(100 * np.mean(np.abs(err[passed]) > np.pi / 2)),
        }
    return rows


def cost_1khz(x500: np.ndarray, iaf: float) -> dict:
    """Mean / median / p99 / max µs per update at 1 kHz with 10 ms chunks."""
    fs = 1000.0
    x = scipy.signal.resample_poly(x500, 2, 1)[: int(120 * fs)]
    out = {}
    pe = PhaseEstimator(fs, (iaf - 2, iaf + 2))
    ts = []
    for i in range(0, x.size, 10):
        t0 = time.perf_counter()
        pe.update(x[i : i + 10])
        ts.append(time.perf_counter() - t0)
    out["stimloop"] = np.array(ts[200:]) * 1e6  # after the first 2 s of calibration
    for m in (Phastimate(fs, iaf), ECHT(fs, iaf), ETP(fs, iaf, x[: int(30 * fs)])):
        ts = []
        for t in range(1000, 31000, 10):
            t0 = time.perf_counter()
            m.phase(x, t)
            ts.append(time.perf_counter() - t0)
        out[m.name] = np.array(ts) * 1e6
    return {
        k: {
            "mean_us": float(v.mean()),
            "median_us": float(np.median(v)),
            "p99_us": float(np.percentile(v, 99)),
            "max_us": float(v.max()),
        }
        for k, v in out.items()
    }


def sim_sweep(iafs=(8.0, 9.0, 10.0, 11.0, 12.0, 13.0), snrs=(-10.0, -5.0, 0.0, 5.0, 10.0)):
    """Circular SD (deg) vs the simulator's known source phase across IAF and SNR.

    ``devices.sim.eeg.EEGGenerator`` (19 channels, 500 Hz, alpha source under C3), 60 s
    per cell, Hjorth at C3, scored after 10 s. stimloop tracks the IAF itself;
    phastimate is given the true IAF (± 1 Hz) and is evaluated every 20 ms.
    """
    from stimloop.devices.sim.eeg import EEGGenerator

    fs = 500.0
    out = {}
    for snr in snrs:
        for iaf in iafs:
            gen = EEGGenerator(
                fs=fs, n_channels=19, iaf_hz=iaf, target="C3", seed=11, alpha_snr_db=snr
            )
            eeg, truth = gen.generate(int(60 * fs))
            x = hjorth(eeg, gen.labels, "C3")
            o = PhaseEstimator(fs).update(x)
            s = slice(int(10 * fs), None)
            sd_sl, mean_sl = circ(o.phase_rad[s] - truth[s, 0])
            pts = np.arange(int(10 * fs), x.size, int(0.02 * fs))
            pe = Phastimate(fs, iaf)
            sd_ph, _ = circ(np.array([pe.phase(x, t) for t in pts]) - truth[pts, 0])
            out[f"{snr:g}dB_{iaf:g}Hz"] = {
                "snr_db": snr,
                "iaf_hz": iaf,
                "stimloop_sd_deg": sd_sl,
                "stimloop_mean_deg": mean_sl,
                "phastimate_sd_deg": sd_ph,
                "confidence_mean": float(np.nanmean(o.confidence[s])),
            }
    return out


def write_figures(folder: Path, results: dict) -> None:
    """PNG figures for docs/phase.md (matplotlib, only needed for this option)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    sw = results["sim"]
    iafs = sorted({v["iaf_hz"] for v in sw.values()})
    snrs = sorted({v["snr_db"] for v in sw.values()})
    fig, ax = plt.subplots(figsize=(6, 4))
    for iaf in iafs:
        ax.plot(
            snrs,
            [sw[f"{s:g}dB_{iaf:g}Hz"]["stimloop_sd_deg"] for s in snrs],
            "o-",
            label=f"stimloop {iaf:g} Hz",
        )
    ph = [np.mean([sw[f"{s:g}dB_{i:g}Hz"]["phastimate_sd_deg"] for i in iafs]) for s in snrs]
    ax.plot(snrs, ph, "k--", lw=2, label="phastimate (mean over IAF)")
    ax.set_xlabel("alpha SNR at the target electrode (dB)")
    ax.set_ylabel("circular SD of phase error (deg)")
    ax.set_title("Simulated EEG: error vs known source phase")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "phase_sim_error.png", dpi=110)
    plt.close(fig)
    names = ["stimloop", "phastimate", "ecHT", "ETP"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), sharey=True)
    for ax, key in zip(axes, ("all", "top50"), strict=True):
        for k, n in enumerate(names):
            vals = [results["channels"][c][n][key]["sd_deg"] for c in CHANNELS]
            ax.bar(np.arange(3) + 0.2 * k - 0.3, vals, 0.2, label=n)
        ax.set_xticks(range(3), list(CHANNELS))
        ax.set_title("all points" if key == "all" else "top-50 % amplitude")
    axes[0].set_ylabel("circular SD of phase error (deg)")
    axes[1].legend(fontsize=7)
    fig.suptitle("eegmat subject 0, Hjorth derivations")
    fig.tight_layout()
    fig.savefig(folder / "phase_real_error.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print machine-readable figures")
    ap.add_argument("--step-ms", type=float, default=10.0, help="evaluation step in ms")
    ap.add_argument("--sim", action="store_true", help="also run the simulated IAF x SNR sweep")
    ap.add_argument("--figures", type=Path, help="write PNG figures to this folder (implies --sim)")
    ap.add_argument("--from-json", type=Path, help="print the table of a saved --json run")
    args = ap.parse_args(argv)
    if args.from_json:
        print_table(json.loads(args.from_json.read_text()))
        return 0
    raw = mne.io.read_raw_edf(DATA / "eegmat_subject00_rest.edf", preload=True, verbose=False)
    fs = raw.info["sfreq"]
    data = raw.get_data().T * 1e6
    step = max(1, round(args.step_ms * fs / 1000.0))
    results = {"fs_hz": fs, "step_ms": args.step_ms, "channels": {}}
    for ch, iaf in CHANNELS.items():
        results["channels"][ch] = run_channel(fs, hjorth(data, raw.ch_names, ch), iaf, step)
    results["cost_1khz_10ms"] = cost_1khz(hjorth(data, raw.ch_names, "C3"), 9.5)
    results["gates"] = {
        ch: gate_table(fs, hjorth(data, raw.ch_names, ch), iaf) for ch, iaf in CHANNELS.items()
    }
    # Low-alpha contrast: confidence on eyes-open O2 vs eegmat O2 (default: IAF tracked).
    eo = mne.io.read_raw_edf(DATA / "eegmmidb_s001r01_eyes_open.edf", preload=True, verbose=False)
    conf = {}
    for label, (rate, d, names) in {
        "eegmat O2 (rest)": (fs, data, raw.ch_names),
        "eegmmidb O2 (eyes open)": (eo.info["sfreq"], eo.get_data().T * 1e6, eo.ch_names),
    }.items():
        o = PhaseEstimator(rate).update(hjorth(d, names, "O2"))
        c = o.confidence[np.isfinite(o.phase_rad)]
        conf[label] = {"mean": float(c.mean()), "frac_above_0.5": float(np.mean(c > 0.5))}
    results["confidence"] = conf
    if args.sim or args.figures:
        results["sim"] = sim_sweep()
    if args.figures:
        write_figures(args.figures, results)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return 0
    print_table(results)
    return 0


def print_table(results: dict) -> None:
    """Print the side-by-side tables of one run."""
    fs = results["fs_hz"]
    conf = results["confidence"]
    args = argparse.Namespace(step_ms=results["step_ms"])
    names = ["stimloop", "stimloop auto-IAF", "phastimate", "ecHT", "ETP"]
    print(f"Phase error vs ground truth, eegmat subject 0, {fs:g} Hz, every {args.step_ms:g} ms")
    print("circular SD / circular mean in degrees (all points | top-50 % amplitude)\n")
    for ch in CHANNELS:
        r = results["channels"][ch]
        ref = REF_PHASTIMATE[ch]
        print(
            f"{ch} (Hjorth, IAF {CHANNELS[ch]} Hz, {r['_n_points']} points; "
            f"target <= {0.85 * ref[0]:.1f} | {0.85 * ref[1]:.1f}, README phastimate "
            f"{ref[0]} | {ref[1]})"
        )
        print(f"  {'method':<18}{'all':>16}{'top-50%':>16}   {'forecast peak':>16}{'trough':>16}")
        for n in names:
            m = r[n]
            fp, ft = m["forecast"]["peak"], m["forecast"]["trough"]
            print(
                f"  {n:<18}{m['all']['sd_deg']:>8.1f} /{m['all']['mean_deg']:>5.1f}"
                f"{m['top50']['sd_deg']:>10.1f} /{m['top50']['mean_deg']:>5.1f}   "
                f"{fp['sd_deg']:>9.1f} /{fp['mean_deg']:>5.1f}{ft['sd_deg']:>10.1f} /"
                f"{ft['mean_deg']:>5.1f}"
            )
        print()
    print("Cost at 1 kHz, 10 ms chunks (stimloop per update; baselines per estimate), µs")
    print(f"  {'method':<12}{'mean':>8}{'median':>8}{'p99':>8}{'max':>9}")
    for n, c in results["cost_1khz_10ms"].items():
        print(
            f"  {n:<12}{c['mean_us']:>8.1f}{c['median_us']:>8.1f}{c['p99_us']:>8.1f}"
            f"{c['max_us']:>9.1f}"
        )
    print("\nConfidence (stimloop, IAF tracked): mean, fraction of samples > 0.5")
    for k, v in conf.items():
        print(f"  {k:<26}{v['mean']:>7.3f}{v['frac_above_0.5']:>8.3f}")
    if "gates" in results:
        print("\nConfidence gate (min_confidence): share of samples passing | circular SD deg "
              "| share of errors beyond ±90° %")  # fmt: skip
        print(f"  {'gate':<6}" + "".join(f"{ch:>24}" for ch in results["gates"]))
        for gate in (f"{g:g}" for g in GATES):
            cells = [results["gates"][ch][gate] for ch in results["gates"]]
            print(f"  {gate:<6}" + "".join(
                f"{c['fraction']:>8.2f} |{c['sd_deg']:>6.1f} |{c['beyond_90_pct']:>6.2f}"
                for c in cells))  # fmt: skip
    if "sim" in results:
        sw = results["sim"]
        iafs = sorted({v["iaf_hz"] for v in sw.values()})
        print(
            "\nSimulated EEG (EEGGenerator, Hjorth C3): circular SD in deg, stimloop | phastimate"
        )
        print("  SNR dB " + "".join(f"{i:>14g} Hz" for i in iafs))
        for snr in sorted({v["snr_db"] for v in sw.values()}):
            cells = [sw[f"{snr:g}dB_{i:g}Hz"] for i in iafs]
            print(
                f"  {snr:>6g} "
                + "".join(
                    f"{c['stimloop_sd_deg']:>8.1f} |{c['phastimate_sd_deg']:>6.1f}" for c in cells
                )
            )


if __name__ == "__main__":
    raise SystemExit(main())
