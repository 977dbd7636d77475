"""A project's items and labels out to files, and labels made elsewhere (Label Studio) back in.

    export_project(project, "label-studio", Path("tasks.json"))   # tasks.json + tasks.config.xml
    summary = import_file(project, Path("project-1-at-2025.json"))  # Label Studio's JSON export
    print(summary)      # added 12 labels, 3 unchanged, 2 ignored (2 cancelled)

Export formats (every file is written to a temporary name and renamed; an existing non-empty
output is never overwritten):

``csv``
    One row per pool item: ``id, key, label, status, votes, annotators, rank, score, guess,
    confidence``.  ``status`` is labeled / skipped / pending / unlabeled; ``votes`` counts the
    annotators' labels in force and ``annotators`` names them (``;``-separated); ``rank`` (1 = to
    label first) and ``score`` (the acquisition score) are set for pending items only; ``guess``
    and ``confidence`` are the latest model's class and probability where it made one.
``label-studio``
    Label Studio tasks (a JSON list of ``{"data": ..., "annotations": ..., "predictions": ...}``)
    and, beside them, the labeling configuration ``OUT.config.xml`` (``OUT`` without its
    suffix).  ``data`` holds the item (``image``, or ``row``: the row's fields, shown as a
    table), ``activeloss_id``, ``activeloss_key``, ``status``, ``rank`` and ``score`` (sortable
    columns of Label Studio's data manager; null unless pending) and ``activeloss_labels``
    (annotator -> class at export time).  Each label in force is an annotation with a
    ``choices`` result; the latest model's guess is a prediction whose ``score`` is its
    confidence.  Images are referenced the way Label Studio serves local files,
    ``/data/local-files/?d=<images folder name>/<key>``: start Label Studio with
    ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<the images folder's parent>``, and add a *Local
    files* source storage whose absolute path is the images folder (it grants access to it;
    there is no need to sync it).
``json-min``
    Label Studio's JSON-MIN shape: one flat record per label in force, the task's data fields
    (as above) plus ``id`` (the item), ``label`` (the class name), ``annotator``,
    ``activeloss_annotator``, ``annotation_id``, ``created_at``, ``updated_at``, ``lead_time``.
``imagefolder``
    The labeled images copied to ``OUT/<class>/<key with / replaced by __>`` (image projects).

``only="pending"`` limits the csv and label-studio exports to the pending batch.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from ..errors import ConfigError, DataError
from .answers import Answer, Derived
from .formats import (
    CONTROL,
    CSV_COLUMNS,
    EXPORT_FORMATS,
    IMAGE_TAG,
    ONLY,
    ROW_TAG,
)
from .project import Project


def export_project(project: Project, fmt: str, out: Path, only: str = "all") -> list[Path]:
    """Write the project as ``fmt`` (see the module docstring) to ``out``; the paths written
    (imagefolder: the folder).  ``only`` is ``all`` (every item) or ``pending`` (the batch; csv
    and label-studio)."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; formats: {', '.join(EXPORT_FORMATS)}")
    if only not in ONLY:
        raise ConfigError(f"unknown --only {only!r}: all or pending")
    if only != "all" and fmt not in ("csv", "label-studio"):
        raise ConfigError(f"--only {only} applies to the csv and label-studio exports, not {fmt}")
    if fmt == "imagefolder" and project.kind != "images":
        raise ConfigError("the imagefolder export is for image projects; this project's items are rows "
                          "(export csv, label-studio or json-min)")
    out = Path(out)
    view = _View(project)
    items = view.items(only)
    if fmt == "csv":
        _refuse_existing(out)
        _write_text(out, _csv_text(view, items))
        return [out]
    if fmt == "json-min":
        _refuse_existing(out)
        _write_text(out, json.dumps(_json_min(view, items), indent=2, ensure_ascii=False) + "\n")
        return [out]
    if fmt == "label-studio":
        config = out.with_suffix(".config.xml")
        _refuse_existing(out)
        _refuse_existing(config)
        tasks = json.dumps(_ls_tasks(view, items), indent=2, ensure_ascii=False) + "\n"
        _write_text(config, labeling_config(project))
        try:
            _write_text(out, tasks)
        except BaseException:
            config.unlink(missing_ok=True)
            raise
        return [out, config]
    _refuse_existing(out, folder=True)
    _image_folder(view, out)
    return [out]


class _View:
    """What an export needs to know of a project, read once."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.classes = project.classes
        self.keys = project.records.keys()
        self.derived: Derived = project.derived()
        self.votes: dict[int, dict[str, int]] = {}  # item -> annotator -> class, the labels in force
        self.answer_of: dict[tuple[str, int], Answer] = {}
        for (who, item), a in sorted(self.derived.current.items(), key=lambda kv: kv[1].id):
            if a.kind == "label" and a.label is not None:
                self.votes.setdefault(item, {})[who] = a.label
                self.answer_of[(who, item)] = a
        settled = self.derived.labels.keys() | self.derived.skipped
        pending = [b for b in project.batch(self.derived) if b.item not in settled]
        self.rank = {b.item: i + 1 for i, b in enumerate(pending)}  # 1: the first to label
        self.score = {b.item: b.score for b in pending}
        self.guesses = project.records.guesses(list(range(len(self.keys))))

    def status(self, item: int) -> str:
        if item in self.derived.labels:
            return "labeled"
        if item in self.derived.skipped:
            return "skipped"
        return "pending" if item in self.rank else "unlabeled"

    def items(self, only: str) -> list[int]:
        return sorted(self.rank, key=self.rank.__getitem__) if only == "pending" else list(range(len(self.keys)))

    def data(self, item: int) -> dict[str, Any]:
        """A task's data: the item as Label Studio shows it, and where it stands here."""
        key = self.keys[item]
        data: dict[str, Any] = {}
        if self.project.kind == "images":
            data[IMAGE_TAG] = local_files_url(self.project.root, key)
        else:
            data[ROW_TAG] = self.project.records.fields_of(item) or {}
        data.update({"activeloss_id": item, "activeloss_key": key, "status": self.status(item),
                     "rank": self.rank.get(item), "score": self.score.get(item),
                     "activeloss_labels": {who: self.classes[y] for who, y in self.votes.get(item, {}).items()}})
        return data


