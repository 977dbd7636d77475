"""What acquisitions need to know about a model's structure, for any ``nn.Module``.

Built-in models expose ``features(x)`` (the pooled penultimate features) and
``classifier`` (the final ``nn.Linear``).  A user's model need not: its embedding is then
the input of its last ``nn.Linear`` (in registration order), read with a forward pre-hook,
so core-set and BADGE work on any network ending with a linear layer.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import ConfigError


def last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"{type(model).__name__} has no features() method and no nn.Linear layer, so it has no "
                          "embedding for this acquisition; give it a features(x) method")
    return linears[-1]


def features_of(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f(x)``: the model's embedding of a batch (its ``features`` method, or the input of its
    last ``nn.Linear``)."""
    method = getattr(model, "features", None)
    if callable(method):
        return method
    linear = last_linear(model)

    def embed(x: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        handle = linear.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            model(x)
        finally:
            handle.remove()
        if not seen:
            raise ConfigError(f"the last nn.Linear of {type(model).__name__} was not called in its forward")
        return seen[-1].flatten(1)

    return embed


def split_classifier(model: nn.Module) -> tuple[nn.Sequential, nn.Linear]:
    """``(head, linear)`` such that ``model.classifier(h) == linear(head(h))``.

    ``model.classifier`` is either the last ``nn.Linear`` itself (every built-in model) or,
    after the ``mc-dropout`` objective, an ``nn.Sequential`` ending with it.  ``head`` is an
    ``nn.Sequential`` of what comes before the Linear (empty for a bare Linear).
    """
    clf = getattr(model, "classifier", None)
    if isinstance(clf, nn.Linear):
        return nn.Sequential(), clf
    if isinstance(clf, nn.Sequential) and len(clf) > 0 and isinstance(clf[-1], nn.Linear):
        return nn.Sequential(*list(clf)[:-1]), clf[-1]
    raise ConfigError(
        f"{type(model).__name__}.classifier must be an nn.Linear (or an nn.Sequential ending with one) "
        "for this acquisition; got " + type(clf).__name__
    )
