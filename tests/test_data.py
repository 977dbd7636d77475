"""Dataset readers: tiny synthetic sources written in tmp_path, one per kind, plus the error paths."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from activeloss.data import READERS, Dataset, Inputs, load_dataset
from activeloss.data import images as images_mod
from activeloss.errors import ActiveLossError, ConfigError, DataError

# ---------------------------------------------------------------- writers of tiny sources


def write_idx(path: Path, array: np.ndarray, magic: int, gz: bool) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def make_mnist(root: Path, gz: bool, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        write_idx(root / name, a, 2051 if a.ndim == 3 else 2049, gz)
    return arrays


def dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def make_cifar10(root: Path, per_batch: int = 4, test_labels: list[int] | None = None) -> np.ndarray:
    """Five train batches and a test batch, with bytes keys as in the official release."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (5 * per_batch, 3072), dtype=np.uint8)
    for i in range(5):
        rows = slice(i * per_batch, (i + 1) * per_batch)
        labels = [(j % 10) for j in range(rows.start, rows.stop)]
        dump(root / f"data_batch_{i + 1}", {b"data": data[rows], b"labels": labels})
    test_labels = test_labels if test_labels is not None else [0, 1, 2]
    test_data = rng.integers(0, 256, (len(test_labels), 3072), dtype=np.uint8)
    dump(root / "test_batch", {b"data": test_data, b"labels": test_labels})
    dump(root / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072})
    return data


def make_cifar100(root: Path) -> None:
    """All 100 fine classes once in train; fine class f belongs to coarse class f % 20."""
    root.mkdir(parents=True, exist_ok=True)
    fine = np.arange(100)
    dump(root / "train", {b"data": np.zeros((100, 3072), np.uint8), b"fine_labels": fine.tolist(),
                          b"coarse_labels": (fine % 20).tolist()})
    dump(root / "test", {b"data": np.full((4, 3072), 7, np.uint8), b"fine_labels": [0, 21, 42, 99],
                         b"coarse_labels": [0, 1, 2, 19]})
    dump(root / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                         b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})


def save_image(path: Path, size: tuple[int, int] = (6, 5), mode: str = "RGB", value: int = 100,
               fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = (value, 0, 255 - value) if mode == "RGB" else value
    Image.new(mode, size, colour).save(path, format=fmt)


# ---------------------------------------------------------------- spec parsing and READERS


def test_readers_lists_every_kind_with_a_description():
    assert set(READERS) == {"digits", "mnist", "cifar10", "cifar100", "svhn", "folder", "npz", "csv", "uci", "diabetes",
                            "synthetic-pose", "coco-keypoints", "mpii", "dlc", "synthetic-shapes", "voc"}
    assert all(isinstance(READERS.description(k), str) and READERS.description(k) for k in READERS)
    assert all(isinstance(r.description, str) and r.description for _, r in READERS.items())


def test_unknown_kind_names_the_choices():
    with pytest.raises(DataError, match=r"unknown dataset kind 'foo'.*digits, mnist, cifar10"):
        load_dataset("foo:/x")


def test_kind_without_path():
    with pytest.raises(DataError, match=r"a dataset spec needs a path: mnist:PATH"):
        load_dataset("mnist")


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"mnist: .*nope does not exist"):
        load_dataset(f"mnist:{tmp_path / 'nope'}")


def test_bad_test_fraction_is_a_user_error():
    with pytest.raises(ActiveLossError, match="test fraction"):
        load_dataset("digits", test_fraction=1.0)


# ---------------------------------------------------------------- digits


def test_digits_loads_all_1797_images_with_10_classes():
    ds = load_dataset("digits", seed=0, test_fraction=0.2)
    assert isinstance(ds, Dataset)
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert len(ds.x_test) == 360  # ceil(0.2 * 1797)
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.x_train.dtype == torch.uint8
    assert ds.class_names == [str(i) for i in range(10)]
    assert int(ds.x_train.max()) == 255 and int(ds.x_train.min()) == 0
    # stratified: every class is in the test split in roughly its share
    counts = torch.bincount(ds.y_test, minlength=10)
    assert int(counts.min()) >= 34 and int(counts.max()) <= 38


def test_seeded_split_is_deterministic():
    a, b, c = load_dataset("digits", seed=3), load_dataset("digits", seed=3), load_dataset("digits", seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_test, c.x_test)


