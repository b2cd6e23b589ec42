"""Pieces of ``automl compress`` on tiny synthetic models (each test well under a second or two):
bad input through the CLI, pruning hooks and skip reasons, integer (token) inputs, calibration
streaming, dynamic INT8 and FP16."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from automl.models import ModelFamily, get_model
from automl.models import _registry as model_registry
from compress.prune import prune_model

# --- bad input: one line on stderr, exit 1, no traceback -----------------------------------------


def _invoke(*args: str) -> Any:
    from typer.testing import CliRunner

    import cli

    return CliRunner().invoke(cli.app, ["compress", *args])


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_compress")
    corrupt = root / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint at all" * 10)
    other_zip = root / "other.pt"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("hello.txt", "a zip file, but no checkpoint inside")
    text = root / "best.json"
    text.write_text('{"study": "x"}')
    foreign = root / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    no_data = root / "no_data.pt"
    from automl.artifacts import make_checkpoint, save_checkpoint
    from automl.models import build_from_arch

    arch = {"family": "cnn", "in_channels": 1, "input_size": [8, 8], "widths": [4], "pools": [True],
            "batch_norm": True, "activation": "relu", "dropout": 0.0, "init": "default", "num_classes": 3}
    save_checkpoint(no_data, {**make_checkpoint(task="image", arch=arch, model=build_from_arch(arch),
                                                preprocess={"kind": "image", "channels": 1, "size": [8, 8],
                                                            "mean": [0.5], "std": [0.25]},
                                                data={}, metrics={}), "data": None})
    return {"root": root, "corrupt": corrupt, "other_zip": other_zip, "text": text, "foreign": foreign,
            "no_data": no_data}


@pytest.mark.parametrize(
    ("which", "extra", "fragment"),
    [
        ("missing", [], "checkpoint not found"),
        ("root", [], "is a folder"),
        ("corrupt", [], "not a best.pt (not a PyTorch checkpoint file)"),
        ("text", [], "best.json: not a best.pt"),
        ("other_zip", [], "other.pt: not a readable automl checkpoint"),
        ("foreign", [], "not an automl checkpoint (missing keys"),
        ("no_data", [], "records no training data"),
        ("foreign", ["--prune-ratio", "1.0"], "prune ratio must be in [0, 1)"),
        ("foreign", ["--prune-ratio", "-0.1"], "prune ratio must be in [0, 1)"),
        ("foreign", ["--calib-samples", "0"], "calibration samples must be > 0, got 0"),
        ("foreign", ["--calib-samples", "-5"], "calibration samples must be > 0, got -5"),
        ("foreign", ["--quantize", "int4"], "unknown quantize mode 'int4'"),
        ("foreign", ["--importance", "random"], "unknown importance 'random'"),
        ("foreign", ["--max-drop", "-1"], "max drop must be >= 0"),
        ("foreign", ["--calibration", "kl"], "unknown calibration 'kl'"),
        ("foreign", ["--distill-temperature", "0"], "distill temperature must be > 0"),
        ("foreign", ["--distill-weight", "1.5"], "distill weight must be in [0, 1]"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(bad_files: dict[str, Path], which: str, extra: list[str],
                                          fragment: str) -> None:
    path = bad_files["root"] / "nope.pt" if which == "missing" else bad_files[which]
    res = _invoke(str(path), *extra)
    assert res.exit_code == 1, res.stdout
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error:") and fragment in err, err
    assert res.stdout == ""


def test_error_line_is_the_first_thing_on_stderr(bad_files: dict[str, Path]) -> None:
    """No blank line from the progress display before the error (stderr is not a terminal here)."""
    res = _invoke(str(bad_files["foreign"]))
    assert res.exit_code == 1
    assert res.stderr.startswith("error: "), repr(res.stderr[:40])


# --- pruning hooks and skip reasons ---------------------------------------------------------------


class Mlp(nn.Module):
    def __init__(self, widths: list[int], d_in: int = 6, classes: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for w in widths:
            layers += [nn.Linear(d_in, w), nn.ReLU()]
            d_in = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Gru(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.emb(x))[0][:, -1])


class TokenCnn(nn.Module):
    """Embedding -> Conv1d -> ReLU -> max over time -> Linear: int64 token ids in."""

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.emb = nn.Embedding(arch["vocab"], arch["embed"])
        self.conv = nn.Conv1d(arch["embed"], arch["channels"], 3, padding=1)
        self.head = nn.Linear(arch["channels"], arch["classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(self.emb(x).transpose(1, 2)))
        return self.head(h.amax(dim=2))


TOKEN_ARCH = {"family": "toktest", "vocab": 50, "embed": 16, "channels": 64, "classes": 4}


class TokenFamily(ModelFamily):
    """A test-only family around TokenCnn: the embedding keeps its size, the conv is read back."""

    tasks = ("text",)

    def build(self, arch: dict[str, Any]) -> nn.Module:
        return TokenCnn(arch)

    def prune_ignored(self, model: nn.Module) -> list[nn.Module]:
        return [model.emb]

    def pruned_arch(self, model: nn.Module, arch: dict[str, Any]) -> dict[str, Any]:
        return {**arch, "channels": model.conv.out_channels, "embed": model.emb.embedding_dim}


class FakeFamily(ModelFamily):
    """A prunable family whose hooks read nothing back (for the skip reasons)."""

    def pruned_arch(self, model: nn.Module, arch: dict[str, Any]) -> dict[str, Any]:
        return arch


@pytest.fixture
def token_family(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the 'toktest' family in the model registry (undone after)."""
    get_model("cnn")  # discover the built-in families first
    monkeypatch.setitem(model_registry._MODELS, "toktest", TokenFamily())


