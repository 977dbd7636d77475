"""Your own components from the command line: ``--plugins my_acquisition.py,mypackage.models``.

A plugin is a Python file or an importable module that registers things when imported (an
acquisition with ``register_acquisition``, an objective, a model, a reader, a task).  It is
imported before the options are read, so its options are options like any other; a file's
folder is put on ``sys.path`` and the file imported by its name, so the worker processes of
``--parallel-trials`` (which inherit ``sys.path``) and a ``--resume`` import it the same way.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

from ..errors import ConfigError


def load_plugins(names: list[str] | tuple[str, ...]) -> None:
    """Import each plugin (a ``.py`` file or a module name); a failure is one line naming it."""
    for name in names:
        target = name.strip()
        if not target:
            continue
        module = target
        if target.endswith(".py") or "/" in target:
            path = Path(target).expanduser().resolve()
            if not path.is_file():
                raise ConfigError(f"--plugins: {target} is not a file")
            folder = str(path.parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            module = path.stem
        try:
            importlib.import_module(module)
        except ConfigError as exc:
            raise ConfigError(f"--plugins: {target}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any error inside the user's plugin, said in one line
            raise ConfigError(f"--plugins: cannot import {target} ({type(exc).__name__}: {exc})") from None
