"""Tools of the fault-injection suite (issue #15): a hostile local user, a hostile EEG
source, and a session run from the command line as an operator would run it.

- :func:`run_as_other_user` runs a small Python program as user ``nobody`` (uid 65534)
  when this process is root, so attacks on the session's sockets come from a real other
  account, checked by the kernel. Not root: the caller falls back to another process
  with a wrong credential (the session is told its operator is someone else).
- :class:`HostileEEG` publishes simulated EEG over real LSL from a child process whose
  timestamps, rate and values can be falsified on command (stamped ahead, pushed at
  twice or half the declared rate, epoch time, NaN).
- :func:`write_session_toml` writes a session config the way an operator would, for
  ``stimloop run``.

Run as a script, this module is the hostile source's child process.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

NOBODY = 65534
IS_ROOT = os.geteuid() == 0
HERE = Path(__file__).resolve().parent


# -- another user ------------------------------------------------------------------------
def _become_nobody() -> None:  # runs in the child between fork and exec
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _others_can_run(path: str) -> bool:
    """Whether a user with no rights of ours can execute ``path`` (every folder on the
    way searchable by others, the file executable by others)."""
    p = Path(path).resolve()
    try:
        return all(d.stat().st_mode & 0o001 for d in p.parents) and bool(p.stat().st_mode & 0o001)
    except OSError:
        return False


def other_user_python() -> str | None:
    """A Python interpreter that ``nobody`` can run (None: there is none)."""
    for candidate in (
        os.path.realpath(sys.executable),
        "/usr/bin/python3",
        "/usr/local/bin/python3",
    ):
        if _others_can_run(candidate):
            return candidate
    return None


def run_as_other_user(code: str, *args: str, timeout: float = 30.0,
                      **popen) -> subprocess.CompletedProcess:  # fmt: skip
    """Run Python ``code`` with ``args`` as user ``nobody`` (needs root); its result.

    The base interpreter runs isolated (``-I -S``): ``nobody`` cannot read this checkout
    and needs nothing from it; the standard library is enough to attack a socket.
    """
    python = other_user_python()
    if not IS_ROOT or python is None:
        raise RuntimeError("needs root and a Python interpreter that nobody can run")
    return subprocess.run(
        [python, "-I", "-S", "-c", code, *args],
        capture_output=True, text=True, timeout=timeout, cwd="/", env={"PATH": "/usr/bin:/bin"},
        preexec_fn=_become_nobody, **popen,
    )  # fmt: skip


def spawn_as_other_user(code: str, *args: str, **popen) -> subprocess.Popen:
    """Start Python ``code`` with ``args`` as user ``nobody`` (needs root), running on."""
    python = other_user_python()
    if not IS_ROOT or python is None:
        raise RuntimeError("needs root and a Python interpreter that nobody can run")
    return subprocess.Popen(
        [python, "-I", "-S", "-c", code, *args],
        cwd="/", env={"PATH": "/usr/bin:/bin"}, preexec_fn=_become_nobody, **popen,
    )  # fmt: skip


#: Whether attacks can run as a real other account here (root, and an interpreter
#: ``nobody`` may execute); otherwise tests fall back to a wrong credential.
OTHER_USER = IS_ROOT and other_user_python() is not None

#: Sends one request on a Unix stream socket and prints what happened as JSON:
#: ``{"connect": "ok" | errno name, "reply": str}``. Argument: path, payload (hex).
UNIX_REQUEST = r"""
import errno, json, socket, sys
path, payload = sys.argv[1], bytes.fromhex(sys.argv[2])
out = {"uid": __import__("os").geteuid()}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(15.0)
try:
    s.connect(path)
except OSError as exc:
    out["connect"] = errno.errorcode.get(exc.errno, str(exc))
else:
    out["connect"] = "ok"
    reply = b""
    try:
        s.sendall(payload)
    except OSError as exc:  # the server may answer and close before reading
        out["error"] = repr(exc)
    try:
        while b"\n" not in reply:
            part = s.recv(4096)
            if not part:
                break
            reply += part
    except OSError as exc:
        out["error"] = repr(exc)
    out["reply"] = reply.decode(errors="replace").strip()
