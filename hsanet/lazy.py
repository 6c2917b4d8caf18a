"""Package names that load on first use (PEP 562), so that importing a package imports nothing heavy."""
from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: dict, exports: dict[str, str]) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for a package's globals ``package``: ``exports`` maps each name to
    the module that defines it; the first access imports that module and caches the name."""
    def __getattr__(name: str):
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            package[name] = value
            return value
        raise AttributeError(f"module {package['__name__']!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(package) | set(exports))

    return __getattr__, __dir__
