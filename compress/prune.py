"""Structured channel pruning with Torch-Pruning, then fine-tuning with the search's training loop.

Pruning removes whole channels (conv filters, linear units), so the pruned network is a smaller
dense network: it rebuilds from an ``arch`` dict with new per-layer widths. What a model family
must keep and how its pruned widths map back to ``arch`` are the family's own pruning hooks in the
model registry (``automl.models``); this module names no layer of any model. A family that cannot be
pruned, or a model with nothing prunable, is skipped with a stated reason instead of failing the
whole compression.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automl.exceptions import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from automl.tasks import DataBundle, Task

IMPORTANCES = ("l1", "l2", "taylor")


@dataclass
class PruneOutcome:
    """What pruning did: the pruned module (None when skipped), its arch and before/after sizes."""

    model: nn.Module | None = None
    arch: dict[str, Any] | None = None
    skipped: str | None = None
    ratio: float = 0.0
    importance: str = "l1"
    params_before: int = 0
    params_after: int = 0
    macs_before: int = 0
    macs_after: int = 0
    finetune: dict[str, Any] = field(default_factory=dict)

    @property
    def macs_reduction(self) -> float:
        """How many times fewer MACs the pruned model needs (1.0 when skipped)."""
        return self.macs_before / self.macs_after if self.macs_after else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio, "importance": self.importance, "skipped": self.skipped,
            "params_before": self.params_before, "params_after": self.params_after,
            "macs_before": self.macs_before, "macs_after": self.macs_after,
            "macs_reduction": round(self.macs_reduction, 4),
            "params_reduction": round(self.params_before / self.params_after, 4) if self.params_after else 1.0,
            "arch": self.arch, "finetune": self.finetune,
        }


def check_prune_args(ratio: float, importance: str) -> None:
    """ConfigError naming the argument and its allowed range."""
    if not (0.0 <= ratio < 1.0):
        raise ConfigError(f"prune ratio must be in [0, 1) (0 = no pruning), got {ratio}")
    if importance not in IMPORTANCES:
        raise ConfigError(f"unknown importance {importance!r} (choose from: {', '.join(IMPORTANCES)})")


def count_macs_params(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass on ``example`` (Torch-Pruning's counter)."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def output_layer(model: nn.Module, example: torch.Tensor) -> nn.Module | None:
    """The last leaf module with parameters that runs in a forward pass: the classifier, whose output
    size must stay."""

    order: list[nn.Module] = []
    leaves = [m for m in model.modules()
              if not list(m.children()) and any(True for _ in m.parameters(recurse=False))]
    forward_with_hooks(model, example, leaves, lambda mod, _i, _o: order.append(mod))
    return order[-1] if order else None


def forward_with_hooks(model: nn.Module, example: torch.Tensor, modules: list[nn.Module], hook: Any) -> None:
    """One no-grad, eval-mode forward pass on ``example`` with ``hook`` on each of ``modules``."""
    import torch

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in handles:
            h.remove()


def _importance(name: str) -> Any:
    import torch_pruning as tp

    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if name == "l1" else 2)


def _taylor_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable, batch: int = 128) -> None:
    """Accumulate loss gradients over a few training batches (Taylor importance reads ``.grad``)."""
    model.train()
    model.zero_grad(set_to_none=True)
    for i in range(0, min(len(x), 4 * batch), batch):
        loss_fn(model(x[i : i + batch]), y[i : i + batch]).backward()


def prune_model(
    model: nn.Module,
    arch: dict[str, Any],
    example: torch.Tensor,
    ratio: float,
    importance: str = "l1",
    taylor_data: tuple[torch.Tensor, torch.Tensor, Callable] | None = None,
) -> PruneOutcome:
    """Prune a copy of ``model`` (CPU) by ``ratio`` of the channels of every prunable layer.

    The classifier's outputs are kept. Returns a PruneOutcome whose ``skipped`` says why nothing was
    pruned (unknown or unprunable family, recurrent layers, nothing prunable); ``model`` is left untouched.
    ``taylor_data`` = (x, y, loss_fn) is needed for ``importance='taylor'``.
    """
    import torch
    import torch_pruning as tp
    from torch import nn

    check_prune_args(ratio, importance)
    out = PruneOutcome(ratio=ratio, importance=importance)
    model = copy.deepcopy(model).cpu().eval()
    example = example.cpu()
    out.macs_before, out.params_before = count_macs_params(model, example)
    out.macs_after, out.params_after = out.macs_before, out.params_before
    if ratio == 0:
        out.skipped = "prune ratio is 0"
        return out
    from automl.models import get_model, list_models

    name = arch.get("family")
    try:
        family = get_model(name)
    except ConfigError:
        out.skipped = f"no model family {name!r} is registered (known: {', '.join(list_models())})"
        return out
    if family.prune_unsupported:
        out.skipped = family.prune_unsupported
        return out
    recurrent = [type(m).__name__ for m in model.modules() if isinstance(m, nn.RNNBase)]
    if recurrent and not family.recurrent_ok:
        out.skipped = f"{recurrent[0]} layers cannot be pruned structurally (Torch-Pruning supports conv/linear)"
        return out
    head = output_layer(model, example)
    ignored = ([head] if head is not None else []) + list(family.prune_ignored(model))
    if importance == "taylor":
        if taylor_data is None:
            raise ConfigError("importance 'taylor' needs training data for gradients")
        _taylor_gradients(model, *taylor_data)
    try:
        with warnings.catch_warnings():
            # Parameters outside Linear/Conv (periodic embeddings) are listed in ignored_layers by their
            # family; Torch-Pruning warns about them anyway, and rebuild_pruned checks the result
            warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
            pruner = tp.pruner.BasePruner(
                model, example, importance=_importance(importance), pruning_ratio=ratio, ignored_layers=ignored,
            )
        groups = list(pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers,
                                               root_module_types=pruner.root_module_types))
        if not groups:
            out.skipped = "nothing prunable: every layer is the classifier or excluded"
            return out
        with torch.enable_grad():
            pruner.step()
    except Exception as exc:  # Torch-Pruning cannot trace this model: report, keep the rest going
        out.skipped = f"Torch-Pruning failed on this model ({exc.__class__.__name__}: {str(exc)[:120]})"
        return out
    model.zero_grad(set_to_none=True)
    out.macs_after, out.params_after = count_macs_params(model.eval(), example)
    if out.macs_after >= out.macs_before:
        out.skipped = "pruning removed nothing (every layer too narrow for this ratio)"
        out.macs_after, out.params_after = out.macs_before, out.params_before
        return out
    try:
        new_arch = family.pruned_arch(model, arch)
        out.model = rebuild_pruned(model, new_arch)
    except Exception as exc:  # hooks that describe the pruned module wrongly: say so, go on unpruned
        out.skipped = f"pruned model does not rebuild from its arch ({str(exc).splitlines()[0][:120]})"
        out.macs_after, out.params_after = out.macs_before, out.params_before
        return out
    out.arch = new_arch
    return out


def rebuild_pruned(model: nn.Module, arch: dict[str, Any]) -> nn.Module:
    """Build ``arch`` afresh and load the pruned weights into it (strict), proving that the arch
    describes the pruned module exactly; a plain module without Torch-Pruning's leftovers."""
    from automl.models import build_from_arch

    fresh = build_from_arch(arch)
    fresh.load_state_dict(model.state_dict(), strict=True)
    return fresh.eval()


