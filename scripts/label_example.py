"""The labeling workflow on a few hundred real CIFAR-10 JPEGs, end to end (docs/labeling-example.md).

A folder of unlabeled JPEGs is made from the CIFAR-10 copy in ../shared/data (its class folders
are flattened under anonymous names; the true classes stay in a file the scripted annotator
reads), then the commands of the README run as a person would: init, a cold-start query, the
labeling page served by ``activeloss label`` with a scripted annotator answering through its
HTTP API, fit, the next queries, predict, export and import.  Two projects run side by side
from the same cold start: one queries by margin, one at random.

    .venv/bin/python scripts/label_example.py --source /tmp/cifar --work /tmp/label-example
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def sh(*args: str, echo: bool = True) -> str:
    """Run an activeloss command, echo it and its output, fail loudly."""
    done = subprocess.run([sys.executable, "-m", "activeloss", *args], capture_output=True, text=True)
    if echo:
        print(f"$ activeloss {' '.join(args)}\n{done.stdout}", end="", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {done.stderr}")
    return done.stdout


def build_folders(source: Path, work: Path, per_class: int, val_per_class: int, seed: int) -> dict[str, str]:
    """work/unlabeled/NNNN.jpg (anonymous), work/val/<class>/, work/new/ (for predict); returns key -> class."""
    rng = random.Random(seed)
    picks = []
    for c in CLASSES:
        files = sorted((source / "train" / c).glob("*.jpg"))
        picks += [(f, c) for f in rng.sample(files, per_class)]
    rng.shuffle(picks)
    truth = {}
    (work / "unlabeled").mkdir(parents=True)
    for i, (f, c) in enumerate(picks):
        shutil.copy(f, work / "unlabeled" / f"{i:04d}.jpg")
        truth[f"{i:04d}.jpg"] = c
    for c in CLASSES:
        test = sorted((source / "test" / c).glob("*.jpg"))
        chosen = rng.sample(test, 2 * val_per_class)
        (work / "val" / c).mkdir(parents=True)
        (work / "new").mkdir(exist_ok=True)
        for f in chosen[:val_per_class]:
            shutil.copy(f, work / "val" / c / f.name)
        for f in chosen[val_per_class:]:
            shutil.copy(f, work / "new" / f"{c}-{f.name}")
    return truth


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"token {token}"},
                                     method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def label_through_the_page(project: Path, truth: dict[str, str], annotator: str) -> int:
    """Serve the page and answer every open item of the batch through the HTTP API, as the page does."""
    port, token = free_port(), uuid.uuid4().hex
    server = subprocess.Popen([sys.executable, "-m", "activeloss", "label", str(project), "--port", str(port),
                               "--token", token, "--no-auto-train"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                state = call(f"{base}/api/state?annotator={annotator}", token)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("the labeling server did not start")
        answered = 0
        for item in state["items"]:
            if item.get("mine") is None:
                call(f"{base}/api/answer", token, {"item": item["id"], "annotator": annotator, "kind": "label",
                                                   "label": CLASSES.index(truth[item["key"]]),
                                                   "request": uuid.uuid4().hex})
                answered += 1
        return answered
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True, help="the unpacked cifar10-jpg.tar.gz (train/, test/)")
    ap.add_argument("--work", type=Path, required=True, help="a new folder for the images and the projects")
    ap.add_argument("--per-class", type=int, default=50, help="unlabeled images per class (default 50)")
    ap.add_argument("--val-per-class", type=int, default=20, help="validation images per class (default 20)")
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    if args.work.exists():
        raise SystemExit(f"{args.work} exists; give a new folder")
    truth = build_folders(args.source, args.work, args.per_class, args.val_per_class, seed=0)
    curves: dict[str, list[tuple[int, float]]] = {}
    for strategy in ("margin", "random"):
        project = args.work / f"project-{strategy}"
        sh("init", str(project), "--images", str(args.work / "unlabeled"), "--classes", ",".join(CLASSES),
           "--val", str(args.work / "val"), "--model", "cnn", "--epochs", str(args.epochs), "--strategy", strategy)
        sh("query", str(project), "--budget", str(args.budget))
        for _ in range(args.rounds):
            print(f"(scripted annotator: {label_through_the_page(project, truth, 'script')} answers "
                  "through the page's HTTP API)", flush=True)
            sh("fit", str(project), "--then-query")
        status = json.loads(sh("status", str(project), "--json", echo=False))
        curves[strategy] = [(v["labeled"], v["value"]) for v in status["versions"]]
        sh("status", str(project))
    project = args.work / "project-margin"
    sh("predict", str(project), "--images", str(args.work / "new"), "--out", str(args.work / "predictions.csv"))
    with open(args.work / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    right = sum(r["item"].split("-", 1)[0] == r["class"] for r in rows)
    print(f"predictions on {len(rows)} new images: {right} right ({100 * right / len(rows):.1f}%)")
    sh("export", str(project), "--format", "label-studio", "--out", str(args.work / "tasks.json"))
    sh("export", str(project), "--format", "json-min", "--out", str(args.work / "labels-min.json"))
    sh("import", str(project), str(args.work / "labels-min.json"))
    print("\nvalidation accuracy per round (labels: margin | random)")
    for (n, m), (_, r) in zip(curves["margin"], curves["random"]):
        print(f"  {n:4d}: {m:.3f} | {r:.3f}")


if __name__ == "__main__":
    main()
