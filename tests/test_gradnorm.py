"""Batched per-sample entropy-gradient norms (LPLgrad / Ent-GradNorm query) against the
public code's one-sample-at-a-time loop."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from activeloss.models import build
from activeloss.scoring import gradient_norm_scores
from activeloss.scoring.gradnorm import _conv_direct_sq, _conv_ghost_sq, _conv_unfold_sq

RTOL = 1e-4


def naive_scores(model: nn.Module, x: torch.Tensor, norm: str) -> torch.Tensor:
    """Reference: eval mode, one sample at a time, autograd.grad of the entropy w.r.t. the
    trainable parameters, sum of per-tensor L2 norms or the global L2 norm."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    out = []
    for i in range(x.shape[0]):
        p = model(x[i : i + 1]).softmax(dim=1)
        h = -(p * p.log()).sum()
        grads = [g for g in torch.autograd.grad(h, params, allow_unused=True) if g is not None]
        sq = torch.stack([g.double().pow(2).sum() for g in grads])
        out.append(sq.sqrt().sum() if norm == "tensor_sum" else sq.sum().sqrt())
    for m, training in modes:
        m.training = training
    return torch.stack(out).float()


def randomize_norm_layers(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so eval vs train mode matters and
    every closed form is exercised away from the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape and got.dtype == torch.float32
    rel = ((got - want).abs() / want.abs().clamp_min(1e-12)).max().item()
    assert rel < RTOL, rel


@pytest.mark.parametrize(
    "name, shape, n",
    [("resnet18", (3, 32, 32), 3), ("vgg16", (3, 32, 32), 3), ("cnn", (1, 28, 28), 5), ("mlp", (16,), 6)],
)
def test_fast_path_matches_the_per_sample_loop_on_the_backbones(name: str, shape: tuple, n: int) -> None:
    """vgg16 and cnn use ReLU(inplace=True) right after BN: the hooks must see the BN
    output gradient before the in-place op."""
    torch.manual_seed(0)
    model = randomize_norm_layers(build(name, 10, shape))
    x = torch.randn(n, *shape)
    for norm in ("tensor_sum", "global"):
        assert_close(gradient_norm_scores(model, x, norm, method="hooks"), naive_scores(model, x, norm))


def test_tensor_sum_and_global_differ_and_both_match() -> None:
    torch.manual_seed(1)
    model = randomize_norm_layers(build("cnn", 4, (1, 12, 12)))
    x = torch.randn(5, 1, 12, 12)
    ts = gradient_norm_scores(model, x, "tensor_sum")
    gl = gradient_norm_scores(model, x, "global")
    assert_close(ts, naive_scores(model, x, "tensor_sum"))
    assert_close(gl, naive_scores(model, x, "global"))
    assert (ts > gl * 1.5).all()  # many tensors: the sum of norms is well above the global norm


class ExtraLayers(nn.Module):
    """Every layer type the fast path handles in closed form, in unusual configurations:
    strided / dilated / 1x1 / biased / 'same' / 'valid' convs, Conv1d, GroupNorm,
    BatchNorm1d on (B, C) and (B, C, L), LayerNorm, and Linears over a sequence (one
    computed directly, one with the ghost norm)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, stride=2, padding=2, dilation=2, bias=True)
        self.gn = nn.GroupNorm(2, 6)
        self.c2 = nn.Conv2d(6, 16, 1, stride=2)
        self.c3 = nn.Conv2d(16, 32, 3, padding="same", bias=False)  # small map, many channels: ghost norm
        self.c4 = nn.Conv2d(32, 8, 2, padding="valid")
        self.bn2 = nn.BatchNorm2d(8)
        self.c1d = nn.Conv1d(8, 12, 3, padding=1, stride=2)
        self.bn1d_seq = nn.BatchNorm1d(12)
        self.ln = nn.LayerNorm([8, 12])  # over two trailing dims (T=8 for 20x20 inputs)
        self.seq = nn.Linear(12, 10)  # applied to (B, T=8, 12)
        self.seq2 = nn.Linear(10, 64)  # T^2 (Din + Dout) < T Din Dout: ghost norm
        self.bn1d = nn.BatchNorm1d(64)
        self.out = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.gn(self.c1(x)))
        x = torch.relu(self.c3(self.c2(x)))
        x = torch.relu_(self.bn2(self.c4(x)))  # (B, 8, h, w)
        x = x.flatten(2)  # a sequence of h*w positions
        x = torch.relu(self.bn1d_seq(self.c1d(x)))  # (B, 12, T)
        x = self.seq2(torch.relu(self.seq(self.ln(x.transpose(1, 2)))))  # (B, T, 64)
        return self.out(torch.tanh(self.bn1d(x.mean(1))))


def test_fast_path_covers_the_other_closed_forms() -> None:
    torch.manual_seed(2)
    model = randomize_norm_layers(ExtraLayers())
    x = torch.randn(4, 3, 20, 20)
    for norm in ("tensor_sum", "global"):
        assert_close(gradient_norm_scores(model, x, norm, method="hooks"), naive_scores(model, x, norm))


@pytest.mark.parametrize("stride, padding, dilation, kernel", [(1, 1, 1, 3), (2, 1, 1, 3), (2, 0, 1, 1), (1, 2, 2, 3), (3, 1, 1, 2)])
def test_conv_norm_strategies_agree_with_unfold(stride: int, padding: int, dilation: int, kernel: int) -> None:
    """The three conv strategies (picked per layer by flop count and channel count) against
    per-sample gradients formed explicitly with F.unfold."""
    torch.manual_seed(3)
    a = torch.randn(3, 5, 9, 8)
    weight = torch.randn(7, 5, kernel, kernel)
    g = torch.randn_like(F.conv2d(a, weight, stride=stride, padding=padding, dilation=dilation))
    u = F.unfold(a, kernel, dilation=dilation, padding=padding, stride=stride)
    want = torch.bmm(g.flatten(2), u.transpose(1, 2)).pow(2).sum((1, 2))
    args = ((kernel, kernel), (stride, stride), (dilation, dilation), (padding, padding))
    assert torch.allclose(_conv_direct_sq(a, g, *args), want, rtol=1e-4)
    assert torch.allclose(_conv_ghost_sq(a, g, *args), want, rtol=1e-4)
    assert torch.allclose(_conv_unfold_sq(a, g, *args), want, rtol=1e-4)
    assert torch.allclose(_conv_unfold_sq(a.to(memory_format=torch.channels_last), g, *args), want, rtol=1e-4)


class GroupedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))


class RawParameter(nn.Module):
    """Owns a parameter directly (a learned temperature): no closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.temperature = nn.Parameter(torch.tensor(1.7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.temperature


class SharedLayer(nn.Module):
    """One Linear applied twice: its per-sample gradient has two contributions."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.fc(torch.tanh(self.fc(x)))))


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.emb(x).mean(1))


@pytest.mark.parametrize(
    "factory, x",
    [
        (GroupedConv, torch.randn(5, 4, 6, 6)),
        (RawParameter, torch.randn(5, 6)),
        (SharedLayer, torch.randn(5, 6)),
        (Tokens, torch.randint(0, 20, (5, 7))),
    ],
)
def test_models_without_closed_form_fall_back_exactly(factory, x: torch.Tensor) -> None:
    torch.manual_seed(4)
    model = randomize_norm_layers(factory())
    for norm in ("tensor_sum", "global"):
        want = naive_scores(model, x, norm)
        assert_close(gradient_norm_scores(model, x, norm, batch_size=2), want)
        assert_close(gradient_norm_scores(model, x, norm, method="func"), want)
        assert_close(gradient_norm_scores(model, x, norm, method="loop"), want)
    with pytest.raises(ValueError, match="hooks"):
        gradient_norm_scores(model, x, method="hooks")


def test_frozen_parameters_are_excluded() -> None:
    torch.manual_seed(5)
    model = randomize_norm_layers(build("cnn", 10, (1, 12, 12)))
    model.block1[0].weight.requires_grad_(False)  # a whole conv
    model.block1[1].weight.requires_grad_(False)  # BN weight only: its bias still counts
    model.classifier.bias.requires_grad_(False)  # Linear bias only
    for p in model.block2.parameters():
        p.requires_grad_(False)
    x = torch.randn(4, 1, 12, 12)
    got = gradient_norm_scores(model, x, method="hooks")
    assert_close(got, naive_scores(model, x, "tensor_sum"))
    for p in model.parameters():
        p.requires_grad_(True)
    assert (gradient_norm_scores(model, x) > got * 1.01).all()  # the frozen tensors did count before
    for p in model.parameters():
        p.requires_grad_(False)
    assert torch.equal(gradient_norm_scores(model, x), torch.zeros(4))


def test_eval_mode_is_used_and_every_module_mode_restored() -> None:
    """BN must use running statistics (train-mode batch statistics give other scores and would
    update the running statistics); each module gets its own previous flag back."""
    torch.manual_seed(6)
    model = randomize_norm_layers(build("cnn", 10, (1, 12, 12)))
    x = torch.randn(4, 1, 12, 12)
    want = naive_scores(model, x, "tensor_sum")
    model.train()
    model.block2.eval()  # mixed modes
    before = {n: m.training for n, m in model.named_modules()}
    stats = model.block1[1].running_mean.clone()
    got = gradient_norm_scores(model, x)
    assert_close(got, want)
    assert {n: m.training for n, m in model.named_modules()} == before
    assert torch.equal(model.block1[1].running_mean, stats)
    # the same per-sample loop in train mode (BN over each image's positions) scores differently
    params = list(model.parameters())
    p = model(x[:1]).softmax(1)
    train_mode = sum(g.norm() for g in torch.autograd.grad(-(p * p.log()).sum(), params))
    assert abs(train_mode.item() - got[0].item()) > 1e-3 * got[0].item()


def test_modes_are_restored_when_the_model_fails() -> None:
    model = build("mlp", 3, (8,)).train()
    with pytest.raises(RuntimeError):
        gradient_norm_scores(model, torch.randn(2, 5))  # wrong width
    assert all(m.training for m in model.modules())


def test_parameters_and_their_grad_are_untouched() -> None:
    torch.manual_seed(7)
    model = randomize_norm_layers(build("cnn", 10, (1, 12, 12)))
    model.classifier.weight.grad = torch.randn_like(model.classifier.weight)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    for method in ("auto", "func", "loop"):
        gradient_norm_scores(model, torch.randn(3, 1, 12, 12), method=method)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
        assert (p.grad is None) if grads[n] is None else torch.equal(p.grad, grads[n])


def test_batch_size_does_not_change_the_scores() -> None:
    torch.manual_seed(8)
    model = randomize_norm_layers(build("cnn", 10, (1, 12, 12)))
    x = torch.randn(7, 1, 12, 12)
    full = gradient_norm_scores(model, x, batch_size=256)
    assert_close(gradient_norm_scores(model, x, batch_size=3), full)
    assert_close(gradient_norm_scores(model, x, batch_size=1), full)
    assert_close(gradient_norm_scores(model, x, batch_size=2, method="func"), full)


def test_padding_the_last_chunk_changes_no_score(monkeypatch) -> None:
    """On a GPU a short last chunk is padded to the others' shape; the padding rows are dropped."""
    from activeloss.scoring import gradnorm

    torch.manual_seed(9)
    model = randomize_norm_layers(build("cnn", 10, (1, 12, 12)))
    x = torch.randn(7, 1, 12, 12)
    plain = gradient_norm_scores(model, x, batch_size=3)
    monkeypatch.setattr(gradnorm, "_pads", lambda device: True)
    for method in ("auto", "func", "loop"):
        padded = gradient_norm_scores(model, x, batch_size=3, method=method)
        assert padded.shape == (7,)
        assert_close(padded, plain)


def test_works_under_no_grad_and_inference_mode() -> None:
    """Queries run under no_grad / inference_mode; the scores need gradients anyway."""
    torch.manual_seed(9)
    model = build("mlp", 3, (8,))
    x = torch.randn(4, 8)
    want = naive_scores(model, x, "tensor_sum")
    with torch.no_grad():
        assert_close(gradient_norm_scores(model, x), want)
    with torch.inference_mode():
        xi = x.clone()
        assert_close(gradient_norm_scores(model, xi), want)


def test_double_precision_model_is_scored_in_fp32_and_left_as_is() -> None:
    torch.manual_seed(10)
    model = build("mlp", 3, (8,)).double()
    x = torch.randn(4, 8, dtype=torch.float64)
    got = gradient_norm_scores(model, x)
    assert got.dtype == torch.float32
    assert_close(got, naive_scores(model, x, "tensor_sum"))
    assert all(p.dtype == torch.float64 for p in model.parameters())


def test_output_shape_and_argument_checks() -> None:
    model = build("mlp", 3, (8,))
    assert gradient_norm_scores(model, torch.randn(0, 8)).shape == (0,)
    with pytest.raises(ValueError, match="tensor_sum, global"):
        gradient_norm_scores(model, torch.randn(2, 8), norm="l1")
    with pytest.raises(ValueError, match="auto"):
        gradient_norm_scores(model, torch.randn(2, 8), method="fast")
    with pytest.raises(ValueError):
        gradient_norm_scores(model, torch.randn(2, 8), batch_size=0)


def test_user_forward_hooks_that_replace_outputs_are_respected() -> None:
    """A hook that rescales a layer's output is part of the model: the layer's own output
    gradient must include it (our hooks run before the user's)."""
    torch.manual_seed(11)
    model = randomize_norm_layers(build("cnn", 10, (1, 12, 12)))
    handles = [
        model.block1[1].register_forward_hook(lambda m, a, out: out * 3.0),
        model.classifier.register_forward_hook(lambda m, a, out: out - out.mean(1, keepdim=True) * 0.5),
    ]
    x = torch.randn(3, 1, 12, 12)
    assert_close(gradient_norm_scores(model, x, method="hooks"), naive_scores(model, x, "tensor_sum"))
    for h in handles:
        h.remove()


class TiedWeight(nn.Module):
    """Uses a layer's weight a second time outside that layer's forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.fc(x))
        return self.out(h) + 0.5 * F.linear(h, self.out.weight)


def test_a_weight_used_outside_its_module_is_detected_and_falls_back() -> None:
    torch.manual_seed(12)
    model, x = TiedWeight(), torch.randn(4, 6)
    assert_close(gradient_norm_scores(model, x), naive_scores(model, x, "tensor_sum"))
    with pytest.raises(ValueError, match="outside"):
        gradient_norm_scores(model, x, method="hooks")
