"""The labeling page end to end: a real Chromium (Debian's, through Playwright; never a downloaded
one) on a real server process.  Label with the number keys, skip with S, undo with Backspace,
move with the arrows, reload, ``kill -9`` the server mid-batch and start it again, finish the
batch (which trains a model and queries the next batch in the background), then check that every
answer the page got acknowledged is in the store exactly once and that undone ones are not in
force."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from activeloss.project import Project
from activeloss.project.answers import in_force

from conftest import free_port, image_project, subprocess_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
TOKEN = "browser-test-token"
DOWN = re.compile(r"net::ERR_(CONNECTION_(REFUSED|RESET|CLOSED|ABORTED)|EMPTY_RESPONSE)")
ANNOTATOR = "alice"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
pytest.importorskip("fastapi", reason="the label extra (fastapi, uvicorn) is not installed")




class Server:
    """``serve`` in its own process, as ``activeloss label`` runs it."""

    def __init__(self, folder: Path, port: int, log: Path) -> None:
        self.folder, self.port, self.log = folder, port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        code = (f"from activeloss.label.server import serve; "
                f"serve({str(self.folder)!r}, '127.0.0.1', {self.port}, {TOKEN!r})")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT,
                                         env=subprocess_env())
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited: {self.log.read_text()}")
            try:
                if get(self.port, f"/api/state?token={TOKEN}")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"the server did not answer: {self.log.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def project_dir(tmp_path) -> Path:
    return image_project(tmp_path, 30, 10)


def test_label_reload_kill_restart_and_finish_a_batch_in_chromium(project_dir, tmp_path):
    port = free_port()
    server = Server(project_dir, port, tmp_path / "server.log")
    server.start()
    base = f"http://127.0.0.1:{port}"
    batch = [it["id"] for it in json.loads(get(port, f"/api/state?token={TOKEN}")[1])["items"]]
    assert len(batch) == 10
    acked: list[dict] = []  # what the server acknowledged: the request sent and the answer
    errors: list[str] = []
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("pageerror", lambda e: errors.append(str(e)))
            # while the server is down, its requests fail in the network (refused, reset, empty): expected
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not DOWN.search(m.text) else None)

            def focused() -> int:
                return int(page.get_attribute(".tile.focused", "data-id"))

            def press(key: str, path: str = "/api/answer", during=None) -> dict:
                """Press a key and wait for the server's acknowledgement of the answer it sends."""
                def sent(r) -> bool:
                    return r.url == base + path and r.request.method == "POST"

                with page.expect_response(sent, timeout=30_000) as info:
                    page.keyboard.press(key)
                    if during is not None:
                        during()
                response = info.value
                assert response.status == 200, response.text()
                data = response.json()
                acked.append({"body": json.loads(response.request.post_data), "answer": data})
                return data

            def mine() -> str:
                return page.text_content("#mine")

            def wait_until(js: str, timeout: float = 20) -> None:
                """Poll a JS expression until it holds (the page's CSP forbids wait_for_function's eval)."""
                deadline = time.time() + timeout
                while not page.evaluate(js):
                    assert time.time() < deadline, f"timed out waiting for {js}"
                    page.wait_for_timeout(50)

            page.goto(f"{base}/?token={TOKEN}&annotator={ANNOTATOR}")
            page.wait_for_selector(".tile.focused")
            assert page.locator(".tile").count() == 10 and focused() == batch[0]
            assert page.locator("#classes li").all_text_contents() == ["1red", "2green", "3blue"]

            assert press("1")["item"]["mine"] == {"kind": "label", "label": 0}
            assert focused() == batch[1]  # on to the next unanswered item
            press("2")
            assert press("s")["item"]["skipped"] is True
            undo = press("Backspace", "/api/undo")
            assert undo["undone"] == batch[2]
            wait_until(f"document.querySelector('.tile.focused').dataset.id === '{batch[2]}'")
            press("3")  # batch[2]: blue
            assert press("Backspace", "/api/undo")["undone"] == batch[2]  # ... taken back
            wait_until(f"document.querySelector('.tile.focused').dataset.id === '{batch[2]}'")
            page.keyboard.press("ArrowRight")
            assert focused() == batch[3]
            press("1")  # batch[3]: red
            wait_until("document.getElementById('mine').textContent === '3'")
            assert page.text_content(f".tile[data-id='{batch[0]}'] .badge") == "red"

            page.reload()  # everything acknowledged is still there
            page.wait_for_selector(".tile.focused")
            wait_until("document.getElementById('mine').textContent === '3'")
            assert focused() == batch[2]  # the first one without an answer
            assert page.text_content(f".tile[data-id='{batch[1]}'] .badge") == "green"
            press("2")  # batch[2]: green
            assert focused() == batch[4]

            server.kill9()  # the server dies mid-batch; the next answer waits and is sent again

            def restart() -> None:
                page.wait_for_selector("#net.show")  # the page says it is retrying
                server.start()

            press("3", during=restart)  # batch[4]: blue, acknowledged by the new server
            wait_until("document.getElementById('mine').textContent === '5'")
            assert mine() == "5"

            keys = ["1", "2", "3", "1", "2"]  # batch[5:]: the last one settles the batch
            for i, key in enumerate(keys):
                assert focused() == batch[5 + i]
                last = press(key)
            assert last["progress"] == {"mine": 10, "settled": 10, "total": 10}
            assert last["training"] is not None and last["training"]["status"] in ("running", "done")
            # the model trains in the background; its batch replaces the settled one on the page
            wait_until(f"!{batch}.includes(+document.querySelector('.tile.focused').dataset.id)",
                       timeout=60)
            wait_until("document.getElementById('jobtext').textContent.startsWith('model v1')")
            assert page.locator(".tile").count() == 10 and mine() == "0"
            assert page.locator(".tile .guess b").count() == 10  # the new model's guesses

            # without the token: refused, in the browser and out of it
            other = browser.new_page()
            assert other.goto(f"{base}/").status == 403
            assert other.goto(f"{base}/?token=wrong").status == 403
            assert get(port, "/api/state")[0] == 403
            assert get(port, f"/api/items/{batch[0]}/image")[0] == 403
            browser.close()
    finally:
        server.stop()
    assert errors == []

    project = Project.open(project_dir)
    try:
        rows = project.store.conn.execute("SELECT id, item, kind, label, request FROM answers WHERE annotator = ?",
                                          (ANNOTATOR,)).fetchall()
        by_request = {r[4]: r for r in rows}
        assert len(by_request) == len(rows) == len(acked)  # each acknowledged answer once, nothing else
        for a in acked:
            row = by_request[a["body"]["request"]]
            assert row[0] == a["answer"]["id"]
        answers = project.answers()
        undone = {a.undoes for a in answers if a.kind == "undo"}
        assert len(undone) == 2
        forced = {a.id for a in in_force(answers)}
        assert not undone & forced
        derived = project.derived()
        want = dict(zip(batch, [0, 1, 1, 0, 2, 0, 1, 2, 0, 1]))
        assert {i: derived.current[(ANNOTATOR, i)].label for i in batch} == want
        assert {i: derived.labels[i] for i in batch} == want
        job = project.records.job()
        assert job is not None and job.status == "done", job
        assert project.latest_version() == 1
    finally:
        project.store.close()
