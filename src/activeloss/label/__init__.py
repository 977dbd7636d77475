"""The labeling page: a small web server over a labeling project (the optional extra ``label``).

``activeloss label PROJECT`` calls :func:`activeloss.label.server.serve`.  Nothing here imports
FastAPI until a server is made, so ``import activeloss`` works without the extra.
"""
from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
