"""A Label Studio ML backend over a project: Label Studio shows the project's model's guesses and
sends its annotations here, so people who label in Label Studio still train a model every round.

``activeloss label PROJECT --ml-backend`` adds these routes to the labeling server (same token:
in Label Studio's *Connect model* dialog, turn on basic authentication with any user name and
the token as password):

* ``GET /health`` - that the backend is up;
* ``POST /setup`` - Label Studio's labeling config, to name the controls in predictions;
* ``POST /predict`` - for each task, the latest model's class and confidence as a prediction;
* ``POST /webhook`` - an annotation created or updated in Label Studio becomes an answer
  (as :func:`activeloss.project.importing.import_tasks` reads it); when that settles the pending
  batch, the next model trains in the background, and the webhook answers at once.

Tasks are matched to items as imports match them: by ``activeloss_id`` (which ``export --format
label-studio`` puts in every task), by key, or by the image's path.
"""
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import torch
from fastapi import Body, HTTPException  # imported by the server only once it knows FastAPI is there

from ..errors import ActiveLossError
from ..project import Project
from ..project.formats import CONTROL, IMAGE_TAG, ROW_TAG
from ..project.importing import import_tasks, item_of_task

#: the webhook actions that carry an answer
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")


def control_names(label_config: str | None, kind: str) -> tuple[str, str]:
    """(from_name, to_name) of the config's single-choice control, or this project's export's names."""
    default = (CONTROL, IMAGE_TAG if kind == "images" else ROW_TAG)
    if not label_config:
        return default
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError:
        return default
    choices = next(root.iter("Choices"), None)
    if choices is None or not choices.get("name") or not choices.get("toName"):
        return default
    return str(choices.get("name")), str(choices.get("toName"))


def predictions(project: Project, tasks: list[Any], names: tuple[str, str]) -> list[dict[str, Any]]:
    """One Label Studio prediction per task (an empty one for a task naming no item of the project)."""
    items: list[int | None] = []
    for n, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        try:
            items.append(item_of_task(project, data if isinstance(data, dict) else {}, f"task {n + 1}"))
        except ActiveLossError:
            items.append(None)
    known = [i for i in items if i is not None]
    version = project.latest_version()
    if not version or not known:
        return [{"result": [], "score": 0.0, "model_version": "activeloss (no model yet)"} for _ in items]
    guesses = {i: (g[1], g[2]) for i, g in project.records.guesses(known).items() if g[0] == version}
    missing = sorted(set(known) - set(guesses))
    if missing:  # items the latest model has not guessed yet (not in a batch): ask it now
        x = project.dataset().x_train[torch.tensor(missing)]
        probs, _ = project.predict(x.numpy(), version)
        top, best = probs.max(dim=1)
        guesses.update(zip(missing, zip(best.tolist(), top.tolist())))
    out = []
    for item in items:
        if item is None:
            out.append({"result": [], "score": 0.0, "model_version": f"activeloss v{version}"})
            continue
        label, confidence = guesses[item]
        out.append({"model_version": f"activeloss v{version}", "score": float(confidence), "result": [{
            "from_name": names[0], "to_name": names[1], "type": "choices",
            "value": {"choices": [project.classes[label]]}, "score": float(confidence)}]})
    return out


def add_routes(app: Any, folder: Path, opened: Callable[[Path], Any], lock: Any,
               after_answers: Callable[[Project], dict[str, Any] | None]) -> None:
    """The ML backend's routes on the labeling server's ``app`` (whose middleware checks the token)."""
    state: dict[str, str | None] = {"label_config": None}

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "UP", "model_class": "activeloss"}

    @app.post("/setup")
    def setup(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        schema = body.get("schema") or body.get("label_config")
        if schema is not None and not isinstance(schema, str):
            raise HTTPException(422, "'schema' must be Label Studio's labeling config (XML text)")
        state["label_config"] = schema
        with opened(folder) as project:
            return {"model_version": f"activeloss v{project.latest_version()}"}

    @app.post("/predict")
    def predict(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or len(tasks) > 10_000:
            raise HTTPException(422, "'tasks' must be a list of Label Studio tasks (at most 10,000)")
        config = body.get("label_config") if isinstance(body.get("label_config"), str) else state["label_config"]
        with opened(folder) as project:
            return {"results": predictions(project, tasks, control_names(config, project.kind))}

    @app.post("/webhook", status_code=201)
    def webhook(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        action = body.get("action")
        if action not in ANNOTATION_ACTIONS:
            return {"status": "ignored", "action": action}
        task, annotation = body.get("task"), body.get("annotation")
        if not isinstance(task, dict) or not isinstance(annotation, dict):
            raise HTTPException(422, "an annotation webhook needs 'task' and 'annotation' objects")
        with lock, opened(folder) as project:
            summary = import_tasks(project, [{**task, "annotations": [annotation]}], "webhook")
            training = after_answers(project) if summary.added else None
        return {"status": "ok", "added": summary.added, "training": training}
