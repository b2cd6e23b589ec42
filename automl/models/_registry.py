"""Model-family registry (the timm pattern): ``@register_model`` + ``get_model`` + ``list_models``.

A family is one class that holds everything the rest of the project needs to know about it:

- ``tasks``: the tasks whose data it fits (a search chooses a family with the ``model`` parameter);
- ``params``: the sampled parameters ``arch_from_params`` reads;
- ``arch_from_params(params, meta) -> arch``: the plain arch dict best.pt stores under ``arch``;
- ``build(arch) -> nn.Module``;
- the pruning hooks: ``prune_ignored(model)`` (modules, or parameters such as a numeric embedding's,
  whose output channels must stay, beyond the output layer, which pruning always keeps) and
  ``pruned_arch(model, arch)`` (the arch describing a pruned module, read back from its layers' new
  widths). A family that cannot be pruned sets
  ``prune_unsupported`` to the reason.

Every module of this package whose name does not start with ``_`` is imported on first use, so a new
family is one new file here and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from automl.exceptions import ConfigError
from automl.registry import import_public_modules

if TYPE_CHECKING:
    from torch import nn

    from automl.data.bundle import DataBundle


#: a model's architecture: the plain dict (``family`` plus ints, floats, strings and lists of them) that
#: ``build`` reads and best.pt stores under ``arch``; each family knows its own keys and their types
Arch = dict[str, Any]
#: a trial's sampled parameters (``automl.search.space.sample``): name -> value, read by name
Params = dict[str, Any]
#: what a family learns from the data (``Task.model_meta``: input size, classes, vocabulary ...)
Meta = dict[str, Any]


class ModelFamily:
    """Base class of a model family; subclasses register themselves with ``@register_model``."""

    name: ClassVar[str] = ""
    #: tasks whose data this family fits (``Task.name``)
    tasks: ClassVar[tuple[str, ...]] = ()
    #: sampled parameter names ``arch_from_params`` reads (besides ``model``, which picks the family)
    params: ClassVar[frozenset[str]] = frozenset()
    #: why pruning cannot handle this family (None: it can)
    prune_unsupported: ClassVar[str | None] = None
    #: why INT8/FP16 quantization does not apply to this family (None: it does)
    quantize_unsupported: ClassVar[str | None] = None
    #: fitted by ``fit_direct`` in one go instead of by the epoch loop of ``automl.train``
    direct_fit: ClassVar[bool] = False
    #: the family's pruning hooks cope with its recurrent layers (Torch-Pruning supports LSTM only)
    recurrent_ok: ClassVar[bool] = False
    #: what the family can build: the range [low, high] of each integer sampled parameter. A search
    #: space's range (and each numeric choice) must lie inside it, and an arch key of the same name
    #: read from a model file must too (``automl.models.check_arch_bounds``)
    limits: ClassVar[dict[str, tuple[int, int]]] = {}
    #: the most entries one list of a stored arch may hold (layers, stages, blocks, branches)
    max_layers: ClassVar[int] = 64
    #: arch keys whose lists follow the data's columns, not the layers, and their own length bound
    column_lists: ClassVar[dict[str, int]] = {}

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        """Sampled parameters + data metadata -> the plain arch dict (with ``family`` = name)."""
        raise NotImplementedError

    def build(self, arch: Arch) -> nn.Module:
        """A fresh module for ``arch``; KeyError/TypeError/ValueError when the arch is incomplete."""
        raise NotImplementedError

    def fit_direct(self, params: Params, bundle: DataBundle, *, seed: int,
                   deadline: float | None = None) -> tuple[nn.Module, Arch]:
        """Fit a ``direct_fit`` family on ``bundle``'s training split: (module in eval mode, its arch).
        ValueError when these parameters or data cannot be fitted; DeadlineReached when ``deadline``
        (a ``time.monotonic()`` value) passes first."""
        raise NotImplementedError(f"model family {self.name!r} trains in the epoch loop")

    def prune_ignored(self, model: nn.Module) -> list[nn.Module | nn.Parameter]:
        """Modules (or parameters: Torch-Pruning's ignored parameters) whose output channels pruning
        must keep (the output layer is always kept)."""
        return []

    def pruned_arch(self, model: nn.Module, arch: Arch) -> Arch:
        """The arch of the pruned ``model`` (its new per-layer widths); ValueError when it does not fit."""
        raise NotImplementedError(f"model family {self.name!r} has no pruning hooks")


_MODELS: dict[str, ModelFamily] = {}
_discovered = False


def register_model(name: str) -> Callable[[type[ModelFamily]], type[ModelFamily]]:
    """Class decorator that makes a model family available by ``name``."""

    def deco(cls: type[ModelFamily]) -> type[ModelFamily]:
        if name in _MODELS and type(_MODELS[name]).__qualname__ != cls.__qualname__:
            raise ValueError(f"model family {name!r} is registered twice")
        cls.name = name
        _MODELS[name] = cls()
        return cls

    return deco


def unregister_model(name: str) -> None:
    """Forget the model family called ``name`` (a test's toy family, after the test)."""
    _MODELS.pop(name, None)


def _discover() -> None:
    """Import every public module of this package once (each registers its family)."""
    global _discovered
    if _discovered:
        return
    import_public_modules(__package__)  # the package is imported before any of its modules
    _discovered = True


def list_models(task: str | None = None) -> list[str]:
    """Names of every registered model family (those fitting ``task`` when given), sorted."""
    _discover()
    return sorted(n for n, fam in _MODELS.items() if task is None or task in fam.tasks)


def get_model(name: str) -> ModelFamily:
    """The family called ``name``; a ConfigError lists the valid names otherwise."""
    _discover()
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model family {name!r} (choose from: {', '.join(list_models())})") from None
