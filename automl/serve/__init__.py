"""Serving an automl ONNX file (``automl.runtime.inference``: session, metadata, input checks) over HTTP:
micro-batching of concurrent requests (``batching``), Prometheus metrics (``metrics``), the FastAPI
app (``app``) and the uvicorn server around it (``server``).

Everything the server needs comes from the ``.onnx`` file: task, class names and preprocessing.
Heavy libraries (onnxruntime, fastapi, uvicorn) are imported inside these modules only.
"""

from __future__ import annotations