# ---------------------------------------------------------------- mnist


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_plain_and_gzipped(tmp_path, gz):
    arrays = make_mnist(tmp_path, gz)
    ds = load_dataset(f"mnist:{tmp_path}")
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (5, 1, 28, 28)
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    np.testing.assert_array_equal(ds.x_train[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.class_names == [str(i) for i in range(10)]


def test_mnist_truncated_file_is_named(tmp_path):
    make_mnist(tmp_path, gz=False)
    f = tmp_path / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"mnist: .*train-images-idx3-ubyte is truncated"):
        load_dataset(f"mnist:{tmp_path}")


def test_mnist_truncated_gzip_is_named(tmp_path):
    make_mnist(tmp_path, gz=True)
    f = tmp_path / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"mnist: .*t10k-labels-idx1-ubyte.gz"):
        load_dataset(f"mnist:{tmp_path}")


def test_mnist_wrong_magic_and_missing_file(tmp_path):
    make_mnist(tmp_path, gz=False)
    # a labels file where an images file is expected
    (tmp_path / "train-images-idx3-ubyte").write_bytes((tmp_path / "train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(DataError, match=r"magic number 2049, expected 2051"):
        load_dataset(f"mnist:{tmp_path}")
    make_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"expected the file t10k-labels-idx1-ubyte\(\.gz\) in .*, not found"):
        load_dataset(f"mnist:{tmp_path}")


def test_mnist_image_and_label_counts_must_agree(tmp_path):
    make_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(11), 2049, gz=False)
    with pytest.raises(DataError, match=r"has 12 images but .* has 11 labels"):
        load_dataset(f"mnist:{tmp_path}")


# ---------------------------------------------------------------- cifar


def test_cifar10_reads_batches_and_names(tmp_path):
    data = make_cifar10(tmp_path / "cifar-10-batches-py")
    for path in (tmp_path / "cifar-10-batches-py", tmp_path):  # the release folder or its parent
        ds = load_dataset(f"cifar10:{path}")
        assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
        assert ds.x_train.dtype == torch.uint8
        # rows are channel-major: the first 1024 bytes are the red plane
        np.testing.assert_array_equal(ds.x_train[7, 0].numpy().ravel(), data[7, :1024])
        np.testing.assert_array_equal(ds.x_train[7, 2].numpy().ravel(), data[7, 2048:])
        assert ds.y_train.tolist() == [i % 10 for i in range(20)]
        assert ds.class_names == [f"c{i}" for i in range(10)]
        assert ds.coarse_of_class is None


