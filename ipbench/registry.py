"""Name -> plugin registries, filled by decorators and by installed packages' entry points.

Schemes and attacks from third-party packages register through the entry-point groups
``ipbench.schemes`` and ``ipbench.attacks``: each entry point names a module (or object) whose
import runs the ``@register`` decorator.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from ipbench.errors import UnknownNameError

T = TypeVar("T")
log = logging.getLogger(__name__)


class Registry(Generic[T]):
    """A named collection of plugins of one kind (schemes, attacks, datasets, ...)."""

    def __init__(self, kind: str, builtin_package: str | None = None, group: str | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._builtin_package = builtin_package
        self._group = group
        self._loaded = builtin_package is None and group is None

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@schemes.register("activedaemon")``."""

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def _load_plugins(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self._builtin_package:
            pkg = importlib.import_module(self._builtin_package)
            for mod in getattr(pkg, "BUILTIN", ()):
                importlib.import_module(f"{self._builtin_package}.{mod}")
        if self._group:
            for ep in entry_points(group=self._group):
                try:
                    ep.load()
                except Exception as exc:  # a broken third-party plugin must not break ipbench
                    log.warning("could not load %s plugin %r: %s", self.kind, ep.name, exc)

    def get(self, name: str) -> T:
        """Look a plugin up, with an error that lists the valid names."""
        self._load_plugins()
        if name not in self._items:
            raise UnknownNameError(self.kind, name, self._items)
        return self._items[name]

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self.get(n)) for n in self.names()]


schemes: Registry = Registry("scheme", "ipbench.schemes", "ipbench.schemes")
attacks: Registry = Registry("attack", "ipbench.attacks", "ipbench.attacks")
datasets: Registry = Registry("dataset", "ipbench.datasets")
models: Registry = Registry("model", "ipbench.models")
presets: Registry = Registry("preset", "ipbench.presets")
