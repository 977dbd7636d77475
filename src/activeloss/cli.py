"""``activeloss``: a thin command line over the Python API.

Errors the user can fix are printed as one line on stderr with exit status 2.
"""
from __future__ import annotations

import argparse
import difflib
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import CORE_SPECS, DECLARED, EXECUTION_FIELDS, Settings, load_toml, overlay, settings_toml, spec_of
from .config.options import Spec, coerce, declared_help
from .errors import ActiveLossError, ConfigError
from .project.cli import HANDLERS as PROJECT_HANDLERS
from .project.cli import add_commands as add_project_commands

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line, like every other error, and takes no
    abbreviations (``--epoch 5`` is a mistake, not ``--epochs 5``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = ""
        if message.startswith("unrecognized arguments:"):
            unknown = [a.split("=", 1)[0] for a in message.split(":", 1)[1].split() if a.startswith("--")]
            close = difflib.get_close_matches(unknown[0], _option_strings(self), n=1) if unknown else []
            hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"{message}{hint} (see {self.prog} --help)")


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option of ``parser`` and its sub-commands (for "did you mean" hints)."""
    out = []
    for action in parser._actions:
        out += [s for s in action.option_strings if s.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _option_strings(sub)
    return out


def _add_option(group: Any, spec: Spec, help_text: str) -> None:
    if spec.kind == "bool":
        group.add_argument(spec.flag, dest=spec.name, action=argparse.BooleanOptionalAction, default=None,
                           help=help_text)
    else:
        metavar = "A,B,..." if spec.kind.startswith("list") else spec.name.upper()
        group.add_argument(spec.flag, dest=spec.name, default=None, metavar=metavar, help=help_text)


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """Every declared setting as an option: the run's own by group, then each component's."""
    groups: dict[str, Any] = {}
    for spec in CORE_SPECS:
        if spec.group not in groups:
            groups[spec.group] = parser.add_argument_group(f"{spec.group} options")
        _add_option(groups[spec.group], spec, spec.help)
    components = parser.add_argument_group("objective and acquisition options (each applies to the strategies "
                                           "whose components declare it)")
    for name in sorted(DECLARED):
        _add_option(components, DECLARED[name].spec, declared_help(name))


def _run_epilog() -> str:
    from .data import READERS

    kinds = "\n".join(textwrap.fill(READERS.description(name), 100, initial_indent=f"  {name:9s} ",
                                     subsequent_indent=" " * 12) for name in READERS)
    return f"""examples:
  activeloss run                                   # the main comparison on digits, 3 trials, a few minutes
  activeloss run --dataset diabetes                # regression: RMSE, lower is better
  activeloss run --dataset mnist:data/mnist --strategies random,llal,coreset --initial 100 --budget 100 \\
                 --subset 5000 --epochs 25 --out mnist-run
  activeloss run --dataset uci:UCI_Datasets/concrete --split 3 --strategies random,llal,mc-variance
  activeloss run --preset llal-cifar10 --dataset cifar10:data/cifar-10-batches-py --dry-run
  activeloss run --strategies lossnet+badge,none+entropy --trials 5 --parallel-trials 2
  activeloss run --resume --out results            # continue an interrupted run
  activeloss run --preset llal-cifar10 --dataset cifar10:/shared/cifar --out /shared/llal \
                 --executor submitit --partition gpu --gpus-per-unit 1   # one Slurm job per (strategy, trial)

