"""What a network costs to store and run, counted without timing it: its stored numbers and its
multiply-accumulates (its ONNX graph in memory comes from ``automl.runtime.export.export_bytes``).
``automl.runtime.latency`` times the graph and records these counts beside the timing.
"""

from __future__ import annotations

import copy
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def count_params(model: torch.nn.Module) -> int:
    """Stored numbers of the network: its parameters, or its buffers when it has none (a tree
    ensemble keeps its thresholds and leaves as buffers)."""
    n = sum(p.numel() for p in model.parameters())
    return int(n or sum(b.numel() for b in model.buffers()))


def count_macs(model: torch.nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one sample's forward pass (Torch-Pruning's counter, which walks
    Linear, Conv, normalisation, RNN and attention layers); forward hooks on Linear / Conv / RNN
    layers when it cannot trace the model."""
    import torch

    one = example[:1].cpu()
    model = copy.deepcopy(model).eval().cpu()
    try:
        import torch_pruning as tp

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs, _ = tp.utils.count_ops_and_params(model, one)
        return int(macs)
    except Exception:  # a layer it cannot walk: count the heavy layers ourselves
        return _hook_macs(model, one)


def _hook_macs(model: torch.nn.Module, one: torch.Tensor) -> int:
    import torch
    from torch import nn

    total = [0]

    def hook(mod: nn.Module, inp: Any, out: Any) -> None:
        y = out[0] if isinstance(out, tuple) else out
        if isinstance(mod, nn.Linear):
            total[0] += int(y.numel() // y.shape[-1]) * mod.in_features * mod.out_features
        elif isinstance(mod, nn.modules.conv._ConvNd):
            k = int(torch.tensor(mod.kernel_size).prod())
            total[0] += int(y.numel()) * (mod.in_channels // mod.groups) * k
        elif isinstance(mod, nn.RNNBase):
            x = inp[0]
            steps = int(x.shape[1] if mod.batch_first else x.shape[0]) if x.dim() == 3 else 1
            gates = {"LSTM": 4, "GRU": 3}.get(mod.mode, 1)
            h, dirs = mod.hidden_size, 2 if mod.bidirectional else 1
            per_layer = [(mod.input_size if i == 0 else h * dirs) for i in range(mod.num_layers)]
            total[0] += steps * dirs * sum(gates * h * (n + h) for n in per_layer)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd, nn.RNNBase))]
    try:
        with torch.no_grad():
            model(one)
    finally:
        for h in handles:
            h.remove()
    return total[0]
