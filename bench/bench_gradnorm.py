"""Benchmark of the batched entropy-gradient-norm scores (LPLgrad / Ent-GradNorm query).

Times, on random images:
  (a) one batched forward + backward of the mean cross-entropy w.r.t. the parameters,
      over the n inputs in chunks of --batch-size (the cost of one training pass);
  (b) activeloss.scoring.gradient_norm_scores over the same n inputs;
  (c) the public code's per-sample loop (one forward + backward per sample) on --loop-n
      samples, extrapolated to n;
each as the best of --repeats interleaved rounds (other processes' load hits all alike);
and prints the figures, the ratios gradnorm / (fwd+bwd) and loop / gradnorm, and the
largest relative difference between (b) and (c) on the loop's samples.  No assertions.
Before any warm-up it times (b) once more as the *first call* of the process: what a real
run's first query pays (on a GPU, cuDNN planning every new shape; --autotune brings back
cuDNN's autotuning inside the scores, --conv grouped the grouped-convolution form of the convs).

    python bench/bench_gradnorm.py --n 512 --batch-size 128 --threads 2
    python bench/bench_gradnorm.py --device cuda --n 10000 --batch-size 1000 --loop-n 200   # the GPU target
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

try:
    import activeloss  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from activeloss.models import build  # noqa: E402
from activeloss.scoring import gradient_norm_scores, gradnorm  # noqa: E402

SHAPES = {"resnet18": (3, 32, 32), "vgg16": (3, 32, 32), "cnn": (1, 28, 28), "mlp": (64,)}


def fwd_bwd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
    """One training-style pass (no optimiser step, fp32): mean CE, gradients w.r.t. the parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    for s in range(0, x.shape[0], batch_size):
        loss = F.cross_entropy(model(x[s : s + batch_size]), y[s : s + batch_size])
        torch.autograd.grad(loss, params)


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` followed by waiting for the GPU, so that wall-clock time measures its work."""
    if device.type != "cuda":
        return fn
    return lambda: (fn(), torch.cuda.synchronize(device))


def best_of(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall-clock seconds of each function over ``repeats`` interleaved rounds, so a
    burst of load from other processes hits every measurement alike."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="inputs scored by (a) and (b)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--model", default="resnet18", choices=sorted(SHAPES))
    ap.add_argument("--loop-n", type=int, default=24, help="samples for the per-sample loop")
    ap.add_argument("--norm", default="tensor_sum", choices=("tensor_sum", "global"))
    ap.add_argument("--repeats", type=int, default=3, help="best of this many interleaved runs of (a) and (b)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu or cuda")
    ap.add_argument("--autotune", action="store_true", help="cuDNN autotuning inside the scores (the old way)")
    ap.add_argument("--conv", default="unfold", choices=("grouped", "unfold"),
                    help="per-sample conv weight gradients on a GPU: grouped conv or unfold + batched GEMM")
    args = ap.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    gradnorm.AUTOTUNE = args.autotune
    gradnorm.CUDA_CONV = args.conv

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = SHAPES[args.model]
    model = build(args.model, 10, shape).to(device)
    model.eval()
    x = torch.randn(args.n, *shape, device=device)
    y = torch.randint(0, 10, (args.n,), device=device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as in a run; the scores turn it off unless --autotune
        if len(shape) == 3:  # a run's layout on a GPU
            model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {os.cpu_count()} cores"
    print(f"model={args.model} n={args.n} batch_size={args.batch_size} threads={torch.get_num_threads()} "
          f"norm={args.norm} device={where} load(1 min)={load:.1f} autotune={args.autotune} conv={args.conv}")
    t0 = time.perf_counter()
    synced(lambda: gradient_norm_scores(model, x, args.norm, args.batch_size), device)()
    t_first = time.perf_counter() - t0

    warm = min(8, args.n)
    gradient_norm_scores(model, x[:warm], args.norm, args.batch_size)  # warm-up (allocator, kernels)
    fwd_bwd(model, x[:warm], y[:warm], args.batch_size)
    m = min(args.loop_n, args.n)
    scores: list[torch.Tensor] = []
    loop_scores: list[torch.Tensor] = []
    best = best_of(
        {
            "fwd_bwd": synced(lambda: fwd_bwd(model, x, y, args.batch_size), device),
            "gradnorm": synced(lambda: scores.append(gradient_norm_scores(model, x, args.norm, args.batch_size)),
                               device),
            "loop": synced(lambda: loop_scores.append(gradient_norm_scores(model, x[:m], norm=args.norm,
                                                                           method="loop")), device),
        },
        args.repeats,
    )
    t_fb, t_gn, t_loop = best["fwd_bwd"], best["gradnorm"], best["loop"]
    t_loop_n = t_loop / m * args.n

    rel = ((scores[-1][:m] - loop_scores[-1]).abs() / loop_scores[-1].abs().clamp_min(1e-30)).max().item()
    print(f"(a) batched fwd+bwd      : {t_fb:8.3f} s  {args.n / t_fb:9.1f} samples/s")
    print(f"(b) gradient_norm_scores : {t_gn:8.3f} s  {args.n / t_gn:9.1f} samples/s")
    print(f"(b) its first call       : {t_first:8.3f} s  {args.n / t_first:9.1f} samples/s  (the process's first)")
    print(f"(c) per-sample loop      : {t_loop_n:8.3f} s  {m / t_loop:9.1f} samples/s  "
          f"(measured on {m}, extrapolated to {args.n})")
    print(f"ratio gradnorm / fwd+bwd : {t_gn / t_fb:6.2f}")
    print(f"ratio loop / gradnorm    : {t_loop_n / t_gn:6.2f}")
    print(f"max relative difference vs loop on {m} samples: {rel:.2e}")


if __name__ == "__main__":
    main()
