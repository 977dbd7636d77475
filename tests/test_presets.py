"""Presets (the protocols of the source papers), percentages of the training set, --dry-run and the SVHN reader."""
from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from activeloss.cli import main
from activeloss.config import (
    CORE_SPECS,
    Settings,
    load_toml,
    preset_values,
    presets,
    resolve,
    resolve_counts,
    settings_toml,
    spec_of,
    validate,
)
from activeloss.config.options import coerce
from activeloss.config.settings import percent_count
from activeloss.data.readers import reader_of
from activeloss.errors import ConfigError, DataError
from activeloss.loop.plan import plan, resolve_run
from activeloss.strategies import get_strategy

from conftest import make_tiny_dataset, write_tiny_npz

REQUIRED = {"strategies", "trials", "model", "initial", "budget", "cycles", "subset", "epochs", "batch_size", "lr",
            "milestones", "stop_gradient_epoch", "reinit", "lossnet_decay", "augment", "pad"}
ASKED_FOR = {"llal-cifar10", "llal-mse-cifar10", "lplgrad-cifar10-high", "lplgrad-cifar10-low", "lplgrad-cifar100-high",
             "lplgrad-svhn-high", "ent-gradnorm-cifar10", "dnal-cifar10", "dnal-cifar100"}


def _resolve(settings: Settings) -> Settings:
    """``resolve`` with the dataset's layer (its defaults and augmentation), as a run gets it."""
    reader = reader_of(settings.dataset)
    return resolve(settings, [reader.defaults], augment_default=reader.augment)


def _resolve_run(settings: Settings, strategy: str):
    """The strategy-level resolution of ``settings`` (whose dataset need not exist: a tiny stand-in
    of 120 items is resolved against, with the reader of the named kind)."""
    return resolve_run(settings, get_strategy(strategy), make_tiny_dataset(), reader_of(settings.dataset))


@pytest.fixture
def npz_200(tmp_path) -> Path:
    """200 train / 60 test grey 8x8 images, 3 classes: a dataset of known size for percentages."""
    return write_tiny_npz(tmp_path / "tiny.npz", n_train=200, n_test=60)


# ---------------------------------------------------------------- the shipped presets


def test_every_preset_is_complete_and_names_real_strategies():
    assert ASKED_FOR <= set(presets.names())
    for name in presets.names():
        raw = presets.read(name)
        assert raw["description"] and raw["reference"] and raw["for_dataset"], name
        values = preset_values(name)
        assert REQUIRED <= set(values), (name, REQUIRED - set(values))
        for strategy in values["strategies"]:
            get_strategy(strategy)
        assert all(m <= values["epochs"] for m in values["milestones"]), name
        assert values["stop_gradient_epoch"] <= values["epochs"], name


@pytest.mark.parametrize("name,initial,budget,cycles,subset,final", [
    # Learning Loss's CIFAR-10 protocol and LPLgrad's (initial = b) and Ent-GradNorm's
    ("llal-cifar10", 1000, 1000, 10, 10000, 10000),
    ("llal-mse-cifar10", 1000, 1000, 10, 10000, 10000),
    ("lplgrad-cifar10-high", 1000, 1000, 10, 25000, 10000),
    ("lplgrad-cifar10-low", 500, 500, 10, 5000, 5000),
    ("lplgrad-cifar100-high", 2500, 2500, 8, 25000, 20000),
    ("lplgrad-cifar100-low", 1000, 1000, 8, 15000, 8000),
    ("lplgrad-svhn-high", 1000, 1000, 10, 25000, 10000),
    ("lplgrad-svhn-low", 500, 500, 10, 10000, 5000),
    ("lplgrad-caltech101-high", 500, 500, 7, 2000, 3500),
    ("lplgrad-caltech101-low", 200, 200, 7, 1000, 1400),
    ("ent-gradnorm-cifar10", 5000, 2500, 7, 25000, 20000),
])
def test_count_presets_follow_methods(name, initial, budget, cycles, subset, final):
    v = preset_values(name)
    assert (v["initial"], v["budget"], v["cycles"], v["subset"]) == (initial, budget, cycles, subset)
    assert v["initial"] + (v["cycles"] - 1) * v["budget"] == final


