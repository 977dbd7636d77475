"""Dataset readers: turn a source on disk (or scikit-learn's bundled digits) into tensors."""
from .dataset import Dataset
from .readers import KINDS, load_dataset

__all__ = ["Dataset", "KINDS", "load_dataset"]