def test_unknown_family_gru_and_nothing_prunable_are_skipped_with_reasons(monkeypatch) -> None:
    x = torch.randn(2, 6)
    out = prune_model(Mlp([8]), {"family": "nohook"}, x, 0.5)
    assert out.model is None and "no model family 'nohook' is registered" in out.skipped
    assert out.macs_before == out.macs_after > 0

    out = prune_model(Gru(), {"family": "gru"}, torch.zeros(2, 5, dtype=torch.long), 0.5)
    assert out.model is None and out.skipped.startswith("GRU layers cannot be pruned")

    get_model("cnn")
    monkeypatch.setitem(model_registry._MODELS, "fake", FakeFamily())
    out = prune_model(Gru(), {"family": "fake"}, torch.zeros(2, 5, dtype=torch.long), 0.5)
    assert out.model is None and out.skipped.startswith("GRU layers cannot be pruned")

    out = prune_model(Mlp([]), {"family": "fake"}, x, 0.5)  # only the classifier: must stay whole
    assert out.model is None and out.skipped.startswith("nothing prunable")

    out = prune_model(Mlp([8]), {"family": "cnn"}, x, 0.0)
    assert out.skipped == "prune ratio is 0"


def test_cnn_hook_rewrites_widths_and_rebuilds() -> None:
    from automl.models import build_from_arch

    arch = {"family": "cnn", "in_channels": 3, "input_size": [16, 16], "widths": [16, 32, 64],
            "pools": [True, True, False], "batch_norm": True, "activation": "silu", "dropout": 0.0,
            "init": "kaiming", "num_classes": 5}
    torch.manual_seed(0)
    model = build_from_arch(arch).eval()
    x = torch.randn(4, 3, 16, 16)
    for imp in ("l1", "l2", "taylor"):
        taylor = (x, torch.tensor([0, 1, 2, 3]), nn.CrossEntropyLoss()) if imp == "taylor" else None
        out = prune_model(model, arch, x[:1], 0.5, imp, taylor)
        assert out.arch["widths"] == [8, 16, 32] and out.arch["num_classes"] == 5, imp
        assert out.macs_reduction > 3.0 and out.params_after < out.params_before / 3
        assert out.model(x).shape == (4, 5)
    assert model.features[0].out_channels == 16  # the original model is untouched


