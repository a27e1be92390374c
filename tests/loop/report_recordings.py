"""Recordings for the report tests, made fast and without mocks.

- :func:`record_stages`: the session's real stages (heart, EDA, exposure) fed a
  recording in chunks of random size, as the engine feeds them, their LSL outlets
  recorded by the real recorder: what a session's recording holds of them, without
  waiting for the data in real time.
- :func:`hbc_recording`: a localisation on the offline virtual subject, written as a
  session recording with :func:`stimloop.stream.xdf.write_xdf` (the plan, site starts,
  cycles and ranking as the protocol publishes them; the heart stage's HR series; the
  trains fired; a cardiac stop alert; the subject's truth).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from stimloop.devices.sim.hbc_subject import SubjectConfig, simulate, train_pulses
from stimloop.dsp.hbc import Cycle, HBCParams, hr_from_ecg, localise
from stimloop.loop import catalog
from stimloop.loop.config import parse_session
from stimloop.loop.eda_stage import EDAStage
from stimloop.loop.exposure_stage import ExposureStage
from stimloop.loop.hbc_analysis import localisation_dict
from stimloop.loop.heart_stage import HeartStage
from stimloop.stream.chunk import Chunk
from stimloop.stream.recorder import Recorder
from stimloop.stream.xdf import info_xml, write_xdf

#: LSL time of the first sample of a recording made here, s.
T0 = 5000.0


def _chunks(n: int, fs: float, rng: np.random.Generator, max_s: float):
    i = 0
    while i < n:
        j = min(n, i + int(rng.integers(1, max(2, int(max_s * fs)))))
        yield i, j
        i = j


def record_stages(
    path: Path,
    prefix: str,
    eda_us: np.ndarray,
    eda_fs: float,
    markers: list[tuple[float, str]],
    *,
    ecg_mv: np.ndarray | None = None,
    ecg_fs: float = 500.0,
    exposure: dict | None = None,
    seed: int = 0,
    max_chunk_s: float = 0.5,
) -> dict[str, int]:
    """Run the heart, EDA and exposure stages over a recording and record their outlets.

    Sample ``i`` is at LSL time ``T0 + i / fs``; a marker at ``t`` s (from the start)
    is handed to every stage (``add_event``, as the engine forwards the session's events
    stream) once the EDA has reached it, and echoed on the decision stream as a
    ``stimulus`` event, as the engine does.

    Returns
    -------
    dict
        Rows each stage published (level, scrs, hr), to check that the recorder has
        them all.
    """
    sources = {"eda": {"source_id": f"{prefix}-in-eda", "rate_hz": eda_fs},
               "events": {"source_id": f"{prefix}-in-events"}}  # fmt: skip
    if ecg_mv is not None:
        sources["ecg"] = {"source_id": f"{prefix}-in-ecg", "rate_hz": ecg_fs}
    cfg = parse_session({"name": "stages", "sources": sources,
                         "exposure": exposure or {"calibration_s": None}})  # fmt: skip
    heart = None
    if ecg_mv is not None:
        heart = HeartStage(cfg.channels.ecg, cfg.dsp.hr_rate_hz, cfg.dsp.hrv_window_s)
        heart.start(ecg_fs, ["ECG"], prefix)
    eda = EDAStage(cfg.channels.eda, min_amplitude=cfg.dsp.scr_min_amplitude_us)
    eda.start(eda_fs, ["EDA"], prefix)
    expo = ExposureStage(cfg.exposure, eda, heart)
    expo.start(eda_fs, ["EDA"], prefix)
    stages = [s for s in (heart, eda, expo) if s is not None]
    decisions = catalog.outlet(
        "decisions", prefix,
        extra_desc={"session_config": json.dumps(cfg.model_dump()), "truth_source_ids": "{}"},
    )  # fmt: skip
    keys = ["decisions", "eda_level", "eda_scr", "eda_response", "exposure", "arousal",
            "exercises"] + (["heart_beats", "heart_hr"] if heart else [])  # fmt: skip
    ids = [catalog.get(k).source_id(prefix) for k in keys]
    counts = {"level": 0, "scrs": 0, "hr": 0}
    lv_r, sc_r = eda.level.reader(), eda.scrs.reader()
    hr_r = heart.series.reader() if heart else None
    rng = np.random.default_rng(seed)
    ecg_chunks = list(_chunks(ecg_mv.size, ecg_fs, rng, max_chunk_s)) if heart else []
    todo = sorted(markers, key=lambda m: m[0])
    try:
        with Recorder(path, ids, resolve_timeout=10.0) as rec:
            k_ecg = 0
            for i, j in _chunks(eda_us.size, eda_fs, rng, max_chunk_s):
                t = T0 + np.arange(i, j) / eda_fs
                while (
                    heart
                    and k_ecg < len(ecg_chunks)
                    and ecg_chunks[k_ecg][0] / ecg_fs <= t[-1] - T0
                ):
                    a, b = ecg_chunks[k_ecg]
                    x = ecg_mv[a:b, None].astype(np.float64)
                    heart.update(Chunk(x, T0 + np.arange(a, b) / ecg_fs, a, np.isfinite(x[:, 0]),
                                       rate_hz=ecg_fs))  # fmt: skip
                    k_ecg += 1
                x = eda_us[i:j, None].astype(np.float64)
                chunk = Chunk(x, t, i, np.isfinite(x[:, 0]), rate_hz=eda_fs)
                eda.update(chunk)
                expo.update(chunk)
                while todo and T0 + todo[0][0] <= t[-1]:
                    tm, text = todo.pop(0)
                    decisions.push_marker(
                        json.dumps({"text": text, "t_event": T0 + tm, "event": "stimulus"})
                    )
                    for s in stages:
                        s.add_event(T0 + tm, text)
                counts["level"] += len(lv_r.take())
                counts["scrs"] += len(sc_r.take())
                counts["hr"] += len(hr_r.take()) if hr_r else 0
                time.sleep(0.0005)  # let the recorder keep up (LSL buffers are bounded)
            want = {ids[1]: counts["level"], ids[2]: counts["scrs"]}
            if heart:
                want[ids[-1]] = counts["hr"]
            deadline = time.monotonic() + 20.0
            while True:
                got = {s.source_id: s.samples for s in rec.stats()}
                if all(got.get(k, 0) >= n for k, n in want.items()):
                    break
                assert time.monotonic() < deadline, f"recorder has {got}, expected {want}"
                time.sleep(0.05)
            time.sleep(0.3)  # the marker streams' last rows
    finally:
        for s in stages:
            s.close()
        decisions.close()
    return counts


# ---------------------------------------------------------------------------- HBC
def hbc_recording(path: Path, prefix: str, *, sites=("F3", "FC3"), intensities=(60.0, 70.0, 80.0),
                  seed: int = 4, cut_short=()) -> dict:  # fmt: skip
    """A short localisation of the offline virtual subject, written as a recording.

    ``cut_short``: (site, cycle) of trains that fired but were cut short (the subject
    still gets the whole train): the engine's ``train_cut_short`` decision is recorded,
    and the cycle is left out of the localisation and of the live ``cycle`` markers, as
    a session does.

    Returns
    -------
    dict
        ``localisation`` (:func:`~stimloop.loop.hbc_analysis.localisation_dict` of the
        cycles computed here), ``cycles`` (each cycle's HBC), ``truth_best_site``,
        ``stop_t`` (LSL time of the recorded cardiac stop alert), ``fired`` (trains).
    """
    cfg_sub = SubjectConfig(seed=seed, sites=tuple(sites))
    p = HBCParams()
    cycle_s = p.cycle_s
    lead = 10.0
    cycles, onsets, inten, site_of = [], [], [], []
    site_t0 = {}
    for k, site in enumerate(sites):
        t_site = lead + k * (len(intensities) + 1) * cycle_s
        site_t0[site] = t_site
        for c in range(len(intensities) + 1):
            level = 0.0 if c == 0 else intensities[c - 1]
            cycles.append(Cycle(site, c, level, T0 + t_site + c * cycle_s))
            onsets.append(t_site + c * cycle_s)
            inten.append(level)
            site_of.append(site)
    duration = lead + len(sites) * (len(intensities) + 1) * cycle_s + 10.0
    pt, pi, ps = train_pulses(np.array(onsets), np.array(inten), site_of)
    sim = simulate(cfg_sub, pt, pi, ps, duration)
    rate = 4.0
    hr = hr_from_ecg(sim.ecg_mv, sim.fs, rate)
    hr_t = T0 + np.arange(hr.size) / rate
    planned, cycles = cycles, [c for c in cycles if (c.site, c.index) not in set(cut_short)]
    loc, metrics = localise(hr, rate, float(hr_t[0]), cycles, p)
    plan = {"event": "plan", "order": list(sites), "order_seed": seed,
            "intensities": list(intensities), "unit": "pct_mso", "train": [10.0, 50],
            "cycle_s": cycle_s, "threshold": p.threshold}  # fmt: skip
    hbc_rows = [(T0 + lead - 1.0, plan)]
    for site in sites:
        hbc_rows.append((T0 + site_t0[site], {"event": "site_start", "site": site,
                                              "onset_s": T0 + site_t0[site]}))  # fmt: skip
    for c, m in zip(cycles, metrics, strict=True):
        hbc_rows.append((c.onset_s + cycle_s, {"event": "cycle", "site": c.site, "index": c.index,
                                               "intensity": c.intensity, "onset_s": c.onset_s,
                                               "hbc": float(m["hbc"])}))  # fmt: skip
    hbc_rows.sort(key=lambda r: r[0])
    protocol = {"kind": "hbc", "sites": list(sites), "intensities": list(intensities),
                "intensity_unit": "pct_mso", "cycle_s": cycle_s, "train_s": p.train_s,
                "threshold": None, "min_above": p.min_above}  # fmt: skip
    config = {"name": "hbc-report-test", "protocol": protocol,
              "sources": {"ecg": {"source_id": f"{prefix}-in-ecg"}}}  # fmt: skip
    # As the engine records a fired train: the request's info and its planned time.
    fired = [{"event": "fired", "t_trigger": T0 + o, "t_planned": c.onset_s, "site": s,
              "cycle": c.index, "intensity": i}
             for o, s, i, c in zip(onsets, site_of, inten, planned, strict=True)
             if i > 0]  # fmt: skip
    # As the engine records a train the stimulator's disarm cut short, at its end.
    cut = [{**f, "event": "train_cut_short", "t_disarmed": f["t_trigger"] + 2.05,
            "pulses_delivered": 21, "pulses_planned": 50, "reason": "disarmed: operator"}
           for f in fired if (f["site"], f["cycle"]) in set(cut_short)]  # fmt: skip
    stop_t = T0 + duration - 5.0
    alert = {"reason": "cardiac_stop", "site": sites[-1], "rule": "floor", "hr_bpm": 44.0,
             "floor_bpm": 45.0, "event": "alert"}  # fmt: skip
    dec = ([(T0, {"event": "config", "config": config})]
           + [(f["t_trigger"], f) for f in fired]
           + [(f["t_trigger"] + p.train_s, f) for f in cut] + [(stop_t, alert)])  # fmt: skip
    dec.sort(key=lambda r: r[0])
    truth_id = f"{prefix}-ecg-truth"
    mk = [{"label": "marker", "unit": "", "type": "Marker"}]
    hr_cols = [{"label": c, "unit": "", "type": "HR"}
               for c in ("hr_bpm", "ibi_ms", "rmssd_ms", "sdnn_ms", "flags")]  # fmt: skip
    hr_data = np.column_stack([hr, np.full((hr.size, 3), np.nan), np.zeros(hr.size)])
    r_t = T0 + sim.rpeaks / sim.fs
    streams = [
        (info_xml("stimloop decisions", "Markers", catalog.get("decisions").source_id(prefix),
                  mk, 0.0, "string",
                  {"session_config": json.dumps(config),
                   "truth_source_ids": json.dumps({"ecg": truth_id})}),
         "string", np.array([t for t, _ in dec]), [[json.dumps(e)] for _, e in dec]),
        (info_xml("stimloop heart rate", "HR", catalog.get("heart_hr").source_id(prefix),
                  hr_cols, rate, "double64"), "double64", hr_t, hr_data),
        (info_xml("stimloop hbc", "Markers", catalog.get("hbc").source_id(prefix), mk, 0.0,
                  "string"), "string", np.array([t for t, _ in hbc_rows]),
         [[json.dumps(e)] for _, e in hbc_rows]),
        (info_xml("virtual subject truth", "Truth", truth_id,
                  [{"label": "index", "unit": "", "type": "Index"},
                   {"label": "hr", "unit": "bpm", "type": "HR"}], 0.0, "double64",
                  {"best_site": sim.truth.best_site}),
         "double64", r_t, np.column_stack([sim.rpeaks.astype(float), np.full(r_t.size, 70.0)])),
    ]  # fmt: skip
    write_xdf(path, streams)
    return {"localisation": localisation_dict(loc), "truth_best_site": sim.truth.best_site,
            "stop_t": stop_t, "fired": len(fired), "metrics": metrics}  # fmt: skip
