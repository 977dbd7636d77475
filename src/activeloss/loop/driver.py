"""Driving one (strategy, trial) run of an experiment: a learner and an oracle.

The driver reads where the run stands from the store (what the learner restores) and does
the next step until the run is done: teach the initial labels, fit, evaluate, query, ask the
oracle, teach its answers.  A run resumed at any point therefore ends exactly as an
uninterrupted one.  When the oracle has no answer (a person has not labeled yet), the run
stops with its batch pending.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import Dataset, Inputs
from ..device import distributed, performance
from ..seeding import generator
from ..store import Store
from .learner import Learner
from .oracle import Oracle, simulated_oracle
from .plan import Plan, Run, initial_allowed, inputs_for
from .pool import Pool


@dataclass(frozen=True)
class Outcome:
    """How a unit ended: ``done`` (with its final metrics), ``finished`` (it already was) or
    ``waiting`` (a batch is pending labels the oracle did not give)."""

    status: str
    metrics: dict[str, float] | None = None
    labeled: int = 0


class NoProgress:
    """The progress-bar interface the driver uses, doing nothing (worker processes)."""

    n = 0

    def set_description(self, text: str) -> None: ...
    def set_postfix_str(self, text: str, refresh: bool = True) -> None: ...
    def update(self, n: int = 1) -> None: ...


class Driver:
    """Runs units of a :class:`Plan` into a store; one per process (parallel workers hold their own)."""

    def __init__(self, plan: Plan, out: Path, oracle: Oracle | None = None, progress: bool = True,
                 estimate: int = 0) -> None:
        self.plan = plan
        self.out = Path(out)
        self.data: Dataset = plan.data
        self.device = plan.device
        s = plan.settings
        # the truth, or with --label-noise answers fixed per (seed, trial, item), so resumes agree
        self.initial_oracle: Oracle = simulated_oracle(plan.data.y_train, s.label_noise, s.seed,
                                                       plan.data.num_classes, plan.data.coarse_of_class)
        self.oracle: Oracle = oracle or self.initial_oracle
        self.progress = progress and distributed.is_main()
        self.write_csv = True  # results.csv after every cycle (parallel workers leave it to the parent)
        self._inputs: dict[tuple, Inputs] = {}
        #: print the plan's training time estimated from the first epoch, for this many processes (0: don't)
        self.estimate = estimate
        self._epoch_started = 0.0  # when the epoch the estimate times started
        #: called after every evaluated cycle (a cluster unit publishes its shard's snapshot)
        self.on_cycle: Callable[[], None] | None = None

    def inputs_for(self, run: Run) -> Inputs:
        """The data on the device, shared by every run with the same augmentation and layout."""
        s = run.settings
        key = (s.augment, s.pad, performance.memory_format(s.channels_last, self.device, self.data.is_image))
        if key not in self._inputs:
            self._inputs[key] = inputs_for(self.data, self.device, s)
        return self._inputs[key]

    def learner(self, store: Store | None, run: Run, trial: int, bar: Any) -> Learner:
        def progress(epoch: int, epochs: int) -> None:
            bar.set_postfix_str(f"epoch {epoch}/{epochs}", refresh=False)
            if not self.estimate:
                return
            now = time.perf_counter()
            if epoch == 1 and epochs > 1:  # the first epoch pays one-off warm-ups: time the second
                self._epoch_started = now
            elif epoch == min(2, epochs):
                self._print_estimate(now - self._epoch_started, learner.num_labeled, run, bar)

        learner = Learner.for_run(run, self.data, self.device, store, trial, inputs=self.inputs_for(run),
                                  progress=progress)
        return learner

    def _print_estimate(self, seconds: float, labeled: int, run: Run, bar: Any) -> None:
        """Once: the whole plan's training time, scaled from one epoch by the number of batches every
        epoch of the plan trains on (a rough figure: strategies differ; evaluation and queries come on
        top)."""
        workers, self.estimate = self.estimate, 0

        def batches(r: Run, cycle: int) -> int:
            s = r.settings
            return -(-(int(s.initial or 0) + cycle * int(s.budget or 0)) // int(s.batch_size or 1))

        total = sum(int(r.settings.epochs or 0) * batches(r, c) * r.settings.trials
                    for r in self.plan.runs for c in range(int(r.settings.cycles or 0)))
        guess = seconds / max(1, -(-labeled // int(run.settings.batch_size or 1))) * total / workers
        text = (f"activeloss: one epoch on {labeled} items took {seconds:.2g} s: the plan's training should take "
                f"about {_duration(guess)}{f' on {workers} processes' if workers > 1 else ''} (evaluation and "
                "queries come on top)")
        if hasattr(bar, "write"):
            bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def initial_items(self, run: Run, trial: int) -> torch.Tensor:
        """The random initial labeled set: the same for every strategy of a trial (it depends on
        the seed and trial only; with ``--initial-classes`` it comes from the M classes drawn
        for the trial)."""
        s = run.settings
        return Pool(self.data.size).draw_initial(int(s.initial or 0), generator(s.seed, "initial", trial),
                                                 initial_allowed(self.data, s, trial))

    def run_unit(self, store: Store | None, run: Run, trial: int, bar: Any = None) -> Outcome:
        """Run (or finish) one strategy and trial."""
        bar = bar or NoProgress()
        s = run.settings
        last = int(s.cycles or 1) - 1
        learner = self.learner(store, run, trial, bar)
        if learner.cycle >= last and learner.evaluated:
            learner.finish()
            return Outcome("finished")
        if learner.num_labeled == 0:
            items = self.initial_items(run, trial)
            learner.teach(items, self._ask(self.initial_oracle, items, trial), source="initial")
        metrics: dict[str, float] = {}
        while True:
            c = learner.cycle
            bar.set_description(f"{run.name} trial {trial} cycle {max(c, 0)}")
            if c >= 0 and not learner.evaluated:
                figures = s.diagnostics == "every" or (s.diagnostics == "last" and c == last)
                metrics = learner.evaluate(keep_losses=c == last, figures=figures)
                self._cycle_done(store, bar, metrics)
                continue
            if c == last:
                break
            if c >= 0 and not learner.queried:
                learner.query(int(s.budget or 0))
                continue
            batch = learner.pending()
            if batch is not None:
                labels = self._ask(self.oracle, batch.items, trial)
                if labels is None:
                    return Outcome("waiting", labeled=learner.num_labeled)
                learner.teach(batch.items, labels, source=self.oracle.source)
                continue
            self._epoch_started = time.perf_counter()
            learner.fit()
        learner.finish()
        return Outcome("done", metrics or None, learner.num_labeled)

    @staticmethod
    def _ask(oracle: Oracle, items: torch.Tensor, trial: int) -> torch.Tensor | None:
        """Rank 0 alone asks the oracle; every rank gets its answer."""
        answer = oracle.label(items, trial) if distributed.is_main() else None
        return distributed.broadcast_object(answer)

    def _cycle_done(self, store: Store | None, bar: Any, metrics: dict[str, float]) -> None:
        if store is not None and self.write_csv:
            store.write_results_csv(self.out / "results.csv")
        if self.on_cycle is not None:
            self.on_cycle()
        bar.update(1)
        name = next(iter(metrics), "")  # the task's primary metric comes first
        if name:
            bar.set_postfix_str(f"{name} {metrics[name]:.3f}")

    def announce(self, run: Run, trial: int, outcome: Outcome) -> None:
        """In a log (not a terminal) one line per finished strategy and trial."""
        if not self.progress or sys.stderr.isatty():
            return
        if outcome.status == "done" and outcome.metrics:
            name = next(iter(outcome.metrics))
            print(f"{run.name} trial {trial}: {name} {outcome.metrics[name]:.4f} with {outcome.labeled} labels",
                  file=sys.stderr, flush=True)
        elif outcome.status == "waiting":
            print(f"{run.name} trial {trial}: waiting for the labels of its pending batch ({outcome.labeled} labeled)",
                  file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    """``"3 h 10 min"``, ``"12 min"``, ``"40 s"``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{max(1, round(seconds))} s"
