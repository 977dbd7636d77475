"""Data: the in-memory :class:`Dataset`, readers that build one from files (``READERS``), and the
model-facing :class:`Inputs` (normalised, augmented batches on the device)."""
from .dataset import Dataset
from .inputs import Inputs
from .readers import READERS, ReadOptions, load_dataset

__all__ = ["Dataset", "Inputs", "READERS", "ReadOptions", "load_dataset"]
