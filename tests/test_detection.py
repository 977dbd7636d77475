"""Object detection: box geometry, matching, NMS against a brute-force version, the per-image
MultiBox loss, VOC mAP on hand-computed cases, the target codec, the SSD models, the readers on
hand-made folders, batch augmentation, learning a synthetic set, and runs from the API and CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from activeloss.tasks.boxes import decode, default_boxes, encode, iou, match, nms, to_corners
from activeloss.tasks.detection import DetectionTask, box_targets
from activeloss.tasks.multibox import hard_negatives, multibox_parts
from activeloss.tasks.voc_map import average_precision, true_positives, voc_map


def _boxes(n: int, gen: torch.Generator, side: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * side * 0.8
    wh = 2 + torch.rand(n, 2, generator=gen) * side * 0.3
    return torch.cat([xy, xy + wh], dim=-1)


# -- box geometry -----------------------------------------------------------------

def test_iou_on_hand_computed_cases():
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 0, 0]])
    b = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    expected = torch.tensor([[1.0, 50 / 150, 0.0, 0.25], [0, 0, 0, 0]])
    assert torch.allclose(iou(a, b), expected)
    batched = iou(a[None].expand(3, -1, -1), b[None].expand(3, -1, -1))
    assert batched.shape == (3, 2, 4) and torch.allclose(batched[2], expected)


def test_encode_decode_round_trip():
    g = torch.Generator().manual_seed(0)
    priors = torch.cat([torch.rand(50, 2, generator=g) * 100, 5 + torch.rand(50, 2, generator=g) * 40], -1)
    boxes = _boxes(50, g)
    offsets = encode(boxes[None], priors)
    assert torch.allclose(decode(offsets, priors)[0], boxes, atol=1e-4)
    # a box equal to its prior encodes to zero offsets
    assert torch.allclose(encode(to_corners(priors), priors), torch.zeros(50, 4), atol=1e-5)


def test_default_boxes_of_ssd300_are_its_8732_in_order():
    sizes = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    mins = [s / 300 for s in (30, 60, 111, 162, 213, 264)]
    maxs = [s / 300 for s in (60, 111, 162, 213, 264, 315)]
    ratios = [(2,), (2, 3), (2, 3), (2, 3), (2,), (2,)]
    priors = default_boxes(sizes, (300, 300), mins, maxs, ratios)
    assert priors.shape == (8732, 4)
    first = priors[:4]  # the first cell of conv4_3: centre 300/38/2, squares 30 and sqrt(30*60), then 2:1, 1:2
    c = 300 / 38 / 2
    assert torch.allclose(first[:, :2], torch.tensor([[c, c]] * 4))
    assert torch.allclose(first[:, 2:], torch.tensor([[30.0, 30], [math.sqrt(1800)] * 2, [30 * math.sqrt(2), 30 / math.sqrt(2)],
                                                      [30 / math.sqrt(2), 30 * math.sqrt(2)]]), atol=1e-4)
    assert torch.allclose(priors[-1], torch.tensor([150.0, 150, 264 / math.sqrt(2), 264 * math.sqrt(2)]), atol=1e-3)


def _match_loop(truths: torch.Tensor, priors: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SSD's matching, written as its reference code does it, for one image."""
    overlaps = iou(truths, to_corners(priors))
    best_truth_overlap, best_truth = overlaps.max(dim=0)
    best_prior = overlaps.argmax(dim=1)
    best_truth_overlap = best_truth_overlap.clone()
    for j in range(truths.shape[0]):
        best_truth_overlap[best_prior[j]] = 2.0
        best_truth[best_prior[j]] = j
    return best_truth, best_truth_overlap >= threshold


def test_matching_equals_ssds_loop_and_gives_every_truth_a_default_box():
    g = torch.Generator().manual_seed(1)
    priors = torch.cat([torch.rand(300, 2, generator=g) * 100, 5 + torch.rand(300, 2, generator=g) * 30], -1)
    truths = torch.stack([_boxes(4, g) for _ in range(5)])
    valid = torch.tensor([[True] * 4, [True, True, False, False], [True] * 4, [False] * 4, [True, False, False, False]])
    index, positive = match(truths, valid, priors, 0.5)
    for b in range(5):
        k = int(valid[b].sum())
        if k == 0:
            assert not positive[b].any()
            continue
        ref_index, ref_positive = _match_loop(truths[b, :k], priors, 0.5)
        assert torch.equal(positive[b], ref_positive)
        assert torch.equal(index[b][positive[b]], ref_index[ref_positive])
    # a tiny truth overlapping no default box by 0.5 still claims its best one; two truths
    # whose best default box is the same: the later one gets it
    priors = torch.tensor([[10.0, 10, 20, 20], [50, 50, 20, 20]])
    truths = torch.tensor([[[9.0, 9, 11, 11], [8, 8, 12, 12]]])
    index, positive = match(truths, torch.ones(1, 2, dtype=torch.bool), priors)
    assert positive.tolist() == [[True, False]] and index[0, 0] == 1


