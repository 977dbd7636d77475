"""Benchmark of activeloss.scoring.k_center_greedy against the public Core-set code.

On random Gaussian features (--n candidates, --m labeled, --dim), times:
  (a) activeloss.scoring.k_center_greedy for --k picks (best of --repeats runs);
  (b) the common public implementation (numpy, float32): build the full (N+M) x (N+M)
      pool distance matrix, then at every pick copy the unlabeled-rows x labeled-columns
      sub-matrix out of it with boolean masks and take its row minimum.  That version
      costs a fixed amount per pick, so by default it runs only --naive-k picks and its
      time for --k picks is extrapolated linearly (matrix build + per-pick * k); the
      output says when that is the case.
and prints both times, the ratio, and whether the picks are identical on the portion
compared (the first --naive-k picks, in order).  No assertions.

    python bench/bench_kcenter.py --n 10000 --m 5000 --dim 512 --k 1000 --threads 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="number of candidates")
    ap.add_argument("--m", type=int, default=5_000, help="number of labeled points")
    ap.add_argument("--dim", type=int, default=512, help="feature dimension")
    ap.add_argument("--k", type=int, default=1000, help="number of picks")
    ap.add_argument("--naive-k", type=int, default=20, help="picks run by the public version (extrapolated to --k)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch and numpy (default: library default)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of k_center_greedy (best is reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu",
                    help="where k_center_greedy runs: cpu or cuda (the public version is numpy)")
    return ap.parse_args()


ARGS = parse_args()
if ARGS.threads is not None:  # must be set before numpy's BLAS starts
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

try:
    import activeloss  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from activeloss.scoring import k_center_greedy  # noqa: E402


def public_kcenter(cand: np.ndarray, lab: np.ndarray, k: int) -> tuple[list[int], float, float]:
    """The public code's k-center greedy; returns (picks in order, build s, per-pick s).

    Pool layout: candidates are pool rows 0..N-1, labeled points N..N+M-1.  The only
    change from the public code is a clamp at 0 before the square root (the public code
    can take sqrt of a slightly negative number) and that picks are kept in order.
    """
    n = cand.shape[0]
    t0 = time.perf_counter()
    emb = np.concatenate([cand, lab])
    dist_mat = np.matmul(emb, emb.T)
    sq = np.array(dist_mat.diagonal()).reshape(-1, 1)
    dist_mat *= -2
    dist_mat += sq
    dist_mat += sq.T
    np.maximum(dist_mat, 0, out=dist_mat)
    dist_mat = np.sqrt(dist_mat)
    labeled_idxs = np.zeros(emb.shape[0], dtype=bool)
    labeled_idxs[n:] = True
    build = time.perf_counter() - t0

    t0 = time.perf_counter()
    picks: list[int] = []
    pool = np.arange(emb.shape[0])
    for _ in range(k):
        mat = dist_mat[~labeled_idxs, :][:, labeled_idxs]
        q_idx_ = mat.min(axis=1).argmax()
        q_idx = pool[~labeled_idxs][q_idx_]
        labeled_idxs[q_idx] = True
        picks.append(int(q_idx))
    per_pick = (time.perf_counter() - t0) / max(k, 1)
    return picks, build, per_pick


def main() -> None:
    a = ARGS
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(a.seed)
    cand = torch.randn(a.n, a.dim, generator=g)
    lab = torch.randn(a.m, a.dim, generator=g)
    print(
        f"k-center greedy: N={a.n} candidates, M={a.m} labeled, dim={a.dim}, k={a.k}, float32, "
        f"torch threads={torch.get_num_threads()}, "
        f"device={torch.cuda.get_device_name() if a.device.startswith('cuda') else 'cpu'}"
    )

    device = torch.device(a.device)
    cand_d, lab_d = cand.to(device), lab.to(device)
    k_center_greedy(cand_d[:100], lab_d[:10], 5)  # warm-up
    best = float("inf")
    picks = None
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        picks = k_center_greedy(cand_d, lab_d, a.k).cpu()  # .cpu() waits for the GPU
        best = min(best, time.perf_counter() - t0)
    assert picks is not None
    print(f"  activeloss k_center_greedy : {best:8.3f} s  (best of {a.repeats})")

    nk = min(a.naive_k, a.k)
    if a.m == 0 or nk == 0:
        print("  public version             : not run (it needs M > 0 and --naive-k > 0)")
        return
    naive_picks, build, per_pick = public_kcenter(cand.numpy(), lab.numpy(), nk)
    naive_total = build + per_pick * a.k
    how = "measured" if nk == a.k else f"EXTRAPOLATED from {nk} picks"
    print(
        f"  public version             : {naive_total:8.3f} s  ({how}: matrix build {build:.3f} s "
        f"+ {per_pick * 1000:.2f} ms/pick x {a.k})"
    )
    print(f"  ratio public / activeloss  : {naive_total / best:8.1f}x")
    same = picks[:nk].tolist() == naive_picks
    print(f"  picks identical on the first {nk} picks: {same}")
    if not same:
        first = next(i for i, (x, y) in enumerate(zip(picks[:nk].tolist(), naive_picks)) if x != y)
        print(f"    first difference at pick {first}: {picks[first].item()} vs {naive_picks[first]}")


if __name__ == "__main__":
    main()
