"""The active-learning loop: cycles of train -> evaluate -> query -> label, over
strategies x trials with shared seeds, recorded in the store and resumable.

Resuming works because every random draw is seeded by name (see :mod:`seeding`), the
labeled set is rebuilt from the store, and the model of the last finished cycle is
checkpointed before that cycle is committed.  A run killed at any moment and resumed
therefore gives the same results as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import distributed, models, performance
from .acquisitions import QueryContext
from .augment import parse_augment
from .config import EXECUTION_FIELDS, Settings, resolve, resolve_counts, validate
from .data import Dataset, load_dataset
from .errors import ConfigError
from .inputs import Inputs
from .objectives import Objective
from .oracle import Oracle, simulated_oracle
from .pool import Pool, class_mask, initial_classes
from .report import write_results_csv
from .seeding import derive_seed, generator
from .store import CycleResult, Store
from .strategies import Strategy, get_strategy, main_comparison
from .training import Evaluation, TrainConfig, evaluate, train


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for, but no CUDA GPU is available")
    return device


def initial_allowed(data: Dataset, s: Settings, trial: int) -> torch.Tensor | None:
    """Mask of the items the initial set may come from: those of the ``--initial-classes`` M
    classes drawn for this trial (the same for every strategy), or None for no restriction."""
    if s.initial_classes is None:
        return None
    classes = initial_classes(data.num_classes, s.initial_classes, generator(s.seed, "initial-classes", trial))
    return class_mask(data.y_train, classes)


def set_threads(settings: Settings, device: torch.device, workers: int = 1) -> None:
    """Apply ``--threads``; auto means one thread for the small models on CPU, and with
    ``workers`` processes side by side an equal share of the cores each."""
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    elif device.type == "cpu" and settings.model in ("cnn", "mlp"):
        torch.set_num_threads(1)
    elif workers > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))


def dataset_fingerprint(data: Dataset) -> str:
    """A short hash of the labels and shapes: resuming on different data is refused."""
    h = hashlib.sha256()
    for t in (data.y_train, data.y_test):
        h.update(t.numpy().tobytes())
    h.update(str((tuple(data.x_train.shape), tuple(data.x_test.shape))).encode())
    return h.hexdigest()[:16]


@dataclass
class Plan:
    """A validated experiment: the data, and each strategy with its resolved settings."""

    settings: Settings
    data: Dataset
    runs: list[tuple[Strategy, Settings]]
    device: torch.device

    @property
    def total_cycles(self) -> int:
        return sum(s.cycles * s.trials for _, s in self.runs)


def plan(settings: Settings) -> Plan:
    """Load the data and resolve and check every setting, before anything is written."""
    device = distributed.local_device(choose_device(settings.device))
    if settings.parallel_trials > 1 and distributed.active():
        raise ConfigError("--parallel-trials runs several processes on one machine; under torchrun leave it at 1")
    names = settings.strategies or main_comparison()
    if len(set(names)) != len(names):
        raise ConfigError("--strategies names a strategy twice")
    strategies = [get_strategy(n) for n in names]
    data = load_dataset(settings.dataset, seed=settings.seed, test_fraction=settings.test_fraction)
    pool_size = data.x_train.shape[0]
    runs = []
    for strategy in strategies:
        s = resolve_counts(resolve(settings, strategy.defaults), pool_size)  # "10%" -> items of this dataset
        if s.model is None:
            s.model = models.default_model(data.input_shape)
        validate(s, pool_size=pool_size)
        if s.initial_classes is not None:  # every trial's class draw must hold the initial set
            for trial in range(s.trials):
                held = int(initial_allowed(data, s, trial).sum())
                if held < s.initial:
                    raise ConfigError(f"--initial-classes {s.initial_classes}: the classes drawn for trial {trial} hold "
                                      f"{held} training items, fewer than --initial {s.initial}")
        parse_augment(s.augment)
        models.build(s.model, data.num_classes, data.input_shape)  # fails early on a bad pairing
        runs.append((strategy, s))
    return Plan(settings, data, runs, device)


class Experiment:
    """Runs a :class:`Plan` into an output folder."""

    def __init__(self, plan: Plan, out: Path, oracle: Oracle | None = None, progress: bool = True) -> None:
        self.plan = plan
        self.out = Path(out)
        self.data = plan.data
        self.device = plan.device
        # the truth, or with --label-noise answers fixed per (seed, trial, item), so resumes agree
        self.oracle = oracle or simulated_oracle(plan.data.y_train, plan.settings.label_noise, plan.settings.seed,
                                                 plan.data.num_classes, plan.data.coarse_of_class)
        self.progress = progress and distributed.is_main()
        self.write_csv = True  # results.csv after every cycle (parallel workers leave it to the parent)
        self._inputs: dict[tuple, Inputs] = {}

    # -- folder -------------------------------------------------------------
    def open_store(self, resume: bool) -> Store:
        if resume:
            store = Store.in_folder(self.out)
            if store.get_meta("dataset_fingerprint") != dataset_fingerprint(self.data):
                store.close()
                raise ConfigError(f"{self.out}: the dataset has changed since this run started; cannot resume")
            return store
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "checkpoints").mkdir(exist_ok=True)
        store = Store.in_folder(self.out)
        store.set_meta("settings", {k: v for k, v in self.plan.settings.to_dict().items() if v is not None})
        store.set_meta("dataset_fingerprint", dataset_fingerprint(self.data))
        store.set_meta("dataset", {
            "spec": self.plan.settings.dataset, "train": int(self.data.x_train.shape[0]),
            "test": int(self.data.x_test.shape[0]), "classes": self.data.class_names,
        })
        store.set_meta("device", str(self.device))
        return store

    def inputs_for(self, s: Settings) -> Inputs:
        fmt = performance.memory_format(s.channels_last, self.device, self.data.is_image)
        key = (s.augment, s.pad, fmt)
        if key not in self._inputs:
            self._inputs[key] = Inputs.from_dataset(self.data, self.device, parse_augment(s.augment), s.pad, fmt)
        return self._inputs[key]

    # -- the loop -----------------------------------------------------------
    def run(self, resume: bool = False) -> Store:
        from tqdm.auto import tqdm

        set_threads(self.plan.runs[0][1], self.device)
        performance.configure(self.device, self.plan.runs[0][1].deterministic)
        # under torchrun only rank 0 holds the store (None elsewhere) and writes files
        store = distributed.on_main(lambda: self.open_store(resume))
        main = distributed.is_main()
        if main:
            (self.out / "checkpoints").mkdir(exist_ok=True)
        trials = max(s.trials for _, s in self.plan.runs)
        done = sum(len(store.finished_cycles(r["id"])) for r in store.runs()) if main else 0
        # a live bar on a terminal; in a log (CI, nohup) one line per finished strategy and trial
        live = self.progress and sys.stderr.isatty()
        units = [(strategy, s, trial) for trial in range(trials) for strategy, s in self.plan.runs if trial < s.trials]
        workers = min(self.plan.runs[0][1].parallel_trials, len(units))
        with tqdm(total=self.plan.total_cycles, initial=done, unit="cycle", disable=not live,
                  dynamic_ncols=True, mininterval=0.5) as bar, performance.explained_determinism_errors():
            if workers > 1:
                from .parallel import run_parallel

                run_parallel(self, store, units, workers, bar)
            else:
                for strategy, s, trial in units:
                    self.announce(strategy, trial, self.run_trial(store, strategy, s, trial, bar))
        if main:
            write_results_csv(store, self.out / "results.csv")
        distributed.barrier()
        return store

    def fresh_model(self, strategy: Strategy, s: Settings, trial: int, cycle: int):
        """A new model, objective and taps; the same weights for every strategy of a trial and cycle."""
        torch.manual_seed(derive_seed(s.seed, "model", trial, cycle))
        model = models.build(s.model, self.data.num_classes, self.data.input_shape).to(self.device)
        # converts the 4-d (conv) weights only: nothing changes for a model without convolutions
        model.to(memory_format=performance.memory_format(s.channels_last, self.device, self.data.is_image))
        objective = strategy.make_objective()
        tap_names = tuple(s.taps) if s.taps else tuple(getattr(model, "taps", ()))
        objective.setup(model, self.data.num_classes, tap_names, s, self.data.input_shape)
        objective.to(self.device)
        taps = models.Taps(model, tap_names) if objective.needs_taps else None
        return model, objective, taps

    def announce(self, strategy: Strategy, trial: int, final: tuple[float, int] | None) -> None:
        """In a log (not a terminal) one line per finished strategy and trial."""
        if final is not None and self.progress and not sys.stderr.isatty():
            print(f"{strategy.name} trial {trial}: accuracy {final[0]:.4f} with {final[1]} labels",
                  file=sys.stderr, flush=True)

    def run_trial(self, store: Store, strategy: Strategy, s: Settings, trial: int, bar) -> tuple[float, int] | None:
        """Run (or finish) the cycles of one strategy and trial; returns its final accuracy and
        label count, or None when it had already finished."""
        main = distributed.is_main()
        run_id, start = None, None
        if main:
            run_id = store.run_id(strategy.name, trial, s.to_dict())
            start = len(store.finished_cycles(run_id))
        run_id, start = distributed.broadcast_object((run_id, start))
        if start >= s.cycles:
            return None
        inputs = self.inputs_for(s)
        pool = self.restore_pool(store, run_id, s, trial)
        acquisition = strategy.make_acquisition()
        model, objective, taps = self.fresh_model(strategy, s, trial, start if s.reinit else 0)
        forward = performance.forward_of(model, s.compile)
        if start > 0 and not s.reinit:
            distributed.on_main(lambda: self.load_checkpoint(run_id, start - 1, model, objective))
            distributed.broadcast_modules([model, *objective.modules().values()])
        train_cfg = TrainConfig(s.epochs, s.batch_size, s.lr, s.momentum, s.weight_decay, s.milestones, s.gamma)
        for cycle in range(start, s.cycles):
            bar.set_description(f"{strategy.name} trial {trial} cycle {cycle}")
            if s.reinit and cycle > start:
                if taps is not None:
                    taps.remove()
                model, objective, taps = self.fresh_model(strategy, s, trial, cycle)
                forward = performance.forward_of(model, s.compile)
            labeled = pool.labeled_indices()
            t0 = time.perf_counter()
            train(model, objective, inputs, labeled, pool.labels[labeled], train_cfg, taps,
                  generator(s.seed, "train", trial, cycle), s,
                  progress=lambda e, n: bar.set_postfix_str(f"epoch {e}/{n}", refresh=False), forward=forward)
            objective.after_training(model, inputs, labeled, pool.unlabeled_indices(), s,
                                     generator(s.seed, "objective", trial, cycle), labels=pool.labels[labeled])
            distributed.broadcast_modules([model, *objective.modules().values()])  # replicas stay equal
            _synchronize(self.device)
            train_seconds = time.perf_counter() - t0
            result = evaluate(model, objective, inputs, s.eval_batch_size, taps, forward)
            metrics, arrays = self.cycle_metrics(result, model, inputs, pool, s, trial, cycle)
            if taps is not None:
                taps.clear()
            queried, new_labels, query_seconds = [], [], 0.0
            if cycle < s.cycles - 1:
                t0 = time.perf_counter()
                chosen, scores = self.query(model, objective, acquisition, inputs, pool, s, trial, cycle, forward)
                given = self.oracle.label(chosen, trial) if main else None  # rank 0 alone asks the oracle
                given = distributed.broadcast_object(given)
                query_seconds = time.perf_counter() - t0
                queried, new_labels = self.query_rows(chosen, scores, given)
                if not s.reinit and main:
                    self.save_checkpoint(run_id, cycle, model, objective)
            if main:
                store.record_cycle(run_id, CycleResult(cycle, int(labeled.numel()), train_seconds, query_seconds,
                                                       metrics, queried, new_labels, arrays))
            if new_labels:
                pool.add(chosen, given, cycle + 1)
            if main:
                self.drop_checkpoints(run_id, keep=cycle if cycle < s.cycles - 1 else None)
                if self.write_csv:
                    write_results_csv(store, self.out / "results.csv")
            bar.update(1)
            bar.set_postfix_str(f"accuracy {result.accuracy:.3f}")
        if taps is not None:
            taps.remove()
        if main:
            store.set_status(run_id, "done")
        return result.accuracy, int(labeled.numel())

    def query_rows(self, chosen: torch.Tensor, scores: torch.Tensor | None, given: torch.Tensor) -> tuple[list, list]:
        """The store's rows for a query: (item, score) in order of preference, and
        (item, label given, true label, source) for the labels it bought."""
        items = chosen.tolist()
        queried = list(zip(items, scores.tolist() if scores is not None else [None] * len(items)))
        truth = self.data.y_train[chosen].tolist()
        return queried, [(i, y, t, self.oracle.source) for i, y, t in zip(items, given.tolist(), truth)]

    def cycle_metrics(self, result: Evaluation, model: nn.Module, inputs: Inputs, pool: Pool, s: Settings,
                      trial: int, cycle: int) -> tuple[dict[str, float], dict[str, list]]:
        """The cycle's metrics, and the small arrays the report's figures need.

        Arrays: per-class test accuracy and confidence histograms of the labeled items vs a
        seeded sample of at most 2,000 unlabeled ones (eval mode, a generator of their own,
        timed in neither train nor query seconds); at the last cycle the test and predicted
        losses.  Only rank 0 computes the arrays, for the store it alone writes.
        """
        from . import diagnostics
        from .metrics import ranking_accuracy

        metrics = {"accuracy": result.accuracy}
        arrays: dict[str, list] = {}
        if distributed.is_main():
            arrays["per_class_accuracy"] = diagnostics.per_class_accuracy(
                result.predictions, self.data.y_test, self.data.num_classes)
            arrays.update(diagnostics.confidence_histograms(
                model, inputs, pool.labeled_indices(), pool.unlabeled_indices(),
                generator(s.seed, "confidence", trial, cycle), s.eval_batch_size))
        if result.predicted_losses is not None:
            finite = bool(torch.isfinite(result.predicted_losses).all())  # a diverged module has no ranking
            metrics["ranking_accuracy"] = (ranking_accuracy(result.predicted_losses, result.losses)
                                           if finite else float("nan"))
            if cycle == s.cycles - 1:
                arrays.update(test_loss=result.losses.tolist(), predicted_loss=result.predicted_losses.tolist())
        return metrics, arrays

    def query(self, model, objective, acquisition, inputs, pool: Pool, s: Settings, trial: int, cycle: int,
              forward=None):
        """Choose ``s.budget`` items; checks the acquisition kept the contract."""
        candidates = pool.candidates(s.subset, generator(s.seed, "subset", trial, cycle))
        model.eval()
        objective.eval()
        ctx = QueryContext(model, objective, inputs, candidates.to(self.device), pool.labeled_indices(),
                           generator(s.seed, "query", trial, cycle), s.eval_batch_size, s, forward)
        selection = acquisition.select(ctx, s.budget)
        chosen = selection.indices.cpu().long()
        if distributed.active():
            # every rank chose the same items (same scores, same draws); rank 0's are sent anyway,
            # so that a GPU's non-deterministic kernels can never split the replicas
            chosen, picked = distributed.broadcast_object(
                (chosen, selection.scores.cpu() if selection.scores is not None else None))
            selection = type(selection)(chosen, picked)
        if chosen.numel() != s.budget or chosen.unique().numel() != chosen.numel() or bool(pool.labeled_mask[chosen].any()):
            raise RuntimeError(f"acquisition {acquisition.name} broke its contract: it must return {s.budget} distinct unlabeled items")
        _synchronize(self.device)
        return chosen, selection.scores

    def restore_pool(self, store: Store, run_id: int, s: Settings, trial: int) -> Pool:
        """The labeled set from the store; the initial set is drawn and stored on first use.

        The initial draw depends on the seed and trial only, so every strategy of a trial
        starts from the same labeled items.  With ``--initial-classes M`` they come from M
        classes drawn (by true label) from the seed and trial, so also the same for all.
        """
        pool = Pool(self.data.x_train.shape[0])
        if not distributed.is_main():  # under torchrun: the labeled set as rank 0 read it
            pool.labels, pool.label_cycle = distributed.broadcast_object(None)
            return pool
        rows = store.labels(run_id)
        if not rows:
            initial = pool.draw_initial(s.initial, generator(s.seed, "initial", trial), initial_allowed(self.data, s, trial))
            given = self.oracle.label(initial, trial)
            truth = self.data.y_train[initial]
            store.add_labels(run_id, 0, [(i, y, t, "initial") for i, y, t in
                                          zip(initial.tolist(), given.tolist(), truth.tolist())])
            rows = store.labels(run_id)
        items = torch.tensor([r[0] for r in rows], dtype=torch.long)
        pool.labels[items] = torch.tensor([r[1] for r in rows], dtype=torch.long)
        pool.label_cycle[items] = torch.tensor([r[2] for r in rows], dtype=torch.long)
        distributed.broadcast_object((pool.labels, pool.label_cycle))
        return pool

    # -- checkpoints --------------------------------------------------------
    def checkpoint_path(self, run_id: int, cycle: int) -> Path:
        return self.out / "checkpoints" / f"run{run_id}-cycle{cycle}.pt"

    def save_checkpoint(self, run_id: int, cycle: int, model: nn.Module, objective: Objective) -> None:
        """Written to a temporary name and renamed, so a checkpoint on disk is always whole."""
        path = self.checkpoint_path(run_id, cycle)
        state = {"model": model.state_dict(), **{f"objective.{k}": m.state_dict() for k, m in objective.modules().items()}}
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, run_id: int, cycle: int, model: nn.Module, objective: Objective) -> None:
        path = self.checkpoint_path(run_id, cycle)
        if not path.is_file():
            raise ConfigError(f"{self.out}: the checkpoint of cycle {cycle} ({path.name}) is missing; cannot resume this run")
        state = torch.load(path, map_location=self.device, weights_only=True)
        model.load_state_dict(state["model"])
        for k, m in objective.modules().items():
            m.load_state_dict(state[f"objective.{k}"])

    def drop_checkpoints(self, run_id: int, keep: int | None) -> None:
        for path in (self.out / "checkpoints").glob(f"run{run_id}-cycle*.pt"):
            if keep is None or path != self.checkpoint_path(run_id, keep):
                path.unlink(missing_ok=True)


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that timings measure it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(settings: Settings, resume: bool = False, progress: bool = True,
        on_plan: Callable[[Plan], None] | None = None) -> Store:
    """Plan and run an experiment into ``settings.out`` (the public entry point behind ``activeloss run``).

    Launched by ``torchrun`` with several processes, it joins their process group first
    (:mod:`activeloss.distributed`); rank 0 reads and writes the folder, the others get
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
            given = {"out": str(out), **{k: getattr(settings, k) for k in EXECUTION_FIELDS if k != "out"}}
            return Settings.from_dict(saved, origin=str(out / "store.sqlite")).merged(given)
        if Store.exists_in(out):
            raise ConfigError(f"{out} already holds a run; resume it with --resume --out {out}, or choose another --out")
        return settings

    settings = distributed.on_main(settings_of_folder, share=True)
    the_plan = plan(settings)
    if on_plan and distributed.is_main():
        on_plan(the_plan)
    return Experiment(the_plan, out, progress=progress).run(resume=resume)
