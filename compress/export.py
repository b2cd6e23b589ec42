"""Compress's names for the exporter and the session factory, kept for callers of the old module:
the one implementation is ``automl.runtime.export`` (and ``automl.runtime.ort`` for sessions)."""

from __future__ import annotations

from automl.runtime.export import OPSET, export_checked, export_onnx, max_abs_diff, simplify_onnx
from automl.runtime.ort import default_providers, gpu_present, make_session
from automl.runtime.ort import make_session as session

__all__ = ["OPSET", "default_providers", "export_checked", "export_onnx", "gpu_present", "make_session",
           "max_abs_diff", "session", "simplify_onnx"]
