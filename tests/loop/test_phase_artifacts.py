"""An artifact at the target electrode costs the phase-locked protocol about one second.

Issue #15, finding 4: one 200 ms step on C3 stopped phase-locked pulses for minutes and
pulled the IAF, and a railed amplifier passed the gates. The pure tests drive the
protocol (Hjorth, artifact detector, real numba phase kernel) offline on the real EEGMAT
recording through the EEG inlet's gap policy, in 10 ms and in 1 s chunks; a pulse
fires at its planned time unless :meth:`fire_veto` objects then, as the pulse scheduler
does. The LSL test runs the whole engine, the HAL gate and the simulated stimulator.
"""

from __future__ import annotations

import functools
import json
import math
import threading
import time

import numpy as np
import pylsl
import pytest

from stimloop.devices.limits import SafetyLimits
from stimloop.devices.safety import SafeStimulator
from stimloop.devices.sim.eeg import EEGGenerator
from stimloop.devices.stimulators.simulated import SimulatedStimulator
from stimloop.loop.config import (
    ChannelRoles,
    DSPConfig,
    PhaseLockedConfig,
    SessionConfigError,
    parse_session,
)
from stimloop.loop.engine import Engine
from stimloop.loop.phase_locked import EEG_MAX_GAP_S, PhaseLockedProtocol
from stimloop.loop.protocol import Hold, PulseOutcome, PulseRequest
from stimloop.stream.chunk import ChunkAssembler
from stimloop.stream.inlet import Inlet, MarkerInlet
from stimloop.stream.outlet import Outlet, channel_specs, marker_outlet
from stimloop.stream.replay import load_recording

T0 = 1000.0  # LSL time of the recording's first sample, s
ONSET_S = 40.0  # the artifact's onset, s from the start
STEPS = {"1mV": 1e3, "5mV": 5e3, "300mV": 3e5, "1e30": 1e30}


@functools.cache
def _eegmat(path: str) -> tuple[np.ndarray, list[str], float]:
    rec = load_recording(path)
    eeg = next(s for s in rec.streams if s.rate_hz > 0)
    fs = float(eeg.rate_hz)
    data = np.asarray(eeg.data, dtype=np.float64)[: round(56 * fs)]
    data.flags.writeable = False
    return data, [c["label"] for c in eeg.channels], fs


