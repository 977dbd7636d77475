"""Labels made elsewhere (Label Studio, a CSV) into a project.

:func:`import_file` reads Label Studio's JSON, JSON-MIN and CSV (or TSV) exports, and
this module's csv.  Its format is detected when not given (see :func:`detect_format`).  An item
is found by ``activeloss_id``, else by its key (``activeloss_key``, ``key`` or ``item``), else by
the image's path: the item whose key is the longest tail of that path, else the only item with
that file name (an upload prefix ``1a2b3c4d-`` that Label Studio adds is ignored).  A class is
found by its name.  Cancelled or skipped annotations and empty results are ignored, and so are
the labels an export of this module put there (``activeloss_labels``), so a round trip through
Label Studio does not count them twice.  Everything is checked before anything is written: an
unknown item or class refuses the whole file, naming the first; the labels are then written in
one transaction.  An annotation's annotator is ``label-studio:<email or user id>``, else the
``annotator`` argument, else ``import``; an answer equal to that annotator's answer in force is
not written again, so importing a file twice adds nothing the second time.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from ..data.images import is_image_file
from ..errors import ConfigError, DataError
from .answers import Kind
from .formats import (
    CANCELLED,
    CONTROL,
    DEFAULT_IMPORTER,
    ECHO,
    EMPTY,
    IMAGE_TAG,
    IMPORT_FORMATS,
    LABEL_STUDIO,
    NOT_LABELS,
    SUPERSEDED,
    UPLOAD_PREFIX,
)
from .project import Project


@dataclass
class ImportSummary:
    """What an import did: answers ``added``, ``unchanged`` (already in force), ``ignored`` (with
    the count of each reason), in which ``format``, from which annotators (added answers)."""

    format: str
    added: int = 0
    unchanged: int = 0
    ignored: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    annotators: list[str] = field(default_factory=list)

    def ignore(self, reason: str) -> None:
        self.ignored += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def __str__(self) -> str:
        why = f" ({', '.join(f'{n} {r}' for r, n in sorted(self.reasons.items()))})" if self.reasons else ""
        return (f"added {self.added} label{'s' * (self.added != 1)}, {self.unchanged} unchanged, "
                f"{self.ignored} ignored{why}")


@dataclass
class _Ref:
    """How a file names an item."""

    where: str  # "task 3", "record 2", "line 7": for messages
    item_id: Any = None  # activeloss_id
    key: str | None = None  # activeloss_key / key / item
    image: str | None = None  # a path or URL whose tail names the image
    loose_id: str | None = None  # a generic csv's id: a key, else an item index


@dataclass
class _Claim:
    """One answer read from a file, before it is checked."""

    ref: _Ref
    choices: list[str]
    annotator: str | None  # None: the import's annotator
    order: tuple[str, int, int]  # (time, annotation id, position): the later wins for one annotator and item
    cancelled: bool = False
    echoes: dict[str, str] | None = None  # the task's activeloss_labels (annotator -> class)
    project_label: bool = False  # our csv: the project's label, unchanged when it still is


def detect_format(path: Path, text: str | None = None) -> str:
    """``label-studio`` (a JSON list of tasks, each with a ``data`` object), ``json-min`` (a JSON
    list of flat records) or ``csv`` (a file named .csv or .tsv, or one that does not start with
    ``[`` or ``{``)."""
    text = _read(path) if text is None else text
    if path.suffix.lower() in (".csv", ".tsv"):
        return "csv"
    if text.lstrip()[:1] not in ("[", "{"):
        if path.suffix.lower() == ".json":
            raise DataError(f"{path} is not JSON (it does not start with [ or {{)")
        return "csv"
    doc = _load_json(path, text)
    records = doc if isinstance(doc, list) else [doc]
    if records and all(isinstance(r, dict) and isinstance(r.get("data"), dict) for r in records):
        return "label-studio"
    if all(isinstance(r, dict) for r in records):
        return "json-min"
    raise DataError(f"{path}: expected a JSON list of Label Studio tasks or of JSON-MIN records")


def import_file(project: Project, path: Path, fmt: str | None = None, annotator: str | None = None) -> ImportSummary:
    """Import the labels of ``path`` (see the module docstring): all of them in one transaction, or
    none when one names an unknown item or class."""
    path = Path(path)
    if fmt is not None and fmt not in IMPORT_FORMATS:
        raise ConfigError(f"unknown import format {fmt!r}; formats: {', '.join(IMPORT_FORMATS)}")
    fallback = DEFAULT_IMPORTER if annotator is None else annotator
    if not 1 <= len(fallback) <= 64:
        raise ConfigError("--annotator: a name must be 1 to 64 characters")
    text = _read(path)
    fmt = fmt or detect_format(path, text)
    summary = ImportSummary(fmt)
    if fmt == "csv":
        claims = _csv_claims(path, text, project.classes)
    else:
        doc = _load_json(path, text)
        if fmt == "label-studio":
            claims = _task_claims(path, doc)
        else:
            claims = _min_claims(path, doc, project.classes)
    rows = _resolve(project, claims, fallback, summary)
    if rows:
        project.records.add_answers(rows)
    return summary


def import_tasks(project: Project, tasks: list[Any], source: str, annotator: str | None = None) -> ImportSummary:
    """Import Label Studio tasks given as data (a webhook's task with its annotation), like a file."""
    summary = ImportSummary("label-studio")
    rows = _resolve(project, _task_claims(Path(source), tasks), annotator or DEFAULT_IMPORTER, summary)
    if rows:
        project.records.add_answers(rows)
    return summary


def item_of_task(project: Project, data: Mapping[str, Any], where: str = "task") -> int:
    """The item a Label Studio task's data names (``activeloss_id``, its key, or its image's path)."""
    if not isinstance(data, Mapping):
        raise DataError(f"{where}: its 'data' is not an object")
    return _Items(project).find(_ref_of(where, data))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder; name the exported file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} ({e})") from None


def _load_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e})") from None