def test_token_model_prunes_exports_and_quantizes_with_int64_inputs(token_family: None, tmp_path: Path) -> None:
    from automl.runtime.export import export_checked
    from automl.runtime.ort import make_session as session
    from compress.bench import ort_logits
    from compress.quantize import calibration_reader, int8_method, mac_shares, quantize_static_int8

    torch.manual_seed(0)
    model = TokenCnn(TOKEN_ARCH).eval()
    tokens = torch.randint(0, 50, (96, 12))
    out = prune_model(model, TOKEN_ARCH, tokens[:1], 0.5)
    assert out.skipped is None and out.arch["channels"] == 32 and out.arch["embed"] == 16
    pruned = out.model
    assert pruned(tokens).shape == (96, 4)
    info = export_checked(pruned, tokens[:1], tmp_path / "tok.onnx", {"automl.task": "text"}, tokens)
    assert info["parity_ok"] and info["parity_max_abs_diff"] <= 1e-4
    assert int8_method(mac_shares(pruned, tokens[:1]))[0] == "static"
    reader = calibration_reader(tokens, 64, batch=16)
    quantize_static_int8(info["path"], tmp_path / "tok.int8.onnx", reader, {"automl.variant": "int8"})
    assert reader.batches == 4
    ref = ort_logits(session(info["path"]), tokens)
    got = ort_logits(session(tmp_path / "tok.int8.onnx"), tokens)
    assert got.shape == ref.shape and np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.98


def test_calibration_reader_streams_small_equal_batches_of_the_requested_rows() -> None:
    from compress.quantize import calibration_reader

    x = torch.arange(1000, dtype=torch.int64).reshape(500, 2)
    reader = calibration_reader(x, 70, batch=32, seed=1)
    sizes, rows = [], []
    while (feed := reader.get_next()) is not None:
        sizes.append(len(feed["input"]))
        rows.append(feed["input"])
        assert feed["input"].dtype == np.int64
    assert sizes == [23, 23, 23]  # equal batches (a ragged last one fails the histogram calibrators)
    assert len(np.unique(np.concatenate(rows)[:, 0])) == 69
    reader.rewind()
    assert len(reader.get_next()["input"]) == 23


def test_linear_models_get_dynamic_int8_and_fp16_halves_the_file(tmp_path: Path) -> None:
    from automl.runtime.export import export_checked
    from automl.runtime.ort import make_session as session
    from compress.bench import ort_logits
    from compress.quantize import convert_fp16, int8_method, mac_shares, quantize_dynamic_int8

    torch.manual_seed(0)
    model = Mlp([256, 256], d_in=64, classes=10).eval()
    x = torch.randn(32, 64)
    method, why = int8_method(mac_shares(model, x[:1]))
    assert method == "dynamic" and "Linear" in why
    assert int8_method(mac_shares(Gru(), torch.zeros(1, 5, dtype=torch.long)))[0] == "dynamic"
    fp32 = Path(export_checked(model, x[:1], tmp_path / "m.onnx", {"automl.task": "tabular"}, x)["path"])
    q = quantize_dynamic_int8(fp32, tmp_path / "m.int8.onnx", {"automl.variant": "int8-dynamic"})
    h = convert_fp16(fp32, tmp_path / "m.fp16.onnx", {"automl.variant": "fp16"})
    size = fp32.stat().st_size
    assert q.stat().st_size <= 0.35 * size and h.stat().st_size <= 0.55 * size
    ref = ort_logits(session(fp32), x)
    assert np.abs(ort_logits(session(h), x) - ref).max() < 1e-2
    assert np.corrcoef(ort_logits(session(q), x).ravel(), ref.ravel())[0, 1] > 0.99