def test_hard_negative_mining_keeps_three_negatives_per_positive():
    g = torch.Generator().manual_seed(2)
    loss = torch.rand(3, 20, generator=g)
    positive = torch.zeros(3, 20, dtype=torch.bool)
    positive[0, :2] = True  # 2 positives -> 6 negatives
    positive[1, :6] = True  # 6 positives -> all 14 negatives (fewer than 18)
    negatives = hard_negatives(loss, positive)
    assert negatives.sum(dim=1).tolist() == [6, 14, 0]
    assert not (negatives & positive).any()
    chosen = loss[0][negatives[0]]
    others = loss[0][~negatives[0] & ~positive[0]]
    assert chosen.min() > others.max()  # the hardest ones


def _nms_loop(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float) -> torch.Tensor:
    keep = torch.zeros_like(scores, dtype=torch.bool)
    for c in groups.unique().tolist():
        idx = (groups == c).nonzero().flatten()
        order = idx[torch.sort(scores[idx], descending=True, stable=True).indices].tolist()
        while order:
            i = order.pop(0)
            keep[i] = True
            order = [j for j in order if float(iou(boxes[i][None], boxes[j][None])[0, 0]) <= threshold]
    return keep


def test_batched_nms_equals_the_greedy_loop():
    g = torch.Generator().manual_seed(3)
    boxes = torch.stack([_boxes(60, g, side=60) for _ in range(4)])
    scores = torch.rand(4, 60, generator=g)
    groups = torch.randint(0, 3, (4, 60), generator=g)
    kept = nms(boxes, scores, 0.45, groups=groups)
    for b in range(4):
        assert torch.equal(kept[b], _nms_loop(boxes[b], scores[b], groups[b], 0.45))
    valid = scores > 0.3
    kept = nms(boxes, scores, 0.45, groups=groups, valid=valid)
    for b in range(4):
        ref = torch.zeros(60, dtype=torch.bool)
        ref[valid[b]] = _nms_loop(boxes[b][valid[b]], scores[b][valid[b]], groups[b][valid[b]], 0.45)
        assert torch.equal(kept[b], ref)


# -- the per-image MultiBox loss ----------------------------------------------------

def _loss_case(b: int = 4, d: int = 120, classes: int = 3, seed: int = 4):
    g = torch.Generator().manual_seed(seed)
    priors = torch.cat([torch.rand(d, 2, generator=g) * 100, 8 + torch.rand(d, 2, generator=g) * 30], -1)
    loc = torch.randn(b, d, 4, generator=g)
    conf = torch.randn(b, d, classes + 1, generator=g)
    objects = [[(1, 10.0, 10.0, 40.0, 50.0, 0), (0, 50.0, 20.0, 90.0, 60.0, 0)], [(2, 5.0, 60.0, 30.0, 95.0, 0)], [],
               [(0, 30.0, 30.0, 60.0, 60.0, 0), (1, 0.0, 0.0, 20.0, 20.0, 1)]][:b]
    return loc, conf, box_targets(objects), priors


def test_per_image_losses_add_up_to_the_usual_batch_loss():
    loc, conf, targets, priors = _loss_case()
    parts = multibox_parts(loc, conf, targets, priors)
    assert parts.per_image.shape == (4,) and parts.per_image[2] == 0 and parts.positives[2] == 0
    # the usual SSD batch loss, written as its reference code does it, with the batch's positives
    loc_sum = conf_sum = positives = 0.0
    for i in range(4):
        real = (targets[i, :, 0] >= 0) & (targets[i, :, 5] == 0)
        t = targets[i][real]
        index, pos = match(t[None, :, 1:5], torch.ones(1, t.shape[0], dtype=torch.bool), priors)
        index, pos = index[0], pos[0]
        if t.shape[0] == 0:
            pos = torch.zeros(priors.shape[0], dtype=torch.bool)
        labels = torch.where(pos, t[index.clamp_max(max(t.shape[0] - 1, 0)), 0].long() + 1 if t.shape[0] else
                             torch.zeros_like(index), torch.zeros_like(index))
        if pos.any():
            loc_sum += float(F.smooth_l1_loss(loc[i][pos], encode(t[index, 1:5][None], priors)[0][pos], reduction="sum"))
        ce = F.cross_entropy(conf[i], labels, reduction="none")
        n_neg = min(3 * int(pos.sum()), int((~pos).sum()))
        hardest = torch.sort(ce.masked_fill(pos, -1), descending=True).values[:n_neg]
        conf_sum += float(ce[pos].sum() + hardest.sum())
        positives += int(pos.sum())
    usual = (loc_sum + conf_sum) / positives
    assert float(parts.batch) == pytest.approx(usual, rel=1e-5)
    assert float((parts.per_image * parts.positives).sum() / parts.positives.sum()) == pytest.approx(usual, rel=1e-5)
    # each image's loss is its own: the same alone as in the batch
    for i in range(4):
        alone = multibox_parts(loc[i : i + 1], conf[i : i + 1], targets[i : i + 1], priors).per_image
        assert float(alone[0]) == pytest.approx(float(parts.per_image[i]), rel=1e-5, abs=1e-7)


