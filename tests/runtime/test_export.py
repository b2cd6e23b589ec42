"""One ONNX exporter (issue 25): the in-memory graph the latency budget times and the file compress
writes come from the same ``torch.onnx.export`` call, and differ only by automl's metadata."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def test_in_memory_and_file_exports_are_the_same_graph(tmp_path: Path) -> None:
    import onnx

    from automl.runtime.export import OPSET, export_bytes, export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x = torch.randn(2, 1, 8, 8)
    blob = export_bytes(model, x[:1])
    path = export_onnx(model, x[:1], tmp_path / "m.onnx", {"automl.variant": "fp32"})
    mem, disk = onnx.load_from_string(blob), onnx.load(str(path))
    assert {p.key: p.value for p in disk.metadata_props} == {"automl.variant": "fp32"} and not mem.metadata_props
    assert mem.graph.SerializeToString() == disk.graph.SerializeToString()
    assert [o.version for o in disk.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    (inp,), (out,) = disk.graph.input, disk.graph.output
    assert (inp.name, out.name) == ("input", "logits")
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"  # the batch axis is dynamic


def test_compress_and_counters_use_the_one_exporter() -> None:
    import automl.runtime.counters as counters
    import automl.runtime.export as export
    import automl.runtime.int8 as int8
    import automl.runtime.latency as latency

    assert latency.export_bytes is export.export_bytes
    root = Path(export.__file__).resolve().parents[2]
    for path in [*(root / "compress").rglob("*.py"), *(root / "automl").rglob("*.py")]:
        if path.name != "export.py" or path.parent.name != "runtime":
            assert "torch.onnx.export(" not in path.read_text(), path  # one exporter: automl/runtime/export.py
    assert not hasattr(counters, "export_bytes")  # no second copy of the exporter settings
    source = Path(int8.__file__).read_text() + Path(counters.__file__).read_text()
    assert "torch.onnx.export" not in source
