"""Independent tasks in parallel: in this process, on a local Dask cluster, or on an existing Dask scheduler."""

from __future__ import annotations

__all__ = ["TaskPool"]

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from molsamp.errors import InputError

_WORKER_ENVIRONMENT = {"OPENMM_CPU_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Local workers each use one core, so n_workers processes do not oversubscribe the machine."""


class TaskPool:
    """Where independent tasks run: the Dask ``scheduler`` at an address (``"tcp://host:8786"``), else a local
    Dask cluster of ``n_workers`` single-threaded processes (default: one per core) started at the first batch of
    more than one task, else (``n_workers=1``) this process.

    Use as a context manager; an unreachable scheduler fails on entry, before any work. Local clusters start
    processes with ``spawn``: create the pool under ``if __name__ == "__main__":`` in scripts.
    """

    def __init__(self, scheduler: str | None = None, n_workers: int | None = None,
                 connect_timeout: float = 10.0) -> None:
        if n_workers is not None and n_workers < 1:
            raise InputError(f"the number of workers must be at least 1, got {n_workers} (unset: one per core)")
        self.scheduler = scheduler
        self.n_workers = n_workers or os.cpu_count() or 1
        self.connect_timeout = connect_timeout
        self._client = None
        self._cluster = None

    def __enter__(self) -> TaskPool:
        if self.scheduler is not None:
            self._client = _connect(self.scheduler, self.connect_timeout)
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect from the scheduler, or stop the local cluster."""
        for resource in (self._client, self._cluster):
            if resource is not None:
                resource.close()
        self._client = self._cluster = None

    def run(self, function: Callable[..., Any], tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        """Run ``function(*task)`` for every task; yield ``(index, result)`` as each one finishes.

        ``function`` must be importable by the workers (a module-level function of an installed package).
        """
        if not tasks:
            return
        if self._client is None and (self.n_workers == 1 or len(tasks) == 1):
            for index, task in enumerate(tasks):
                yield index, function(*task)
            return
        from distributed import as_completed

        client = self._client or self._start_local_cluster()
        futures = {client.submit(function, *task, pure=False): index for index, task in enumerate(tasks)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            client.cancel(list(futures))

    def _start_local_cluster(self):
        from distributed import Client, LocalCluster

        self._cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=1, processes=True,
                                     dashboard_address=":0", silence_logs=logging.ERROR, env=_WORKER_ENVIRONMENT)
        self._client = Client(self._cluster)
        return self._client


def _connect(scheduler: str, timeout: float):
    from distributed import Client

    try:
        return Client(scheduler, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as error:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s "
                         f"({type(error).__name__}: {error})") from None
