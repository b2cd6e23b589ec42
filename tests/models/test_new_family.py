"""A model family that exists only as one file (``tests/models/drop_in/rescnn.py``, discovered as if it
lived in ``automl/models/``) goes all the way: chosen by a search space's ``model`` parameter,
searched, compressed (pruned + fine-tuned + exported), with PyTorch-vs-ONNX-Runtime parity, and
predicted from both the ``.onnx`` and the ``.pt`` the way ``serve``/``predict`` load them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

PARITY_TOL = 1e-4


def test_drop_in_family_is_searched_pruned_exported_and_served(drop_in_family: str, tmp_path: Path) -> None:
    import automl
    from automl.artifacts import load_checkpoint
    from automl.runtime.ort import make_session as session
    from automl.runtime.predict import predict
    from automl.study import SearchSettings, run_search
    from automl.tasks import DataConfig, get_task
    from compress.bench import ort_logits
    from compress.pipeline import CompressSettings, run_compress
    from tests._onnx_helpers import digit_pngs

    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  model: {drop_in_family}\n  depth: 2\n  width: 16\n  lr: 0.01\n"
                     "  batch_size: 64\n  optimizer: adamw\n")
    result = run_search(SearchSettings(task="image", data="digits", space=str(space), trials=1, epochs=3,
                                       pruner="none", sampler="random", out=str(tmp_path / "runs"), device="cpu"))
    ckpt = load_checkpoint(result.best_pt)
    assert ckpt["arch"]["family"] == drop_in_family and ckpt["params"]["model"] == drop_in_family
    assert result.test_metric > 0.5  # it learned something: 10 classes, chance is 0.1

    res = run_compress(CompressSettings(checkpoint=result.best_pt, out=str(tmp_path / "c"), prune_ratio=0.5,
                                        finetune_epochs=1, quantize="none", warmup=1, repeats=3, threads=1))
    prune = res.report["prune"]
    assert prune["skipped"] is None, prune["skipped"]
    assert prune["arch"]["width"] == 8 and prune["arch"]["inner"] == [8, 8]
    assert prune["params_after"] < prune["params_before"] / 3

    bundle = get_task("image").load_data(DataConfig(**ckpt["data"]))
    x = bundle.x_test[:128]
    pruned = automl.load_model(prune["path"])  # rebuilt through the registry from pruned.pt
    for pt_model, onnx_file in ((automl.load_model(result.best_pt), "model.onnx"), (pruned, "model.pruned.onnx")):
        with torch.no_grad():
            ref = pt_model(x).numpy()
        got = ort_logits(session(tmp_path / "c" / onnx_file), x.numpy())
        assert np.abs(got - ref).max() <= PARITY_TOL, onnx_file
    rows = {v["name"]: v for v in res.report["variants"]}
    assert rows["pruned"]["parity_max_abs_diff"] <= PARITY_TOL

    pngs = [str(p) for p in digit_pngs(tmp_path / "pngs", [0, 1, 2, 3])]
    from_onnx = predict(tmp_path / "c" / "model.pruned.onnx", pngs)["predictions"]
    from_pt = predict(prune["path"], pngs)["predictions"]
    assert [r["label"] for r in from_onnx] == [r["label"] for r in from_pt]
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(from_onnx, from_pt, strict=True)) < 1e-4
