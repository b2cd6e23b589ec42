"""The one ONNX Runtime layer (``automl.runtime.ort``): providers follow the GPU probe, compress/serve/predict
open sessions through it, and the runtime modules import in the right direction."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from automl.exceptions import ArtifactError
from automl.runtime import ort

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("gpus", "available", "expected"), [
    (0, ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),  # no GPU: no CUDA EP
    (1, ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (2, ["CPUExecutionProvider"], ["CPUExecutionProvider"]),  # a GPU, but a CPU-only onnxruntime
])
def test_cuda_provider_only_with_a_gpu(monkeypatch: pytest.MonkeyPatch, gpus: int, available: list[str],
                                       expected: list[str]) -> None:
    import onnxruntime

    monkeypatch.setattr(ort, "gpu_count", lambda: gpus)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
    assert ort.default_providers() == expected
    assert ort.gpu_present() is (gpus > 0)


def test_compress_has_no_second_session_factory() -> None:
    root = Path(ort.__file__).resolve().parents[2]
    for path in (root / "compress").rglob("*.py"):
        assert "InferenceSession(" not in path.read_text(), path  # sessions come from automl.runtime.ort


def test_session_runs_and_bad_files_are_artifact_errors(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])])
    path = tmp_path / "relu.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime >= 1.14 reads
    onnx.save(model, str(path))
    sess = ort.make_session(path, ["CPUExecutionProvider"], threads=1, spinning=False)
    out = sess.run(["logits"], {"input": np.array([[-1.0, 0.5, 2.0]], np.float32)})[0]
    np.testing.assert_array_equal(out, [[0.0, 0.5, 2.0]])
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="ONNX Runtime cannot load it"):
        ort.make_session(tmp_path / "bad.onnx", ["CPUExecutionProvider"])


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_runtime_imports_point_down() -> None:
    """Nothing in automl/ imports compress/ (but the Python API, a front like cli.py: automl.compress());
    predict and inference do not import the server."""
    for path in sorted((REPO / "automl").rglob("*.py")):
        if path.relative_to(REPO).parts[:2] == ("automl", "api"):
            continue
        bad = {n for n in _imports(path) if n == "compress" or n.startswith("compress.")}
        assert not bad, (path, bad)
    for rel in ("automl/runtime/predict.py", "automl/runtime/inference.py", "automl/runtime/ort.py"):
        serve = {n for n in _imports(REPO / rel) if n.startswith("automl.serve")}
        assert not serve, (rel, serve)
