"""Typed options, declared once where they are used.

Every setting, the run's own (``--epochs``) and each objective's and acquisition's
(``--loss-weight``, ``--mc-passes``), is a field of a dataclass made with :func:`option`:
its type, its default, its help text and its valid range live in that one declaration.
The command line, TOML config files, presets and ``--dry-run`` are built from these
declarations, so no default is ever written twice.

Component options (those of objectives and acquisitions) are collected in
:data:`DECLARED` when the component is registered.  Two components may declare the same
option (``dropout``: the MC-dropout objective and the BALD acquisition's query-time
fallback) as long as its type agrees; each keeps its own default.

Some values may be written relative to another setting, resolved once that one is known:
a percentage of the training pool (``--initial 10%``), of ``--epochs``
(``--stop-gradient-epoch 60%``) or of ``--lr`` (``--lossnet-lr 10%``).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import ConfigError

#: what a percentage may refer to, in words (for help texts and errors)
PERCENT_BASES = {"pool": "the training pool", "epochs": "--epochs", "lr": "--lr"}


def option(default: Any, help: str, *, choices: Sequence[Any] | None = None, at_least: float | None = None,
           above: float | None = None, below: float | None = None, at_most: float | None = None,
           percent_of: str | None = None, group: str = "") -> Any:
    """A dataclass field that is also a command-line option, a TOML key and a preset key.

    ``choices`` / ``at_least`` / ``above`` / ``below`` / ``at_most`` are checked by
    :func:`check` with a message naming the flag; ``percent_of`` (``pool``, ``epochs``,
    ``lr``) lets the value be written as ``"N%"`` of that setting.
    """
    if percent_of is not None and percent_of not in PERCENT_BASES:
        raise ValueError(f"percent_of must be one of {', '.join(PERCENT_BASES)}")
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "at_least": at_least,
            "above": above, "below": below, "at_most": at_most, "percent_of": percent_of, "group": group}
    if isinstance(default, list):
        items = list(default)
        return field(default_factory=lambda: list(items), metadata=meta)
    return field(default=default, metadata=meta)


def redefault(options_type: type, name: str, default: Any) -> Any:
    """The field ``name`` of ``options_type`` with another default, the rest of its declaration
    kept: for a component whose paper uses another value (DNAL's stop-gradient epoch)."""
    for f in fields(options_type):
        if f.name == name:
            return field(default=default, metadata=f.metadata)
    raise ValueError(f"{options_type.__name__} has no option {name!r}")


@dataclass(frozen=True)
class Spec:
    """One declared option: what the CLI, TOML and validation need to know."""

    name: str
    kind: str  # int, float, bool, str, list[int], list[str]
    nullable: bool
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    at_least: float | None = None
    above: float | None = None
    below: float | None = None
    at_most: float | None = None
    percent_of: str | None = None
    group: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_KINDS = {int: "int", float: "float", bool: "bool", str: "str"}


def _kind_of(annotation: Any) -> tuple[str, bool]:
    """(kind, nullable) of a field annotation such as ``int | str | None`` or ``list[int]``.

    A union with ``str`` beside a number is a number that may be written as a percentage.
    """
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or \
        typing.get_origin(annotation) is typing.Union else (annotation,)
    nullable = type(None) in args
    args = tuple(a for a in args if a is not type(None))
    for a in args:
        if typing.get_origin(a) is list:
            return f"list[{_KINDS[typing.get_args(a)[0]]}]", nullable
    for kind in (bool, float, int, str):  # a number first: "int | str" is an int or a percentage
        if kind in args:
            return _KINDS[kind], nullable
    raise TypeError(f"unsupported option type {annotation!r}")


def specs_of(cls: type) -> list[Spec]:
    """The options a dataclass declares, in order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        if "help" not in f.metadata:
            continue
        kind, nullable = _kind_of(hints[f.name])
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = None
        m = f.metadata
        out.append(Spec(f.name, kind, nullable, default, m["help"], m["choices"], m["at_least"], m["above"],
                        m["below"], m["at_most"], m["percent_of"], m["group"]))
    return out


@dataclass(frozen=True)
class NoOptions:
    """The options of a component that has none."""


# ---------------------------------------------------------------- component options

@dataclass
class Declared:
    """An option some registered components declare: its spec and each component's default."""

    spec: Spec
    defaults: dict[str, Any] = field(default_factory=dict)  # component name -> its default


#: every option declared by a registered objective or acquisition, by name
DECLARED: dict[str, Declared] = {}


def declare(component: str, options_type: type) -> None:
    """Record the options of ``component`` (called when it is registered); a name already
    declared by another component must have the same type."""
    for spec in specs_of(options_type):
        known = DECLARED.get(spec.name)
        if known is None:
            DECLARED[spec.name] = Declared(spec, {component: spec.default})
            continue
        if (known.spec.kind, known.spec.percent_of) != (spec.kind, spec.percent_of):
            raise ConfigError(f"option {spec.name!r} of {component} is a {spec.kind}, but another component "
                              f"declares it as a {known.spec.kind}")
        known.defaults[component] = spec.default


def declare_component(name: str, cls: Any) -> None:
    """What registering an objective or an acquisition class does: the registered name becomes
    its ``name`` and its ``Options`` are declared."""
    cls.name = name
    declare(name, cls.Options)


def declared_help(name: str) -> str:
    """The help text of a component option, with the default of each component that has one."""
    d = DECLARED[name]
    values = {_show(v) for v in d.defaults.values()}
    if len(values) == 1:
        return f"{d.spec.help} (default {values.pop()})"
    per = ", ".join(f"{c}: {_show(v)}" for c, v in d.defaults.items())
    return f"{d.spec.help} (default per component: {per})"


def _show(value: Any) -> str:
    if value is None:
        return "automatic"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).replace("%", "%%")  # argparse formats help with %


