"""Driving one (strategy, trial) run of an experiment: a learner and an oracle.

The driver reads where the run stands from the store (what the learner restores) and does
the next step until the run is done: teach the initial labels, fit, evaluate, query, ask the
oracle, teach its answers.  A run resumed at any point therefore ends exactly as an
uninterrupted one.  When the oracle has no answer (a person has not labeled yet), the run
stops with its batch pending.

The initial labeled set is drawn here, once per trial for every strategy: at random
(``--initial-method random``) or by k-center greedy over a feature space that depends on the
data alone (``kcenter``, :func:`initial_features` and :func:`kcenter_initial`).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data import Dataset, Inputs
from ..device import distributed, performance
from ..errors import PoolError
from ..scoring import k_center_greedy
from ..seeding import generator
from ..store import Store
from .learner import Learner
from .oracle import Oracle, simulated_oracle
from .plan import Plan, Run, initial_allowed, inputs_for
from .pool import Pool

#: images are average-pooled to at most this side for ``--initial-method kcenter``
KCENTER_SIDE = 8


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one CPU thread inside (as many as before after): the k-center initial set is then
    computed by the same sequence of float operations in every process of a run, whatever threads
    its strategies' models use."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def initial_features(data: Dataset, batch_size: int = 4096) -> torch.Tensor:
    """The feature space of ``--initial-method kcenter``, (N, d) float32 on the CPU: every training
    input normalised as the model sees it (the training set's per-channel, or per-feature, mean and
    std; no augmentation), images average-pooled to at most 8x8 per channel (the 8x8 digits as they
    are, MNIST 8x8 = 64 numbers, CIFAR 3x8x8 = 192), rows as they are (standardised).  It depends on
    the data alone, never on a model, so every strategy of a trial gets the same set from it."""
    with _one_thread():
        inputs = Inputs.from_dataset(data, torch.device("cpu"), (), 0)
        parts = []
        for x in inputs.batches(torch.arange(data.size), batch_size):
            if x.dim() == 4:
                x = F.adaptive_avg_pool2d(x, (min(KCENTER_SIDE, x.shape[2]), min(KCENTER_SIDE, x.shape[3])))
            parts.append(x.flatten(1).float())
        return torch.cat(parts)


def kcenter_initial(features: torch.Tensor, count: int, gen: torch.Generator,
                    allowed: torch.Tensor | None = None) -> torch.Tensor:
    """``count`` items chosen by k-center greedy over ``features`` (N, d) (the survey's Algorithm 1,
    SRAAL's initial pool), sorted: the first centre drawn uniformly from ``gen`` among the allowed
    items (``allowed``: a boolean mask over the N items, None for all), then each next item the allowed
    one farthest from its nearest centre (:func:`activeloss.scoring.k_center_greedy`: incremental, no
    N x N matrix; ties to the lowest index)."""
    n = features.shape[0]
    pool = torch.arange(n) if allowed is None else torch.as_tensor(allowed, dtype=torch.bool).cpu().nonzero().flatten()
    if count > pool.numel():
        raise PoolError(f"the initial labeled set ({count}) is larger than the "
                        f"{'allowed items' if allowed is not None else 'pool'} ({pool.numel()})")
    if count <= 0:
        return torch.empty(0, dtype=torch.long)
    first = int(pool[int(torch.randint(pool.numel(), (1,), generator=gen))])
    rest = pool[pool != first]
    with _one_thread():
        picks = k_center_greedy(features[rest], features[first : first + 1], count - 1)
    return torch.cat([torch.tensor([first]), rest[picks.cpu()]]).sort().values


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
        self._initial_features: torch.Tensor | None = None  # --initial-method kcenter's, computed once
        self._kcenter_sets: dict[tuple, torch.Tensor] = {}  # (seed, trial, count, classes) -> its initial set

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
        """The initial labeled set: the same for every strategy of a trial (it depends on the data,
        the seed and the trial only; with ``--initial-classes`` it comes from the M classes drawn for
        the trial).  ``--initial-method random`` draws it at random; ``kcenter`` takes it by k-center
        greedy over :func:`initial_features`, its first centre drawn from the same seeded generator;
        that set is computed once per trial in this process and recomputed identically by any other
        (a parallel worker, a resumed run)."""
        s = run.settings
        count = int(s.initial or 0)
        gen = generator(s.seed, "initial", trial)
        allowed = initial_allowed(self.data, s, trial)
        if s.initial_method != "kcenter":
            return Pool(self.data.size).draw_initial(count, gen, allowed)
        key = (s.seed, trial, count, s.initial_classes)
        if key not in self._kcenter_sets:
            if self._initial_features is None:
                self._initial_features = initial_features(self.data)
            self._kcenter_sets[key] = kcenter_initial(self._initial_features, count, gen, allowed)
        return self._kcenter_sets[key].clone()

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
