"""The operator's confirm answers one prompt of the localisation (review finding: a
``stimloop confirm`` sent before the session had asked for any site was kept, so the
first site began, and the stimulator was armed, without the prompt that names the site
ever being shown; the site order is random, so the coil could not have been on it)."""

from __future__ import annotations

import numpy as np
import pytest

from stimloop.devices.sim.hbc_subject import SubjectConfig, simulate
from stimloop.loop.config import parse_session
from stimloop.loop.errors import SessionError
from stimloop.loop.hbc_protocol import HBCProtocol
from stimloop.loop.heart_stage import HeartStage
from stimloop.loop.protocol import Prompt, PulseOutcome, PulseRequest
from stimloop.stream.chunk import ChunkAssembler

T0 = 7000.0  # LSL time of the ECG's first sample, s


@pytest.fixture
def localisation(source_id):
    """Two sites, one intensity each, on 70 s of a virtual subject's ECG; yields the
    protocol and a step function feeding the next ``seconds`` of ECG (returns the
    decisions, every train fired as planned)."""
    cfg = parse_session(
        {
            "sources": {"ecg": {"source_id": "x", "rate_hz": 500.0}},
            "protocol": {"kind": "hbc", "sites": ["F3", "FC3"], "intensities": [90.0],
                         "rmt_pct_mso": 50.0, "cycle_s": 8.0, "train_s": 2.0},
            "stimulator": {"driver": "simulated"},
        },
        "t.toml",
    )  # fmt: skip
    rec = simulate(SubjectConfig(seed=2, noise_scale=0.5), np.zeros(0), np.zeros(0), [], 70.0)
    stage = HeartStage()
    stage.start(rec.fs, ["ECG"], source_id)
    p = HBCProtocol(cfg.protocol, stage, seed=0)
    p.open_outlets(source_id)
    grid = ChunkAssembler(rec.fs, 10.0)
    stamps = T0 + np.arange(rec.ecg_mv.size) / rec.fs
    pos = [0]

    def step(seconds: float) -> list:
        end = min(pos[0] + round(seconds * rec.fs), rec.ecg_mv.size)
        out = []
        for k in range(pos[0], end, 10):
            sel = slice(k, min(k + 10, end))
            for c in grid.push(rec.ecg_mv[sel, None], stamps[sel]):
                stage.update(c)
                d = p.update(c)
                if d is not None:
                    out.append(d)
                if isinstance(d, PulseRequest):
                    p.outcome(PulseOutcome(d, True, d.t_fire))
        pos[0] = end
        return out

    yield p, step
    p.close()
    stage.close()


def test_a_confirm_before_any_prompt_is_refused(localisation):
    p, step = localisation
    assert p.waiting  # the session must not arm yet
    assert not p.asking  # and the window must not offer Confirm yet
    with pytest.raises(SessionError, match="no coil position has been asked for"):
        p.confirm("sent early")
    out = step(3.0)
    prompts = [d for d in out if isinstance(d, Prompt)]
    assert len(prompts) == 1 and p.waiting and p.asking  # asked; the early one not kept
    assert not [d for d in out if isinstance(d, PulseRequest)]
    p.confirm("coil placed")
    step(0.5)
    assert not p.waiting and p.site == prompts[0].info["site"]


def test_each_site_needs_its_own_confirm(localisation):
    p, step = localisation
    step(3.0)  # the heart stage has a valid HR from about 2 s: the site can begin
    p.confirm("first site")
    p.confirm("first site, double click")  # before the loop acted on the first one
    first = p.site
    out = step(1.0)
    assert not p.waiting
    with pytest.raises(SessionError):  # nothing is asked while a site runs
        p.confirm("stray")
    out += step(40.0)
    assert [d.info["site"] for d in out if isinstance(d, Prompt)] == [p.site]
    assert p.site != first and p.waiting  # the second site waits for the operator
    assert [d.info["site"] for d in out if isinstance(d, PulseRequest)] == [first]
    p.confirm("second site")
    out = step(25.0)
    assert [d.info["site"] for d in out if isinstance(d, PulseRequest)] == [p.site]
