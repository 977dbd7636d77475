"""Model inputs: the dataset's tensors on the device, normalised batch by batch."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from . import augment as augmentation
from .dataset import Dataset
from .streaming import Images


@dataclass
class Inputs:
    """Train and test inputs on ``device`` with the normalisation of the train set.

    A folder too large for memory stays on disk (:class:`~activeloss.data.streaming.ImageFiles`)
    and each batch is decoded when it is taken; its statistics come from a seeded sample.
    Images stay ``uint8`` until a batch is taken (4x less memory, and the whole
    CIFAR-size set fits on a GPU) and are scaled to [0, 1] then; float images and rows
    are used as they are.  Normalisation uses the per-channel (images) or per-feature
    (rows) mean and std of the training inputs (all of them: inputs are not labels).
    Targets are whatever the task stores (class indices, real values).
    """

    x_train: Images
    y_train: torch.Tensor
    x_test: Images
    y_test: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    augment_ops: tuple[str, ...]
    pad: int
    device: torch.device
    memory_format: torch.memory_format = torch.contiguous_format  # of image batches (channels_last on GPU)

    @classmethod
    def from_dataset(cls, data: Dataset, device: torch.device, augment_ops: tuple[str, ...], pad: int,
                     memory_format: torch.memory_format = torch.contiguous_format) -> Inputs:
        x = data.x_train
        mean, std = data.input_statistics()
        shape: tuple[int, ...] = (1, -1, 1, 1) if data.is_image else (1, -1)
        if not data.is_image:
            augment_ops = ()
        return cls(
            x_train=x.to(device),
            y_train=data.y_train.to(device),
            x_test=data.x_test.to(device),
            y_test=data.y_test.to(device),
            mean=mean.reshape(shape).to(device),
            std=std.reshape(shape).to(device),
            augment_ops=augment_ops,
            pad=pad,
            device=device,
            memory_format=memory_format,
        )

    @property
    def is_image(self) -> bool:
        return self.x_train.dim() == 4

    def _normalise(self, x: torch.Tensor, gen: torch.Generator | None,
                   drawn: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        x = x.to(self.device)  # a streamed folder's batch is decoded on the CPU
        if self.is_image:
            x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
            if gen is not None and self.augment_ops:
                drawn = self.draw_augmentation(x.shape[0], gen)
            if drawn:
                x = augmentation.apply(x, self.pad, drawn)
            return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)
        return (x - self.mean) / self.std

    def draw_augmentation(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """The random parameters of ``n`` training images' augmentation (none for rows), as
        :meth:`train_batch` draws them; :meth:`augmented_batch` applies them."""
        if not self.is_image or not self.augment_ops:
            return {}
        return augmentation.draw(n, self.augment_ops, self.pad, gen, self.device)

    def augmented_batch(self, indices: torch.Tensor, drawn: dict[str, torch.Tensor]) -> torch.Tensor:
        """Normalised training inputs augmented with parameters drawn beforehand:
        ``augmented_batch(i, draw_augmentation(len(i), gen))`` equals ``train_batch(i, gen)``."""
        return self._normalise(self.x_train[indices], None, drawn)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """New inputs (shaped like the training ones, on this device) as the model sees them."""
        return self._normalise(x, None)

    def train_batch(self, indices: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Normalised training inputs; augmented when a generator is given (training only)."""
        return self._normalise(self.x_train[indices.to(self.device)], gen)

    def test_batch(self, start: int, stop: int) -> torch.Tensor:
        return self._normalise(self.x_test[start:stop], None)

    def batches(self, indices: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        """Normalised, un-augmented training inputs for ``indices`` in order (queries, embeddings)."""
        for start in range(0, indices.numel(), batch_size):
            yield self.train_batch(indices[start : start + batch_size])
