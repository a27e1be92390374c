"""Heart-brain-coupled TMS target localisation (NCG-TMS): the second stimulation mode.

Per candidate site, in a random order (its seed recorded): a rest cycle, then 10 Hz
trains of 5 s every 16 s at increasing intensity (Dijkstra et al. 2023; Iseger et al.
2017, 2020; Feng et al. 2025; the metrics and their citations are in
:mod:`stimloop.dsp.hbc`). Between sites the protocol asks the operator to move the coil
(a :class:`~stimloop.loop.protocol.Prompt`): the session disarms and waits for the
``confirm`` command. Trains are requested as trains, so the gate configures them and
the rTMS table applies; a train the table forbids is refused by the gate unless the
session file states ``train_override_reason`` (the gate records the override).

A site begins once the operator confirmed and the heart stage gives a valid HR (its
rest baseline needs one). Only the cycles whose train went out in full are scored: a
refused train leaves its cycle unstimulated, and a train cut short (the stimulator
disarmed after its first pulse; the engine counts the pulses and tells the protocol when
the train is over) gave less than the cycle's dose (``train_cut_short``). The protocol
reads the heart stage's HR series (``reads_stages``: the engine updates the stage with
each ECG chunk first) and feeds :class:`~stimloop.dsp.hbc.HBCTracker`, the same code
``stimloop analyze`` runs offline on the recorded series. Each completed cycle and each
finished site go out on the catalog's ``hbc`` marker stream.

**Cardiac stop rule.** Vasovagal syncope has been reported during this protocol. The
protocol ends (:class:`~stimloop.loop.protocol.Stop`: the session disarms and alerts,
nothing more fires) when HR falls below ``floor_bpm``, or more than ``max_drop_bpm``
below the site's rest-cycle baseline, or when no beat has come for ``asystole_s`` while
the ECG itself is good. No train goes out before the site's baseline is known: it is
the rest cycle's ``hr_pre_bpm``, computed from its pre-onset window as soon as that is in
(the tracker scores the whole rest cycle only when the first train starts); a window
with too little valid HR starts the site over (``no_baseline``), since NaN would turn
the drop rule off. Losing the ECG is not asystole: it pauses the protocol
(``ecg_lost``) and the site's remaining cycles start over from a new baseline once the
ECG is back.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from stimloop.devices.base import TrainSpec
from stimloop.devices.limits import TrainTable
from stimloop.devices.registry import StimulatorSpec
from stimloop.devices.safety import SafeStimulator
from stimloop.dsp.hbc import DEFAULT_THRESHOLD, Cycle, HBCParams, HBCTracker, cycle_metrics
from stimloop.loop import catalog
from stimloop.loop.config import HBCConfig
from stimloop.loop.errors import SessionError
from stimloop.loop.hbc_analysis import localisation_dict
from stimloop.loop.heart_stage import HeartStage
from stimloop.loop.protocol import Decision, Hold, Prompt, PulseOutcome, PulseRequest, Stop
from stimloop.stream.inlet import Chunk
from stimloop.stream.outlet import Outlet

#: Trains are requested this long before their onset, s (they are due on the minute).
REQUEST_LEAD_S = 0.3
#: The ECG counts as lost when no valid HR has come for this long, s.
ECG_LOST_S = 3.0
#: Oldest the driving ECG's newest sample may be when a train is fired, s.
ECG_MAX_AGE_S = 0.5


def widen_table(table: TrainTable, f_hz: float, duration_s: float) -> TrainTable:
    """``table`` with the row of ``f_hz`` allowing at least ``duration_s`` at every
    intensity (the override of ``train_override_reason``)."""
    row = next(k for k, f in enumerate(table.frequencies_hz) if f_hz <= f)
    rows = [list(r) for r in table.max_duration_s]
    rows[row] = [max(v, duration_s) for v in rows[row]]
    return replace(table, max_duration_s=tuple(tuple(r) for r in rows))


class HBCProtocol:
    """Heart-brain-coupled target localisation (see module docstring).

    Parameters
    ----------
    cfg : HBCConfig
        Sites, train timing, intensities, rMT, the cardiac stop rule.
    heart : HeartStage
        The session's heart stage (its HR series and last beat).
    seed : int
        Seed of the site order when ``cfg.order_seed`` is None.
    """

    name = "hbc"
    role = "ecg"
    reads_stages = True
    max_lead_s = 2 * REQUEST_LEAD_S
    last_estimate = None

    def __init__(self, cfg: HBCConfig, heart: HeartStage, seed: int = 0) -> None:
        self.cfg = cfg
        self.heart = heart
        self.late_tolerance_s = cfg.late_tolerance_s
        self.order_seed = int(cfg.order_seed if cfg.order_seed is not None else seed)
        self.order = [str(s) for s in np.random.default_rng(self.order_seed).permutation(cfg.sites)]
        self.params = HBCParams(
            cycle_s=cfg.cycle_s,
            train_s=cfg.train_s,
            threshold=DEFAULT_THRESHOLD if cfg.threshold is None else cfg.threshold,
            min_above=cfg.min_above,
        )
        self.train = TrainSpec(cfg.train_frequency_hz, round(cfg.train_s * cfg.train_frequency_hz))
        self.tracker: HBCTracker | None = None
        self.state = "prompt"  # prompt, running, paused, done
        self.site_k = 0  # index into self.order
        self.cycle_k = 0  # next cycle of the current site to declare
        self.site_t0 = math.nan  # onset of the current site's rest cycle, s
        self.baseline_bpm = math.nan
        # The operator's confirm answers one prompt: _prompt_n counts the prompts shown,
        # _confirmed_n is the prompt the last confirm answered. A confirm from before any
        # prompt (the site unknown) is refused, and one that raced the start of a site
        # cannot be taken as the answer to the next site's prompt.
        self._prompt_n = 0
        self._confirmed_n = 0
        self._prompted = False
        self._last_valid_t = math.nan
        self._out: Outlet | None = None
        self._pending = False
        self.cycles: list[Cycle] = []
        # Train cycles are scored only once their train went out: the pulse thread
        # queues each outcome, the loop thread declares the fired ones to the tracker.
        self._outcomes: deque[tuple[Cycle, bool]] = deque()
        self._hr = heart.series.reader()
        self._plan_sent = False
        self._ecg_bad_t = -math.inf  # the newest ECG sample that was NaN or missing, s

    # -- session hooks -----------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once every site has run, or the cardiac stop rule ended the protocol."""
        return self.state == "done"

    @property
    def waiting(self) -> bool:
        """True while the operator has to confirm the coil position."""
        return self.state == "prompt"

    @property
    def asking(self) -> bool:
        """True once the prompt naming the site went out and until it is answered: the
        only time a confirm is taken (``waiting`` is True from the start, so nothing is
        armed before the first site)."""
        return self.state == "prompt" and self._prompted

    @property
    def site(self) -> str:
        """The current site (the last one once done)."""
        return self.order[min(self.site_k, len(self.order) - 1)]

    def adjust_stimulator(self, spec: StimulatorSpec) -> StimulatorSpec:
        """The limits this protocol runs under, each change recorded by the gate.

        - The driving ECG may be up to :data:`ECG_MAX_AGE_S` old (the default 50 ms is
          for phase-locked TMS, timed by the EEG; trains here are timed by the clock,
          and ECG amplifiers commonly deliver 20-100 ms behind), never older.
        - With ``train_override_reason``, the table's row of the train frequency is
          widened to the train length; without it, trains beyond the table are refused.
        """
        limits, why = spec.limits, [spec.override_reason] if spec.override_reason else []
        if limits.max_stream_age_s < ECG_MAX_AGE_S:
            limits = replace(limits, max_stream_age_s=ECG_MAX_AGE_S)
            why.append(
                f"HBC: trains are timed by the clock; the ECG may be up to {ECG_MAX_AGE_S:g} s old"
            )
        if reason := self.cfg.train_override_reason:
            table = widen_table(limits.rtms_table, self.train.frequency_hz, self.cfg.train_s)
            limits = replace(limits, rtms_table=table)
            why.append(f"HBC trains: {reason}")
        return replace(spec, limits=limits, override_reason="; ".join(why) or None)

    def prepare(self, gate: SafeStimulator) -> None:
        """Give the gate the subject's resting motor threshold (rTMS needs it)."""
        gate.set_resting_motor_threshold(self.cfg.rmt_pct_mso)

    def open_outlets(self, prefix: str) -> None:
        """Open the ``hbc`` marker stream (per-cycle and per-site figures); the plan goes
        out with the first chunk, once the recorder listens."""
        self._out = catalog.outlet("hbc", prefix)

    def _publish_plan(self) -> None:
        self._plan_sent = True
        self._publish(
            {
                "event": "plan",
                "order": self.order,
                "order_seed": self.order_seed,
                "intensities": self.cfg.intensities,
                "unit": self.cfg.intensity_unit,
                "train": [self.train.frequency_hz, self.train.n_pulses],
                "cycle_s": self.cfg.cycle_s,
                "threshold": self.params.threshold,
            }
        )

    def close(self) -> None:
        """Close the marker stream."""
        if self._out is not None:
            self._out.close()
            self._out = None

    def start(self, fs: float, channel_labels: Sequence[str]) -> None:
        """Nothing to warm up: the heart stage runs the kernels."""

    def confirm(self, text: str) -> None:
        """The operator has placed the coil on the current site (control thread).

        Raises
        ------
        SessionError
            No site has been asked for yet: the prompt names the site (the order is
            random), so a confirm sent before it cannot mean the coil is on it.
        """
        n = self._prompt_n
        if not self.asking:
            raise SessionError(
                "confirm: no coil position has been asked for yet (wait for the prompt "
                "naming the site)"
            )
        self._confirmed_n = n

    def fire_veto(self, request: PulseRequest) -> str:
        """A train planned before a pause or a stop must not go out."""
        return "" if self.state == "running" else f"protocol {self.state}"

    def phase_at(self, t: float) -> float:
        """No phase: NaN."""
        return math.nan

    def outcome(self, result: PulseOutcome) -> None:
        """Record what became of a train: a train that went out in full has its cycle
        scored; a refused one leaves that cycle unstimulated, and one cut short gave less
        than the cycle's dose (``train_cut_short``): neither is scored (pulse or engine
        thread)."""
        info = result.request.info
        cycle = Cycle(info["site"], info["cycle"], info["intensity"], info["onset_s"])
        self._outcomes.append((cycle, result.fired and not result.cut_short))
        self._pending = False
        if not result.fired:
            self._publish({"event": "train_refused", **info, "error": result.error})
        elif result.cut_short:
            counts = {"pulses_delivered": result.pulses_delivered,
                      "pulses_planned": result.pulses_planned}  # fmt: skip
            self._publish({"event": "train_cut_short", **info, **counts, "error": result.error})

    # -- the loop ------------------------------------------------------------------------
    def update(self, chunk: Chunk) -> Decision:
        """Feed the new HR samples, check the cardiac rule, and plan the next train."""
        now = float(chunk.timestamps[-1])
        if not self._plan_sent:
            self._publish_plan()
        rows = self._hr.take()
        while self._outcomes:
            cycle, delivered = self._outcomes.popleft()
            if delivered and self.tracker is not None:
                self._scored(self.tracker.add_cycle(cycle))
        self._feed(rows)
        if self.state == "done":
            return None
        if (stop := self._cardiac_stop(rows, chunk, now)) is not None:
            self.state = "done"
            return stop
        if self.state == "prompt":
            return self._prompt(now)
        if self.state == "running" and now - self._last_valid_t > ECG_LOST_S:
            self.state = "paused"
            return Hold("ecg_lost", {"site": self.site, "since_s": now - self._last_valid_t})
        if self.state == "paused":
            if now - self._last_valid_t < 1.0:  # HR valid again: this site starts over
                self._begin_site(now)
            return None
        return self._plan(now)

    def _feed(self, rows: np.ndarray) -> None:
        if not rows.size:
            return
        tr = self.tracker
        if tr is None:
            tr = self.tracker = HBCTracker(self.heart.rate_hz, rows[0, 0], self.params)
        # A restart of the heart stage (a long ECG gap) leaves a hole in its series: the
        # tracker's series is evenly sampled, so the hole is filled with NaN (invalid).
        hole = round((rows[0, 0] - tr.t0_s) * tr.rate_hz) - tr.n_samples
        if hole > 0:
            tr.update(np.full(hole, np.nan))
        valid = np.isfinite(rows[:, 1])
        if valid.any():
            self._last_valid_t = float(rows[valid, 0][-1])
        self._scored(tr.update(rows[:, 1]))

    def _scored(self, completed: list) -> None:
        """Publish the cycles the tracker completed; a rest cycle gives the baseline."""
        for cycle, fig in completed:
            self._publish(
                {
                    "event": "cycle",
                    "site": cycle.site,
                    "index": cycle.index,
                    "intensity": cycle.intensity,
                    "onset_s": cycle.onset_s,
                    **{k: fig[k].item() for k in fig.dtype.names},
                }
            )
            if cycle.index == 0 and cycle.site == self.site:
                self.baseline_bpm = float(fig["hr_pre_bpm"])

    def _cardiac_stop(self, rows: np.ndarray, chunk: Chunk, now: float) -> Stop | None:
        c = self.cfg.cardiac_stop
        hr = rows[np.isfinite(rows[:, 1]), 1] if rows.size else np.empty(0)
        info = {"site": self.site, "baseline_bpm": self.baseline_bpm}
        if hr.size and hr.min() < c.floor_bpm:
            return Stop(
                "cardiac_stop",
                {**info, "rule": "floor", "hr_bpm": float(hr.min()), "floor_bpm": c.floor_bpm},
            )
        if hr.size and hr.min() < self.baseline_bpm - c.max_drop_bpm:
            return Stop(
                "cardiac_stop",
                {**info, "rule": "drop", "hr_bpm": float(hr.min()), "max_drop_bpm": c.max_drop_bpm},
            )
        if not chunk.finite.all():  # NaN or a bridged gap: no beat could be seen there
            self._ecg_bad_t = float(chunk.timestamps[~chunk.finite][-1])
        # Only a good ECG without beats is asystole; a lost ECG pauses instead.
        silent = now - max(self.heart.last_beat_t, self._ecg_bad_t)
        if math.isfinite(silent) and silent > c.asystole_s:
            return Stop(
                "cardiac_stop",
                {**info, "rule": "asystole", "no_beat_s": silent, "asystole_s": c.asystole_s},
            )
        return None

    def _prompt(self, now: float) -> Decision:
        if self._prompted and self._confirmed_n == self._prompt_n:
            if not now - self._last_valid_t <= ECG_LOST_S:
                # No valid HR yet (the heart stage warms up over the first beats): the
                # rest cycle's baseline window would be mostly empty.
                return None
            self._prompted = False
            self._begin_site(now)
            return None
        if self._prompted:
            return None
        self._prompt_n += 1
        self._prompted = True
        message = f"place the coil on {self.site} ({self.site_k + 1} of {len(self.order)}), "
        message += "then confirm"
        return Prompt(
            message, {"site": self.site, "site_number": self.site_k + 1, "sites": len(self.order)}
        )

    def _begin_site(self, now: float) -> None:
        """The site's rest cycle starts after a baseline window from now."""
        self.state = "running"
        self.cycle_k = 0
        self.baseline_bpm = math.nan
        self.site_t0 = now + self.params.pre_s + 0.5
        self._publish({"event": "site_start", "site": self.site, "onset_s": self.site_t0})

    def _plan(self, now: float) -> Decision:
        n = len(self.cfg.intensities) + 1
        if self.cycle_k >= n:
            return self._finish_site(now)
        onset = self.site_t0 + self.cycle_k * self.cfg.cycle_s
        if onset - now > REQUEST_LEAD_S or self._pending:
            return None
        k = self.cycle_k
        if k >= 1 and not math.isfinite(self.baseline_bpm):
            self.baseline_bpm = self._rest_baseline()
            if not math.isfinite(self.baseline_bpm):
                # Without a baseline the drop rule cannot see a fainting subject: no train.
                info = {"site": self.site, "rest_onset_s": self.site_t0}
                self._begin_site(now)
                return Hold("no_baseline", info)
        intensity = 0.0 if k == 0 else self.cfg.intensities[k - 1]
        cycle = Cycle(self.site, k, intensity, onset)
        self.cycles.append(cycle)
        self.cycle_k += 1
        if k == 0:
            if self.tracker is not None:
                self._scored(self.tracker.add_cycle(cycle))
            return None  # rest: nothing fired
        self._pending = True
        info = {
            "site": self.site,
            "cycle": k,
            "intensity": intensity,
            "intensity_unit": self.cfg.intensity_unit,
            "onset_s": onset,
        }
        return PulseRequest(
            onset,
            info,
            train=self.train,
            intensity_pct=self.cfg.intensity_pct_mso(intensity),
            site=self.site,
        )

    def _rest_baseline(self) -> float:
        """The rest cycle's ``hr_pre_bpm`` (the drop rule's baseline), computed as the
        tracker will compute it, from its pre-onset window alone: the tracker scores the
        rest cycle only once its whole span is in, about when the first train starts.
        NaN when that window holds too little valid HR."""
        tr = self.tracker
        if tr is None:
            return math.nan
        fig = cycle_metrics(tr.hr_bpm, tr.rate_hz, tr.t0_s, [self.site_t0], self.params)
        return float(fig["hr_pre_bpm"][0])

    def _finish_site(self, now: float) -> Decision:
        last = self.site_t0 + len(self.cfg.intensities) * self.cfg.cycle_s
        _, end = self.params.span_s
        if now < last + end + 1.0:  # its last cycle's window is still filling
            return None
        loc = self.tracker.localisation() if self.tracker is not None else None
        if loc is not None:
            self._publish(
                {"event": "site_done", "site": self.site, "ranking": localisation_dict(loc)}
            )
        self.site_k += 1
        if self.site_k >= len(self.order):
            self.state = "done"
            return None
        if self.cfg.prompt_between_sites:
            self.state = "prompt"
            return self._prompt(now)
        self._begin_site(now)
        return None

    def _publish(self, payload: dict) -> None:
        if self._out is not None:
            self._out.push_marker(json.dumps(payload, default=float))
