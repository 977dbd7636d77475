"""Seeds derived from names, so every random draw of a run can be replayed on its own.

Each draw (the initial set of trial 2, the subset of cycle 5, the weights of a fresh
model...) gets a seed computed from the run seed and a few keys.  Nothing depends on
the order in which earlier draws happened, which is what makes a resumed run give
the same results as an uninterrupted one.
"""
from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed determined by ``seed`` and ``keys`` (stable across processes and platforms)."""
    text = "/".join([str(seed), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def forked(gen: torch.Generator, device: torch.device | str) -> torch.Generator:
    """A generator on ``device`` seeded by one draw from the CPU generator ``gen``.

    Random ops on a GPU need a generator there; drawing its seed from ``gen`` keeps the
    stream determined by the run's named seeds.
    """
    g = torch.Generator(device=device)
    g.manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
    return g


def on_device(gen: torch.Generator, device: torch.device) -> torch.Generator:
    """``gen`` itself on the CPU, a :func:`forked` generator on another device."""
    return gen if device.type == "cpu" else forked(gen, device)


def generator(seed: int, *keys: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed`."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *keys))
    return g
