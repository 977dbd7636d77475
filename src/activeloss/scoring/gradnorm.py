"""Per-sample norm of the gradient of the predictive entropy (LPLgrad / Ent-GradNorm query).

For each input x the score is the norm of d H(x) / d theta, where H is the entropy of
softmax(model(x)) and theta all trainable parameters, with the model in eval mode
(LPLgrad, Ent-GradNorm).  The public code runs one backward pass per sample; this module
gets the same numbers from ONE batched forward and ONE batched backward:

* forward hooks record the input ``a`` of every layer that owns trainable parameters and
  put a tensor hook on its output, which receives the per-sample output gradient ``g``
  (exact per sample because eval-mode layers treat samples independently; a tensor hook
  sees the gradient of the output *before* any later in-place op such as ReLU(inplace));
* the backward is asked only for the gradient w.r.t. the input, so no parameter gradient
  is ever formed (that is what keeps the cost near one forward+backward);
* each hook turns (a, g) into per-sample squared gradient norms in closed form: Linear
  (||a||^2 ||g||^2), Conv1d/Conv2d (a grouped weight-gradient convolution or the "ghost
  norm" identity, whichever needs fewer flops for that layer), eval-mode BatchNorm,
  LayerNorm and GroupNorm (sums of g * xhat and of g).

Anything the hooks cannot prove exact (another layer type owning parameters, grouped
convolutions, tied weights, a module called twice, ...) falls back to ``torch.func``
(vmap over grad), and if that fails, to the one-sample-at-a-time loop, so every model gets
exact scores.  Limitations of the fast path: layers must see the batch on dimension 0, the
model must not mix samples in eval mode (true of every standard layer), and a parameter
must only be used by the forward of the module that owns it.
"""
from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..device.performance import full_precision
from ..models.modes import eval_mode

NORMS = ("tensor_sum", "global")
METHODS = ("auto", "hooks", "func", "loop")

# Largest temporary (in elements) one conv hook materialises at a time (~64 MB fp32).
_MAX_TEMP_ELEMS = 1 << 24
# Largest per-sample gradient block (elements) the torch.func fallback materialises (~256 MB).
_MAX_FUNC_ELEMS = 1 << 26

#: cuDNN autotuning inside the scores on a GPU (off: see _grad_context); the benchmark's switch
AUTOTUNE = False
#: how conv layers' per-sample weight gradients are formed on a GPU when the ghost norm does
#: not win: "unfold" (a batched GEMM with the unfolded input) or "grouped" (a weight-gradient
#: conv with one group per sample); the benchmark's switch.  On an H200, ResNet-18, 10k
#: candidates: unfold 1.78 s warm and 2.19 s on a process's first call, grouped 2.04 s and
#: 2.97 s (docs/performance.md)
CUDA_CONV = "unfold"

_log = logging.getLogger(__name__)

# SyncBatchNorm (--sync-bn) is a plain BatchNorm in eval mode, where the scores are computed
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class _Unsupported(Exception):
    """The hook-based fast path cannot guarantee exact scores for this model / batch."""


