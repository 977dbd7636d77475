"""One small registry type for every extension point (tasks, models, readers, objectives,
acquisitions, strategies).

A registry maps a name to a factory and a one-line description; an unknown name is a
:class:`~activeloss.errors.ConfigError` that lists the known ones, so every extension point
fails the same way.  ``register`` works as a call or as a decorator::

    ACQUISITIONS.register("my-score", MyAcquisition, "what it picks")

    @ACQUISITIONS.register("my-score", description="what it picks")
    class MyAcquisition(ScoreAcquisition): ...
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` is used in error messages: "acquisition", ...)."""

    def __init__(self, kind: str, on_register: Callable[[str, T], None] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._on_register = on_register  # e.g. declare a component's options

    @overload
    def register(self, name: str, item: T, description: str = "", *, replace: bool = False) -> T: ...

    @overload
    def register(self, name: str, item: None = None, description: str = "", *,
                 replace: bool = False) -> Callable[[T], T]: ...

    def register(self, name: str, item: T | None = None, description: str = "", *,
                 replace: bool = False) -> T | Callable[[T], T]:
        """Add ``item`` under ``name``; without ``item``, a decorator that adds what it decorates.

        Registering a name twice is an error unless ``replace`` (so a typo cannot silently
        shadow a built-in).
        """
        def add(value: T) -> T:
            clean = name.strip()
            if not clean or any(c in clean for c in "+,: "):
                raise ConfigError(f"{self.kind} name {name!r} must be non-empty without '+', ',', ':' or spaces")
            if clean in self._items and not replace:
                raise ConfigError(f"{self.kind} {clean!r} is already registered (pass replace=True to replace it)")
            if self._on_register is not None:
                self._on_register(clean, value)
            self._items[clean] = value
            self._descriptions[clean] = description
            return value

        return add if item is None else add(item)

    def get(self, name: str) -> T:
        """The entry ``name``, or a ConfigError naming the known ones."""
        key = name.strip()
        if key not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._items)}")
        return self._items[key]

    def description(self, name: str) -> str:
        self.get(name)
        return self._descriptions[name.strip()]

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"