datasets (--dataset; nothing is downloaded):
{kinds}"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="activeloss", description="Deep active learning with loss prediction and its baselines.")
    parser.add_argument("--version", action="version", version=f"activeloss {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run an active-learning experiment",
                         description="Run strategies x trials x cycles and report.", epilog=_run_epilog(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file (CLI options win)")
    run.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--dry-run", action="store_true",
                     help="load the data, print the fully resolved settings as TOML and stop (nothing is trained "
                          "or written)")
    _add_settings(run)
    rep = sub.add_parser(
        "report", help="print the tables of finished or partial runs and redraw their figures",
        description="Tables (mean ± std over trials per cycle, AUBC, labels to reach a target, ranking accuracy, "
                    "time) and figures from one or several output folders. Folders are combined: a strategy "
                    "found in several folders must have the same settings there (its trials are pooled).")
    rep.add_argument("folders", nargs="+", metavar="DIR", help="output folders of activeloss run")
    rep.add_argument("--metric", default=None,
                     help="metric of the main table, curves and --reach (default: the task's, accuracy or rmse)")
    rep.add_argument("--reach", type=float, action="append", default=[], metavar="VALUE",
                     help="add the labels needed to first reach VALUE (accuracy: a fraction such as 0.9; "
                          "a lower-is-better metric such as rmse: at or below VALUE); repeatable")
    rep.add_argument("--cycle", type=int, default=None, metavar="N",
                     help="cycle of the per-class and confidence figures (default: the last cycle every strategy "
                          "reached)")
    rep.add_argument("--out", default=None, metavar="DIR",
                     help="folder for results.csv and the figures (default: DIR with one folder; with several, "
                          "no figures unless given)")
    rep.add_argument("--markdown", default=None, metavar="FILE",
                     help="also write the tables (and figure links) as Markdown")
    rep.add_argument("--csv", default=None, metavar="FILE", help="also write the summary as a long-format CSV")
    rep.add_argument("--latex", default=None, metavar="FILE", help="also write the tables as booktabs LaTeX tabulars")
    sub.add_parser("strategies", help="list the strategies, objectives and acquisitions")
    pre = sub.add_parser("presets", help="list the named protocols for run --preset, or print one",
                         description="List the presets (protocols of the source papers), or print the file of one.")
    pre.add_argument("name", nargs="?", metavar="NAME", help="print this preset's settings")
    add_project_commands(sub)
    return parser


def _explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    names = [s.name for s in CORE_SPECS] + sorted(DECLARED)
    return {n: coerce(spec_of(n), getattr(args, n), "the command line") for n in names if getattr(args, n) is not None}


def cmd_run(args: argparse.Namespace) -> int:
    from . import loop
    from .report import report

    explicit = _explicit_settings(args)
    if args.resume and args.dry_run:
        raise ConfigError("--dry-run shows the settings of a new run; a resumed run keeps its stored settings")
    if args.resume:
        extra = sorted(set(explicit) - set(EXECUTION_FIELDS)) + (["config"] if args.config else [])
        if extra:
            flag = "--" + extra[0].replace("_", "-")
            raise ConfigError(f"--resume takes its settings from the stored run; do not pass {flag}")
        if "out" not in explicit:
            raise ConfigError("--resume needs --out DIR, the folder of the run to continue")
        settings = Settings().merged(explicit)
    else:
        # the command line beats the file, its per_strategy tables included; a --preset fills what is left out
        values = overlay(load_toml(args.config) if args.config else {}, explicit)
        settings = Settings.from_dict(values, origin="the command line")
    args.resolved_out = settings.out  # for the resume hint after Ctrl-C
    if args.dry_run:
        the_plan = loop.plan(settings)  # loads the data: percentages need its size
        d = the_plan.data
        comments = [
            "activeloss run --dry-run: the resolved settings"
            + (f" of preset {settings.preset}" if settings.preset else ""),
            f"on {d.name} ({d.size} train / {d.x_test.shape[0]} test, {_targets(d)}), device {the_plan.device};",
            "nothing was trained or written. per_strategy tables hold what differs between strategies;",
            "this text is a --config file for the same run.",
        ]
        print(settings_toml([(run.name, run.record()) for run in the_plan.runs], comments), end="")
        return 0

    def announce(plan: loop.Plan) -> None:
        if args.quiet:
            return
        names = ", ".join(run.name for run in plan.runs)
        s = plan.runs[0].settings
        print(
            f"activeloss: {plan.data.name} ({plan.data.size} train / {plan.data.x_test.shape[0]} test, "
            f"{_targets(plan.data)}), {plan.data.task}, model {s.model}, on {plan.device}"
            f"{f', preset {s.preset}' if s.preset else ''}\n"
            f"  strategies: {names}\n  {s.trials} trials x {s.cycles} cycles: {s.initial} initial labels "
            f"+ {s.budget} per cycle, {s.epochs} epochs, subset {s.subset or 'whole pool'}, "
            f"{'re-initialised' if s.reinit else 'warm-started'} each cycle"
            f"{f'; {s.parallel_trials} runs at a time' if s.parallel_trials > 1 else ''}\n"
            f"  plan: {_plan_size(plan)}",
            file=sys.stderr,
        )

    from .device import distributed

    try:
        loop.run(settings, resume=args.resume, progress=not args.quiet, on_plan=announce)
    except ActiveLossError:  # raised on every rank alike (see distributed.on_main)
        distributed.shutdown()
        raise
    if distributed.is_main():  # under torchrun, rank 0 alone reports and draws
        print(report(settings.out))
        print(f"\nresults: {settings.out}/results.csv, plot: {settings.out}/curves.png", file=sys.stderr)
    distributed.shutdown()  # waits for rank 0's report
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    result = build_report(args.folders, args.out, metric=args.metric, reach=args.reach, cycle=args.cycle,
                          markdown=args.markdown, csv=args.csv, latex=args.latex)
    print(result.text)
    if result.files:
        print(f"\nwrote: {', '.join(map(str, result.files))}", file=sys.stderr)
    if len(args.folders) > 1 and args.out is None:
        print("figures: not drawn for several folders without --out DIR", file=sys.stderr)
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .config import presets

    if args.name:
        print(presets.text(args.name), end="")
        return 0
    names = presets.names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:{width}s}  {presets.describe(name)}")
    print("\nrun one with: activeloss run --preset NAME --dataset KIND:PATH [options that override it]")
    return 0


