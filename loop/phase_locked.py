"""Phase-locked single-pulse TMS: fire at a chosen phase of the alpha/mu rhythm.

Each EEG chunk goes through the Hjorth derivation at the target electrode and the
causal :class:`~stimloop.dsp.phase.PhaseEstimator`. When the inter-pulse interval has
passed and the amplitude and confidence gates are open, the estimator forecasts the next
time the rhythm reaches the target phase; if that time is within the allowed lead, the
pulse is requested for the forecast time minus the stimulator's known trigger latency.
The *random-phase* control condition draws the target phase uniformly for every pulse
(Zrenner et al. 2018 used such a control against mu-phase-triggered TMS).

Gaps in the EEG
---------------
The estimator's filter window and high-pass state must never be stitched across lost
samples: the phase right after the seam would be computed from two pieces of signal
that were never adjacent. The EEG inlet applies stimloop's one gap policy
(:class:`~stimloop.stream.inlet.Chunk`): up to its ``max_gap_s`` it bridges a gap with
NaN rows, and the estimator's own invalid-input logic applies: its output is NaN
(confidence 0) until a whole filter window (``taps_s``, 0.75 s) of post-gap samples has
arrived, its high-pass restarts on the first post-gap sample, and no autocorrelation
block or IAF segment that overlaps the gap is learned from. The learned spectrum is
kept, so the estimate is back after one filter window. A longer gap, or timestamps that
went back, arrive as a chunk with ``restart`` set, and the estimator starts over
(:meth:`PhaseEstimator.reset`), recalibrating on post-gap data only.

Either way the protocol publishes one ``eeg_gap`` hold per chunk with a gap and requests
nothing until the estimate at the newest sample is valid again. A pulse already planned
when a gap (or any invalid estimate) arrives is cancelled through :meth:`fire_veto`,
which the pulse scheduler asks right before the trigger.

Artifacts at the target
-----------------------
With ``artifact_gate`` (the default) an :class:`~stimloop.dsp.artifact.ArtifactDetector`
tests the Hjorth derivation (amplitude from its running level with an adaptive bound,
step per sample, range) and its raw channels (flat line: railed or disconnected) before
the estimator sees it. Marked samples, and ``artifact_hold_s`` after them, are replaced
by NaN: the estimator bridges them exactly like a gap, so they feed neither its
autocorrelation nor the IAF tracker, whatever their size, and its estimate is back one
filter window (0.75 s) after the hang-over, with the spectrum it had learned before.

An *episode* runs from the first marked sample until the estimate at the newest sample
is valid again; a new artifact within it extends it. Its onset is published as
``Hold("artifact", info)``: the criteria that fired (``kinds``), the largest distance
from the running level (``amplitude_uv``), step (``step_uv``) and value (``peak_uv``)
seen in the chunk, the thresholds in force, the LSL time of the first marked sample,
whether a pending pulse was vetoed, and the pulses delivered in the ``artifact_lookback_s``
before the onset (``pulses_before``). Its end is published once more, with
``ended: true`` and the episode's extremes, span and marked samples. Nothing is
requested in between.

The "before" margin cannot act on the samples: those before an onset were fed to the
estimator when they arrived, and marking them afterwards would make the outputs depend
on the future and on the chunking. It acts on what has not happened yet: a pending
pulse, planned on data up to the onset, is vetoed (:meth:`fire_veto`), and pulses
already delivered within the margin are named so that an analysis can set them aside.
The estimator itself restarts its filter window after the NaN, so no later estimate
uses a pre-onset sample; the only pre-onset samples it keeps are those of refit blocks
completed before the onset, and they were below every threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from stimloop.devices.registry import StimulatorSpec
from stimloop.devices.safety import SafeStimulator
from stimloop.dsp.artifact import HOLD, ArtifactDetector, ArtifactOutput, artifact_kinds
from stimloop.dsp.phase import PhaseEstimator, PhaseOutput
from stimloop.dsp.spatial import hjorth_weights
from stimloop.loop import catalog
from stimloop.loop.config import ChannelRoles, DSPConfig, PhaseLockedConfig
from stimloop.loop.errors import SessionError
from stimloop.loop.phase_calibration import AWAITING_CONFIRM, LOCKED, BandCalibration
from stimloop.loop.protocol import Decision, Hold, Notice, Prompt, PulseOutcome, PulseRequest
from stimloop.stream.events import Gap
from stimloop.stream.inlet import Chunk
from stimloop.stream.outlet import Outlet

#: Longest EEG gap (s) the session's EEG inlet bridges with NaN; a longer one restarts
#: the estimator. Bridging keeps the spectrum learned from this subject and montage, so
#: the estimate returns after one filter window (0.75 s) instead of a recalibration (2 s,
#: and ~20 s until the filter is as good). Its cost grows with the gap, on the real-time
#: thread: the kernel runs over the NaN samples and the filter is redesigned at the
#: skipped block ends (about 1 ms each); 10 s of NaN at 1 kHz measured 2.5 ms. A gap
#: longer than this is an interrupted acquisition (amplifier restart, reconnection)
#: after which the old spectrum is not to be trusted.
EEG_MAX_GAP_S = 10.0


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
    role = "eeg"
    reads_stages = False

    def __init__(
        self, cfg: PhaseLockedConfig, channels: ChannelRoles, dsp: DSPConfig, seed: int = 0
    ) -> None:
        self.cfg = cfg
        #: Pulses are planned at most this far ahead of the newest sample (s).
        self.max_lead_s = cfg.max_lead_s
        self.late_tolerance_s = cfg.late_tolerance_s
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
        self.fs = math.nan
        self._reconverging = False  # a gap was seen and the estimate is not yet back
        self._chunk_gap: dict | None = None  # the current chunk's gaps, for update()
        self._veto = ""  # why the pending pulse must not fire ("" = it may)
        #: Gaps bridged with NaN and gaps that restarted the estimator.
        self.gaps_bridged = 0
        self.gaps_restarted = 0
        #: The artifact detector (None with ``artifact_gate = false``), the samples it
        #: marked and the episodes seen.
        self.artifacts: ArtifactDetector | None = None
        self.artifact_samples = 0
        self.artifact_episodes = 0
        self._used = np.zeros(0, np.int64)  # the derivation's channels
        self._used_weights = np.zeros(0)
        self._episode: dict | None = None  # the running artifact episode
        self._episode_onset = False  # its onset is still to be published
        # Trigger times of the last pulses (LSL s); replaced whole, never mutated, since
        # outcome() runs on the pulse thread.
        self._recent_pulses: tuple[float, ...] = ()
        # The last second of per-sample estimates, to log the estimate at each fire time.
        self._hist_t = np.full(1, np.nan)
        self._hist_phase = np.full(1, np.nan)
        self._hist_n = 0
        #: (phase rad, amplitude µV, confidence) at the newest sample, for display.
        self.last_estimate: tuple[float, ...] | None = (math.nan, math.nan, 0.0)
        #: The session-start calibration of the band (None: a band was given, or
        #: ``calibration_s = 0``); see :mod:`stimloop.loop.phase_calibration`.
        self.calibration: BandCalibration | None = None
        self._notice: list[Decision] = []  # calibration decisions still to publish

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
        # Only the derivation's own channels: a NaN on a channel it does not use (an
        # ECG lead in the EEG stream, a dead far electrode) must not stop phase-locking.
        self._used = np.flatnonzero(self.weights)
        self._used_weights = self.weights[self._used]
        self.fs = float(fs)
        self.estimator = PhaseEstimator(fs, self.dsp.phase_band_hz)
        self.estimator.warmup()
        if self.dsp.phase_band_hz is None and self.dsp.calibration_s > 0:
            self.calibration = BandCalibration(fs, self.dsp.calibration_s)
        if self.cfg.artifact_gate:
            self.artifacts = ArtifactDetector(
                fs,
                self._used.size,
                floor_uv=self.cfg.artifact_floor_uv,
                ceiling_uv=self.cfg.artifact_ceiling_uv,
                max_step_uv=self.cfg.artifact_max_step_uv,
                range_uv=self.cfg.artifact_range_uv,
                hold_s=self.cfg.artifact_hold_s,
            )
        self._hist_t = np.full(round(fs), np.nan)
        self._hist_phase = np.full(round(fs), np.nan)

    def estimate(self, chunk: Chunk) -> PhaseOutput:
        """Hjorth derivation and causal phase of one EEG chunk.

        The chunk's bridged gaps (NaN rows) go through the estimator as invalid input; a
        restart chunk resets it first. Samples the artifact detector marks go through as
        NaN too. A gap, an artifact, or any invalid estimate, while a pulse is pending
        sets the reason :meth:`fire_veto` returns.

        Parameters
        ----------
        chunk : Chunk
            EEG in µV, the stream's channel order, on the time grid.

        Returns
        -------
        PhaseOutput
            Phase (rad), amplitude (µV) and confidence of each of the chunk's rows.
        """
        if chunk.restart:
            self.estimator.reset()
            if self.artifacts is not None:
                self.artifacts.reset()
            if self.calibration is not None:
                self.calibration.restart()
            self.gaps_restarted += 1
            if len(chunk):
                # An interval counted on timestamps that were then abandoned (they went
                # back) is void: count it from this segment at most, or a burst of future
                # stamps holds the protocol until the data catch up with them (issue #15).
                first = float(chunk.timestamps[0])
                self._next_allowed = min(self._next_allowed, first + self.cfg.min_ipi_s)
        gaps = [e for e in chunk.events if isinstance(e, Gap)]
        self.gaps_bridged += sum(g.bridged for g in gaps)
        if gaps or chunk.restart:
            self._note_gap(chunk, gaps)
        used = chunk.data[:, self._used]
        x = used @ self._used_weights
        if self.artifacts is not None:
            found = self.artifacts.update(x, used)
            marked = found.code != 0
            if marked.any():
                x[marked] = np.nan  # bridged like a gap by the estimator
                self._note_artifact(chunk, found, marked)
        out = self._run_estimator(x, chunk.timestamps)
        self._remember(chunk.timestamps, out.phase_rad)
        if self._pending and not self._veto and np.isnan(out.phase_rad.min()):
            # NaN input invalidates the estimate like a gap does: the forecast the
            # pending pulse was planned on can no longer be checked against the data.
            self._veto = "the phase estimate became invalid (non-finite EEG) after it was planned"
        if self._reconverging and math.isfinite(out.phase_rad[-1]):
            self._reconverging = False
        return out

    def _run_estimator(self, x: np.ndarray, t: np.ndarray) -> PhaseOutput:
        """The estimator on the derivation; during calibration the calibrator too, and
        the switch to the locked band at the exact sample where calibration ends."""
        cal = self.calibration
        if cal is None:
            return self.estimator.update(x, t)
        if cal.confirmed and cal.state == AWAITING_CONFIRM:
            if cal.apply_confirm():
                self.estimator = cal.primed_estimator()
            self._notice.append(Notice("phase_calibration", {**cal.describe(), "confirmed": True}))
        was_running = cal.running
        k = cal.feed(x, t)
        if not was_running or cal.running:
            return self.estimator.update(x, t)
        if cal.state != LOCKED:  # ended on a weak result: the operator decides
            self._notice += [
                Notice("phase_calibration", cal.describe()),
                Prompt(cal.prompt_message(self.channels.eeg_target), cal.describe()),
            ]
            return self.estimator.update(x, t)
        # Ended in this chunk on a strong peak: the tracked-IAF estimator up to the last
        # calibration sample, the locked one from the next.
        head = self.estimator.update(x[:k], t[:k])
        self.estimator = cal.primed_estimator()
        if k == len(x):
            self._notice.append(Notice("phase_calibration", cal.describe()))
            return head
        tail = self.estimator.update(x[k:], t[k:])
        self._notice.append(Notice("phase_calibration", cal.describe()))
        return PhaseOutput(*(np.concatenate(p) for p in zip(head, tail, strict=True)))

    def _note_gap(self, chunk: Chunk, gaps: list[Gap]) -> None:
        """Record this chunk's gaps for the ``eeg_gap`` hold, and veto a pending pulse."""
        missing = sum(g.missing for g in gaps)
        if self._pending and not self._veto:
            self._veto = (
                f"EEG gap of {missing} samples ({missing / self.fs * 1e3:.0f} ms) after it "
                "was planned: its phase forecast spans data that never arrived"
                if missing
                else "EEG timestamps went back after it was planned: its forecast time is void"
            )
        self._chunk_gap = {
            "gaps": len(gaps),
            "missing": missing,
            "gap_s": missing / self.fs,
            "t_before": gaps[0].t_before if gaps else math.nan,
            "t_after": gaps[-1].t_after if gaps else float(chunk.timestamps[0]),
            "action": "restarted" if chunk.restart else "bridged",
            "pending_vetoed": bool(self._veto),
        }
        self._reconverging = True

    def _note_artifact(self, chunk: Chunk, found: ArtifactOutput, marked: np.ndarray) -> None:
        """Start or extend the artifact episode, and veto a pending pulse."""
        n_marked = int(marked.sum())
        self.artifact_samples += n_marked
        hit = (found.code & ~np.uint8(HOLD)) != 0  # a criterion fired (not the hang-over)
        ep = self._episode
        if ep is None:
            first = int(np.argmax(marked))
            t_on = float(chunk.timestamps[first])
            lookback = self.cfg.artifact_lookback_s
            ep = self._episode = {
                "kinds": [],
                "amplitude_uv": 0.0,
                "step_uv": 0.0,
                "peak_uv": 0.0,
                "threshold_uv": float(found.threshold_uv[first]),
                "step_limit_uv": self.cfg.artifact_max_step_uv,
                "range_uv": self.cfg.artifact_range_uv,
                "t_start": t_on,
                "t_end": t_on,
                "samples": 0,
                "pending_vetoed": False,
                "pulses_before": [t for t in self._recent_pulses if t_on - lookback <= t <= t_on],
            }
            self._episode_onset = True
            self.artifact_episodes += 1
        ep["samples"] += n_marked
        ep["t_end"] = float(chunk.timestamps[np.flatnonzero(marked)[-1]])
        if hit.any():
            code = int(np.bitwise_or.reduce(found.code[hit]))
            ep["kinds"] = sorted(set(ep["kinds"]) | set(artifact_kinds(code)))
            raw = (
                chunk.data[hit][:, self._used] @ self._used_weights
            )  # the derivation before it became NaN
            ep["amplitude_uv"] = max(
                ep["amplitude_uv"], float(np.nanmax(np.abs(found.deviation_uv[hit]), initial=0.0))
            )
            ep["step_uv"] = max(ep["step_uv"], float(np.nanmax(found.step_uv[hit], initial=0.0)))
            ep["peak_uv"] = max(ep["peak_uv"], float(np.nanmax(np.abs(raw), initial=0.0)))
        if self._pending and not self._veto:
            self._veto = (
                f"artifact at the target ({', '.join(ep['kinds']) or 'hang-over'}: "
                f"{ep['amplitude_uv']:.4g} µV from its level, step {ep['step_uv']:.4g} µV) "
                "after it was planned"
            )
            ep["pending_vetoed"] = True

    def update(self, chunk: Chunk) -> Decision:
        """Run the estimator on a chunk and decide whether to request a pulse.

        A chunk with a gap returns ``Hold("eeg_gap", info)`` (samples missing, their
        span in s, the LSL times around the gap, ``"bridged"`` or ``"restarted"``, and
        whether a pending pulse was vetoed); no pulse is requested until the estimate
        is valid again. The first chunk of an artifact episode returns
        ``Hold("artifact", info)``, the chunk at which the estimate is valid again
        ``Hold("artifact", {"ended": True, ...})`` (module docstring); nothing is
        requested in between.
        """
        if not len(chunk):
            return None
        out = self.estimate(chunk)
        self.last_estimate = (
            float(out.phase_rad[-1]),
            float(out.amplitude[-1]),
            float(out.confidence[-1]),
        )
        gap, self._chunk_gap = self._chunk_gap, None
        if self._notice:  # calibration results go out before anything else
            return self._notice.pop(0)
        if self.done:
            return None
        if gap is not None:
            # Every gap is published, pending pulse or not: it may have vetoed one. An
            # artifact onset in the same chunk is published with the next chunk.
            self._last_hold = "eeg_gap"
            return Hold("eeg_gap", gap)
        if self._episode is not None:
            return self._artifact_hold(chunk, out)
        cal = self.calibration
        if cal is not None and cal.state in ("running", AWAITING_CONFIRM):
            return self._hold("calibrating", {"duration_s": cal.duration_s})
        if self._pending:
            return None
        now = float(chunk.timestamps[-1])
        if now < self._next_allowed:
            return None
        if self._reconverging:
            return self._hold("eeg_gap", {"reconverging": True})
        return self._plan_pulse(out, now)

    def _artifact_hold(self, chunk: Chunk, out: PhaseOutput) -> Decision:
        """During an artifact episode: its onset, nothing, then its end once valid again."""
        ep = self._episode
        if self._episode_onset:
            self._episode_onset = False
            self._last_hold = "artifact"
            info = {k: v for k, v in ep.items() if k != "t_end"}
            return Hold("artifact", info)
        if not math.isfinite(out.phase_rad[-1]):
            return None  # the onset was published; refuse quietly until it is over
        self._episode = None
        self._last_hold = "artifact"
        info = {k: v for k, v in ep.items() if k != "pulses_before"}
        info.update(
            ended=True,
            duration_s=ep["t_end"] - ep["t_start"] + 1.0 / self.fs,
            t_valid=float(chunk.timestamps[-1]),
        )
        return Hold("artifact", info)

    def _plan_pulse(self, out: PhaseOutput, now: float) -> Decision:
        """Hold on a poor estimate; else request a pulse at the next target crossing."""
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
            target = self.cfg.target_phase_rad
        latency = self.cfg.trigger_latency_s
        t_target, unc = self.estimator.next_target_time(target, self.cfg.min_lead_s + latency)
        if not math.isfinite(t_target) or t_target - now > self.cfg.max_lead_s + latency:
            return None  # the next crossing is too far ahead; a later chunk is closer
        self._last_hold = ""
        self._veto = ""
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
                # The frequency the forecast advanced the phase at (the filter's centroid):
                # with phase_now_rad and t_last_sample it lets a reader redo the forecast.
                "forecast_hz": float(self.estimator.filter.freq_hz),
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
        if stamps.size > size:  # only the last second is kept; no index written twice
            self._hist_n += stamps.size - size
            stamps, phase = stamps[-size:], phase[-size:]
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

    def fire_veto(self, request: PulseRequest) -> str:
        """Why the pending pulse must not fire now ("" if it may).

        The pulse scheduler asks this before it waits for the pulse's time and again
        just before handing it to the stimulator. Non-empty once a gap, or an invalid
        phase estimate, has been seen since the pulse was planned.
        """
        return self._veto

    def confirm(self, text: str) -> None:
        """The operator accepts a weak calibration (see
        :mod:`~stimloop.loop.phase_calibration`); applied at the next chunk."""
        if self.calibration is None or not self.waiting:
            raise SessionError("confirm: the phase-locked protocol is not waiting")
        self.calibration.on_confirm()

    @property
    def waiting(self) -> bool:
        """True while a weak calibration result awaits the operator's confirm."""
        cal = self.calibration
        return cal is not None and cal.state == AWAITING_CONFIRM and not cal.confirmed

    def adjust_stimulator(self, spec: StimulatorSpec) -> StimulatorSpec:
        """The session's stimulator table, unchanged."""
        return spec

    def prepare(self, gate: SafeStimulator) -> None:
        """Set the configured intensity through the gate."""
        gate.set_intensity(self.cfg.intensity_pct)

    def open_outlets(self, prefix: str) -> Outlet:
        """The phase-estimate stream (:func:`phase_outlet`), for the engine to push to."""
        return phase_outlet(self, prefix)

    def close(self) -> None:
        """Nothing of its own to close (the session closes the phase stream)."""

    def outcome(self, result: PulseOutcome) -> None:
        """Start the next inter-pulse interval (after a fire or a refusal)."""
        t = result.t_trigger if result.fired else (result.request.t_fire or 0.0)
        if result.fired:
            self.delivered += 1
            self._recent_pulses = (*self._recent_pulses[-7:], float(result.t_trigger))
        jitter = float(self._rng.uniform(0.0, self.cfg.jitter_s)) if self.cfg.jitter_s else 0.0
        self._next_allowed = t + self.cfg.min_ipi_s + jitter
        self._pending = False
        self._veto = ""


