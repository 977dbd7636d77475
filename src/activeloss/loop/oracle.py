"""Where labels come from.  In simulation, the dataset's own labels, optionally noisy.

An oracle is one client of :meth:`activeloss.Learner.teach`: the experiment asks it for the
labels of a queried batch and teaches what it answers.  An oracle may also have no answer
yet (``None``: a person has not labeled the batch), and the run then stops with the batch
pending in the store, for another process to label and continue.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from ..errors import ConfigError
from ..seeding import generator


class Oracle(Protocol):
    source: str

    def label(self, indices: torch.Tensor, trial: int = 0) -> torch.Tensor | None:
        """Labels for the training items ``indices``, asked in ``trial`` (a simulated oracle
        may answer differently per trial; a person ignores it), or None when there is no
        answer now (the batch stays pending)."""
        ...


class DeferredOracle:
    """Never answers: every run stops at its first query, the batch pending in the store, for
    labels supplied later (another process, a person) through :meth:`Learner.teach`."""

    source = "deferred"

    def label(self, indices: torch.Tensor, trial: int = 0) -> torch.Tensor | None:
        return None


class SimulatedOracle:
    """Answers with the true labels of the dataset (the usual research protocol)."""

    source = "simulated"

    def __init__(self, true_labels: torch.Tensor) -> None:
        self.true_labels = true_labels.cpu()

    def label(self, indices: torch.Tensor, trial: int = 0) -> torch.Tensor:
        """The truth, the same in every trial."""
        return self.true_labels[indices.cpu()].clone()


def wrong_labels(true_labels: torch.Tensor, u: torch.Tensor, num_classes: int,
                 coarse_of_class: Sequence[int] | None = None) -> torch.Tensor:
    """A wrong label for every item, chosen by the uniform draws ``u`` in [0, 1).

    With ``coarse_of_class`` (CIFAR-100's superclasses) the wrong label is another fine
    class of the item's superclass, uniformly (the VAAL / DNAL noisy-oracle protocol);
    a class alone in its superclass, or no superclass map, gives a uniform other class.
    """
    y = true_labels.long().cpu()
    u = u.cpu()
    k = (u * (num_classes - 1)).long().clamp(max=num_classes - 2)
    wrong = k + (k >= y).long()  # uniform over the C - 1 other classes
    if coarse_of_class is None:
        return wrong
    coarse = torch.as_tensor(list(coarse_of_class), dtype=torch.long)
    siblings = [(coarse == coarse[c]).nonzero().flatten() for c in range(num_classes)]
    siblings = [s[s != c] for c, s in enumerate(siblings)]
    count = torch.tensor([len(s) for s in siblings], dtype=torch.long)
    table = torch.zeros(num_classes, max(1, int(count.max())), dtype=torch.long)
    for c, s in enumerate(siblings):
        table[c, : len(s)] = s
    n = count[y]
    pick = (u * n).long().clamp(min=0)
    pick = torch.minimum(pick, (n - 1).clamp(min=0))
    return torch.where(n > 0, table[y, pick], wrong)


class NoisyOracle:
    """The true label, except that at rate ``rate`` a wrong one (see :func:`wrong_labels`).

    Every training item's answer for a trial is fixed up front from the generator
    ``(seed, "noise", trial)``: the same item gets the same label whichever strategy asks,
    in whatever order, and after a resume.  Each item is flipped independently
    (a Bernoulli draw), so the share of wrong labels among the queried items is close to
    ``rate``, not exactly ``rate``.
    """

    source = "simulated-noisy"

    def __init__(self, true_labels: torch.Tensor, rate: float, seed: int, num_classes: int,
                 coarse_of_class: Sequence[int] | None = None) -> None:
        if not 0 <= rate < 1:
            raise ConfigError(f"--label-noise must be in [0, 1), not {rate:g}")
        if rate > 0 and num_classes < 2:
            raise ConfigError("--label-noise needs at least two classes (there is no wrong label to give)")
        self.true_labels = true_labels.long().cpu()
        self.rate = rate
        self.seed = seed
        self.num_classes = num_classes
        self.coarse_of_class = list(coarse_of_class) if coarse_of_class is not None else None
        self._answers: dict[int, torch.Tensor] = {}

    def answers(self, trial: int) -> torch.Tensor:
        """The label this oracle gives for every training item in ``trial``."""
        if trial not in self._answers:
            gen = generator(self.seed, "noise", trial)
            n = self.true_labels.numel()
            flip = torch.rand(n, generator=gen) < self.rate
            u = torch.rand(n, generator=gen)
            wrong = wrong_labels(self.true_labels, u, self.num_classes, self.coarse_of_class)
            self._answers[trial] = torch.where(flip, wrong, self.true_labels)
        return self._answers[trial]

    def label(self, indices: torch.Tensor, trial: int = 0) -> torch.Tensor:
        return self.answers(trial)[indices.cpu()].clone()


def simulated_oracle(true_labels: torch.Tensor, label_noise: float = 0.0, seed: int = 0, num_classes: int | None = None,
                     coarse_of_class: Sequence[int] | None = None) -> SimulatedOracle | NoisyOracle:
    """The oracle of a simulated run: the truth, or a :class:`NoisyOracle` when ``label_noise > 0``."""
    if label_noise <= 0:
        return SimulatedOracle(true_labels)
    if true_labels.is_floating_point():
        raise ConfigError("--label-noise flips class labels; it does not apply to real-valued targets")
    classes = num_classes if num_classes is not None else int(true_labels.max()) + 1
    return NoisyOracle(true_labels, label_noise, seed, classes, coarse_of_class)
