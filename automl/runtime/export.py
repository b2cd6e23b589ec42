"""The one torch -> ONNX exporter of automl (opset >= 17, input ``input``, output ``logits``, dynamic
batch axis): in memory for timing and counting (``export_bytes``), or to a file with automl metadata,
``onnx.checker`` and a parity check against PyTorch (``export_checked``, what ``compress`` writes)."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from automl.runtime.ort import make_session

if TYPE_CHECKING:
    import onnx
    import torch

__all__ = ["OPSET", "export_bytes", "export_checked", "export_onnx", "max_abs_diff", "simplify_onnx",
           "torch_export"]

OPSET = 17  # the opset of automl's ONNX files (DESIGN.md §3: >= 17)


def torch_export(model: torch.nn.Module, example: torch.Tensor, dest: str | BinaryIO, opset: int = OPSET) -> None:
    """``torch.onnx.export`` of ``model`` (already in eval mode, on the CPU) traced on ``example``
    into ``dest`` (a file name or a binary buffer) with automl's settings: the TorchScript exporter
    (fast, no graph breaks for our models), input ``input``, output ``logits``, dynamic batch axis."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), dest, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
            do_constant_folding=True, dynamo=False,
        )


def export_bytes(model: torch.nn.Module, example: torch.Tensor, opset: int = OPSET) -> bytes:
    """``model`` (a copy, eval mode, CPU) exported to ONNX in memory — the graph ``compress`` writes,
    without metadata (latency timing, counting, ``--score int8``)."""
    import torch

    buf = io.BytesIO()
    with torch.no_grad():
        torch_export(copy.deepcopy(model).eval().cpu(), example.cpu(), buf, opset)
    return buf.getvalue()


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: str | Path, meta: dict[str, str],
                opset: int = OPSET) -> Path:
    """Export ``model`` (put in eval mode, on the CPU) traced on ``example`` to ``path`` and attach ``meta``."""
    import onnx

    from automl.runtime.onnx_meta import set_metadata

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch_export(model.eval().cpu(), example, str(path), opset)
    proto = onnx.load(str(path))
    set_metadata(proto, meta)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def max_abs_diff(model: torch.nn.Module, onnx_path: str | Path, x: torch.Tensor) -> float:
    """Largest absolute difference of logits between PyTorch and ONNX Runtime (CPU) on ``x``."""
    import numpy as np
    import torch

    with torch.no_grad():
        ref = model.eval().cpu()(x).float().numpy()
    got = make_session(onnx_path, ["CPUExecutionProvider"]).run(["logits"], {"input": x.numpy()})[0]
    return float(np.max(np.abs(ref - got))) if ref.size else 0.0


def simplify_onnx(path: str | Path) -> dict[str, Any]:
    """Simplify the graph at ``path`` in place (onnxslim: constant folding, dead nodes, fused
    patterns); falls back to ONNX Runtime's basic offline optimisation, which stays portable across
    hardware. The automl metadata and ``onnx.checker`` validity are kept.

    Returns ``{"tool", "nodes_before", "nodes_after"}``.
    """
    import onnx

    path = Path(path)
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    before = len(proto.graph.node)
    tool = "onnxslim"
    try:
        import onnxslim

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slim = onnxslim.slim(proto)
        if slim is None:
            raise RuntimeError("onnxslim returned nothing")
        onnx.checker.check_model(slim)
    except Exception:
        tool = "onnxruntime-basic"
        slim = _ort_offline_optimize(path)
    del slim.metadata_props[:]
    for k, v in meta.items():
        slim.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(slim)
    onnx.save(slim, str(path))
    return {"tool": tool, "nodes_before": before, "nodes_after": len(slim.graph.node)}


def _ort_offline_optimize(path: Path) -> onnx.ModelProto:
    import tempfile

    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        opts.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        return onnx.load(opts.optimized_model_filepath)


def export_checked(
    model: torch.nn.Module, example: torch.Tensor, path: str | Path, meta: dict[str, str], x_check: torch.Tensor,
    tol: float = 1e-4,
    simplify: bool = True,
) -> dict[str, Any]:
    """Export, check, simplify, then compare logits with PyTorch on the real inputs ``x_check``.

    Returns ``{"path", "parity_max_abs_diff", "parity_ok", "simplify": {...}}``; the caller decides
    what a parity failure means (a rejected variant).
    """
    path = export_onnx(model, example, path, meta)
    info = simplify_onnx(path) if simplify else {"tool": None}
    diff = max_abs_diff(model, path, x_check)
    return {"path": str(path), "parity_max_abs_diff": diff, "parity_ok": bool(diff <= tol), "simplify": info}
