"""The labeling commands: ``init``, ``query``, ``label``, ``fit``, ``status``, ``predict``,
``export`` and ``import`` (see the README, "Label your own data")."""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .formats import EXPORT_FORMATS, IMPORT_FORMATS
from .project import DEFAULT_STRATEGY, Project


def _training_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training (kept with the project; fit may override them for one round)")
    group.add_argument("--epochs", type=int, default=None, help="training epochs per round (default 30)")
    group.add_argument("--batch-size", type=int, default=None, help="training batch size (default 32)")
    group.add_argument("--lr", type=float, default=None, help="learning rate (default 0.05)")
    group.add_argument("--model", default=None, help="cnn, resnet18, vgg16 or mlp (default: per input)")
    group.add_argument("--augment", default=None, help="flip, crop, flip,crop or none (images default flip,crop)")
    group.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    group.add_argument("--seed", type=int, default=None, help="seed of every random draw (default 0)")


def _given(args: argparse.Namespace) -> dict[str, Any]:
    names = ("epochs", "batch_size", "lr", "model", "augment", "device", "seed")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def add_commands(sub: Any) -> None:
    """Add the labeling commands to the ``activeloss`` parser's sub-commands."""
    init = sub.add_parser(
        "init", help="make a labeling project from a folder of images or a CSV of rows",
        description="Make a project folder (its store.sqlite is the single source of truth) from unlabeled "
                    "images or rows. Images may have any size: they are resized to --size pixels for the model; "
                    "the originals are shown on the labeling page.",
        epilog="example:\n  activeloss init pets --images photos/ --classes cat,dog --val labeled_photos/\n"
               "  (--val holds labeled_photos/<class>/<image>; --labels FILE is a CSV with columns item,label)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    init.add_argument("project", metavar="PROJECT", help="the folder to make (new, or empty)")
    source = init.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="a folder of images (sub-folders too), unlabeled")
    source.add_argument("--csv", metavar="FILE", help="a CSV of rows: numeric feature columns, optional id column")
    init.add_argument("--classes", required=True, metavar="A,B,...", help="the class names")
    init.add_argument("--labels", metavar="FILE", help="labels already known: a CSV with columns item,label "
                                                       "(item: the image's path under DIR, or the row's id)")
    init.add_argument("--val", metavar="DIR|FILE", help="a labeled validation set (DIR/<class>/<image>, or a CSV "
                                                        "with a label column): each round's model is measured on it")
    init.add_argument("--size", type=int, default=32, help="side in pixels the model sees images at (default 32)")
    init.add_argument("--strategy", default=DEFAULT_STRATEGY,
                      help=f"the strategy queries use unless they name one (default {DEFAULT_STRATEGY})")
    _training_options(init)

    query = sub.add_parser(
        "query", help="choose the next batch to label (pending until labeled)",
        description="Choose a ranked batch of unlabeled items with the latest model and the strategy (any strategy "
                    "name or OBJECTIVE+ACQUISITION pair). With no labels and no model yet, the first batch is a cold "
                    "start: the most typical item of each of BUDGET k-means groups of the inputs, largest group "
                    "first. With labels but no model (or a model trained for another objective) a model is trained "
                    "first.")
    query.add_argument("project", metavar="PROJECT")
    query.add_argument("--strategy", default=None, help="default: the project's (the last one used)")
    query.add_argument("--budget", type=int, required=True, help="how many items to choose")
    query.add_argument("--include-skipped", action="store_true", help="skipped items may be chosen again")

    label = sub.add_parser("label", help="serve the labeling page (prints its URL with its secret token)",
                           description="Serve the pending batch as a labeling page: keys 1-9 pick a class, arrows "
                                       "move, S skips, Backspace undoes; ?annotator=NAME for several annotators. "
                                       "Needs the extra: pip install 'activeloss[label]'.")
    label.add_argument("project", metavar="PROJECT")
    label.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    label.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    label.add_argument("--token", default=None, help="the secret the URL must carry (default: a new random one)")
    label.add_argument("--no-auto-train", action="store_true",
                       help="do not train when the batch is done (the page's button still does)")
    label.add_argument("--ml-backend", action="store_true",
                       help="also serve a Label Studio ML backend (/health, /setup, /predict, /webhook): the "
                            "model's guesses in Label Studio, its annotations back here")

    fit = sub.add_parser("fit", help="train the next model version on every label so far",
                         description="Train a model on the labels (every annotator's answers, the majority per "
                                     "item) and measure it on the validation set when the project has one.")
    fit.add_argument("project", metavar="PROJECT")
    fit.add_argument("--strategy", default=None, help="train for this strategy's objective (default: the project's)")
    fit.add_argument("--then-query", action="store_true",
                     help="then query the next batch with the project's strategy and last budget")
    fit.add_argument("--job", type=int, default=None, help=argparse.SUPPRESS)  # set by the labeling server
    _training_options(fit)

    status = sub.add_parser("status", help="rounds, labels per class and annotator, the pending batch, models")
    status.add_argument("project", metavar="PROJECT")
    status.add_argument("--json", action="store_true", help="print it as JSON")

    predict = sub.add_parser("predict", help="classify new images (or rows) with a model of the project")
    predict.add_argument("project", metavar="PROJECT")
    what = predict.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", metavar="DIR", help="a folder of images")
    what.add_argument("--csv", metavar="FILE", help="a CSV of rows with the project's feature columns")
    predict.add_argument("--out", required=True, metavar="FILE.csv", help="where to write the predictions")
    predict.add_argument("--version", type=int, default=None, help="model version (default: the latest)")

    export = sub.add_parser("export", help="write the labels (and the pending batch) for other tools",
                            description="csv: every item with its label and status; label-studio: Label Studio "
                                        "tasks JSON plus its labeling config, with each item's acquisition score "
                                        "and rank; json-min: Label Studio's flat JSON; imagefolder: the labeled "
                                        "images copied into OUT/<class>/.")
    export.add_argument("project", metavar="PROJECT")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("--out", required=True, metavar="PATH", help="the file (folder for imagefolder) to write")
    export.add_argument("--only", default="all", choices=("all", "pending"),
                        help="csv and label-studio: every item (default) or the pending batch only")

    imp = sub.add_parser("import", help="add labels from a Label Studio export (JSON, JSON-MIN, CSV) or a CSV",
                         description="Add the answers of a Label Studio export (cancelled or skipped annotations "
                                     "are ignored) or of a CSV with a label column. An unknown item or class "
                                     "refuses the whole file: nothing is half-imported.")
    imp.add_argument("project", metavar="PROJECT")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--format", default=None, choices=IMPORT_FORMATS,
                     help="default: detected from the file")
    imp.add_argument("--annotator", default=None, help="whose answers these are when the file does not say")


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def cmd_init(args: argparse.Namespace) -> int:
    from .sources import parse_classes

    project = Project.create(args.project, parse_classes(args.classes), images=args.images, csv=args.csv,
                             labels=args.labels, val=args.val, size=args.size, strategy=args.strategy,
                             **_given(args))
    status = project.status()
    val = (f"{status['validation']} labeled validation items: each round reports its accuracy on them"
           if status["validation"] else "no validation set: rounds report no accuracy (init --val gives one)")
    print(f"made project {args.project}: {status['items']} {project.kind}, {len(project.classes)} classes, "
          f"{status['labeled']} labeled; {val}")
    print(f"next: activeloss query {args.project} --budget 50")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    project = Project.open(args.project)
    result = project.query(args.budget, args.strategy, include_skipped=args.include_skipped, say=_say)
    how = ("cold start (no labels, no model): the most typical item of each k-means group"
           if result.version == 0 else f"{result.strategy} with model version {result.version}")
    print(f"queried {len(result.items)} items by {how}; they are pending until labeled")
    keys = project.records.keys()
    for rank, (item, score) in enumerate(zip(result.items[:10], result.scores[:10])):
        print(f"  {rank + 1:3d}. item {item:6d}  {'' if score is None else f'score {score:.4g}  '}{keys[item]}")
    if len(result.items) > 10:
        print(f"  ... and {len(result.items) - 10} more")
    print(f"next: activeloss label {args.project}")
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from ..label.server import serve

    Project.open(args.project)  # one clear line if it is not a project
    serve(Path(args.project), host=args.host, port=args.port, token=args.token, announce=print,
          auto_train=not args.no_auto_train, ml_backend=args.ml_backend)
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    project = Project.open(args.project)
    job = args.job

    def progress(epoch: int, epochs: int) -> None:
        if job is not None:
            project.records.update_job(job, epoch=epoch, epochs=epochs, message="training")
        elif sys.stderr.isatty():
            print(f"  epoch {epoch}/{epochs}", end="\n" if epoch == epochs else "\r", file=sys.stderr, flush=True)

    try:
        if job is not None:
            project.records.update_job(job, pid=os.getpid(), message="training")
        result = project.fit(args.strategy, progress, _given(args))
        measured = (f"{result.metric} {result.value:.4f} on the validation set" if result.metric and
                    result.value is not None else "not measured (no validation set)")
        print(f"model version {result.version}: {result.labeled} labels, {result.seconds:.1f} s of training; "
              f"{measured}")
        message = f"model version {result.version}: {measured}"
        if args.then_query:
            budget = int(project.meta.get("budget") or 0)
            left = project.queryable()
            if budget and left > 0:
                q = project.query(min(budget, left), say=_say)
                message += f"; queried the next {len(q.items)} items"
                print(f"queried the next {len(q.items)} items with {q.strategy}")
        if job is not None:
            project.records.update_job(job, status="done", message=message)
    except BaseException as exc:
        if job is not None:
            project.records.update_job(job, status="failed", message=str(exc) or type(exc).__name__)
        raise
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    project = Project.open(args.project)
    status = project.status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(format_status(status))
    return 0


