"""``activeloss``: a thin command line over the Python API.

Errors the user can fix are printed as one line on stderr with exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Any, Sequence

from .config import Settings, coerce, load_toml
from .errors import ActiveLossError, ConfigError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see {self.prog} --help)")


def _add_settings(parser: argparse.ArgumentParser) -> None:
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        help_text = f.metadata.get("help", "")
        if kind.startswith("bool"):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            metavar = "A,B,..." if kind.startswith("list") else f.name.upper()
            parser.add_argument(flag, dest=f.name, default=None, metavar=metavar, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="activeloss", description="Deep active learning with loss prediction and its baselines.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run an active-learning experiment", description="Run strategies x trials x cycles and report.")
    run.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file (CLI options win)")
    run.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_settings(run)
    rep = sub.add_parser("report", help="print the tables of a finished or partial run and redraw its plots")
    rep.add_argument("folder", metavar="DIR")
    sub.add_parser("strategies", help="list the strategies, objectives and acquisitions")
    return parser


def _explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {f.name: coerce(f.name, getattr(args, f.name)) for f in fields(Settings) if getattr(args, f.name) is not None}


def cmd_run(args: argparse.Namespace) -> int:
    from . import experiment
    from .report import report

    explicit = _explicit_settings(args)
    if args.resume:
        extra = sorted(set(explicit) - {"out", "device"}) + (["config"] if args.config else [])
        if extra:
            raise ConfigError(f"--resume takes its settings from the stored run; do not pass --{extra[0].replace('_', '-')}")
        if "out" not in explicit:
            raise ConfigError("--resume needs --out DIR, the folder of the run to continue")
        settings = Settings().merged(explicit)
    else:
        values = load_toml(args.config) if args.config else {}
        values.update(explicit)
        settings = Settings().merged(values)

    def announce(plan) -> None:
        if args.quiet:
            return
        names = ", ".join(strategy.name for strategy, _ in plan.runs)
        s = plan.runs[0][1]
        print(
            f"activeloss: {plan.data.name} ({plan.data.x_train.shape[0]} train / {plan.data.x_test.shape[0]} test, "
            f"{plan.data.num_classes} classes), model {s.model}, on {plan.device}\n"
            f"  strategies: {names}\n  {s.trials} trials x {s.cycles} cycles: {s.initial} initial labels "
            f"+ {s.budget} per cycle, {s.epochs} epochs, subset {s.subset or 'whole pool'}, "
            f"{'re-initialised' if s.reinit else 'warm-started'} each cycle",
            file=sys.stderr,
        )

    experiment.run(settings, resume=args.resume, progress=not args.quiet, on_plan=announce)
    print(report(settings.out))
    print(f"\nresults: {settings.out}/results.csv, plot: {settings.out}/curves.png", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report
    from .store import Store

    if not Store.exists_in(args.folder):
        raise ConfigError(f"{args.folder} holds no run (no store.sqlite)")
    print(report(args.folder))
    return 0


def cmd_strategies(_args: argparse.Namespace) -> int:
    from .acquisitions import ACQUISITIONS
    from .objectives import OBJECTIVES
    from .strategies import STRATEGIES

    print("strategies (objective + acquisition):")
    for s in STRATEGIES.values():
        print(f"  {s.name:18s} {s.objective} + {s.acquisition}: {s.description}")
    print("\nobjectives:")
    for name, (_, text) in OBJECTIVES.items():
        print(f"  {name:18s} {text}")
    print("\nacquisitions:")
    for name, (_, text) in ACQUISITIONS.items():
        print(f"  {name:18s} {text}")
    print("\nany OBJECTIVE+ACQUISITION pair is a strategy too, e.g. --strategies none+entropy")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler = {"run": cmd_run, "report": cmd_report, "strategies": cmd_strategies}[args.command]
        return handler(args)
    except ActiveLossError as exc:
        print(f"activeloss: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("activeloss: interrupted; continue with: activeloss run --resume --out DIR", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
