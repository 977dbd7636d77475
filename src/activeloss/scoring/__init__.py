"""Pure score functions: tensors in, one score per item out (higher = more worth labeling
unless the docstring says otherwise).  They never touch the pool, the store or a trainer,
so each is unit-tested on small arrays."""
from .bayesian import bald, mc_entropy
from .gradnorm import gradient_norm_scores
from .uncertainty import entropy, least_confidence, margin

__all__ = ["bald", "mc_entropy", "entropy", "gradient_norm_scores", "least_confidence", "margin"]
