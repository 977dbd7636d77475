"""The Label Studio ML backend (``activeloss label --ml-backend``): health, setup, predictions from the
project's model, annotations arriving by webhook as answers, training started without waiting."""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from activeloss.label.ml_backend import control_names  # noqa: E402
from activeloss.label.server import create_app  # noqa: E402
from activeloss.project import Project, jobs  # noqa: E402
from activeloss.project.export import export_project  # noqa: E402
from activeloss.project.records import Job  # noqa: E402

from conftest import IMAGE_CLASSES, make_images  # noqa: E402

TOKEN = "ml-backend-token"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"labelstudio:{TOKEN}".encode()).decode()}


@pytest.fixture
def project_dir(tmp_path) -> Path:
    truth = make_images(tmp_path / "imgs", 18)
    p = Project.create(tmp_path / "proj", IMAGE_CLASSES, images=tmp_path / "imgs", size=8, epochs=2, model="cnn")
    p.query(6)
    for b in p.batch()[:4]:
        p.answer(b.item, "ann", "label", truth[p.records.keys()[b.item]])
    p.store.close()
    return tmp_path / "proj"


@pytest.fixture
def client(project_dir) -> TestClient:
    return TestClient(create_app(project_dir, TOKEN, ml_backend=True), raise_server_exceptions=False)


def tasks_of(project_dir: Path, tmp_path: Path) -> list[dict]:
    p = Project.open(project_dir)
    (out,) = [f for f in export_project(p, "label-studio", tmp_path / "tasks.json", only="pending")
              if f.suffix == ".json"]
    return json.loads(out.read_text())


def test_the_backend_needs_the_token_as_basic_auth_and_is_off_by_default(project_dir) -> None:
    client = TestClient(create_app(project_dir, TOKEN, ml_backend=True))
    assert client.get("/health").status_code == 403
    wrong = {"Authorization": "Basic " + base64.b64encode(b"labelstudio:nope").decode()}
    assert client.get("/health", headers=wrong).status_code == 403
    assert client.get("/health", headers={"Authorization": "Basic !!!"}).status_code == 403
    assert client.get("/health", headers=BASIC).json() == {"status": "UP", "model_class": "activeloss"}
    plain = TestClient(create_app(project_dir, TOKEN))
    assert plain.get("/health", headers=BASIC).status_code == 404


def test_predictions_are_the_latest_models_guesses_named_as_the_config_says(client, project_dir, tmp_path) -> None:
    tasks = tasks_of(project_dir, tmp_path)
    before = client.post("/predict", json={"tasks": tasks}, headers=BASIC).json()["results"]
    assert all(r["result"] == [] for r in before)  # no model yet
    Project.open(project_dir).fit()
    config = ('<View><Image name="photo" value="$image"/><Choices name="kind" toName="photo">'
              + "".join(f'<Choice value="{c}"/>' for c in IMAGE_CLASSES) + "</Choices></View>")
    assert client.post("/setup", json={"project": "1.0", "schema": config}, headers=BASIC).json() == {
        "model_version": "activeloss v1"}
    strangers = [{"data": {"image": "/data/upload/1/nothing-like-it.png"}}]
    results = client.post("/predict", json={"tasks": tasks + strangers}, headers=BASIC).json()["results"]
    assert len(results) == len(tasks) + 1 and results[-1]["result"] == []
    p = Project.open(project_dir)
    guesses = p.records.guesses([t["data"]["activeloss_id"] for t in tasks])
    for task, r in zip(tasks, results):
        version, label, confidence = guesses[task["data"]["activeloss_id"]]
        (choice,) = r["result"]
        assert (choice["from_name"], choice["to_name"]) == ("kind", "photo")
        assert choice["value"]["choices"] == [IMAGE_CLASSES[label]] and r["score"] == pytest.approx(confidence)
        assert r["model_version"] == f"activeloss v{version}"
    # an item the model never guessed (not in a batch) is predicted on the spot
    other = next(i for i in range(p.size) if i not in guesses)
    (fresh,) = client.post("/predict", json={"tasks": [{"data": {"activeloss_id": other}}]},
                           headers=BASIC).json()["results"]
    probs, _ = p.predict(p.dataset().x_train[[other]].numpy())
    assert fresh["result"][0]["value"]["choices"] == [IMAGE_CLASSES[int(probs.argmax())]]
    assert client.post("/predict", json={"tasks": "all"}, headers=BASIC).status_code == 422


def test_an_annotation_webhook_is_an_answer_and_settling_the_batch_starts_training(client, project_dir, tmp_path,
                                                                                    monkeypatch) -> None:
    started: list[int] = []

    def start(project, then_query=True):
        started.append(len(project.derived().labels))
        return Job(1, "running", 4321, time.time(), None, 0, 2, "starting")

    monkeypatch.setattr(jobs, "start_training", start)
    p = Project.open(project_dir)
    open_items = [b.item for b in p.batch() if b.item not in p.derived().labels]
    tasks = {t["data"]["activeloss_id"]: t for t in tasks_of(project_dir, tmp_path)}

    def annotate(item: int, cls: str, action: str = "ANNOTATION_CREATED", cancelled: bool = False) -> dict:
        body = {"action": action, "task": tasks[item], "annotation": {
            "id": item, "completed_by": {"email": "kim@example.org"}, "was_cancelled": cancelled,
            "result": [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [cls]}}]}}
        r = client.post("/webhook", json=body, headers=BASIC)
        assert r.status_code == 201, r.text
        return r.json()

    assert annotate(open_items[0], "red", cancelled=True)["added"] == 0
    first = annotate(open_items[0], "red")
    assert first["added"] == 1 and first["training"] is None and started == []
    assert Project.open(project_dir).derived().current[("label-studio:kim@example.org", open_items[0])].label == 0
    assert annotate(open_items[0], "blue", action="ANNOTATION_UPDATED")["added"] == 1
    assert Project.open(project_dir).derived().labels[open_items[0]] == 2
    last = annotate(open_items[1], "green")
    assert last["training"] is not None and started == [6]  # the batch is settled: training started, once
    assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}, headers=BASIC).json()["status"] == "ignored"
    bad = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "task": {"data": {"activeloss_id": 999}},
                                        "annotation": {"result": []}}, headers=BASIC)
    assert bad.status_code == 400 and "no item 999" in bad.json()["detail"]
    assert client.post("/webhook", json={"action": "ANNOTATION_CREATED"}, headers=BASIC).status_code == 422


def test_control_names_fall_back_to_the_exports() -> None:
    assert control_names(None, "images") == ("label", "image")
    assert control_names("<View><Text name='t' value='$row'/></View>", "rows") == ("label", "row")
    assert control_names("not xml", "images") == ("label", "image")
