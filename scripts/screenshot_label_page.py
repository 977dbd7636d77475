"""Make docs/labeling-page.png: the labeling page of a small generated project, in Chromium.

    .venv/bin/python scripts/screenshot_label_page.py [--out docs/labeling-page.png]

A project of generated shape images (circle, square, triangle, cross) with a cold-start batch of
12, a few of them labeled and one skipped, and one model fitted so the tiles show its guesses.
Needs the label extra, Playwright's Python package and Debian's chromium (/usr/bin/chromium).
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["circle", "square", "triangle", "cross"]
CLASS_COLOURS = [(60, 90, 170), (60, 140, 80), (170, 120, 40), (150, 50, 110)]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


def shape_image(kind: int, rng: np.random.Generator, side: int = 160) -> Image.Image:
    """A shape of class ``kind`` on a soft two-tone background, jittered in place, size and colour."""
    top, bottom = rng.integers(185, 250, size=(2, 3))
    ramp = np.linspace(0, 1, side)[:, None, None]
    background = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    im = Image.fromarray(np.repeat(background, side, axis=1))
    draw = ImageDraw.Draw(im)
    base = np.array(CLASS_COLOURS[kind])  # each class has its typical colour, jittered: learnable from a few labels
    colour = tuple(int(v) for v in np.clip(base + rng.integers(-45, 46, size=3), 0, 255))
    r = int(rng.integers(side // 5, side // 3))
    cx, cy = (int(v) for v in rng.integers(r + 8, side - r - 8, size=2))
    if kind == 0:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif kind == 1:
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif kind == 2:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    else:
        w = max(4, r // 3)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=colour)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=colour)
    return im


def make_images(root: Path, n: int, seed: int, labeled: bool = False) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(n):
        kind = i % len(CLASSES)
        folder = root / (CLASSES[kind] if labeled else f"batch{i % 3}")
        folder.mkdir(parents=True, exist_ok=True)
        name = f"shape{i:03d}.png"
        shape_image(kind, rng).save(folder / name)
        truth[f"{folder.name}/{name}"] = kind
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "docs" / "labeling-page.png"))
    args = parser.parse_args()

    import uvicorn
    from playwright.sync_api import sync_playwright

    from activeloss.label.server import create_app, listen
    from activeloss.project import Project

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        truth = make_images(work / "shapes", 80, seed=1)
        make_images(work / "val", 40, seed=2, labeled=True)
        project = Project.create(work / "shapes-project", CLASSES, images=work / "shapes", val=work / "val",
                                 size=32, epochs=30)
        batch = project.query(12).items
        keys = project.records.keys()
        for item in batch[:7]:
            project.answer(item, "ada", "label", label=truth[keys[item]])
        project.answer(batch[7], "ada", "skip")
        project.fit()
        project.store.close()

        token = "screenshot"
        app = create_app(work / "shapes-project", token)
        sock = listen("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/api/state?token={token}", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(f"{base}/?token={token}&annotator=ada")
            page.wait_for_selector(".tile .guess b")
            page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            page.wait_for_timeout(400)  # the focus scroll and the fades
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out)
            browser.close()
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
