"""The phase stage: live alpha/mu phase, envelope and confidence from an EEG stream.

It forms the Hjorth derivation at the target electrode (default C3 with its neighbours,
:mod:`stimloop.dsp.spatial`), runs :class:`stimloop.dsp.phase.PhaseEstimator` on every
chunk and publishes:

=========================  ==================================================================
source_id                  content
=========================  ==================================================================
``{prefix}-phase``         regular stream, float64, at the EEG rate divided by ``decimate``
                           (default 1: every EEG sample, same timestamps): ``phase_rad``
                           (0 = positive peak, ±π = trough; NaN until calibrated),
                           ``amplitude`` (envelope, EEG unit), ``confidence`` (0-1)
=========================  ==================================================================

With ``decimate = k`` the stream carries the samples whose absolute index is a multiple
of k, stamped with their own EEG timestamps (rate ``fs / k``); the estimator itself
always runs on every sample, so decimation changes only what is published.

Samples the EEG stream lost (a gap in its timestamps) are fed as NaN, so the phase is
flagged invalid across a gap instead of being computed over missing data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stimloop.dsp.phase import PhaseEstimator
from stimloop.dsp.spatial import hjorth_weights
from stimloop.loop.stage import nan_fill, samples_missing
from stimloop.stream.errors import StreamError
from stimloop.stream.outlet import ChannelSpec, Outlet

#: Longest gap (s) bridged with NaN; a longer one restarts the estimator.
MAX_GAP_S = 10.0


def _circ_deg(err: np.ndarray) -> dict[str, float | int | None]:
    if err.size == 0:
        return {"sd_deg": None, "mean_deg": None, "n": 0}
    m = np.mean(np.exp(1j * err))
    return {
        "sd_deg": float(np.degrees(np.sqrt(-2 * np.log(max(np.abs(m), 1e-300))))),
        "mean_deg": float(np.degrees(np.angle(m))),
        "n": int(err.size),
    }


class PhaseStage:
    """DSP stage of the EEG role: causal alpha phase published over LSL.

    Parameters
    ----------
    target : str
        Target electrode (its Hjorth derivation is used).
    neighbours : mapping of str to sequence of str, optional
        Neighbour map; default 10-20 / 10-10 map from the stream's labels.
    band : (float, float), optional
        Pass band in Hz (e.g. IAF ± 2 Hz from a calibration); None tracks the IAF.
    decimate : int
        Publish every ``decimate``-th sample (1 = every EEG sample).
    forecast_targets : sequence of float
        Target phases in rad whose next occurrence is forecast after each chunk (kept
        for :meth:`score` and available as :attr:`last_forecasts`).
    """

    name = "phase"
    role = "eeg"

    def __init__(
        self,
        target: str = "C3",
        neighbours: Mapping[str, Sequence[str]] | None = None,
        band: tuple[float, float] | None = None,
        decimate: int = 1,
        forecast_targets: Sequence[float] = (0.0, np.pi),
    ) -> None:
        if int(decimate) < 1:
            raise ValueError(f"phase stage: decimate must be >= 1, got {decimate}")
        self.target = target
        self.neighbours = neighbours
        self.band = band
        self.decimate = int(decimate)
        self.forecast_targets = tuple(float(t) for t in forecast_targets)
        self.estimator: PhaseEstimator | None = None
        self._out: Outlet | None = None
        self.last_forecasts: dict[float, tuple[float, float]] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self, fs: float, channel_labels: Sequence[str], source_prefix: str) -> None:
        """Pick the Hjorth channels, build the estimator (kernel warm-up) and the outlet."""
        labels = list(channel_labels)
        try:
            w, used = hjorth_weights(labels, self.target, self.neighbours)
        except ValueError as exc:
            raise StreamError(f"phase stage: {exc}") from exc
        self._idx = np.flatnonzero(w)
        self._w = w[self._idx]
        self.used_neighbours = used
        self.fs = float(fs)
        self.estimator = PhaseEstimator(self.fs, self.band)
        self._out = Outlet(
            "stimloop alpha phase",
            "Phase",
            f"{source_prefix}-phase",
            (
                ChannelSpec("phase_rad", "rad", "Phase"),
                ChannelSpec("amplitude", "uV", "Envelope"),
                ChannelSpec("confidence", "", "Quality"),
            ),
            self.fs / self.decimate,
            "float64",
            extra_desc={
                "method": "causal Wiener filter for the analytic signal (stimloop.dsp.phase)",
                "target": self.target,
                "hjorth_neighbours": ",".join(used),
                "band_hz": "tracked IAF +/- 2" if self.band is None else f"{self.band}",
                "decimate": str(self.decimate),
                "phase_convention": "0 = positive peak, +/-pi = trough",
            },
        )
        self._n = 0  # absolute index of the next estimator sample
        self._last_t = np.nan
        self._t: list[np.ndarray] = []
        self._ph: list[np.ndarray] = []
        self._amp: list[np.ndarray] = []
        self._conf: list[np.ndarray] = []
        self._fc: list[tuple[float, ...]] = []

    def close(self) -> None:
        """Release the outlet."""
        if self._out is not None:
            self._out.close()
        self._out = None

    # ------------------------------------------------------------------ streaming
    def _feed(self, x: np.ndarray, stamps: np.ndarray) -> None:
        assert self.estimator is not None and self._out is not None
        out = self.estimator.update(x, stamps)
        self._t.append(stamps)
        self._ph.append(out.phase_rad)
        self._amp.append(out.amplitude)
        self._conf.append(out.confidence)
        keep = np.flatnonzero((self._n + np.arange(x.size)) % self.decimate == 0)
        self._n += x.size
        self._last_t = float(stamps[-1])
        if keep.size:
            rows = np.column_stack((out.phase_rad[keep], out.amplitude[keep], out.confidence[keep]))
            self._out.push(rows, float(stamps[keep[-1]]))

    def update(self, data: np.ndarray, timestamps: np.ndarray, first_index: int) -> None:
        """Consume one EEG chunk (``(n, n_channels)``, LSL-clock stamps in s)."""
        if self.estimator is None:
            raise StreamError("phase stage: update() before start()")
        n = data.shape[0]
        if n == 0:
            return
        x = np.asarray(data[:, self._idx], dtype=np.float64) @ self._w
        stamps = np.array(timestamps, dtype=np.float64)
        missing = samples_missing(self._last_t, stamps[0], self.fs)
        if missing > MAX_GAP_S * self.fs:
            self.estimator.reset()
        elif missing:
            self._feed(*nan_fill(self._last_t, missing, self.fs))
        self._feed(x, stamps)
        now = self._last_t
        fc = [now]
        for target in self.forecast_targets:
            t_hit, unc = self.estimator.next_target_time(target, min_lead_s=0.02)
            self.last_forecasts[target] = (t_hit, unc)
            fc.append(t_hit)
        self._fc.append(tuple(fc))

    # ------------------------------------------------------------------ scoring
    def score(self, truth: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Phase error against the simulator's alpha phase (``eeg_t``, ``eeg_phase_rad``).

        Returns
        -------
        dict
            ``phase_error_all`` and ``phase_error_top50`` (top-50 % true amplitude, if
            ``eeg_amplitude_uv`` is given): circular ``sd_deg``, ``mean_deg`` and ``n``
            over samples after calibration; ``forecast_peak`` / ``forecast_trough``: the
            same statistics of the true phase minus the target at forecast times 20-100 ms
            ahead; ``confidence_mean``; ``band_hz``; ``iaf_hz``.
        """
        t_true = np.asarray(truth.get("eeg_t", np.empty(0)), np.float64)
        ph_true = np.asarray(truth.get("eeg_phase_rad", np.empty(0)), np.float64)
        if self.estimator is None or not self._t or t_true.size < 2:
            return {"error": "no EEG or no truth received"}
        order = np.argsort(t_true)
        t_true, ph_true = t_true[order], np.unwrap(ph_true[order])
        t = np.concatenate(self._t)
        ph = np.concatenate(self._ph)
        conf = np.concatenate(self._conf)
        ok = np.isfinite(ph) & (t >= t_true[0]) & (t <= t_true[-1])
        err = np.angle(np.exp(1j * (ph[ok] - np.interp(t[ok], t_true, ph_true))))
        out: dict[str, Any] = {"phase_error_all": _circ_deg(err)}
        amp_true = truth.get("eeg_amplitude_uv")
        if amp_true is not None and np.size(amp_true) == t_true.size:
            a = np.interp(t[ok], t_true, np.asarray(amp_true, np.float64)[order])
            out["phase_error_top50"] = _circ_deg(err[a >= np.median(a)]) if a.size else None
        fc = np.array(self._fc, dtype=np.float64).reshape(-1, 1 + len(self.forecast_targets))
        for k, target in enumerate(self.forecast_targets):
            lead = fc[:, 1 + k] - fc[:, 0]
            sel = np.isfinite(lead) & (lead <= 0.1) & (fc[:, 1 + k] <= t_true[-1])
            sel &= fc[:, 0] >= t_true[0]
            e = np.interp(fc[sel, 1 + k], t_true, ph_true) - target
            key = {0.0: "forecast_peak", float(np.pi): "forecast_trough"}.get(
                target, f"forecast_{target:.3f}rad"
            )
            out[key] = _circ_deg(np.angle(np.exp(1j * e)))
        valid = np.isfinite(ph)
        out["confidence_mean"] = float(conf[valid].mean()) if valid.any() else None
        band = self.estimator.band
        out["band_hz"] = list(band) if band is not None else None
        iaf = self.estimator.iaf
        out["iaf_hz"] = float(iaf.iaf_hz) if np.isfinite(iaf.iaf_hz) else None
        out["target"] = self.target
        out["hjorth_neighbours"] = list(self.used_neighbours)
        return out
