"""What every task provides: data loading, model building and the loss/metric of training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
        import torch.nn.functional as F

        def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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
