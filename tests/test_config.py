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
    # one percentage is a list of one (it was taken for a scalar, and the run crashed on its characters)
    assert coerce(spec_of("milestones"), "80%") == ["80%"]
    assert coerce(spec_of("milestones"), "50%, 120") == ["50%", 120]
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


# ---------------------------------------------------------------- per-strategy tables


def test_per_strategy_tables_sit_between_the_users_values_and_the_presets(tmp_path):
    """First wins: the command line; the --config file's table for the strategy, then its common values; the
    preset's table, then its common values; then the strategy's and the dataset's defaults."""
    from activeloss.config import overlay

    path = tmp_path / "run.toml"
    path.write_text('preset = "lplgrad-cifar10-high"\nlr = 0.05\n\n[per_strategy.llal]\nlr = 0.02\n'
                    'loss_weight = 0.5\n\n[per_strategy.lplgrad]\nepochs = 100\n')
    command_line = {"dataset": "cifar10:/x", "loss_weight": 2.0}
    s = Settings.from_dict(overlay(load_toml(path), command_line))
    # the preset's lplgrad table (lossnet_decay false) is kept beside the file's; the command line's loss_weight
    # replaces the file's llal value; lplgrad's own --epochs brings its milestones and stop-gradient epoch along
    assert s.per_strategy == {"llal": {"lr": 0.02},
                              "lplgrad": {"lossnet_decay": False, "epochs": 100, "milestones": [80],
                                          "stop_gradient_epoch": 60}}
    assert (s.lr, s.epochs, s.get("loss_weight"), s.get("lossnet_decay")) == (0.05, 200, 2.0, True)
    assert Settings.from_dict({k: v for k, v in s.to_dict().items() if v is not None}) == s  # resume reads it back
    # a value given for every strategy beats the preset's table: --lossnet-decay makes lplgrad decay too
    decays = Settings.from_dict({"preset": "lplgrad-cifar10-high", "dataset": "cifar10:/x", "lossnet_decay": True})
    assert decays.per_strategy == {}
    # the preset's tables of strategies the run leaves out are dropped
    assert Settings.from_dict({"preset": "lplgrad-cifar10-high", "dataset": "cifar10:/x",
                               "strategies": "llal,random"}).per_strategy == {}


def test_per_strategy_tables_reach_each_run(tmp_path, capsys):
    from activeloss.cli import main

    path = tmp_path / "run.toml"
    path.write_text('dataset = "digits"\nstrategies = ["random", "llal", "lplgrad"]\nepochs = 6\n'
                    '[per_strategy.llal]\nepochs = 4\nlr = 0.2\n[per_strategy.lplgrad]\nlossnet_decay = false\n'
                    'lr = 0.3\n')
    assert main(["run", "--config", str(path), "--lr", "0.1", "--dry-run"]) == 0
    text = capsys.readouterr().out
    import tomllib

    doc = tomllib.loads(text)
    # the command line's --lr beats the file's tables; llal's own --epochs moves its milestones and stop-gradient
    assert (doc["lr"], doc["batch_size"]) == (0.1, 32)
    assert doc["per_strategy"]["llal"] == {"epochs": 4, "milestones": [3], "loss_weight": 1.0, "lossnet_decay": True,
                                           "lossnet_lr": 0.1, "margin": 1.0, "module_holdout": 0.0,
                                           "stop_gradient_epoch": 2}
    assert doc["per_strategy"]["lplgrad"]["lossnet_decay"] is False and doc["per_strategy"]["random"]["epochs"] == 6
    (tmp_path / "again.toml").write_text(text)  # the output is itself a config file for the same run
    assert main(["run", "--config", str(tmp_path / "again.toml"), "--dry-run"]) == 0
    assert capsys.readouterr().out == text


def test_per_strategy_errors_are_one_line(tmp_path):
    from activeloss.loop.plan import plan

    for table, needle in (('[per_strategy.llal]\nseed = 3\n', r"\[per_strategy.llal\]: --seed is one setting for "
                                                                r"every strategy of a run"),
                          ('[per_strategy.llal]\ndevice = "cpu"\n', "--device is one setting"),
                          ('[per_strategy.llal]\nepoks = 3\n', "unknown setting 'epoks'"),
                          ('per_strategy = 3\n', "per_strategy holds one table of settings per strategy")):
        (tmp_path / "bad.toml").write_text(table)
        with pytest.raises(ConfigError, match=needle) as info:
            load_toml(tmp_path / "bad.toml")
        assert "\n" not in str(info.value)
    stray = Settings.from_dict({"dataset": "digits", "strategies": "random,llal",
                                "per_strategy": {"lplgrad": {"lr": 0.1}}})
    with pytest.raises(ConfigError, match=r"a \[per_strategy.lplgrad\] table is given, but the run's strategies "
                                          r"are random, llal"):
        plan(stray)