def gradient_norm_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    norm: str = "tensor_sum",
    batch_size: int = 256,
    *,
    method: str = "auto",
) -> torch.Tensor:
    """Norm of the gradient of the predictive entropy w.r.t. all trainable parameters, per input.

    ``norm="tensor_sum"`` sums the L2 norms of the parameter tensors (what the public
    LPLgrad code does); ``"global"`` is the L2 norm over all parameters.  The model is
    evaluated in eval mode and every module's train/eval flag is restored afterwards;
    parameters and their ``.grad`` are never touched.  ``method``: ``"auto"`` (batched
    hooks, falling back to ``torch.func`` then to the loop when the model needs it),
    ``"hooks"`` (fast path only: raises ValueError if the model is not supported),
    ``"func"`` or ``"loop"`` (one sample at a time, the public code's way).
    Returns a float32 tensor of shape (N,) on ``inputs``' device.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    params = [p for p in model.parameters() if p.requires_grad]
    n = inputs.shape[0]
    if n == 0 or not params:
        return torch.zeros(n, dtype=torch.float32, device=inputs.device)

    work = model
    if any(t.is_floating_point() and t.dtype != torch.float32 for t in _tensors(model)):
        work = copy.deepcopy(model).float()  # fp32 as the method requires; the caller's model is untouched
    device = next(iter(work.parameters())).device

    with eval_mode(work), _grad_context(device):
        return _run(work, inputs, norm, batch_size, method, device).to(inputs.device)


def _run(model: nn.Module, inputs: torch.Tensor, norm: str, batch_size: int, method: str,
         device: torch.device) -> torch.Tensor:
    """Dispatch chunks of ``batch_size`` to the chosen path, falling back in ``auto`` mode."""
    out = []
    plan: list[_Layer] | None = None
    if method in ("auto", "hooks"):
        try:
            plan = _plan(model)
        except _Unsupported as exc:
            if method == "hooks":
                raise ValueError(f"gradient_norm_scores(method='hooks'): {exc}") from None
            _log.debug("gradient norms: hook path unavailable (%s); using torch.func", exc)
            method = "func"
    n = inputs.shape[0]
    for start in range(0, n, batch_size):
        x = _prepare(inputs[start : start + batch_size], device)
        real = x.shape[0]
        if _pads(device) and start > 0 and real < batch_size:
            # every chunk of one shape on a GPU: a new shape costs cuDNN planning; the padding
            # rows repeat the first item, and in eval mode items do not interact
            x = torch.cat([x, x[:1].expand(batch_size - real, *x.shape[1:])])
        if method in ("auto", "hooks"):
            assert plan is not None
            try:
                out.append(_hooks_chunk(model, plan, x, norm)[:real])
                continue
            except _Unsupported as exc:
                if method == "hooks":
                    raise ValueError(f"gradient_norm_scores(method='hooks'): {exc}") from None
                _log.debug("gradient norms: hook path unavailable (%s); using torch.func", exc)
                method = "func"
            except RuntimeError as exc:  # e.g. an in-place op autograd refuses: try the exact fallbacks
                if method == "hooks":
                    raise
                _log.debug("gradient norms: hook path failed (%s); using torch.func", exc)
                method = "func"
        if method == "func":
            try:
                out.append(_func_chunk(model, x, norm, batch_size)[:real])
                continue
            except RuntimeError as exc:  # an op vmap cannot batch: the loop always works
                _log.info("gradient norms: torch.func failed (%s); using the slow per-sample loop", exc)
                method = "loop"
        out.append(_loop_chunk(model, x[:real], norm))
    return torch.cat(out)


# ----------------------------------------------------------------------------- helpers


def _pads(device: torch.device) -> bool:
    """Whether a short last chunk is padded to the others' shape (on a GPU)."""
    return device.type == "cuda"


def _tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    yield from model.parameters()
    yield from model.buffers()


@contextlib.contextmanager
def _grad_context(device: torch.device) -> Iterator[None]:
    """Gradients on, autocast and TF32 convolutions off, whatever the caller's context
    (queries run under ``no_grad`` and bf16 autocast on a GPU): the scores are exact fp32.
    cuDNN autotuning is off too (unless :data:`AUTOTUNE`): the per-sample weight-gradient
    convolutions are one-off fp32 shapes, and timing candidate kernels for each of them made
    the first query of a process take minutes."""
    no_tf32: contextlib.AbstractContextManager = contextlib.nullcontext()
    if device.type == "cuda":
        no_tf32 = torch.backends.cudnn.flags(enabled=True, benchmark=AUTOTUNE and torch.backends.cudnn.benchmark,
                                             deterministic=torch.backends.cudnn.deterministic, allow_tf32=False)
    with torch.inference_mode(False), torch.enable_grad(), full_precision(device), no_tf32:
        yield


