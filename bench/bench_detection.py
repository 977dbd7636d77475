"""Detection throughput: training, evaluation and queries of an SSD through the library's Learner.

On seeded noise images with 1-3 random boxes each (throughput does not depend on what the
images show; an untrained detector is the worst case for NMS, every candidate clearing the
0.01 floor), it trains ``--model`` for ``--epochs`` on ``--n`` labeled images (plain, and with
Learning Loss's module), then times the test-set evaluation (forward, detections, mAP) and a
query over the unlabeled pool by entropy (forward + NMS per image) and by predicted loss
(forward + the module), printing images per second with the device named.  Figures only, no
pass/fail.

    python bench/bench_detection.py                                   # the small SSD, 64x64, CPU
    python bench/bench_detection.py --model ssd300 --n 16 --pool 16 --test 16 --batch-size 8   # SSD300 on a CPU
    python bench/bench_detection.py --model ssd300 --device cuda --n 2048 --pool 4096 --test 1024 --batch-size 32
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

try:
    import activeloss  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from activeloss import Learner  # noqa: E402
from activeloss.data import Dataset  # noqa: E402
from activeloss.tasks.detection import box_targets  # noqa: E402


def noise_boxes(n: int, side: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` noise images (uint8) and 1-3 random boxes each."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)
    count = torch.randint(1, 4, (n,), generator=g)
    corner = torch.rand(n, 3, 2, generator=g) * side * 0.6
    size = (0.1 + torch.rand(n, 3, 2, generator=g) * 0.3) * side
    cls = torch.randint(0, classes, (n, 3), generator=g)
    objects = [[(int(cls[i, j]), *corner[i, j].tolist(), *(corner[i, j] + size[i, j]).tolist(), 0)
                for j in range(int(count[i]))] for i in range(n)]
    return x, box_targets(objects)  # type: ignore[arg-type]


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def timed(fn, device: str) -> float:
    """Seconds ``fn()`` takes, the device's queue drained before and after."""
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="ssd-small", choices=("ssd-small", "ssd300"))
    p.add_argument("--image-size", type=int, default=None, help="default: 64 for ssd-small, 300 for ssd300")
    p.add_argument("--n", type=int, default=512, help="labeled training images")
    p.add_argument("--pool", type=int, default=1024, help="unlabeled images a query scores")
    p.add_argument("--test", type=int, default=256, help="test images")
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--augment", default="ssd", choices=("ssd", "light", "none"))
    args = p.parse_args(argv)
    side = args.image_size or (64 if args.model == "ssd-small" else 300)
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = noise_boxes(args.n + args.pool + args.test, side, args.classes, 0)
    train = args.n + args.pool
    data = Dataset("noise-boxes", x[:train], y[:train], x[train:], y[train:], [f"c{i}" for i in range(args.classes)],
                   task="detection").validate()
    print(f"{args.model} on {side}x{side}, {args.classes} classes, device: {device_name(args.device)}, "
          f"torch {torch.__version__}")
    for strategy in ("random", "llal"):
        learner = Learner(args.model, data, strategy, epochs=args.epochs, batch_size=args.batch_size, lr=1e-3,
                          eval_batch_size=args.eval_batch_size, device=args.device, threads=args.threads,
                          detection_augment=args.augment, seed=0)
        learner.teach(torch.arange(args.n), data.y_train[: args.n])
        fit = timed(learner.fit, args.device)
        print(f"  {strategy:6s} training   {args.n * args.epochs / fit:9.1f} images/s  ({args.epochs} epochs of "
              f"{args.n}, batch {args.batch_size}, {args.augment} augmentation)")
        evaluation = timed(learner.evaluate, args.device)
        print(f"  {strategy:6s} evaluation {args.test / evaluation:9.1f} images/s  (forward, detections, mAP)")
        pool = torch.arange(args.n, args.n + args.pool)
        if strategy == "random":  # what the entropy acquisition does: outputs, then NMS and entropies
            query = timed(lambda: learner.task.entropy(learner.outputs(pool)), args.device)  # noqa: B023
            print(f"  entropy query     {args.pool / query:9.1f} images/s  (forward, NMS, entropy of the detections)")
        else:
            query = timed(lambda: learner.query(min(100, args.pool)), args.device)  # noqa: B023
            print(f"  llal query        {args.pool / query:9.1f} images/s  (forward and the loss-prediction module)")


if __name__ == "__main__":
    main()