def test_the_task_loss_is_differentiable_per_image():
    loc, conf, targets, priors = _loss_case()
    task = DetectionTask(num_classes=3, priors=priors, image_size=(100, 100))
    outputs = torch.cat([loc, conf], dim=-1).requires_grad_()
    losses = task.loss(outputs, targets)
    losses[0].backward()
    assert outputs.grad is not None and outputs.grad[0].abs().sum() > 0 and outputs.grad[1:].abs().sum() == 0


# -- mAP ------------------------------------------------------------------------------

def _ap_case() -> tuple[torch.Tensor, torch.Tensor]:
    truths = box_targets([[(0, 0.0, 0.0, 10.0, 10.0, 0), (0, 20.0, 20.0, 30.0, 30.0, 1), (1, 50, 50, 60, 60, 0)],
                          [(0, 5.0, 5.0, 15.0, 15.0, 0)]])
    dets = torch.full((2, 4, 6), -1.0)
    dets[0, 0] = torch.tensor([0, 0.9, 0, 0, 10, 10])  # TP
    dets[0, 1] = torch.tensor([0, 0.8, 40, 40, 50, 50])  # FP: nothing there
    dets[1, 0] = torch.tensor([0, 0.7, 5, 5, 15, 15])  # TP
    dets[0, 2] = torch.tensor([0, 0.6, 1, 1, 10, 10])  # FP: the first truth is taken
    dets[0, 3] = torch.tensor([0, 0.5, 20, 20, 30, 30])  # ignored: a difficult object
    dets[1, 1] = torch.tensor([1, 0.4, 50, 50, 60, 60])  # class 1 in the wrong image: FP
    return dets, truths


def test_ap_on_hand_computed_cases():
    dets, truths = _ap_case()
    tp, fp, ignored = true_positives(dets, truths)
    assert tp.tolist() == [[True, False, False, False], [True, False, False, False]]
    assert fp.tolist() == [[False, True, True, False], [False, True, False, False]]
    assert ignored.tolist() == [[False, False, False, True], [False, False, False, False]]
    # class 0 in score order: TP FP TP FP (ignored): recall .5 .5 1 1 1, precision 1 .5 2/3 .5 .5
    value, aps = voc_map(dets, truths, 3, use_07=True)
    assert aps[0] == pytest.approx(28 / 33)  # 6 points at precision 1, 5 at 2/3
    assert aps[1] == 0.0 and math.isnan(aps[2])  # class 2 has no object: left out of the mean
    assert value == pytest.approx((28 / 33) / 2)
    _, aps = voc_map(dets, truths, 3, use_07=False)
    assert aps[0] == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    recall, precision = torch.tensor([0.5, 1.0]), torch.tensor([1.0, 1.0])
    assert average_precision(recall, precision) == pytest.approx(1.0)
    assert average_precision(recall, precision, use_07=False) == pytest.approx(1.0)
    assert average_precision(torch.zeros(0), torch.zeros(0)) == 0.0


def _devkit_ap(dets: torch.Tensor, truths: torch.Tensor, c: int, use_07: bool) -> float:
    """The VOC devkit's voc_eval for class ``c``, as its loop does it (no "+1": continuous boxes)."""
    records = {}
    positives = 0
    for i in range(truths.shape[0]):
        rows = truths[i][truths[i, :, 0] == c]
        records[i] = (rows[:, 1:5], rows[:, 5] > 0, [False] * rows.shape[0])
        positives += int((rows[:, 5] == 0).sum())
    found = [(float(d[1]), i, d[2:6]) for i in range(dets.shape[0]) for d in dets[i] if int(d[0]) == c]
    found.sort(key=lambda f: -f[0])
    tp, fp = [], []
    for _, i, box in found:
        boxes, difficult, taken = records[i]
        best, j = -math.inf, -1
        if boxes.shape[0]:
            overlaps = iou(box[None], boxes)[0]
            best, j = float(overlaps.max()), int(overlaps.argmax())
        if best > 0.5:
            if difficult[j]:
                tp.append(0.0), fp.append(0.0)
            elif not taken[j]:
                taken[j] = True
                tp.append(1.0), fp.append(0.0)
            else:
                tp.append(0.0), fp.append(1.0)
        else:
            tp.append(0.0), fp.append(1.0)
    tps, fps = torch.tensor(tp, dtype=torch.float64).cumsum(0), torch.tensor(fp, dtype=torch.float64).cumsum(0)
    recall = tps / positives
    precision = tps / torch.clamp(tps + fps, min=1e-12)
    if use_07:
        return sum(float(precision[recall >= t].max()) if bool((recall >= t).any()) else 0.0
                   for t in torch.linspace(0, 1, 11).double().tolist()) / 11
    r = [0.0, *recall.tolist(), 1.0]
    p = [0.0, *precision.tolist(), 0.0]
    for k in range(len(p) - 2, -1, -1):
        p[k] = max(p[k], p[k + 1])
    return sum((r[k + 1] - r[k]) * p[k + 1] for k in range(len(r) - 1) if r[k + 1] != r[k])


