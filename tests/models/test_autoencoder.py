"""The anomaly task's autoencoders: what their forward returns in eval and train mode, and a graph
ONNX Runtime's INT8 tooling can take without leaving files behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from automl.models import build_from_arch, get_model

META = {"input_shape": [6]}


def _model(family: str, **params: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_from_arch(get_model(family).arch_from_params({"depth": 1, "width": 8, "bottleneck": 2, **params},
                                                               META))


def test_ae_score_is_the_mean_squared_reconstruction_error() -> None:
    model = _model("ae").eval()
    x = torch.randn(5, 6)
    with torch.no_grad():
        rec = model.out(model.decoder(model.mu(model.encoder(x))))
        assert torch.allclose(model(x), (rec - x).pow(2).mean(dim=1), atol=1e-6)
        assert model(x).shape == (5,)


def test_dae_corrupts_only_while_training_and_vae_scores_are_deterministic_in_eval() -> None:
    dae, x = _model("dae", noise=0.5, mask=0.3), torch.randn(64, 6)
    with torch.no_grad():
        dae.train()
        assert not torch.allclose(dae(x), dae(x))  # a fresh corruption each call
        dae.eval()
        assert torch.equal(dae(x), dae(x))
    vae = _model("vae")
    with torch.no_grad():
        vae.train()
        assert not torch.allclose(vae(x), vae(x))  # a sampled latent
        vae.eval()
        assert torch.equal(vae(x), vae(x)) and bool((vae(x) > 0).all())


def test_convae_graph_needs_no_temporary_files_for_int8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's symbolic shape inference writes ``sym_shape_infer_temp.onnx`` and UUID-named
    ``.data`` files into the working directory when a shape stays unresolved (it did with ``Resize``)."""
    from automl.runtime.export import export_onnx
    from compress.quantize import preprocess_for_quantization

    family = get_model("convae")
    model = build_from_arch(family.arch_from_params({"width": 4}, {"input_shape": [1, 12, 12]})).eval()
    path = export_onnx(model, torch.zeros(1, 1, 12, 12), tmp_path / "c.onnx", {})
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    preprocess_for_quantization(path, tmp_path)
    assert sorted(p.name for p in work.iterdir()) == []