def test_training_numbers_of_the_protocols():
    llal = preset_values("llal-cifar10")
    assert (llal["model"], llal["epochs"], llal["batch_size"], llal["lr"], llal["milestones"],
            llal["stop_gradient_epoch"], llal["reinit"], llal["trials"]) == \
        ("resnet18", 200, 128, 0.1, [160], 120, False, 5)
    assert preset_values("ent-gradnorm-cifar10")["trials"] == 3
    for name in presets.names():
        if name.startswith("lplgrad"):  # METHODS.md 4: only lplgrad keeps its module's learning rate
            values = preset_values(name)
            assert values["lossnet_decay"] is True and values["per_strategy"] == {"lplgrad": {"lossnet_decay": False}}
    for name in ("lplgrad-svhn-high", "lplgrad-svhn-low"):  # METHODS.md 4: SVHN lr 0.01, 200 epochs, decay at 40
        svhn = preset_values(name)
        assert (svhn["lr"], svhn["epochs"], svhn["milestones"], svhn["stop_gradient_epoch"], svhn["augment"]) == \
            (0.01, 200, [40], 120, "crop")
    for name in ("dnal-cifar10", "dnal-cifar100"):
        d = preset_values(name)
        assert (d["model"], d["initial"], d["budget"], d["cycles"], d["subset"], d["epochs"], d["batch_size"]) == \
            ("vgg16", "10%", "5%", 7, 0, 150, 64)
        assert (d["lr"], d["lossnet_lr"], d["milestones"], d["stop_gradient_epoch"], d["reinit"], d["trials"]) == \
            (0.01, 0.001, [120], 120, True, 5)


# The papers' numbers, written out (METHODS.md is the reference; each block names its section).  Every strategy
# of each preset is resolved as a run gets it, so what a table of the preset changes for one strategy shows.

#: METHODS.md 4, LPLgrad protocol: CIFAR lr 0.1, 200 epochs, x0.1 at 160, batch 128; SVHN lr 0.01, 200 epochs,
#: decay at 40 (text and Table I), crop only (a mirrored digit is no digit); 5 trials; ResNet-18 and warm start
#: (Learning Loss's code, METHODS.md 3); stop-gradient at 120 (Learning Loss, METHODS.md 3: the LPLgrad paper gives
#: none for SVHN)
LPLGRAD_TRAINING = {
    "cifar": dict(model="resnet18", epochs=200, batch_size=128, lr=0.1, milestones=[160], reinit=False, trials=5,
                  augment="flip,crop"),
    "svhn": dict(model="resnet18", epochs=200, batch_size=128, lr=0.01, milestones=[40], reinit=False, trials=5,
                 augment="crop"),
    # Caltech-101: lr 0.01, 50 epochs, decay at 40, batch 80; no image size and no stop-gradient epoch in the paper
    # (the presets' choices: 224 px, and Learning Loss's 60 % of the epochs)
    "caltech": dict(model="resnet18", epochs=50, batch_size=80, lr=0.01, milestones=[40], reinit=False, trials=5,
                    augment="flip,crop", image_size=224),
}
STOP_GRADIENT = {"cifar": 120, "svhn": 120, "caltech": 30}
DATASET_OF = {"cifar": "cifar10:/x", "svhn": "svhn:/x", "caltech": "folder:/x"}
#: METHODS.md 5, DNAL: VGG16, lr 0.01 (module 0.001), batch 64, 150 epochs, x0.1 at 120, stop-gradient at 120,
#: retrained each cycle, whole pool, 5 trials
DNAL_TRAINING = dict(model="vgg16", epochs=150, batch_size=64, lr=0.01, milestones=[120], reinit=True, subset=0,
                     trials=5, augment="flip,crop")
#: VAAL's training per cycle in its code: 50,000 images x 100 epochs // batch 128 (README, VAAL: "about 39k")
VAAL_ITERATIONS = 39062


def _runs_of(preset: str, dataset: str) -> dict:
    s = Settings.from_dict({"preset": preset, "dataset": dataset})
    return {name: _resolve_run(s, name) for name in s.strategies}


