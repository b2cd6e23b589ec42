"""What the three plug-in registries share (model families, tasks, compress stages): finding the
modules of a package, each of which registers itself when imported."""

from __future__ import annotations

import importlib
import pkgutil
import sys


def import_public_modules(package: str) -> None:
    """Import every module of the (already imported) ``package`` whose name does not start with "_",
    in the order ``pkgutil`` lists them; importing one registers what it defines."""
    pkg = sys.modules[package]
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