class _Recorded(PhaseLockedProtocol):
    """The protocol under test, keeping the per-sample estimate it computes."""

    def start(self, fs, channel_labels):
        super().start(fs, channel_labels)
        self.phase: dict[int, float] = {}
        self.conf: dict[int, float] = {}
        self.iaf: dict[int, float] = {}  # tracked IAF after each second of data

    def estimate(self, chunk):
        out = super().estimate(chunk)
        for k, row in enumerate(range(chunk.first_index, chunk.first_index + len(chunk))):
            self.phase[row] = float(out.phase_rad[k])
            self.conf[row] = float(out.confidence[k])
        self.iaf[(chunk.first_index + len(chunk)) // round(self.fs)] = self.estimator.iaf.iaf_hz
        return out


class Run:
    """One offline pass: decisions, fired and vetoed pulses, per-sample estimates."""

    def __init__(self, data: np.ndarray, labels, fs: float, chunk_s: float, **cfg) -> None:
        base = {"min_ipi_s": 0.3, "jitter_s": 0.0, "n_pulses": 10**6}
        p = _Recorded(PhaseLockedConfig(**{**base, **cfg}), ChannelRoles(eeg_target="C3"),
                      DSPConfig(calibration_s=0))  # fmt: skip
        p.start(fs, labels)
        grid = ChunkAssembler(fs, EEG_MAX_GAP_S)
        stamps = T0 + np.arange(len(data)) / fs
        self.decisions: list[tuple[float, object]] = []  # (newest sample, decision)
        self.fired: list[float] = []
        self.vetoed: list[tuple[float, str]] = []
        pending: PulseRequest | None = None
        size = max(1, round(chunk_s * fs))
        for k in range(0, len(data), size):
            for c in grid.push(data[k : k + size], stamps[k : k + size]):
                if pending is not None and c.timestamps[-1] >= pending.t_fire:
                    # Its time came while this chunk was acquired: the scheduler asks for
                    # a veto with what the protocol has seen so far, then fires.
                    veto = p.fire_veto(pending)
                    if veto:
                        self.vetoed.append((pending.t_fire, veto))
                        p.outcome(PulseOutcome(pending, False, error=f"vetoed: {veto}"))
                    else:
                        self.fired.append(pending.t_fire)
                        p.outcome(PulseOutcome(pending, True, pending.t_fire))
                    pending = None
                d = p.update(c)
                if d is not None:
                    self.decisions.append((float(c.timestamps[-1]), d))
                if isinstance(d, PulseRequest):
                    pending = d
        n = len(data)
        self.protocol = p
        self.phase = np.array([p.phase[i] for i in range(n)])
        self.conf = np.array([p.conf[i] for i in range(n)])
        self.iaf = np.array([p.iaf.get(s, np.nan) for s in range(n // round(fs) + 1)])
        self.stamps = stamps

    def requests(self) -> np.ndarray:
        """The newest-sample times (LSL s) of the chunks that requested a pulse."""
        return np.array([t for t, d in self.decisions if isinstance(d, PulseRequest)])

    def holds(self, reason: str) -> list[tuple[float, dict]]:
        return [
            (t, d.info) for t, d in self.decisions if isinstance(d, Hold) and d.reason == reason
        ]


@functools.cache
def _run(path: str, step: str | None, chunk_s: float, **cfg) -> Run:
    data, labels, fs = _eegmat(path)
    if step is not None:
        data = data.copy()
        a = round(ONSET_S * fs)
        data[a : a + round(0.2 * fs), labels.index("EEG C3")] += STEPS[step]
    return Run(data, labels, fs, chunk_s, **cfg)


@pytest.fixture
def edf(shared_data) -> str:
    return str(shared_data / "eeg" / "eegmat_subject00_rest.edf")


@pytest.mark.parametrize("step", list(STEPS))
def test_after_a_step_the_estimate_and_pulses_are_back_one_second_later(edf, step):
    """Hang-over (0.2 s) plus one filter window (0.75 s) after the step, whatever its
    size, in 10 ms and in 1 s chunks; the IAF is not pulled; nothing fires meanwhile."""
    fs = _eegmat(edf)[2]
    clean, run, run_1s = _run(edf, None, 0.01), _run(edf, step, 0.01), _run(edf, step, 1.0)
    a = round(ONSET_S * fs)
    e = a + round(0.2 * fs)  # first sample after the step
    # Chunk invariance, and the future never changes the past (the clean run is this
    # run's past with another future).
    np.testing.assert_array_equal(run.phase, run_1s.phase)
    np.testing.assert_array_equal(run.phase[:a], clean.phase[:a])
    assert [d for t, d in run.decisions if t < run.stamps[a]] == [
        d for t, d in clean.decisions if t < run.stamps[a]
    ]
    # Invalid from the step's first sample to the hang-over after its trailing edge
    # (itself a step) plus one filter window; valid again from then on.
    n_taps = run.protocol.estimator.n_taps
    first_valid = e + round(0.2 * fs) + n_taps
    assert (first_valid - e) / fs <= 1.0
    assert np.isnan(run.phase[a:first_valid]).all()
    assert np.isfinite(run.phase[first_valid:]).all()
    # ... and as good as the clean run's: the learned spectrum never saw the step.
    s = slice(first_valid, first_valid + round(10 * fs))
    ok = clean.conf[s] >= 0.5
    diff = np.degrees(np.abs(np.angle(np.exp(1j * (run.phase[s] - clean.phase[s])))))[ok]
    assert ok.sum() > 1000
    assert np.median(diff) < 3.0 and np.percentile(diff, 95) < 10.0
    iaf_dev = np.abs(run.iaf - clean.iaf)[math.ceil(ONSET_S) :]
    assert np.nanmax(iaf_dev) < 0.25
    # Pulses: none planned from the onset until the estimate is valid, none fired from
    # the onset on until then, and they resume.
    t_valid = run.stamps[first_valid]
    req = run.requests()
    assert not np.any((req >= run.stamps[a]) & (req < t_valid))
    assert not np.any((np.array(run.fired) >= run.stamps[a]) & (np.array(run.fired) < t_valid))
    assert np.any((req >= t_valid) & (req < t_valid + 3.0))
    # The decision stream: one hold at the onset, one when the estimate is back.
    holds = run.holds("artifact")
    assert len(holds) == 2
    (t_on, onset), (t_off, end) = holds
    assert run.stamps[a] <= t_on < run.stamps[a + 5]
    assert onset["t_start"] == run.stamps[a] and not onset.get("ended")
    assert {"amplitude", "step"} <= set(onset["kinds"])
    assert onset["amplitude_uv"] == pytest.approx(STEPS[step], abs=100.0)
    assert onset["step_uv"] == pytest.approx(STEPS[step], abs=100.0)
    assert onset["threshold_uv"] < 200.0 and onset["step_limit_uv"] == 50.0
    assert ("range" in onset["kinds"]) == (STEPS[step] > 5e4)
    assert end["ended"] and end["t_valid"] == t_off
    assert t_valid <= t_off < t_valid + 0.01
    assert end["t_end"] == run.stamps[e + round(0.2 * fs)]
    assert end["samples"] == e - a + 1 + round(0.2 * fs)
    # The 1 s chunks publish the same episode, from the chunk holding each end.
    holds_1s = run_1s.holds("artifact")
    assert [h["t_start"] for _, h in holds_1s] == [onset["t_start"]] * 2
    assert holds_1s[1][1]["t_end"] == end["t_end"]


def test_without_the_gate_the_step_is_fired_on_and_pulls_the_iaf(edf):
    """The issue's behaviour, reproduced with ``artifact_gate = false``."""
    fs = _eegmat(edf)[2]
    clean = _run(edf, None, 0.01, artifact_gate=False)
    run = _run(edf, "5mV", 0.01, artifact_gate=False)
    a = round(ONSET_S * fs)
    req = run.requests()
    assert np.sum((req >= run.stamps[a]) & (req < run.stamps[a] + 0.2)) >= 1  # on the step
    assert np.nanmax(np.abs(run.iaf - clean.iaf)[math.ceil(ONSET_S) :]) > 1.5
    later = (req > run.stamps[a] + 10) & (req < run.stamps[-1])
    clean_later = (clean.requests() > run.stamps[a] + 10) & (clean.requests() < run.stamps[-1])
    assert later.sum() < 0.2 * clean_later.sum()  # silenced for the rest of the recording
    assert not run.holds("artifact") and run.protocol.artifacts is None


@pytest.mark.parametrize("chunk_s", [0.01, 1.0], ids=["10ms", "1s"])
def test_a_railed_c3_never_passes_the_gates(edf, chunk_s):
    data, labels, fs = _eegmat(edf)
    data = data[: round(40 * fs)]
    c3 = labels.index("EEG C3")
    whole = data.copy()
    whole[:, c3] = 3e5
    run = Run(whole, labels, fs, chunk_s)
    assert not run.requests().size and not run.fired
    assert np.isnan(run.phase).all()
    (_, onset), = run.holds("artifact")  # fmt: skip
    # Railed before the stream started, the rail is its first level: range catches it.
    assert onset["t_start"] == T0 and "range" in onset["kinds"]
    assert onset["peak_uv"] > 2.9e5
    # Railed mid-stream: pulses before it, none planned or fired from its onset on.
    s = round(30 * fs)
    mid = data.copy()
    mid[s:, c3] = 3e5
    run = Run(mid, labels, fs, chunk_s)
    req = run.requests()
    assert not np.any(req >= run.stamps[s]) and not np.any(np.array(run.fired) >= run.stamps[s])
    assert np.isnan(run.phase[s:]).all() and np.isfinite(run.phase[s - 500 : s]).any()
    (_, onset), = run.holds("artifact")  # fmt: skip
    assert onset["t_start"] == run.stamps[s] and "range" in onset["kinds"]
    if chunk_s == 0.01:
        assert req.size > 10


def test_a_rail_inside_the_eeg_range_vetoes_or_names_the_pulses_of_its_first_100_ms(edf):
    """C3 stuck at 20 µV is flat from 0.1 s on; the samples before that were fed to the
    estimator, so the look-back (0.2 s) names the pulses delivered on them and a pulse
    still pending is vetoed. 15 rails of 0.5 s, 3.047 s apart, start at many phases."""
    data, labels, fs = _eegmat(edf)
    railed = data.copy()
    starts = [round((10.0 + 3.047 * j) * fs) for j in range(15)]
    for s in starts:
        railed[s : s + round(0.5 * fs), labels.index("EEG C3")] = 20.0
    run = Run(railed, labels, fs, 0.01)
    onsets = [h for _, h in run.holds("artifact") if not h.get("ended")]
    assert len(onsets) == len(starts)
    fired, req = np.array(run.fired), run.requests()
    named = vetoed = 0
    for s, onset in zip(starts, onsets, strict=True):
        t_on = onset["t_start"]
        # Flat from 0.1 s on, unless the jump to 20 µV was itself a step.
        assert t_on == run.stamps[s + round(0.1 * fs) - 1] or (
            t_on == run.stamps[s] and "step" in onset["kinds"]
        )
        on_rail = fired[(fired >= run.stamps[s]) & (fired <= t_on + 0.5)]
        assert np.all(on_rail <= t_on) and set(on_rail) <= set(onset["pulses_before"])
        assert not np.any((req >= t_on) & (req < t_on + 1.0))
        named += on_rail.size
        vetoed += onset["pending_vetoed"]
    assert all(v.startswith("artifact at the target (flat:") for _, v in run.vetoed)
    assert len(run.vetoed) == vetoed
    # Both happen: a pulse delivered on a rail's first 100 ms, and one vetoed.
    assert named >= 1 and vetoed >= 1


def test_an_artifact_vetoes_the_pending_pulse(edf):
    data, labels, fs = _eegmat(edf)
    data = data.copy()
    stamps = T0 + np.arange(len(data)) / fs
    p = PhaseLockedProtocol(PhaseLockedConfig(min_ipi_s=0.3, jitter_s=0.0),
                            ChannelRoles(eeg_target="C3"), DSPConfig(calibration_s=0))  # fmt: skip
    p.start(fs, labels)
    grid = ChunkAssembler(fs, EEG_MAX_GAP_S)
    k, request = round(20 * fs), None
    for c in grid.push(data[:k], stamps[:k]):
        p.update(c)
    while request is None:  # run until a request, and leave it pending
        d = [p.update(c) for c in grid.push(data[k : k + 5], stamps[k : k + 5])][-1]
        request = d if isinstance(d, PulseRequest) else None
        k += 5
    assert p.fire_veto(request) == ""
    data[k + 2 : k + 5, labels.index("EEG C3")] += 5e3
    (hold,) = [p.update(c) for c in grid.push(data[k : k + 5], stamps[k : k + 5])]
    assert isinstance(hold, Hold) and hold.reason == "artifact" and hold.info["pending_vetoed"]
    assert hold.info["t_start"] == stamps[k + 2]
    assert p.fire_veto(request).startswith("artifact at the target (amplitude, step: 5")
    assert p.artifact_episodes == 1 and p.artifact_samples == 3  # the hang-over is to come


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"artifact_ceiling_uv": 100.0},
         r"artifact_ceiling_uv \(100\.0\) must be at least artifact_floor_uv \(150\.0\)"),
        ({"artifact_range_uv": 400.0},
         r"artifact_range_uv \(400\.0\) must be greater than artifact_ceiling_uv \(500\.0\)"),
        ({"artifact_floor_uv": 0.0}, r"artifact_floor_uv = 0\.0: Input should be greater"),
        ({"artifact_max_step_uv": math.inf}, r"artifact_max_step_uv = inf: Input should be a fini"),
        ({"artifact_hold_s": 5.0}, r"protocol\.artifact_hold_s = 5\.0: Input should be less"),
        ({"artifact_gates": False}, r"protocol\.artifact_gates: unknown key"),
    ],
    ids=["ceiling-below-floor", "range-below-ceiling", "zero-floor", "inf-step", "long-hold",
         "misspelt"],
)  # fmt: skip
def test_gate_settings_are_validated(edit, message):
    data = {"sources": {"eeg": {"source_id": "x"}}, "protocol": edit}
    with pytest.raises(SessionConfigError, match=message):
        parse_session(data, "s.toml")
    cfg = PhaseLockedConfig()  # the defaults
    assert cfg.artifact_gate and cfg.artifact_floor_uv == 150.0 and cfg.artifact_hold_s == 0.2


