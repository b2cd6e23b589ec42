"""Structured pruning of the tabular MLP and the TextCNN: the rewritten arch rebuilds the pruned model
exactly (strict state_dict), sizes really drop, the output keeps its shape (a regression MLP its single
de-standardised output), embeddings stay whole and the pruned model exports to ONNX with parity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automl.models import get_model, list_models
from compress.prune import prune_model
from tests._onnx_helpers import task_checkpoint
from tests.tasks.test_tabular import make_tabular_csv
from tests.tasks.test_text import make_text_tsv


def _prune_checkpoint(best_pt: Path, tmp_path: Path, ratio: float = 0.5) -> dict[str, Any]:
    """Load a best.pt, prune its model at ``ratio`` and check what every family must satisfy."""
    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.models import build_from_arch
    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session as session
    from automl.tasks import DataConfig, get_task
    from compress.bench import ort_logits

    ckpt = load_checkpoint(best_pt)
    model = model_from_checkpoint(ckpt).eval()
    task = get_task(ckpt["task"])
    bundle = task.load_data(DataConfig(source=ckpt["data"]["source"], seed=0))
    example = task.example_input(bundle.meta, 1)
    out = prune_model(model, ckpt["arch"], example, ratio)
    assert out.skipped is None, out.skipped
    assert out.params_after < out.params_before
    assert out.macs_reduction >= 1.5, (out.macs_before, out.macs_after)
    assert out.arch["family"] == ckpt["arch"]["family"]

    rebuilt = build_from_arch(out.arch).eval()
    rebuilt.load_state_dict(out.model.state_dict(), strict=True)
    x = bundle.x_val[:64]
    with torch.no_grad():
        ref, got = model(x), out.model(x)
        assert got.shape == ref.shape
        assert torch.allclose(rebuilt(x), got)

    onnx_path = tmp_path / f"{ckpt['arch']['family']}.pruned.onnx"
    path = export_onnx(out.model, example, onnx_path, {"automl.task": task.name})
    onnx_logits = ort_logits(session(path), x.numpy())
    assert onnx_logits.shape == tuple(got.shape)
    assert np.abs(onnx_logits - got.numpy()).max() <= 1e-4
    return {"outcome": out, "model": model, "arch": ckpt["arch"]}


def test_families_with_hooks_and_gru_still_skipped() -> None:
    prunable = {n for n in list_models() if not get_model(n).prune_unsupported}
    assert {"cnn", "mlp", "textcnn"} <= prunable and "gru" in set(list_models()) - prunable


@pytest.mark.parametrize("depth", [1, 3])
def test_mlp_classification_prunes_hidden_widths(tmp_path: Path, depth: int) -> None:
    params = {"depth": depth, "width": 64, "batch_norm": True, "dropout": 0.1}
    best = task_checkpoint("tabular", "wine", tmp_path / "best.pt", params)
    res = _prune_checkpoint(best, tmp_path)
    arch, new = res["arch"], res["outcome"].arch
    assert new["hidden"] == [32] * depth and new["out_features"] == arch["out_features"] == 3
    assert res["outcome"].model.head.out_features == 3


def test_mlp_regression_keeps_single_destandardised_output(tmp_path: Path) -> None:
    best = task_checkpoint("tabular", "diabetes", tmp_path / "best.pt", {"depth": 2, "width": 32})
    res = _prune_checkpoint(best, tmp_path)
    new, arch = res["outcome"].arch, res["arch"]
    assert new["hidden"] == [16, 16] and new["out_features"] == 1
    assert (new["target_mean"], new["target_std"]) == (arch["target_mean"], arch["target_std"]) != (0.0, 1.0)


def test_mlp_categorical_embeddings_are_not_pruned(tmp_path: Path) -> None:
    csv = make_tabular_csv(tmp_path / "t.csv", n=200)
    best = task_checkpoint("tabular", str(csv), tmp_path / "best.pt", {"depth": 2, "width": 32})
    res = _prune_checkpoint(best, tmp_path)
    new, arch = res["outcome"].arch, res["arch"]
    assert arch["embeddings"] and new["embeddings"] == arch["embeddings"]
    assert [e.embedding_dim for e in res["outcome"].model.embeddings] == [d for _, d in arch["embeddings"]]
    assert new["hidden"] == [16, 16]


def test_textcnn_prunes_filters_and_keeps_the_embedding(tmp_path: Path) -> None:
    tsv = make_text_tsv(tmp_path / "t.tsv", n=120)
    params = {"model": "textcnn", "embed_dim": 16, "filters": 16, "kernel_sizes": "2-3-4"}
    best = task_checkpoint("text", str(tsv), tmp_path / "best.pt", params)
    res = _prune_checkpoint(best, tmp_path)
    new, arch = res["outcome"].arch, res["arch"]
    assert new["filters"] == [8, 8, 8] and new["embed_dim"] == arch["embed_dim"] == 16
    pruned = res["outcome"].model
    assert pruned.classifier.in_features == sum(new["filters"])
    assert pruned.classifier.out_features == arch["num_classes"]
    assert pruned.embedding.weight.shape == res["model"].embedding.weight.shape
