"""Name → object registries: filter rules, export presets, students, labels.

A registry maps the names users write (``min_words``, ``biomed-enriched``, ``fasttext``,
``document_type``) to the objects that do the work. Asking for an unknown name is one clear error
that lists the known names. A registry may own a package: the first lookup imports every module of
that package (in name order), and each module registers what it defines, so adding a rule, a preset
or a label is adding one file to its package (plus its tests), and nothing else is edited.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from pmcurate.errors import Fatal

T = TypeVar("T")


class UnknownNameError(Fatal):
    """A name no registry entry has; the message lists the known ones."""


class DuplicateNameError(Fatal):
    """Two entries registered under one name (two files defining the same rule, say)."""


class Registry(Generic[T]):
    """Entries of one ``kind`` by name, in registration order.

    ``package`` (a dotted module name) is imported, with every module inside it, before the first
    lookup; the modules register their entries with ``register``.
    """

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}
        self._discovered = package is None

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, entry: T) -> T: ...
    def register(self, name: str, entry: T | None = None) -> T | Callable[[T], T]:
        """Register ``entry`` under ``name``; without ``entry``, a decorator that registers what it wraps."""
        if entry is None:
            return lambda wrapped: self.register(name, wrapped)
        if name in self._entries and self._entries[name] is not entry:
            raise DuplicateNameError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry named ``name``, or ``UnknownNameError`` naming the known ones."""
        entries = self._all()
        try:
            return entries[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(entries)}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._all())

    def values(self) -> tuple[T, ...]:
        return tuple(self._all().values())

    def items(self) -> tuple[tuple[str, T], ...]:
        return tuple(self._all().items())

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._all())

    def _all(self) -> dict[str, T]:
        if not self._discovered:
            self._discovered = True
            self.discover()
        return self._entries

    def discover(self) -> None:
        """Import the package's modules (in name order), which register their entries. Importing a
        module twice does nothing, so this is safe to call again after a module was added."""
        assert self.package is not None
        package = importlib.import_module(self.package)
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")
