"""The active learner: one model, its objective and acquisition, one task, one labeled pool,
driven step by step.

    learner = Learner(net, data, "llal", taps=["layer1", "layer2"], epochs=20)
    learner.teach(first_items, their_labels)
    learner.fit()                 # train on what is labeled
    learner.evaluate()            # {"accuracy": 0.81, "ranking_accuracy": 0.66}
    batch = learner.query(100)    # 100 unlabeled items, ranked, with scores: pending
    learner.teach(batch.items, labels_from_anyone)

Every step is written to the store as it happens (see :mod:`activeloss.store`), so a process
may stop after any of them and another continue: a queried batch stays *pending* until some
process teaches its labels.  Every random draw is seeded by name from the run's seed, trial
and cycle, so the same steps give the same results whoever runs them and whenever.
"""
from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import models
from ..acquisitions import Acquisition, QueryContext, score_acquisition
from ..config import Settings
from ..data import Dataset, Inputs, load_dataset
from ..data.readers import reader_of
from ..device import distributed, performance
from ..device.graphs import CudaGraphs, check_cuda_graphs, use_cuda_graphs
from ..errors import ConfigError, PoolError
from ..metrics import ranking_accuracy
from ..models.modes import eval_mode
from ..objectives import ModelInfo, Objective
from ..seeding import derive_seed, generator
from ..store import Store
from ..strategies import Strategy, get_strategy
from ..tasks import ENTROPY, Task, check_offers, make_task
from ..trainer import Evaluation, TrainConfig, evaluate, train
from .checkpoints import Checkpoints
from .plan import Run, choose_device, inputs_for, plan, resolve_run
from .pool import Pool
from .tsne import tsne_arrays

#: what a user's Learner gets before the protocol defaults: the whole pool is scored
LEARNER_DEFAULTS: dict[str, Any] = {"subset": 0}


@dataclass(frozen=True)
class Batch:
    """A queried batch: training items (indices into the pool), best first, with their scores."""

    items: torch.Tensor
    scores: torch.Tensor | None
    cycle: int  # the trained cycle whose model chose them

    def __len__(self) -> int:
        return int(self.items.numel())