@pytest.mark.parametrize("use_07", [True, False])
def test_map_equals_the_devkit_loop_on_random_detections(use_07):
    g = torch.Generator().manual_seed(8)
    n, k, t = 12, 5, 20
    truths = torch.full((n, k, 6), -1.0)
    count = torch.randint(0, k + 1, (n,), generator=g)
    for i in range(n):  # a few objects per image, some difficult
        truths[i, : count[i], 0] = torch.randint(0, 3, (int(count[i]),), generator=g).float()
        truths[i, : count[i], 1:5] = _boxes(int(count[i]), g, side=50)
        truths[i, : count[i], 5] = (torch.rand(int(count[i]), generator=g) < 0.2).float()
    dets = torch.full((n, t, 6), -1.0)
    for i in range(n):  # jittered copies of the objects (some duplicated) and noise boxes
        m = int(torch.randint(0, t + 1, (1,), generator=g))
        src = truths[i, torch.randint(0, max(int(count[i]), 1), (m,), generator=g)]
        jitter = torch.randn(m, 4, generator=g) * 0.8
        noise = torch.rand(m, generator=g) < 0.3
        boxes = torch.where(noise[:, None], _boxes(m, g, side=50), src[:, 1:5] + jitter)
        boxes = torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)], dim=1)
        cls = torch.where(noise | (src[:, 0] < 0), torch.randint(0, 3, (m,), generator=g).float(), src[:, 0])
        dets[i, :m] = torch.cat([cls[:, None], torch.rand(m, 1, generator=g), boxes], dim=1)
    _, aps = voc_map(dets, truths, 3, use_07=use_07)
    for c in range(3):
        assert aps[c] == pytest.approx(_devkit_ap(dets, truths, c, use_07), abs=1e-9)


def test_perfect_detections_through_the_task_give_map_one():
    priors = torch.tensor([[15.0, 15, 10, 10], [45, 45, 10, 10], [45, 15, 10, 10]])
    task = DetectionTask(num_classes=2, priors=priors, image_size=(60, 60))
    truths = box_targets([[(0, 10.0, 10.0, 20.0, 20.0, 0), (1, 40.0, 40.0, 50.0, 50.0, 0)]])
    conf = torch.tensor([[[0.0, 9, 0], [0, 0, 9], [9, 0, 0]]])
    outputs = torch.cat([torch.zeros(1, 3, 4), conf], dim=-1)
    assert task.evaluate(outputs, truths)["map"] == pytest.approx(1.0)
    dets = task.predict(outputs)
    assert dets.shape == (1, 200, 6) and int((dets[0, :, 0] >= 0).sum()) >= 2
    assert dets[0, 0, 1] > 0.99 and torch.allclose(dets[0, 0, 2:], torch.tensor([10.0, 10, 20, 20]), atol=1e-4)


def test_entropy_is_the_mean_over_an_images_detections():
    priors = torch.tensor([[15.0, 15, 10, 10], [45, 45, 10, 10]])
    task = DetectionTask(num_classes=2, priors=priors, image_size=(60, 60))
    sure = torch.tensor([[[0.0, 20, 0], [0, 0, 20]]])
    unsure = torch.tensor([[[0.0, 1, 1], [0, 1, 1]]])
    nothing = torch.tensor([[[30.0, 0, 0], [30, 0, 0]]])  # background everywhere: no detection
    conf = torch.cat([sure, unsure, nothing])
    outputs = torch.cat([torch.zeros(3, 2, 4), conf], dim=-1)
    ent = task.entropy(outputs)
    p = torch.softmax(torch.tensor([0.0, 1, 1]), 0)
    assert ent[0] < 1e-6 and ent[1] == pytest.approx(float(-(p * p.log()).sum()), rel=1e-5) and ent[2] == 0


# -- targets -------------------------------------------------------------------------------

def test_targets_round_trip_through_json_exactly():
    g = torch.Generator().manual_seed(5)
    boxes = _boxes(5, g)
    targets = box_targets([[(0, *boxes[0].tolist(), 0), (2, *boxes[1].tolist(), 1)], [],
                           [(1, *boxes[2].tolist(), 0), (1, *boxes[3].tolist(), 0), (0, *boxes[4].tolist(), 0)]])
    task = DetectionTask(num_classes=3, max_boxes=3)
    values = json.loads(json.dumps(task.encode(targets)))
    assert values[0][1] == {"class": 2, "box": targets[0, 1, 1:5].tolist(), "difficult": 1} and values[1] == []
    back = task.decode(values)
    assert back.shape == targets.shape and torch.equal(back, targets)
    with pytest.raises(Exception, match="at most 3"):
        task.decode([[{"class": 0, "box": [0, 0, 1, 1]}] * 4])


