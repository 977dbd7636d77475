"""The whole labeling loop from the command line, on a folder of images with no labels: init, query,
label (a scripted annotator answers through the page's HTTP API), fit, predict, export, import."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from activeloss.project import Project

from conftest import IMAGE_CLASSES as CLASSES
from conftest import free_port, make_images, subprocess_env

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "activeloss", *args], capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout




def call(url: str, token: str | None, body: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"token {token}"} if token else {})}
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), headers=headers,
                                     method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_from_unlabeled_images_to_predictions_through_every_command(tmp_path: Path) -> None:
    truth = make_images(tmp_path / "images", 45)
    make_images(tmp_path / "val", 12, seed=1, by_class=True)
    make_images(tmp_path / "new", 9, seed=2)
    proj = tmp_path / "proj"
    out = cli("init", str(proj), "--images", str(tmp_path / "images"), "--classes", ",".join(CLASSES),
              "--val", str(tmp_path / "val"), "--model", "cnn", "--epochs", "4", "--size", "16")
    assert "45 images" in out and "12 labeled validation items" in out
    assert "cold start" in cli("query", str(proj), "--budget", "9")

    port, token = free_port(), uuid.uuid4().hex
    server = subprocess.Popen([sys.executable, "-m", "activeloss", "label", str(proj), "--port", str(port),
                               "--token", token, "--no-auto-train"], env=subprocess_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                state = call(f"{base}/api/state?annotator=script", token)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            pytest.fail("the labeling server did not start")
        with pytest.raises(urllib.error.HTTPError) as refused:
            call(f"{base}/api/state?annotator=script", None)
        assert refused.value.code == 403
        assert len(state["items"]) == 9 and state["progress"] == {"mine": 0, "settled": 0, "total": 9}
        for item in state["items"]:
            call(f"{base}/api/answer", token, {"item": item["id"], "annotator": "script", "kind": "label",
                                               "label": truth[item["key"]], "request": uuid.uuid4().hex})
        assert call(f"{base}/api/state?annotator=script", token)["progress"]["mine"] == 9
    finally:
        server.terminate()
        server.wait(timeout=30)

    out = cli("fit", str(proj), "--then-query")
    assert "model version 1: 9 labels" in out and "accuracy" in out and "queried the next 9" in out
    status = json.loads(cli("status", str(proj), "--json"))
    assert status["labeled"] == 9 and status["versions"][0]["metric"] == "accuracy"
    assert status["annotators"]["script"]["in_force"] == 9 and status["batch"]["open"] == 9

    preds = tmp_path / "preds.csv"
    cli("predict", str(proj), "--images", str(tmp_path / "new"), "--out", str(preds))
    rows = list(csv.DictReader(open(preds)))
    assert len(rows) == 9 and {r["class"] for r in rows} <= set(CLASSES) and rows[0]["model_version"] == "1"

    # Label Studio: export the pending batch, answer two tasks there (one cancelled), import the export back
    tasks_file = tmp_path / "tasks.json"
    cli("export", str(proj), "--format", "label-studio", "--out", str(tasks_file), "--only", "pending")
    tasks = json.loads(tasks_file.read_text())
    assert len(tasks) == 9 and all(t["data"]["rank"] is not None for t in tasks)
    assert (tmp_path / "tasks.config.xml").is_file()
    first, second = tasks[0], tasks[1]
    key = first["data"]["activeloss_key"]
    first["annotations"] = [{"id": 1, "completed_by": {"email": "lee@example.org"}, "was_cancelled": False,
                             "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                         "value": {"choices": [CLASSES[truth[key]]]}}]}]
    second["annotations"] = [{"id": 2, "completed_by": 7, "was_cancelled": True, "result": []}]
    tasks_file.write_text(json.dumps(tasks))
    out = cli("import", str(proj), str(tasks_file))
    assert "added 1 label" in out and "1 cancelled" in out
    p = Project.open(proj)
    item = p.item_of(key)
    assert item is not None and p.derived().labels[item] == truth[key]
    assert ("label-studio:lee@example.org", item) in p.derived().current
    assert "added 0 labels" in cli("import", str(proj), str(tasks_file))  # importing twice adds nothing
