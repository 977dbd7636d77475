"""The labeling page's server: FastAPI on uvicorn, over one project folder.

    serve("pets")                  # prints http://127.0.0.1:8765/?token=...; Ctrl-C stops it
    app = create_app("pets", "t")  # the ASGI app alone (tests)

Safe by default, as Jupyter is: it binds 127.0.0.1, and every request (the page, the API, the
images) must carry the secret token (``?token=T``, the header ``Authorization: token T``, or the
cookie the page sets on its first visit) or it gets 403.  Items are named by their integer id,
never by a path; an image is a thumbnail re-encoded by Pillow from a file that must lie inside
the project's images folder; every body is validated (a bad one is a 4xx, an unknown item 404);
nothing can be uploaded.

The store is the only state that matters: each request opens the project afresh (SQLite
connections stay on their thread), and an answer is committed (``synchronous=FULL``) before its
response acknowledges it, so a reload, a crash or ``kill -9`` loses nothing acknowledged.  A
request id sent twice is recorded once.  When the batch is settled the server starts a
background training (:func:`activeloss.project.jobs.start_training`, once per batch); the page
polls ``/api/state`` for its progress and for the next batch.

(No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations, which
name classes made inside :func:`create_app`.)
"""
import base64
import hashlib
import html
import io
import logging
import secrets
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ActiveLossError, ConfigError
from ..project import Project, jobs
from ..project.answers import Answer, Derived
from ..project.records import Job

DEFAULT_PORT = 8765
INSTALL_HINT = "pip install activeloss[label]"
#: the longest side of an image as the page gets it
THUMBNAIL_PIXELS = 256
#: an annotator's name: 1 to 64 characters, no control characters
ANNOTATOR_PATTERN = r"^[^\x00-\x1f\x7f]{1,64}$"
log = logging.getLogger(__name__)


