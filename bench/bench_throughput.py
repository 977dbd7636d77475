"""Training and inference throughput of one model, with the fast-path switches on and off.

On random CIFAR-shaped uint8 images it runs the library's own training loop (batch
augmentation on the device, bf16 autocast on CUDA) and its evaluation, and prints images
per second for each memory format (and compiled, with --compile), with the ratio to the
plain layout; then, for each strategy of --strategies (their training objectives: plain,
Learning Loss's module, DNAL's double branch), the training throughput eagerly and, on CUDA,
with the step replayed from recorded CUDA graphs (--cuda-graphs), with the ratio to plain
eager training.  Figures only, no pass/fail.

    python bench/bench_throughput.py --threads 2                       # CPU, small
    python bench/bench_throughput.py --device cuda --n 20000 --eval-n 50000 --eval-batch-size 2048 --compile
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

try:
    import activeloss  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from activeloss.config import Settings  # noqa: E402
from activeloss.data import Dataset, Inputs  # noqa: E402
from activeloss.device import performance  # noqa: E402
from activeloss.device.graphs import CudaGraphs  # noqa: E402
from activeloss.loop.plan import resolve_run  # noqa: E402
from activeloss.models import Taps, build  # noqa: E402
from activeloss.objectives import ModelInfo, Objective  # noqa: E402
from activeloss.strategies import get_strategy  # noqa: E402
from activeloss.tasks import make_task  # noqa: E402
from activeloss.trainer import TrainConfig, evaluate, train  # noqa: E402


def synthetic(n: int, n_test: int) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    xt = torch.randint(0, 256, (n_test, 3, 32, 32), generator=g, dtype=torch.uint8)
    y, yt = torch.randint(0, 10, (n,), generator=g), torch.randint(0, 10, (n_test,), generator=g)
    return Dataset("synthetic", x, y, xt, yt, [str(c) for c in range(10)])


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def measure(data: Dataset, args, device: torch.device, fmt: torch.memory_format,
            compiled: bool) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build(args.model, 10, (3, 32, 32)).to(device)
    model.to(memory_format=fmt)
    forward = performance.forward_of(model, compiled)
    inputs = Inputs.from_dataset(data, device, ("flip", "crop"), 4, fmt)
    cfg = TrainConfig(1, args.batch_size, 0.1, 0.9, 5e-4, [1], 0.1)
    idx = torch.arange(data.x_train.shape[0])
    gen = torch.Generator().manual_seed(0)
    task = make_task("classification")
    warm = idx[: args.batch_size * 3]
    train(model, Objective(), task, inputs, warm, data.y_train[warm], cfg, None, gen, forward=forward)  # warm-up
    evaluate(model, Objective(), task, inputs, args.eval_batch_size, None, forward)

    def one_epoch() -> None:
        train(model, Objective(), task, inputs, idx, data.y_train, cfg, None, gen, forward=forward)

    def one_evaluation() -> None:
        evaluate(model, Objective(), task, inputs, args.eval_batch_size, None, forward)

    train_s = min(timed(one_epoch, device) for _ in range(args.repeats))
    eval_s = min(timed(one_evaluation, device) for _ in range(args.repeats))
    return idx.numel() / train_s, data.x_test.shape[0] / eval_s


def measure_objective(data: Dataset, args, device: torch.device, strategy: str, graphs: bool) -> float:
    """Training images/s of ``strategy``'s objective (channels_last on CUDA), eager or graphed."""
    torch.manual_seed(0)
    fmt = performance.memory_format(None, device, True)
    model = build(args.model, 10, (3, 32, 32)).to(device)
    model.to(memory_format=fmt)
    task = make_task("classification")
    chosen = get_strategy(strategy)
    run = resolve_run(Settings.from_dict({"epochs": 200, "model": args.model}), chosen, data, None)
    objective = chosen.make_objective(run.objective_options)
    tap_names = tuple(getattr(model, "taps", ()))
    objective.setup(model, ModelInfo(task, tap_names, (3, 32, 32), 10))
    objective.to(device)
    taps = Taps(model, tap_names) if objective.needs_taps else None
    inputs = Inputs.from_dataset(data, device, ("flip", "crop"), 4, fmt)
    cfg = TrainConfig(1, args.batch_size, 0.1, 0.9, 5e-4, [1], 0.1)
    idx = torch.arange(data.x_train.shape[0])
    gen = torch.Generator().manual_seed(0)
    backend = CudaGraphs(device) if graphs else None
    warm = idx[: args.batch_size * 4]
    train(model, objective, task, inputs, warm, data.y_train[warm], cfg, taps, gen, graphs=backend)
    used = []

    def one_epoch() -> None:
        used.append(train(model, objective, task, inputs, idx, data.y_train, cfg, taps, gen, graphs=backend))

    seconds = min(timed(one_epoch, device) for _ in range(args.repeats))
    if graphs and (used[-1] is None or used[-1].failed):
        print(f"   ({strategy}: the step was not recorded: {used[-1].failed if used[-1] else 'not graphable'})")
    return idx.numel() / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18", choices=("resnet18", "vgg16", "cnn"))
    ap.add_argument("--n", type=int, default=512, help="training images per timed epoch")
    ap.add_argument("--eval-n", type=int, default=1024, help="images per timed evaluation")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--eval-batch-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timed runs")
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile variants")
    ap.add_argument("--strategies", default="random,llal,dnal",
                    help="whose training objectives to time eagerly and with --cuda-graphs ('' for none)")
    ap.add_argument("--no-formats", action="store_true", help="skip the memory-format / compile table")
    args = ap.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    performance.configure(device, deterministic=False)
    data = synthetic(args.n, args.eval_n)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)")
    print(f"{args.model} on {name}: train batch {args.batch_size} over {args.n} images, "
          f"inference batch {args.eval_batch_size} over {args.eval_n}; autocast bf16: {device.type == 'cuda'}")
    if not args.no_formats:
        variants = [("contiguous", torch.contiguous_format, False), ("channels_last", torch.channels_last, False)]
        if args.compile:
            variants += [("contiguous + compile", torch.contiguous_format, True),
                         ("channels_last + compile", torch.channels_last, True)]
        base = None
        print(f"{'variant':<26} {'train img/s':>12} {'x':>6} {'inference img/s':>16} {'x':>6}")
        for label, fmt, compiled in variants:
            tr, inf = measure(data, args, device, fmt, compiled)
            base = base or (tr, inf)
            print(f"{label:<26} {tr:>12.0f} {tr / base[0]:>6.2f} {inf:>16.0f} {inf / base[1]:>6.2f}", flush=True)
    strategies = [s for s in args.strategies.split(",") if s]
    if not strategies:
        return
    print(f"\ntraining objectives at batch {args.batch_size} (x: against plain eager training)")
    print(f"{'strategy':<10} {'eager img/s':>12} {'x':>6} {'graphs img/s':>13} {'x':>6} {'graphs/eager':>13}")
    plain = None
    for strategy in strategies:
        eager = measure_objective(data, args, device, strategy, False)
        plain = plain or eager
        graphed = measure_objective(data, args, device, strategy, True) if device.type == "cuda" else float("nan")
        print(f"{strategy:<10} {eager:>12.0f} {eager / plain:>6.2f} {graphed:>13.0f} {graphed / plain:>6.2f} "
              f"{graphed / eager:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