# -- the engine on real LSL streams ------------------------------------------------------


class _StepPusher(threading.Thread):
    """Simulated EEG in real time, 10 ms chunks; 200 ms of +5 mV on C3 at ``step_at``
    samples once ``armed`` is set."""

    def __init__(self, source_id: str, fs: float) -> None:
        super().__init__(daemon=True)
        self.gen = EEGGenerator(fs, 32, 10.0, "C3", seed=11, alpha_snr_db=6.0)
        self.fs = fs
        self.out = Outlet("eeg", "EEG", source_id, channel_specs(self.gen.labels), fs)
        self.armed = threading.Event()
        self.stop = threading.Event()
        self.step_t: tuple[float, float] | None = None  # LSL times of its first/last sample
        self.n = 0

    def run(self) -> None:
        t0 = pylsl.local_clock()
        c3 = self.gen.labels.index("C3")
        step_left = 0
        while not self.stop.is_set():
            stamps = t0 + (self.n + np.arange(10)) / self.fs
            eeg, _ = self.gen.generate(10)
            if self.armed.is_set() and self.step_t is None:
                step_left = round(0.2 * self.fs)
                self.step_t = (float(stamps[0]), float(stamps[0]) + (step_left - 1) / self.fs)
            if step_left:
                eeg[:, c3] += 5e3
                step_left -= 10
            while pylsl.local_clock() < stamps[-1]:
                time.sleep(0.0005)
            self.out.push(eeg, stamps[-1])
            self.n += 10


