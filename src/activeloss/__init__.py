"""activeloss: deep active learning built around loss prediction.

A strategy is an *objective* (what is trained beside the model) paired with an
*acquisition* (how the next batch is chosen); see :mod:`activeloss.strategies`.
"""
from .config import Settings
from .errors import ActiveLossError, ConfigError, DataError, PoolError

__version__ = "0.1.0"

__all__ = ["ActiveLossError", "ConfigError", "DataError", "PoolError", "Settings", "__version__"]
