"""Phase-locked single-pulse TMS: fire at a chosen phase of the alpha/mu rhythm.

Each EEG chunk goes through the Hjorth derivation at the target electrode and the
causal :class:`~stimloop.dsp.phase.PhaseEstimator`. When the inter-pulse interval has
passed and the amplitude and confidence gates are open, the estimator forecasts the next
time the rhythm reaches the target phase; if that time is within the allowed lead, the
pulse is requested for the forecast time minus the stimulator's known trigger latency.
The *random-phase* control condition draws the target phase uniformly for every pulse
(Zrenner et al. 2018 used such a control against mu-phase-triggered TMS).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from stimloop.dsp.phase import PhaseEstimator
from stimloop.dsp.spatial import hjorth_weights
from stimloop.loop.config import ChannelRoles, DSPConfig, PhaseLockedConfig
from stimloop.loop.protocol import Decision, Hold, PulseOutcome, PulseRequest
from stimloop.stream.outlet import Outlet, channel_specs


class PhaseLockedProtocol:
    """Phase-locked TMS protocol (see module docstring).

    Parameters
    ----------
    cfg : PhaseLockedConfig
        Target phase, gates, intervals, pulse count, control condition.
    channels : ChannelRoles
        Target electrode and optional Hjorth neighbours.
    dsp : DSPConfig
        Phase band (None: tracked IAF ± 2 Hz).
    seed : int
        Seed of the jitter and of the random-phase control.
    """

    name = "phase_locked"

    def __init__(
        self, cfg: PhaseLockedConfig, channels: ChannelRoles, dsp: DSPConfig, seed: int = 0
    ) -> None:
        self.cfg = cfg
        self.channels = channels
        self.dsp = dsp
        self._rng = np.random.default_rng(seed)
        self.estimator: PhaseEstimator | None = None
        self.weights: np.ndarray | None = None
        self.neighbours: tuple[str, ...] = ()
        self.requested = 0
        self.delivered = 0
        self._pending = False
        self._next_allowed = -math.inf
        self._last_hold = ""
        # The last second of per-sample estimates, to log the estimate at each fire time.
        self._hist_t = np.full(1, np.nan)
        self._hist_phase = np.full(1, np.nan)
        self._hist_n = 0
        #: (phase rad, amplitude µV, confidence) at the newest sample, for display.
        self.last_estimate = (math.nan, math.nan, 0.0)

    @property
    def done(self) -> bool:
        """True once ``n_pulses`` pulses have been delivered."""
        return self.delivered >= self.cfg.n_pulses

    def start(self, fs: float, channel_labels: Sequence[str]) -> None:
        """Build the spatial filter and the phase estimator, and warm the kernels up."""
        nmap = None
        if self.channels.eeg_neighbours is not None:
            nmap = {self.channels.eeg_target: tuple(self.channels.eeg_neighbours)}
        self.weights, self.neighbours = hjorth_weights(
            channel_labels, self.channels.eeg_target, nmap
        )
        self.estimator = PhaseEstimator(fs, self.dsp.phase_band_hz)
        self.estimator.warmup()
        self._hist_t = np.full(round(fs), np.nan)
        self._hist_phase = np.full(round(fs), np.nan)

    def update(self, data: np.ndarray, timestamps: np.ndarray, first_index: int) -> Decision:
        """Run the estimator on a chunk and decide whether to request a pulse."""
        x = data @ self.weights
        out = self.estimator.update(x, timestamps)
        self._remember(timestamps, out.phase_rad)
        self.last_estimate = (
            float(out.phase_rad[-1]),
            float(out.amplitude[-1]),
            float(out.confidence[-1]),
        )
        if self._pending or self.done:
            return None
        now = float(timestamps[-1])
        if now < self._next_allowed:
            return None
        amp, conf = float(out.amplitude[-1]), float(out.confidence[-1])
        if not math.isfinite(out.phase_rad[-1]):
            return self._hold("no_estimate", {})
        if conf < self.cfg.min_confidence:
            return self._hold("low_confidence", {"confidence": conf})
        if amp < self.cfg.min_amplitude_uv:
            return self._hold("low_amplitude", {"amplitude_uv": amp})
        if self.cfg.control == "random_phase":
            target = float(self._rng.uniform(-math.pi, math.pi))
        else:
            target = math.radians(self.cfg.target_phase_deg)
        latency = self.cfg.trigger_latency_s
        t_target, unc = self.estimator.next_target_time(target, self.cfg.min_lead_s + latency)
        if not math.isfinite(t_target) or t_target - now > self.cfg.max_lead_s + latency:
            return None  # the next crossing is too far ahead; a later chunk is closer
        self._last_hold = ""
        self._pending = True
        self.requested += 1
        return PulseRequest(
            t_target - latency,
            {
                "target_phase_rad": target,
                "phase_now_rad": float(out.phase_rad[-1]),
                "amplitude_uv": amp,
                "confidence": conf,
                "horizon_s": t_target - now,
                "forecast_sd_s": unc,
                "t_last_sample": now,
                "control": self.cfg.control,
            },
        )

    def _hold(self, reason: str, info: dict) -> Decision:
        # Report a gate only when its state changes, not on every chunk.
        if reason == self._last_hold:
            return None
        self._last_hold = reason
        return Hold(reason, info)

    def _remember(self, stamps: np.ndarray, phase: np.ndarray) -> None:
        size = self._hist_t.size
        idx = (self._hist_n + np.arange(stamps.size)) % size
        self._hist_t[idx] = stamps
        self._hist_phase[idx] = phase
        self._hist_n += stamps.size

    def phase_at(self, t: float) -> float:
        """The estimate at the sample nearest LSL time ``t`` within the last second.

        NaN when ``t`` is newer than the newest sample or older than the history.
        """
        ts = self._hist_t
        if self._hist_n == 0 or not np.nanmin(ts) - 1e-9 <= t <= np.nanmax(ts) + 1e-9:
            return math.nan
        return float(self._hist_phase[int(np.nanargmin(np.abs(ts - t)))])

    def outcome(self, result: PulseOutcome) -> None:
        """Start the next inter-pulse interval (after a fire or a refusal)."""
        t = result.t_trigger if result.fired else (result.request.t_fire or 0.0)
        if result.fired:
            self.delivered += 1
        jitter = float(self._rng.uniform(0.0, self.cfg.jitter_s)) if self.cfg.jitter_s else 0.0
        self._next_allowed = t + self.cfg.min_ipi_s + jitter
        self._pending = False


def phase_outlet(protocol: PhaseLockedProtocol, name: str, source_id: str) -> Outlet:
    """The outlet on which the engine publishes the protocol's phase estimate.

    One irregular (rate 0) float64 stream of three channels: ``phase`` (rad; 0 = positive
    peak, ±π = trough; NaN until the estimator is calibrated), ``amplitude`` (envelope,
    µV) and ``confidence`` (0-1). The :class:`~stimloop.loop.engine.Engine` pushes
    :attr:`PhaseLockedProtocol.last_estimate` once per EEG chunk, stamped with the LSL
    time (s) of the chunk's newest sample. The stream's description records the target
    electrode, its Hjorth neighbours, the band and the phase convention.

    Parameters
    ----------
    protocol : PhaseLockedProtocol
        A started protocol (its Hjorth neighbours are known).
    name : str
        LSL stream name.
    source_id : str
        LSL source_id, ``{prefix}-phase`` in a session.

    Returns
    -------
    Outlet
        The open outlet; the caller closes it.
    """
    band = protocol.dsp.phase_band_hz
    return Outlet(
        name, "Phase", source_id,
        (*channel_specs(["phase"], "rad", "Phase"),
         *channel_specs(["amplitude"], "uV", "Amplitude"),
         *channel_specs(["confidence"], "", "Confidence")),
        0.0, "float64",
        extra_desc={
            "method": "causal Wiener filter for the analytic signal (stimloop.dsp.phase)",
            "target": protocol.channels.eeg_target,
            "hjorth_neighbours": ",".join(protocol.neighbours),
            "band_hz": "tracked IAF +/- 2" if band is None else f"{band[0]:g}-{band[1]:g}",
            "phase_convention": "0 = positive peak, +/-pi = trough",
        },
    )  # fmt: skip