@pytest.mark.parametrize("name,data", [
    ("lplgrad-cifar10-high", "cifar"), ("lplgrad-cifar10-low", "cifar"), ("lplgrad-cifar100-high", "cifar"),
    ("lplgrad-cifar100-low", "cifar"), ("lplgrad-svhn-high", "svhn"), ("lplgrad-svhn-low", "svhn"),
    ("lplgrad-caltech101-high", "caltech"), ("lplgrad-caltech101-low", "caltech"),
])
def test_lplgrad_presets_resolve_to_the_papers_values_per_strategy(name, data):
    runs = _runs_of(name, DATASET_OF[data])
    assert list(runs) == ["lplgrad", "llal", "ent-gradnorm", "entropy", "coreset", "random"]
    for strategy, run in runs.items():
        s = run.settings
        got = {k: getattr(s, k) for k in LPLGRAD_TRAINING[data]}
        assert got == LPLGRAD_TRAINING[data], (name, strategy)
    # METHODS.md 4: baselines keep their own papers' settings: llal decays its module's learning rate with the
    # backbone's (Learning Loss, at the milestones); lplgrad's code never decays it
    lplgrad, llal = runs["lplgrad"].options, runs["llal"].options
    assert (lplgrad["lossnet_decay"], lplgrad["stop_gradient_epoch"], lplgrad["lossnet_lr"]) == \
        (False, STOP_GRADIENT[data], LPLGRAD_TRAINING[data]["lr"])
    assert (llal["lossnet_decay"], llal["stop_gradient_epoch"], llal["lossnet_lr"]) == \
        (True, STOP_GRADIENT[data], LPLGRAD_TRAINING[data]["lr"])
    assert "lossnet_decay" not in runs["ent-gradnorm"].options


@pytest.mark.parametrize("name", ["dnal-cifar10", "dnal-cifar100"])
def test_dnal_presets_resolve_to_the_papers_values_and_compare_vaal(name):
    runs = _runs_of(name, name.split("-")[1] + ":/x")
    assert list(runs) == ["dnal", "llal", "coreset", "bald", "vaal", "entropy", "random"]
    for strategy, run in runs.items():
        got = {k: getattr(run.settings, k) for k in DNAL_TRAINING}
        assert got == DNAL_TRAINING, (name, strategy)
        assert (run.settings.initial, run.settings.budget, run.settings.cycles) == (12, 6, 7)  # 10%, 5% of 120
    for strategy in ("dnal", "llal"):
        assert (runs[strategy].options["lossnet_lr"], runs[strategy].options["stop_gradient_epoch"]) == (0.001, 120)
    assert runs["vaal"].options["vae_iterations"] == VAAL_ITERATIONS
    # VAAL's training length follows an overridden --epochs like the milestones (a quick check stays quick)
    short = Settings.from_dict({"preset": name, "dataset": "cifar10:/x", "epochs": 15})
    assert (short.milestones, short.get("stop_gradient_epoch"), short.get("vae_iterations")) == ([12], 12, 3906)


