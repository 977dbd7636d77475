import pytest
import torch
from torch import nn

from activeloss.errors import ConfigError
from activeloss.models import Taps, build, default_model, tapped


def test_resnet18_matches_the_papers_network():
    model = build("resnet18", 10, (3, 32, 32))
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    with tapped(model, model.taps) as taps:
        logits = model(torch.zeros(2, 3, 32, 32))
        shapes = [tuple(t.shape[1:]) for t in taps.outputs]
    assert logits.shape == (2, 10)
    assert shapes == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_vgg16_taps_are_the_five_blocks():
    model = build("vgg16", 100, (3, 32, 32))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 13 and len(bns) == 13
    assert model.classifier.in_features == 512 and model.classifier.out_features == 100
    with tapped(model, model.taps) as taps:
        model.eval()(torch.zeros(1, 3, 32, 32))
        shapes = [tuple(t.shape[1:]) for t in taps.outputs]
    assert shapes == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]


@pytest.mark.parametrize("name,shape", [("cnn", (1, 8, 8)), ("cnn", (1, 28, 28)), ("mlp", (16,)), ("mlp", (1, 8, 8))])
def test_small_models_expose_taps_and_features(name, shape):
    model = build(name, 4, shape)
    x = torch.randn(3, *shape)
    with tapped(model, model.taps) as taps:
        logits = model(x)
        assert len(taps.outputs) == len(model.taps)
    assert logits.shape == (3, 4)
    assert torch.allclose(model.classifier(model.features(x)), logits)


def test_taps_work_on_any_module_and_hooks_are_removed():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    taps = Taps(model, ["0", "2"])
    out = model(torch.ones(1, 4))
    assert torch.equal(taps.outputs[1], out)
    taps.remove()
    assert not model[0]._forward_hooks
    with pytest.raises(ConfigError, match="no module named 'nope'"):
        Taps(model, ["nope"])


def test_build_errors_and_defaults():
    with pytest.raises(ConfigError, match="unknown model"):
        build("alexnet", 10, (3, 32, 32))
    with pytest.raises(ConfigError, match="at least 32x32"):
        build("vgg16", 10, (1, 28, 28))
    with pytest.raises(ConfigError, match="needs images"):
        build("resnet18", 10, (16,))
    assert default_model((16,)) == "mlp"
    assert default_model((1, 28, 28)) == "cnn"
    assert default_model((3, 32, 32)) == "resnet18"
