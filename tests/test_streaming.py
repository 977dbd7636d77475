"""Image folders larger than the memory cap stay on disk and are decoded batch by batch."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from activeloss.cli import main
from activeloss.data import Inputs, load_dataset, streaming
from activeloss.data import images as images_mod
from activeloss.data.streaming import ImageFiles
from activeloss.errors import DataError

from conftest import results_rows

TINY_CAP = 1e-6  # GB: 1,000 bytes, less than any folder below


def _noise_folder(root: Path, per_class: int = 12, size: tuple[int, int] = (10, 8), classes=("a", "b")) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        for i in range(per_class):
            (root / name).mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            pixels[..., 0] = pixels[..., 0] // 2 + 100 * c  # classes differ in red
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_a_folder_over_the_cap_streams_and_decodes_what_memory_would_hold(tmp_path, monkeypatch):
    root = _noise_folder(tmp_path / "d")
    held = load_dataset(f"folder:{root}", seed=3)
    decoded_whole = []
    monkeypatch.setattr(images_mod, "load_images", lambda *a, **k: decoded_whole.append(1))  # must not be called
    streamed = load_dataset(f"folder:{root}", seed=3, image_memory_gb=TINY_CAP)
    assert not decoded_whole
    assert isinstance(streamed.x_train, ImageFiles) and isinstance(streamed.x_test, ImageFiles)
    assert streamed.x_train.shape == held.x_train.shape and streamed.input_shape == (3, 8, 10)
    assert torch.equal(streamed.y_train, held.y_train) and torch.equal(streamed.y_test, held.y_test)
    idx = torch.tensor([5, 0, 7, 7])
    assert torch.equal(streamed.x_train[idx], held.x_train[idx])
    assert torch.equal(streamed.x_test[1:3], held.x_test[1:3])


def test_worker_processes_decode_the_same_pixels(tmp_path, monkeypatch):
    root = _noise_folder(tmp_path / "d")
    files = sorted(str(p) for p in root.rglob("*.png"))
    alone = ImageFiles.of(files, None)[torch.arange(len(files))]
    monkeypatch.setattr(streaming, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(streaming, "_workers", lambda: 2)
    assert torch.equal(ImageFiles.of(files, None)[torch.arange(len(files))], alone)
    resized = ImageFiles.of(files, 6)[torch.arange(4)]
    assert resized.shape == (4, 3, 6, 6)


def test_streamed_statistics_match_the_whole_arrays(tmp_path):
    root = _noise_folder(tmp_path / "d")
    held = Inputs.from_dataset(load_dataset(f"folder:{root}"), torch.device("cpu"), (), 0)
    streamed = Inputs.from_dataset(load_dataset(f"folder:{root}", image_memory_gb=TINY_CAP), torch.device("cpu"), (), 0)
    assert torch.allclose(streamed.mean, held.mean, atol=1e-6) and torch.allclose(streamed.std, held.std, atol=1e-5)
    idx = torch.tensor([2, 9])
    assert torch.allclose(streamed.train_batch(idx), held.train_batch(idx), atol=1e-4)


def test_streamed_mixed_sizes_are_one_clear_error(tmp_path):
    root = _noise_folder(tmp_path / "d")
    Image.new("RGB", (7, 7)).save(root / "a" / "odd.png")
    data = load_dataset(f"folder:{root}", image_memory_gb=TINY_CAP)
    with pytest.raises(DataError, match=r"odd\.png is 7x7 but the others are 10x8.*--image-size"):
        for x in (data.x_train, data.x_test):  # wherever the split put it
            x[torch.arange(x.shape[0])]


def test_a_run_over_the_cap_decodes_batches_never_the_whole_folder(tmp_path, monkeypatch):
    root = _noise_folder(tmp_path / "d", per_class=15, size=(12, 12))
    sizes: list[int] = []
    getitem = ImageFiles.__getitem__

    def recording(self, index):
        out = getitem(self, index)
        sizes.append(out.shape[0])
        return out

    monkeypatch.setattr(ImageFiles, "__getitem__", recording)
    monkeypatch.setattr(streaming, "STATS_BATCH", 5)  # the statistics too, a few files at a time
    args = ["run", "--dataset", f"folder:{root}", "--image-memory-gb", str(TINY_CAP), "--strategies", "entropy,llal",
            "--trials", "1", "--cycles", "2", "--initial", "6", "--budget", "4", "--epochs", "2", "--batch-size", "4",
            "--eval-batch-size", "5", "--model", "cnn", "--diagnostics", "none", "--quiet", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    rows = results_rows(tmp_path / "o")
    assert len(rows) == 2 * 2 and all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert sizes and max(sizes) <= 5 < 24  # a batch at a time, never the 24 training images at once
