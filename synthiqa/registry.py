"""One ``Registry`` class behind every named concept: distortions, profiles, dataset kinds, models,
protocols and suites.

A registry maps names (and aliases) to entries. ``register`` adds one (also as a decorator), ``get``
returns one or raises a one-line error with close matches (``did you mean ...?``) and the known names,
``list`` gives the sorted names. Built-in entries are discovered lazily: on the first lookup the registry
imports every public module of its ``builtin`` package(s) (modules register their entries when
imported), so no hand-written list of built-in modules exists and importing a registry never imports the
entries' heavy dependencies.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar, overload

from synthiqa.errors import ConfigError, SynthiqaError

T = TypeVar("T")


def import_package_modules(package: str) -> None:
    """Import every module of ``package`` whose name does not start with ``_`` (subpackages' modules too)."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__, prefix=f"{package}."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        if info.ispkg:
            import_package_modules(info.name)
        else:
            importlib.import_module(info.name)


class Registry(Generic[T]):
    """Named entries of one concept.

    Args:
        kind: what an entry is, for messages (``distortion``, ``dataset kind``, ``model``...).
        builtin: package(s) whose modules register the built-in entries; imported on first lookup.
        error: the exception a failed lookup raises (a ``SynthiqaError``: one ``error:`` line on the CLI).
    """

    def __init__(self, kind: str, builtin: str | Sequence[str] = (),
                 error: type[SynthiqaError] = ConfigError):
        self.kind = kind
        self.error = error
        self._builtin = (builtin,) if isinstance(builtin, str) else tuple(builtin)
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._loaded = not self._builtin
        self._listeners: list[Callable[[], None]] = []

    # ------------------------------------------------------------------------------------------ writing
    @overload
    def register(self, name: str, entry: T, *, aliases: Sequence[str] = ()) -> T: ...

    @overload
    def register(self, name: str, entry: None = None, *,
                 aliases: Sequence[str] = ()) -> Callable[[T], T]: ...

    def register(self, name: str, entry: T | None = None, *, aliases: Sequence[str] = ()):
        """Add (or replace) ``entry`` under ``name`` and ``aliases``; without ``entry``, a decorator."""

        def add(value: T) -> T:
            self._entries[name] = value
            for alias in aliases:
                self._aliases[alias] = name
            self._changed()
            return value

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> T:
        """Remove an entry and its aliases (plugins and tests); returns it."""
        key = self.resolve(name)
        value = self._entries.pop(key)
        for alias in [a for a, target in self._aliases.items() if target == key]:
            del self._aliases[alias]
        self._changed()
        return value

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every registration or removal (to clear caches built from entries)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    # ------------------------------------------------------------------------------------------ reading
    def load_builtin(self) -> None:
        """Import the built-in modules once (each registers its entries)."""
        if self._loaded:
            return
        self._loaded = True
        for package in self._builtin:
            import_package_modules(package)

    def resolve(self, name: str) -> str:
        """The canonical name of ``name`` (an entry or an alias); a one-line error with suggestions."""
        self.load_builtin()
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        close = difflib.get_close_matches(str(name), [*self._entries, *self._aliases], n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise self.error(f"unknown {self.kind} {name!r}{hint}; choose one of: {', '.join(self.list())}")

    def get(self, name: str) -> T:
        """The entry registered as ``name`` (or an alias of it)."""
        return self._entries[self.resolve(name)]

    def list(self) -> list[str]:
        """The registered names, sorted."""
        self.load_builtin()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in registration order."""
        self.load_builtin()
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        self.load_builtin()
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self.load_builtin()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