def require_framework() -> None:
    """Raise a one-line :class:`ConfigError` naming the extra when FastAPI or uvicorn is missing."""
    missing = []
    for name in ("fastapi", "uvicorn", "pydantic"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(f"the labeling page needs {' and '.join(missing)}, which are not installed: "
                          f"{INSTALL_HINT}")


@contextmanager
def opened(folder: Path) -> Iterator[Project]:
    """The project on a connection of this thread, closed after use."""
    project = Project.open(folder)
    try:
        yield project
    finally:
        project.store.close()


def page_text() -> str:
    return resources.files("activeloss.label").joinpath("page.html").read_text(encoding="utf-8")


def cookie_name(port: int | None) -> str:
    """The page's cookie, one per port (cookies do not tell ports apart)."""
    return f"activeloss-token-{port or 0}"


def basic_password(value: str) -> str | None:
    """The password of an HTTP basic ``Authorization`` value (Label Studio's way to send the token
    to an ML backend), or None."""
    try:
        return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return None


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


@lru_cache(maxsize=256)
def thumbnail(path: str, mtime_ns: int, pixels: int = THUMBNAIL_PIXELS) -> tuple[bytes, str]:
    """An image re-encoded at most ``pixels`` a side: (bytes, media type); small ones and ones with
    transparency as PNG, photos as JPEG.  ``mtime_ns`` keys the cache: a changed file is read again."""
    from PIL import Image, ImageOps

    with Image.open(path) as opened_image:
        opened_image.draft("RGB", (pixels, pixels))
        im = ImageOps.exif_transpose(opened_image)
        im.thumbnail((pixels, pixels))
        alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
        im = im.convert("RGBA" if alpha else "RGB")
    out = io.BytesIO()
    if alpha or im.width * im.height <= 128 * 128:
        im.save(out, format="PNG")
        return out.getvalue(), "image/png"
    im.save(out, format="JPEG", quality=85)
    return out.getvalue(), "image/jpeg"


def job_data(job: Job | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {"id": job.id, "status": job.status, "epoch": job.epoch, "epochs": job.epochs, "message": job.message,
            "started": job.started, "finished": job.finished}


def answer_data(a: Answer | None) -> dict[str, Any] | None:
    return None if a is None else {"kind": a.kind, "label": a.label}


def item_data(derived: Derived, annotator: str, item: int) -> dict[str, Any]:
    """An item's labeling as it stands: the annotator's answer in force and the derived label."""
    return {"id": item, "mine": answer_data(derived.current.get((annotator, item))),
            "label": derived.labels.get(item), "skipped": item in derived.skipped}


def batch_id(items: list[int], latest_round: int) -> str:
    """Names a batch: a new query (a new round, or more items) is a new batch."""
    digest = hashlib.sha1(",".join(map(str, items)).encode()).hexdigest()[:12]
    return f"{latest_round}-{len(items)}-{digest}"


def create_app(folder: str | Path, token: str, *, auto_train: bool = True, ml_backend: bool = False) -> Any:
    """The labeling app over the project in ``folder``; every request must carry ``token``.
    ``ml_backend`` adds the routes of a Label Studio ML backend (:mod:`.ml_backend`)."""
    require_framework()
    from typing import Annotated, Literal

    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    if not token:
        raise ConfigError("the labeling page needs a non-empty token")
    folder = Path(folder)
    with opened(folder) as project:  # one clear line now if it is not a project
        classes = project.classes
    lock = threading.Lock()  # one write (answer, undo, train) at a time in this process
    trained_batches: set[str] = set()  # batches whose settling started a training (once per batch)

    annotator_field = Field(min_length=1, max_length=64, pattern=ANNOTATOR_PATTERN)
    request_field = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")

    class AnswerBody(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        item: int
        annotator: str = annotator_field
        kind: Literal["label", "skip"]
        label: int | None = None
        request: str = request_field

        @model_validator(mode="after")
        def label_goes_with_kind(self) -> "AnswerBody":
            if self.kind == "label" and self.label is None:
                raise ValueError("a label answer needs a label (a class index)")
            if self.kind == "skip" and self.label is not None:
                raise ValueError("a skip has no label")
            if self.label is not None and not 0 <= self.label < len(classes):
                raise ValueError(f"label {self.label} is not a class index 0..{len(classes) - 1}")
            return self

    class UndoBody(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        annotator: str = annotator_field
        request: str = request_field

    app = FastAPI(title="activeloss labeling", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token = token
    app.state.folder = folder

    @app.middleware("http")
    async def require_token(request: Request, call_next: Callable[[Request], Any]) -> Any:
        auth = request.headers.get("authorization")
        if auth is not None:
            scheme, _, value = auth.partition(" ")
            given: str | None = (value.strip() if scheme.lower() == "token" else
                                 basic_password(value) if scheme.lower() == "basic" else None)
        elif "token" in request.query_params:
            given = request.query_params["token"]
        else:
            given = request.cookies.get(cookie_name(request.url.port))
        if not token_matches(given, token):
            if request.url.path.startswith("/api/"):
                return JSONResponse({"detail": "a valid token is required"}, status_code=403)
            return HTMLResponse("<!doctype html><title>403</title><p>This labeling page needs its token: open the "
                                "address the server printed (it ends in <code>?token=...</code>).</p>",
                                status_code=403)
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = response.headers.get("Cache-Control", "no-store")
        return response

    @app.exception_handler(ActiveLossError)
    async def user_error(_request: Request, exc: ActiveLossError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(sqlite3.OperationalError)
    async def busy(_request: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        log.warning("store busy: %s", exc)
        return JSONResponse({"detail": f"the project's store is busy ({exc}); try again"}, status_code=503)

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        text = page_text().replace("__NONCE__", nonce).replace("__TOKEN__", html.escape(token, quote=True))
        response = HTMLResponse(text)
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; img-src 'self' data:; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        if "token" in request.query_params:  # so that a reload without it still works
            response.set_cookie(cookie_name(request.url.port), token, httponly=True, samesite="strict")
        return response

    @app.get("/api/state")
    def state(annotator: Annotated[str, Query(min_length=1, max_length=64, pattern=ANNOTATOR_PATTERN)] = "default"
              ) -> dict[str, Any]:
        with opened(folder) as project:
            job = jobs.current_job(project)
            derived = project.derived()
            batch = project.batch(derived)
            items = [b.item for b in batch]
            guesses = project.records.guesses(items)
            mine, settled, total = project.progress(annotator, derived)
            versions = project.records.versions()
            last = project.store.conn.execute("SELECT COALESCE(MAX(id), 0) FROM answers").fetchone()[0]
            rows = project.kind == "rows"
            out = []
            for b in batch:
                guess = guesses.get(b.item)
                out.append({
                    **item_data(derived, annotator, b.item), "rank": b.rank, "score": b.score, "round": b.round,
                    "key": project.records.key_of(b.item),
                    "fields": project.records.fields_of(b.item) if rows else None,
                    "guess": None if guess is None else {"version": guess[0], "class": guess[1],
                                                         "confidence": guess[2]},
                })
            latest = versions[-1] if versions else None
            return {
                "project": folder.resolve().name, "kind": project.kind, "classes": classes, "annotator": annotator,
                "items": out, "batch": batch_id(items, max((b.round for b in batch), default=0)),
                "progress": {"mine": mine, "settled": settled, "total": total},
                "labeled": len(derived.labels), "per_class": project.labels_per_class(derived), "size": project.size,
                "job": job_data(job), "auto_train": auto_train, "last_answer": int(last),
                "model": None if latest is None else {"version": latest.version, "metric": latest.metric,
                                                      "value": latest.value, "labeled": latest.labeled,
                                                      "strategy": latest.strategy},
            }

    def maybe_train(project: Project, derived: Derived) -> dict[str, Any] | None:
        """Start a training when the batch has just been settled (once per batch)."""
        if not auto_train or not derived.labels:
            return None
        batch = project.batch(derived)
        if not batch or any(b.item not in derived.labels and b.item not in derived.skipped for b in batch):
            return None
        key = batch_id([b.item for b in batch], max(b.round for b in batch))
        if key in trained_batches:
            return None
        trained_batches.add(key)
        try:
            return job_data(jobs.start_training(project))
        except (OSError, ActiveLossError) as e:  # the answer is committed all the same
            log.warning("could not start training: %s", e)
            return {"status": "failed", "message": f"could not start training: {e}"}

    @app.post("/api/answer")
    def answer(body: AnswerBody) -> dict[str, Any]:
        with lock, opened(folder) as project:
            if not 0 <= body.item < project.size:
                raise HTTPException(404, f"no item {body.item}: the project has items 0..{project.size - 1}")
            event = project.answer(body.item, body.annotator, body.kind, body.label, request=body.request)
            if event is None or (event.item, event.annotator, event.kind, event.label) != (
                    body.item, body.annotator, body.kind, body.label):
                raise HTTPException(409, f"request id {body.request!r} was already used for another answer")
            derived = project.derived()
            mine, settled, total = project.progress(body.annotator, derived)
            training = maybe_train(project, derived)
            return {"id": event.id, "request": body.request, "item": item_data(derived, body.annotator, body.item),
                    "progress": {"mine": mine, "settled": settled, "total": total}, "training": training}

    @app.post("/api/undo")
    def undo(body: UndoBody) -> dict[str, Any]:
        with lock, opened(folder) as project:
            event = project.undo(body.annotator, request=body.request)
            if event is None:
                return {"id": None, "request": body.request, "undone": None, "item": None, "undid": None}
            if event.kind != "undo" or event.annotator != body.annotator:
                raise HTTPException(409, f"request id {body.request!r} was already used for another answer")
            undid = next((a for a in project.answers() if a.id == event.undoes), None)
            derived = project.derived()
            mine, settled, total = project.progress(body.annotator, derived)
            return {"id": event.id, "request": body.request, "undone": event.item, "undid": answer_data(undid),
                    "item": item_data(derived, body.annotator, event.item),
                    "progress": {"mine": mine, "settled": settled, "total": total}}

    if ml_backend:
        from .ml_backend import add_routes

        add_routes(app, folder, opened, lock, lambda project: maybe_train(project, project.derived()))

    @app.post("/api/train")
    def train() -> dict[str, Any]:
        with lock, opened(folder) as project:
            job = jobs.current_job(project)
            if job is not None and job.status == "running":
                return {"started": False, "job": job_data(job)}
            if not project.derived().labels:
                raise HTTPException(409, "nothing is labeled yet: label some items first")
            job = jobs.start_training(project)
            return {"started": True, "job": job_data(job)}

    @app.get("/api/items/{item}/image")
    def image(item: int) -> Response:
        with opened(folder) as project:
            key = project.records.key_of(item) if project.kind == "images" else None
            root = project.root.resolve()
        if key is None:
            raise HTTPException(404, f"no image for item {item}")
        path = (root / key).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise HTTPException(404, f"no image for item {item}")
        try:
            data, media = thumbnail(str(path), path.stat().st_mtime_ns)
        except Exception as e:  # Pillow raises many types for a damaged or odd file
            raise HTTPException(404, f"cannot read the image of item {item} ({type(e).__name__})") from None
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})

    return app


def listen(host: str, port: int) -> socket.socket:
    """A bound socket for ``host``:``port`` (0: any free port), or a one-line ConfigError."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise ConfigError(f"--host {host}: cannot listen there ({e.strerror or e})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host} port {port} ({e.strerror or e}); choose another --port "
                          "(0: any free port)") from None
    sock.set_inheritable(False)
    return sock


def page_url(host: str, port: int, token: str) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"


def serve(folder: str | Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None,
          announce: Callable[[str], Any] = print, auto_train: bool = True, ml_backend: bool = False) -> None:
    """Serve the labeling page of the project in ``folder`` until Ctrl-C; ``announce`` gets its
    address (with the token, generated unless given) and what to do with it."""
    require_framework()
    import uvicorn

    token = token or secrets.token_urlsafe(24)
    app = create_app(folder, token, auto_train=auto_train, ml_backend=ml_backend)
    with opened(Path(folder)) as project:
        _mine, settled, total = project.progress("default")
    sock = listen(host, port)
    actual = sock.getsockname()[1]
    url = page_url(host, actual, token)
    announce(f"labeling page of {folder}: a batch of {total} items, {settled} settled"
             + ("" if total else " (no batch yet: make one with activeloss query PROJECT --budget N)"))
    announce(f"open {url}")
    announce("  (one person each: add &annotator=NAME; answers are saved as they are given; Ctrl-C stops the server)")
    if ml_backend:
        announce(f"Label Studio ML backend: {url.split('/?', 1)[0]} (in Label Studio's Connect model dialog, turn on "
                 "basic authentication: any user name, the token as password)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        announce(f"note: listening on {host}: anyone who can reach it and has the address above can label")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=3))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    announce("labeling server stopped")