# -- models ------------------------------------------------------------------------------------

def test_ssd300_has_the_papers_maps_taps_and_output():
    from activeloss.models.ssd import default_boxes_of, ssd300

    with torch.device("meta"):
        model = ssd300(21)
        out = model(torch.empty(2, 3, 300, 300))
    assert out.shape == (2, 8732, 4 + 21)
    assert model.taps == ("conv4_3", "conv7", "conv8_2", "conv9_2", "conv10_2", "conv11_2")
    assert model.map_sizes((3, 300, 300)) == [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    assert model.features(torch.empty(2, 3, 300, 300, device="meta")).shape == (2, 1024)
    assert default_boxes_of("ssd300", (3, 300, 300)).shape == (8732, 4)
    assert default_boxes_of("resnet18", (3, 300, 300)) is None


def test_ssd300_loads_a_local_vgg16_state_dict(tmp_path):
    from activeloss.errors import ConfigError
    from activeloss.models.ssd import load_vgg16, ssd300

    convs = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256),
             (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512), (28, 512, 512)]
    state = {}
    for i, c_in, c_out in convs:
        state[f"features.{i}.weight"] = torch.full((c_out, c_in, 3, 3), float(i))
        state[f"features.{i}.bias"] = torch.full((c_out,), float(i))
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    model = ssd300(3)
    assert load_vgg16(model, str(path)) == 26
    assert float(model.vgg[21].weight[0, 0, 0, 0].detach()) == 21 and float(model.conv7[5].bias[0].detach()) == 28
    with pytest.raises(ConfigError, match="no file"):
        load_vgg16(model, str(tmp_path / "missing.pth"))


def test_the_small_detector_learns_the_synthetic_set():
    from activeloss import Learner
    from activeloss.data import load_dataset

    data = load_dataset("synthetic-shapes")
    assert data.task == "detection" and data.class_names == ["rectangle", "disc", "triangle"]
    learner = Learner("ssd-small", data, "random", epochs=10, lr=0.05, batch_size=32, eval_batch_size=256,
                      detection_augment="none", threads=1)
    learner.teach(torch.arange(400), data.y_train[:400])
    learner.fit()  # its speed is bench/bench_detection.py's to measure, not a test's
    assert learner.evaluate()["map"] > 0.9


# -- augmentation ------------------------------------------------------------------------------

def test_batch_augmentation_moves_boxes_with_the_images():
    from activeloss.tasks.box_augment import BoxAugment, augment_batch

    n, side = 24, 48
    g = torch.Generator().manual_seed(6)
    x = torch.full((n, 3, side, side), -1.0)
    objects = []
    for i in range(n):  # one white box per image, on a whole-pixel grid
        x1, y1 = (int(v) for v in torch.randint(2, 24, (2,), generator=g))
        w, h = (int(v) for v in torch.randint(10, 20, (2,), generator=g))
        x[i, :, y1 : y1 + h, x1 : x1 + w] = 1.0
        objects.append([(i % 2, float(x1), float(y1), float(x1 + w), float(y1 + h), 0)])
    targets = box_targets(objects)
    how = BoxAugment(photometric=False)
    moved, boxes = augment_batch(x, targets, torch.Generator().manual_seed(7), how)
    again, same = augment_batch(x, targets, torch.Generator().manual_seed(7), how)
    assert torch.equal(moved, again) and torch.equal(boxes, same)  # seeded
    assert moved.shape == x.shape and boxes.shape == targets.shape
    kept = boxes[:, 0, 0] >= 0
    assert kept.sum() >= n // 2
    assert torch.equal(boxes[kept, 0, 0], targets[kept, 0, 0])  # classes travel with their boxes
    for i in kept.nonzero().flatten().tolist():
        x1, y1, x2, y2 = boxes[i, 0, 1:5].tolist()
        assert 0 <= x1 < x2 <= side and 0 <= y1 < y2 <= side
        inner = moved[i, 0, math.ceil(y1) + 1 : math.floor(y2) - 1, math.ceil(x1) + 1 : math.floor(x2) - 1]
        if inner.numel():
            assert inner.mean() > 0.8  # the white box is where its target says
        outside = moved[i, 0].clone()
        outside[max(0, math.floor(y1) - 1) : math.ceil(y2) + 1, max(0, math.floor(x1) - 1) : math.ceil(x2) + 1] = -1
        assert outside.max() < 0.5  # and nowhere else


