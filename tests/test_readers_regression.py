"""Regression readers: UCI benchmark layouts built in tmp_path, scikit-learn's diabetes, and csv / npz
tables with real-valued targets; plus the per-format defaults the registry carries."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from activeloss.data import READERS, load_dataset
from activeloss.errors import ConfigError, DataError

# ---------------------------------------------------------------- a tiny UCI layout

#: split 0 lists its rows out of order on purpose (the reader keeps the file's order)
SPLITS = [([3, 0, 7, 1, 9, 4, 6], [2, 5, 8]), ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9])]


def make_uci(folder: Path, target: int, n_splits_file: bool = True) -> np.ndarray:
    """FOLDER/data/ with a 10x4 table (values r*10 + c + 0.25), TARGET as the target column and two splits."""
    data_dir = folder / "data"
    data_dir.mkdir(parents=True)
    table = np.arange(10)[:, None] * 10.0 + np.arange(4)[None, :] + 0.25
    lines = ["\t".join(f"{v:g}" for v in row) + " \t" for row in table]  # trailing whitespace, as in concrete
    (data_dir / "data.txt").write_text("\n".join(lines) + "\n\n")  # and a blank last line
    (data_dir / "index_features.txt").write_text("".join(f"{c}\n" for c in range(4) if c != target))
    (data_dir / "index_target.txt").write_text(f"{target}\n")
    for i, (train, test) in enumerate(SPLITS):
        (data_dir / f"index_train_{i}.txt").write_text("".join(f"{r}\n" for r in train))
        (data_dir / f"index_test_{i}.txt").write_text("".join(f"{r}\n" for r in test))
    if n_splits_file:
        (data_dir / "n_splits.txt").write_text("2\n")
    return table


def uci_error(path: Path, **kw) -> str:
    """The one-line message of the DataError that reading PATH raises."""
    with pytest.raises(DataError) as info:
        load_dataset(f"uci:{path}", **kw)
    message = str(info.value)
    assert "\n" not in message and message.startswith("uci: ")
    return message


def re_search(pattern: str, text: str) -> bool:
    assert re.search(pattern, text), f"{pattern!r} not in {text!r}"
    return True


def test_uci_reads_features_target_and_split_in_file_order(tmp_path):
    table = make_uci(tmp_path / "tiny", target=1)
    ds = load_dataset(f"uci:{tmp_path / 'tiny'}")
    train, test = SPLITS[0]
    assert ds.task == "regression" and ds.class_names == [] and ds.name == "tiny"
    assert ds.x_train.shape == (7, 3) and ds.x_test.shape == (3, 3)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.float32 and ds.y_train.dim() == 1
    np.testing.assert_array_equal(ds.x_train.numpy(), table[train][:, [0, 2, 3]].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train.numpy(), table[train, 1].astype(np.float32))
    np.testing.assert_array_equal(ds.x_test.numpy(), table[test][:, [0, 2, 3]].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test.numpy(), table[test, 1].astype(np.float32))
    assert ds.extras == {"source": str(tmp_path / "tiny"), "test_split": "fixed split 0 of 2"}


def test_uci_data_folder_target_last_and_second_split(tmp_path):
    table = make_uci(tmp_path / "tiny", target=3, n_splits_file=False)  # splits counted from the files
    first = load_dataset(f"uci:{tmp_path / 'tiny' / 'data'}")
    second = load_dataset(f"uci:{tmp_path / 'tiny' / 'data'}", split=1)
    assert second.name == "tiny" and second.extras["test_split"] == "fixed split 1 of 2"
    assert Path(second.extras["source"]).resolve() == (tmp_path / "tiny").resolve()
    np.testing.assert_array_equal(second.x_train.numpy(), table[:7, :3].astype(np.float32))
    np.testing.assert_array_equal(second.y_test.numpy(), table[7:, 3].astype(np.float32))
    assert not torch.equal(first.y_test, second.y_test)
    assert not torch.equal(first.x_train, second.x_train)


def test_uci_missing_files(tmp_path):
    make_uci(tmp_path / "t", target=3)
    data = tmp_path / "t" / "data"
    (data / "index_test_1.txt").unlink()
    load_dataset(f"uci:{tmp_path / 't'}", split=0)  # split 0 does not need it
    assert "expected the file index_test_1.txt in" in uci_error(tmp_path / "t", split=1)
    (data / "index_target.txt").unlink()
    assert "expected the file index_target.txt in" in uci_error(tmp_path / "t")
    (data / "data.txt").unlink()
    assert "expected the file data.txt in" in uci_error(tmp_path / "t")
    assert "is not a folder" in uci_error(data / "index_features.txt")


def test_uci_split_out_of_range_names_the_existing_splits(tmp_path):
    make_uci(tmp_path / "t", target=3)
    with pytest.raises(DataError, match=r"^uci: split 25 does not exist: .*t has splits 0\.\.1$"):
        load_dataset(f"uci:{tmp_path / 't'}", split=25)
    with pytest.raises(DataError, match=r"split -1 does not exist: .* has splits 0\.\.1"):
        load_dataset(f"uci:{tmp_path / 't'}", split=-1)
    (tmp_path / "t" / "data" / "n_splits.txt").write_text("two\n")
    assert "n_splits.txt: 'two' is not a whole number" in uci_error(tmp_path / "t")


def test_uci_non_numeric_cell_and_unequal_rows(tmp_path):
    make_uci(tmp_path / "t", target=3)
    path = tmp_path / "t" / "data" / "data.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ["1 2 abc 4"] + lines[3:]))
    assert re_search(r"data\.txt line 3, column 2 \(from 0\): 'abc' is not a number", uci_error(tmp_path / "t"))
    path.write_text("\n".join(lines[:3] + ["1 2 3"] + lines[4:]))
    assert re_search(r"data\.txt line 4 has 3 numbers but line 1 has 4", uci_error(tmp_path / "t"))
    path.write_text("\n\n")
    assert re_search(r"data\.txt has no data rows", uci_error(tmp_path / "t"))


def test_uci_non_finite_value_is_named(tmp_path):
    make_uci(tmp_path / "t", target=3)
    path = tmp_path / "t" / "data" / "data.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ["1 nan 3 4"] + lines[3:]))
    message = uci_error(tmp_path / "t")
    assert re_search(r"data\.txt row 2, column 1 \(both from 0\) is nan, not a finite number", message)


@pytest.mark.parametrize("file, content, message", [
    ("index_train_0.txt", "0\n1\n10\n", r"index_train_0\.txt lists row 10, but data\.txt has 10 rows \(0\.\.9\)"),
    ("index_test_0.txt", "-1\n", r"index_test_0\.txt lists row -1, but data\.txt has 10 rows"),
    ("index_features.txt", "0\n4\n", r"index_features\.txt lists column 4, but data\.txt has 4 columns \(0\.\.3\)"),
    ("index_target.txt", "7\n", r"index_target\.txt lists column 7, but data\.txt has 4 columns"),
    ("index_target.txt", "2\n3\n", r"index_target\.txt must hold one column index, found 2"),
    ("index_features.txt", "0\n1\n3\n", r"index_features\.txt lists the target column 3 as a feature"),
    ("index_train_0.txt", "0\n2.5\n", r"index_train_0\.txt: '2\.5' is not a whole number"),
    ("index_test_0.txt", "", r"index_test_0\.txt lists no rows"),
    ("index_test_0.txt", "2\n5\n4\n", r"index_train_0\.txt and index_test_0\.txt in .* share 1 rows \(e\.g\. row 4\)"),
])
def test_uci_bad_index_files(tmp_path, file, content, message):
    make_uci(tmp_path / "t", target=3)
    (tmp_path / "t" / "data" / file).write_text(content)
    assert re_search(message, uci_error(tmp_path / "t"))


# ---------------------------------------------------------------- diabetes


def test_diabetes_is_a_seeded_regression_split():
    from sklearn.datasets import load_diabetes

    a, b, c = (load_dataset("diabetes", seed=s, test_fraction=0.2) for s in (3, 3, 4))
    assert a.task == "regression" and a.name == "diabetes" and a.class_names == []
    assert len(a.x_train) == 353 and len(a.x_test) == 89  # 442 rows, ceil(0.2 * 442) for testing
    assert a.x_train.shape[1] == 10 and a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.float32
    assert a.extras == {"source": "sklearn.datasets.load_diabetes", "test_split": "random 0.2 of the data (seed 3)"}
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_test, c.y_test)
    # every row is there once, still paired with its own target
    d = load_diabetes()
    x, y = torch.cat([a.x_train, a.x_test]), torch.cat([a.y_train, a.y_test])
    order = np.lexsort(x.numpy().T[::-1])
    want = np.lexsort(d.data.astype(np.float32).T[::-1])
    np.testing.assert_array_equal(x.numpy()[order], d.data.astype(np.float32)[want])
    np.testing.assert_array_equal(y.numpy()[order], d.target.astype(np.float32)[want])


def test_diabetes_takes_no_path():
    with pytest.raises(DataError, match=r"the diabetes dataset is bundled with scikit-learn and takes no path"):
        load_dataset("diabetes:/somewhere")


def test_reader_defaults_per_format():
    augment = {"digits": "none", "mnist": "none", "svhn": "crop", "cifar10": "flip,crop", "cifar100": "flip,crop",
               "folder": "flip,crop", "npz": "none", "csv": "none", "uci": "none", "diabetes": "none",
               "synthetic-pose": "none", "coco-keypoints": "none", "mpii": "none", "dlc": "none",
               "synthetic-shapes": "none", "voc": "none"}
    assert {k: READERS.get(k).augment for k in READERS} == augment
    assert [k for k in READERS if not READERS.get(k).needs_path] == ["digits", "diabetes", "synthetic-pose",
                                                                      "synthetic-shapes"]
    assert READERS.get("digits").defaults == {"cycles": 8, "initial": 40, "budget": 40, "subset": 0, "epochs": 40,
                                              "batch_size": 32, "lr": 0.05}
    uci, diabetes = READERS.get("uci").defaults, READERS.get("diabetes").defaults
    assert (diabetes["epochs"], diabetes["lr"]) == (100, 0.001)  # chosen on diabetes' validation split
    assert {k: v for k, v in diabetes.items() if k not in ("epochs", "lr")} == \
        {k: v for k, v in uci.items() if k not in ("epochs", "lr")}  # the same protocol otherwise


# ---------------------------------------------------------------- csv


def write_csv(path: Path, header: str, rows: list[str]) -> str:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return f"csv:{path}"


def test_csv_float_label_column_is_regression(tmp_path):
    spec = write_csv(tmp_path / "d.csv", "a,label,b", [f"{i},{i * 0.5 + 0.1:.1f},{-i}" for i in range(20)])
    a, b, c = (load_dataset(spec, seed=s) for s in (0, 0, 1))
    assert a.task == "regression" and a.class_names == [] and a.y_train.dtype == torch.float32
    assert a.x_train.shape == (16, 2) and a.x_test.shape == (4, 2)
    x, y = torch.cat([a.x_train, a.x_test]), torch.cat([a.y_train, a.y_test])
    torch.testing.assert_close(y, x[:, 0] * 0.5 + 0.1)  # the target stays with its row
    assert torch.equal(x[:, 1], -x[:, 0])  # the target column is not a feature
    assert a.extras["test_split"] == "random 0.2 of the data (seed 0)"
    assert torch.equal(a.y_test, b.y_test) and not torch.equal(a.y_test, c.y_test)


def test_csv_explicit_regression_and_named_target(tmp_path):
    spec = write_csv(tmp_path / "d.csv", "label,price,z", [f"{i % 3},{10 * i},{i}" for i in range(10)])
    ds = load_dataset(spec, target="price", task="regression")
    assert ds.task == "regression" and ds.y_train.dtype == torch.float32
    x, y = torch.cat([ds.x_train, ds.x_test]), torch.cat([ds.y_train, ds.y_test])
    assert torch.equal(y, 10 * x[:, 1]) and torch.equal(x[:, 0], x[:, 1] % 3)  # 'label' is now a feature
    auto = load_dataset(spec, target="price")  # whole numbers: classes unless regression is asked for
    assert auto.task == "classification" and auto.class_names == [str(10 * i) for i in range(10)]


def test_csv_integer_column_is_classification_unless_asked(tmp_path):
    spec = write_csv(tmp_path / "d.csv", "label,a", [f"{c},{i}" for i, c in enumerate([10, 9, 2] * 4)])
    ds = load_dataset(spec)
    assert ds.task == "classification" and ds.class_names == ["2", "9", "10"] and ds.y_train.dtype == torch.int64
    floats = write_csv(tmp_path / "f.csv", "label,a", [f"{i % 2 + 0.5},{i}" for i in range(12)])
    forced = load_dataset(floats, task="classification")
    assert forced.task == "classification" and forced.class_names == ["0.5", "1.5"]


def test_csv_missing_target_column_names_it(tmp_path):
    spec = write_csv(tmp_path / "d.csv", "a,b", ["1,2"])
    with pytest.raises(DataError, match=r"has no column named 'price' \(columns: a, b\)"):
        load_dataset(spec, target="price")


@pytest.mark.parametrize("cell, message", [
    ("abc", r"line 3, column 'y': 'abc' is not a number"),
    ("", r"line 3, column 'y': '' is not a number"),
    ("nan", r"line 3, column 'y': 'nan' is not a finite number"),
])
def test_csv_bad_regression_target_names_line_and_column(tmp_path, cell, message):
    spec = write_csv(tmp_path / "d.csv", "a,y", ["1,0.5", f"2,{cell}", "3,1.5"])
    with pytest.raises(DataError, match=message):
        load_dataset(spec, target="y", task="regression")


def test_csv_unknown_task_is_a_config_error(tmp_path):
    spec = write_csv(tmp_path / "d.csv", "a,label", ["1,x", "2,y"])
    with pytest.raises(ConfigError, match=r"choose one of classification, regression"):
        load_dataset(spec, task="ranking")


# ---------------------------------------------------------------- npz


def test_npz_float_targets_are_regression(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(20, 2)
    np.savez(tmp_path / "r.npz", x=x, y=x[:, 0] / 4)  # 0.25 steps: not all whole
    ds = load_dataset(f"npz:{tmp_path / 'r.npz'}", seed=2)
    assert ds.task == "regression" and ds.class_names == [] and ds.y_train.dtype == torch.float32
    assert len(ds.x_test) == 4
    xs, ys = torch.cat([ds.x_train, ds.x_test]), torch.cat([ds.y_train, ds.y_test])
    assert torch.equal(ys, xs[:, 0] / 4)
    assert ds.extras["test_split"] == "random 0.2 of the data (seed 2)"


def test_npz_explicit_regression_with_test_arrays(tmp_path):
    np.savez(tmp_path / "r.npz", x=np.ones((6, 3)), y=np.arange(6), x_test=np.zeros((2, 3)), y_test=np.array([7, 8]))
    ds = load_dataset(f"npz:{tmp_path / 'r.npz'}", task="regression")
    assert ds.task == "regression" and ds.y_train.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert ds.y_test.dtype == torch.float32 and ds.y_test.tolist() == [7.0, 8.0]
    assert ds.extras["test_split"] == "from the source"
    assert load_dataset(f"npz:{tmp_path / 'r.npz'}").task == "classification"  # integers: classes by default


def test_npz_whole_float_targets_stay_classes(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.ones((8, 2)), y=np.arange(8) % 2 * 1.0)
    ds = load_dataset(f"npz:{tmp_path / 'c.npz'}")
    assert ds.task == "classification" and ds.class_names == ["0", "1"]


def test_npz_regression_errors(tmp_path):
    np.savez(tmp_path / "n.npz", x=np.ones((5, 2)), y=np.array([0.5, 1.5, np.nan, 2.0, 3.0]))
    with pytest.raises(DataError, match=r"npz: target 2 of 'y' in .*n\.npz is nan, not a finite number"):
        load_dataset(f"npz:{tmp_path / 'n.npz'}")
    np.savez(tmp_path / "s.npz", x=np.ones((3, 2)), y=np.array(["a", "b", "c"]))
    with pytest.raises(DataError, match=r"targets 'y' in .*s\.npz must be numbers for regression"):
        load_dataset(f"npz:{tmp_path / 's.npz'}", task="regression")
    np.savez(tmp_path / "k.npz", x=np.ones((4, 2)), y=np.arange(4) % 2, class_names=np.array(["p", "q"]))
    with pytest.raises(DataError, match=r"has 'class_names', so its labels are classes, not regression targets"):
        load_dataset(f"npz:{tmp_path / 'k.npz'}", task="regression")