def finetune(
    model: nn.Module, task: Task, bundle: DataBundle, params: dict[str, Any], epochs: int, device: str, seed: int = 0,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None, teacher: nn.Module | None = None,
    temperature: float = 4.0, weight: float = 0.5,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place with the search's training loop and the best trial's parameters;
    with a ``teacher``, the loss is distillation from it (``compress.distill``) at ``temperature``,
    ``weight`` being the soft term's share.

    Returns the last epoch's validation metric, the epochs and the seconds taken.
    """
    from automl.train import fit, train_config_from_params

    if epochs <= 0:
        return {"epochs": 0}
    cfg = train_config_from_params(params, epochs=epochs, seed=seed)
    data = bundle.to(device)
    loss_fn = task.loss_fn(cfg.label_smoothing)
    net = model
    if teacher is not None:
        from compress.distill import Distilling, distill_loss

        teacher = copy.deepcopy(teacher).to(data.x_train.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        net = Distilling(model, teacher)
        loss_fn = distill_loss(net, loss_fn, temperature, weight)
    res = fit(net, data.x_train, data.y_train, data.x_val, data.y_val, cfg, loss_fn,
              task.metric_fn(), task.augment_fn(bundle.meta), on_epoch=on_epoch)
    model.cpu().eval()
    out = {"epochs": res.epochs_run, "val_metric": res.val_metric, "val_loss": res.val_loss,
           "seconds": round(res.seconds, 3), "distill": teacher is not None}
    if teacher is not None:
        out.update({"distill_temperature": temperature, "distill_weight": weight})
    return out