def test_flip_alone_mirrors_the_boxes():
    from activeloss.tasks.box_augment import BoxAugment, augment_batch

    x = torch.zeros(8, 1, 10, 20)
    x[..., 2:5, 1:4] = 1
    targets = box_targets([[(0, 1.0, 2.0, 4.0, 5.0, 1)]] * 8)
    moved, boxes = augment_batch(x, targets, torch.Generator().manual_seed(0),
                                 BoxAugment(photometric=False, expand=False, crop=False))
    flipped = moved[..., 2:5, 16:19].mean(dim=(1, 2, 3)) > 0.99
    assert 0 < int(flipped.sum()) < 8
    assert torch.equal(boxes[flipped, 0], torch.tensor([0.0, 16, 2, 19, 5, 1]).expand(int(flipped.sum()), 6))
    assert torch.equal(boxes[~flipped], targets[~flipped]) and torch.allclose(moved[~flipped], x[~flipped], atol=1e-5)


# -- readers -----------------------------------------------------------------------------------

def _xml(filename: str, objects: list[tuple[str, tuple[int, int, int, int], int]]) -> str:
    body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b, d in objects)
    return f"<annotation><filename>{filename}</filename>{body}</annotation>"


def _voc_root(root, ids: dict[str, list], splits: dict[str, list[str]], size=(80, 40)):
    from PIL import Image

    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for i, objects in ids.items():
        Image.new("RGB", size, (120, 30, 200)).save(root / "JPEGImages" / f"{i}.jpg")
        (root / "Annotations" / f"{i}.xml").write_text(_xml(f"{i}.jpg", objects))
    for name, members in splits.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(members) + "\n")
    return root


def test_voc_reader_combines_07_and_12_and_scales_boxes(tmp_path, caplog):
    from activeloss.data import load_dataset

    voc07 = _voc_root(tmp_path / "VOC2007", {
        "000001": [("dog", (41, 1, 80, 20), 0), ("person", (1, 1, 10, 40), 1)],
        "000002": [("cat", (11, 11, 20, 20), 0), ("cat", (30, 10, 29, 20), 0)],  # no width: xmax below xmin
        "000003": [("dog", (5, 5, 15, 15), 0), ("dog", (90, 5, 99, 15), 0)],  # one outside the image
    }, {"trainval": ["000001", "000002"], "test": ["000003"]})
    voc12 = _voc_root(tmp_path / "VOC2012", {"2008_000001": [("bus", (1, 1, 80, 40), 0)]},
                      {"trainval": ["2008_000001"]})
    with caplog.at_level("WARNING"):
        data = load_dataset(f"voc:{voc07}+{voc12}", image_size=40)
    assert "dropped 2 zero-area or out-of-image boxes" in caplog.text
    assert data.task == "detection" and data.num_classes == 20 and data.input_shape == (3, 40, 40)
    assert data.size == 3 and data.x_test.shape[0] == 1 and data.y_train.shape[1:] == (2, 6)
    dog, person, bus = (data.class_names.index(n) for n in ("dog", "person", "bus"))
    # VOC's 1-based box (41, 1, 80, 20) on 80x40 -> (40, 0, 80, 20) -> x scaled by 1/2
    assert data.y_train[0].tolist() == [[dog, 20.0, 0.0, 40.0, 20.0, 0.0], [person, 0.0, 0.0, 5.0, 40.0, 1.0]]
    assert data.y_train[1, 1, 0] == -1  # the zero-width cat is gone
    assert data.y_train[2, 0].tolist() == [bus, 0.0, 0.0, 40.0, 40.0, 0.0]
    assert data.y_test[0, 0, 0] == dog and data.y_test[0, 1, 0] == -1
    assert bool((data.x_train[0, 0] > 100).all())  # the resized image itself


def test_flat_folder_reader_splits_by_seed_and_names_missing_or_corrupt_files(tmp_path):
    from PIL import Image

    from activeloss.data import load_dataset
    from activeloss.errors import DataError

    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    for i in range(10):
        Image.new("RGB", (50, 30)).save(tmp_path / "images" / f"r-{i}.jpg")
        (tmp_path / "annotations" / f"r-{i}.xml").write_text(_xml(f"r-{i}.jpg", [("raccoon", (11, 6, 30, 25), 0)]))
    data = load_dataset(f"voc:{tmp_path}", image_size=32, test_fraction=0.3, seed=1)
    assert data.class_names == ["raccoon"] and data.size == 7 and data.x_test.shape[0] == 3
    assert torch.allclose(data.y_train[0, 0], torch.tensor([0.0, 10 * 32 / 50, 5 * 32 / 30, 30 * 32 / 50, 25 * 32 / 30,
                                                            0.0]))
    (tmp_path / "images" / "r-3.jpg").unlink()
    with pytest.raises(DataError, match=r"image .*r-3.jpg is missing") as err:
        load_dataset(f"voc:{tmp_path}", image_size=32)
    assert "\n" not in str(err.value)
    Image.new("RGB", (50, 30)).save(tmp_path / "images" / "r-3.jpg")
    (tmp_path / "annotations" / "r-4.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match=r"cannot parse .*r-4.xml as XML"):
        load_dataset(f"voc:{tmp_path}", image_size=32)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"voc:{tmp_path}+{tmp_path / 'nowhere'}")


# -- strategies and runs --------------------------------------------------------------------------

SMALL = dict(image_size=32, epochs=1, batch_size=16, eval_batch_size=128, threads=1)