print(json.dumps(out))
"""


def unix_request_as_other_user(path: Path, payload: bytes) -> dict:
    """Send ``payload`` to the Unix socket ``path`` as ``nobody``; what happened."""
    out = run_as_other_user(UNIX_REQUEST, str(path), payload.hex())
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
    return json.loads(out.stdout)


# -- a hostile EEG source ------------------------------------------------------------------
class HostileEEG:
    """Simulated EEG on a real LSL outlet, in a child process, with falsifiable time.

    Modes (:meth:`mode`): ``normal``; ``ahead`` (stamps ``+offset_s`` ahead of the
    clock); ``double_index`` (twice the declared rate, stamped by sample index at the
    declared rate, so the stamps run ahead); ``double_dense`` (twice the declared rate,
    stamped in real time: two samples per declared period); ``half`` (half the declared
    rate, stamped in real time); ``epoch`` (stamped with seconds since 1970); ``far``
    (stamped ``offset_s`` from the LSL clock); ``nan`` (every value NaN).

    Parameters
    ----------
    source_id : str
        The stream's source_id.
    fs : float
        Declared rate, Hz.
    n_channels : int
        Channels (10-10 labels, C3 among them from 16 up).
    mode : str
        Mode at start.
    offset_s : float
        Offset of ``ahead`` and ``far`` at start, s.
    """

    def __init__(self, source_id: str, fs: float = 250.0, n_channels: int = 16,
                 mode: str = "normal", offset_s: float = 0.0) -> None:  # fmt: skip
        args = {"source_id": source_id, "fs": fs, "n_channels": n_channels, "mode": mode,
                "offset_s": offset_s}  # fmt: skip
        self._proc = subprocess.Popen(
            [sys.executable, str(HERE / "faultkit.py"), json.dumps(args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._reply(60.0)

    def _reply(self, timeout: float = 10.0) -> str:
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if ready else ""
        if not line.startswith("ok"):
            self.close()
            raise RuntimeError(f"hostile EEG source did not answer (exit {self._proc.poll()})")
        return line

    def mode(self, mode: str, offset_s: float = 0.0, period_s: float = 0.01) -> float:
        """Switch mode (pushing every ``period_s``); return the LSL time of the switch."""
        self._proc.stdin.write(f"{mode} {offset_s} {period_s}\n")
        self._proc.stdin.flush()
        return float(self._reply().split()[1])

    def close(self) -> None:
        """Stop the source (its outlet vanishes)."""
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()
                self._proc.wait(5.0)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait(5.0)
        for pipe in (self._proc.stdin, self._proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def __enter__(self) -> HostileEEG:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve_hostile(args: dict) -> None:
    """The child: push 10 ms chunks as the mode says; obey ``<mode> <offset>`` lines."""
    import threading

    import numpy as np
    import pylsl

    from stimloop.devices.sim.eeg import EEGGenerator

    fs = float(args["fs"])
    gen = EEGGenerator(fs, int(args["n_channels"]), 10.0, "C3", seed=3)
    info = pylsl.StreamInfo("hostile EEG", "EEG", len(gen.labels), fs, pylsl.cf_float32,
                            args["source_id"])  # fmt: skip
    chans = info.desc().append_child("channels")
    for label in gen.labels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "uV")
    outlet = pylsl.StreamOutlet(info, max(1, round(fs / 100)))
    lock = threading.Lock()
    state = {"mode": args["mode"], "offset": float(args["offset_s"]), "period": 0.01}
    t_cur = pylsl.local_clock()  # real time of the last sample pushed
    s_cur = t_cur  # its stamp in the double_index mode
    done = threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            mode, offset, period = line.split()
            with lock:
                state["mode"], state["offset"], state["period"] = mode, float(offset), float(period)
                t_switch = pylsl.local_clock()
            print(f"ok {t_switch!r}", flush=True)
        done.set()

    threading.Thread(target=commands, daemon=True).start()
    print("ok 0", flush=True)
    period = 0.01
    while not done.wait(period):
        with lock:
            mode, offset, period = state["mode"], state["offset"], state["period"]
        factor = {"double_index": 2.0, "double_dense": 2.0, "half": 0.5}.get(mode, 1.0)
        step = 1.0 / (fs * factor)
        now = pylsl.local_clock()
        n = int((now - t_cur) / step)
        if n <= 0:
            continue
        times = t_cur + step * np.arange(1, n + 1)
        t_cur = float(times[-1])
        if mode == "double_index":
            stamps = s_cur + np.arange(1, n + 1) / fs
        elif mode == "epoch":
            stamps = times + (time.time() - pylsl.local_clock())
        elif mode in ("ahead", "far"):
            stamps = times + offset
        else:
            stamps = times
        s_cur = float(stamps[-1]) if mode == "double_index" else t_cur
        x, _ = gen.generate(n)
        if mode == "nan":
            x[:] = np.nan
        outlet.push_chunk(np.ascontiguousarray(x, dtype=np.float32), stamps.tolist())


# -- the operator's session file ---------------------------------------------------------
def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def _toml_table(data: dict, name: str, out: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and v is not None}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if name and scalars:
        out.append(f"[{name}]")
    out += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    for k, v in tables.items():
        _toml_table(v, f"{name}.{k}" if name else k, out)


def write_session_toml(cfg, path: Path) -> Path:
    """Write a :class:`~stimloop.loop.config.SessionConfig` (or a mapping of one, valid
    or not) as a session TOML file."""
    out: list[str] = []
    _toml_table(cfg if isinstance(cfg, dict) else cfg.model_dump(), "", out)
    path.write_text("\n".join(out) + "\n")
    return path


def fast_config(sim, **protocol):
    """The demo session on ``sim``, asking for a pulse every ~0.3 s with no gates; the
    HAL allows it only under a recorded override (as tests/loop/test_session.py)."""
    from stimloop.loop.demo import demo_config

    cfg = demo_config(sim, **{"min_ipi_s": 0.25, "jitter_s": 0.0, "min_confidence": 0.0,
                              **protocol})  # fmt: skip
    stim = dict(cfg.stimulator)
    stim["safety"] = {**stim["safety"], "min_ipi_s": 0.2}
    stim["override_reason"] = "test: fast pulses against the simulated stimulator"
    return cfg.model_copy(update={"stimulator": stim})


def with_recording(cfg, path: Path):
    """``cfg`` recording to ``path``."""
    return cfg.model_copy(update={"recording": cfg.recording.model_copy(
        update={"path": str(path)})})  # fmt: skip


class RunningSession:
    """A :class:`~stimloop.loop.session.Session` opened and run on a thread of this
    process until the block ends (or its duration does).

    Attributes
    ----------
    session : Session
    result : SessionResult or None
        Set once the run ended.
    """

    def __init__(self, session, duration_s: float = 120.0) -> None:
        import threading

        self.session = session
        self.result = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._duration = duration_s
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.session.run(self._duration, stop=self._stop)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def __enter__(self) -> RunningSession:
        self.session.open()
        self._thread.start()
        return self

    def stop(self):
        """End the run, close the session; the run's result."""
        self._stop.set()
        self._thread.join(30.0)
        self.session.close()
        if self.error is not None:
            raise self.error
        return self.result

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30.0)
        self.session.close()


