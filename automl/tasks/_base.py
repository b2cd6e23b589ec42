"""What every task provides: data loading, model building and the loss/metric of training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from automl.exceptions import DataError, InputError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is split; saved with every artifact."""

    source: str
    seed: int = 0
    target: str | None = None
    image_size: int | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    problem: str | None = None  # classification | regression (tabular); None = infer
    categorical: tuple[str, ...] = ()  # tabular columns forced categorical (--categorical)
    numeric: tuple[str, ...] = ()  # tabular columns forced numeric (--numeric)
    test_source: str | None = None  # a separate test file (--test-data); then --data is train + validation

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples as lists), as the study stores it: a resumed study compares equal."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass
class DataBundle:
    """The whole data set as tensors: train / validation / test, plus plain-typed metadata.

    ``meta`` holds ``input_shape`` (without batch), ``num_classes``, ``classes``, ``preprocess``
    (the spec that predict/serve apply to raw input) and task-specific keys.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_indices(
        cls, encode: Any, y: Any, parts: tuple[Any, Any, Any], meta: dict[str, Any]
    ) -> DataBundle:
        """Build the bundle from train/val/test index arrays: ``encode(idx)`` gives the input tensor,
        ``y`` is the NumPy target array."""
        import torch

        tr, va, te = parts
        return cls(encode(tr), torch.from_numpy(y[tr]), encode(va), torch.from_numpy(y[va]),
                   encode(te), torch.from_numpy(y[te]), meta)

    def to(self, device: str | torch.device) -> DataBundle:
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return DataBundle(**moved, meta=self.meta)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


class Task:
    """Base class of a task; subclasses register themselves with ``@register_task``.

    ``metric`` names what ``evaluate_metric`` returns and ``direction`` says whether higher is better.
    """

    name: ClassVar[str] = ""
    metric: ClassVar[str] = "accuracy"
    direction: ClassVar[str] = "maximize"
    description: ClassVar[str] = ""
    #: the model family (``automl.models``) a search uses when its space names no ``model``
    default_model: ClassVar[str] = ""
    #: ``--epochs`` when not given: the most epochs a trial trains
    default_epochs: ClassVar[int] = 10

    def prepare(self, cfg: DataConfig) -> None:
        """Called once before the study is created. A task whose ``metric`` and ``direction`` depend
        on the data (tabular regression: rmse, minimize) sets them on the instance here; the
        default does nothing."""

    def load_data(self, cfg: DataConfig) -> DataBundle:
        raise NotImplementedError

    @property
    def model_params(self) -> frozenset[str]:
        """Parameter names the model families of this task consume (the rest must be training
        parameters): ``model``, which picks the family, and every such family's own parameters."""
        from automl.models import get_model, list_models

        return frozenset({"model"}).union(*(get_model(n).params for n in list_models(self.name)))

    def model_family(self, params: dict[str, Any]) -> Any:
        """The registered family that ``params["model"]`` (default ``default_model``) names; ValueError
        when it is unknown or does not fit this task."""
        from automl.models import get_model, list_models

        name = params.get("model", self.default_model)
        names = list_models(self.name)
        if name not in names:
            raise ValueError(f"unknown {self.name} model {name!r} (choose from: {', '.join(names)})")
        return get_model(name)

    def arch_from_params(self, params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        """Plain-typed architecture description (what best.pt stores under ``arch``)."""
        return self.model_family(params).arch_from_params(params, meta)

    def build_model(self, params: dict[str, Any], meta: dict[str, Any]) -> nn.Module:
        from automl.models import build_from_arch

        return build_from_arch(self.arch_from_params(params, meta))

    def example_input(self, meta: dict[str, Any], batch: int = 1) -> torch.Tensor:
        import torch

        return torch.zeros((batch, *meta["input_shape"]), dtype=torch.float32)

    def loss_fn(self, label_smoothing: float = 0.0) -> Any:
        """(logits, targets) -> the training loss: cross-entropy. Logits (N, k, C) are the outputs of
        k ensemble members (an ensemble model in train mode, e.g. ``tabm``): the loss is then the mean
        of the members' losses, so each member learns as a model of its own."""
        import torch.nn.functional as F

        def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if logits.dim() == 3:
                k = logits.shape[1]
                return F.cross_entropy(logits.float().reshape(-1, logits.shape[2]), y.repeat_interleave(k),
                                       label_smoothing=label_smoothing)
            return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)

        return loss

    def metric_fn(self) -> Any:
        """(logits, targets) -> float; accuracy for classification."""

        def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
            return float((logits.argmax(dim=1) == y).float().mean().item()) if len(y) else 0.0

        return accuracy

    def augment_fn(self, meta: dict[str, Any]) -> Any:
        """A batched augmentation ``(x, strength, generator) -> x`` or None."""
        return None

    # --- raw inputs: what ``predict`` reads and ``serve`` accepts (the task owns its kind) ----------

    #: what one raw sample of a JSON request is (tabular: dict records, text: strings); None when JSON
    #: carries numeric arrays only
    raw_json_type: ClassVar[type | None] = None
    #: how JSON samples may look, for error messages
    json_hint: ClassVar[str] = "nested arrays of numbers"
    #: whether the model's sample shape is the training shape stored in the spec (images)
    fixed_shape: ClassVar[bool] = False

    def read_inputs(self, items: list[str], spec: dict[str, Any]) -> tuple[list[str], list[Any]]:
        """Command-line INPUTS of ``automl predict`` -> (a name per sample, the raw samples)."""
        raise DataError(f"the {self.name} task cannot read raw inputs")

    def encode_inputs(self, raw: list[Any], spec: dict[str, Any]) -> np.ndarray:
        """Raw samples -> the NumPy batch the model takes, preprocessed exactly as in training."""
        raise DataError(f"the {self.name} task cannot encode raw inputs")

    def encode_json(self, inputs: list[Any], spec: dict[str, Any], options: dict[str, Any],
                    limits: InputLimits) -> np.ndarray | None:
        """The ``inputs`` of a JSON request -> the batch, when they are raw samples of this task;
        None when they are numeric arrays for the generic checks. ``options`` are the other keys
        of the request object."""
        if self.raw_json_type is not None and inputs and all(isinstance(r, self.raw_json_type) for r in inputs):
            return self.encode_inputs(inputs, spec)
        return None

    def validate_spec(self, spec: dict[str, Any]) -> None:
        """Check a preprocessing spec read from a model file (which may come from anywhere) before
        anything uses it: types, ranges and sizes. A DataError names the first bad key."""

    def describe_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The public part of the spec that ``/metadata`` shows: what a client needs to prepare inputs."""
        return {"kind": spec.get("kind")}

    def encode_files(self, files: list[tuple[str, bytes]], spec: dict[str, Any], limits: InputLimits) -> np.ndarray:
        """Uploaded files (name, bytes) -> the batch; only tasks whose inputs are files accept them."""
        raise InputError(f"this is a {self.name} model: send JSON {{\"inputs\": [...]}}, not files",
                         "unsupported_media_type")


@dataclass(frozen=True)
class InputLimits:
    """Caps on one raw input, set by the server (and predict): pixels of a decoded image, characters
    of a text."""

    max_image_pixels: int | None = None
    max_text_chars: int | None = None


# --- checking a preprocessing spec read from a model file -------------------------------------------


def _bad(key: str, what: str, value: Any) -> DataError:
    shown = repr(value)
    return DataError(f"preprocess.{key} must be {what}, got {shown[:60]}{'…' if len(shown) > 60 else ''}")


def spec_int(spec: dict[str, Any], key: str, lo: int, hi: int) -> int:
    """``spec[key]``, an int in [lo, hi]."""
    v = spec.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _bad(key, f"an integer in [{lo}, {hi}]", v)
    return v


def spec_list(spec: dict[str, Any], key: str, item: type | tuple[type, ...], lo: int, hi: int) -> list[Any]:
    """``spec[key]``, a list of ``lo`` to ``hi`` items of type ``item`` (bools are not numbers)."""
    v = spec.get(key)
    if (not isinstance(v, list) or not lo <= len(v) <= hi
            or any(isinstance(x, bool) or not isinstance(x, item) for x in v)):
        names = item.__name__ if isinstance(item, type) else " or ".join(t.__name__ for t in item)
        raise _bad(key, f"a list of {lo} to {hi} values of type {names}", v)
    return v


def spec_numbers(spec: dict[str, Any], key: str, n: int, positive: bool = False) -> list[float]:
    """``spec[key]``, a list of ``n`` finite numbers (> 0 with ``positive``)."""
    import math

    v = spec_list(spec, key, (int, float), n, n)
    if not all(math.isfinite(x) and (not positive or x > 0) for x in v):
        raise _bad(key, f"{n} finite{' positive' if positive else ''} numbers", v)
    return [float(x) for x in v]
