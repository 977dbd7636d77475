"""SSD detectors in plain PyTorch: SSD300 with a VGG-16 backbone, and a small one for CPU runs.

Both are one :class:`SSD`: stages run in order, each feeding the next (a *branch* stage, SSD300's
L2-normalised conv4_3, reads the previous stage without feeding the next); the source stages'
maps get a 3x3 localisation and a 3x3 confidence head each, with one default box per (cell,
shape).  The output is ONE tensor (B, D, 4 + C + 1): each default box's offsets then its class
logits (0 the background), so the trainer and the evaluator treat it like any output.  The
taps of the loss-prediction module are the source maps; ``features(x)`` is the conv7 map (the
small model: its equivalent, the second source) averaged over space, for core-set.

The default boxes of a model are a function of its name and input shape
(:func:`default_boxes_of`), which the detection task calls: its maps' sizes come from a run of
the model on the meta device (no memory, no compute).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..tasks.boxes import default_boxes


@dataclass(frozen=True)
class PriorSpec:
    """Default-box sizes per source map, as fractions of the image side, and the extra ratios."""

    min_sizes: tuple[float, ...]
    max_sizes: tuple[float, ...]
    ratios: tuple[tuple[float, ...], ...]

    @property
    def per_cell(self) -> list[int]:
        return [2 + 2 * len(r) for r in self.ratios]


SSD300_PRIORS = PriorSpec(tuple(s / 300 for s in (30, 60, 111, 162, 213, 264)),
                          tuple(s / 300 for s in (60, 111, 162, 213, 264, 315)),
                          ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)))
SMALL_PRIORS = PriorSpec((0.1, 0.25, 0.45, 0.7), (0.25, 0.45, 0.7, 0.95), ((2,), (2, 3), (2, 3), (2,)))


class L2Norm(nn.Module):
    """Each position's channel vector scaled to unit length, times a learned per-channel scale
    (20 at the start, as in SSD): conv4_3's activations are much larger than the later maps'."""

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1, eps=1e-10) * self.weight.view(1, -1, 1, 1)


class SSD(nn.Module):
    """Stages ``(name, module, feeds_next)`` run in order; ``sources`` (names) get heads."""

    def __init__(self, stages: list[tuple[str, nn.Module, bool]], sources: list[tuple[str, int]],
                 num_classes: int, priors: PriorSpec, features_at: str) -> None:
        super().__init__()
        if len(sources) != len(priors.per_cell):
            raise ValueError("one prior specification per source map")
        self.stages = [(name, feeds) for name, _, feeds in stages]
        for name, module, _ in stages:
            self.add_module(name, module)
        self.sources = [name for name, _ in sources]
        self.num_classes = num_classes  # with the background
        self.prior_spec = priors
        self.features_at = features_at
        self.loc = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1) for (_, c), a in zip(sources, priors.per_cell))
        self.conf = nn.ModuleList(nn.Conv2d(c, a * num_classes, 3, padding=1)
                                  for (_, c), a in zip(sources, priors.per_cell))
        self.taps = tuple(self.sources)

    def maps(self, x: torch.Tensor, until: str | None = None) -> dict[str, torch.Tensor]:
        """Every stage's output by name (up to ``until``)."""
        out: dict[str, torch.Tensor] = {}
        h = x
        for name, feeds in self.stages:
            y = getattr(self, name)(h)
            out[name] = y
            if name == until:
                break
            if feeds:
                h = y
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.maps(x)
        b = x.shape[0]
        loc = [head(maps[s]).permute(0, 2, 3, 1).reshape(b, -1, 4) for s, head in zip(self.sources, self.loc)]
        conf = [head(maps[s]).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes)
                for s, head in zip(self.sources, self.conf)]
        return torch.cat([torch.cat(loc, dim=1), torch.cat(conf, dim=1)], dim=-1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The conv7 (or equivalent) map averaged over space: core-set's embedding."""
        return self.maps(x, until=self.features_at)[self.features_at].mean(dim=(2, 3))

    def map_sizes(self, input_shape: tuple[int, ...]) -> list[tuple[int, int]]:
        """The source maps' (h, w) for inputs of ``input_shape`` (C, H, W), on the meta device."""
        with torch.no_grad():
            maps = self.maps(torch.empty(1, *input_shape, device="meta"))
        return [(int(maps[s].shape[2]), int(maps[s].shape[3])) for s in self.sources]


def _conv(c_in: int, c_out: int, stride: int = 1, bn: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    return [*layers, nn.ReLU(inplace=True)]


def ssd_small(outputs: int, in_channels: int = 3) -> SSD:
    """A small SSD for CPU runs and tests (about 0.3 M parameters): a BN conv backbone to 1/4
    (``conv4``) and 1/8 (``conv7``, its conv7) of the input, then two extra stride-2 stages
    (``conv8``, ``conv9``); four source maps, 16/8/4/2 cells for 64x64 inputs."""
    stages: list[tuple[str, nn.Module, bool]] = [
        ("conv4", nn.Sequential(*_conv(in_channels, 16, 2), *_conv(16, 32, 2), *_conv(32, 64)), True),
        ("conv7", nn.Sequential(*_conv(64, 96, 2), *_conv(96, 96)), True),
        ("conv8", nn.Sequential(nn.Conv2d(96, 48, 1), nn.ReLU(inplace=True), *_conv(48, 96, 2)), True),
        ("conv9", nn.Sequential(nn.Conv2d(96, 48, 1), nn.ReLU(inplace=True), *_conv(48, 96, 2)), True),
    ]
    sources = [("conv4", 64), ("conv7", 96), ("conv8", 96), ("conv9", 96)]
    return SSD(stages, sources, outputs, SMALL_PRIORS, "conv7")


#: VGG-16's convolutions up to conv4_3 (``M``: a 2x2 max-pool; ``C``: the same with ceil mode)
_VGG_TO_CONV4_3 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512)


def _vgg_layers(c_in: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for v in _VGG_TO_CONV4_3:
        if v in ("M", "C"):
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=v == "C"))
        else:
            assert isinstance(v, int)
            layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = v
    return layers