def _colour_dataset(size: int = 32):
    """A CIFAR-shaped stand-in (3 x 32 x 32 colour images, 10 classes): its default model is resnet18."""
    import torch

    from activeloss.data import Dataset

    x = torch.randint(0, 256, (50, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    y = torch.arange(50) % 10
    return Dataset("colour", x[:40], y[:40], x[40:], y[40:], [str(c) for c in range(10)]).validate()


def test_dnal_without_a_preset_gets_its_own_protocol_for_its_model():
    """METHODS.md 5: 150 epochs, batch 64, lr x0.1 and stop-gradient at 80 % of the epochs (120), whole pool,
    retrained each cycle; VGG16 lr 0.01 / module 0.001, ResNet-18 lr 0.1 / module 0.01."""
    data, reader = _colour_dataset(), reader_of("cifar10:/x")
    expected = {"vgg16": (0.01, 0.001), "resnet18": (0.1, 0.01)}
    for model, (lr, module_lr) in expected.items():
        for given in (Settings(dataset="cifar10:/x", model=model), Settings(dataset="cifar10:/x")):
            if given.model is None and model != "resnet18":
                continue  # the default model of 32x32 colour images is resnet18
            run = resolve_run(given, get_strategy("dnal"), data, reader)
            s = run.settings
            assert (s.model, s.epochs, s.batch_size, s.lr, s.milestones, s.reinit, s.subset) == \
                (model, 150, 64, lr, [120], True, 0)
            assert (run.options["lossnet_lr"], run.options["stop_gradient_epoch"]) == (module_lr, 120)
    # the other strategies of the same run keep Learning Loss's protocol
    llal = resolve_run(Settings(dataset="cifar10:/x"), get_strategy("llal"), data, reader).settings
    assert (llal.epochs, llal.batch_size, llal.lr, llal.milestones, llal.reinit) == (200, 128, 0.1, [160], False)
    # what the user gives still wins, and a preset is a complete protocol (its lr for every model)
    mine = resolve_run(Settings(dataset="cifar10:/x", model="resnet18", epochs=20, lr=0.05), get_strategy("dnal"),
                       data, reader)
    assert (mine.settings.epochs, mine.settings.milestones, mine.settings.lr, mine.options["stop_gradient_epoch"],
            mine.options["lossnet_lr"]) == (20, [16], 0.05, 16, 0.005)
    preset = resolve_run(Settings.from_dict({"preset": "dnal-cifar10", "dataset": "cifar10:/x", "model": "resnet18"}),
                         get_strategy("dnal"), data, reader)
    assert (preset.settings.lr, preset.options["lossnet_lr"]) == (0.01, 0.001)


def test_the_digits_demo_keeps_its_small_protocol_for_every_strategy():
    """The embedded digits' protocol (40 initial, +40, 8 cycles, whole pool, 40 epochs, batch 32, lr 0.05) for
    every strategy of the default comparison, as before per-strategy protocols; DNAL's own settings (batch 64,
    lr 0.01, retrained, 80 % of the epochs) but not its 150 epochs."""
    from activeloss.data import load_dataset
    from activeloss.strategies import main_comparison

    data, reader = load_dataset("digits"), reader_of("digits")
    for name in main_comparison("classification"):
        run = resolve_run(Settings(), get_strategy(name), data, reader)
        s = run.settings
        dnal = name == "dnal"
        assert (s.model, s.cycles, s.initial, s.budget, s.subset, s.epochs, s.milestones, s.augment) == \
            ("cnn", 8, 40, 40, 0, 40, [32], "none"), name
        assert (s.batch_size, s.lr, s.reinit) == ((64, 0.01, True) if dnal else (32, 0.05, False)), name
        if "stop_gradient_epoch" in run.options:
            assert (run.options["stop_gradient_epoch"], run.options["lossnet_lr"]) == \
                ((32, 0.001) if dnal else (24, 0.05)), name


def test_vaal_iterations_per_cycle_is_an_option():
    """--vae-iterations replaces the --vae-epochs rule (ceil(epochs x labeled / batch)); unset, that rule holds."""
    import torch

    from activeloss.data import Inputs
    from activeloss.objectives import ModelInfo, make_objective
    from activeloss.objectives.vae import VAEOptions
    from activeloss.tasks import ClassificationTask

    x = torch.randn(40, 6)
    inputs = Inputs(x, torch.arange(40) % 2, x[:1], torch.zeros(1, dtype=torch.long), torch.zeros(1, 6),
                    torch.ones(1, 6), (), 0, torch.device("cpu"))

    def discriminator_steps(options: VAEOptions) -> int:
        model = torch.nn.Linear(6, 2)
        objective = make_objective("vaal", options)
        objective.setup(model, ModelInfo(ClassificationTask(), (), (6,), 2))
        calls = []
        objective.discriminator.register_forward_hook(lambda *_: calls.append(1))
        objective.after_training(model, inputs, torch.arange(10), torch.arange(10, 40), torch.Generator(),
                                 inputs.y_train[:10])
        return len(calls) // 3  # per iteration: 2 VAE steps and 1 discriminator step call the discriminator

    assert VAEOptions().vae_iterations is None
    assert discriminator_steps(VAEOptions(vae_width=2, vae_epochs=3, vae_batch_size=8)) == 4  # ceil(3 x 10 / 8)
    assert discriminator_steps(VAEOptions(vae_width=2, vae_epochs=3, vae_batch_size=8, vae_iterations=7)) == 7
    with pytest.raises(ConfigError, match="--vae-iterations must be at least 1"):
        get_strategy("vaal").options(_resolve(Settings.from_dict({"vae_iterations": 0})))


def test_reports_call_dnal_a_reconstruction():
    from activeloss.report import strategy_notes

    assert strategy_notes(["random", "llal"]) == []
    (note,) = strategy_notes(["random", "dnal"])
    assert note.startswith("Note: dnal is a reconstruction of DNAL (Fang, Xu and Tang, 2021)")


def test_presets_are_package_data():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "config/presets/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["activeloss"]
    assert any(d.startswith("scipy") for d in pyproject["project"]["dependencies"])


# ---------------------------------------------------------------- layering


def test_explicit_beats_preset_beats_strategy_defaults():
    s = Settings.from_dict({"preset": "llal-cifar10", "dataset": "cifar10:/x", "budget": 500, "model": "vgg16"})
    assert (s.budget, s.model) == (500, "vgg16")  # what the user gives wins
    assert (s.initial, s.cycles, s.subset, s.trials, s.strategies) == \
        (1000, 10, 10000, 5, ["llal", "entropy", "coreset", "random"])
    # the preset is a complete protocol: it beats DNAL's own defaults (reinit, whole pool, lr 0.01, batch 64,
    # and its objective's stop-gradient epoch at 80% of the epochs)
    run = _resolve_run(Settings.from_dict({"preset": "llal-cifar10", "dataset": "cifar10:/x", "strategies": "dnal",
                                           "initial": 10, "budget": 10, "subset": 100}), "dnal")
    dnal = run.settings
    assert (dnal.reinit, dnal.subset, dnal.lr, dnal.batch_size) == (False, 100, 0.1, 128)
    assert run.options["stop_gradient_epoch"] == 120 and run.objective_options.stop_gradient_epoch == 120
    assert run.options["lossnet_lr"] == pytest.approx(0.01)  # DNAL's 10% of the preset's --lr
    # without a preset the strategy's defaults still apply, and its own protocol (150 epochs) replaces Learning
    # Loss's 200 (the stand-in's 8x8 grey images get the cnn, so VGG16's lr 0.01 / 0.001)
    plain = _resolve_run(Settings(dataset="cifar10:/x", initial=10, budget=10, cycles=2), "dnal")
    assert (plain.settings.reinit, plain.settings.subset, plain.settings.lr, plain.settings.epochs) == \
        (True, 0, 0.01, 150)
    assert (plain.options["stop_gradient_epoch"], plain.options["lossnet_lr"]) == (120, pytest.approx(0.001))


def test_overriding_a_base_scales_the_settings_measured_against_it():
    short = Settings.from_dict({"preset": "llal-cifar10", "dataset": "cifar10:/x", "epochs": 10})
    assert (short.milestones, short.get("stop_gradient_epoch")) == ([8], 6)  # 160 and 120 of 200 -> of 10
    pinned = Settings.from_dict({"preset": "llal-cifar10", "dataset": "cifar10:/x", "epochs": 10, "milestones": "5"})
    assert (pinned.milestones, pinned.get("stop_gradient_epoch")) == ([5], 6)
    resnet = Settings.from_dict({"preset": "dnal-cifar100", "dataset": "cifar100:/x", "model": "resnet18", "lr": 0.1})
    assert resnet.get("lossnet_lr") == 0.01  # the paper's ResNet-18 variant: 0.1 / 0.01
    same = Settings.from_dict({"preset": "dnal-cifar100", "dataset": "cifar100:/x", "epochs": 150})
    assert (same.milestones, same.get("stop_gradient_epoch"), same.get("lossnet_lr")) == ([120], 120, 0.001)
    # the scaled values reach the objective's options of the run
    run = _resolve_run(Settings.from_dict({"preset": "llal-cifar10", "dataset": "cifar10:/x", "epochs": 10,
                                           "initial": 10, "budget": 10, "subset": 100}), "llal")
    assert (run.settings.milestones, run.options["stop_gradient_epoch"]) == ([8], 6)


def test_preset_errors_are_one_clear_line():
    with pytest.raises(ConfigError, match="unknown preset 'llal-imagenet'; choose one of .*llal-cifar10"):
        Settings.from_dict({"preset": "llal-imagenet", "dataset": "digits"})
    with pytest.raises(ConfigError, match="--preset dnal-cifar100 needs --dataset; it was written for CIFAR-100"):
        Settings.from_dict({"preset": "dnal-cifar100"})


def test_resume_settings_with_a_preset_are_stable():
    """The stored settings hold the preset's name and every value: reading them back changes nothing."""
    s = Settings.from_dict({"preset": "dnal-cifar10", "dataset": "cifar10:/x", "epochs": 30, "budget": "10%"})
    stored = {k: v for k, v in s.to_dict().items() if v is not None}
    assert Settings.from_dict(stored) == s


# ---------------------------------------------------------------- percentages


def test_percentages_parse_on_the_fraction_fields_only():
    assert {s.name for s in CORE_SPECS if s.percent_of == "pool"} == {"initial", "budget", "subset"}
    assert coerce(spec_of("initial"), "10%") == "10%" and coerce(spec_of("budget"), " 2.50 % ") == "2.5%"
    assert coerce(spec_of("subset"), 300) == 300
    for bad in ("0%", "150%", "x%", "-5%"):
        with pytest.raises(ConfigError, match="--initial expects a number or a percentage of the training pool") as e:
            coerce(spec_of("initial"), bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="--budget expects int or a percentage"):
        coerce(spec_of("budget"), 0.1)  # a bare fraction is ambiguous: write 10%
    with pytest.raises(ConfigError, match="--epochs expects int"):
        coerce(spec_of("epochs"), "10%")


def test_percentages_resolve_to_counts_rounded_down():
    assert percent_count("10%", 50_000) == 5000 and percent_count("5%", 50_000) == 2500
    assert percent_count("10%", 45_000) == 4500 and percent_count("10%", 1437) == 143  # floor of 143.7
    assert percent_count("0.1%", 73_257) == 73
    given = Settings(dataset="cifar10:/x", initial="10%", budget="5%", subset="20%", cycles=7)
    s = resolve_counts(_resolve(given), 50_000)
    assert (s.initial, s.budget, s.subset) == (5000, 2500, 10000)
    validate(s, 50_000)  # 5,000 + 6 x 2,500 = 20,000 of 50,000
    with pytest.raises(ConfigError, match="less than one item"):
        resolve_counts(_resolve(Settings(initial="1%")), 50)
    with pytest.raises(ConfigError, match="not resolved to a count"):
        validate(_resolve(Settings(initial="10%")), 50_000)


def test_percentages_in_a_config_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('preset = "dnal-cifar10"\ninitial = "20%"\nbudget = 100\n')
    assert load_toml(path) == {"preset": "dnal-cifar10", "initial": "20%", "budget": 100}
    (tmp_path / "dry.toml").write_text('epochs = 3\n[per_strategy.llal]\nloss_weight = "0.5"\nlr = "10%"\n')
    with pytest.raises(ConfigError, match=r"--lr expects float, got '10%'"):
        load_toml(tmp_path / "dry.toml")
    (tmp_path / "dry.toml").write_text('epochs = 3\n[per_strategy.llal]\nloss-weight = "0.5"\n')
    assert load_toml(tmp_path / "dry.toml") == {"epochs": 3, "per_strategy": {"llal": {"loss_weight": 0.5}}}


def test_plan_resolves_fractions_against_the_dataset(npz_200):
    # a DNAL preset on 200 training items: 10% = 20, 5% = 10, seven stages to 40% = 80
    settings = Settings.from_dict({"preset": "dnal-cifar10", "dataset": f"npz:{npz_200}", "model": "cnn"})
    the_plan = plan(settings)
    assert [run.name for run in the_plan.runs] == ["dnal", "llal", "coreset", "bald", "vaal", "entropy", "random"]
    for run in the_plan.runs:
        s = run.settings
        assert (s.initial, s.budget, s.cycles, s.subset) == (20, 10, 7, 0), run.name
        assert s.initial + (s.cycles - 1) * s.budget == 80
    # budget size is an option: 10% per stage from the same 10% start; the preset's 7 stages would then end at
    # 70% of the data, so the README's example stops at DNAL's 40% with --cycles 4 (METHODS.md 6)
    big = plan(Settings.from_dict({"preset": "dnal-cifar10", "dataset": f"npz:{npz_200}", "model": "cnn",
                                   "budget": "10%"}))
    assert {(run.settings.initial, run.settings.budget, run.settings.cycles) for run in big.runs} == {(20, 20, 7)}
    assert big.runs[0].settings.initial + 6 * big.runs[0].settings.budget == 140  # 70% of 200
    to_40 = plan(Settings.from_dict({"preset": "dnal-cifar10", "dataset": f"npz:{npz_200}", "model": "cnn",
                                     "budget": "10%", "cycles": 4}))
    assert {r.settings.initial + (r.settings.cycles - 1) * r.settings.budget for r in to_40.runs} == {80}  # 40%


# ---------------------------------------------------------------- CLI


def _flatten(doc: dict, strategy: str) -> dict:
    merged = {k: v for k, v in doc.items() if k != "per_strategy"}
    merged.update(doc.get("per_strategy", {}).get(strategy, {}))
    return merged


def test_dry_run_prints_the_resolved_settings_as_toml_and_writes_nothing(npz_200, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", "--preset", "llal-mse-cifar10", "--dataset", f"npz:{npz_200}", "--model", "cnn", "--initial", "10%",
            "--budget", "15", "--subset", "50", "--epochs", "20", "--out", str(out), "--dry-run"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    doc = tomllib.loads(text)
    assert doc["strategies"] == ["llal-mse", "llal"] and doc["preset"] == "llal-mse-cifar10"
    assert (doc["initial"], doc["budget"], doc["cycles"], doc["subset"]) == (20, 15, 10, 50)
    assert (doc["epochs"], doc["milestones"], doc["stop_gradient_epoch"], doc["batch_size"], doc["lr"]) == \
        (20, [16], 12, 128, 0.1)
    assert doc["per_strategy"] == {"llal-mse": {"loss_weight": 0.1}, "llal": {"loss_weight": 1.0}}
    expected = plan(Settings.from_dict({"preset": "llal-mse-cifar10", "dataset": f"npz:{npz_200}", "model": "cnn",
                                        "initial": "10%", "budget": 15, "subset": 50, "epochs": 20, "out": str(out)}))
    for run in expected.runs:
        want = {k: v for k, v in run.record().items() if v is not None}
        want["strategies"] = ["llal-mse", "llal"]
        assert _flatten(doc, run.name) == want


def test_dry_run_output_is_a_config_file_that_gives_the_same_settings(npz_200, tmp_path, capsys):
    assert main(["run", "--preset", "dnal-cifar10", "--dataset", f"npz:{npz_200}", "--model", "cnn", "--dry-run"]) == 0
    first = capsys.readouterr().out
    doc = tomllib.loads(first)
    # per strategy, only the options of its objective and acquisition (none for the plain ones)
    assert set(doc["per_strategy"]) == {"dnal", "llal", "bald", "vaal"}
    assert set(doc["per_strategy"]["bald"]) == {"mc_passes", "dropout"}
    dnal, llal = doc["per_strategy"]["dnal"], doc["per_strategy"]["llal"]
    assert dnal["stop_gradient_epoch"] == 120 and dnal["lossnet_lr"] == 0.001 and dnal["target_update"] == "epoch"
    assert llal["lossnet_lr"] == 0.001 and "target_update" not in llal
    assert doc["per_strategy"]["vaal"]["vae_iterations"] == 39062
    assert not {"loss_weight", "mc_passes", "stop_gradient_epoch", "vae_iterations"} & set(doc)
    # the whole output is a config file that gives the same run, and so is its top part alone (the run's own
    # settings: the tables hold what the preset and the strategies give anyway)
    (tmp_path / "dry.toml").write_text(first)
    assert main(["run", "--config", str(tmp_path / "dry.toml"), "--dry-run"]) == 0
    assert capsys.readouterr().out == first
    top = first.split("\n[per_strategy.")[0]
    assert not [ln for ln in top.splitlines() if ln.startswith("[")] and "dnal" in tomllib.loads(top)["strategies"]
    (tmp_path / "top.toml").write_text(top)
    assert main(["run", "--config", str(tmp_path / "top.toml"), "--dry-run"]) == 0
    assert tomllib.loads(capsys.readouterr().out) == doc


def test_settings_toml_quotes_what_must_be_quoted():
    s = _resolve(Settings(dataset='npz:/data/a "b"\\c.npz', taps=["layer1"]))
    text = settings_toml([("lossnet+badge", s.to_dict()), ("random", s.merged({"lr": 0.5}).to_dict())])
    doc = tomllib.loads(text)
    assert doc["dataset"] == 'npz:/data/a "b"\\c.npz' and doc["taps"] == ["layer1"]
    assert doc["per_strategy"]["lossnet+badge"]["lr"] == 0.1 and doc["per_strategy"]["random"]["lr"] == 0.5
    assert s.initial_classes is None and "initial_classes" not in doc  # None (unset) is left out


def test_preset_bad_input_is_one_line_and_writes_nothing(npz_200, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", "--preset", "lplgrad-cifar10-low", "--dataset", f"npz:{npz_200}", "--out", str(out), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--initial 500 is larger than the training pool (200 items)" in err
    assert not out.exists()
    assert main(["run", "--preset", "nope", "--dataset", "digits", "--dry-run"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["run", "--resume", "--out", str(out), "--dry-run"]) == 2
    assert "--dry-run" in capsys.readouterr().err


def test_presets_command_lists_one_line_each_and_prints_one(capsys):
    assert main(["presets"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    listed = [ln.split()[0] for ln in lines[:-1]]
    assert listed == presets.names()
    assert all(presets.describe(n) in ln for n, ln in zip(listed, lines))
    assert main(["presets", "dnal-cifar10"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["initial"] == "10%"


def test_a_preset_runs_end_to_end_with_overrides(npz_200, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", "--preset", "dnal-cifar10", "--dataset", f"npz:{npz_200}", "--strategies", "dnal,random",
            "--model", "cnn", "--trials", "1", "--cycles", "2", "--epochs", "1", "--out", str(out), "--quiet"]
    assert main(args) == 0
    import csv

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["strategy"], r["labeled"]) for r in rows] == \
        [("dnal", "20"), ("dnal", "30"), ("random", "20"), ("random", "30")]


# ---------------------------------------------------------------- SVHN reader


def _write_svhn(root: Path, n_train: int = 12, n_test: int = 5, labels=None) -> None:
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        y = np.array(labels if labels is not None and name.startswith("train") else np.arange(n) % 10 + 1)
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        savemat(root / name, {"X": x, "y": y.reshape(-1, 1).astype(np.uint8)})


def test_svhn_reads_mat_files_and_maps_10_to_digit_0(tmp_path):
    from scipy.io import loadmat

    from activeloss.data import load_dataset

    _write_svhn(tmp_path / "svhn", labels=[10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1])
    ds = load_dataset(f"svhn:{tmp_path / 'svhn'}")
    raw = loadmat(tmp_path / "svhn" / "train_32x32.mat")["X"]
    assert ds.x_train.shape == (12, 3, 32, 32) and ds.x_test.shape == (5, 3, 32, 32)
    assert ds.y_train.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1] and ds.class_names[0] == "0"
    assert np.array_equal(ds.x_train[1].numpy(), raw[:, :, :, 1].transpose(2, 0, 1))  # channel first, row-major
    assert _resolve(Settings(dataset=f"svhn:{tmp_path}")).augment == "crop"  # digits: no flip


@pytest.mark.parametrize("damage,needle", [
    (lambda r: (r / "test_32x32.mat").unlink(), "expected the file test_32x32.mat"),
    (lambda r: (r / "train_32x32.mat").write_bytes(b"not a mat file"), "cannot read"),
    (lambda r: _write_svhn(r, labels=[11] + [1] * 11), "label 11"),
])
def test_svhn_errors_are_one_line(tmp_path, damage, needle):
    from activeloss.data import load_dataset

    _write_svhn(tmp_path / "svhn")
    damage(tmp_path / "svhn")
    with pytest.raises(DataError, match=needle) as info:
        load_dataset(f"svhn:{tmp_path / 'svhn'}")
    assert "\n" not in str(info.value)