@pytest.mark.slow
def test_engine_publishes_the_artifact_and_fires_again_a_second_after_it(source_id):
    fs = 500.0
    markers = marker_outlet("decisions", f"{source_id}-dec")
    listener = MarkerInlet(f"{source_id}-dec").connect()
    pusher = _StepPusher(source_id, fs)
    protocol = PhaseLockedProtocol(
        PhaseLockedConfig(min_ipi_s=0.25, jitter_s=0.0, min_confidence=0.3, n_pulses=10_000),
        ChannelRoles(eeg_target="C3"), DSPConfig(calibration_s=0),
    )  # fmt: skip
    protocol.start(fs, pusher.gen.labels)
    eeg = Inlet(source_id, expected_rate=fs).connect()
    gate = SafeStimulator(
        SimulatedStimulator(), SafetyLimits(min_ipi_s=0.1),
        override_reason="artifact test: pulses 0.25 s apart", marker_source_id=f"{source_id}-g",
    )  # fmt: skip
    gate.connect()
    gate.set_intensity(30.0)
    gate.arm()
    engine = Engine(eeg, protocol, gate, markers).start()
    pusher.start()
    events: list[dict] = []
    try:
        t_end = time.monotonic() + 30.0
        while len(engine.pulses) < 3 and time.monotonic() < t_end:  # calibrated, firing
            time.sleep(0.05)
        pusher.armed.set()
        while time.monotonic() < t_end:
            events += [json.loads(text) for text, _ in listener.pull()]
            if pusher.step_t and sum(p["t_trigger"] > pusher.step_t[1] + 1.0
                                     for p in engine.pulses) >= 3:  # fmt: skip
                break
            time.sleep(0.05)
        time.sleep(0.3)
        events += [json.loads(text) for text, _ in listener.pull()]
    finally:
        engine.stop()
        pusher.stop.set()
        pusher.join()
        gate.close()
    assert engine.error is None and pusher.step_t is not None
    t_a, t_z = pusher.step_t
    arts = [e for e in events if e["event"] == "gated" and e["reason"] == "artifact"]
    assert len(arts) == 2, arts
    onset, end = arts
    # The inlet's clock correction may move the stamps by microseconds: within a sample.
    assert onset["t_start"] == pytest.approx(t_a, abs=0.5 / fs) and "amplitude" in onset["kinds"]
    assert onset["amplitude_uv"] > 4e3 and end["ended"]
    t_valid = t_z + (1 + round(0.2 * fs) + protocol.estimator.n_taps) / fs
    assert end["t_valid"] >= t_valid - 0.5 / fs
    fired = np.array([p["t_trigger"] for p in engine.pulses])
    scheduled = np.array([e["t_last_sample"] for e in events if e["event"] == "scheduled"])
    # A pulse planned before the step may fire up to max_lead_s (30 ms) into it, before
    # the samples that show the step have arrived; nothing later, until the estimate is
    # valid again.
    assert not np.any((fired > t_a + 0.05) & (fired < t_valid))
    assert not np.any((scheduled >= t_a) & (scheduled < t_valid))
    assert np.sum(fired > t_valid) >= 3