@pytest.mark.parametrize("name", ["margin", "least-confidence", "bald", "badge", "lplgrad", "mc-variance",
                                  "none+gradnorm", "sraal", "bgadl"])
def test_strategies_without_a_detection_signal_refuse_in_one_line(name):
    from activeloss import Learner
    from activeloss.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        Learner("ssd-small", "synthetic-shapes", name, **SMALL)
    assert "\n" not in str(err.value) and "detection" in str(err.value)


def test_detection_refuses_image_flips_and_classification_models():
    from activeloss import Learner
    from activeloss.config import Settings
    from activeloss.errors import ConfigError
    from activeloss.loop.plan import plan

    with pytest.raises(ConfigError, match="would move the images under their detection targets.*--detection-augment"):
        Learner("ssd-small", "synthetic-shapes", "random", augment="flip", **SMALL)
    with pytest.raises(ConfigError, match="does not predict what the detection task needs; use ssd300, ssd-small"):
        plan(Settings.from_dict({"dataset": "synthetic-shapes", "model": "resnet18", "image_size": 32}))
    with pytest.raises(ConfigError, match="--task detection: digits holds classification targets"):
        plan(Settings.from_dict({"dataset": "digits", "task": "detection"}))


def test_learner_runs_llal_with_ssd_taps_and_keeps_entropies():
    from activeloss import Learner

    learner = Learner(None, "synthetic-shapes", "llal", **SMALL)
    assert learner.settings.model == "ssd-small" and learner.settings.detection_augment == "light"
    learner.teach(torch.arange(40), learner.data.y_train[:40])
    learner.fit()
    assert tuple(learner.taps.names) == ("conv4", "conv7", "conv8", "conv9")
    metrics = learner.evaluate(keep_losses=True)
    assert 0 <= metrics["map"] <= 1 and "ranking_accuracy" in metrics
    batch = learner.query(10)
    assert len(batch) == 10 and batch.scores is not None and bool((batch.scores[:-1] >= batch.scores[1:]).all())


def test_cli_runs_the_papers_comparison_and_dnal_on_the_synthetic_set(tmp_path):
    from activeloss.cli import main

    from conftest import results_rows

    out = tmp_path / "run"
    code = main(["run", "--dataset", "synthetic-shapes", "--task", "detection", "--image-size", "32", "--cycles", "2",
                 "--initial", "30", "--budget", "10", "--epochs", "1", "--trials", "1", "--batch-size", "16",
                 "--eval-batch-size", "128", "--diagnostics", "none", "--strategies",
                 "random,entropy,coreset,llal,dnal", "--out", str(out), "--quiet"])
    assert code == 0
    rows = results_rows(out)
    assert {r["strategy"] for r in rows} == {"random", "entropy", "coreset", "llal", "dnal"}
    assert all(0 <= float(r["map"]) <= 1 for r in rows)
    assert (out / "curves.png").is_file() and (out / "loss_prediction.png").is_file()


# -- presets ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset, strategies, reinit, stop_gradient", [
    ("llal-voc", ["llal", "entropy", "coreset", "random"], False, 180),
    ("dnal-voc", ["dnal", "llal", "entropy", "coreset"], True, 240),
])
def test_voc_presets_resolve_to_the_papers_protocol(preset, strategies, reinit, stop_gradient):
    from activeloss.config import Settings
    from activeloss.data import Dataset
    from activeloss.data.readers import reader_of
    from activeloss.loop.plan import resolve_run
    from activeloss.strategies import get_strategy

    boxes = box_targets([[(0, 1.0, 1.0, 20.0, 20.0, 0)]] * 40)
    x = torch.zeros(40, 3, 300, 300, dtype=torch.uint8)
    stand_in = Dataset("voc", x[:30], boxes[:30], x[30:], boxes[30:], ["dog"], task="detection").validate()
    s = Settings.from_dict({"preset": preset, "dataset": "voc:/x"})
    assert s.strategies == strategies
    for name in strategies:
        run = resolve_run(s, get_strategy(name), stand_in, reader_of("voc:/x"))
        got = run.settings
        assert (got.model, got.initial, got.budget, got.cycles, got.subset, got.epochs, got.batch_size, got.lr,
                got.milestones, got.reinit, got.trials, got.detection_augment, got.detection_ap, got.image_size) == \
            ("ssd300", 1000, 1000, 10, 0, 300, 32, 1e-3, [240], reinit, 3, "ssd", "voc07", 300)
        if name in ("llal", "dnal"):
            assert (run.options["loss_weight"], run.options["lossnet_lr"], run.options["stop_gradient_epoch"]) == \
                (1.0, 1e-3, stop_gradient)


def test_dnal_trains_its_module_with_huber_on_detection():
    from activeloss import Learner

    learner = Learner("ssd-small", "synthetic-shapes", "dnal", **SMALL)
    assert learner.run.options["module_loss"] == "huber"
    assert Learner("ssd-small", "synthetic-shapes", "dnal", module_loss="mse", **SMALL).run.options["module_loss"] == "mse"


