"""``--parallel-trials N``: several (strategy, trial) runs at once, one process each.

A batch of 128 small images leaves a modern GPU mostly idle, and the small CPU models
use one thread each; running N independent runs side by side fills the device.  Each
run is already independent of the others (every draw is seeded by name, the model by
its own seed), so a worker process runs it exactly as the single-process loop would and
the results are identical, only sooner.  Workers write their steps into the shared
SQLite store (each step one transaction; WAL lets them take turns); the parent creates
the run rows first, in the sequential order, and follows progress from the store.

The parent talks to each worker over a pipe of its own and waits on the pipes and on the
workers' process handles together, so a worker that dies (``kill -9``, out of memory) is
noticed at once: the other workers are stopped, every committed step is kept, and the run
ends with one line naming the unit, for ``--resume`` to continue.  Pipes need no named
semaphores, so nothing is left for Python's resource tracker to warn about after a kill.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from ..device import performance
from ..errors import ActiveLossError, RunInterrupted
from ..store import Store
from .driver import Driver, Outcome
from .oracle import Oracle
from .plan import Plan, Run


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


def _worker(conn: Connection, parent: int, plan: Plan, out: str, oracle: Oracle | None, workers: int,
            estimate: bool) -> None:
    """A worker process: run the units the parent sends, answer each with its outcome or error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    _exit_with_parent(parent)
    performance.set_threads(plan.runs[0].settings, plan.device, workers)
    performance.configure(plan.device, plan.runs[0].settings.deterministic)
    driver = Driver(plan, Path(out), oracle=oracle, progress=False, estimate=workers if estimate else 0)
    driver.write_csv = False  # the parent writes results.csv
    while True:
        job = conn.recv()
        if job is None:
            return
        index, trial = job
        store = Store.in_folder(driver.out)
        try:
            conn.send(("done", driver.run_unit(store, plan.runs[index], trial)))
        except ActiveLossError as exc:
            conn.send(("error", exc))
        except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
            conn.send(("crash", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        finally:
            store.close()


class _Workers:
    """N worker processes, each with its pipe and the unit it is running."""

    def __init__(self, driver: Driver, workers: int) -> None:
        context = torch.multiprocessing.get_context("spawn")  # CUDA cannot live in a forked process
        oracle = driver.oracle if driver.oracle is not driver.initial_oracle else None  # else workers make it
        self.procs = []
        self.conns: list[Connection] = []
        for w in range(workers):
            parent_end, child_end = context.Pipe()
            proc = context.Process(target=_worker, daemon=True,
                                   args=(child_end, os.getpid(), driver.plan, str(driver.out), oracle, workers,
                                         w == 0 and driver.estimate > 0))
            proc.start()
            child_end.close()
            self.procs.append(proc)
            self.conns.append(parent_end)
        self.busy: dict[int, tuple[Run, int]] = {}  # worker -> the unit it runs

    def assign(self, w: int, todo: list[tuple[Run, int]], index: dict[int, int]) -> None:
        """Give worker ``w`` the next unit, if any."""
        if todo:
            run, trial = todo.pop(0)
            self.conns[w].send((index[id(run)], trial))
            self.busy[w] = (run, trial)

    def receive(self, w: int, ready: list[Any]) -> tuple[str, Any] | None:
        """Worker ``w``'s answer if it sent one; None if it has none (yet, or because it died)."""
        if self.conns[w] not in ready:
            return None
        try:
            return self.conns[w].recv()
        except (EOFError, OSError):  # its end of the pipe closed: the worker died
            return None

    def died(self, w: int, ready: list[Any]) -> bool:
        proc = self.procs[w]
        return self.conns[w] in ready or proc.sentinel in ready or not proc.is_alive()

    def stop(self) -> None:
        """Let idle workers end, stop the others, and reap them all."""
        for w, proc in enumerate(self.procs):
            if w not in self.busy and proc.is_alive():
                try:
                    self.conns[w].send(None)
                except (BrokenPipeError, OSError):
                    pass
        for proc in self.procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
        for conn in self.conns:
            conn.close()


def run_parallel(driver: Driver, store: Store, units: list[tuple[Run, int]], workers: int, bar: Any) -> None:
    """Run ``units`` of ``driver``'s plan on ``workers`` processes.

    The first error stops every worker and is raised; a worker that dies is reported as
    :class:`RunInterrupted` naming its unit.  Committed steps stay in the store either way.
    """
    for run, trial in units:  # run ids in the sequential order, whatever finishes first
        store.run_id(run.name, trial, run.record())
    index = {id(run): i for i, run in enumerate(driver.plan.runs)}
    todo = list(units)
    driver.plan.data.input_statistics()  # computed once here and sent with the data, not once per worker
    pool = _Workers(driver, workers)
    try:
        for w in range(len(pool.procs)):
            pool.assign(w, todo, index)
        while pool.busy:
            ready = wait([*(pool.conns[w] for w in pool.busy), *(pool.procs[w].sentinel for w in pool.busy)],
                         timeout=0.5)
            bar.update(store.count_evaluated() - bar.n)
            for w in list(pool.busy):
                message = pool.receive(w, ready)
                if message is not None:
                    kind, payload = message
                    run, trial = pool.busy.pop(w)
                    if kind == "error":
                        raise payload
                    if kind == "crash":
                        raise RuntimeError(f"{run.name} trial {trial} failed in its worker process: {payload}")
                    outcome: Outcome = payload
                    driver.announce(run, trial, outcome)
                    store.write_results_csv(driver.out / "results.csv")
                    pool.assign(w, todo, index)
                elif pool.died(w, ready):
                    run, trial = pool.busy.pop(w)
                    pool.procs[w].join(timeout=5)  # reap it, for its exit code
                    code = pool.procs[w].exitcode
                    how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                    raise RunInterrupted(f"the worker running {run.name} trial {trial} died ({how}); every "
                                         f"committed step is kept: continue with activeloss run --resume "
                                         f"--out {driver.out}")
    finally:
        pool.stop()  # a failure elsewhere must not leave workers running
        bar.update(store.count_evaluated() - bar.n)