def format_status(s: dict[str, Any]) -> str:
    """The status as text a person reads (and can paste)."""
    lines = [f"project {s['project']}: {s['items']} {s['kind']}, {s['labeled']} labeled, {s['skipped']} skipped; "
             f"strategy {s['strategy']}"]
    lines.append("validation: " + (f"{s['validation']} labeled items" if s["validation"] else
                                   "none (rounds are not measured; init --val gives a validation set)"))
    width = max(len(c) for c in s["per_class"])
    lines.append("labels per class:")
    lines += [f"  {c:{width}s} {n:6d}" for c, n in s["per_class"].items()]
    if s["annotators"]:
        lines.append("annotators (answers in force / labels / skips / undos given):")
        w = max(len(a) for a in s["annotators"])
        lines += [f"  {a:{w}s} {c['in_force']:6d} {c['label']:6d} {c['skip']:6d} {c['undo']:6d}"
                  for a, c in sorted(s["annotators"].items())]
    for g in s["agreement"]:
        lines.append(f"agreement {g['annotators'][0]} / {g['annotators'][1]}: {g['agreed']} of {g['items']} items "
                     f"({100 * g['rate']:.0f}%)")
    b = s["batch"]
    lines.append(f"pending batch: {b['size']} items, {b['settled']} labeled or skipped, {b['open']} open"
                 if b["size"] else "pending batch: none (activeloss query makes one)")
    if s["versions"]:
        lines.append("model versions (round: strategy, labels, metric on the validation set):")
        for v in s["versions"]:
            metric = f"{v['metric']} {v['value']:.4f}" if v["metric"] and v["value"] is not None else "not measured"
            lines.append(f"  v{v['version']:<3d} {v['strategy']:12s} {v['labeled']:6d} labels  {metric}")
    else:
        lines.append("model versions: none yet (activeloss fit trains one)")
    job = s.get("job")
    if job:
        lines.append(f"latest training job: {job['status']}"
                     + (f", epoch {job['epoch']}/{job['epochs']}" if job["status"] == "running" and job["epochs"]
                        else "") + (f" ({job['message']})" if job["message"] else ""))
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    project = Project.open(args.project)
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise ConfigError(f"--out {out}: give a file in an existing folder")
    if args.images:
        if project.kind != "images":
            raise ConfigError("this project classifies rows: give --csv FILE")
        keys, x = project.read_images(args.images)
    else:
        if project.kind != "rows":
            raise ConfigError("this project classifies images: give --images DIR")
        from .sources import row_items

        items = row_items(Path(args.csv), what="--csv")
        keys, x = items.keys, items.x
        width = int(project.dataset().x_train.shape[1])
        if x.shape[1] != width:
            raise ConfigError(f"--csv {args.csv}: {x.shape[1]} feature columns, the project's rows have {width}")
    probs, version = project.predict(np.asarray(x), args.version)
    conf, label = probs.max(dim=1)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item", "class", "confidence", *[f"p_{c}" for c in project.classes], "model_version"])
        for key, y, c, p in zip(keys, label.tolist(), conf.tolist(), probs.tolist()):
            writer.writerow([key, project.classes[y], f"{c:.4f}", *[f"{v:.4f}" for v in p], version])
    os.replace(tmp, out)
    print(f"wrote {len(keys)} predictions of model version {version} to {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_project

    project = Project.open(args.project)
    files = export_project(project, args.format, Path(args.out), only=args.only)
    print(f"wrote {', '.join(map(str, files))}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .importing import import_file

    project = Project.open(args.project)
    summary = import_file(project, Path(args.file), args.format, args.annotator)
    print(f"{args.file}: {summary}")
    return 0


HANDLERS = {"init": cmd_init, "query": cmd_query, "label": cmd_label, "fit": cmd_fit, "status": cmd_status,
            "predict": cmd_predict, "export": cmd_export, "import": cmd_import}
