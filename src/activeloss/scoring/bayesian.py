"""Scores from T stochastic (MC-Dropout) passes; higher means more worth labeling.

``probs`` has shape (T, N, C): pass t's softmax for item n.  Natural log throughout,
with probabilities clamped at 1e-12 inside the logs so that 0 * log 0 counts as 0.
"""
import torch

_EPS = 1e-12


def _check(probs: torch.Tensor) -> None:
    if not isinstance(probs, torch.Tensor) or probs.dim() != 3:
        shape = tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__
        raise ValueError(
            f"probs must be a 3-d tensor (T passes, N items, C classes), got {shape}"
        )
    if probs.shape[0] == 0:
        raise ValueError("probs must hold at least one stochastic pass (T >= 1)")


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(_EPS))).sum(dim=-1)


def mc_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of the mean prediction over the T passes, one value per item (N,).

    The "max-entropy" MC-Dropout variant: total predictive uncertainty, both what the
    model cannot know (data noise) and what it disagrees with itself about.
    """
    _check(probs)
    return _entropy(probs.mean(dim=0))


def bald(probs: torch.Tensor) -> torch.Tensor:
    """BALD mutual information per item (N,): H[mean_t p_t] - mean_t H[p_t].

    Only the disagreement between passes counts (epistemic uncertainty), so an item the
    passes agree is ambiguous scores 0.  The true value is >= 0 (entropy is concave);
    round-off can make it a hair negative, hence the clamp at 0.
    """
    _check(probs)
    mi = _entropy(probs.mean(dim=0)) - _entropy(probs).mean(dim=0)
    return mi.clamp_min(0.0)


def predictive_variance(values: torch.Tensor) -> torch.Tensor:
    """Variance of T stochastic real-valued predictions per item, summed over outputs (N,).

    ``values`` has shape (T, N, D); the population variance over the T passes (what MC
    dropout estimates as the model's epistemic uncertainty of a regression prediction).
    """
    if not isinstance(values, torch.Tensor) or values.dim() != 3 or values.shape[0] == 0:
        raise ValueError("values must be a 3-d tensor (T >= 1 passes, N items, D outputs)")
    return values.double().var(dim=0, unbiased=False).sum(dim=-1).to(values.dtype)
