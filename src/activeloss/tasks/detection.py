"""Object detection with SSD: per-image MultiBox loss, mAP@0.5 by the VOC protocol, detection entropy.

Targets of N images are a float32 tensor (N, K, 6): up to K objects per image as (class, x1,
y1, x2, y2, difficult) in input pixels (the image spans [0, W] x [0, H]), padded with rows of
class -1; K is the dataset's largest object count.  One tensor per set keeps the pool, the
trainer and the store indexing targets as they index any other.

The model (an SSD, :mod:`activeloss.models.ssd`) outputs one tensor (B, D, 4 + C + 1) per
batch: for each of its D default boxes the four offsets, then C + 1 class logits (0 is the
background).  The default boxes come from the model's name and the input size
(:meth:`DetectionTask.configure`), so the output stays one tensor that the trainer and the
evaluator concatenate like any other.

Detections are SSD's test-time ones: per class the default boxes with a probability above
0.01, at most 200 per class, NMS at IoU 0.45, then the 200 best of the image.  The entropy of
an image (Learning Loss's baseline) is the mean of the softmax entropies (over the C + 1
classes) of its detections; an image without one has entropy 0.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError, DataError, PoolError
from .base import ENTROPY, Metric, Task
from .box_augment import AUGMENTS, augment_batch
from .boxes import decode, nms
from .multibox import multibox_loss
from .voc_map import voc_map

if TYPE_CHECKING:
    from ..config import Settings
    from ..data import Dataset

#: SSD's test-time detection: probability floor, candidates per class, NMS IoU, detections per image
CONFIDENCE, PER_CLASS, NMS_IOU, TOP_K = 0.01, 200, 0.45, 200
#: the IoU at which a detection counts (VOC)
MAP_IOU = 0.5
#: NMS of a chunk of images at a time, so the (n x n) suppression matrices stay this small
_NMS_ELEMENTS = 1 << 20


def box_targets(objects: list[list[tuple[int, float, float, float, float, int]]], max_boxes: int | None = None
                ) -> torch.Tensor:
    """Targets (N, K, 6) from each image's list of (class, x1, y1, x2, y2, difficult)."""
    k = max(max_boxes or 0, max((len(o) for o in objects), default=0))
    out = torch.full((len(objects), k, 6), -1.0)
    out[..., 1:] = 0.0
    for i, rows in enumerate(objects):  # building a dataset once, from Python lists
        if rows:
            out[i, : len(rows)] = torch.tensor(rows, dtype=torch.float32)
    return out