# ---------------------------------------------------------------- values

def is_percent(value: Any) -> bool:
    return isinstance(value, str) and value.strip().endswith("%")


def _percent(spec: Spec, value: str, origin: str) -> str:
    """``" 10 %"`` -> ``"10%"``: a percentage in (0, 100] (of the pool) or [0, 100] (of the epochs),
    kept as text until the base is known."""
    try:
        number = Decimal(value.strip()[:-1].strip())
    except InvalidOperation:
        number = Decimal("NaN")
    high = 100 if spec.percent_of in ("pool", "epochs") else 10_000
    finite = number.is_finite()  # a NaN Decimal cannot even be compared
    low_ok = finite and (number >= 0 if spec.percent_of == "epochs" else number > 0)
    if not finite or not low_ok or number > high:
        interval = "[0%, 100%]" if spec.percent_of == "epochs" else f"(0%, {high}%]"
        raise ConfigError(f"{origin}: {spec.flag} expects a number or a percentage of "
                          f"{PERCENT_BASES[spec.percent_of or 'pool']} in {interval}, got {value!r}")
    return f"{number.normalize():f}%"


def coerce(spec: Spec, value: Any, origin: str = "settings") -> Any:
    """Turn a CLI string or a TOML value into the option's type, or raise a :class:`ConfigError`."""
    if value is None:
        return None
    if spec.kind.startswith("list[") and spec.percent_of is not None:  # milestones: each an epoch or a %
        items = value.split(",") if isinstance(value, str) else list(value)  # "80%" is a list of one
        inner = dataclasses.replace(spec, kind=spec.kind[5:-1])
        return [coerce(inner, v, origin) for v in items if str(v).strip()]
    if spec.percent_of is not None and is_percent(value):
        return _percent(spec, value, origin)
    try:
        if spec.kind == "list[str]":
            items = value.split(",") if isinstance(value, str) else list(value)
            return [str(v).strip() for v in items if str(v).strip()]
        if spec.kind == "list[int]":
            items = value.split(",") if isinstance(value, str) else list(value)
            return [_int(v) for v in items if str(v).strip()]
        if spec.kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if spec.kind == "int":
            return _int(value)
        if spec.kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(value)
        return str(value)
    except (TypeError, ValueError):
        expected = spec.kind.split("[")[-1].rstrip("]") if spec.kind.startswith("list") else spec.kind
        if spec.kind.startswith("list"):
            expected = f"a comma list of {expected}"
        if spec.percent_of is not None:
            expected += f" or a percentage of {PERCENT_BASES[spec.percent_of]} (10%)"
        raise ConfigError(f"{origin}: {spec.flag} expects {expected}, got {value!r}") from None


def _int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    if isinstance(value, str):
        value = value.strip()
    return int(value)


def check(spec: Spec, value: Any) -> None:
    """Raise one ConfigError line when a resolved value breaks its declaration."""
    if value is None:
        if not spec.nullable:
            raise ConfigError(f"{spec.flag} needs a value")
        return
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{spec.flag} must be one of {', '.join(map(str, spec.choices))}, not {value!r}")
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        bounds = [(spec.at_least, v >= (spec.at_least or 0), "at least"), (spec.above, v > (spec.above or 0), "above"),
                  (spec.below, v < (spec.below or 0), "below"), (spec.at_most, v <= (spec.at_most or 0), "at most")]
        for bound, ok, words in bounds:
            if bound is not None and not ok:
                raise ConfigError(f"{spec.flag} must be {words} {bound:g}, not {v:g}")


def relative(value: Any, base: float, integer: bool) -> Any:
    """``"60%"`` of ``base`` (rounded for epochs; for rates the float product to 12 significant
    digits, so that 10% of 0.1 is 0.01, not 0.010000000000000002); numbers as they are."""
    if not is_percent(value):
        return value
    share = float(Decimal(value.strip()[:-1])) / 100
    return round(share * base) if integer else float(f"{share * base:.12g}")


def make(options_type: type, values: dict[str, Any]) -> Any:
    """An instance of ``options_type`` from the values that concern it (others ignored)."""
    names = {f.name for f in fields(options_type)}
    return options_type(**{k: v for k, v in values.items() if k in names})
