"""Time the Learning Loss protocol end to end on synthetic CIFAR-shaped data.

Random uint8 images (N x 3 x 32 x 32) with random labels: the accuracies mean nothing, the
timings are what this measures, so the same workload can be timed on a CPU and on a GPU.
Per cycle it prints the train, test (evaluation) and query seconds, and the training and
inference throughput in images per second.  It prints figures, never pass/fail.

    python bench/bench_protocol.py                                   # small: 2 cycles x 1 epoch
    python bench/bench_protocol.py --cycles 10 --epochs 200          # the full LL4AL protocol
    python bench/bench_protocol.py --device cuda --cycles 3 --epochs 30 [--no-cuda-graphs]   # and extrapolate

From the measured cycles it extrapolates the full protocol (--full-cycles x --full-epochs, the
labeled set growing by --budget each cycle): training at the largest measured cycle's rate
(images x epochs per second, that cycle's fixed costs included, so an upper estimate), and each
cycle's test, diagnostics and query times at the measured cycles' mean (the query is over the
same --subset every cycle).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

try:
    import activeloss  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from activeloss import Settings, Store, run  # noqa: E402


def synthetic_npz(path: Path, n: int, n_test: int, classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), y=rng.integers(0, classes, n),
             x_test=rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8), y_test=rng.integers(0, classes, n_test))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000, help="training pool size")
    ap.add_argument("--test", type=int, default=10_000, help="test set size")
    ap.add_argument("--strategy", default="llal")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--initial", type=int, default=1000)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--subset", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--eval-batch-size", type=int, default=1024)
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--parallel-trials", type=int, default=1, help="trials run at once, one process each")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="default: on for CUDA, off on CPU")
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward pass")
    ap.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                    help="replay each training step from a CUDA graph (default: the library's, on for CUDA)")
    ap.add_argument("--full-cycles", type=int, default=10, help="the protocol to extrapolate to: cycles")
    ap.add_argument("--full-epochs", type=int, default=200, help="the protocol to extrapolate to: epochs")
    ap.add_argument("--deterministic", action="store_true")
    ap.add_argument("--diagnostics", default="last", choices=("every", "last", "none"),
                    help="when the confidence histograms of the figures are recorded")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "synthetic.npz"
        synthetic_npz(npz, args.n, args.test, 10, seed=0)
        settings = Settings(
            dataset=f"npz:{npz}", strategies=[args.strategy], cycles=args.cycles, initial=args.initial,
            budget=args.budget, subset=args.subset, epochs=args.epochs, batch_size=args.batch_size, model=args.model,
            out=str(Path(tmp) / "out"), augment="flip,crop", device=args.device, threads=args.threads,
            eval_batch_size=args.eval_batch_size, trials=args.trials, parallel_trials=args.parallel_trials,
            channels_last=args.channels_last, compile=args.compile, deterministic=args.deterministic,
            cuda_graphs=args.cuda_graphs,
            diagnostics=args.diagnostics,
        )
        t0 = time.perf_counter()
        store = run(settings, progress=False)
        assert store is not None
        total = time.perf_counter() - t0
        rows = store.results()
        device = Store.in_folder(settings.out).get_meta("device")
        store.close()

    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"{os.cpu_count()} CPU cores"
    print(f"device={device} ({name}) model={args.model} strategy={args.strategy} pool={args.n} test={args.test} "
          f"epochs={args.epochs} batch={args.batch_size} subset={args.subset} threads={torch.get_num_threads()} "
          f"channels_last={args.channels_last} compile={args.compile} deterministic={args.deterministic} "
          f"cuda_graphs={args.cuda_graphs} "
          f"trials={args.trials} parallel={args.parallel_trials}")
    print(f"{'trial':>5} {'cycle':>5} {'labeled':>8} {'train s':>9} {'train img/s':>12} {'test s':>8} "
          f"{'test img/s':>11} {'diag s':>8} {'query s':>8} {'query img/s':>12} {'wall s':>8}")
    for row in rows:
        seen = row["labeled"] * args.epochs
        candidates = min(args.subset or args.n, args.n - row["labeled"])
        query, test = row["query_seconds"], row["eval_seconds"]
        print(f"{row['trial']:>5} {row['cycle']:>5} {row['labeled']:>8} {row['train_seconds']:>9.2f} "
              f"{seen / row['train_seconds']:>12.0f} {test:>8.2f} {args.test / test:>11.0f} "
              f"{row['diagnostics_seconds']:>8.2f} {query:>8.2f} "
              f"{(candidates / query if query > 0 else float('nan')):>12.0f} {row['wall_seconds']:>8.2f}")
    sums = {k: sum(r[f"{k}_seconds"] for r in rows) for k in ("train", "eval", "diagnostics", "query", "wall")}
    print(f"whole run {total:.1f} s for {args.trials} trial(s); the trials' steps: train {sums['train']:.1f} s, test "
          f"{sums['eval']:.1f} s, diagnostics {sums['diagnostics']:.1f} s, query {sums['query']:.1f} s, wall "
          f"{sums['wall']:.1f} s (summed over trials; with --parallel-trials they overlap in time); the rest of "
          f"the whole run is data preparation and set-up")
    extrapolate(rows, args)


def extrapolate(rows: list[dict], args: argparse.Namespace) -> None:
    """The full protocol's time per trial from the measured cycles (see the module's doc)."""
    first = [r for r in rows if r["trial"] == rows[0]["trial"]]
    if not first:
        return
    last = first[-1]
    rate = last["labeled"] * args.epochs / last["train_seconds"]  # the largest cycle, its fixed costs included
    per_cycle = {k: float(np.mean([r[f"{k}_seconds"] for r in first])) for k in ("eval", "diagnostics")}
    if args.diagnostics != "every":  # recorded once (the last cycle), not every cycle
        per_cycle["diagnostics"] = sum(r["diagnostics_seconds"] for r in first) / args.full_cycles
    queries = [r["query_seconds"] for r in first if r["query_seconds"] > 0]
    query = float(np.mean(queries)) if queries else 0.0
    labeled = [args.initial + c * args.budget for c in range(args.full_cycles)]
    full_train = sum(labeled) * args.full_epochs / rate
    total = (full_train + args.full_cycles * (per_cycle["eval"] + per_cycle["diagnostics"])
             + (args.full_cycles - 1) * query)
    print(f"largest measured cycle: {rate:.0f} training img/s (its fixed costs included); per cycle: test "
          f"{per_cycle['eval']:.2f} s, diagnostics {per_cycle['diagnostics']:.2f} s, query {query:.2f} s")
    print(f"extrapolated full protocol ({args.full_cycles} cycles x {args.full_epochs} epochs, {labeled[0]} -> "
          f"{labeled[-1]} labels) at that rate: {total:.0f} s = {total / 60:.1f} min per trial "
          f"(training {full_train:.0f} s; an upper estimate: larger cycles amortise the fixed costs better)")

if __name__ == "__main__":
    main()
