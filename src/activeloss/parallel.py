"""``--parallel-trials N``: several (strategy, trial) runs at once, one process each.

A batch of 128 small images leaves a modern GPU mostly idle, and the small CPU models
use one thread each; running N independent runs side by side fills the device.  Each
run is already independent of the others (every draw is seeded by name, the model by
its own seed), so a worker process runs it exactly as the single-process loop would and
the results are identical, only sooner.  Workers write their cycles into the shared
SQLite store (each cycle one transaction; WAL lets them take turns); the parent creates
the run rows first, in the sequential order, and follows progress from the store.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from . import performance
from .store import Store
from .strategies import get_strategy

if TYPE_CHECKING:
    from .config import Settings
    from .experiment import Experiment
    from .strategies import Strategy

#: the worker process's own Experiment, built once by :func:`_start_worker`
_worker: Experiment | None = None


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


def _start_worker(plan, out: str, oracle, settings: Settings, workers: int) -> None:
    global _worker
    from .experiment import Experiment, set_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    _exit_with_parent(os.getppid())
    set_threads(settings, plan.device, workers)
    performance.configure(plan.device, plan.settings.deterministic)
    _worker = Experiment(plan, out, oracle=oracle, progress=False)
    _worker.write_csv = False  # the parent writes results.csv


def _run_unit(name: str, s: Settings, trial: int) -> tuple[float, int] | None:
    store = Store.in_folder(_worker.out)
    try:
        return _worker.run_trial(store, get_strategy(name), s, trial, tqdm(disable=True))
    finally:
        store.close()


def run_parallel(exp: Experiment, store: Store, units: list[tuple[Strategy, Settings, int]], workers: int, bar) -> None:
    """Run ``units`` on ``workers`` processes; the first failure stops them all and is raised."""
    from .experiment import Plan
    from .report import write_results_csv

    for strategy, s, trial in units:  # run ids in the sequential order, whatever finishes first
        store.run_id(strategy.name, trial, s.to_dict())
    context = torch.multiprocessing.get_context("spawn")  # CUDA cannot live in a forked process
    shared = Plan(exp.plan.settings, exp.data, [], exp.device)  # its tensors travel through shared memory
    pool = context.Pool(workers, initializer=_start_worker, initargs=(shared, str(exp.out), exp.oracle, units[0][1], workers))
    try:
        pending = [(strategy, trial, pool.apply_async(_run_unit, (strategy.name, s, trial))) for strategy, s, trial in units]
        while pending:
            pending[0][2].wait(timeout=0.5)
            bar.update(store.count_cycles() - bar.n)
            still = []
            for strategy, trial, job in pending:
                if not job.ready():
                    still.append((strategy, trial, job))
                    continue
                exp.announce(strategy, trial, job.get())  # get() raises the worker's error here
                write_results_csv(store, exp.out / "results.csv")
            pending = still
    finally:
        pool.terminate()  # a failure elsewhere must not leave workers running; finished ones are idle
        pool.join()
