"""Run many independent jobs on Dask distributed: a local cluster or an existing one.

One small door for everything stimloop does many times over: a study's sessions
(:mod:`stimloop.loop.study`) and the benchmark sweeps over seeds, noise levels or
recordings (``bench/hbc.py``). Without ``scheduler`` a ``LocalCluster`` is started,
sized to the CPUs this process may run on, one single-threaded worker process per CPU
(the numba kernels and the XDF reader hold the GIL, so threads would not help); with
``scheduler`` ("tcp://host:8786") the jobs go to that cluster unchanged, so a sweep
that takes an hour on 2 cores can go to a lab's cluster.

The functions sent must be importable by the workers (a module function) or picklable
by cloudpickle (a script's own functions are sent by value). Dask's documentation:
https://distributed.dask.org/en/stable/client.html and ``LocalCluster``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from stimloop.dsp.errors import StimloopError

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("stimloop.loop.cluster")


class ClusterError(StimloopError):
    """Dask is not installed, the scheduler cannot be reached, or a bad worker count."""


def local_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ClusterError(
            "Dask distributed is not installed; install the study extra: "
            "pip install 'stimloop[study]'"
        ) from exc
    return distributed


@contextlib.contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler``, or to a new local cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``). None starts a local
        cluster that is closed on exit.
    workers : int, optional
        Worker processes of the local cluster (default: :func:`local_cpus`), each with
        one thread. Ignored, with a log line, when ``scheduler`` is given (that
        cluster's size is its own).

    Raises
    ------
    ClusterError
        Dask is missing, ``workers`` is < 1, or the scheduler did not answer.
    """
    distributed = _import_distributed()
    if workers is not None and workers < 1:
        raise ClusterError(f"workers must be >= 1, got {workers}")
    if scheduler:
        if workers is not None:
            log.info("--workers %d ignored: the cluster at %s has its own workers", workers,
                     scheduler)  # fmt: skip
        try:
            client = distributed.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"no Dask scheduler answered at {scheduler!r}: {exc}") from exc
        with client:
            yield client
        return
    n = workers or local_cpus()
    if log.getEffectiveLevel() > logging.INFO:
        # Dask logs every worker start and stop at INFO; stimloop -v shows them.
        logging.getLogger("distributed").setLevel(logging.WARNING)
    # The diagnostics server on a free port: the default 8787 collides between runs.
    with (
        distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def map_jobs(
    func: Callable[[T], R],
    jobs: Sequence[T] | Iterable[T],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Any = None,
    progress: bool = False,
) -> list[R]:
    """``[func(j) for j in jobs]`` on Dask, results in the order of ``jobs``.

    Parameters
    ----------
    func : callable
        One job; a module-level function, or one cloudpickle can send.
    jobs : sequence
        The jobs' arguments (each must pickle).
    scheduler, workers
        As for :func:`open_client` (used when ``client`` is None).
    client : distributed.Client, optional
        Reuse this client instead of opening one.
    progress : bool
        Show Dask's progress bar on the terminal.

    Returns
    -------
    list
        One result per job, in order.

    Raises
    ------
    Exception
        The first job's exception that failed, re-raised with its own traceback (for
        sweeps: one failed job invalidates the table). :mod:`stimloop.loop.study`
        catches errors inside its job instead, so one bad session never stops a study.
    """
    items = list(jobs)
    if client is None:
        with open_client(scheduler, workers) as own:
            return map_jobs(func, items, client=own, progress=progress)
    if not items:
        return []
    # pure=False: equal arguments are still separate jobs (two sweeps of one seed).
    futures = client.map(func, items, pure=False)
    if progress:
        from distributed import progress as show_progress

        show_progress(futures)
    return client.gather(futures)
