"""guarded-loss: our own loss-based query (activeloss's, not a paper's).

Why: measured on digits (docs/loss-diagnosis.md), Learning Loss loses to random for three
reasons. (1) Training the module through the taps costs the backbone accuracy (8 points at 40
labels); a module on detached features costs nothing. (2) At small label counts the module ranks
losses poorly, and nothing tells the query so. (3) The top predicted losses crowd into a few
classes (5 of 10 per batch, against all 10 for random).

So the strategy trains the module on detached features (``--stop-gradient-epoch 0``), keeps a
share of the labeled items away from the module (``--module-holdout``, 20 %) and, at each
query, measures the module's ranking accuracy on those held-out items against their real losses
under the current model: a signal from labels already paid for, never from the test set.
At or above ``--guard-accuracy`` the picks are diverse among the high predicted losses: k-center
greedy in the model's feature space over the top ``--loss-pool`` x k candidates by predicted loss.
Below it the module is not trusted and ``--guard-fallback`` picks: core-set's k-center greedy
over the model's features by default (random and typical are options). While too few items are
held out to measure the module at all (the first queries of a small start), the fallback picks
too, or typical ones with ``--guard-cold-start typical`` (the medoid of each of k k-means groups
of the inputs, :func:`~activeloss.scoring.typical.cold_start`). These defaults were chosen on
validation splits of the training data (docs/guarded-loss-benchmark.md).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from ..config.options import option
from ..metrics import ranking_accuracy
from ..scoring import k_center_greedy
from ..scoring.typical import cold_start
from .base import ACQUISITIONS, Acquisition, QueryContext, RandomAcquisition, Selection, top_k
from .diversity import CoresetAcquisition
from .loss_based import predicted_losses

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuardedLossOptions:
    guard_accuracy: float = option(0.75, "guarded-loss: the module's ranking accuracy on held-out labeled items from "
                                   "which the picks follow predicted loss (below: the --guard-fallback's picks)",
                                   above=0.5, below=1)
    guard_min_items: int = option(10, "guarded-loss: held-out labeled items needed to measure the module's ranking",
                                  at_least=2)
    loss_pool: float = option(5.0, "guarded-loss: the diverse picks come from the top loss-pool x k candidates by "
                              "predicted loss", at_least=1)
    guard_cold_start: str = option("fallback", "guarded-loss: the picks while too few items are held out to measure "
                                   "the module: the --guard-fallback's, or typical (k-means medoids of the inputs)",
                                   choices=("fallback", "typical"))
    guard_fallback: str = option("coreset", "guarded-loss: the picks while the module ranks held-out items below "
                                 "--guard-accuracy: coreset (k-center over the model's features), random or typical",
                                 choices=("coreset", "random", "typical"))


class GuardedLossAcquisition(Acquisition):
    """Predicted loss with diversity, once the module proves it ranks; the fallback's picks before."""

    requires = "predicts_loss"
    Options = GuardedLossOptions

    def select(self, ctx: QueryContext, k: int) -> Selection:
        accuracy = self.held_out_ranking(ctx)
        if math.isnan(accuracy):  # too few held-out items to measure the module: the cold start
            rule = self.options.guard_fallback if self.options.guard_cold_start == "fallback" else "typical"
            _log.info("guarded-loss: too few held-out items to measure the module: %s picks", rule)
            return self.fallback(ctx, k, rule)
        if accuracy < self.options.guard_accuracy:
            _log.info("guarded-loss: held-out ranking accuracy %.3f: %s picks", accuracy, self.options.guard_fallback)
            return self.fallback(ctx, k, self.options.guard_fallback)
        _log.info("guarded-loss: held-out ranking accuracy %.3f: diverse picks among high predicted losses", accuracy)
        predicted = predicted_losses(ctx, ctx.candidates)
        pool = top_k(predicted, min(ctx.candidates.numel(), max(k, math.ceil(self.options.loss_pool * k))))
        pool = pool.to(ctx.candidates.device)
        candidates = ctx.features(ctx.candidates[pool])
        chosen = k_center_greedy(candidates, ctx.labeled_features(candidates), k).to(pool.device)
        return Selection(ctx.candidates[pool[chosen]].cpu(), predicted[pool[chosen]].cpu())

    @staticmethod
    def fallback(ctx: QueryContext, k: int, rule: str) -> Selection:
        """The picks that do not use the module: ``typical``, ``random`` or ``coreset``.  Random and
        core-set picks carry no score, so a stored query without scores is a fallback batch and one
        with scores followed the predicted losses (or, typical, the groups' shares)."""
        if rule == "typical":
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
            picks, shares = cold_start(ctx.inputs, ctx.candidates.cpu(), k, seed)
            return Selection(torch.tensor(picks, dtype=torch.long), torch.tensor(shares))
        if rule == "random":
            return RandomAcquisition().select(ctx, k)
        return Selection(CoresetAcquisition().select(ctx, k).indices, None)

    def held_out_ranking(self, ctx: QueryContext) -> float:
        """The module's ranking accuracy on the labeled items it never learned from, against their
        real losses under the current model (eval mode); NaN with too few of them."""
        if ctx.labels is None or not ctx.labeled.numel():
            return float("nan")
        held = ctx.objective.held_out(ctx.labeled)  # type: ignore[attr-defined]  # a loss-prediction objective
        if int(held.sum()) < self.options.guard_min_items:
            return float("nan")
        items = ctx.labeled[held]
        labels = ctx.labels[held.cpu()].to(ctx.inputs.device)
        with torch.no_grad():
            real = ctx.task.loss(ctx.outputs(items), labels)
        return ranking_accuracy(predicted_losses(ctx, items).cpu(), real.cpu())


ACQUISITIONS.register("guarded-loss", GuardedLossAcquisition,
                      "ours: diverse high predicted losses once the module ranks held-out labeled items well, "
                      "core-set picks before")