class CliSession:
    """``stimloop run FILE --headless --json`` in a child process, as an operator runs
    it, with its runtime root at ``root`` and its output in files under ``logs``.

    Parameters
    ----------
    toml : Path
        The session file.
    root : Path
        ``STIMLOOP_RUNTIME_DIR`` of the session.
    logs : Path
        Folder for its stdout and stderr.
    own_group : bool
        Start it in a process group of its own (a terminal's foreground job).
    ignore_sigint : bool
        Start it with SIGINT ignored (a job started in the background by a shell).
    """

    def __init__(self, toml: Path, root: Path, logs: Path, *, own_group: bool = False,
                 ignore_sigint: bool = False) -> None:  # fmt: skip
        self.root = root
        self.stdout_path, self.stderr_path = logs / "run.out", logs / "run.err"

        def prepare() -> None:
            if ignore_sigint:
                signal.signal(signal.SIGINT, signal.SIG_IGN)

        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stimloop.loop.cli", "run", str(toml), "--headless",
                 "--json"],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                env={**os.environ, "STIMLOOP_RUNTIME_DIR": str(root)},
                start_new_session=own_group, preexec_fn=prepare,
            )  # fmt: skip
        self.prefix = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_armed(self, timeout: float = 90.0) -> str:
        """Wait until the session is registered and its status says it is armed; its
        source_id prefix."""
        from stimloop.devices.endpoints import list_sessions
        from stimloop.stream.inlet import MarkerInlet

        def registered() -> bool:
            assert self.proc.poll() is None, self.stderr()
            found = [e for e in list_sessions(self.root) if e.pid == self.pid]
            self.prefix = found[0].prefix if found else ""
            return bool(found)

        assert wait_for(registered, timeout, 0.2), "the session did not register"
        status = MarkerInlet(f"{self.prefix}-status", resolve_timeout=timeout).connect()
        try:
            assert wait_for(lambda: any(json.loads(text)["stimulator"]["armed"]
                                        for text, _ in status.pull()), timeout, 0.1)  # fmt: skip
        finally:
            status.close()
        return self.prefix

    def recorder_pid(self) -> int:
        """Process id of the session's recorder (``stimloop record``)."""
        found = [c for c in children(self.pid) if "record" in cmdline(c)]
        assert len(found) == 1, [cmdline(c) for c in children(self.pid)]
        return found[0]

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the session to exit (killed after ``timeout``); its exit code."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5.0)
            raise

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        """Make sure it is gone (SIGTERM, then SIGKILL)."""
        terminate(self.proc)

    def __enter__(self) -> CliSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def cmdline(pid: int) -> list[str]:
    """Command line of ``pid`` ([] once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` (s) passes; its last value."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def terminate(proc: subprocess.Popen) -> None:
    """End a child that a test left running (SIGKILL after 10 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)


if __name__ == "__main__":
    from stimloop.stream.lslconfig import use_machine_scope

    use_machine_scope()  # the parent's LSLAPICFG, if set, is kept
    _serve_hostile(json.loads(sys.argv[1]))