def cmd_strategies(_args: argparse.Namespace) -> int:
    from .acquisitions import ACQUISITIONS
    from .objectives import OBJECTIVES
    from .strategies import STRATEGIES, named_for, valid_pairs
    from .tasks import TASKS, task_type

    tasks = {name: task_type(name) for name in TASKS}
    valid = {t: set(named_for(cls)) for t, cls in tasks.items()}
    print("strategies (objective + acquisition) [tasks it works on; * = in the task's default comparison]:")
    for s in STRATEGIES:
        strategy = STRATEGIES.get(s)
        works = [t for t in tasks if s in valid[t]]
        marks = ", ".join(t + ("*" if t in strategy.main_for else "") for t in works)
        print(f"  {s:18s} {strategy.objective} + {strategy.acquisition} [{marks}]: {strategy.description}")
    print("\nobjectives:")
    for name in OBJECTIVES:
        print(f"  {name:18s} {OBJECTIVES.description(name)}")
    print("\nacquisitions:")
    for name in ACQUISITIONS:
        print(f"  {name:18s} {ACQUISITIONS.description(name)}")
    counts = ", ".join(f"{len(valid_pairs(cls))} for {t}" for t, cls in tasks.items())
    print(f"\nany OBJECTIVE+ACQUISITION pair that fits the task is a strategy too ({counts}), "
          "e.g. --strategies none+entropy")
    return 0


def _plan_size(plan: Any) -> str:
    """``11 strategies x 3 trials = 33 runs x 8 cycles x 40 epochs = 10,560 epochs of training``."""
    runs = sum(r.settings.trials for r in plan.runs)
    epochs = sum(r.settings.trials * int(r.settings.cycles or 0) * int(r.settings.epochs or 0) for r in plan.runs)
    cycles = {int(r.settings.cycles or 0) for r in plan.runs}
    per = {int(r.settings.epochs or 0) for r in plan.runs}
    shape = f" x {cycles.pop()} cycles" if len(cycles) == 1 else ""
    shape += f" x {per.pop()} epochs" if len(per) == 1 else ""
    trials = {r.settings.trials for r in plan.runs}
    count = f"{len(plan.runs)} strategies x {trials.pop()} trials = " if len(trials) == 1 else ""
    return f"{count}{runs} runs{shape} = {epochs:,} epochs of training"


def _targets(data: Any) -> str:
    if data.task == "pose":
        return f"{int(data.y_train.shape[1]) - 1} keypoints"
    if data.task == "detection":
        return f"{data.num_classes} object classes"
    return f"{data.num_classes} classes" if data.num_classes else "real-valued targets"


def _preload_plugins(argv: Sequence[str]) -> None:
    """Import ``--plugins`` before the parser is built, so the options they declare are options."""
    from .config.plugins import load_plugins

    for i, arg in enumerate(argv):
        if arg == "--plugins" and i + 1 < len(argv):
            load_plugins(argv[i + 1].split(","))
        elif arg.startswith("--plugins="):
            load_plugins(arg.split("=", 1)[1].split(","))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    try:
        _preload_plugins(argv)
        args = build_parser().parse_args(argv)
        handlers = {"run": cmd_run, "report": cmd_report, "strategies": cmd_strategies, "presets": cmd_presets,
                    **PROJECT_HANDLERS}
        handler = handlers[args.command]
        return handler(args)
    except ActiveLossError as exc:
        from .device.distributed import is_main

        if is_main():  # under torchrun every rank stops with the same error; rank 0 says it
            print(f"activeloss: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    except KeyboardInterrupt:
        from .store import Store

        out = getattr(args, "resolved_out", None)
        hint = f"; continue with: activeloss run --resume --out {out}" if out and Store.exists_in(out) else ""
        print(f"activeloss: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
