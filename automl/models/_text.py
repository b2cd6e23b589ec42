"""What the text families share: the real length of padded token ids, and when a model may cut the
padding of a batch (not while it is traced for ONNX export, whose graph must keep the full length)."""

from __future__ import annotations

import sys

import torch


def token_lengths(x: torch.Tensor) -> torch.Tensor:
    """Per row of int64 token ids (N, L) padded with 0: one past the last non-padding position (0 for
    a row of padding alone). Traceable: the ONNX graph computes it from its input."""
    steps = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)
    return ((x != 0).to(x.dtype) * steps).amax(dim=1) if x.shape[1] else x.new_zeros(len(x))


def may_trim() -> bool:
    """False while the model is traced or exported (a data-dependent length would be baked into the
    graph as a constant); True in ordinary training and evaluation."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    # ``torch.onnx`` is only looked at when something imported it: importing it here would cost
    # seconds of module compilation in every training process, and without it nothing exports.
    onnx = sys.modules.get("torch.onnx")
    return not (onnx is not None and onnx.is_in_onnx_export())
