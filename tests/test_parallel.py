"""Independent tasks in this process, on a local Dask cluster, and a clear error for an unreachable scheduler."""

import os

import pytest

from molsamp.errors import InputError
from molsamp.parallel import TaskPool


def square_and_threads(x):
    return x * x, os.environ.get("OPENMM_CPU_THREADS"), os.getpid()


def test_in_process_tasks_run_in_order():
    with TaskPool(n_workers=1) as pool:
        results = list(pool.run(square_and_threads, [(i,) for i in range(4)]))
    assert [index for index, _ in results] == [0, 1, 2, 3]
    assert {pid for _, (_, _, pid) in results} == {os.getpid()}


def test_local_cluster_runs_every_task_on_single_threaded_workers():
    with TaskPool(n_workers=2) as pool:
        results = dict(pool.run(square_and_threads, [(i,) for i in range(6)]))
        again = dict(pool.run(square_and_threads, [(i,) for i in range(3)]))  # the same cluster serves again
    assert {i: value for i, (value, _, _) in results.items()} == {i: i * i for i in range(6)}
    assert {threads for _, threads, _ in results.values()} == {"1"}
    assert os.getpid() not in {pid for _, _, pid in results.values()}
    assert {pid for _, _, pid in again.values()} <= {pid for _, _, pid in results.values()}


def test_a_single_task_runs_in_this_process():
    with TaskPool(n_workers=2) as pool:
        [(index, (_, _, pid))] = pool.run(square_and_threads, [(3,)])
    assert (index, pid) == (0, os.getpid())


def test_unreachable_scheduler_fails_on_entry():
    with pytest.raises(InputError, match=r"cannot reach the Dask scheduler at 'tcp://127.0.0.1:9' within 1 s"):
        with TaskPool(scheduler="tcp://127.0.0.1:9", connect_timeout=1.0):
            pass