# --- the output set is replaced as a whole --------------------------------------------------------

KILL_DURING_QUANTIZE = """
import os, signal, sys
import compress.quantize as q

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # as a user's kill -9 during the INT8 step

q.quantize_static_int8 = q.quantize_dynamic_int8 = die
from compress.pipeline import CompressSettings, run_compress
run_compress(CompressSettings(checkpoint=sys.argv[1], out=sys.argv[2], prune_ratio=0.5, finetune_epochs=0,
                              quantize="int8", calib_samples=32, warmup=1, repeats=2, threads=1))
"""


def _snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    import hashlib

    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).digest())
            for p in folder.iterdir()}


def test_a_killed_compress_leaves_the_previous_set_whole(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from compress.pipeline import CompressSettings, run_compress
    from tests._onnx_helpers import tiny_digits_checkpoint

    best = tiny_digits_checkpoint(tmp_path / "best.pt")
    out = tmp_path / "compressed"
    fast = {"finetune_epochs": 0, "calib_samples": 32, "warmup": 1, "repeats": 2, "threads": 1}
    run_compress(CompressSettings(checkpoint=str(best), out=str(out), prune_ratio=0.5, quantize="int8", **fast))
    first = _snapshot(out)
    assert {"model.onnx", "model.int8.onnx", "model.pruned.onnx", "pruned.pt", "compress_report.json"} <= set(first)

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_QUANTIZE, str(best), str(out)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert _snapshot(out) == first  # not one file of the killed run, not one old file touched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".compressed.")]  # its staging folder

    # A complete run replaces the whole set: no INT8 or pruned file of the first run stays behind.
    res = run_compress(CompressSettings(checkpoint=str(best), out=str(out), prune_ratio=0.0, quantize="none",
                                        **fast))
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "best.onnx", "compress_report.json", "model.onnx"]
    report = json.loads((out / "compress_report.json").read_text())
    assert [v["path"] for v in report["variants"]] == [str(out.resolve() / "model.onnx")] == [res.recommended]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".compressed.")]  # the killed run's is swept


def test_staged_set_keeps_foreign_files_and_drops_on_error(tmp_path: Path) -> None:
    from automl.artifacts import StagedDir

    final = tmp_path / "out"
    final.mkdir()
    (final / "notes.txt").write_text("mine")
    (final / "model.onnx").write_text("old")
    (final / "model.int8.onnx").write_text("old")

    def owned(name: str) -> bool:
        return name.startswith("model.")

    with pytest.raises(RuntimeError), StagedDir(final, owned) as staged:
        (staged.work / "model.onnx").write_text("new")
        raise RuntimeError("a stage failed")
    assert not staged.work.exists()
    assert {p.name: p.read_text() for p in final.iterdir()} == {"notes.txt": "mine", "model.onnx": "old",
                                                                "model.int8.onnx": "old"}
    with StagedDir(final, owned) as staged:
        (staged.work / "model.onnx").write_text("new")
        (staged.work / "report.json").write_text("{}")
        staged.commit(last="report.json")
    assert {p.name: p.read_text() for p in final.iterdir()} == {"notes.txt": "mine", "model.onnx": "new",
                                                                "report.json": "{}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_mac_shares_come_from_the_per_layer_op_count() -> None:
    """conv 1->8, 3x3, padding 1 on 8x8: 8 x 64 x 9 = 4,608 MACs; linear 8->4: 32; GRU: counted apart."""
    from compress.quantize import mac_shares

    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 4, bias=False))
    shares = mac_shares(model, torch.zeros(1, 1, 8, 8))
    assert shares["conv"] == pytest.approx(4608 / 4640) and shares["linear"] == pytest.approx(32 / 4640)
    assert shares["recurrent"] == 0
    gru = mac_shares(Gru(), torch.zeros(1, 5, dtype=torch.long))
    assert gru["recurrent"] > 0.9 and sum(gru.values()) == pytest.approx(1.0)
