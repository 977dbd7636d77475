"""Pose estimation: heatmaps, PCK, batch augmentation with left-right swapping, the readers on
hand-made files, learning a synthetic set, per-sample losses, and runs from the API and the CLI."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from activeloss import Learner
from activeloss.cli import main
from activeloss.config import Settings
from activeloss.data import load_dataset
from activeloss.errors import ConfigError, DataError
from activeloss.loop.plan import plan
from activeloss.tasks.heatmaps import decode, heatmap_entropy, pck, render, to_heatmap, to_input
from activeloss.tasks.pose import PoseTask, flip_index, mirror_name, pose_targets

from conftest import results_rows

JOINTS = ["head", "left_hand", "right_hand"]


def _targets(xy: list[list[list[float]]], visible: list[list[float]] | None = None, reference: float = 10.0,
             threshold: float = 0.5) -> torch.Tensor:
    kp = torch.tensor(xy, dtype=torch.float32)
    vis = torch.ones(kp.shape[:2]) if visible is None else torch.tensor(visible, dtype=torch.float32)
    return pose_targets(torch.cat([kp, vis[..., None]], dim=-1), torch.full((kp.shape[0],), reference), threshold)


# -- heatmaps ---------------------------------------------------------------------

def test_render_and_decode_round_trip_to_sub_pixel_accuracy():
    g = torch.Generator().manual_seed(0)
    xy = 1.5 + torch.rand(50, 4, 2, generator=g) * 12  # inside a 16 x 16 heatmap, off the pixel grid
    maps = render(xy, torch.ones(50, 4, dtype=torch.bool), (16, 16), sigma=1.0)
    found, peak = decode(maps)
    assert (found - xy).abs().max() < 1e-3
    assert bool((peak > 0.5).all())
    # through the task: input pixels of a 64 x 64 crop -> 16 x 16 heatmaps -> input pixels
    task = PoseTask(input_size=(64, 64))
    pixels = 4 + torch.rand(8, 3, 2, generator=g) * 56
    targets = pose_targets(torch.cat([pixels, torch.ones(8, 3, 1)], -1), torch.full((8,), 20.0), 0.2)
    heat = task.target_heatmaps(targets, (16, 16), (4.0, 4.0))
    assert (task.predict(heat)[..., :2] - pixels).abs().max() < 5e-3
    assert torch.allclose(to_input(to_heatmap(pixels, (4.0, 2.0)), (4.0, 2.0)), pixels, atol=1e-5)


def test_a_pixel_centre_maps_to_a_pixel_centre():
    # input pixels 0..3 (centres) fall on heatmap pixel 0 at stride 4: their mean, 1.5, is its centre
    assert to_heatmap(torch.tensor([[1.5, 5.5]]), (4.0, 4.0)).tolist() == [[0.0, 1.0]]


def test_heatmap_entropy_is_low_for_a_peak_and_log_hw_for_a_flat_map():
    flat = torch.zeros(1, 2, 8, 8)
    peaked = flat.clone()
    peaked[0, :, 3, 4] = 50.0
    assert heatmap_entropy(flat).item() == pytest.approx(math.log(64), rel=1e-5)
    assert heatmap_entropy(peaked).item() < 0.01


# -- PCK --------------------------------------------------------------------------

def test_pck_on_hand_computed_cases():
    truth = torch.tensor([[[0.0, 0.0], [10.0, 0.0]], [[5.0, 5.0], [0.0, 0.0]]])
    predicted = torch.tensor([[[3.0, 4.0], [10.0, 6.0]], [[5.0, 5.0], [0.0, 9.0]]])  # errors 5, 6 / 0, 9
    visible = torch.tensor([[True, True], [True, False]])
    # thresholds 5.5 and 1: joint errors 5 (in), 6 (out), 0 (in), 9 (not visible) -> 2 of 3
    assert pck(predicted, truth, visible, torch.tensor([5.5, 1.0])).item() == pytest.approx(2 / 3)
    assert pck(predicted, truth, visible, torch.tensor([6.0, 0.0])).item() == 1.0  # the threshold itself counts


def test_pckh_and_pck_through_the_task_use_each_persons_reference():
    task = PoseTask(input_size=(16, 16))
    # two persons, one joint each at (6, 6); references 4 (x0.5 -> 2 px) and 10 (x0.2 -> 2 px)
    targets = torch.cat([_targets([[[6.0, 6.0]]], reference=4.0, threshold=0.5),
                         _targets([[[6.0, 6.0]]], reference=10.0, threshold=0.2)])
    heat = torch.zeros(2, 1, 4, 4)
    heat[0, 0, 1, 1] = 1.0  # decodes to input (5.5, 5.5): 0.71 px off -> correct
    heat[1, 0, 3, 3] = 1.0  # decodes to (13.5, 13.5): 10.6 px off -> wrong
    assert task.evaluate(heat, targets) == {"pck": 0.5}


# -- the loss ------------------------------------------------------------------------

def test_per_sample_losses_add_up_to_the_batch_loss():
    task = PoseTask(input_size=(32, 32))
    g = torch.Generator().manual_seed(1)
    targets = pose_targets(torch.cat([torch.rand(5, 3, 2, generator=g) * 30, torch.ones(5, 3, 1)], -1),
                           torch.full((5,), 10.0), 0.2)
    out = torch.rand(5, 3, 8, 8, generator=g)
    losses = task.loss(out, targets)
    assert losses.shape == (5,)
    truth = task.target_heatmaps(targets, (8, 8), (4.0, 4.0))
    assert losses.mean().item() == pytest.approx(F.mse_loss(out, truth).item(), rel=1e-5)
    assert torch.allclose(task.loss(out[2:3], targets[2:3]), losses[2:3])  # a sample's loss is its own
    # two stacks: the stacks' losses add up; an invisible joint adds nothing
    stacked = torch.stack([out, out * 0.5], dim=1)
    assert torch.allclose(task.loss(stacked, targets), losses + task.loss(out * 0.5, targets), atol=1e-6)
    hidden = targets.clone()
    hidden[:, 0, 2] = 0
    moved = out.clone()
    moved[:, 0] = 100.0
    per_joint = (out - truth).pow(2).mean(dim=(-2, -1))
    assert torch.allclose(task.loss(moved, hidden), per_joint[:, 1:].mean(dim=1), atol=1e-6)


def test_targets_round_trip_through_json_exactly():
    task = PoseTask()
    targets = _targets([[[1.1, 2.3], [3.7, 4.9]], [[0.1, 0.2], [5.5, 6.25]]], [[1, 0], [1, 1]], reference=7.3)
    stored = json.loads(json.dumps(task.encode(targets)))
    assert stored[0]["threshold"] == pytest.approx(0.5) and len(stored[0]["keypoints"]) == 2
    assert torch.equal(task.decode(stored), targets)
    assert torch.equal(task.decode(targets.tolist()), targets)


# -- augmentation ----------------------------------------------------------------

@pytest.mark.parametrize("name,mirror", [("left_hand", "right_hand"), ("r_ankle", "l_ankle"), ("LeftEar", "RightEar"),
                                         ("hip_R", "hip_L"), ("pelvis", "pelvis"), ("Lshoulder", "Lshoulder")])
def test_mirror_names(name, mirror):
    assert mirror_name(name) == mirror


def test_flip_mirrors_the_batch_and_swaps_left_and_right_joints():
    task = PoseTask(input_size=(8, 10), joints=JOINTS, rotate=0, scale=0, flip=1.0)
    x = torch.rand(2, 3, 8, 10)
    targets = _targets([[[2.0, 3.0], [1.0, 1.0], [7.0, 6.0]]] * 2)
    y0 = targets.clone()
    out, moved = task.augment(x, targets, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x.flip(-1), atol=1e-5)
    assert flip_index(JOINTS).tolist() == [0, 2, 1]
    # x -> 9 - x; the left hand's label now sits where the right hand was, mirrored
    assert moved[0, :3, :2].tolist() == [[7.0, 3.0], [2.0, 6.0], [8.0, 1.0]]
    assert torch.equal(moved[:, 3], y0[:, 3]) and torch.equal(targets, y0)  # reference kept, input untouched


def test_rotation_and_scale_move_keypoints_with_the_image():
    task = PoseTask(input_size=(33, 33), joints=JOINTS, rotate=40, scale=0.3, flip=0.0)
    x = torch.zeros(6, 1, 33, 33)
    points = torch.tensor([[16.0, 16.0], [22.0, 12.0], [11.0, 20.0]])
    for j in range(3):  # one bright blob per joint
        x[:, 0] += render(points[j:j + 1].expand(6, 1, 2), torch.ones(6, 1, dtype=torch.bool), (33, 33), 1.5)[:, 0]
    targets = _targets([points.tolist()] * 6, reference=10.0)
    out, moved = task.augment(x, targets, torch.Generator().manual_seed(3))
    for j in range(3):  # each moved keypoint lands on the moved blob's local maximum
        xy = moved[:, j, :2].round().long()
        centre = out[torch.arange(6), 0, xy[:, 1], xy[:, 0]]
        window = F.max_pool2d(out, 5, stride=1, padding=2)[torch.arange(6), 0, xy[:, 1], xy[:, 0]]
        assert bool((centre >= 0.8 * window).all()), j
    scale = moved[:, 3, 0] / 10.0
    assert bool(((scale >= 0.7 - 1e-5) & (scale <= 1.3 + 1e-5)).all()) and scale.std() > 0
    assert bool((moved[:, :3, 2] == 1).all())


def test_a_keypoint_pushed_outside_becomes_invisible():
    task = PoseTask(input_size=(9, 9), joints=["a"], rotate=0, scale=0.0, flip=0.0)
    task.scale = 0.9  # a large zoom pushes a corner keypoint out
    targets = _targets([[[0.0, 0.0]]] * 64)
    _, moved = task.augment(torch.zeros(64, 1, 9, 9), targets, torch.Generator().manual_seed(0))
    zoomed = moved[:, 1, 0] > 10.0 * 1.125  # (0, 0) is 4 px from the centre, the edge 4.5 px
    assert bool((moved[zoomed, 0, 2] == 0).all()) and bool((moved[~zoomed, 0, 2] == 1).any())


# -- readers on hand-made files ----------------------------------------------------

def _photo(path, width=40, height=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 90, dtype=np.uint8)).save(path)


def test_coco_keypoints_reader_crops_persons_from_their_boxes(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _photo(tmp_path / "train2017" / name)
    names = ["nose", "left_eye", "right_eye"]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 2, "bbox": [10, 5, 20, 16],
         "keypoints": [20, 13, 2, 15, 10, 1, 0, 0, 0]},
        {"id": 2, "image_id": 2, "category_id": 1, "iscrowd": 0, "num_keypoints": 1, "bbox": [0, 0, 8, 8],
         "keypoints": [4, 4, 2, 0, 0, 0, 0, 0, 0]},
        {"id": 3, "image_id": 3, "category_id": 1, "iscrowd": 1, "num_keypoints": 1, "bbox": [0, 0, 8, 8],
         "keypoints": [4, 4, 2, 0, 0, 0, 0, 0, 0]},  # a crowd: left out
        {"id": 4, "image_id": 3, "category_id": 1, "iscrowd": 0, "num_keypoints": 0, "bbox": [0, 0, 8, 8],
         "keypoints": [0] * 9},  # nothing labeled: left out
        {"id": 5, "image_id": 3, "category_id": 1, "iscrowd": 0, "num_keypoints": 1, "bbox": [2, 2, 10, 10],
         "keypoints": [7, 7, 2, 0, 0, 0, 0, 0, 0]},
    ]
    data = {"images": [{"id": i, "file_name": n} for i, n in enumerate(["a.jpg", "b.jpg", "c.jpg"], 1)],
            "annotations": annotations, "categories": [{"id": 1, "name": "person", "keypoints": names}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_train2017.json").write_text(json.dumps(data))
    ds = load_dataset(f"coco-keypoints:{tmp_path}", crop_size=25, test_fraction=0.34)
    assert ds.task == "pose" and ds.x_train.shape[1:] == (3, 25, 25) and ds.size + ds.x_test.shape[0] == 3
    assert ds.extras["joints"] == names
    y = torch.cat([ds.y_train, ds.y_test])
    first = y[(y[:, -1, 0] == 20.0)][0]  # box 20 x 16, crop side 25 source px -> 25 crop px: scale 1
    assert first[:, 2].tolist() == [1, 1, 0, 0] and first[-1, 1].item() == pytest.approx(0.2)
    # the box centre (20, 13) is the crop's centre (12)
    assert first[0, :2].tolist() == pytest.approx([12.0, 12.0]) and first[1, :2].tolist() == pytest.approx([7.0, 9.0])
    with pytest.raises(DataError, match="no .*person_keypoints_"):
        load_dataset(f"coco-keypoints:{tmp_path / 'train2017'}")


def test_coco_reader_names_a_missing_photo(tmp_path):
    data = {"images": [{"id": 1, "file_name": "gone.jpg"}], "categories": [{"id": 1, "name": "person", "keypoints": ["a"]}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "num_keypoints": 1, "bbox": [0, 0, 4, 4],
                             "keypoints": [1, 1, 2]}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"image .*gone.jpg is missing") as err:
        load_dataset(f"coco-keypoints:{tmp_path}")
    assert "\n" not in str(err.value)


def test_mpii_reader_reads_the_hourglass_json_with_head_sizes(tmp_path):
    _photo(tmp_path / "images" / "p.jpg", 60, 60)

    def person(headbox=None, **extra):
        joints = [[31.0 + j, 31.0] for j in range(16)]  # 1-based Matlab pixels
        record = {"image": "p.jpg", "center": [31.0, 31.0], "scale": 0.1, "joints": joints,
                  "joints_vis": [1] * 15 + [0], **extra}
        if headbox:
            record["headbox"] = headbox
        return record

    (tmp_path / "annot").mkdir()
    (tmp_path / "annot" / "train.json").write_text(json.dumps([person([0, 0, 3, 4]), person(head_size=2.0),
                                                               person(isValidation=1, headbox=[0, 0, 6, 8])]))
    (tmp_path / "annot" / "valid.json").write_text(json.dumps([person()]))
    ds = load_dataset(f"mpii:{tmp_path}", crop_size=50)  # crop side 1.25 x 200 x 0.1 = 25 source px -> x2
    assert ds.size == 2 and ds.x_test.shape[0] == 2 and ds.y_train.shape == (2, 17, 3)
    assert ds.y_train[0, -1].tolist() == pytest.approx([0.6 * 5 * 2, 0.5, 0])  # SC_BIAS x diagonal, in crop px
    assert ds.y_train[1, -1].tolist() == pytest.approx([4.0, 0.5, 0])
    neck_to_top = ds.y_test[1, -1, 0].item()  # no head box: upper neck (8) to head top (9), 1 px -> 2 crop px
    assert neck_to_top == pytest.approx(2.0) and ds.y_test[0, -1, 0].item() == pytest.approx(0.6 * 10 * 2)
    assert ds.y_train[0, 0, :2].tolist() == pytest.approx([24.5, 24.5]) and ds.y_train[0, 15, 2] == 0
    (tmp_path / "annot" / "valid.json").unlink()
    with pytest.raises(DataError, match="valid.json is missing"):
        load_dataset(f"mpii:{tmp_path}")


def _dlc_project(root, videos=("v1", "v2")):
    for v in videos:
        folder = root / "labeled-data" / v
        rows = ["scorer,me,me,me,me", "bodyparts,leftear,leftear,rightear,rightear", "coords,x,y,x,y"]
        for i in range(3):
            _photo(folder / f"img{i}.png", 40, 20)
            rows.append(f"labeled-data/{v}/img{i}.png,{10 + i},5,30,15" if i else f"labeled-data/{v}/img{i}.png,,,30,15")
        (folder / "CollectedData_me.csv").write_text("\n".join(rows) + "\n")


def test_dlc_reader_reads_labeled_frames_split_by_video(tmp_path):
    _dlc_project(tmp_path)
    ds = load_dataset(f"dlc:{tmp_path / 'labeled-data'}", crop_size=20, test_fraction=0.5)
    assert ds.extras["joints"] == ["leftear", "rightear"] and ds.size == 3 and ds.x_test.shape[0] == 3
    y = torch.cat([ds.y_train, ds.y_test])
    assert sorted(y[:, 0, 2].tolist()) == [0, 0, 1, 1, 1, 1]  # an empty cell: not labeled
    # a 40 x 20 frame padded to 40 x 40 around its centre, halved: (30, 15) -> (14.75, 12.25)
    assert y[0, 1, :2].tolist() == pytest.approx([14.75, 12.25])
    assert flip_index(ds.extras["joints"]).tolist() == [1, 0]
    single = load_dataset(f"dlc:{tmp_path / 'labeled-data' / 'v1' / 'CollectedData_me.csv'}", crop_size=20)
    assert single.size + single.x_test.shape[0] == 3


def test_dlc_reader_refuses_a_file_that_is_not_its_csv(tmp_path):
    bad = tmp_path / "CollectedData_x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a DeepLabCut CSV"):
        load_dataset(f"dlc:{bad}")


# -- learning, strategies and runs --------------------------------------------------------

SMALL = dict(epochs=1, batch_size=16, eval_batch_size=64, crop_size=32)


def test_the_small_hourglass_learns_the_synthetic_set():
    data = load_dataset("synthetic-pose")
    learner = Learner("hourglass-small", data, "random", epochs=10, lr=0.5, batch_size=16, stacks=1,
                      pose_rotate=0, pose_scale=0, pose_flip=False, eval_batch_size=256)
    learner.teach(torch.arange(400), data.y_train[:400])
    started = time.perf_counter()
    learner.fit()
    assert time.perf_counter() - started < 60
    assert learner.evaluate()["pck"] > 0.9


@pytest.mark.parametrize("name", ["margin", "bald", "badge", "lplgrad", "mc-variance", "none+gradnorm"])
def test_strategies_without_a_pose_signal_refuse_in_one_line(name):
    with pytest.raises(ConfigError) as err:
        Learner("hourglass-small", "synthetic-pose", name, **SMALL)
    assert "\n" not in str(err.value) and "pose" in str(err.value)


def test_pose_refuses_image_flips_and_classification_models():
    with pytest.raises(ConfigError, match="--augment flip would move the images under their pose targets"):
        Learner("hourglass-small", "synthetic-pose", "random", augment="flip", **SMALL)
    with pytest.raises(ConfigError, match="does not predict what the pose task needs; use hourglass"):
        plan(Settings.from_dict({"dataset": "synthetic-pose", "model": "resnet18", "crop_size": 32}))


def test_learner_runs_llal_with_the_papers_lambda_and_keeps_entropies():
    learner = Learner(None, "synthetic-pose", "llal", **SMALL)
    assert learner.run.options["loss_weight"] == 1e-4 and learner.settings.model == "hourglass-small"
    assert learner.taps is None and learner.settings.augment == "none"
    learner.teach(torch.arange(40), learner.data.y_train[:40])
    learner.fit()
    assert tuple(learner.taps.names) == ("post.0", "post.1")
    metrics = learner.evaluate(keep_losses=True)
    assert 0 <= metrics["pck"] <= 1 and "ranking_accuracy" in metrics
    batch = learner.query(10)
    assert len(batch) == 10 and batch.scores is not None and bool((batch.scores[:-1] >= batch.scores[1:]).all())


def test_cli_runs_the_papers_comparison_on_the_synthetic_set(tmp_path):
    out = tmp_path / "run"
    code = main(["run", "--dataset", "synthetic-pose", "--crop-size", "32", "--cycles", "2", "--initial", "30",
                 "--budget", "10", "--epochs", "1", "--trials", "1", "--batch-size", "16", "--eval-batch-size", "128",
                 "--diagnostics", "none", "--out", str(out), "--quiet"])
    assert code == 0
    rows = results_rows(out)
    assert {r["strategy"] for r in rows} == {"random", "entropy", "coreset", "llal"}
    assert all(0 <= float(r["pck"]) <= 1 for r in rows)
    assert (out / "loss_prediction.png").is_file()
