"""The compress-stage seam (issue 25): a stage registered in this one file, and nowhere else, runs in
``automl compress`` (its variant is measured, gated and listed in the table and the JSON report) and
in ``compress --search`` (its choice joins the searched space and its variant is the candidate)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from compress.context import CompressContext
from compress.stages import Stage, list_stages, register_stage, unregister_stage
from compress.verdict import Variant

FAST = ["--warmup", "1", "--repeats", "5", "--threads", "1", "--calib-samples", "64", "--finetune-epochs", "1"]


class CopyStage(Stage):
    """A toy stage: a byte-for-byte copy of the FP32 ONNX file, as its own variant ``fp32-copy``."""

    def applies(self, ctx: CompressContext) -> bool:
        return not ctx.chain or bool(ctx.params.get("toy_copy"))

    def params(self, ctx: CompressContext) -> dict[str, tuple[Any, ...]]:
        return {"toy_copy": (True,)}  # one choice: recorded in the space, not sampled

    def run(self, ctx: CompressContext) -> list[Variant]:
        src = Path(ctx.variants[0].path)
        dst = ctx.work / "model.copy.onnx"
        shutil.copyfile(src, dst)
        return [Variant("fp32-copy", "fp32-copy", ctx.variants[0].base, str(dst))]


@pytest.fixture
def toy_stage() -> Iterator[str]:
    register_stage("toy-copy", order=90)(CopyStage)
    try:
        yield "toy-copy"
    finally:
        unregister_stage("toy-copy")


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests._onnx_helpers import tiny_digits_checkpoint

    return tiny_digits_checkpoint(tmp_path_factory.mktemp("toy_stage") / "best.pt")


def _invoke(*args: str) -> Any:
    import cli

    return CliRunner().invoke(cli.app, list(args))


def test_the_toy_stage_runs_last_and_goes_away(toy_stage: str) -> None:
    names = list_stages()
    assert names[-1] == toy_stage and names.index("export") < names.index("quantize") < names.index(toy_stage)
    unregister_stage(toy_stage)
    assert toy_stage not in list_stages()


def test_a_registered_stage_appears_in_compress(toy_stage: str, tiny_pt: Path, tmp_path: Path) -> None:
    res = _invoke("compress", str(tiny_pt), "--out-dir", str(tmp_path / "c"), "--prune-ratio", "0",
                  "--quantize", "int8", "--json", *FAST)
    assert res.exit_code == 0, (res.stderr, res.exception)
    rep = json.loads(res.stdout)
    rows = {v["name"]: v for v in rep["variants"]}
    assert list(rows) == ["fp32", "int8", "fp32-copy"]  # after quantize: the copy is not quantized
    copy, fp32 = rows["fp32-copy"], rows["fp32"]
    assert Path(copy["path"]) == tmp_path / "c" / "model.copy.onnx" and Path(copy["path"]).is_file()
    # measured like every variant: the same file gives the same accuracy and size as FP32 ONNX
    assert copy["metric_value"] == pytest.approx(fp32["metric_value"]) and copy["size_bytes"] == fp32["size_bytes"]
    assert copy["latency_ms"]["b1"]["p50"] > 0 and copy["verdict"] in ("kept", "not faster")

    table = _invoke("compress", str(tiny_pt), "--out-dir", str(tmp_path / "t"), "--prune-ratio", "0",
                    "--quantize", "none", *FAST)
    assert table.exit_code == 0, (table.stderr, table.exception)
    assert "fp32-copy" in table.stdout and "model.copy.onnx" in table.stdout


def test_a_registered_stage_appears_in_compress_search(toy_stage: str, tiny_pt: Path, tmp_path: Path) -> None:
    out = tmp_path / "cs"
    res = _invoke("compress", str(tiny_pt), "--search", "--trials", "1", "--out-dir", str(out), "--json", *FAST)
    assert res.exit_code == 0, (res.stderr, res.exception)
    rep = json.loads(res.stdout)
    assert rep["space"]["toy_copy"] == [True] and {"prune_ratio", "quantize"} <= set(rep["space"])
    (row,) = rep["front"]  # one trial: its candidate is the toy stage's variant (the chain's last)
    assert row["recipe"]["toy_copy"] is True and {"prune_ratio", "quantize"} <= set(row["recipe"])
    assert row["variant"] == "fp32-copy" and row["path"].endswith(".copy.onnx") and Path(row["path"]).is_file()
    assert (out / "trials" / "trial-0" / "model.copy.onnx").is_file()
