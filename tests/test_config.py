import pytest

from activeloss.config import Settings, load_toml, resolve, spec_of, validate
from activeloss.config.options import coerce
from activeloss.data.readers import reader_of
from activeloss.errors import ConfigError


def _resolve(settings: Settings, strategy_defaults: dict | None = None) -> Settings:
    """``resolve`` with the layers a run gets: the strategy's defaults, then the dataset's."""
    reader = reader_of(settings.dataset)
    return resolve(settings, [strategy_defaults or {}, reader.defaults], augment_default=reader.augment)


def test_resolution_order_explicit_then_strategy_then_dataset_then_protocol():
    s = _resolve(Settings(dataset="digits", epochs=7), strategy_defaults={"reinit": True, "epochs": 99, "budget": 13})
    assert s.epochs == 7  # explicit wins over the strategy
    assert s.reinit is True and s.budget == 13  # strategy wins over the dataset
    assert s.initial == 40  # digits default
    assert s.milestones == [6]  # 80% of the epochs
    p = _resolve(Settings(dataset="mnist:/x"))
    assert (p.initial, p.budget, p.cycles, p.subset, p.epochs, p.batch_size, p.lr) == \
        (1000, 1000, 10, 10000, 200, 128, 0.1)
    assert p.milestones == [160] and p.augment == "none"
    assert _resolve(Settings(dataset="cifar10:/x")).augment == "flip,crop"
    # given milestones (epochs or percentages of the epochs) are kept or turned into epochs
    assert _resolve(Settings(dataset="mnist:/x", epochs=10, milestones=[3, "50%"])).milestones == [3, 5]


def test_resolve_run_layers_the_strategy_and_its_components_options():
    """The strategy-level resolution: DNAL's core defaults sit between the user and the dataset,
    and the objectives' options (no longer Settings fields) resolve against --epochs and --lr."""
    from activeloss.data import load_dataset
    from activeloss.loop.plan import resolve_run
    from activeloss.strategies import get_strategy

    data = load_dataset("digits")
    reader = reader_of("digits")
    run = resolve_run(Settings(dataset="digits", epochs=10), get_strategy("dnal"), data, reader)
    assert run.settings.reinit is True and run.settings.epochs == 10 and run.settings.initial == 40
    assert run.options["stop_gradient_epoch"] == 8  # DNAL: 80% of --epochs
    assert run.options["lossnet_lr"] == pytest.approx(0.1 * run.settings.lr)  # DNAL: 10% of --lr
    llal = resolve_run(Settings(dataset="digits", epochs=10, lr=0.2), get_strategy("llal"), data, reader)
    assert llal.settings.reinit is False
    assert llal.options["stop_gradient_epoch"] == 6 and llal.options["lossnet_lr"] == pytest.approx(0.2)
    given = resolve_run(Settings.from_dict({"dataset": "digits", "epochs": 10, "stop_gradient_epoch": "30%"}),
                        get_strategy("llal"), data, reader)
    assert given.options["stop_gradient_epoch"] == 3
    assert given.record()["epochs"] == 10 and given.record()["stop_gradient_epoch"] == 3


def test_coerce_parses_cli_strings_and_names_the_bad_option():
    assert coerce(spec_of("milestones"), "80,120") == [80, 120]
    assert coerce(spec_of("strategies"), "random, entropy") == ["random", "entropy"]
    assert coerce(spec_of("reinit"), "yes") is True
    assert coerce(spec_of("lr"), "0.5") == 0.5
    assert coerce(spec_of("loss_weight"), "0.5") == 0.5  # a component's option, by its flat name
    with pytest.raises(ConfigError, match="--batch-size expects int, got 'big'"):
        coerce(spec_of("batch_size"), "big")
    with pytest.raises(ConfigError, match="--epochs expects int"):
        coerce(spec_of("epochs"), 2.5)
    with pytest.raises(ConfigError, match="^a.toml: --mc-passes expects int, got 'many'$"):
        coerce(spec_of("mc_passes"), "many", "a.toml")
    with pytest.raises(ConfigError, match="unknown setting 'epoks'"):
        spec_of("epoks")


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
    s = _resolve(Settings(dataset="digits", initial=10, budget=10, cycles=3))
    validate(s, pool_size=30)
    with pytest.raises(ConfigError, match="more than the training pool"):
        validate(s, pool_size=29)
    with pytest.raises(ConfigError, match="--initial 10 is larger than the training pool"):
        validate(s, pool_size=9)
    with pytest.raises(ConfigError, match="^--trials must be at least 1, not 0$"):
        validate(_resolve(Settings(trials=0)), pool_size=10_000)
    with pytest.raises(ConfigError, match="^--momentum must be below 1, not 1$"):
        validate(_resolve(Settings(momentum=1.0)), pool_size=10_000)
    with pytest.raises(ConfigError, match="smaller than --budget"):
        validate(_resolve(Settings(dataset="digits", subset=5, budget=10)), pool_size=1000)


def test_settings_hold_the_runs_own_fields_and_the_component_options_by_flat_name():
    s = Settings.from_dict({"epochs": "5", "loss-weight": "0.5", "mc_passes": 4})
    assert s.epochs == 5 and s.options == {"loss_weight": 0.5, "mc_passes": 4}
    assert s.get("epochs") == 5 and s.get("loss_weight") == 0.5 and s.get("margin") is None
    flat = s.to_dict()
    assert flat["epochs"] == 5 and flat["loss_weight"] == 0.5 and "options" not in flat
    assert Settings.from_dict({k: v for k, v in flat.items() if v is not None}) == s
    m = s.merged({"lr": 0.2, "margin": 2.0})
    assert (m.lr, m.options) == (0.2, {"loss_weight": 0.5, "mc_passes": 4, "margin": 2.0}) and s.lr is None
    with pytest.raises(ConfigError, match="^settings: unknown setting 'loss_wieght'; known settings are "):
        Settings.from_dict({"loss_wieght": 1})
