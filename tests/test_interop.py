"""Export and import of a labeling project: csv, Label Studio (JSON, JSON-MIN, CSV), image folders."""
from __future__ import annotations

import copy
import csv
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activeloss.errors import ConfigError, DataError
from activeloss.project import Project, export, importing
from activeloss.project.export import export_project
from activeloss.project.formats import CSV_COLUMNS
from activeloss.project.importing import import_file

CLASSES = ["red", "green", "blue"]


def make_images(root: Path, n: int = 16) -> None:
    """part0/imgNNN.png and part1/imgNNN.png (every name twice) and one solo.png at the top."""
    rng = np.random.default_rng(0)
    for i in range(n):
        a = rng.integers(0, 60, size=(12, 10, 3)).astype(np.uint8)
        a[..., i % 3] += 150
        sub = root / f"part{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(sub / f"img{i // 2:03d}.png")
    Image.fromarray(rng.integers(0, 255, size=(9, 9, 3)).astype(np.uint8)).save(root / "solo.png")


@pytest.fixture(scope="module")
def image_template(tmp_path_factory) -> Path:
    """An image project with labels by two annotators, a skip, a model's guesses and a pending batch."""
    base = tmp_path_factory.mktemp("images")
    make_images(base / "imgs")
    p = Project.create(base / "p", CLASSES, images=base / "imgs", size=8, model="cnn", epochs=1)
    first = p.query(6).items
    for it in first[:3]:
        p.answer(it, "ann", "label", label=it % 3)
    p.answer(first[0], "bob", "label", label=first[0] % 3)
    p.answer(first[3], "ann", "skip")
    p.fit()
    p.query(4)
    p.store.close()
    return base


@pytest.fixture
def project(image_template, tmp_path) -> Project:
    shutil.copytree(image_template / "p", tmp_path / "p")
    return Project.open(tmp_path / "p")


@pytest.fixture
def rows_project(tmp_path) -> Project:
    lines = ["id,a,b"] + [f"r{i},{i % 3},{(i * 7) % 5}" for i in range(12)]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    p = Project.create(tmp_path / "rp", ["no", "yes"], csv=tmp_path / "rows.csv", model="mlp", epochs=1)
    p.query(4)
    p.answer(0, "ann", "label", label=1)
    return p


def n_answers(p: Project) -> int:
    return len(p.answers())


def labels_of(p: Project, annotator: str) -> dict[int, int]:
    return {i: a.label for (who, i), a in p.derived().current.items() if who == annotator and a.kind == "label"}


def pending(p: Project) -> list[int]:
    d = p.derived()
    return [b.item for b in p.batch(d) if b.item not in d.labels and b.item not in d.skipped]


def write_json(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


def as_label_studio(tasks: list[dict], user: int = 1) -> list[dict]:
    """What Label Studio's JSON export makes of our imported tasks: ids, the imported annotations
    completed by the importing user, and its own fields."""
    out = []
    for n, task in enumerate(copy.deepcopy(tasks)):
        task.update({"id": 100 + n, "project": 7, "inner_id": n + 1, "drafts": [], "meta": {},
                     "created_at": "2025-05-01T10:00:00.000000Z", "updated_at": "2025-05-01T10:00:00.000000Z"})
        for m, a in enumerate(task.get("annotations", [])):
            a.update({"id": 1000 + 10 * n + m, "completed_by": user, "task": task["id"], "lead_time": 0,
                      "updated_at": "2025-05-01T10:00:00.000000Z"})
        task.setdefault("annotations", [])
        out.append(task)
    return out


def annotation(cls, user, ident, when="2025-05-02T09:00:00.000000Z", cancelled=False, from_name="label"):
    result = [] if cls is None else [{"id": f"r{ident}", "from_name": from_name, "to_name": "image", "type": "choices",
                                      "origin": "manual", "value": {"choices": [cls]}}]
    return {"id": ident, "completed_by": user, "result": result, "was_cancelled": cancelled, "ground_truth": False,
            "created_at": when, "updated_at": when, "lead_time": 3.5, "result_count": 0, "prediction": {}}


# ----------------------------------------------------------------------------- export
def test_csv_export_has_a_row_per_item_with_status_votes_rank_and_guess(project, tmp_path):
    (out,) = export_project(project, "csv", tmp_path / "out.csv")
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == project.size
    d = project.derived()
    by_id = {int(r["id"]): r for r in rows}
    keys = project.records.keys()
    for item, y in d.labels.items():
        assert by_id[item]["label"] == CLASSES[y] and by_id[item]["status"] == "labeled"
        assert by_id[item]["key"] == keys[item]
    two = [r for r in rows if r["votes"] == "2"]
    assert len(two) == 1 and two[0]["annotators"] == "ann;bob"
    assert [r["status"] for r in rows].count("skipped") == 1
    waiting = sorted((r for r in rows if r["status"] == "pending"), key=lambda r: int(r["rank"]))
    assert [int(r["id"]) for r in waiting] == pending(project)
    assert [int(r["rank"]) for r in waiting] == list(range(1, len(waiting) + 1))
    assert all(r["score"] for r in waiting)
    assert all(r["rank"] == r["score"] == "" for r in rows if r["status"] != "pending")
    guessed = [r for r in rows if r["guess"]]
    assert guessed and all(r["guess"] in CLASSES and 0 < float(r["confidence"]) <= 1 for r in guessed)


def test_label_studio_export_is_tasks_and_a_labeling_config(project, tmp_path):
    out, config = export_project(project, "label-studio", tmp_path / "tasks.json")
    assert config == tmp_path / "tasks.config.xml"
    tasks = json.loads(out.read_text())
    assert len(tasks) == project.size and all(set(t) <= {"data", "annotations", "predictions"} for t in tasks)
    keys = project.records.keys()
    for t in tasks:
        data = t["data"]
        assert data["image"] == "/data/local-files/?d=imgs/" + keys[data["activeloss_id"]]
        assert data["activeloss_key"] == keys[data["activeloss_id"]]
        assert (data["rank"] is None) == (data["status"] != "pending") == (data["score"] is None)
    ranked = sorted((t["data"] for t in tasks if t["data"]["rank"]), key=lambda d: d["rank"])
    assert [d["activeloss_id"] for d in ranked] == pending(project)
    d = project.derived()
    annotated = {t["data"]["activeloss_id"]: t["annotations"] for t in tasks if "annotations" in t}
    assert set(annotated) == set(d.labels)
    for item, anns in annotated.items():
        for a in anns:
            (r,) = a["result"]
            assert r["type"] == "choices" and r["from_name"] == "label" and r["to_name"] == "image"
            assert r["value"]["choices"] == [CLASSES[d.labels[item]]] and a["was_cancelled"] is False
    predicted = [t for t in tasks if "predictions" in t]
    assert predicted
    for t in predicted:
        (pred,) = t["predictions"]
        assert 0 < pred["score"] <= 1 and pred["result"][0]["value"]["choices"][0] in CLASSES
    root = ET.fromstring(config.read_text())
    assert root.tag == "View"
    image = root.find("Image")
    assert image is not None and image.get("name") == "image" and image.get("value") == "$image"
    choices = root.find("Choices")
    assert choices is not None and choices.get("toName") == "image" and choices.get("choice") == "single"
    assert [c.get("value") for c in choices.findall("Choice")] == CLASSES


def test_only_pending_exports_the_batch_in_rank_order(project, tmp_path):
    out, _ = export_project(project, "label-studio", tmp_path / "batch.json", only="pending")
    tasks = json.loads(out.read_text())
    assert [t["data"]["activeloss_id"] for t in tasks] == pending(project)
    assert [t["data"]["rank"] for t in tasks] == list(range(1, len(tasks) + 1))
    assert all(isinstance(t["data"]["score"], float) for t in tasks)
    (out,) = export_project(project, "csv", tmp_path / "batch.csv", only="pending")
    assert len(out.read_text().splitlines()) == len(tasks) + 1
    with pytest.raises(ConfigError, match="applies to the csv and label-studio"):
        export_project(project, "json-min", tmp_path / "x.json", only="pending")
    with pytest.raises(ConfigError, match="all or pending"):
        export_project(project, "csv", tmp_path / "y.csv", only="some")


def test_json_min_export_is_one_flat_record_per_label_in_force(project, tmp_path):
    (out,) = export_project(project, "json-min", tmp_path / "min.json")
    records = json.loads(out.read_text())
    current = {(who, i): a for (who, i), a in project.derived().current.items() if a.kind == "label"}
    assert len(records) == len(current)
    for r in records:
        assert all(not isinstance(v, list) for v in r.values())
        assert r["id"] == r["activeloss_id"] and r["image"].startswith("/data/local-files/?d=imgs/")
        a = current[(r["annotator"], r["id"])]
        assert r["label"] == CLASSES[a.label] and r["annotation_id"] == a.id and r["created_at"].endswith("Z")


def test_imagefolder_copies_labeled_images_into_class_folders(project, tmp_path):
    (out,) = export_project(project, "imagefolder", tmp_path / "folder")
    d = project.derived()
    keys = project.records.keys()
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    expected = sorted(f"{CLASSES[y]}/{keys[i].replace('/', '__')}" for i, y in d.labels.items())
    assert files == expected
    item, y = next(iter(d.labels.items()))
    copied = out / CLASSES[y] / keys[item].replace("/", "__")
    assert copied.read_bytes() == (project.root / keys[item]).read_bytes()
    assert not list(tmp_path.glob(".folder*"))  # no temporary folder left


def test_exports_refuse_to_overwrite_and_leave_nothing_half_written(project, tmp_path, monkeypatch):
    taken = tmp_path / "taken.csv"
    taken.write_text("keep me\n")
    with pytest.raises(ConfigError, match="refusing to overwrite") as e:
        export_project(project, "csv", taken)
    assert "\n" not in str(e.value) and taken.read_text() == "keep me\n"
    full = tmp_path / "full"
    (full / "x").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not empty"):
        export_project(project, "imagefolder", full)
    (tmp_path / "t.config.xml").write_text("<View/>")
    with pytest.raises(ConfigError, match="t.config.xml"):
        export_project(project, "label-studio", tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    export_project(project, "imagefolder", empty)  # an empty folder is no loss
    assert any(empty.iterdir())
    with pytest.raises(ConfigError, match="csv, label-studio, json-min, imagefolder"):
        export_project(project, "coco", tmp_path / "c.json")

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(export.os, "replace", broken)
    with pytest.raises(OSError):
        export_project(project, "label-studio", tmp_path / "new.json")
    with pytest.raises(OSError):
        export_project(project, "imagefolder", tmp_path / "newfolder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "full", "p", "t.config.xml", "taken.csv"]


def test_rows_projects_export_their_fields_and_refuse_imagefolder(rows_project, tmp_path):
    out, config = export_project(rows_project, "label-studio", tmp_path / "rows.json")
    tasks = json.loads(out.read_text())
    assert tasks[3]["data"]["row"] == {"id": "r3", "a": "0", "b": "1"}
    assert tasks[3]["data"]["activeloss_key"] == "r3"
    root = ET.fromstring(config.read_text())
    table = root.find("Table")
    assert table is not None and table.get("value") == "$row"
    choices = root.find("Choices")
    assert choices is not None and choices.get("toName") == "row"
    with pytest.raises(ConfigError, match="image projects"):
        export_project(rows_project, "imagefolder", tmp_path / "f")


# ----------------------------------------------------------------------------- import
def test_label_studio_round_trip_adds_the_new_labels_once(project, tmp_path):
    out, _ = export_project(project, "label-studio", tmp_path / "tasks.json")
    exported = json.loads(out.read_text())
    labeled_before = sum(len(t.get("annotations", [])) for t in exported)
    tasks = as_label_studio(exported)
    waiting = {t["data"]["activeloss_id"]: t for t in tasks if t["data"]["status"] == "pending"}
    a, b, c = list(waiting)[:3]
    waiting[a]["annotations"].append(annotation("blue", {"id": 2, "email": "eve@example.com"}, 5001))
    waiting[b]["annotations"].append(annotation("red", 2, 5002, cancelled=True))
    waiting[c]["annotations"].append(annotation(None, 2, 5003))
    # another Label Studio user agrees with one of our labels: a vote, not an echo
    item, y = next(iter(project.derived().labels.items()))
    labeled_task = next(t for t in tasks if t["data"]["activeloss_id"] == item)
    labeled_task["annotations"].append(annotation(CLASSES[y], 3, 6001))
    path = write_json(tmp_path / "project-7-at-2025-05-02.json", tasks)
    before = n_answers(project)
    s = import_file(project, path)
    assert s.format == "label-studio"
    assert (s.added, s.unchanged) == (2, 0)
    assert s.reasons == {"cancelled": 1, "no label": 1, "exported by activeloss": labeled_before}
    assert s.ignored == 2 + labeled_before
    assert s.annotators == ["label-studio:3", "label-studio:eve@example.com"]
    assert n_answers(project) == before + 2
    assert labels_of(project, "label-studio:eve@example.com") == {a: CLASSES.index("blue")}
    assert labels_of(project, "label-studio:3") == {item: y}
    assert project.derived().labels[a] == CLASSES.index("blue")
    again = import_file(project, path)
    assert (again.added, again.unchanged) == (0, 2) and n_answers(project) == before + 2
    assert "added 0 labels, 2 unchanged" in str(again)


def test_our_own_exports_import_as_nothing_new(project, tmp_path):
    before = n_answers(project)
    for fmt, name in (("label-studio", "t.json"), ("json-min", "m.json"), ("csv", "c.csv")):
        path = export_project(project, fmt, tmp_path / name)[0]
        s = import_file(project, path)
        assert s.format == fmt and s.added == 0, (fmt, s)
    assert n_answers(project) == before


def test_a_hand_written_label_studio_export_imports(project, tmp_path):
    """Label Studio's documented JSON export, of a project made without activeloss: images uploaded
    (a random prefix added to the name) or served from local files, users as ids or objects."""
    keys = project.records.keys()
    fixture = [
        {"id": 1, "data": {"image": "/data/upload/3/1a2b3c4d-solo.png"}, "project": 3, "inner_id": 1,
         "created_at": "2025-03-09T21:52:49.513742Z", "updated_at": "2025-03-09T22:16:08.746926Z",
         "annotations": [{"id": 11, "completed_by": 10, "result": [
             {"id": "Dx_aB91ISN", "from_name": "colour", "to_name": "img", "type": "choices", "origin": "manual",
              "value": {"choices": ["green"]}},
             {"id": "Q2", "from_name": "box", "to_name": "img", "type": "rectanglelabels", "original_width": 9,
              "original_height": 9, "value": {"x": 1, "y": 2, "width": 3, "height": 4, "rotation": 0,
                                              "rectanglelabels": ["thing"]}}],
             "was_cancelled": False, "ground_truth": False, "created_at": "2025-03-09T22:16:08.728353Z",
             "updated_at": "2025-03-09T22:16:08.728378Z", "lead_time": 4.288, "result_count": 0, "task": 1,
             "prediction": {}, "parent_prediction": None, "parent_annotation": None, "last_action": None}],
         "predictions": [], "drafts": [], "meta": {}, "total_annotations": 1, "cancelled_annotations": 0,
         "total_predictions": 0, "comment_count": 0, "file_upload": "1a2b3c4d-solo.png", "updated_by": 10},
        {"id": 2, "data": {"image": "/data/local-files/?d=photos/part1/img002.png"}, "project": 3,
         "annotations": [
             {"id": 12, "completed_by": {"id": 11, "email": "kim@example.com", "first_name": "", "last_name": ""},
              "result": [{"id": "a", "from_name": "colour", "to_name": "img", "type": "choices",
                          "value": {"choices": ["red"]}}],
              "was_cancelled": False, "created_at": "2025-03-10T08:00:00.000000Z",
              "updated_at": "2025-03-10T08:00:00.000000Z", "lead_time": 2.0, "task": 2},
             {"id": 14, "completed_by": {"id": 11, "email": "kim@example.com"},
              "result": [{"id": "b", "from_name": "colour", "to_name": "img", "type": "choices",
                          "value": {"choices": ["blue"]}}],
              "was_cancelled": False, "created_at": "2025-03-10T09:00:00.000000Z",
              "updated_at": "2025-03-10T09:00:00.000000Z", "lead_time": 2.0, "task": 2},
             {"id": 13, "completed_by": 10, "result": [], "was_cancelled": True,
              "created_at": "2025-03-10T08:30:00.000000Z", "updated_at": "2025-03-10T08:30:00.000000Z",
              "lead_time": 1.0, "task": 2}],
         "predictions": [{"model_version": "m1", "score": 0.5, "result": [
             {"from_name": "colour", "to_name": "img", "type": "choices", "value": {"choices": ["green"]}}]}]},
    ]
    s = import_file(project, write_json(tmp_path / "export.json", fixture))
    assert (s.added, s.unchanged) == (2, 0)
    assert s.reasons == {"cancelled": 1, "superseded in the file": 1}
    assert labels_of(project, "label-studio:10") == {keys.index("solo.png"): CLASSES.index("green")}
    assert labels_of(project, "label-studio:kim@example.com") == {keys.index("part1/img002.png"): 2}


def test_json_min_from_label_studio_imports_with_its_annotators(project, tmp_path):
    keys = project.records.keys()
    records = [
        {"image": "/data/local-files/?d=imgs/part0/img004.png", "id": 5, "choice": "green", "annotator": 4,
         "annotation_id": 40, "created_at": "2025-05-02T09:00:00Z", "updated_at": "2025-05-02T09:00:00Z",
         "lead_time": 1.5},
        {"image": "/data/local-files/?d=imgs/part0/img005.png", "id": 6, "annotator": "ann@x.org",
         "annotation_id": 41, "created_at": "2025-05-02T09:00:00Z", "updated_at": "2025-05-02T09:00:00Z",
         "lead_time": 1.5},  # a task without a label
    ]
    path = write_json(tmp_path / "min.json", records)
    s = import_file(project, path)
    assert (s.format, s.added, s.ignored) == ("json-min", 1, 1) and s.reasons == {"no label": 1}
    assert labels_of(project, "label-studio:4") == {keys.index("part0/img004.png"): 1}
    records[0]["choice"] = {"choices": ["green", "blue"]}
    before = n_answers(project)
    with pytest.raises(DataError, match="2 choices"):
        import_file(project, write_json(tmp_path / "multi.json", records))
    assert n_answers(project) == before


def test_json_min_round_trip_carries_annotators_to_another_project(project, image_template, tmp_path):
    (out,) = export_project(project, "json-min", tmp_path / "min.json")
    fresh = Project.create(tmp_path / "fresh", CLASSES, images=image_template / "imgs", size=8)
    s = import_file(fresh, out)
    wanted = {(w, i): a.label for (w, i), a in project.derived().current.items() if a.kind == "label"}
    got = {(w, i): a.label for (w, i), a in fresh.derived().current.items()}
    assert s.added == len(wanted) and got == wanted


def test_csv_round_trip_imports_edited_labels(project, tmp_path):
    (out,) = export_project(project, "csv", tmp_path / "items.csv")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    target = next(r for r in rows if r["status"] == "pending")
    target["label"] = "blue"
    relabeled = next(r for r in rows if r["status"] == "labeled" and r["votes"] == "1")
    relabeled["label"] = next(c for c in CLASSES if c != relabeled["label"])
    edited = tmp_path / "edited.csv"
    with open(edited, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    labeled = len(project.derived().labels)
    s = import_file(project, edited, annotator="carol")
    assert (s.format, s.added, s.unchanged) == ("csv", 2, labeled - 1)  # the other labels are as they were
    assert s.reasons == {"no label": project.size - labeled - 1}
    assert labels_of(project, "carol") == {int(target["id"]): 2, int(relabeled["id"]): CLASSES.index(relabeled["label"])}
    assert project.derived().labels[int(relabeled["id"])] == CLASSES.index(relabeled["label"])  # a tie: the latest
    again = import_file(project, edited, annotator="carol")
    assert again.added == 0


def test_label_studio_csv_and_tsv_exports_import(project, tmp_path):
    keys = project.records.keys()
    header = ["image", "activeloss_id", "activeloss_key", "rank", "score", "status", "activeloss_labels", "id",
              "sentiment", "annotator", "annotation_id", "created_at", "updated_at", "lead_time"]
    i, j = pending(project)[:2]
    rows = [
        [f"/data/local-files/?d=imgs/{keys[i]}", i, keys[i], 1, 0.5, "pending", "{}", 300, "red", "x@y.z", 77,
         "2025-05-02T09:00:00Z", "2025-05-02T09:00:00Z", 2.0],
        [f"/data/local-files/?d=imgs/{keys[j]}", j, keys[j], 2, 0.4, "pending", "{}", 301,
         '{"choices": ["blue"]}', "x@y.z", 78, "2025-05-02T09:00:00Z", "2025-05-02T09:00:00Z", 2.0],
    ]
    path = tmp_path / "ls.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    s = import_file(project, path)
    assert (s.format, s.added) == ("csv", 2)
    assert labels_of(project, "label-studio:x@y.z") == {i: 0, j: 2}
    tsv = tmp_path / "ls.tsv"
    rows[0][header.index("annotator")] = "w@y.z"
    with open(tsv, "w", newline="") as f:
        csv.writer(f, delimiter="\t").writerows([header, *rows])
    s = import_file(project, tsv)
    assert (s.added, s.unchanged) == (1, 1) and labels_of(project, "label-studio:w@y.z") == {i: 0}


def test_rows_project_round_trip_through_label_studio_json_min_and_a_plain_csv(rows_project, tmp_path):
    p = rows_project
    records = [{"row": {"id": "r5", "a": "2", "b": "0"}, "activeloss_id": 5, "activeloss_key": "r5", "id": 9,
                "label": "yes", "annotator": 2, "annotation_id": 1}]
    assert import_file(p, write_json(tmp_path / "min.json", records)).added == 1
    assert labels_of(p, "label-studio:2") == {5: 1}
    (tmp_path / "plain.csv").write_text("id,label\nr7,no\nr8,\n")
    s = import_file(p, tmp_path / "plain.csv", annotator="sam")
    assert (s.added, s.reasons) == (1, {"no label": 1}) and labels_of(p, "sam") == {7: 0}


def test_unknown_items_and_classes_refuse_the_whole_file(project, tmp_path):
    good = {"data": {"activeloss_id": pending(project)[0]}, "annotations": [annotation("red", 1, 1)]}
    cases = [
        ({"data": {"activeloss_id": 999}, "annotations": [annotation("red", 1, 2)]}, "no item 999"),
        ({"data": {"activeloss_key": "nowhere.png"}, "annotations": [annotation("red", 1, 2)]}, "nowhere.png"),
        ({"data": {"image": "/data/upload/1/abcdef12-missing.png"}, "annotations": [annotation("red", 1, 2)]},
         "missing.png"),
        ({"data": {"image": "img001.png"}, "annotations": [annotation("red", 1, 2)]}, "could be any of"),
        ({"data": {"activeloss_id": 0, "activeloss_key": "solo.png"}, "annotations": [annotation("red", 1, 2)]},
         "another project"),
        ({"data": {"activeloss_id": 1}, "annotations": [annotation("purple", 1, 2)]}, "unknown class 'purple'"),
        ({"data": {"text": "no image here"}, "annotations": [annotation("red", 1, 2)]}, "names no item"),
    ]
    before = n_answers(project)
    for bad, message in cases:
        path = write_json(tmp_path / "bad.json", [good, bad])
        with pytest.raises(DataError, match=message) as e:
            import_file(project, path)
        assert "\n" not in str(e.value)
        assert n_answers(project) == before
    assert import_file(project, write_json(tmp_path / "ok.json", [good])).added == 1


def test_malformed_files_are_one_line_data_errors(project, tmp_path):
    cases = {
        "garbage.json": "{not json",
        "text.json": "hello",
        "shape.json": json.dumps([{"data": {"activeloss_id": 1}}, 3]),
        "nolabel.json": json.dumps([{"activeloss_id": 1, "colour": "purple"}]),
        "nolabel.csv": "activeloss_id,colour\n1,purple\n",
        "ragged.csv": "activeloss_id,label\n1,red,extra\n",
        "empty.csv": "",
        "tasks.json": json.dumps([{"data": {"activeloss_id": 1}, "annotations": {"result": []}}]),
    }
    before = n_answers(project)
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError) as e:
            import_file(project, tmp_path / name)
        assert "\n" not in str(e.value), name
    with pytest.raises(DataError, match="no such file"):
        import_file(project, tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="label-studio, json-min, csv"):
        import_file(project, tmp_path / "garbage.json", fmt="xml")
    (tmp_path / "min.json").write_text(json.dumps([{"activeloss_id": 1, "label": "red"}]))
    with pytest.raises(DataError, match="task 1 is not a Label Studio task"):
        import_file(project, tmp_path / "min.json", fmt="label-studio")
    assert n_answers(project) == before


def test_the_annotator_argument_names_annotations_without_a_user(project, tmp_path):
    item = pending(project)[0]
    task = {"data": {"activeloss_id": item}, "annotations": [{"result": [
        {"type": "choices", "from_name": "label", "to_name": "image", "value": {"choices": ["green"]}}]}]}
    path = write_json(tmp_path / "one.json", task)  # one task, not a list
    assert import_file(project, path, annotator="dana").annotators == ["dana"]
    assert labels_of(project, "dana") == {item: 1}
    task["data"] = {"activeloss_id": pending(project)[0]}
    assert import_file(project, write_json(tmp_path / "two.json", task)).annotators == ["import"]


def test_detect_format(tmp_path):
    cases = {"a.json": '[{"data": {"image": "x.png"}, "annotations": []}]', "b.json": '[{"image": "x", "label": "a"}]',
             "c.txt": "key,label\nx,a\n", "d.csv": "[not json]", "e": '{"data": {}}'}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    assert [importing.detect_format(tmp_path / n) for n in cases] == ["label-studio", "json-min", "csv", "csv",
                                                                    "label-studio"]
