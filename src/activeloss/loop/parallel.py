"""``--parallel-trials N``: several (strategy, trial) runs at once, one process each.

A batch of 128 small images leaves a modern GPU mostly idle, and the small CPU models
use one thread each; running N independent runs side by side fills the device.  Each
run is already independent of the others (every draw is seeded by name, the model by
its own seed), so a worker process runs it exactly as the single-process loop would and
the results are identical, only sooner.  Workers write their steps into the shared
SQLite store (each step one transaction; WAL lets them take turns); the parent creates
the run rows first, in the sequential order, and follows progress from the store.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from ..device import performance
from ..store import Store
from .driver import Driver, Outcome
from .plan import Plan, Run

#: the worker process's own Driver, built once by :func:`_start_worker`
_worker: Driver | None = None


def _exit_with_parent(parent: int) -> None:
    """Stop this worker when the parent is gone (killed with -9, say): a resumed run must not
    race an orphan still writing the same run.  On Linux the kernel kills it at once; elsewhere
    a thread notices within 0.2 s."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _start_worker(plan: Plan, out: str, oracle: Any, workers: int) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    _exit_with_parent(os.getppid())
    performance.set_threads(plan.runs[0].settings, plan.device, workers)
    performance.configure(plan.device, plan.runs[0].settings.deterministic)
    _worker = Driver(plan, Path(out), oracle=oracle, progress=False)
    _worker.write_csv = False  # the parent writes results.csv


def _run_unit(index: int, trial: int) -> Outcome:
    assert _worker is not None
    store = Store.in_folder(_worker.out)
    try:
        return _worker.run_unit(store, _worker.plan.runs[index], trial)
    finally:
        store.close()


def run_parallel(driver: Driver, store: Store, units: list[tuple[Run, int]], workers: int, bar: Any) -> None:
    """Run ``units`` of ``driver``'s plan on ``workers`` processes; the first failure stops them all
    and is raised."""
    for run, trial in units:  # run ids in the sequential order, whatever finishes first
        store.run_id(run.name, trial, run.record())
    context = torch.multiprocessing.get_context("spawn")  # CUDA cannot live in a forked process
    oracle = driver.oracle if driver.oracle is not driver.initial_oracle else None  # workers make the simulated one
    pool = context.Pool(workers, initializer=_start_worker, initargs=(driver.plan, str(driver.out), oracle, workers))
    index = {id(run): i for i, run in enumerate(driver.plan.runs)}
    try:
        pending = [(run, trial, pool.apply_async(_run_unit, (index[id(run)], trial))) for run, trial in units]
        while pending:
            pending[0][2].wait(timeout=0.5)
            bar.update(store.count_evaluated() - bar.n)
            still = []
            for run, trial, job in pending:
                if not job.ready():
                    still.append((run, trial, job))
                    continue
                driver.announce(run, trial, job.get())  # get() raises the worker's error here
                store.write_results_csv(driver.out / "results.csv")
            pending = still
    finally:
        pool.terminate()  # a failure elsewhere must not leave workers running; finished ones are idle
        pool.join()
