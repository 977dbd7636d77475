"""An experiment: strategies x trials of active learning with shared seeds, into one store.

The experiment plans (loads the data, resolves every setting), opens the output folder,
and drives one learner per (strategy, trial) unit, one after the other, in worker processes
(``--parallel-trials``) or across ranks (``torchrun``).  Every random draw is seeded by name
(see :mod:`activeloss.seeding`) and every step of a learner is committed as it happens, so
``--resume`` after a crash at any moment gives the same results as an uninterrupted run.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..config import EXECUTION_FIELDS, Settings
from ..device import distributed, performance
from ..device.performance import set_threads
from ..errors import ConfigError
from ..store import Store
from .cluster import check_resume, run_on_cluster
from .driver import Driver, Outcome
from .oracle import Oracle
from .output import dataset_fingerprint, open_store
from .parallel import run_parallel
from .plan import Plan, Run, plan


class Experiment:
    """Runs a :class:`Plan` into an output folder."""

    def __init__(self, plan: Plan, out: Path | str, oracle: Oracle | None = None, progress: bool = True) -> None:
        self.plan = plan
        self.out = Path(out)
        self.driver = Driver(plan, self.out, oracle=oracle, progress=progress, estimate=1 if progress else 0)

    @property
    def settings(self) -> Settings:
        """The run-wide settings (how it executes: threads, device, parallel workers)."""
        return self.plan.runs[0].settings

    def open_store(self, resume: bool, wal: bool | None = None) -> Store:
        return open_store(self.plan, self.out, resume, wal)

    def units(self) -> list[tuple[Run, int]]:
        """Every (strategy, trial) in the order they run: trial by trial, strategies in order."""
        trials = max(r.settings.trials for r in self.plan.runs)
        return [(run, trial) for trial in range(trials) for run in self.plan.runs if trial < run.settings.trials]

    def run(self, resume: bool = False) -> Store | None:
        """Run (or finish) every unit; returns the store (rank 0; None on the other ranks)."""
        from tqdm.auto import tqdm

        set_threads(self.settings, self.plan.device)
        performance.configure(self.plan.device, self.settings.deterministic)
        # under torchrun only rank 0 holds the store (None elsewhere) and writes files
        store = distributed.on_main(lambda: self.open_store(resume))
        main = distributed.is_main()
        done = store.count_evaluated() if store is not None else 0
        # a live bar on a terminal; in a log (CI, nohup) one line per finished strategy and trial
        live = self.driver.progress and sys.stderr.isatty()
        units = self.units()
        workers = min(self.settings.parallel_trials, len(units))
        executor = self.settings.executor
        if resume and store is not None:
            check_resume(self.out, executor, store)
        with tqdm(total=self.plan.total_cycles, initial=done, unit="cycle", disable=not live,
                  dynamic_ncols=True, mininterval=0.5) as bar, performance.explained_determinism_errors():
            if executor != "local":
                assert store is not None
                run_on_cluster(store, units, self.settings, self.out, bar, log=self.driver.progress and not live)
            elif workers > 1:
                assert store is not None
                run_parallel(self.driver, store, units, workers, bar)
            else:
                for run, trial in units:
                    self.driver.announce(run, trial, self.driver.run_unit(store, run, trial, bar))
        if main and store is not None:
            store.write_results_csv(self.out / "results.csv")
        distributed.barrier()
        return store


def run(settings: Settings, resume: bool = False, progress: bool = True,
        on_plan: Callable[[Plan], None] | None = None, oracle: Oracle | None = None) -> Store | None:
    """Plan and run an experiment into ``settings.out`` (the public entry point behind ``activeloss run``).

    Launched by ``torchrun`` with several processes, it joins their process group first
    (:mod:`activeloss.device.distributed`); rank 0 reads and writes the folder, the others get
    the settings from it, and only rank 0 returns the store (the others None).
    """
    distributed.init_from_env(settings.device)
    out = Path(settings.out)

    def settings_of_folder() -> Settings:
        if resume:
            if not Store.exists_in(out):
                raise ConfigError(f"--resume: {out} holds no run to resume (no {out / 'store.sqlite'})")
            stored = Store.in_folder(out)
            saved = stored.get_meta("settings")
            stored.close()
            # how it executes may change on resume; an option left at its default keeps the stored value
            default = Settings()
            given = {"out": str(out), **{k: getattr(settings, k) for k in EXECUTION_FIELDS
                                         if k != "out" and getattr(settings, k) != getattr(default, k)}}
            return Settings.from_dict(saved, origin=str(out / "store.sqlite")).merged(given)
        if Store.exists_in(out):
            raise ConfigError(f"{out} already holds a run; resume it with --resume --out {out}, "
                              "or choose another --out")
        return settings

    chosen = distributed.on_main(settings_of_folder, share=True)
    assert chosen is not None
    created = distributed.on_main(lambda: [] if resume else writable_folder(out), share=True) or []
    try:
        the_plan = plan(chosen)
    except BaseException:
        distributed.on_main(lambda: remove_empty(created))  # a run that cannot start leaves nothing behind
        raise
    if on_plan and distributed.is_main():
        on_plan(the_plan)
    return Experiment(the_plan, out, oracle=oracle, progress=progress).run(resume=resume)


def writable_folder(out: Path) -> list[Path]:
    """Make sure ``out`` can be written before any work (loading data can take minutes): create
    it and its missing parents and write a probe file; returns the folders it created."""
    missing = []
    existing = out
    while not existing.exists():
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, not a folder")
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
        probe = out / f".activeloss-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        remove_empty(created)
        raise ConfigError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return created


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders a run created, innermost first, if they are still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            pass


__all__ = ["Experiment", "Outcome", "Plan", "dataset_fingerprint", "plan", "run"]
