import pytest

from activeloss.config import Settings, coerce, load_toml, resolve, validate
from activeloss.errors import ConfigError


def test_resolution_order_explicit_then_strategy_then_dataset_then_protocol():
    s = resolve(Settings(dataset="digits", epochs=7), strategy_defaults={"reinit": True, "epochs": 99, "budget": 13})
    assert s.epochs == 7  # explicit wins over the strategy
    assert s.reinit is True and s.budget == 13  # strategy wins over the dataset
    assert s.initial == 40  # digits default
    assert s.milestones == [6]  # 80% of the epochs
    p = resolve(Settings(dataset="mnist:/x"))
    assert (p.initial, p.budget, p.cycles, p.subset, p.epochs, p.batch_size, p.lr) == (1000, 1000, 10, 10000, 200, 128, 0.1)
    assert p.milestones == [160] and p.augment == "none"
    assert resolve(Settings(dataset="cifar10:/x")).augment == "flip,crop"


def test_coerce_parses_cli_strings_and_names_the_bad_option():
    assert coerce("milestones", "80,120") == [80, 120]
    assert coerce("strategies", "random, entropy") == ["random", "entropy"]
    assert coerce("reinit", "yes") is True
    assert coerce("lr", "0.5") == 0.5
    with pytest.raises(ConfigError, match="--batch-size expects int, got 'big'"):
        coerce("batch_size", "big")
    with pytest.raises(ConfigError, match="--epochs expects int"):
        coerce("epochs", 2.5)


def test_toml_file_uses_the_option_names(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('dataset = "digits"\nstrategies = ["random", "entropy"]\nbatch-size = 16\nmilestones = [3]\n')
    values = load_toml(path)
    assert values == {"dataset": "digits", "strategies": ["random", "entropy"], "batch_size": 16, "milestones": [3]}
    (tmp_path / "bad.toml").write_text("epoks = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'epoks'"):
        load_toml(tmp_path / "bad.toml")
    (tmp_path / "broken.toml").write_text("epochs = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(tmp_path / "broken.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")


def test_validate_rejects_budgets_larger_than_the_pool():
    s = resolve(Settings(dataset="digits", initial=10, budget=10, cycles=3))
    validate(s, pool_size=30)
    with pytest.raises(ConfigError, match="more than the training pool"):
        validate(s, pool_size=29)
    with pytest.raises(ConfigError, match="--initial 10 is larger than the training pool"):
        validate(s, pool_size=9)
    with pytest.raises(ConfigError, match="--trials must be at least 1"):
        validate(resolve(Settings(trials=0)), pool_size=10_000)
    with pytest.raises(ConfigError, match="smaller than --budget"):
        validate(resolve(Settings(dataset="digits", subset=5, budget=10)), pool_size=1000)
