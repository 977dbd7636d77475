"""Choose training settings on a validation split of the TRAINING data, never on the test set.

For each combination of the grid, a model is trained (by default the `random` strategy's
training: the task loss alone; ``--strategy`` tunes another's, e.g. its objective's options)
on ``--labels`` random training items and scored on a held-out validation part of the
training set, over ``--seeds`` draws; the table gives mean +- std of the task's metric and
marks the best.  The test split of the dataset is never read.

    python scripts/tune.py --dataset uci:../shared/data/uci/UCI_Datasets/concrete \\
        --labels 100 --grid epochs=50,100,200 lr=0.003,0.01,0.03 batch_size=16
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys

import torch

from activeloss import Dataset, Learner, load_dataset
from activeloss.config import spec_of
from activeloss.config.options import coerce
from activeloss.tasks import make_task


def validation_split(data: Dataset, fraction: float, seed: int) -> Dataset:
    """The training part of ``data`` split into train' and validation (seeded), as a new dataset."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(data.size, generator=g)
    cut = int(round(data.size * (1 - fraction)))
    tr, va = order[:cut].sort().values, order[cut:].sort().values
    return Dataset(f"{data.name}-validation", data.x_train[tr], data.y_train[tr], data.x_train[va], data.y_train[va],
                   list(data.class_names), data.coarse_of_class, {}, data.task).validate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", type=int, default=0)
    parser.add_argument("--labels", type=int, default=100, help="labeled items each model is trained on")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--validation", type=float, default=0.2, help="share of the training set held out")
    parser.add_argument("--model", default=None)
    parser.add_argument("--strategy", default="random", help="whose training to tune (its objective trains beside)")
    parser.add_argument("--grid", nargs="+", default=["epochs=50,100,200", "lr=0.003,0.01,0.03"],
                        metavar="NAME=V1,V2", help="settings to try (every combination)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    full = load_dataset(args.dataset, split=args.split)
    data = validation_split(full, args.validation, seed=12345)
    metric = make_task(data.task).primary_metric
    names, values = [], []
    for item in args.grid:
        name, _, text = item.partition("=")
        names.append(name.replace("-", "_"))
        values.append([coerce(spec_of(names[-1]), v, "--grid") for v in text.split(",")])
    print(f"{full.name}: {data.size} training / {data.x_test.shape[0]} validation items (test set untouched); "
          f"{args.labels} labels, {args.seeds} seeds; {metric.name} ({'higher' if metric.higher_is_better else 'lower'}"
          f" is better)", file=sys.stderr)
    rows = []
    for combo in itertools.product(*values):
        settings = dict(zip(names, combo))
        scores = []
        for seed in range(args.seeds):
            learner = Learner(args.model, data, args.strategy, seed=seed, **settings)
            items = torch.randperm(data.size, generator=torch.Generator().manual_seed(seed))[: args.labels]
            learner.teach(items, data.y_train[items])
            learner.fit()
            scores.append(learner.evaluate()[metric.name])
        rows.append((settings, statistics.mean(scores), statistics.stdev(scores) if len(scores) > 1 else 0.0))
    best = (max if metric.higher_is_better else min)(rows, key=lambda r: r[1])
    print("| " + " | ".join(names) + f" | validation {metric.name} |")
    print("|" + "---|" * (len(names) + 1))
    for settings, mean, std in rows:
        mark = " **best**" if settings is best[0] else ""
        print("| " + " | ".join(str(settings[n]) for n in names) + f" | {mean:.4g} ± {std:.2g}{mark} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