class DetectionTask(Task):
    """Boxes per image; see the module docstring for the targets, outputs and detections."""

    name = "detection"
    metrics = (Metric("map", higher_is_better=True, percent=True,
                      description="mean average precision at IoU 0.5 by the VOC protocol (difficult objects "
                                  "ignored; 11-point interpolation unless --detection-ap all-point)"),)
    offers = frozenset({ENTROPY})
    input_augment = False
    #: DNAL's module learns the lagged target network's loss, which on detection runs to 10-20 early
    #: in training (its BatchNorm statistics lag): with MSE the module's gradient through the taps
    #: sends the detector to NaN within a few epochs (raccoon, lr 0.01-0.05); Huber keeps it stable
    option_defaults = {"double-branch": {"module_loss": "huber"}}

    def __init__(self, num_classes: int | None = None, priors: torch.Tensor | None = None,
                 image_size: tuple[int, int] | None = None, max_boxes: int | None = None, use_07: bool = True,
                 augment: str = "none") -> None:
        self.num_classes, self.priors, self.image_size = num_classes, priors, image_size
        self.max_boxes, self.use_07, self.augment_mode = max_boxes, use_07, augment
        self._on: dict[torch.device, torch.Tensor] = {}

    # -- configuration ----------------------------------------------------------
    def configure(self, data: Dataset, settings: Settings) -> None:
        from ..models.ssd import default_boxes_of

        self.num_classes = data.num_classes
        self.image_size = (int(data.input_shape[1]), int(data.input_shape[2]))
        self.max_boxes = int(data.y_train.shape[1])
        self.use_07 = settings.detection_ap == "voc07"
        self.augment_mode = settings.detection_augment or "ssd"
        self.priors = default_boxes_of(settings.model, tuple(data.input_shape))
        self._on = {}

    def _priors(self, outputs: torch.Tensor) -> torch.Tensor:
        if self.priors is None:
            raise ConfigError("the detection task needs the model's default boxes: use an SSD model (ssd300, "
                              "ssd-small) or DetectionTask(priors=...)")
        if outputs.shape[1] != self.priors.shape[0]:
            raise ConfigError(f"the model predicts for {outputs.shape[1]} default boxes, the detection task has "
                              f"{self.priors.shape[0]}: the model and the task's priors disagree")
        if outputs.device not in self._on:
            self._on[outputs.device] = self.priors.to(outputs.device)
        return self._on[outputs.device]

    # -- data ----------------------------------------------------------------------
    def validate_targets(self, data: Dataset) -> None:
        if not data.is_image:
            raise DataError(f"{data.name}: detection needs images (N, C, H, W), got rows")
        if not data.class_names:
            raise DataError(f"{data.name}: detection needs the class names")
        for split, y in (("train", data.y_train), ("test", data.y_test)):
            if not y.is_floating_point() or y.dim() != 3 or y.shape[-1] != 6:
                raise DataError(f"{data.name}: {split} detection targets must be float (N, K, 6) = (class, x1, y1, "
                                f"x2, y2, difficult) padded with class -1; got {tuple(y.shape)}")
            problem = _first_problem(y, data.num_classes)
            if problem is not None:
                raise DataError(f"{data.name}: {split} {problem}")

    def output_size(self, data: Dataset) -> int:
        return data.num_classes + 1

    def empty_targets(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((n, *like.shape[1:]), float("nan"), dtype=torch.float32)

    def check_labels(self, labels: torch.Tensor, num_classes: int) -> None:
        if labels.dim() != 3 or labels.shape[-1] != 6:
            raise PoolError("detection labels are (K, 6) rows of (class, x1, y1, x2, y2, difficult) per image")
        problem = _first_problem(labels, num_classes)
        if problem is not None:
            raise PoolError(problem)

    # -- the store ---------------------------------------------------------------------
    def encode(self, targets: torch.Tensor) -> list[Any]:
        """Per image a list of ``{"class": c, "box": [x1, y1, x2, y2], "difficult": 0 or 1}``
        (float32 values become Python floats exactly, so JSON keeps them bit for bit)."""
        out = []
        for rows in targets.detach().float().cpu().tolist():
            out.append([{"class": int(r[0]), "box": r[1:5], "difficult": int(r[5])} for r in rows if r[0] >= 0])
        return out

    def decode(self, values: list[Any]) -> torch.Tensor:
        """Each value as :meth:`encode` writes it (padded to the task's K), or rows of a target tensor."""
        images = []
        for v in values:
            try:
                rows = [(int(o["class"]), *(float(a) for a in o["box"]), int(o.get("difficult", 0)))
                        if isinstance(o, dict) else tuple(float(a) for a in o) for o in v]
            except (TypeError, KeyError, ValueError):
                raise PoolError('detection labels are lists of {"class": c, "box": [x1, y1, x2, y2], '
                                '"difficult": 0 or 1}') from None
            if any(len(r) != 6 for r in rows):
                raise PoolError("a detection box needs 4 coordinates: [x1, y1, x2, y2]")
            images.append([r for r in rows if r[0] >= 0])
        longest = max((len(r) for r in images), default=0)
        if self.max_boxes is not None and longest > self.max_boxes:
            raise PoolError(f"a label holds {longest} boxes; this dataset's images hold at most {self.max_boxes}")
        return box_targets(images, self.max_boxes)  # type: ignore[arg-type]

    # -- training and evaluation ---------------------------------------------------------
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        priors = self._priors(outputs)
        return multibox_loss(outputs[..., :4], outputs[..., 4:], targets.to(outputs.device), priors)

    def detect(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Detections (N, TOP_K, 6) = (class, score, x1, y1, x2, y2), padded with class -1, and
        the entropy (N,) of each image's detections."""
        dets, ents = [], []
        if outputs.shape[0] == 0:
            return outputs.new_zeros(0, TOP_K, 6), outputs.new_zeros(0)
        classes = outputs.shape[-1] - 5
        per = min(PER_CLASS, outputs.shape[1])
        chunk = max(1, _NMS_ELEMENTS // (classes * per * per))
        for part in outputs.float().split(chunk):  # chunks of images, for memory
            d, e = self._detect(part)
            dets.append(d)
            ents.append(e)
        return torch.cat(dets), torch.cat(ents)

    def _detect(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        priors = self._priors(outputs)
        b, d = outputs.shape[:2]
        probs = torch.softmax(outputs[..., 4:], dim=-1)  # (B, D, C+1)
        boxes = decode(outputs[..., :4], priors)
        if self.image_size is not None:
            h, w = self.image_size
            boxes = torch.minimum(boxes.clamp_min(0), boxes.new_tensor([w, h, w, h]))
        classes = probs.shape[-1] - 1
        per = min(PER_CLASS, d)
        top, where = probs[..., 1:].transpose(1, 2).topk(per, dim=-1)  # (B, C, per), best first
        # only candidates above the floor matter: the suppression matrices need no more columns
        # than the (image, class) with the most of them
        width = max(1, int((top > CONFIDENCE).sum(dim=-1).max()))
        top, where = top[..., :width], where[..., :width]
        cand = boxes.gather(1, where.reshape(b, -1, 1).expand(-1, -1, 4))  # (B, C * width, 4)
        # one NMS per (image, class): boxes of two classes never suppress each other
        kept = nms(cand.reshape(b * classes, width, 4), top.reshape(b * classes, width), NMS_IOU,
                   valid=top.reshape(b * classes, width) > CONFIDENCE).reshape(b, -1)
        scores, prior = top.reshape(b, -1), where.reshape(b, -1)
        label = torch.arange(classes, device=outputs.device).repeat_interleave(width).expand(b, -1)
        ranked = torch.where(kept, scores, torch.full_like(scores, -1.0))
        best, pick = ranked.topk(min(TOP_K, ranked.shape[1]), dim=1)
        real = best >= 0
        out = torch.cat([label.gather(1, pick)[..., None].float(), best[..., None],
                         cand.gather(1, pick[..., None].expand(-1, -1, 4))], dim=-1)
        out = torch.where(real[..., None], out, torch.full_like(out, -1.0))
        if out.shape[1] < TOP_K:
            out = torch.cat([out, out.new_full((b, TOP_K - out.shape[1], 6), -1.0)], dim=1)
        p = probs.gather(1, prior.gather(1, pick)[..., None].expand(-1, -1, classes + 1))
        ent = -(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1)  # (B, top)
        count = real.sum(dim=1)
        entropy = torch.where(count > 0, (ent * real).sum(dim=1) / count.clamp_min(1), torch.zeros_like(ent[:, 0]))
        return out, entropy

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Detections (N, 200, 6) = (class, score, x1, y1, x2, y2) in input pixels, class -1 padding."""
        return self.detect(outputs)[0]

    def evaluate(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        detections = self.predict(outputs)
        classes = self.num_classes if self.num_classes is not None else outputs.shape[-1] - 5
        value, _ = voc_map(detections, targets.to(detections.device), classes, MAP_IOU, self.use_07)
        return {"map": value}

    def entropy(self, outputs: torch.Tensor) -> torch.Tensor:
        return self.detect(outputs)[1]

    def augment(self, x: torch.Tensor, targets: torch.Tensor,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """SSD's augmentation of the whole batch (:mod:`.box_augment`), boxes moved with the images."""
        if self.augment_mode == "none" or x.dim() != 4:
            return x, targets
        return augment_batch(x, targets, gen, AUGMENTS[self.augment_mode])


def _first_problem(y: torch.Tensor, num_classes: int) -> str | None:
    """A description of the first malformed detection target, or None."""
    cls = y[..., 0]
    real = cls >= 0
    bad_cls = ~((cls == -1) | (real & (cls == cls.round()) & (cls < max(num_classes, 1))))
    if bool(bad_cls.any()):
        i = int(bad_cls.nonzero()[0, 0])
        return f"target {i}: a class must be an index below {num_classes} (or -1 for padding)"
    box = y[..., 1:5]
    bad_box = real & ~(torch.isfinite(box).all(dim=-1) & (box[..., 2] > box[..., 0]) & (box[..., 3] > box[..., 1]))
    if bool(bad_box.any()):
        i = int(bad_box.nonzero()[0, 0])
        return f"target {i}: a box needs finite x1 < x2 and y1 < y2"
    diff = y[..., 5]
    bad_diff = real & ~((diff == 0) | (diff == 1))
    if bool(bad_diff.any()):
        i = int(bad_diff.nonzero()[0, 0])
        return f"target {i}: difficult must be 0 or 1"
    return None


__all__ = ["DetectionTask", "box_targets"]