def test_a_learner_reopened_from_its_store_has_the_same_box_labels(tmp_path):
    from activeloss import Learner

    first = Learner("ssd-small", "synthetic-shapes", "llal", store=tmp_path, **SMALL)
    first.teach(torch.arange(20), first.data.y_train[:20])
    first.teach([20, 21], [[{"class": 1, "box": [1.5, 2.0, 10.0, 12.25], "difficult": 0}], []])  # a person's answer
    first.fit()
    again = Learner("ssd-small", "synthetic-shapes", "llal", store=tmp_path, **SMALL)
    assert again.num_labeled == 22 and again.cycle == 0
    assert torch.equal(torch.nan_to_num(again.pool.labels, 7.0), torch.nan_to_num(first.pool.labels, 7.0))
    assert again.pool.labels[20, 0].tolist() == [1.0, 1.5, 2.0, 10.0, 12.25, 0.0] and again.pool.labels[21, 0, 0] == -1


def test_backbone_weights_are_checked_before_a_run(tmp_path):
    from activeloss import Learner
    from activeloss.data import Dataset
    from activeloss.errors import ConfigError

    boxes = box_targets([[(0, 1.0, 1.0, 20.0, 20.0, 0)]] * 8)
    x = torch.zeros(8, 3, 64, 64, dtype=torch.uint8)
    data = Dataset("tiny", x[:6], boxes[:6], x[6:], boxes[6:], ["dog"], task="detection").validate()
    with pytest.raises(ConfigError, match="--backbone-weights: no file"):
        Learner("ssd300", data, "random", backbone_weights=str(tmp_path / "vgg.pth"), epochs=1)
    with pytest.raises(ConfigError, match="the model ssd-small takes none"):
        Learner("ssd-small", data, "random", backbone_weights=str(tmp_path / "vgg.pth"), epochs=1)


def test_map_agrees_with_pycocotools_at_iou_half():
    """An independent implementation: COCOeval at IoU 0.5 (101-point interpolation, matching to
    the best unmatched truth) against our all-point VOC AP.  Detections are one jittered copy per
    object plus noise boxes, so both protocols match alike and only the interpolation differs:
    stated tolerance 0.01 per class."""
    coco = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    g = torch.Generator().manual_seed(21)
    n, k, t, classes = 30, 4, 12, 3
    truths = torch.full((n, k, 6), -1.0)
    dets = torch.full((n, t, 6), -1.0)
    for i in range(n):
        m = int(torch.randint(1, k + 1, (1,), generator=g))
        truths[i, :m, 0] = torch.randint(0, classes, (m,), generator=g).float()
        truths[i, :m, 1:5] = _boxes(m, g, side=60)
        truths[i, :m, 5] = 0.0
        found = torch.rand(m, generator=g) < 0.8  # some objects are missed
        copies = truths[i, :m][found].clone()
        copies[:, 1:5] += torch.randn(copies.shape[0], 4, generator=g) * 1.5
        noise = int(torch.randint(0, t - k + 1, (1,), generator=g))
        fake = torch.cat([torch.randint(0, classes, (noise, 1), generator=g).float(), _boxes(noise, g, side=60)], 1)
        boxes = torch.cat([copies[:, :5], fake])
        boxes[:, 3:5] = torch.maximum(boxes[:, 3:5], boxes[:, 1:3] + 1)
        scores = torch.rand(boxes.shape[0], 1, generator=g)
        dets[i, : boxes.shape[0]] = torch.cat([boxes[:, :1], scores, boxes[:, 1:]], 1)
    _, aps = voc_map(dets, truths, classes, use_07=False)

    def xywh(b):
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    objects = [(i, r) for i in range(n) for r in truths[i] if r[0] >= 0]
    gt = coco.COCO()
    gt.dataset = {"images": [{"id": i} for i in range(n)], "categories": [{"id": c} for c in range(classes)],
                  "annotations": [{"id": a + 1, "image_id": i, "category_id": int(r[0]), "bbox": xywh(r[1:5]),
                                   "area": float((r[3] - r[1]) * (r[4] - r[2])), "iscrowd": 0}
                                  for a, (i, r) in enumerate(objects)]}
    gt.createIndex()
    found = gt.loadRes([{"image_id": i, "category_id": int(r[0]), "bbox": xywh(r[2:6]), "score": float(r[1])}
                        for i in range(n) for r in dets[i] if r[0] >= 0])
    ev = cocoeval.COCOeval(gt, found, "bbox")
    ev.params.iouThrs = np.array([0.5])
    ev.params.maxDets = [100, 100, 100]
    ev.evaluate()
    ev.accumulate()
    precision = ev.eval["precision"][0, :, :, 0, -1]  # (101 recall points, classes), every area
    for c in range(classes):
        assert aps[c] == pytest.approx(float(precision[:, c].mean()), abs=0.01), c