def _prepare(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A fresh fp32 copy on the model's device (a clone, so inference tensors work too)."""
    x = x.detach().to(device)
    if x.is_floating_point():
        x = x.to(torch.float32)
    return x.clone()


def _entropy(logits: torch.Tensor | tuple | list) -> torch.Tensor:
    """Per-row entropy (natural log) of softmax(logits); log_softmax keeps it finite."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"gradient_norm_scores needs logits of shape (batch, classes), the model returned {shape}")
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def _accumulate(acc: torch.Tensor, sq: torch.Tensor, norm: str) -> None:
    """Add one parameter tensor's per-sample squared norm to the running score."""
    if norm == "tensor_sum":
        acc += sq.clamp_min(0).sqrt()
    else:
        acc += sq


def _finish(acc: torch.Tensor, norm: str) -> torch.Tensor:
    return acc.clamp_min(0).sqrt() if norm == "global" else acc


# ----------------------------------------------------------------------------- fast path


class _Layer:
    """One parameterised leaf module the fast path handles, and its per-batch state."""

    __slots__ = ("module", "kind", "need_w", "need_b", "padding", "calls", "grads", "act", "version")

    def __init__(self, module: nn.Module, kind: str, need_w: bool, need_b: bool, padding: tuple[int, ...] = ()) -> None:
        self.module, self.kind, self.need_w, self.need_b, self.padding = module, kind, need_w, need_b, padding
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.grads = 0
        self.act: torch.Tensor | None = None
        self.version = 0


def _trainable(p: torch.Tensor | None) -> bool:
    return isinstance(p, torch.Tensor) and p.requires_grad


def _plan(model: nn.Module) -> list[_Layer]:
    """Check every module owning trainable parameters is one the hooks compute exactly."""
    layers: list[_Layer] = []
    owner: dict[int, str] = {}
    for name, m in model.named_modules():
        name = name or "<root>"
        own = [(pn, p) for pn, p in m.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        for pn, p in own:
            if id(p) in owner:
                raise _Unsupported(f"parameter {name}.{pn} is shared with {owner[id(p)]}")
            owner[id(p)] = f"{name}.{pn}"
        t = type(m)  # exact types: a subclass may override forward
        w, b = _trainable(getattr(m, "weight", None)), _trainable(getattr(m, "bias", None))
        if {pn for pn, _ in own} - {"weight", "bias"}:
            raise _Unsupported(f"module {name} ({t.__name__}) owns parameters other than weight/bias")
        if t is nn.Linear:
            layers.append(_Layer(m, "linear", w, b))
        elif t in (nn.Conv1d, nn.Conv2d):
            if m.groups != 1 or m.padding_mode != "zeros":
                raise _Unsupported(f"conv {name} has groups={m.groups}, padding_mode={m.padding_mode!r}")
            layers.append(_Layer(m, "conv", w, b, _conv_padding(m, name)))
        elif t in _BN_TYPES:
            if m.running_mean is None or m.running_var is None:
                raise _Unsupported(f"batch norm {name} has no running statistics (uses batch statistics)")
            layers.append(_Layer(m, "bn", w, b))
        elif t is nn.LayerNorm:
            layers.append(_Layer(m, "ln", w, b))
        elif t is nn.GroupNorm:
            layers.append(_Layer(m, "gn", w, b))
        else:
            raise _Unsupported(f"module {name} ({t.__name__}) owns trainable parameters and has no closed form")
    return layers


def _conv_padding(m: nn.Conv1d | nn.Conv2d, name: str) -> tuple[int, ...]:
    if not isinstance(m.padding, str):
        return tuple(m.padding)
    if m.padding == "valid":
        return (0,) * len(m.kernel_size)
    total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
    if any(t % 2 for t in total):
        raise _Unsupported(f"conv {name} uses asymmetric 'same' padding")
    return tuple(t // 2 for t in total)


def _hooks_chunk(model: nn.Module, layers: list[_Layer], x: torch.Tensor, norm: str) -> torch.Tensor:
    """Scores of one chunk from one forward and one input-only backward."""
    if not x.is_floating_point():
        raise _Unsupported("inputs are not floating point")
    batch = x.shape[0]
    acc = torch.zeros(batch, dtype=torch.float32, device=x.device)
    problems: list[str] = []
    handles = []

    def on_grad(layer: _Layer, g: torch.Tensor) -> None:
        layer.grads += 1
        act, layer.act = layer.act, None
        if problems:
            return
        if layer.grads > 1:
            problems.append(f"{type(layer.module).__name__} output received two gradients")
            return
        if act is not None and act._version != layer.version:
            problems.append(f"the input of a {type(layer.module).__name__} was modified in place")
            return
        if g.shape[0] != batch:
            problems.append("a layer output does not have the batch on dimension 0")
            return
        try:
            with torch.no_grad():
                for sq in _layer_sq_norms(layer, act, g.float()):
                    _accumulate(acc, sq, norm)
        except _Unsupported as exc:
            problems.append(str(exc))

    def make_forward_hook(layer: _Layer) -> Callable:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            layer.calls += 1
            if layer.calls > 1:
                problems.append(f"{type(module).__name__} is called more than once per forward")
                return
            if not args or not isinstance(args[0], torch.Tensor) or not isinstance(output, torch.Tensor):
                problems.append(f"{type(module).__name__} is not called with one tensor input")
                return
            a = args[0]
            if a.dim() < 2 or a.shape[0] != batch or output.shape[0] != batch or not output.requires_grad:
                problems.append(f"{type(module).__name__} does not see the batch on dimension 0")
                return
            if layer.need_w:  # weight gradients need the layer input; bias gradients do not
                layer.act = a.detach()
                layer.version = a._version
            output.register_hook(lambda g: on_grad(layer, g))

        return hook

    for layer in layers:
        layer.reset()
        # prepend: see the module's own output even if a user hook replaces it afterwards
        handles.append(layer.module.register_forward_hook(make_forward_hook(layer), prepend=True))
    try:
        leaf = x.detach().requires_grad_(True)
        h = _entropy(model(leaf.clone()))  # clone: the model may modify its input in place
        if problems:
            raise _Unsupported(problems[0])
        _check_parameter_uses(h, layers)
        torch.autograd.grad(h.sum(), leaf, allow_unused=True)
        if problems:
            raise _Unsupported(problems[0])
        for layer in layers:
            if layer.calls and not layer.grads:
                raise _Unsupported(f"no gradient reached the output of {type(layer.module).__name__}")
    finally:
        for handle in handles:
            handle.remove()
        for layer in layers:
            layer.reset()
    return _finish(acc, norm)


def _check_parameter_uses(h: torch.Tensor, layers: list[_Layer]) -> None:
    """Each trainable parameter must enter the graph exactly once, through its own module's
    forward (a weight also used elsewhere, e.g. tied into another op, has gradient terms the
    hooks never see).  Walks the autograd graph: a few hundred nodes, negligible."""
    uses: dict[int, int] = {}
    seen: set = set()
    stack = [h.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        for nxt, _ in fn.next_functions:
            if nxt is None:
                continue
            variable = getattr(nxt, "variable", None)
            if variable is not None:  # AccumulateGrad of a leaf: one edge per use
                uses[id(variable)] = uses.get(id(variable), 0) + 1
            else:
                stack.append(nxt)
    for layer in layers:
        for name in ("weight", "bias"):
            p = getattr(layer.module, name, None)
            if _trainable(p) and uses.get(id(p), 0) != (1 if layer.calls else 0):
                raise _Unsupported(f"{type(layer.module).__name__}.{name} is used outside the module's own forward")


def _layer_sq_norms(layer: _Layer, a: torch.Tensor | None, g: torch.Tensor) -> Iterator[torch.Tensor]:
    """Per-sample squared norms of the layer's trainable weight and/or bias gradients."""
    m = layer.module
    if layer.kind == "linear":
        yield from _linear_sq(a, g, layer.need_w, layer.need_b)
    elif layer.kind == "conv":
        yield from _conv_sq(m, layer.padding, a, g, layer.need_w, layer.need_b)
    else:
        yield from _norm_layer_sq(layer.kind, m, a, g, layer.need_w, layer.need_b)


def _linear_sq(a: torch.Tensor | None, g: torch.Tensor, need_w: bool, need_b: bool) -> Iterator[torch.Tensor]:
    """Linear: grad W_i = sum_t g_it a_it^T, grad b_i = sum_t g_it."""
    b = g.shape[0]
    if g.dim() == 2:
        if need_w:
            assert a is not None
            yield a.float().pow(2).sum(1) * g.pow(2).sum(1)
        if need_b:
            yield g.pow(2).sum(1)
        return
    g3 = g.reshape(b, -1, g.shape[-1])  # (B, T, Dout)
    if need_w:
        assert a is not None
        a3 = a.float().reshape(b, -1, a.shape[-1])  # (B, T, Din)
        t, din, dout = a3.shape[1], a3.shape[2], g3.shape[2]
        if t * t * (din + dout) < t * din * dout:  # ghost norm: <A A^T, G G^T>
            yield (torch.bmm(a3, a3.transpose(1, 2)) * torch.bmm(g3, g3.transpose(1, 2))).sum((1, 2))
        else:
            yield torch.bmm(g3.transpose(1, 2), a3).pow(2).sum((1, 2))
    if need_b:
        yield g3.sum(1).pow(2).sum(1)


def _conv_sq(
    m: Any, padding: tuple[int, ...], a: torch.Tensor | None, g: torch.Tensor, need_w: bool, need_b: bool
) -> Iterator[torch.Tensor]:
    """Conv: per-sample weight gradient W_i = G_i U_i^T, with U_i = unfold(a_i) (K x L) and
    G_i the output gradient (Cout x L); the bias gradient is G_i summed over positions.

    ||W_i||^2 is computed whichever way costs fewer flops per sample:
    * directly, Cout*L*K: the per-sample weight gradients of a few samples at a time come
      from the convolution weight-gradient kernel with the samples as groups (or, for few
      input channels, from a batched GEMM with the unfolded input);
    * the ghost norm <U^T U, G^T G>, Lp^2*C + L^2*Cout: U^T U is never unfolded, it is the
      sum over kernel offsets of shifted blocks of the Gram matrix of the padded input
      (Lp positions), so it wins for small maps with many channels (deep layers).
    """
    b, cout = g.shape[0], g.shape[1]
    gm = g.reshape(b, cout, -1)  # (B, Cout, L)
    if need_b:
        yield gm.sum(2).pow(2).sum(1)
    if not need_w:
        return
    assert a is not None
    kernel, stride, dilation = tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation)
    a, g = a.float(), g.float()
    if a.dim() == 3:  # Conv1d as a 1 x L Conv2d
        a, g = a.unsqueeze(2), g.unsqueeze(2)
        kernel, stride, dilation, padding = (1, *kernel), (1, *stride), (1, *dilation), (0, *padding)
    if a.dim() != 4 or g.dim() != 4:
        raise _Unsupported("conv input is not batched")
    cin, (ho, wo) = a.shape[1], g.shape[2:]
    length = ho * wo
    padded = (a.shape[2] + 2 * padding[0]) * (a.shape[3] + 2 * padding[1])
    k = cin * kernel[0] * kernel[1]
    if padded * padded * cin + length * length * cout < cout * length * k:
        # gram, its column sums, uu, G^T G
        step = max(1, _MAX_TEMP_ELEMS // (2 * padded * padded + 2 * length * length))
        fn = _conv_ghost_sq
    elif cin < 16 or (a.is_cuda and CUDA_CONV == "unfold"):
        # few input channels: a grouped conv has too little work per group (and stalls under
        # CPU contention); the unfolded input is small, use a batched GEMM
        step = max(1, _MAX_TEMP_ELEMS // (k * length + cout * k))
        fn = _conv_unfold_sq
    else:
        step = max(1, _MAX_TEMP_ELEMS // (cout * k))
        fn = _conv_direct_sq
    parts = [fn(a[s : s + step], g[s : s + step], kernel, stride, dilation, padding) for s in range(0, b, step)]
    yield torch.cat(parts)


def _conv_direct_sq(
    a: torch.Tensor, g: torch.Tensor, kernel: tuple, stride: tuple, dilation: tuple, padding: tuple
) -> torch.Tensor:
    """Per-sample weight gradients of a chunk: a grouped weight-gradient conv, one group per sample."""
    b, cin, h, w = a.shape
    cout = g.shape[1]
    gw = torch.nn.grad.conv2d_weight(  # type: ignore[attr-defined]  # torch.nn.grad is not in the stubs
        a.reshape(1, b * cin, h, w),
        (b * cout, cin, *kernel),
        g.reshape(1, b * cout, *g.shape[2:]),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=b,
    )
    return gw.reshape(b, -1).pow(2).sum(1)


def _conv_unfold_sq(
    a: torch.Tensor, g: torch.Tensor, kernel: tuple, stride: tuple, dilation: tuple, padding: tuple
) -> torch.Tensor:
    """Per-sample weight gradients G_i U_i^T of a chunk with U = unfold(a), built from a
    strided view of the padded input (one copy; faster than F.unfold's im2col on CPU)."""
    b, cin = a.shape[:2]
    ho, wo = g.shape[2:]
    ap = F.pad(a, (padding[1], padding[1], padding[0], padding[0])) if any(padding) else a.contiguous()
    sb, sc, sh, sw = ap.stride()
    u = ap.as_strided(
        (b, cin, kernel[0], kernel[1], ho, wo),
        (sb, sc, dilation[0] * sh, dilation[1] * sw, stride[0] * sh, stride[1] * sw),
    ).reshape(b, cin * kernel[0] * kernel[1], ho * wo)
    return torch.bmm(g.reshape(b, g.shape[1], ho * wo), u.transpose(1, 2)).pow(2).sum((1, 2))


def _conv_ghost_sq(
    a: torch.Tensor, g: torch.Tensor, kernel: tuple, stride: tuple, dilation: tuple, padding: tuple
) -> torch.Tensor:
    """||G U^T||^2 = <U^T U, G^T G>; (U^T U)[l, l'] = sum over offsets o of S[l + o, l' + o]
    with S the Gram matrix (over channels) of the zero-padded input's positions."""
    b, cin = a.shape[:2]
    ho, wo = g.shape[2:]
    ap = F.pad(a, (padding[1], padding[1], padding[0], padding[0])) if any(padding) else a
    hp, wp = ap.shape[2:]
    flat_t = ap.reshape(b, cin, hp * wp).transpose(1, 2).contiguous()  # (b, Lp, C): faster GEMM
    gram = torch.bmm(flat_t, flat_t.transpose(1, 2)).view(b, hp, wp, hp, wp)
    gm = g.reshape(b, g.shape[1], ho * wo)
    ggt = torch.bmm(gm.transpose(1, 2), gm).view(b, ho, wo, ho, wo)
    # the offsets shift rows and columns independently: sum the column shifts, then the row shifts
    cols = [slice(j * dilation[1], j * dilation[1] + stride[1] * (wo - 1) + 1, stride[1]) for j in range(kernel[1])]
    rows = [slice(i * dilation[0], i * dilation[0] + stride[0] * (ho - 1) + 1, stride[0]) for i in range(kernel[0])]
    part = gram[:, :, cols[0], :, cols[0]].clone()  # (b, Hp, Wo, Hp, Wo)
    for c in cols[1:]:
        part.add_(gram[:, :, c, :, c])
    uu = part[:, rows[0], :, rows[0], :].clone()  # (b, Ho, Wo, Ho, Wo)
    for r in rows[1:]:
        uu.add_(part[:, r, :, r, :])
    return (uu * ggt).sum((1, 2, 3, 4))


def _norm_layer_sq(
    kind: str, m: Any, a: torch.Tensor | None, g: torch.Tensor, need_w: bool, need_b: bool
) -> Iterator[torch.Tensor]:
    """Normalisation layers: y = xhat * w + b, so grad w_i = sum g_i * xhat_i, grad b_i = sum g_i,
    summed over every position that shares the affine parameter."""
    b = g.shape[0]
    if kind == "ln":  # parameters have the trailing normalized_shape; sum over the other dims
        nd = len(m.normalized_shape)
        per = g.reshape(b, -1, *g.shape[g.dim() - nd :])

        def reduce(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(per.shape).sum(1).reshape(b, -1)

    else:  # channel-wise parameters on dim 1

        def reduce(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], -1).sum(2)

    if need_w:
        assert a is not None
        a = a.float()
        if kind == "bn":
            shape = (1, -1) + (1,) * (a.dim() - 2)
            invstd = torch.rsqrt(m.running_var.float() + m.eps)
            xhat = (a - m.running_mean.float().reshape(shape)).mul_(invstd.reshape(shape))
        elif kind == "ln":
            xhat = F.layer_norm(a, m.normalized_shape, None, None, m.eps)
        else:
            xhat = F.group_norm(a, m.num_groups, None, None, m.eps)
        yield reduce(xhat.mul_(g)).pow(2).sum(1)
    if need_b:
        yield reduce(g).pow(2).sum(1)


# ----------------------------------------------------------------------------- fallbacks


def _func_chunk(model: nn.Module, x: torch.Tensor, norm: str, batch_size: int) -> torch.Tensor:
    """Exact fallback for any model: per-sample gradients with torch.func (vmap over grad)."""
    from torch.func import functional_call, grad, vmap

    trainable = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    fixed = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    fixed.update(dict(model.named_buffers()))
    numel = sum(p.numel() for p in trainable.values())
    step = max(1, min(batch_size, _MAX_FUNC_ELEMS // max(1, numel)))

    def entropy_of(params: dict[str, torch.Tensor], sample: torch.Tensor) -> torch.Tensor:
        return _entropy(functional_call(model, (params, fixed), (sample.unsqueeze(0),))).sum()

    per_sample_grad = vmap(grad(entropy_of), in_dims=(None, 0))
    parts = []
    for s in range(0, x.shape[0], step):
        grads = per_sample_grad(trainable, x[s : s + step])
        acc = torch.zeros(min(step, x.shape[0] - s), dtype=torch.float32, device=x.device)
        for gt in grads.values():
            _accumulate(acc, gt.detach().float().reshape(gt.shape[0], -1).pow(2).sum(1), norm)
        parts.append(_finish(acc, norm))
    return torch.cat(parts)


def _loop_chunk(model: nn.Module, x: torch.Tensor, norm: str) -> torch.Tensor:
    """The public code's way, one backward per sample: slow but works for any model."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = torch.zeros(x.shape[0], dtype=torch.float32, device=x.device)
    for i in range(x.shape[0]):
        h = _entropy(model(x[i : i + 1])).sum()
        grads = torch.autograd.grad(h, params, allow_unused=True)
        acc = torch.zeros(1, dtype=torch.float32, device=x.device)
        for gt in grads:
            if gt is not None:
                _accumulate(acc, gt.detach().float().pow(2).sum().reshape(1), norm)
        out[i] = _finish(acc, norm)[0]
    return out
