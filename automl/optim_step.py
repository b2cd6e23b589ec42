"""Optimizer calls that do not import ``torch._dynamo``.

PyTorch's optimizers import torch._dynamo (1.4 s on a quiet 2-core machine, 8-9 s on a loaded one)
the first time one is built, stepped or zeroed, only so that torch.compile does not trace them. A
search compiles nothing, and paid that import before its first trial, in every process (``--jobs``
workers, ``automl worker``). ``automl.train`` builds and steps its optimizers through this module;
the updates are PyTorch's own (``tests/test_startup.py`` compares them for every optimizer and
schedule). Once anything in the process imports torch._dynamo, everything here is the plain call.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar

import torch

P = ParamSpec("P")
R = TypeVar("R")


class _UntilDynamo(Generic[P, R]):
    """Stands in for ``torch._dynamo.disable(fn)`` while ``torch._dynamo`` is not imported.

    ``torch._disable_dynamo`` wraps some Optimizer methods (the constructor's ``add_param_group``,
    ``zero_grad``, ``state_dict``) so that torch.compile does not trace them; the wrapper imports
    ``torch._dynamo`` on its first call (1.4 s on a quiet 2-core machine, 8-9 s on a loaded one) and
    caches ``disable(fn)`` as ``fn.__dynamo_disable``. Until torch._dynamo is imported nothing can be
    compiling, so calling ``fn`` itself does exactly what the disabled function would; once it is
    imported, this hands back to PyTorch's own lazy path (it clears the cache and calls the wrapper).
    """

    def __init__(self, fn: Callable[P, R], wrapper: Callable[P, R]) -> None:
        self.fn = fn
        self.wrapper = wrapper

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if _dynamo_loaded():
            setattr(self.fn, "__dynamo_disable", None)  # noqa: B010 (a name mangling would break)
            return self.wrapper(*args, **kwargs)
        return self.fn(*args, **kwargs)


_DYNAMO_HOOKS: list[bool] = []


def _dynamo_loaded() -> bool:
    """Whether anything in this process has imported torch._dynamo (torch.compile, torch.export, ...)."""
    return "torch._dynamo" in sys.modules


def defer_dynamo_import() -> None:
    """Fill PyTorch's per-method ``__dynamo_disable`` caches on Optimizer with ``_UntilDynamo`` (once)."""
    if _DYNAMO_HOOKS or _dynamo_loaded():
        return
    _DYNAMO_HOOKS.append(True)
    disable = getattr(torch, "_disable_dynamo", None)
    if disable is None:
        return
    probe = disable(lambda: None).__code__  # the code object of the wrapper torch._disable_dynamo makes
    for cls in torch.optim.Optimizer.__mro__:
        for attr in vars(cls).values():
            raw = getattr(attr, "__wrapped__", None)
            if getattr(attr, "__code__", None) is probe and raw is not None \
                    and getattr(raw, "__dynamo_disable", None) is None:
                setattr(raw, "__dynamo_disable", _UntilDynamo(raw, attr))  # noqa: B010


def optimizer_step(opt: torch.optim.Optimizer) -> None:
    """``opt.step()`` without importing ``torch._dynamo``.

    Every built-in optimizer's ``step`` is wrapped by ``_use_grad_for_differentiable``, which imports
    torch._dynamo (see ``_UntilDynamo``) only to put graph breaks around the update for
    torch.compile, and runs it with autograd off. Until torch._dynamo is imported this calls the
    unwrapped ``step`` with autograd off; the update is the same (tests/test_startup.py checks it
    against ``opt.step()`` for every optimizer and schedule). Step hooks are not run: the loop
    registers none. Once torch._dynamo is imported (by anything) it is plain ``opt.step()``.
    """
    if _dynamo_loaded():
        opt.step()
        return
    raw = inspect.unwrap(type(opt).step)
    with torch.set_grad_enabled(bool(opt.defaults.get("differentiable", False))):
        raw(opt)
    opt._opt_called = True  # what an LR scheduler's step wrapper records (it warns otherwise)


def zero_grad(params: list[torch.Tensor]) -> None:
    """``opt.zero_grad(set_to_none=True)`` for the optimizer over ``params``."""
    for p in params:
        p.grad = None
