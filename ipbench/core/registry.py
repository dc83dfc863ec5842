"""Name -> plugin registries, filled by decorators, by scanning the built-in plugin folders and
by installed packages' entry points.

A built-in scheme or attack is one module in ``ipbench/schemes/`` or ``ipbench/attacks/``:
every module there whose name does not start with ``_`` is imported when the registry is
first used (``_`` marks private helpers). A third-party package registers through the
entry-point groups ``ipbench.schemes`` and ``ipbench.attacks``: each entry point names a
module (or object) whose import runs the ``@register`` decorator. Each import is guarded: a
plugin that fails to import is one warning line (and a row in ``ipbench list``), and every
other plugin still loads.
"""

from __future__ import annotations

import functools
import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ipbench.core.errors import UnknownNameError
from ipbench.core.identity import code_identity

if TYPE_CHECKING:  # named for the type checker only: these layers sit above this one
    from ipbench.plugin.attack import Attack
    from ipbench.plugin.contract import Scheme

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
        self.failures: dict[str, str] = {}  # plugin module or entry point -> why it did not load

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@schemes.register("activedaemon")``, the one place a plugin's name is
        given: a class gets it as its ``name`` attribute."""

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if isinstance(obj, type):
                own = obj.__dict__.get("name")
                if own not in (None, "", name):
                    raise ValueError(
                        f"{self.kind} class {obj.__qualname__} sets name={own!r} but is "
                        f"registered as {name!r}; drop the attribute (the decorator sets it)"
                    )
                obj.name = name  # type: ignore[attr-defined]
            elif getattr(obj, "name", name) != name:
                raise ValueError(
                    f"{self.kind} {obj!r} is named {getattr(obj, 'name', '')!r} but registered as {name!r}"
                )
            self._items[name] = obj
            code_identity(obj)  # read its source now, the code this process runs (plugins.py)
            return obj

        return deco

    def _guarded(self, what: str, load: Callable[[], Any]) -> None:
        try:
            load()
        except Exception as exc:  # a broken plugin must not take the others down
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.failures[what] = reason
            log.warning("ipbench: %s plugin %s failed to load (%s)", self.kind, what, reason)

    def builtin_modules(self) -> list[str]:
        """The public modules of the built-in plugin folder (``_`` marks a private helper)."""
        if not self._builtin_package:
            return []
        pkg = importlib.import_module(self._builtin_package)
        found = pkgutil.iter_modules(getattr(pkg, "__path__", []))
        return sorted(
            f"{self._builtin_package}.{m.name}" for m in found if not m.name.startswith("_")
        )

    def _load_plugins(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.builtin_modules():
            self._guarded(module, functools.partial(importlib.import_module, module))
        if self._group:
            for ep in entry_points(group=self._group):
                self._guarded(f"{ep.name} (entry point {ep.value})", ep.load)

    def refresh(self) -> None:
        """Scan the folder and the entry points again (after installing a plugin package)."""
        self._loaded = False
        self.failures.clear()
        self._load_plugins()

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


# Typed for the checker (``schemes.get(name)`` is a ``type[Scheme]``); at run time nothing
# above this layer is imported.
schemes: Registry[type[Scheme]] = Registry("scheme", "ipbench.schemes", "ipbench.schemes")
attacks: Registry[type[Attack]] = Registry("attack", "ipbench.attacks", "ipbench.attacks")
datasets: Registry[Any] = Registry("dataset", "ipbench.ml.datasets")
models: Registry[Any] = Registry("model", "ipbench.ml.models")
presets: Registry[Any] = Registry("preset", "ipbench.ml.presets")