def _time(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _ls_user(value: Any) -> str | None:
    """A Label Studio user (``completed_by`` or ``annotator``: an id, an email, or an object with them)."""
    if isinstance(value, dict):
        value = value.get("email") or value.get("id")
    if value is None or isinstance(value, bool) or str(value).strip() == "":
        return None
    return LABEL_STUDIO + str(value).strip()


def _echoes(value: Any) -> dict[str, str] | None:
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    return None


def _ref_of(where: str, data: Mapping[str, Any]) -> _Ref:
    key = next((data[k] for k in ("activeloss_key", "key", "item") if data.get(k) not in (None, "")), None)
    image = data.get(IMAGE_TAG)
    if not isinstance(image, str) or not image:
        named = [v for k, v in data.items() if isinstance(v, str) and k not in NOT_LABELS
                 and is_image_file(PurePosixPath(_url_path(v)).name)]
        image = named[0] if len(named) == 1 else None
    item_id = data.get("activeloss_id")
    return _Ref(where, item_id if item_id not in (None, "") else None, None if key is None else str(key), image)


def _choices_of(where: str, results: Any) -> list[str]:
    """The choices of an annotation's result: of the control named ``label`` if there is one, else of
    its only choices control."""
    if not isinstance(results, list):
        raise DataError(f"{where}: an annotation's 'result' is not a list")
    by_control: dict[str, list[str]] = {}
    for r in results:
        if not isinstance(r, dict) or r.get("type", "choices") != "choices":
            continue
        value = r.get("value")
        choices = value.get("choices") if isinstance(value, dict) else None
        if not isinstance(choices, list):
            continue
        by_control.setdefault(str(r.get("from_name", CONTROL)), []).extend(str(c) for c in choices)
    if not by_control:
        return []
    if CONTROL in by_control:
        return by_control[CONTROL]
    if len(by_control) > 1:
        raise DataError(f"{where}: several choices controls ({', '.join(sorted(by_control))}); "
                        f"name the one that holds the class {CONTROL!r}")
    return next(iter(by_control.values()))


def _task_claims(path: Path, doc: Any) -> list[_Claim]:
    """Label Studio's JSON export: a list of tasks (or one task), each with its annotations."""
    tasks = doc if isinstance(doc, list) else [doc]
    claims: list[_Claim] = []
    for n, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise DataError(f"{path}: task {n + 1} is not a Label Studio task (an object with a 'data' object)")
        where = f"{path.name}: task {task.get('id', n + 1)}"
        annotations = task.get("annotations", task.get("completions", []))
        if not isinstance(annotations, list):
            raise DataError(f"{where}: 'annotations' is not a list")
        ref = _ref_of(where, task["data"])
        echoes = _echoes(task["data"].get("activeloss_labels"))
        for a in annotations:
            if not isinstance(a, dict):
                raise DataError(f"{where}: an annotation is not an object")
            claims.append(_Claim(
                ref, _choices_of(where, a.get("result", [])), _ls_user(a.get("completed_by")),
                (_time(a.get("updated_at") or a.get("created_at")), _int_or(a.get("id"), 0), len(claims)),
                cancelled=bool(a.get("was_cancelled") or a.get("skipped")), echoes=echoes))
    return claims


def _value_choices(value: Any) -> list[str]:
    """A label as JSON-MIN or CSV exports write it: a class name, ``{"choices": [...]}`` (also as
    JSON text), or a list of those."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "["):
            try:
                return _value_choices(json.loads(text))
            except json.JSONDecodeError:
                pass
        return [text] if text else []
    if isinstance(value, dict):
        choices = value.get("choices")
        return [str(c) for c in choices] if isinstance(choices, list) else []
    if isinstance(value, list):
        return [c for v in value for c in _value_choices(v)]
    return [str(value)]


def _label_field(path: Path, names: Sequence[str], values: Sequence[Mapping[str, Any]], classes: list[str]) -> str:
    """The field holding the class: ``label``, else the only other field whose values are all classes."""
    if CONTROL in names:
        return CONTROL
    known = set(classes)
    candidates = []
    for name in names:
        if name in NOT_LABELS:
            continue
        seen = [_value_choices(v.get(name)) for v in values]
        if any(seen) and all(set(s) <= known for s in seen):
            candidates.append(name)
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise DataError(f"{path}: several fields could hold the class ({', '.join(candidates)}); "
                        f"name the one that does {CONTROL!r}")
    raise DataError(f"{path} has no label field: expected {CONTROL!r}, or a Label Studio choices field "
                    f"whose values are the classes ({', '.join(classes)})")


def _min_claims(path: Path, doc: Any, classes: list[str]) -> list[_Claim]:
    """JSON-MIN: a list of flat records, one per annotation (Label Studio's, or ours)."""
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise DataError(f"{path}: expected a JSON-MIN export, a list of flat records")
    if not doc:
        return []
    names = list(dict.fromkeys(k for r in doc for k in r))
    label = _label_field(path, names, doc, classes)
    claims = []
    for n, r in enumerate(doc):
        where = f"{path.name}: record {n + 1}"
        ours = r.get("activeloss_annotator")
        who = str(ours) if isinstance(ours, str) and ours else _ls_user(r.get("annotator"))
        claims.append(_Claim(_ref_of(where, r), _value_choices(r.get(label)), who,
                             (_time(r.get("updated_at") or r.get("created_at")), _int_or(r.get("annotation_id"), 0),
                              n), echoes=_echoes(r.get("activeloss_labels"))))
    return claims


def _csv_claims(path: Path, text: str, classes: list[str]) -> list[_Claim]:
    """Label Studio's CSV or TSV export, this module's csv, or any table with an item and a label column."""
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        table = [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as e:
        raise DataError(f"{path} is not a readable CSV ({e})") from None
    if not table:
        raise DataError(f"{path} is empty (expected a header row)")
    header = [h.strip() for h in table[0]]
    if len(set(header)) != len(header):
        raise DataError(f"{path}: the header names a column twice")
    rows = []
    for n, cells in enumerate(table[1:]):
        if len(cells) != len(header):
            raise DataError(f"{path}: data row {n + 1} has {len(cells)} fields, the header {len(header)}")
        rows.append(dict(zip(header, (c.strip() for c in cells))))
    ours = {"key", "status", "votes"} <= set(header)  # this module's csv
    label_studio = "annotation_id" in header  # Label Studio's: its id column is its task's id
    label = CONTROL if ours else _label_field(path, header, rows, classes)
    claims = []
    for n, r in enumerate(rows):
        where = f"{path.name}: line {n + 2}"
        ref = _ref_of(where, r)
        if ref.item_id is None and ref.key is None and ref.image is None and not label_studio and r.get("id"):
            ref.loose_id = r["id"]
        if ours:
            who = None
        elif label_studio:
            who = _ls_user(r.get("annotator"))
        else:
            who = r.get("annotator") or None
        claims.append(_Claim(ref, _value_choices(r.get(label)), who,
                             (_time(r.get("updated_at") or r.get("created_at")),
                              int(r["annotation_id"]) if r.get("annotation_id", "").isdigit() else 0, n),
                             echoes=_echoes(r.get("activeloss_labels")), project_label=ours))
    return claims


# ------------------------------------------------------------------ matching and writing
def _url_path(ref: str) -> str:
    """The file path in an image reference: Label Studio's ``?d=`` local-files form, a URL, or a path."""
    parsed = urlparse(ref)
    d = parse_qs(parsed.query).get("d")
    if d:
        return d[0]
    return unquote(parsed.path if parsed.scheme or parsed.netloc or ref.startswith("/") else ref).replace("\\", "/")


class _Items:
    """Finds a project's items by id, key or image path."""

    def __init__(self, project: Project) -> None:
        self.keys = project.records.keys()
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.by_name: dict[str, list[str]] = {}
        for k in self.keys:
            self.by_name.setdefault(k.rsplit("/", 1)[-1], []).append(k)

    def find(self, ref: _Ref) -> int:
        if ref.item_id is not None:
            item = self._by_id(ref)
            if ref.key is not None and self.keys[item] != ref.key:
                raise DataError(f"{ref.where}: activeloss_id {item} is {self.keys[item]!r} in this project, the "
                                f"file says {ref.key!r} (a file of another project?)")
            return item
        if ref.key is not None:
            if ref.key not in self.index:
                raise DataError(f"{ref.where}: no item {ref.key!r} in this project")
            return self.index[ref.key]
        if ref.image is not None:
            return self._by_path(ref)
        if ref.loose_id is not None:
            if ref.loose_id in self.index:
                return self.index[ref.loose_id]
            ref.item_id = ref.loose_id
            return self._by_id(ref)
        raise DataError(f"{ref.where} names no item (activeloss_id, activeloss_key, key or image)")

    def _by_id(self, ref: _Ref) -> int:
        value = ref.item_id
        item = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and value.strip().isdigit():
            item = int(value)
        if item is None or not 0 <= item < len(self.keys):
            raise DataError(f"{ref.where}: no item {value!r} in this project (items are 0..{len(self.keys) - 1})")
        return item

    def _by_path(self, ref: _Ref) -> int:
        assert ref.image is not None
        parts = [p for p in _url_path(ref.image).split("/") if p not in ("", ".")]
        if not parts:
            raise DataError(f"{ref.where}: the image {ref.image!r} names no file")
        name = parts[-1]
        candidates = self.by_name.get(name) or self.by_name.get(UPLOAD_PREFIX.sub("", name), [])
        tails = [k for k in candidates if k.split("/")[:-1] == parts[-len(k.split("/")):-1]
                 and len(k.split("/")) <= len(parts)]
        if tails:
            return self.index[max(tails, key=len)]  # the longest tail is the most specific
        if len(candidates) == 1:
            return self.index[candidates[0]]
        if candidates:
            raise DataError(f"{ref.where}: the image {ref.image!r} could be any of {', '.join(candidates[:4])}; "
                            "give activeloss_id or the key")
        raise DataError(f"{ref.where}: no item of this project is the image {ref.image!r}")


_Row = tuple[int, str, Kind, int | None, int | None, str | None]


def _resolve(project: Project, claims: list[_Claim], fallback: str, summary: ImportSummary) -> list[_Row]:
    """Check every claim, then the answers to write: the latest per annotator and item, when it
    differs from that annotator's answer in force."""
    items = _Items(project)
    classes = {c: i for i, c in enumerate(project.classes)}
    live: list[tuple[_Claim, int, int]] = []  # claim, item, class
    for claim in claims:
        item = items.find(claim.ref)
        if claim.cancelled:
            summary.ignore(CANCELLED)
            continue
        if not claim.choices:
            summary.ignore(EMPTY)
            continue
        if len(claim.choices) > 1:
            raise DataError(f"{claim.ref.where}: {len(claim.choices)} choices ({', '.join(claim.choices)}); "
                            "a label is one class")
        name = claim.choices[0]
        if name not in classes:
            raise DataError(f"{claim.ref.where}: unknown class {name!r} (the classes are "
                            f"{', '.join(project.classes)})")
        live.append((claim, item, classes[name]))
    # the labels an export of ours put in a task come back as annotations: the earliest that match
    left: dict[int, Counter[str]] = {}
    for claim, item, _y in live:
        if claim.echoes is not None and item not in left:
            left[item] = Counter(claim.echoes.values())
    latest: dict[tuple[str, int], tuple[_Claim, int]] = {}
    for claim, item, y in sorted(live, key=lambda c: (c[0].order[1], c[0].order[0], c[0].order[2])):
        name = project.classes[y]
        if item in left and left[item][name] > 0:
            left[item][name] -= 1
            summary.ignore(ECHO)
            continue
        who = claim.annotator or fallback
        if len(who) > 64:
            raise DataError(f"{claim.ref.where}: the annotator {who[:40]!r}... is longer than 64 characters")
        key = (who, item)
        if key in latest:
            summary.ignore(SUPERSEDED)
            if latest[key][0].order > claim.order:
                continue
        latest[key] = (claim, y)
    derived = project.derived()
    rows: list[_Row] = []
    added: set[str] = set()
    for (who, item), (claim, y) in sorted(latest.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        mine = derived.current.get((who, item))
        if (mine is not None and mine.kind == "label" and mine.label == y) or (
                claim.project_label and derived.labels.get(item) == y):
            summary.unchanged += 1
            continue
        rows.append((item, who, "label", y, None, None))
        added.add(who)
    summary.added = len(rows)
    summary.annotators = sorted(added)
    return rows