def _extra(c_in: int, mid: int, c_out: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, mid, 1), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, c_out, 3, stride=stride, padding=padding), nn.ReLU(inplace=True))


def ssd300(outputs: int, in_channels: int = 3, backbone_weights: str | None = None) -> SSD:
    """SSD300 (Liu et al., 2016) as the Learning Loss paper trains it: VGG-16 to conv5_3, pool5
    3x3/1, dilated conv6 (3x3, dilation 6) and conv7 (1x1) in place of fc6/fc7, the extras
    conv8_2 .. conv11_2; sources conv4_3 (L2-normalised), conv7, conv8_2, conv9_2, conv10_2,
    conv11_2 (38/19/10/5/3/1 cells for 300x300 inputs, 8,732 default boxes).
    ``backbone_weights``: a local VGG-16 ``state_dict`` (:func:`load_vgg16`)."""
    conv7 = nn.Sequential(nn.MaxPool2d(2, 2), nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True),
                          nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True),
                          nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True),
                          nn.MaxPool2d(3, 1, padding=1),
                          nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(inplace=True),
                          nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True))
    stages: list[tuple[str, nn.Module, bool]] = [
        ("vgg", nn.Sequential(*_vgg_layers(in_channels)), True),
        ("conv4_3", L2Norm(512), False),
        ("conv7", conv7, True),
        ("conv8_2", _extra(1024, 256, 512, 2, 1), True),
        ("conv9_2", _extra(512, 128, 256, 2, 1), True),
        ("conv10_2", _extra(256, 128, 256, 1, 0), True),
        ("conv11_2", _extra(256, 128, 256, 1, 0), True),
    ]
    sources = [("conv4_3", 512), ("conv7", 1024), ("conv8_2", 512), ("conv9_2", 256), ("conv10_2", 256),
               ("conv11_2", 256)]
    model = SSD(stages, sources, outputs, SSD300_PRIORS, "conv7")
    for m in model.modules():  # SSD's initialisation
        if isinstance(m, nn.Conv2d) and m.weight.device.type != "meta":
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if backbone_weights:
        load_vgg16(model, backbone_weights)
    return model


def _vgg_target(index: int) -> str | None:
    """Our name of the VGG-16 layer at ``index`` of torchvision's ``features`` (or of the SSD
    code's ``vgg`` list, whose 31 and 33 are the subsampled fc6/fc7 as conv6/conv7)."""
    if index <= 21:
        return f"vgg.{index}"
    return {24: "conv7.1", 26: "conv7.3", 28: "conv7.5", 31: "conv7.8", 33: "conv7.10"}.get(index)


def load_vgg16(model: SSD, path: str) -> int:
    """Copy a local VGG-16 ``state_dict`` (torchvision's ``features.N.*`` keys, or the SSD
    code's ``N.*``) into SSD300's backbone; other keys (the classifier) are skipped.  Returns
    the number of tensors copied.  Nothing is downloaded."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--backbone-weights: no file {file}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle of anything, a truncated file
        raise ConfigError(f"--backbone-weights: cannot read {file} as a state_dict ({e or type(e).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    own = model.state_dict()
    mapped = {}
    for key, value in state.items():
        parts = str(key).removeprefix("features.").removeprefix("vgg.").split(".")
        if len(parts) != 2 or not parts[0].isdigit():
            continue
        target = _vgg_target(int(parts[0]))
        if target is None or f"{target}.{parts[1]}" not in own:
            continue
        name = f"{target}.{parts[1]}"
        if own[name].shape != value.shape:
            raise ConfigError(f"--backbone-weights: {key} has shape {tuple(value.shape)}, SSD300's {name} "
                              f"{tuple(own[name].shape)}")
        mapped[name] = value
    if not mapped:
        raise ConfigError(f"--backbone-weights: {file} holds no VGG-16 convolution (features.N.weight)")
    model.load_state_dict(mapped, strict=False)
    return len(mapped)


SSD_MODELS = {"ssd300": ssd300, "ssd-small": ssd_small}


def default_boxes_of(name: str | None, input_shape: tuple[int, ...]) -> torch.Tensor | None:
    """The default boxes (D, 4) of SSD model ``name`` on inputs (C, H, W); None for other models."""
    build = SSD_MODELS.get(name or "")
    if build is None or len(input_shape) != 3:
        return None
    with torch.device("meta"):
        model = build(2, input_shape[0]).eval()  # BatchNorm in train mode refuses one item on a 1x1 map
    sizes = model.map_sizes(tuple(input_shape))
    spec = model.prior_spec
    return default_boxes(sizes, (input_shape[1], input_shape[2]), spec.min_sizes, spec.max_sizes, spec.ratios)


__all__ = ["SSD", "SSD300_PRIORS", "SMALL_PRIORS", "L2Norm", "PriorSpec", "default_boxes_of", "load_vgg16",
           "ssd300", "ssd_small"]
