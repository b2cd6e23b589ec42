"""The search: space, objective, cost objectives, cross-validation, budget, leaderboard, prechecks.

Called, this package is the Python API's search: ``automl.search(task=..., data=...)`` runs
``automl.api.search`` (docs/python-api.md). Python binds a package to its parent's attribute once it is
imported, so ``automl.search`` is this package whatever ``automl/__init__.py`` defines; the package
is therefore made callable rather than shadowed (its modules stay reachable as attributes).
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``automl.api.search``: search models for data with Optuna (see its docstring)."""
        from automl.api import search  # the Python API sits above this layer (tests/test_imports.py)

        return search(*args, **kwargs)

    @property
    def __signature__(self) -> Any:  # what help() and notebooks show for automl.search(...)
        import inspect

        from automl.api import search

        return inspect.signature(search)


sys.modules[__name__].__class__ = _CallablePackage
