"""``stimloop study analyze``: the group analysis of many session recordings on Dask.

Each recording is analysed as ``stimloop analyze`` analyses it
(:func:`stimloop.loop.report.session_report`, plus the exercise and HBC figures where
the recording holds them; :mod:`stimloop.loop.study_rows`), in a Dask worker
(:mod:`stimloop.loop.cluster`: a local cluster sized to the machine, or ``scheduler``).
The rows are gathered into one tidy table per level (session, pulse, exercise, site,
cycle), written as Parquet and CSV, with the group figures
(:mod:`stimloop.loop.study_figures`).

**Who is who.** Participant and session come from the file's path relative to the
study folder: BIDS-like ``sub-<label>`` and ``ses-<label>`` parts, in folder or file
names (``sub-01/ses-02/rec.xdf``, ``sub-01_ses-02_task-x.xdf``), or a ``pattern``: a
regular expression with named groups ``participant`` and (optionally) ``session``,
searched in the relative path with ``/`` separators. A path without them gets ``n/a``
(BIDS's missing value); a path whose folder and file name disagree is an error row.

**Failures.** A session that cannot be analysed (not XDF, no session in it, corrupt
before its first data, any exception) becomes a session row with ``status = "error"``
and the error; the others complete. A damaged file is analysed up to the damage and
marked ``status = "damaged"``. Full tracebacks go to ``errors.log`` in the output.

**Incremental.** Every result is kept in ``<out>/.stimloop-study/`` under a key made
of the file's content hash (SHA-256) and the code version (stimloop's version, numpy's
and scipy's, and a hash of every module of ``stimloop.dsp``, ``stimloop.stream`` and
``stimloop.loop``). A re-run analyses only files whose key is new: new or changed
recordings, or all of them after a code change. Results are saved as each session
completes, so an interrupted study resumes where it stopped. Failures that are not the
file's (a worker lost) are not kept and are retried on the next run.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import json
import logging
import os
import re
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stimloop.loop.cluster import map_jobs, open_client
from stimloop.loop.study_rows import COLUMNS, KEY_COLUMNS, LEVELS
from stimloop.loop.study_tables import StudyError, replace_file, write_tables

log = logging.getLogger("stimloop.loop.study")

#: Packages whose source makes the code version.
CODE_PACKAGES = ("stimloop.dsp", "stimloop.stream", "stimloop.loop")
#: Subfolder of the output that keeps per-session results between runs.
STATE_DIR = ".stimloop-study"
_SUB = re.compile(r"(?:^|[/_])sub-([A-Za-z0-9]+)")
_SES = re.compile(r"(?:^|[/_])ses-([A-Za-z0-9]+)")
_MISSING = "n/a"


@dataclass(frozen=True)
class SessionFile:
    """One recording of the study.

    Attributes
    ----------
    path : str
        Absolute path.
    file : str
        Path relative to the study folder, ``/``-separated: the rows' key.
    participant, session : str
        From the path (``n/a`` when it does not say).
    identity_error : str or None
        Why participant/session could not be read from the path.
    """

    path: str
    file: str
    participant: str
    session: str
    identity_error: str | None = None


def _root_of(pattern: str) -> Path:
    """The folder a glob starts from: its parts before the first magic one."""
    parts = Path(pattern).parts
    fixed = []
    for p in parts:
        if glob.has_magic(p):
            break
        fixed.append(p)
    root = Path(*fixed) if fixed else Path(".")
    return root if root.is_dir() else root.parent


def find_sessions(inputs: Sequence[str], pattern: str | None = None) -> list[SessionFile]:
    """The recordings named by ``inputs``: folders (every ``*.xdf`` below them) or globs.

    Parameters
    ----------
    inputs : sequence of str
        Folders or glob patterns (``**`` recurses).
    pattern : str, optional
        Regular expression with named groups ``participant`` and optionally ``session``;
        default: BIDS-like ``sub-``/``ses-`` parts.

    Returns
    -------
    list of SessionFile
        Sorted by relative path, each file once.

    Raises
    ------
    StudyError
        Nothing matched, or ``pattern`` is not a valid expression with a
        ``participant`` group.
    """
    rx = None
    if pattern is not None:
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise StudyError(f"--pattern {pattern!r} is not a regular expression: {exc}") from exc
        if "participant" not in rx.groupindex:
            raise StudyError(
                f"--pattern {pattern!r} has no named group 'participant'; expected e.g. "
                r"'(?P<participant>P\d+)/(?P<session>\d+)'"
            )
    found: dict[str, Path] = {}
    roots = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            roots.append(p.resolve())
            files = p.rglob("*.xdf")
        else:
            roots.append(_root_of(item).resolve())
            files = (Path(f) for f in glob.glob(item, recursive=True))
        for f in files:
            if f.is_file():
                found[str(f.resolve())] = f.resolve()
    if not found:
        raise StudyError(
            f"no recordings found in {list(inputs)}; expected folders holding "
            "*.xdf files or glob patterns matching files"
        )
    base = Path(os.path.commonpath([str(r) for r in roots]))
    out = []
    for abs_path in sorted(found.values()):
        try:
            rel = abs_path.relative_to(base).as_posix()
        except ValueError:
            rel = abs_path.as_posix()
        out.append(_identify(str(abs_path), rel, rx))
    return sorted(out, key=lambda s: s.file)


def _identify(path: str, rel: str, rx: re.Pattern | None) -> SessionFile:
    if rx is not None:
        m = rx.search(rel)
        if m is None:
            return SessionFile(
                path, rel, _MISSING, _MISSING, f"--pattern {rx.pattern!r} does not match {rel!r}"
            )
        ses = m.groupdict().get("session")
        return SessionFile(path, rel, m.group("participant"), ses or _MISSING)
    ids = {}
    for what, rx_ in (("participant", _SUB), ("session", _SES)):
        labels = set(rx_.findall(rel))
        if len(labels) > 1:
            return SessionFile(
                path,
                rel,
                _MISSING,
                _MISSING,
                f"{rel!r} names more than one {what}: {sorted(labels)}",
            )
        ids[what] = labels.pop() if labels else _MISSING
    return SessionFile(path, rel, ids["participant"], ids["session"])


# ----------------------------------------------------------------------------- versions
def code_version() -> str:
    """SHA-256 of stimloop's, numpy's and scipy's versions and of every module of
    :data:`CODE_PACKAGES` (any change to the analysis code re-analyses every file)."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import scipy

    h = hashlib.sha256()
    try:
        own = version("stimloop")
    except PackageNotFoundError:
        own = "unknown"
    h.update(f"stimloop {own} numpy {numpy.__version__} scipy {scipy.__version__}".encode())
    for name in CODE_PACKAGES:
        pkg = importlib.import_module(name)
        for folder in pkg.__path__:
            for f in sorted(Path(folder).glob("*.py")):
                h.update(f"{name}/{f.name}".encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def file_hash(path: str | Path, memo: dict[str, Any] | None = None) -> str:
    """SHA-256 of a file's content; ``memo`` (path -> size, mtime_ns, sha256) skips
    re-reading a file whose size and modification time are unchanged."""
    st = os.stat(path)
    if memo is not None:
        m = memo.get(str(path))
        if m and m["size"] == st.st_size and m["mtime_ns"] == st.st_mtime_ns:
            return m["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    digest = h.hexdigest()
    if memo is not None:
        memo[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    return digest


# ------------------------------------------------------------------------------ one job
def analyze_file(job: dict[str, Any]) -> dict[str, Any]:
    """Analyse one recording in a worker; never raises.

    Parameters
    ----------
    job : dict
        ``path``, ``file``, ``participant``, ``session``, ``identity_error``, ``key``.

    Returns
    -------
    dict
        ``key``, ``file``, ``tables`` (rows by level), ``error`` (None or the message),
        ``traceback``, ``analysis_s`` (wall time in the worker).
    """
    from stimloop.loop.report import read_session
    from stimloop.loop.study_rows import session_tables

    t0 = time.perf_counter()
    key = {k: job[k] for k in KEY_COLUMNS}
    try:
        if job.get("identity_error"):
            raise StudyError(job["identity_error"])
        tables = session_tables(read_session(job["path"]), key)
        error = tb = None
    except Exception as exc:  # one bad recording never stops a study
        error = f"{type(exc).__name__}: {exc}"
        tb = traceback.format_exc()
        tables = {level: [] for level in LEVELS}
        tables["session"] = [{**key, "status": "error", "error": error}]
    return {
        "key": job["key"],
        "file": job["file"],
        "tables": tables,
        "error": error,
        "traceback": tb,
        "analysis_s": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------------------- results
@dataclass
class StudyResult:
    """What a study run did.

    Attributes
    ----------
    sessions : list of SessionFile
        Every recording of the study.
    analysed, reused : list of str
        Files analysed in this run, and files whose kept result was reused.
    failed : dict of str to str
        File -> error, for the sessions whose row says ``status = "error"``.
    rows : dict of str to int
        Rows per table.
    outputs : dict of str to str
        Every file written (``session.parquet``, ``session.csv``, ..., figures).
    figures : dict
        The figures' numbers (what :mod:`stimloop.loop.study_figures` drew).
    wall_s : float
        Wall time of the run, s.
    timings : dict of str to float
        Where it went, s: ``find_and_hash`` (finding the files, hashing the new ones,
        the code version), ``analysis`` (cluster start, the jobs, cluster close; 0 when
        every result was kept), ``tables``, ``figures``.
    """

    sessions: list[SessionFile]
    analysed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


class _Store:
    """Kept results: ``<out>/.stimloop-study/results/<key>.json`` and the hash memo."""

    def __init__(self, out: Path) -> None:
        self.dir = out / STATE_DIR
        self.results = self.dir / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.memo_path = self.dir / "file-hashes.json"
        try:
            self.memo = json.loads(self.memo_path.read_text())
        except (OSError, ValueError):
            self.memo = {}
        self.lock = threading.Lock()

    def load(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.results / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def save(self, result: dict[str, Any]) -> None:
        path = self.results / f"{result['key']}.json"
        tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        with self.lock:
            tmp.write_text(json.dumps(result, allow_nan=False))
            os.replace(tmp, path)

    def save_memo(self) -> None:
        tmp = self.memo_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.memo))
        os.replace(tmp, self.memo_path)


def run_study(
    inputs: Sequence[str],
    out: str | Path,
    *,
    pattern: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    figures: bool = True,
) -> StudyResult:
    """Analyse every recording of a study and write its tables and figures.

    Parameters
    ----------
    inputs : sequence of str
        Folders or glob patterns (:func:`find_sessions`).
    out : str or Path
        Output folder (created): ``<level>.parquet``, ``<level>.csv``, ``study.html``,
        ``figures/*.svg``, ``figures.json``, ``errors.log``.
    pattern : str, optional
        Participant/session expression (:func:`find_sessions`).
    scheduler : str, optional
        Dask scheduler address; default a local cluster.
    workers : int, optional
        Local cluster size (default: the CPUs this process may use).
    progress : bool
        Show Dask's progress bar.
    figures : bool
        Draw the group figures.

    Returns
    -------
    StudyResult
    """
    t_start = time.perf_counter()
    sessions = find_sessions(inputs, pattern)
    out = Path(out)
    store = _open_store(out)
    jobs, kept = _plan_jobs(sessions, store)
    result = StudyResult(sessions, analysed=[j["file"] for j in jobs], reused=sorted(kept))
    t = time.perf_counter()
    result.timings["find_and_hash"] = t - t_start
    fresh = _run_jobs(jobs, store, scheduler, workers, progress) if jobs else {}
    result.timings["analysis"] = time.perf_counter() - t
    tables, errors = _gather_tables(sessions, {**kept, **fresh}, result.failed)
    t = time.perf_counter()
    result.outputs.update(write_tables(tables, out))
    result.timings["tables"] = time.perf_counter() - t
    result.rows = {level: len(rows) for level, rows in tables.items()}
    log_path = out / "errors.log"
    log = "".join(errors) if errors else "no session failed\n"
    replace_file(log_path, lambda tmp: tmp.write_text(log))
    result.outputs["errors"] = str(log_path)
    if figures:
        from stimloop.loop.study_figures import write_figures

        t = time.perf_counter()
        drawn, files = write_figures(tables, out)
        result.figures = drawn
        result.outputs.update(files)
        result.timings["figures"] = time.perf_counter() - t
    result.wall_s = time.perf_counter() - t_start
    return result


def _open_store(out: Path) -> _Store:
    """The output folder (created) and its store of kept results."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        return _Store(out)
    except OSError as exc:
        raise StudyError(f"cannot write the study output to {str(out)!r}: {exc}") from exc


def _plan_jobs(sessions: list[SessionFile], store: _Store) -> tuple[list[dict], dict[str, dict]]:
    """The jobs to run, and the kept results (by file) of the sessions analysed before.

    A result is kept under the hash of the file's content, the code version and the
    session's identity, so any change to one of them analyses the file again.
    """
    version = code_version()
    jobs, kept = [], {}
    for s in sessions:
        try:
            content = file_hash(s.path, store.memo)
        except OSError as exc:  # vanished or unreadable: still a row
            content = f"unreadable {exc}"
        key = hashlib.sha256(
            f"{content} {version} {s.participant} {s.session} {s.file} {s.identity_error}".encode()
        ).hexdigest()
        job = {
            "path": s.path,
            "file": s.file,
            "participant": s.participant,
            "session": s.session,
            "identity_error": s.identity_error,
            "key": key,
        }
        if (res := store.load(key)) is not None:
            kept[s.file] = res
        else:
            jobs.append(job)
    store.save_memo()
    return jobs, kept


def _gather_tables(
    sessions: list[SessionFile], by_file: dict[str, dict], failed: dict[str, str]
) -> tuple[dict[str, list[dict]], list[str]]:
    """Every session's rows per table, in session order, and the failed sessions' error
    log entries (each failed file is also put in ``failed`` with its error)."""
    tables: dict[str, list[dict]] = {level: [] for level in LEVELS}
    errors = []
    for s in sessions:
        res = by_file[s.file]
        for level in LEVELS:
            tables[level] += res["tables"][level]
        if res["error"]:
            failed[s.file] = res["error"]
            errors.append(f"== {s.file}\n{res.get('traceback') or res['error']}\n")
    return tables, errors


def _run_jobs(
    jobs: list[dict], store: _Store, scheduler: str | None, workers: int | None, progress: bool
) -> dict[str, dict]:
    """Run the jobs on Dask; keep each result as it completes (not a lost worker's)."""
    from distributed import wait

    results: dict[str, dict] = {}
    with open_client(scheduler, workers) as client:
        futures = client.map(analyze_file, jobs, pure=False)

        def keep(fut) -> None:
            if fut.status == "finished":
                store.save(fut.result())

        for f in futures:
            f.add_done_callback(keep)
        if progress:
            from distributed import progress as show_progress

            show_progress(futures)
        wait(futures)
        for job, fut in zip(jobs, futures, strict=True):
            if fut.status == "finished":
                results[job["file"]] = fut.result()
                store.save(results[job["file"]])  # the callback may still be on its way
                continue
            exc = fut.exception()
            error = f"{type(exc).__name__}: {exc} (not the file's fault; retried next run)"
            key = {k: job[k] for k in KEY_COLUMNS}
            tables = {level: [] for level in LEVELS}
            tables["session"] = [{**key, "status": "error", "error": error}]
            results[job["file"]] = {
                "key": job["key"],
                "file": job["file"],
                "tables": tables,
                "error": error,
                "traceback": error,
            }
    return results


__all__ = [
    "COLUMNS",
    "StudyError",
    "StudyResult",
    "analyze_file",
    "code_version",
    "file_hash",
    "find_sessions",
    "format_study",
    "map_jobs",
    "run_study",
]


def format_study(result: StudyResult, as_json: bool = False) -> str:
    """A study run's summary for the terminal (or as JSON): counts, failures, tables,
    and the per-participant phase figures the group figure shows."""
    summary = {
        "sessions": len(result.sessions),
        "analysed": result.analysed,
        "reused": result.reused,
        "failed": result.failed,
        "rows": result.rows,
        "outputs": result.outputs,
        "figures": result.figures,
        "wall_s": result.wall_s,
        "timings_s": result.timings,
    }
    if as_json:
        return json.dumps(summary, indent=2, default=float)
    out_dir = Path(result.outputs["session.parquet"]).parent
    lines = [
        f"study: {len(result.sessions)} recordings, {len(result.analysed)} analysed, "
        f"{len(result.reused)} unchanged (kept results), {len(result.failed)} failed; "
        f"{result.wall_s:.1f} s ("
        + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in result.timings.items())
        + ")",
    ]
    for f, err in result.failed.items():
        lines.append(f"  failed: {f}: {err}")
    lines.append(
        f"tables in {out_dir} (Parquet and CSV): "
        + ", ".join(f"{lvl} {n} rows" for lvl, n in result.rows.items())
    )
    phase = result.figures.get("phase_by_participant") or {}
    for who, s in phase.items():
        lines.append(
            f"  participant {who}: {s['n']} pulses, phase error mean "
            f"{s['mean_deg']:.1f}°, circular SD {s['sd_deg']:.1f}°"
        )
    if "study.html" in result.outputs:
        lines.append(f"figures: {result.outputs['study.html']}")
    return "\n".join(lines)