def local_files_url(root: Path, key: str) -> str:
    """How Label Studio serves ``root/key`` with ``root``'s parent as its local-files document root."""
    return "/data/local-files/?d=" + quote(f"{root.name}/{key}", safe="/")


def labeling_config(project: Project) -> str:
    """The Label Studio labeling configuration of the label-studio export: the image (or the row's
    fields as a table) and one single choice among the classes."""
    view = ET.Element("View")
    target = IMAGE_TAG if project.kind == "images" else ROW_TAG
    ET.SubElement(view, "Image" if target == IMAGE_TAG else "Table", name=target, value=f"${target}")
    choices = ET.SubElement(view, "Choices", name=CONTROL, toName=target, choice="single", showInline="true")
    for c in project.classes:
        ET.SubElement(choices, "Choice", value=c)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def _choice(name: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"from_name": CONTROL, "to_name": target, "type": "choices", "value": {"choices": [name]}, **extra}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).isoformat().replace("+00:00", "Z")


def _ls_tasks(view: _View, items: list[int]) -> list[dict[str, Any]]:
    target = IMAGE_TAG if view.project.kind == "images" else ROW_TAG
    tasks = []
    for item in items:
        task: dict[str, Any] = {"data": view.data(item)}
        annotations = []
        for who, y in view.votes.get(item, {}).items():
            a = view.answer_of[(who, item)]
            annotations.append({"result": [_choice(view.classes[y], target, id=f"activeloss-{a.id}")],
                                "was_cancelled": False, "ground_truth": False, "created_at": _iso(a.at)})
        if annotations:
            task["annotations"] = annotations
        if item in view.guesses:
            version, y, conf = view.guesses[item]
            task["predictions"] = [{"model_version": f"activeloss v{version}", "score": round(conf, 6),
                                    "result": [_choice(view.classes[y], target, score=round(conf, 6))]}]
        tasks.append(task)
    return tasks


def _json_min(view: _View, items: list[int]) -> list[dict[str, Any]]:
    records = []
    for item in items:
        for who, y in view.votes.get(item, {}).items():
            a = view.answer_of[(who, item)]
            data = view.data(item)
            del data["activeloss_labels"]  # a record names its annotator: no need to guess echoes
            records.append({**data, "id": item, CONTROL: view.classes[y], "annotator": who,
                            "activeloss_annotator": who, "annotation_id": a.id, "created_at": _iso(a.at),
                            "updated_at": _iso(a.at), "lead_time": None})
    return records


def _csv_text(view: _View, items: list[int]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for item in items:
        label = view.derived.labels.get(item)
        votes = view.votes.get(item, {})
        guess = view.guesses.get(item)
        score = view.score.get(item)
        writer.writerow([item, view.keys[item], view.classes[label] if label is not None else "", view.status(item),
                         len(votes), ";".join(sorted(votes)), view.rank.get(item, ""),
                         "" if score is None else repr(float(score)),
                         view.classes[guess[1]] if guess else "", f"{guess[2]:.6f}" if guess else ""])
    return buf.getvalue()


def _folder_name(cls: str) -> str:
    if not cls or cls in (".", "..") or "/" in cls or "\\" in cls or "\0" in cls:
        raise ConfigError(f"the class {cls!r} cannot be a folder name; export csv or label-studio instead")
    return cls


def _image_folder(view: _View, out: Path) -> None:
    labeled = sorted(view.derived.labels.items())
    if not labeled:
        raise ConfigError("nothing to export: no item is labeled yet")
    folders = {y: _folder_name(c) for y, c in enumerate(view.classes)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        used: set[tuple[int, str]] = set()
        for item, y in labeled:
            key = view.keys[item]
            source = view.project.root / key
            if not source.is_file():
                raise DataError(f"the image {source} of item {key!r} is gone (moved or deleted?)")
            name = key.replace("/", "__")
            if (y, name) in used:  # only a key that held "__" itself can collide
                p = PurePosixPath(name)
                name = f"{p.stem}~{item}{p.suffix}"
            used.add((y, name))
            (tmp / folders[y]).mkdir(exist_ok=True)
            shutil.copyfile(source, tmp / folders[y] / name)
        _permissions(tmp, 0o777)
        if out.is_dir():
            out.rmdir()  # empty: _refuse_existing checked
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _permissions(path: Path, mode: int) -> None:
    """What ``open`` or ``mkdir`` would have given ``path`` (tempfile makes it private to its owner)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _refuse_existing(path: Path, folder: bool = False) -> None:
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{path} exists and is not a folder; refusing to overwrite it (choose another --out)")
    if path.is_dir():
        if any(path.iterdir()):
            raise ConfigError(f"{path} exists and is not empty; refusing to overwrite it (choose another --out)")
    elif path.exists() and path.stat().st_size > 0:
        raise ConfigError(f"{path} exists; refusing to overwrite it (choose another --out, or remove it)")


def _write_text(path: Path, text: str) -> None:
    """``text`` to ``path`` through a temporary file in the same folder, renamed: never half-written."""
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; name a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        _permissions(Path(tmp), 0o666)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
