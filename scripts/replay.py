"""Replay the first cycles of the first trial of a committed run and compare them bit for bit.

    python scripts/replay.py docs/mnist-study/runs/mnist-baselines --cycles 2

The stored settings are written to a config file and run again through the command line of the
activeloss that is importable (so the same script checks an older checkout: put its ``src`` on
``PYTHONPATH``), with ``--trials 1 --cycles N``.  Every metric (exact float) and every queried
item of those cycles is compared with the store; the script prints a line per strategy and exits 1
on any difference.  The dataset paths of the stored settings must exist.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

SKIP = {"out", "trials", "cycles", "parallel_trials", "preset", "device", "threads"}


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def stored(db: Path, cycles: int) -> dict[str, dict]:
    """strategy -> {"metrics": {(cycle, name): value}, "queries": {cycle: [items]}} of trial 0."""
    con = sqlite3.connect(db)
    out: dict[str, dict] = {}
    for run_id, strategy in con.execute("SELECT id, strategy FROM runs WHERE trial = 0"):
        metrics = {(c, n): v for c, n, v in con.execute(
            "SELECT cycle, name, value FROM metrics WHERE run_id = ? AND cycle < ?", (run_id, cycles))}
        queries: dict[int, list[int]] = {}
        for c, item in con.execute("SELECT cycle, item FROM queries WHERE run_id = ? AND cycle < ? "
                                   "ORDER BY cycle, rank", (run_id, cycles - 1)):
            queries.setdefault(c, []).append(item)
        out[strategy] = {"metrics": metrics, "queries": queries}
    con.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a committed output folder (with store.sqlite)")
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--strategies", default=None, help="only these (comma list; default: all of the store)")
    parser.add_argument("--parallel", type=int, default=2, help="--parallel-trials of the replay (0: an activeloss "
                        "too old to have the option)")
    parser.add_argument("--keep", type=Path, default=None, help="copy the replay's output folder here")
    args = parser.parse_args()
    db = args.folder / "store.sqlite"
    con = sqlite3.connect(db)
    settings = json.loads(con.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()[0])
    con.close()
    if args.strategies:
        settings["strategies"] = args.strategies.split(",")
    expected = stored(db, args.cycles)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "replay.toml"
        config.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in settings.items()
                                  if k not in SKIP and v is not None))
        out = Path(tmp) / "out"
        command = [sys.executable, "-m", "activeloss", "run", "--config", str(config), "--trials", "1",
                   "--cycles", str(args.cycles), "--out", str(out), "--quiet"]
        if args.parallel:
            command += ["--parallel-trials", str(args.parallel)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 2
        got = stored(out / "store.sqlite", args.cycles)
        if args.keep is not None:
            shutil.copytree(out, args.keep, dirs_exist_ok=True)
    failures = 0
    for strategy in settings["strategies"]:
        want, have = expected.get(strategy), got.get(strategy)
        if want is None or have is None:
            print(f"{strategy:18s} missing ({'store' if want is None else 'replay'})")
            failures += 1
            continue
        same_metrics = want["metrics"] == have["metrics"]
        same_queries = want["queries"] == have["queries"]
        diffs = [f"{k}: {want['metrics'][k]!r} vs {have['metrics'].get(k)!r}" for k in sorted(want["metrics"])
                 if want["metrics"][k] != have["metrics"].get(k)]
        print(f"{strategy:18s} metrics {'identical' if same_metrics else 'DIFFER'} "
              f"({len(want['metrics'])} values), queries {'identical' if same_queries else 'DIFFER'} "
              f"({sum(map(len, want['queries'].values()))} items)" + (f"; {diffs[0]}" if diffs else ""))
        failures += not (same_metrics and same_queries)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
