"""Pure score and selection functions: tensors in, one score per item (or the picked items)
out; higher = more worth labeling unless the docstring says otherwise.  They never touch the
pool, the store or a trainer, so each is unit-tested on small arrays."""
from .bayesian import bald, mc_entropy, predictive_variance
from .gradnorm import gradient_norm_scores
from .selection import k_center_greedy, kmeans_pp_factored
from .uncertainty import entropy, least_confidence, margin, oui

__all__ = ["bald", "entropy", "gradient_norm_scores", "k_center_greedy", "kmeans_pp_factored", "least_confidence",
           "margin", "mc_entropy", "oui", "predictive_variance"]
