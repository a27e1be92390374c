"""A demo session in its own process for the GUI tests, driven over stdin.

Usage: ``python session_child.py PREFIX``. Prints one JSON line when the session is
open (``prefix``, ``gate_markers``: source_id of the HAL gate's marker stream), then
answers one JSON line per command read from stdin:

- ``state``: ``{"armed", "running", "estop"}``
- ``rearm``: reset the emergency stop (if engaged) and arm again
- ``pause ROLE SECONDS``: pause one simulated stream (a real gap)
"""

from __future__ import annotations

import json
import sys
import threading

from stimloop.stream.lslconfig import use_machine_scope

use_machine_scope()

from stimloop.devices.estop import emergency_stop_engaged, reset_emergency_stop  # noqa: E402
from stimloop.devices.sim.runner import SimConfig, SimulatorProcess  # noqa: E402
from stimloop.loop.demo import demo_config  # noqa: E402
from stimloop.loop.session import Session  # noqa: E402


def main(prefix: str) -> None:
    sim = SimConfig(prefix=prefix)
    stop = threading.Event()
    with SimulatorProcess(sim) as proc:
        truth = {role: f"{prefix}-{role}-truth" for role in sim.roles}
        with Session(demo_config(sim), f"{prefix}-session", truth_source_ids=truth) as s:

            def serve() -> None:
                for line in sys.stdin:
                    cmd, *args = line.split()
                    if cmd == "rearm":
                        if emergency_stop_engaged():
                            reset_emergency_stop("GUI test: next measurement")
                        s.stimulator.arm()
                    elif cmd == "pause":
                        proc.pause(args[0], float(args[1]))
                    st = s.stimulator.status()
                    reply = {"armed": st.armed, "running": s.engine.running,
                             "estop": emergency_stop_engaged()}  # fmt: skip
                    print(json.dumps(reply), flush=True)
                stop.set()  # stdin closed: the test is over

            threading.Thread(target=serve, daemon=True).start()
            print(json.dumps({"prefix": s.prefix, "gate_markers": s.stimulator.marker_source_id}),
                  flush=True)  # fmt: skip
            s.run(600.0, stop=stop)


if __name__ == "__main__":
    main(sys.argv[1])