def phase_outlet(protocol: PhaseLockedProtocol, prefix: str) -> Outlet:
    """The outlet on which the engine publishes the protocol's phase estimate.

    The catalog's ``phase`` stream (``{prefix}-phase``): ``phase`` (rad; 0 = positive
    peak, ±π = trough; NaN until the estimator is calibrated), ``amplitude`` (envelope,
    µV) and ``confidence`` (0-1). The :class:`~stimloop.loop.engine.Engine` pushes
    :attr:`PhaseLockedProtocol.last_estimate` once per EEG chunk, stamped with the LSL
    time (s) of the chunk's newest sample. The stream's description records the target
    electrode, its Hjorth neighbours, the band and the phase convention.

    Parameters
    ----------
    protocol : PhaseLockedProtocol
        A started protocol (its Hjorth neighbours are known).
    prefix : str
        The session prefix.

    Returns
    -------
    Outlet
        The open outlet; the caller closes it.
    """
    band = protocol.dsp.phase_band_hz
    return catalog.outlet(
        "phase",
        prefix,
        extra_desc={
            "method": "causal Wiener filter for the analytic signal (stimloop.dsp.phase)",
            "target": protocol.channels.eeg_target,
            "hjorth_neighbours": ",".join(protocol.neighbours),
            "band_hz": "tracked IAF +/- 2" if band is None else f"{band[0]:g}-{band[1]:g}",
            "phase_convention": "0 = positive peak, +/-pi = trough",
        },
    )
