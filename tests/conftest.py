"""Shared test fixtures: tiny synthetic data that a model can learn in a few steps."""
from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from activeloss.data import Dataset

torch.set_num_threads(1)  # the tests use tiny models, which only lose from intra-op threading


def make_tiny_dataset(n_train: int = 120, n_test: int = 60, classes: int = 3, size: int = 8, seed: int = 0) -> Dataset:
    """Grey images whose brightness pattern depends on the class, plus noise."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int):
        y = torch.arange(n) % classes
        base = torch.zeros(n, 1, size, size)
        for c in range(classes):
            base[y == c, :, :, c * size // classes : (c + 1) * size // classes] = 200.0
        x = (base + 40 * torch.rand(n, 1, size, size, generator=g)).clamp(0, 255).to(torch.uint8)
        return x, y

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    return Dataset("tiny", x_train, y_train, x_test, y_test, [str(c) for c in range(classes)]).validate()


@pytest.fixture
def tiny_dataset() -> Dataset:
    return make_tiny_dataset()


def write_tiny_npz(path, n_train: int = 200, n_test: int = 60):
    """A small npz dataset on disk for CLI tests (images and labels, with a test split)."""
    data = make_tiny_dataset(n_train=n_train, n_test=n_test)
    np.savez(path, x=data.x_train.numpy(), y=data.y_train.numpy(), x_test=data.x_test.numpy(), y_test=data.y_test.numpy())
    return path


@pytest.fixture
def tiny_npz(tmp_path):
    return write_tiny_npz(tmp_path / "tiny.npz")


def build_parts(name: str, data: Dataset, model: str = "cnn", taps=None, model_seed: int = 0, **settings):
    """A strategy's model, objective, acquisition and task for ``data``, built as a learner
    builds them (options resolved from ``settings`` over the defaults), without training."""
    from types import SimpleNamespace

    from activeloss.config import Settings
    from activeloss.loop.plan import resolve_run
    from activeloss.models import build
    from activeloss.objectives import ModelInfo
    from activeloss.strategies import get_strategy
    from activeloss.tasks import make_task

    strategy = get_strategy(name)
    run = resolve_run(Settings.from_dict({"epochs": 4, "model": model, **settings}), strategy, data, None)
    task = make_task(data.task)
    torch.manual_seed(model_seed)
    net = build(model, task.output_size(data), data.input_shape)
    objective = strategy.make_objective(run.objective_options)
    tap_names = tuple(taps) if taps is not None else tuple(getattr(net, "taps", ()))
    objective.setup(net, ModelInfo(task, tap_names, data.input_shape, data.num_classes))
    acquisition = strategy.make_acquisition(run.acquisition_options)
    return SimpleNamespace(strategy=strategy, run=run, settings=run.settings, task=task, model=net,
                           objective=objective, acquisition=acquisition, taps=tap_names)


def make_context(parts, inputs, candidates, labeled, seed: int = 0, batch_size: int = 16):
    """A QueryContext over ``parts`` (from :func:`build_parts`) with a seeded generator."""
    from activeloss.acquisitions import QueryContext

    return QueryContext(parts.model, parts.objective, inputs, candidates, labeled,
                        torch.Generator().manual_seed(seed), batch_size, parts.task)


def results_rows(folder, times: bool = False) -> list[dict]:
    """The rows of ``folder/results.csv``, without the time columns unless ``times`` (what two
    runs that must give the same results are compared on)."""
    import csv

    with open(folder / "results.csv") as f:
        rows = list(csv.DictReader(f))
    return rows if times else [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]


def sql_rows(db, sql: str) -> list[tuple]:
    """The rows of ``sql`` in the SQLite file ``db`` (opened and closed for the one query)."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def subprocess_env() -> dict[str, str]:
    """The environment of a subprocess that imports this checkout's activeloss."""
    import os
    from pathlib import Path

    src = str(Path(__file__).parents[1] / "src")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))


#: the classes of :func:`make_images`
IMAGE_CLASSES = ["red", "green", "blue"]


def make_images(root: Path, n: int, seed: int = 0, by_class: bool = False) -> dict[str, int]:
    """``n`` small PNGs of varied sizes whose dominant colour channel is their class (red, green,
    blue), under ``root/part0`` and ``root/part1`` (or ``root/<class>`` with ``by_class``);
    returns each image's key (its path under ``root``) -> class index."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(n):
        c = i % 3
        w, h = (int(v) for v in rng.integers(12, 40, size=2))
        a = rng.integers(0, 60, size=(h, w, 3)).astype(np.uint8)
        a[..., c] += 150
        sub = IMAGE_CLASSES[c] if by_class else f"part{i % 2}"
        (root / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / sub / f"img{i:03d}.png")
        truth[f"{sub}/img{i:03d}.png"] = c
    return truth


def image_project(tmp_path: Path, images: int, batch: int) -> Path:
    """A labeling project of ``images`` generated images with 9 labeled ones to validate on
    (8 x 8 pixels, 1 epoch: fast), and a cold-start batch of ``batch`` pending; its folder."""
    from activeloss.project import Project

    make_images(tmp_path / "imgs", images)
    make_images(tmp_path / "val", 9, seed=1, by_class=True)
    project = Project.create(tmp_path / "proj", IMAGE_CLASSES, images=tmp_path / "imgs", val=tmp_path / "val",
                             size=8, epochs=1, model="cnn")
    project.query(batch)
    project.store.close()
    return tmp_path / "proj"


def free_port() -> int:
    """A loopback port nobody listens on (for a server started by a test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
