"""--validation: settings are chosen on a share of the training set, and the test split stays unused."""
import numpy as np
import pytest
import torch
from test_cli import TINY
from test_streaming import TINY_CAP, _noise_folder

from activeloss.cli import main
from activeloss.data import load_dataset
from activeloss.errors import ConfigError

from conftest import make_tiny_dataset, results_rows


def test_the_split_parts_the_training_set_and_drops_the_test_split(tiny_dataset):
    data = tiny_dataset
    split = data.validation_split(0.25, seed=3)
    assert split.size == 90 and split.x_test.shape[0] == 30 and split.name == f"{data.name}-validation"
    # every training item lands in exactly one part, the test items in none
    rows = {bytes(x.numpy()) for x in data.x_train}
    pool, held = [{bytes(x.numpy()) for x in part} for part in (split.x_train, split.x_test)]
    assert pool | held <= rows and len(pool) + len(held) == len(pool | held)
    assert not {bytes(x.numpy()) for x in data.x_test} & held  # the test items are noisy: none equals a training one
    assert sorted(torch.cat([split.y_train, split.y_test]).tolist()) == sorted(data.y_train.tolist())
    again, other = data.validation_split(0.25, seed=3), data.validation_split(0.25, seed=4)
    assert torch.equal(again.x_test, split.x_test) and not torch.equal(other.x_test, split.x_test)
    assert split.extras["validation"] == {"fraction": 0.25, "seed": 3}


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.001, 0.999])
def test_a_split_that_leaves_a_part_empty_is_refused(tiny_dataset, fraction):
    with pytest.raises(ConfigError, match="--validation"):
        tiny_dataset.validation_split(fraction)


def test_a_streamed_folder_splits_without_decoding_and_gives_the_same_pixels(tmp_path):
    root = _noise_folder(tmp_path / "d")
    held = load_dataset(f"folder:{root}", seed=1, validation=0.3)
    streamed = load_dataset(f"folder:{root}", seed=1, validation=0.3, image_memory_gb=TINY_CAP)
    assert type(streamed.x_train).__name__ == "ImageFiles"
    assert torch.equal(streamed.x_train[torch.arange(streamed.size)], held.x_train)
    assert torch.equal(streamed.x_test[torch.arange(held.x_test.shape[0])], held.x_test)


def test_a_run_on_a_validation_split_never_evaluates_on_the_test_split(tmp_path):
    # the test split's labels are scrambled: a run scored on it is near chance, one on the validation split is not
    data = make_tiny_dataset(n_train=240, n_test=90)
    scrambled = (data.y_test + 1) % 3
    npz = tmp_path / "d.npz"
    np.savez(npz, x=data.x_train.numpy(), y=data.y_train.numpy(), x_test=data.x_test.numpy(), y_test=scrambled.numpy())
    args = ["--dataset", f"npz:{npz}", "--strategies", "random", *TINY]
    assert main(["run", *args, "--out", str(tmp_path / "test")]) == 0
    assert main(["run", *args, "--validation", "0.25", "--out", str(tmp_path / "val")]) == 0
    on_test, on_validation = (float(results_rows(tmp_path / name)[-1]["accuracy"]) for name in ("test", "val"))
    assert on_test < 0.2 and on_validation > 0.8


def test_a_bad_validation_share_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", "--validation", "1.5", "--out", str(tmp_path / "x")]) == 2
    assert main(["run", "--dataset", "digits", "--validation", "0.0001", "--dry-run", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("validation" in line for line in err)