class Learner:
    """One active learner; see the module docstring.

    ``model``: your ``nn.Module`` (the learner trains a copy; ``reinit`` restores its initial
    weights), a zero-argument function returning a fresh one, a registered model name, or
    None for the data's default.  ``taps`` names the modules whose outputs feed a
    loss-prediction module (default: the model's ``taps`` attribute).  ``data``: a
    :class:`Dataset`, a dataset spec (``"digits"``, ``"uci:PATH"``...) or a tuple
    ``(x_train, y_train, x_test, y_test)``.  ``strategy``: a strategy name or an
    ``OBJECTIVE+ACQUISITION`` pair; ``acquisition`` replaces its query half by another
    registered name, an :class:`Acquisition` or a plain score function ``fn(ctx) -> scores``.
    ``store``: a :class:`Store` or an output folder (default: in memory).  Every other
    keyword is a setting (``epochs=20``, ``lr=0.05``, ``loss_weight=0.5``...; see
    ``activeloss run --help``).
    """

    def __init__(self, model: nn.Module | Callable[[], nn.Module] | str | None = None,
                 data: Dataset | str | tuple | None = None, strategy: str | Strategy = "random", *,
                 acquisition: str | Acquisition | Callable[[QueryContext], torch.Tensor] | None = None,
                 taps: Sequence[str] | None = None, store: Store | str | Path | None = None, name: str | None = None,
                 trial: int = 0, progress: bool = False, **settings: Any) -> None:
        if data is None:
            raise ConfigError("a Learner needs data: a Dataset, a dataset spec such as 'digits', or "
                              "(x_train, y_train, x_test, y_test)")
        given = Settings.from_dict({**settings, **({"taps": list(taps)} if taps is not None else {})}, origin="Learner")
        reader = None
        if isinstance(data, str):
            reader = reader_of(data)
            given = given.merged({"dataset": data})
            data = load_dataset(data, seed=given.seed, test_fraction=given.test_fraction, split=given.split,
                                target=given.target, task=None if given.task == "auto" else given.task,
                                crop_size=given.crop_size, image_size=given.image_size,
                                image_memory_gb=given.image_memory_gb, validation=given.validation)
        elif isinstance(data, tuple):
            if len(data) != 4:
                raise ConfigError("data as a tuple must be (x_train, y_train, x_test, y_test)")
            data = Dataset.from_tensors(*data, task=None if given.task == "auto" else given.task)
        elif not isinstance(data, Dataset):
            raise ConfigError("data must be a Dataset, a dataset spec or a tuple of tensors, "
                              f"not {type(data).__name__}")
        strategy = get_strategy(strategy) if isinstance(strategy, str) else strategy
        custom = None
        if acquisition is not None:
            strategy, custom = _with_acquisition(strategy, acquisition)
        if custom is not None:
            check_offers(make_task(data.task), custom.needs, f"the acquisition {strategy.name}", lambda: [])
        factory = None
        if model is not None and not isinstance(model, str):
            factory = _factory(model)
            given = given.merged({"model": getattr(model, "__name__", type(model).__name__)})
        elif isinstance(model, str):
            given = given.merged({"model": model})
        run = resolve_run(given, strategy, data, reader, layers=(LEARNER_DEFAULTS,))
        device = choose_device(run.settings.device)
        check_cuda_graphs(run.settings.cuda_graphs, run.settings.compile, device)
        if store is None:
            store = Store.in_memory()
        elif not isinstance(store, Store):
            Path(store).mkdir(parents=True, exist_ok=True)
            store = Store.in_folder(store)
        self._setup(run, data, device, store, trial, name=name or strategy.name, factory=factory,
                    acquisition=custom, progress=_bar if progress else None)

    # -- construction shared with the experiment ------------------------------------
    @classmethod
    def for_run(cls, run: Run, data: Dataset, device: torch.device, store: Store | None, trial: int, *,
                inputs: Inputs | None = None, name: str | None = None,
                progress: Callable[[int, int], None] | None = None) -> Learner:
        """A learner for one (strategy, trial) of an experiment; its state is read from ``store``
        (None on the ranks of torchrun other than 0, which get rank 0's)."""
        learner = cls.__new__(cls)
        learner._setup(run, data, device, store, trial, name=name or run.name, inputs=inputs, progress=progress)
        return learner

    @classmethod
    def open(cls, folder: str | Path, strategy: str, trial: int = 0) -> Learner:
        """The learner of run (``strategy``, ``trial``) of the experiment in ``folder``, where it
        stands: e.g. to teach the labels of its pending batch from another process."""
        if not Store.exists_in(folder):
            raise ConfigError(f"{folder} holds no run (no store.sqlite)")
        store = Store.in_folder(folder)
        settings = Settings.from_dict(store.get_meta("settings") or {}, origin=str(Path(folder) / "store.sqlite"))
        the_plan = plan(settings.merged({"out": str(folder)}))
        runs = {r.name: r for r in the_plan.runs}
        if strategy not in runs:
            raise ConfigError(f"{folder} has no strategy {strategy!r}; it ran {', '.join(runs)}")
        if not 0 <= trial < runs[strategy].settings.trials:
            raise ConfigError(f"{folder}: trial {trial} does not exist "
                              f"(it ran {runs[strategy].settings.trials} trials)")
        return cls.for_run(runs[strategy], the_plan.data, the_plan.device, store, trial)

    def _setup(self, run: Run, data: Dataset, device: torch.device, store: Store | None, trial: int, *, name: str,
               factory: Callable[[], nn.Module] | None = None, acquisition: Acquisition | None = None,
               inputs: Inputs | None = None, progress: Callable[[int, int], None] | None = None) -> None:
        s = run.settings
        self.run = run
        self.settings = s
        self.strategy = run.strategy
        self.data = data
        self.device = device
        self.trial = trial
        self.seed = s.seed
        self.task: Task = make_task(s.task)
        self.task.configure(data, s)
        self.progress = progress
        self._factory = factory
        self.inputs = inputs or inputs_for(data, device, s)
        self.acquisition = acquisition or run.strategy.make_acquisition(run.acquisition_options)
        self.store = store if distributed.is_main() else None
        if self.store is not None and self.store.get_meta("task") is None:
            self.store.set_meta("task", self.task.describe())
        run_id = self.store.run_id(name, trial, run.record()) if self.store is not None else -1
        self.run_id: int = distributed.broadcast_object(run_id)
        self.name = name
        folder = self.store.folder if self.store is not None else None
        self.checkpoints = Checkpoints(folder, self.run_id)
        self.model: nn.Module | None = None
        self.objective: Objective | None = None
        self.taps: models.Taps | None = None
        self._forward: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._model_cycle = -1  # which trained cycle the model in memory is
        self._queries = 0  # queries made in the current cycle (each draws its own generator)
        self._restore()

    # -- state ---------------------------------------------------------------------
    def _restore(self) -> None:
        """The labeled pool and the progress of the run, as the store holds them."""
        state: dict[str, Any] | None = None
        if self.store is not None:
            labels = self.store.labels(self.run_id)
            cycles = self.store.finished_cycles(self.run_id)
            last = cycles[-1] if cycles else -1
            state = {
                "items": [r[0] for r in labels], "labels": [r[1] for r in labels], "cycles": [r[2] for r in labels],
                "cycle": last, "evaluated": last >= 0 and self.store.evaluated(self.run_id, last),
                "queries": 1 if last >= 0 and self.store.queried(self.run_id, last) else 0,
            }
        state = distributed.broadcast_object(state)
        assert state is not None
        self.pool = Pool(self.data.size, self.task.empty_targets(self.data.size, self.data.y_train))
        if state["items"]:
            self.pool.labels[torch.tensor(state["items"])] = self.task.decode(state["labels"])
            self.pool.label_cycle[torch.tensor(state["items"])] = torch.tensor(state["cycles"])
        self.cycle: int = state["cycle"]
        self._evaluated: bool = state["evaluated"]
        self._queries = state["queries"]
        if self.cycle >= 0:
            self._calibrate()

    def reload(self) -> None:
        """Read the labels and the progress again from the store (another process, or a labeling
        project's answers, changed them)."""
        self._restore()

    @property
    def labeled(self) -> torch.Tensor:
        """Indices of the labeled items."""
        return self.pool.labeled_indices()

    @property
    def unlabeled(self) -> torch.Tensor:
        return self.pool.unlabeled_indices()

    @property
    def num_labeled(self) -> int:
        return self.pool.num_labeled

    @property
    def evaluated(self) -> bool:
        """Whether the current cycle's model has been evaluated."""
        return self._evaluated

    @property
    def queried(self) -> bool:
        """Whether the current cycle's model has chosen a batch."""
        return self._queries > 0

    def pending(self) -> Batch | None:
        """The queried items still waiting for labels (best first), or None."""
        rows = self.store.pending(self.run_id) if self.store is not None else None
        rows = distributed.broadcast_object(rows)
        if not rows:
            return None
        scores = [r[2] for r in rows]
        return Batch(torch.tensor([r[1] for r in rows], dtype=torch.long),
                     None if any(v is None for v in scores) else torch.tensor(scores, dtype=torch.float32),
                     int(rows[-1][0]))

    # -- the model -------------------------------------------------------------------
    def _fresh(self, cycle: int) -> None:
        """A new model, objective and taps; the same weights for every strategy of a trial and cycle."""
        s = self.settings
        if self.taps is not None:
            self.taps.remove()
        torch.manual_seed(derive_seed(s.seed, "model", self.trial, cycle))
        if self._factory is not None:
            model = self._factory()
        else:
            model = models.build(s.model or "", self.task.output_size(self.data), self.data.input_shape,
                                 task=s.task, stacks=s.stacks, backbone_weights=s.backbone_weights)
        model = distributed.sync_batchnorm(model.to(self.device), s.sync_bn, self.device)
        # converts the 4-d (conv) weights only: nothing changes for a model without convolutions
        fmt = performance.memory_format(s.channels_last, self.device, self.data.is_image)
        model.to(memory_format=fmt)  # type: ignore[call-overload]  # the stubs lack this documented overload
        objective = self.strategy.make_objective(self.run.objective_options)
        tap_names = tuple(s.taps) if s.taps else tuple(getattr(model, "taps", ()))
        if objective.needs_taps and not tap_names:
            raise ConfigError(f"the {self.strategy.objective} objective reads the model's intermediate features: "
                              "name the modules to tap (taps=[...], --taps)")
        objective.setup(model, ModelInfo(self.task, tap_names, self.data.input_shape, self.data.num_classes))
        objective.to(self.device)
        self.model, self.objective = model, objective
        self.taps = models.Taps(model, tap_names) if objective.needs_taps else None
        self._forward = performance.forward_of(model, s.compile)

    def _graphed(self, model: nn.Module, objective: Objective) -> bool:
        """Whether this learner's training steps are recorded as CUDA graphs (``--cuda-graphs``)."""
        s = self.settings
        if self._factory is not None and s.cuda_graphs is None:
            return False  # a model of the user's own: only when asked for
        return use_cuda_graphs(s.cuda_graphs, s.compile, self.device, model, objective)

    def _model_of(self, cycle: int) -> tuple[nn.Module, Objective]:
        """The trained model of ``cycle`` (from its checkpoint after a restart)."""
        if self.model is None or self.objective is None or self._model_cycle != cycle:
            self._fresh(cycle if self.settings.reinit else 0)
            model, objective = self.model, self.objective
            assert model is not None and objective is not None
            distributed.on_main(lambda: self.checkpoints.load(cycle, model, objective, self.device))
            distributed.broadcast_modules([model, *objective.modules().values()])
            self._model_cycle = cycle
        assert self.model is not None and self.objective is not None
        return self.model, self.objective

    def model_at(self, cycle: int | None = None) -> nn.Module:
        """The trained model of ``cycle`` (default: the latest), loaded from the run's folder when
        it is not the one in memory: e.g. ``Learner.open(out, "llal").model_at()`` after a run.
        Its inputs are normalised like the learner's (``learner.inputs``)."""
        cycle = self.cycle if cycle is None else cycle
        if cycle < 0:
            raise PoolError("no model yet: this run has not trained a cycle")
        return self._model_of(cycle)[0]

    def _calibrate(self) -> None:
        """Fit the task to the targets known before the first training (fixed for the run)."""
        first = (self.pool.label_cycle == 0).nonzero().flatten()
        self.task.calibrate(self.pool.labels[first])

    # -- the steps -------------------------------------------------------------------
    def fit(self) -> float:
        """Train the next cycle's model on every labeled item; returns the training seconds.

        Warm-starts from the previous cycle's model unless ``reinit``; the model is saved
        (an output folder) before the cycle is recorded.
        """
        labeled = self.labeled
        if labeled.numel() == 0:
            raise PoolError("nothing is labeled yet: teach some labels before fit()")
        cycle = self.cycle + 1
        if cycle == 0:
            self._calibrate()
        s = self.settings
        if s.reinit or self.cycle < 0:
            self._fresh(cycle if s.reinit else 0)
        else:
            self._model_of(self.cycle)
        model, objective = self.model, self.objective
        assert model is not None and objective is not None
        assert s.epochs is not None and s.batch_size is not None and s.lr is not None and s.milestones is not None
        cfg = TrainConfig(s.epochs, s.batch_size, s.lr, s.momentum, s.weight_decay, s.milestones, s.gamma,
                          s.optimizer)
        labels = self.pool.labels[labeled]
        t0 = time.perf_counter()
        train(model, objective, self.task, self.inputs, labeled, labels, cfg, self.taps,
              generator(s.seed, "train", self.trial, cycle), progress=self.progress, forward=self._forward,
              graphs=CudaGraphs(self.device) if self._graphed(model, objective) else None)
        objective.after_training(model, self.inputs, labeled, self.pool.unlabeled_indices(),
                                 generator(s.seed, "objective", self.trial, cycle), labels)
        distributed.broadcast_modules([model, *objective.modules().values()])  # replicas stay equal
        _synchronize(self.device)
        seconds = time.perf_counter() - t0
        if self.store is not None:
            self.checkpoints.save(cycle, model, objective)
            self.store.record_fit(self.run_id, cycle, int(labeled.numel()), seconds, time.perf_counter() - t0)
            if self.settings.keep_models != "all":
                self.checkpoints.drop(keep=cycle)
        self.cycle, self._model_cycle, self._evaluated, self._queries = cycle, cycle, False, 0
        return seconds

    def evaluate(self, keep_losses: bool = False, figures: bool = True, tsne: bool | None = None) -> dict[str, float]:
        """The task's metrics of the current model on the test set (plus the loss predictor's
        ranking accuracy), recorded with the cycle with the small arrays the report's figures
        need; ``keep_losses`` also keeps every test item's real loss, predicted loss and (a task
        with an entropy) entropy, ``figures`` the arrays that cost extra forward passes:
        the confidence histograms and, in the first trial at the cycles ``diagnostics`` names (from
        cycle 1), the t-SNE map of tsne.png (``tsne=True`` or ``False`` decides that instead)."""
        if self.cycle < 0:
            raise PoolError("no model yet: fit() first")
        t0 = time.perf_counter()
        model, objective = self._model_of(self.cycle)
        s = self.settings
        result = evaluate(model, objective, self.task, self.inputs, s.eval_batch_size, self.taps, self._forward)
        metrics, arrays = self._metrics(result, keep_losses)
        if self.taps is not None:
            self.taps.clear()
        t1 = time.perf_counter()
        if distributed.is_main():  # the figures' arrays: eval mode, generators of their own (nothing the loop draws)
            nothing = torch.zeros(0, dtype=torch.long)
            arrays.update(self.task.diagnostics(
                result.outputs, self.data.y_test, self.data.num_classes, self.outputs,
                self.labeled if figures else nothing, self.unlabeled if figures else nothing,
                generator(self.seed, "confidence", self.trial, self.cycle)))
            if (self._tsne_due(figures) if tsne is None else tsne):
                arrays.update(self._tsne_map())
        _synchronize(self.device)
        t2 = time.perf_counter()
        if self.store is not None:
            self.store.record_evaluation(self.run_id, self.cycle, metrics, arrays, eval_seconds=t1 - t0,
                                         diagnostics_seconds=t2 - t1, wall_seconds=t2 - t0)
        self._evaluated = True
        return metrics

    def _metrics(self, result: Evaluation, keep_losses: bool) -> tuple[dict[str, float], dict[str, list]]:
        """The cycle's metrics, with the loss predictor's ranking accuracy (and, with
        ``keep_losses``, every test item's real loss beside its predicted loss and its entropy,
        when the objective predicts losses and the task has an entropy)."""
        metrics = dict(result.metrics)
        arrays: dict[str, list] = {}
        if result.predicted_losses is not None:
            finite = bool(torch.isfinite(result.predicted_losses).all())  # a diverged module has no ranking
            metrics["ranking_accuracy"] = (ranking_accuracy(result.predicted_losses, result.losses)
                                           if finite else float("nan"))
            if keep_losses:
                arrays.update(predicted_loss=result.predicted_losses.tolist())
        if keep_losses and ENTROPY in self.task.offers:
            arrays.update(test_entropy=self.task.entropy(result.outputs).tolist())
        if arrays:
            arrays.update(test_loss=result.losses.tolist())
        return metrics, arrays

    def _tsne_due(self, figures: bool) -> bool:
        """Whether this evaluation records the t-SNE map: with the figures' arrays, at the cycles
        ``diagnostics`` names (every cycle, or the plan's last), from cycle 1 on (cycle 0 bought
        nothing), in the first trial only (the report draws one trial; the map takes seconds)."""
        s = self.settings
        last = self.cycle == int(s.cycles or 0) - 1
        return figures and self.trial == 0 and self.cycle >= 1 and (s.diagnostics == "every" or last)

    def _tsne_map(self) -> dict[str, list]:
        """The t-SNE map's arrays (see :mod:`.tsne`): the items labeled before this cycle, a sample
        of the unlabeled ones and the batch bought for this cycle, in the current model's features."""
        labeled = self.labeled
        bought = self.pool.label_cycle[labeled] == self.cycle
        groups = {"labeled": labeled[~bought], "unlabeled": self.unlabeled, "queried": labeled[bought]}
        try:
            return tsne_arrays(lambda items: self.outputs(items, features=True), groups,
                               generator(self.seed, "tsne", self.trial, self.cycle),
                               derive_seed(self.seed, "tsne-map", self.trial, self.cycle),
                               threads=torch.get_num_threads())
        except ConfigError:  # a user's model without features() or a last nn.Linear: no map
            return {}
        finally:
            if self.taps is not None:
                self.taps.clear()

    @torch.no_grad()
    def outputs(self, indices: torch.Tensor, features: bool = False) -> torch.Tensor:
        """The model's outputs (``features``: its penultimate features) for training items (eval
        mode, un-augmented)."""
        assert self.model is not None
        model = self.model
        forward = models.features_of(model) if features else model
        out = []
        with eval_mode(model):
            for x in self.inputs.batches(indices, self.settings.eval_batch_size):
                with performance.autocast(self.device):
                    out.append(forward(x).float())
        return torch.cat(out) if out else torch.zeros(0)

    def query(self, k: int, exclude: torch.Tensor | None = None) -> Batch:
        """Choose ``k`` unlabeled items with the current model: a ranked batch, recorded as
        pending until its labels are taught.  Items already pending are never chosen again
        (``exclude``, item indices, replaces that set: e.g. to offer a skipped item again)."""
        if self.cycle < 0:
            raise PoolError("no model yet: fit() before query()")
        started = time.perf_counter()
        model, objective = self._model_of(self.cycle)
        s = self.settings
        if exclude is None:
            pending = self.pending()
            waiting = pending.items if pending is not None else torch.zeros(0, dtype=torch.long)
        else:
            waiting = torch.as_tensor(exclude, dtype=torch.long).reshape(-1).cpu()
        candidates = self.pool.candidates(int(s.subset or 0), generator(s.seed, "subset", self.trial, self.cycle),
                                          exclude=waiting)
        if not 1 <= k <= candidates.numel():
            raise PoolError(f"cannot query {k} items: {candidates.numel()} unlabeled candidates are left"
                            if k >= 1 else f"a query needs k >= 1, got {k}")
        keys: tuple[object, ...] = (self.trial, self.cycle) + ((self._queries,) if self._queries else ())
        t0 = time.perf_counter()
        with ExitStack() as modes:  # eval mode for the query, every module's own flag restored after
            for module in (model, *objective.modules().values()):
                modes.enter_context(eval_mode(module))
            ctx = QueryContext(model, objective, self.inputs, candidates.to(self.device), self.labeled,
                               generator(s.seed, "query", *keys), s.eval_batch_size, self.task, self._forward,
                               labels=self.pool.labels[self.labeled])
            selection = self.acquisition.select(ctx, k)
        chosen = selection.indices.cpu().long()
        scores = selection.scores.cpu() if selection.scores is not None else None
        if distributed.active():
            # every rank chose the same items (same scores, same draws); rank 0's are sent anyway,
            # so that a GPU's non-deterministic kernels can never split the replicas
            chosen, scores = distributed.broadcast_object((chosen, scores))
        if (chosen.numel() != k or chosen.unique().numel() != k or bool(self.pool.labeled_mask[chosen].any())
                or bool(torch.isin(chosen, waiting).any())):
            raise RuntimeError(f"acquisition {self.acquisition.name} broke its contract: it must return {k} "
                               "distinct unlabeled items that are not pending")
        _synchronize(self.device)
        seconds = time.perf_counter() - t0
        if self.store is not None:
            rows = list(zip(chosen.tolist(), scores.tolist() if scores is not None else [None] * k))
            self.store.record_query(self.run_id, self.cycle, rows, seconds, time.perf_counter() - started)
        self._queries += 1
        return Batch(chosen, scores, self.cycle)

    def teach(self, items: Any, labels: Any, source: str = "user") -> None:
        """Record ``labels`` for the training ``items`` (they count from the next fit on).

        Labels must be the task's targets (class indices 0..C-1, real values); an item
        already labeled, given twice, or out of range is refused before anything is written.
        """
        items_t = torch.as_tensor(items, dtype=torch.long).reshape(-1).cpu()
        values = self.task.decode(list(labels.tolist() if isinstance(labels, torch.Tensor) else labels))
        if values.shape[0] != items_t.numel():
            raise PoolError(f"{items_t.numel()} items but {values.shape[0]} labels")
        self.task.check_labels(values, self.data.num_classes)
        cycle = self.cycle + 1
        probe = self.pool.copy()  # every check before the store is touched
        probe.add(items_t, values, cycle)
        if self.store is not None:
            truth = self.task.encode(self.data.y_train[items_t]) if self.truth_known else [None] * items_t.numel()
            given = self.task.encode(values)
            self.store.add_labels(self.run_id, cycle, list(zip(items_t.tolist(), given, truth,
                                                              [source] * items_t.numel())))
        self.pool = probe

    #: whether ``data.y_train`` holds the true targets (a simulation): kept beside the given labels
    truth_known = True

    def finish(self) -> None:
        """Mark the run done and keep the models ``keep_models`` says (none, the last, all)."""
        if self.store is not None:
            self.store.set_status(self.run_id, "done")
            if self.settings.keep_models == "none":
                self.checkpoints.drop()
            elif self.settings.keep_models == "last":
                self.checkpoints.drop(keep=self.cycle)
        if self.taps is not None:
            self.taps.remove()
            self.taps = None


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that timings measure it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _factory(model: nn.Module | Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """Fresh copies of a user's module (its initial weights each time), or their own factory."""
    if isinstance(model, nn.Module):
        template = copy.deepcopy(model)
        return lambda: copy.deepcopy(template)
    if callable(model):
        return model
    raise ConfigError("model must be an nn.Module, a function returning one, or a model name; "
                      f"got {type(model).__name__}")


def _with_acquisition(strategy: Strategy, acquisition: Any) -> tuple[Strategy, Acquisition | None]:
    """``strategy``'s objective with another query half (a registered one is resolved with the
    run's options like any pair; an instance or a function is used as it is)."""
    if isinstance(acquisition, str):
        return get_strategy(f"{strategy.objective}+{acquisition}"), None
    if isinstance(acquisition, Acquisition):
        instance = acquisition
    elif callable(acquisition):
        instance = score_acquisition(acquisition)()
    else:
        raise ConfigError("acquisition must be a registered name, an Acquisition or a score function")
    name = getattr(acquisition, "__name__", type(instance).__name__)
    need = instance.requires
    if need and not getattr(strategy.objective_type, need, False):
        raise ConfigError(f"the acquisition {name} needs an objective with {need}; {strategy.objective} has none")
    pair = Strategy(f"{strategy.objective}+{name}", strategy.objective, "random", strategy.description,
                    defaults=strategy.defaults)
    return pair, instance


def _bar(epoch: int, epochs: int) -> None:
    """A minimal per-epoch progress line for a library user (``progress=True``)."""
    end = "\n" if epoch == epochs else "\r"
    print(f"  epoch {epoch}/{epochs}", end=end, file=sys.stderr, flush=True)
