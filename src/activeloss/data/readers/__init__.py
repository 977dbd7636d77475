"""Dataset readers: a spec string (``digits`` or ``KIND:PATH``) becomes a validated :class:`Dataset`.

One file per format, each registering a :class:`Reader` in ``READERS``; adding a format is
one file plus one import line below.  Every problem with the user's files is raised as
:class:`~activeloss.errors.DataError` with one line naming the file and the problem, never
as a numpy/Pillow/pickle traceback.  Nothing is downloaded and nothing is written into the
user's data folders.
"""
from __future__ import annotations

# Each format registers itself in READERS when imported; the order here is the order of the help
# text (isort: off keeps it).
# isort: off
from .base import READERS, Reader, ReadOptions, load_dataset, parse_spec, reader_of
from . import digits, mnist, cifar, svhn, folder, npz, csv, uci, diabetes  # noqa: F401
from . import synthetic_pose, coco_keypoints, mpii, dlc  # noqa: F401
from . import synthetic_shapes, voc  # noqa: F401
# isort: on

__all__ = ["READERS", "ReadOptions", "Reader", "load_dataset", "parse_spec", "reader_of"]