def test_cifar10_label_out_of_range(tmp_path):
    make_cifar10(tmp_path, test_labels=[0, 12, 3])
    with pytest.raises(DataError, match=r"cifar10: test label 12 at row 1 is out of range"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar10_corrupt_batch_and_missing_batch(tmp_path):
    make_cifar10(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match=r"cifar10: cannot read .*data_batch_3"):
        load_dataset(f"cifar10:{tmp_path}")
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"expected the file data_batch_3 in .*, not found"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar100_fine_targets_and_coarse_labels(tmp_path):
    make_cifar100(tmp_path / "cifar-100-python")
    ds = load_dataset(f"cifar100:{tmp_path}")
    assert ds.num_classes == 100 and ds.class_names[42] == "fine42"
    assert ds.y_test.tolist() == [0, 21, 42, 99]  # fine labels are the targets
    assert ds.coarse_of_class == [f % 20 for f in range(100)]
    assert ds.extras["coarse_names"] == [f"coarse{i}" for i in range(20)]
    assert int(ds.x_test.max()) == 7 and ds.x_test.shape == (4, 3, 32, 32)


def test_cifar100_inconsistent_coarse_labels(tmp_path):
    make_cifar100(tmp_path)
    dump(tmp_path / "test", {b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [5], b"coarse_labels": [6]})
    with pytest.raises(DataError, match=r"fine class 5 is filed under several coarse classes"):
        load_dataset(f"cifar100:{tmp_path}")


# ---------------------------------------------------------------- folder


def test_folder_with_train_and_test(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for cls, v in (("dog", 10), ("cat", 200)):
            for i in range(n):
                save_image(tmp_path / split / cls / f"{i}.png", value=v)
    (tmp_path / "train" / "dog" / "notes.txt").write_text("ignored")
    (tmp_path / "train" / "dog" / "._0.png").write_bytes(b"macOS metadata, ignored")
    save_image(tmp_path / "train" / "dog" / "UPPER.JPG", value=10, fmt="JPEG")  # case-insensitive suffix
    before = sorted(p.name for p in tmp_path.rglob("*"))
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.class_names == ["cat", "dog"]  # sorted folder names
    assert ds.x_train.shape == (7, 3, 5, 6) and ds.x_test.shape == (4, 3, 5, 6)
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1, 1] and ds.y_test.tolist() == [0, 0, 1, 1]
    assert ds.x_train[0, :, 0, 0].tolist() == [200, 0, 55]  # RGB channel order
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written into PATH


def test_folder_single_level_split_and_grey(tmp_path):
    for cls in ("a", "b", "c"):
        for i in range(5):
            save_image(tmp_path / cls / f"{i}.bmp", size=(4, 4), mode="L", value=i)
    ds = load_dataset(f"folder:{tmp_path}", seed=1, test_fraction=0.2)
    assert ds.x_train.shape == (12, 1, 4, 4) and ds.x_test.shape == (3, 1, 4, 4)
    assert sorted(ds.y_test.tolist()) == [0, 1, 2]  # stratified


def test_folder_mixed_grey_and_colour_becomes_rgb(tmp_path):
    save_image(tmp_path / "a" / "0.png", mode="L", value=9)
    save_image(tmp_path / "a" / "1.png", mode="L", value=9)
    save_image(tmp_path / "b" / "0.png", mode="RGB")
    save_image(tmp_path / "b" / "1.png", mode="RGB")
    ds = load_dataset(f"folder:{tmp_path}", test_fraction=0.5)
    x = torch.cat([ds.x_train, ds.x_test])
    assert x.shape[1] == 3
    grey = x[torch.cat([ds.y_train, ds.y_test]) == 0]
    assert bool((grey == 9).all())


def test_folder_corrupt_jpeg_is_named(tmp_path):
    save_image(tmp_path / "a" / "0.jpg", fmt="JPEG")
    save_image(tmp_path / "b" / "0.jpg", fmt="JPEG")
    (tmp_path / "b" / "3.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match=r"folder: cannot read image .*b/3\.jpg \(cannot identify image file\)"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_truncated_jpeg_is_named(tmp_path):
    save_image(tmp_path / "a" / "0.jpg", size=(64, 64), fmt="JPEG")
    save_image(tmp_path / "b" / "0.jpg", size=(64, 64), fmt="JPEG")
    f = tmp_path / "b" / "0.jpg"
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"folder: cannot read image .*b/0\.jpg"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_mixed_sizes(tmp_path):
    save_image(tmp_path / "a" / "0.png", size=(6, 5))
    save_image(tmp_path / "b" / "0.png", size=(8, 8))
    with pytest.raises(DataError, match=r"image .*b/0\.png is 8x8 but .*a/0\.png is 6x5"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_image_size_resizes_mixed_sizes_on_load(tmp_path, monkeypatch):
    save_image(tmp_path / "a" / "0.png", size=(6, 5), value=40)
    save_image(tmp_path / "a" / "1.png", size=(12, 9), mode="L", value=90)
    save_image(tmp_path / "b" / "0.png", size=(8, 8), value=200)
    save_image(tmp_path / "b" / "1.png", size=(8, 8), value=200)
    with pytest.raises(DataError, match=r"all images must have the same size \(or resize them on load with --image-size"):
        load_dataset(f"folder:{tmp_path}")
    cache = tmp_path.parent / f"{tmp_path.name}-cache"  # outside the folder of classes
    monkeypatch.setenv("ACTIVELOSS_CACHE", str(cache))
    ds = load_dataset(f"folder:{tmp_path}", test_fraction=0.5, image_size=7)
    x = torch.cat([ds.x_train, ds.x_test])
    assert x.shape == (4, 3, 7, 7)
    grey = x[torch.cat([ds.y_train, ds.y_test]) == 0]
    assert any(bool((img == 90).all()) for img in grey)  # a resized flat grey image stays flat, now RGB
    monkeypatch.setattr(images_mod, "PARALLEL_MIN_FILES", 0)  # the worker processes resize too
    small = load_dataset(f"folder:{tmp_path}", test_fraction=0.5, image_size=8)  # another size, another cache entry
    assert torch.cat([small.x_train, small.x_test]).shape[2:] == (8, 8)
    assert len(list(cache.glob("*.npy"))) == 2
    with pytest.raises(ConfigError, match="--image-size resizes the images of folder, voc, synthetic-shapes data"):
        load_dataset("digits", image_size=16)


def test_folder_train_test_classes_must_match(tmp_path):
    save_image(tmp_path / "train" / "a" / "0.png")
    save_image(tmp_path / "test" / "b" / "0.png")
    with pytest.raises(DataError, match=r"class folders .* differ \(only in train: a; only in test: b\)"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_without_class_folders(tmp_path):
    save_image(tmp_path / "0.png")
    with pytest.raises(DataError, match=r"has no class sub-folders"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_process_pool_and_cache(tmp_path, monkeypatch):
    """The parallel path (forced here with a low threshold) gives the same arrays, and the cache is used."""
    src = tmp_path / "src"
    for cls in ("a", "b"):
        for i in range(6):
            save_image(src / cls / f"{i}.png", size=(3, 2), value=10 * i)
    serial = load_dataset(f"folder:{src}")
    monkeypatch.setattr(images_mod, "PARALLEL_MIN_FILES", 0)
    monkeypatch.setattr(images_mod, "_CHUNK", 5)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ACTIVELOSS_CACHE", str(cache))
    parallel = load_dataset(f"folder:{src}")
    assert torch.equal(serial.x_train, parallel.x_train) and torch.equal(serial.x_test, parallel.x_test)
    assert len(list(cache.glob("*.npy"))) == 1
    # a cache hit does not decode: break the decoder and load again
    monkeypatch.setattr(images_mod, "decode_image", lambda p: (_ for _ in ()).throw(AssertionError("decoded")))
    cached = load_dataset(f"folder:{src}")
    assert torch.equal(cached.x_train, serial.x_train)


def test_folder_error_from_worker_process(tmp_path, monkeypatch):
    for cls in ("a", "b"):
        for i in range(4):
            save_image(tmp_path / cls / f"{i}.png")
    (tmp_path / "b" / "2.png").write_bytes(b"junk")
    monkeypatch.setattr(images_mod, "PARALLEL_MIN_FILES", 0)
    with pytest.raises(DataError, match=r"cannot read image .*b/2\.png"):
        load_dataset(f"folder:{tmp_path}")


# ---------------------------------------------------------------- npz


def test_npz_nhwc_images_with_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 5, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]),
             x_test=x[:2], y_test=np.array([2, 0]), class_names=np.array(["r", "g", "b"]))
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert ds.x_train.shape == (6, 3, 5, 5) and ds.x_train.dtype == torch.uint8
    np.testing.assert_array_equal(ds.x_train.numpy(), x.transpose(0, 3, 1, 2))
    assert ds.class_names == ["r", "g", "b"] and ds.y_test.tolist() == [2, 0]


def test_npz_3d_float_images_and_split(tmp_path):
    x = np.linspace(0, 1, 10 * 4 * 4).reshape(10, 4, 4)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(10) % 2)
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}", test_fraction=0.2)
    assert ds.x_train.shape == (8, 1, 4, 4) and ds.x_train.dtype == torch.uint8
    assert int(torch.cat([ds.x_train, ds.x_test]).max()) == 255
    assert sorted(ds.y_test.tolist()) == [0, 1]


