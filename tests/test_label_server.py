"""The labeling server in-process (FastAPI's TestClient): the token on every request, answers,
skips, undo and double submits as the state and the store see them, validation (4xx, never a
500), images by id only, and the training trigger."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from fastapi.testclient import TestClient  # noqa: E402

from activeloss.errors import ConfigError  # noqa: E402
from activeloss.label import server  # noqa: E402
from activeloss.label.server import create_app  # noqa: E402
from activeloss.project import Project, jobs  # noqa: E402
from activeloss.project.records import Job  # noqa: E402

from conftest import IMAGE_CLASSES, image_project, subprocess_env  # noqa: E402

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"token {TOKEN}"}
CLASSES = IMAGE_CLASSES




@pytest.fixture
def project_dir(tmp_path) -> Path:
    return image_project(tmp_path, 24, 6)


@pytest.fixture
def client(project_dir) -> TestClient:
    return TestClient(create_app(project_dir, TOKEN), raise_server_exceptions=False)


def state(client: TestClient, annotator: str = "ann") -> dict:
    r = client.get("/api/state", params={"annotator": annotator}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def post(client: TestClient, path: str, body: dict):
    return client.post(path, json=body, headers=AUTH)


def label(client, item, cls, request, annotator="ann"):
    return post(client, "/api/answer", {"item": item, "annotator": annotator, "kind": "label", "label": cls,
                                        "request": request})


def store_rows(project_dir: Path) -> list[tuple]:
    project = Project.open(project_dir)
    try:
        return project.store.conn.execute(
            "SELECT id, item, annotator, kind, label, undoes, request FROM answers ORDER BY id").fetchall()
    finally:
        project.store.close()


def by_id(s: dict) -> dict[int, dict]:
    return {it["id"]: it for it in s["items"]}


# -- the token ------------------------------------------------------------------------------
def test_every_request_without_the_right_token_is_refused(client, project_dir):
    item = state(client)["items"][0]["id"]
    requests = [("get", "/", None), ("get", "/api/state", None), ("get", f"/api/items/{item}/image", None),
                ("post", "/api/answer", {"item": item, "annotator": "x", "kind": "label", "label": 0,
                                         "request": "req-000001"}),
                ("post", "/api/undo", {"annotator": "x", "request": "req-000002"}), ("post", "/api/train", {}),
                ("get", "/no/such/route", None), ("get", "/docs", None), ("get", "/openapi.json", None)]
    wrong = [{}, {"headers": {"Authorization": "token nope"}}, {"params": {"token": "nope"}},
             {"headers": {"Authorization": f"Bearer {TOKEN}"}}, {"headers": {"Authorization": "token s3cret-tokén".encode()}}, {"params": {"token": "s3cret-tokén"}},
             {"params": {"token": ""}}, {"cookies": {"activeloss-token-0": "nope"}}]
    for method, path, body in requests:
        for how in wrong:
            how = dict(how)
            fresh = TestClient(client.app, raise_server_exceptions=False, cookies=how.pop("cookies", None))
            r = fresh.request(method.upper(), path, json=body, **how)
            assert r.status_code == 403, (method, path, how, r.status_code)
    assert store_rows(project_dir) == []  # nothing refused was recorded


def test_the_token_works_in_the_header_the_query_and_the_page_cookie(client):
    assert client.get("/api/state", headers=AUTH).status_code == 200
    assert client.get("/api/state", params={"token": TOKEN}).status_code == 200
    page = client.get("/", params={"token": TOKEN})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert f'content="{TOKEN}"' in page.text  # the page's script sends it on API calls
    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=strict" in page.headers["set-cookie"]
    assert client.get("/").status_code == 200  # a reload without ?token: the cookie carries it
    # a token in the header that is wrong is refused even with the right cookie
    assert client.get("/api/state", headers={"Authorization": "token nope"}).status_code == 403


# -- answers ----------------------------------------------------------------------------------
def test_answers_skips_and_undo_show_in_the_state_and_the_store(client, project_dir):
    s = state(client)
    items = [it["id"] for it in s["items"]]
    assert s["classes"] == CLASSES and len(items) == 6 and s["progress"] == {"mine": 0, "settled": 0, "total": 6}
    assert all(it["mine"] is None and it["label"] is None and it["guess"] is None and it["key"] for it in s["items"])
    assert s["model"] is None and s["job"] is None

    r = label(client, items[0], 2, "req-aaaa0001")
    assert r.status_code == 200
    ack = r.json()
    assert ack["item"] == {"id": items[0], "mine": {"kind": "label", "label": 2}, "label": 2, "skipped": False}
    assert ack["progress"] == {"mine": 1, "settled": 1, "total": 6} and ack["request"] == "req-aaaa0001"
    r = post(client, "/api/answer", {"item": items[1], "annotator": "ann", "kind": "skip", "request": "req-aaaa0002"})
    assert r.status_code == 200 and r.json()["item"]["skipped"] is True
    s = state(client)
    assert by_id(s)[items[0]]["mine"] == {"kind": "label", "label": 2} and by_id(s)[items[0]]["label"] == 2
    assert by_id(s)[items[1]]["mine"] == {"kind": "skip", "label": None} and by_id(s)[items[1]]["skipped"]
    assert s["progress"]["mine"] == 2 and s["labeled"] == 1 and s["per_class"] == [0, 0, 1]
    assert s["last_answer"] == ack["id"] + 1

    # another annotator sees the label as the item's current label, without an answer of their own
    other = by_id(state(client, "bob"))[items[0]]
    assert other["mine"] is None and other["label"] == 2

    # undo takes back the annotator's latest answer (the skip) and says which item it was
    r = post(client, "/api/undo", {"annotator": "ann", "request": "req-aaaa0003"})
    assert r.status_code == 200
    assert r.json()["undone"] == items[1] and r.json()["undid"] == {"kind": "skip", "label": None}
    assert r.json()["item"] == {"id": items[1], "mine": None, "label": None, "skipped": False}
    r = post(client, "/api/undo", {"annotator": "ann", "request": "req-aaaa0004"})
    assert r.json()["undone"] == items[0]
    r = post(client, "/api/undo", {"annotator": "ann", "request": "req-aaaa0005"})
    assert r.status_code == 200 and r.json()["undone"] is None  # nothing left to undo
    s = state(client)
    assert s["progress"] == {"mine": 0, "settled": 0, "total": 6} and s["labeled"] == 0

    rows = store_rows(project_dir)
    assert [(r[1], r[3], r[4]) for r in rows] == [(items[0], "label", 2), (items[1], "skip", None),
                                                   (items[1], "undo", None), (items[0], "undo", None)]
    assert rows[2][5] == rows[1][0] and rows[3][5] == rows[0][0]  # each undo names the answer it takes back


def test_a_double_submit_is_recorded_once_and_a_reused_request_id_is_refused(client, project_dir):
    item = state(client)["items"][0]["id"]
    first = label(client, item, 1, "req-double-1")
    again = label(client, item, 1, "req-double-1")
    assert first.status_code == again.status_code == 200 and first.json()["id"] == again.json()["id"]
    undo1 = post(client, "/api/undo", {"annotator": "ann", "request": "req-double-2"})
    undo2 = post(client, "/api/undo", {"annotator": "ann", "request": "req-double-2"})
    assert undo1.json() == undo2.json() and undo1.json()["undone"] == item
    assert len(store_rows(project_dir)) == 2  # one label, one undo: the repeats changed nothing
    # the same id for a different answer is a client bug: refused, not mistaken for the first
    assert label(client, item, 2, "req-double-1").status_code == 409
    assert post(client, "/api/undo", {"annotator": "ann", "request": "req-double-1"}).status_code == 409
    assert len(store_rows(project_dir)) == 2


def test_bad_bodies_and_unknown_items_are_4xx_never_500(client, project_dir):
    item = state(client)["items"][0]["id"]
    good = {"item": item, "annotator": "ann", "kind": "label", "label": 0, "request": "req-good-0001"}
    bad_answers = [
        {}, {**good, "item": "3"}, {**good, "item": 1.5}, {**good, "item": None}, {**good, "label": "0"},
        {**good, "label": None}, {**good, "label": 3}, {**good, "label": -1}, {**good, "kind": "skip"},
        {**good, "kind": "undo"}, {**good, "kind": "delete"}, {**good, "annotator": ""}, {**good, "annotator": "a" * 65},
        {**good, "annotator": "bad\nname"}, {**good, "request": "short"}, {**good, "request": "has spaces in it"},
        {**good, "extra": 1}, {k: v for k, v in good.items() if k != "request"}, [], "text", 7,
    ]
    for body in bad_answers:
        r = post(client, "/api/answer", body)
        assert r.status_code in (400, 422), (body, r.status_code, r.text)
    for body in [{}, {"annotator": "ann"}, {"annotator": "", "request": "req-good-0002"},
                 {"annotator": "ann", "request": "req-good-0002", "item": 1}]:
        assert post(client, "/api/undo", body).status_code in (400, 422), body
    r = client.post("/api/answer", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code in (400, 422)
    for unknown in (10_000, -1, 24):
        assert post(client, "/api/answer", {**good, "item": unknown}).status_code == 404
    assert client.get("/api/state", params={"annotator": "a" * 65}, headers=AUTH).status_code == 422
    assert client.get("/api/state", params={"annotator": ""}, headers=AUTH).status_code == 422
    assert client.get("/api/items/abc/image", headers=AUTH).status_code == 422
    assert client.get("/api/items/10000/image", headers=AUTH).status_code == 404
    assert client.get("/api/items/-3/image", headers=AUTH).status_code == 404
    assert store_rows(project_dir) == []
    assert label(client, item, 0, "req-good-0003").status_code == 200


# -- images -----------------------------------------------------------------------------------
def test_an_image_is_a_thumbnail_served_by_id(client, project_dir, tmp_path):
    import io

    item = state(client)["items"][0]["id"]
    r = client.get(f"/api/items/{item}/image", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff"
    project = Project.open(project_dir)
    key = project.records.key_of(item)
    original = Image.open(project.root / key)
    assert Image.open(io.BytesIO(r.content)).size == original.size  # small: not enlarged
    # a big photo comes back at most 256 px a side, as JPEG
    Image.fromarray(np.full((600, 900, 3), 120, dtype=np.uint8)).save(project.root / key.replace(".png", ".jpg"))
    project.store.conn.execute("UPDATE items SET key = ? WHERE id = ?", (key.replace(".png", ".jpg"), item))
    r = client.get(f"/api/items/{item}/image", params={"token": TOKEN})  # how the page's <img> asks
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(r.content)).size) == 256
    project.store.close()


def test_the_image_endpoint_cannot_be_tricked_into_reading_other_files(client, project_dir, tmp_path):
    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((10, 10, 3), dtype=np.uint8)).save(outside)
    (tmp_path / "secret.txt").write_text("secret")
    project = Project.open(project_dir)
    root = project.root
    (root / "link.png").symlink_to(outside)
    for path in ["/api/items/..%2F..%2Foutside.png/image", "/api/items/../../outside.png/image",
                 "/api/items/0/image/../../../secret.txt", "/api/items/%2e%2e/image", "/api/items/0%2F..%2F1/image"]:
        r = client.get(path, headers=AUTH)
        assert r.status_code in (404, 422) and b"secret" not in r.content, path
    # even a store whose keys point outside the images folder serves nothing from there
    for evil in ["../outside.png", str(outside), "link.png", "../secret.txt", "part0/../../outside.png", "part0"]:
        project.store.conn.execute("UPDATE items SET key = ? WHERE id = 0", (evil,))
        r = client.get("/api/items/0/image", headers=AUTH)
        assert r.status_code == 404, evil
    # a file in the folder that is not an image is a 404 too, not a 500
    (root / "notes.png").write_text("not an image")
    project.store.conn.execute("UPDATE items SET key = 'notes.png' WHERE id = 0")
    assert client.get("/api/items/0/image", headers=AUTH).status_code == 404
    project.store.close()


def test_a_rows_project_shows_fields_and_has_no_images(tmp_path):
    csv = tmp_path / "rows.csv"
    lines = ["id,width,height"] + [f"r{i},{i % 5}.5,{(i * 7) % 11}" for i in range(30)]
    csv.write_text("\n".join(lines) + "\n")
    project = Project.create(tmp_path / "rows", ["small", "big"], csv=csv, epochs=1)
    project.query(5)
    project.store.close()
    client = TestClient(create_app(tmp_path / "rows", TOKEN), raise_server_exceptions=False)
    s = state(client)
    assert s["kind"] == "rows" and len(s["items"]) == 5
    first = s["items"][0]
    assert first["fields"] == {"id": first["key"], "width": first["fields"]["width"], "height": first["fields"]["height"]}
    assert client.get(f"/api/items/{first['id']}/image", headers=AUTH).status_code == 404


# -- the model and training -----------------------------------------------------------------------
def test_state_shows_the_models_guesses_and_version_after_a_fit(client, project_dir):
    items = [it["id"] for it in state(client)["items"]]
    for i, item in enumerate(items[:3]):
        assert label(client, item, i, f"req-fit-{i:04d}").status_code == 200
    project = Project.open(project_dir)
    result = project.fit()
    project.store.close()
    s = state(client)
    assert s["model"]["version"] == result.version == 1 and s["model"]["metric"] == "accuracy"
    assert s["model"]["labeled"] == 3
    for it in s["items"]:
        assert it["guess"]["version"] == 1 and 0 <= it["guess"]["class"] < 3 and 0 < it["guess"]["confidence"] <= 1


def fake_training(monkeypatch) -> list[int]:
    calls: list[int] = []

    def start(project, then_query=True):
        calls.append(len(project.derived().labels))
        return Job(len(calls), "running", 1234, time.time(), None, 0, 5, "starting")

    monkeypatch.setattr(jobs, "start_training", start)
    return calls


def test_a_settled_batch_starts_training_once(client, project_dir, monkeypatch):
    calls = fake_training(monkeypatch)
    items = [it["id"] for it in state(client)["items"]]
    for i, item in enumerate(items[:-1]):
        r = label(client, item, i % 3, f"req-auto-{i:04d}")
        assert r.json()["training"] is None
    r = post(client, "/api/answer", {"item": items[-1], "annotator": "ann", "kind": "skip", "request": "req-auto-last"})
    assert r.json()["training"]["status"] == "running" and calls == [5]  # settled: labeled or skipped
    # the same batch settled again (an undo, then the answer again) does not start another
    post(client, "/api/undo", {"annotator": "ann", "request": "req-auto-undo"})
    assert label(client, items[-1], 0, "req-auto-again").json()["training"] is None
    # another annotator's answers on the settled batch do not either
    assert label(client, items[0], 1, "req-auto-bob", annotator="bob").json()["training"] is None
    assert calls == [5]


def test_nothing_starts_while_the_batch_is_open_or_without_auto_train(project_dir, monkeypatch):
    calls = fake_training(monkeypatch)
    client = TestClient(create_app(project_dir, TOKEN, auto_train=False))
    items = [it["id"] for it in state(client)["items"]]
    for i, item in enumerate(items):
        assert label(client, item, 0, f"req-off-{i:04d}").json()["training"] is None
    assert calls == []
    r = post(client, "/api/train", {})  # the button still trains
    assert r.status_code == 200 and r.json()["started"] and calls == [6]


def test_train_now_needs_a_label(client, monkeypatch):
    calls = fake_training(monkeypatch)
    assert post(client, "/api/train", {}).status_code == 409 and calls == []


def test_train_now_runs_a_real_background_job_and_the_next_batch_appears(client, project_dir):
    items = [it["id"] for it in state(client)["items"]]
    for i, item in enumerate(items[:3]):
        label(client, item, i, f"req-real-{i:04d}")
    t0 = time.perf_counter()
    r = post(client, "/api/train", {})
    assert r.status_code == 200 and time.perf_counter() - t0 < 2  # it never waits for the training
    job = r.json()["job"]
    assert job["status"] == "running" and r.json()["started"]
    again = post(client, "/api/train", {}).json()
    assert not again["started"] and again["job"]["id"] == job["id"]  # one job at a time
    deadline = time.time() + 60
    s = state(client)
    while s["job"]["status"] == "running" and time.time() < deadline:
        time.sleep(0.2)
        s = state(client)
    log = (project_dir / "training.log").read_text() if (project_dir / "training.log").exists() else ""
    assert s["job"]["status"] == "done", (s["job"], log)
    assert s["model"]["version"] == 1 and s["job"]["epochs"] == 1
    assert {it["id"] for it in s["items"]} > set(items[3:])  # the open items stay, the new ones join


# -- serving -----------------------------------------------------------------------------------------
def test_importing_activeloss_does_not_import_fastapi():
    code = ("import sys, activeloss, activeloss.label, activeloss.project; "
            "assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules, 'imported'; "
            "assert 'torchvision' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env=subprocess_env())


def test_serve_without_the_extra_names_it(project_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install activeloss\[label\]") as err:
        server.serve(project_dir, port=0, token="t", announce=lambda _: None)
    assert "\n" not in str(err.value)


def test_serve_refuses_a_busy_port_and_a_folder_that_is_no_project(project_dir, tmp_path):
    sock = server.listen("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port}"):
            server.serve(project_dir, port=port, token="t", announce=lambda _: None)
    finally:
        sock.close()
    with pytest.raises(ConfigError, match="not a labeling project"):
        server.serve(tmp_path / "nothing", port=0, announce=lambda _: None)
    assert server.page_url("0.0.0.0", 80, "x") == "http://127.0.0.1:80/?token=x"
    assert server.page_url("::1", 81, "x") == "http://[::1]:81/?token=x"
