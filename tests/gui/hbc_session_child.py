"""A short heart-brain-coupled localisation on the virtual subject, in its own process,
for the GUI tests: one site, a rest cycle and two intensities, 6 s cycles with 1 s trains
(about 25 s once confirmed). Nobody confirms the coil position but the window.

Usage: ``python hbc_session_child.py TAG``. Prints one JSON line when the session is
open (``prefix``), then runs until the protocol ends or stdin closes.
"""

from __future__ import annotations

import json
import sys
import threading

from stimloop.stream.lslconfig import use_machine_scope

use_machine_scope()

from stimloop.devices.sim.hbc_runner import HBCSubjectSession  # noqa: E402
from stimloop.devices.sim.hbc_subject import SubjectConfig  # noqa: E402
from stimloop.loop.config import parse_session  # noqa: E402
from stimloop.loop.session import Session  # noqa: E402

SITES = ("F3",)


def main(tag: str) -> None:
    prefix = f"{tag}-session"
    subj = HBCSubjectSession(
        SubjectConfig(seed=1, sites=SITES), f"{prefix}-pulses", prefix=f"{tag}-subject"
    )
    cfg = parse_session(
        {
            "name": "gui-hbc",
            "sources": {"ecg": {"source_id": subj.source_id("ecg"), "rate_hz": 500.0}},
            "protocol": {
                "kind": "hbc",
                "sites": list(SITES),
                "intensities": [100.0, 110.0],
                "rmt_pct_mso": subj.truth.rmt_pct,
                "order_seed": 0,
                "cycle_s": 6.0,
                "train_s": 1.0,
                "min_above": 1,
            },
            "stimulator": {"driver": "simulated", "safety": {"max_intensity_pct": 90}},
        },
        "gui hbc test",
    )
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the test closes it
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    truth = {"ecg": subj.source_id("ecg-truth")}
    with subj, Session(cfg, prefix, seed=1, truth_source_ids=truth) as s:
        print(json.dumps({"prefix": s.prefix}), flush=True)
        s.run(180.0, stop=stop)
    stop.wait(30.0)  # the status stream is gone; the test closes stdin


if __name__ == "__main__":
    main(sys.argv[1])
