"""Named protocols of the source papers, shipped as TOML files beside this module.

Each ``NAME.toml`` holds a ``description`` (one line for ``activeloss presets``), a
``reference``, ``for_dataset`` (the data the protocol was written for) and settings
keyed exactly like the CLI options.  Turning them into settings, and layering them
under what the user gives, is :func:`activeloss.config.settings.apply_preset`'s job; this
module only finds and reads the files (through :mod:`importlib.resources`, so an
installed wheel has them too).
"""
from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from ...errors import ConfigError


def _files() -> dict[str, Any]:
    root = resources.files(__name__)
    return {p.name[: -len(".toml")]: p for p in root.iterdir() if p.name.endswith(".toml")}


def names() -> list[str]:
    """The shipped presets, sorted by name."""
    return sorted(_files())


def read(name: str) -> dict[str, Any]:
    """The raw TOML table of preset ``name``; an unknown name is a :class:`ConfigError` listing the known ones."""
    files = _files()
    if name not in files:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(sorted(files))} (activeloss presets)")
    try:
        return tomllib.loads(files[name].read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:  # a broken shipped file is a bug, but say which
        raise ConfigError(f"preset {name} is not valid TOML: {exc}") from None


def text(name: str) -> str:
    """The preset file as written (for ``activeloss presets NAME``)."""
    read(name)
    return _files()[name].read_text(encoding="utf-8")


def describe(name: str) -> str:
    return str(read(name).get("description", ""))


__all__ = ["describe", "names", "read", "text"]