def test_npz_tabular_with_noncontiguous_labels(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = np.array([3, 7, 10] * 6 + [3, 7])
    np.savez(tmp_path / "t.npz", x=x, y=y)
    ds = load_dataset(f"npz:{tmp_path / 't.npz'}")
    assert ds.x_train.dtype == torch.float32 and ds.x_train.shape[1] == 2
    assert ds.class_names == ["3", "7", "10"]
    # the mapping is consistent: row i had label y[i] (feature 0 is 2*i)
    rows = torch.cat([ds.x_train, ds.x_test])[:, 0].long() // 2
    labels = torch.cat([ds.y_train, ds.y_test])
    assert [ds.class_names[int(c)] for c in labels] == [str(y[int(i)]) for i in rows]
    assert float(ds.x_train[0, 1] - ds.x_train[0, 0]) == 1.0  # not standardised


def test_npz_missing_array_and_bad_values(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"npz: .*a\.npz has no array 'y'"):
        load_dataset(f"npz:{tmp_path / 'a.npz'}")
    np.savez(tmp_path / "b.npz", x=np.full((4, 3, 3), 300.5), y=np.arange(4))
    with pytest.raises(DataError, match=r"values in \[300.5, 300.5\]"):
        load_dataset(f"npz:{tmp_path / 'b.npz'}")
    (tmp_path / "c.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"npz: cannot read"):
        load_dataset(f"npz:{tmp_path / 'c.npz'}")


# ---------------------------------------------------------------- csv


def test_csv_string_labels_and_numeric_features(tmp_path):
    lines = ["f1,label,f2"] + [f"{i},{'yes' if i % 2 else 'no'},{i * 0.5}" for i in range(10)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n\n")
    ds = load_dataset(f"csv:{tmp_path / 'd.csv'}", seed=0, test_fraction=0.2)
    assert ds.class_names == ["no", "yes"]
    assert ds.x_train.dtype == torch.float32 and ds.x_train.shape == (8, 2)
    x, y = torch.cat([ds.x_train, ds.x_test]), torch.cat([ds.y_train, ds.y_test])
    assert torch.equal(y, (x[:, 0].long() % 2))  # label column removed, rows kept together
    assert torch.allclose(x[:, 1], x[:, 0] * 0.5)
    assert sorted(ds.y_test.tolist()) == [0, 1]


def test_csv_integer_labels_sort_numerically(tmp_path):
    lines = ["label,a"] + [f"{c},{i}" for i, c in enumerate([10, 9, 2] * 3)]
    (tmp_path / "d.csv").write_text("\n".join(lines))
    ds = load_dataset(f"csv:{tmp_path / 'd.csv'}", test_fraction=0.34)
    assert ds.class_names == ["2", "9", "10"]


def test_csv_missing_label_column(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,class\n1,2,x\n")
    with pytest.raises(DataError, match=r"has no column named 'label' \(columns: a, b, class\)"):
        load_dataset(f"csv:{tmp_path / 'd.csv'}")


def test_csv_non_numeric_cell_names_line_and_column(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,x\n3,oops,y\n5,6,x\n")
    with pytest.raises(DataError, match=r"line 3, column 'b': 'oops' is not a number"):
        load_dataset(f"csv:{tmp_path / 'd.csv'}")


def test_csv_split_determinism_and_small_class_fallback(tmp_path):
    # class "z" has a single row: stratification is impossible, a plain seeded shuffle is used
    lines = ["label,a"] + [f"{'x' if i % 2 else 'y'},{i}" for i in range(30)] + ["z,99"]
    (tmp_path / "d.csv").write_text("\n".join(lines))
    spec = f"csv:{tmp_path / 'd.csv'}"
    a, b, c = load_dataset(spec, seed=5), load_dataset(spec, seed=5), load_dataset(spec, seed=6)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_test, c.x_test)
    assert len(a.x_test) == 7 and len(a.x_train) == 24
    assert a.class_names == ["x", "y", "z"]


def test_cli_runs_a_folder_of_mixed_sizes_with_image_size(tmp_path, capsys):
    from activeloss.cli import main

    for cls in ("a", "b"):
        for i in range(6):
            save_image(tmp_path / "d" / cls / f"{i}.png", size=(6 + i, 5 + i), value=20 * i)
    args = ["run", "--dataset", f"folder:{tmp_path / 'd'}", "--strategies", "random", "--cycles", "1", "--initial", "4",
            "--epochs", "1", "--batch-size", "4", "--model", "cnn", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "bad")]) == 2
    assert "--image-size" in capsys.readouterr().err
    assert main([*args, "--image-size", "8", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "results.csv").is_file()


def test_input_statistics_are_computed_once_and_travel_with_the_dataset(tiny_dataset):
    import pickle

    mean, std = tiny_dataset.input_statistics()
    xf = tiny_dataset.x_train.float() / 255.0
    assert torch.equal(mean, xf.mean(dim=(0, 2, 3))) and torch.equal(std, xf.std(dim=(0, 2, 3)).clamp_min(1e-6))
    copy = pickle.loads(pickle.dumps(tiny_dataset))  # what a worker process receives
    copy.x_train = copy.x_train.flip(0) * 0  # a second pass would see these: the kept statistics are used
    assert torch.equal(copy.input_statistics()[0], mean)
    inputs = Inputs.from_dataset(copy, torch.device("cpu"), (), 0)
    assert torch.equal(inputs.mean.flatten(), mean) and torch.equal(inputs.std.flatten(), std)
