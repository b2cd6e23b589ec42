"""MODEL_CARD.md for a tabular and a text model (the image one is checked in test_lineage.py on its
compress run): tiny searches, one compress each; every figure of the card equals compress_report.json's,
and ``automl card`` writes the same card again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from tests.lineage.card_checks import check_card_equals_report

QUICK = ["--prune-ratio", "0", "--quantize", "none", "--warmup", "1", "--repeats", "2", "--threads", "1"]


def _search_and_compress(tmp_path: Path, **kw: object) -> Path:
    from automl.study import SearchSettings, run_search

    result = run_search(SearchSettings(trials=1, epochs=1, pruner="none", out=str(tmp_path / "runs"), device="cpu",
                                       seed=0, **kw))
    res = CliRunner().invoke(cli.app, ["compress", result.best_pt, "--json", *QUICK])
    assert res.exit_code == 0, res.output
    return Path(result.best_pt).parent / "compressed"


@pytest.mark.parametrize("task", ["tabular", "text"])
def test_model_card_figures_equal_the_report(task: str, tmp_path: Path) -> None:
    if task == "tabular":
        comp = _search_and_compress(tmp_path, task="tabular", data="wine")
    else:
        rows = ["text\tlabel"] + [f"good fine film {i}\tpos" if i % 2 else f"bad dull film {i}\tneg"
                                  for i in range(80)]
        (tmp_path / "t.tsv").write_text("\n".join(rows) + "\n")
        comp = _search_and_compress(tmp_path, task="text", data=str(tmp_path / "t.tsv"))
    report = json.loads((comp / "compress_report.json").read_text())
    card = comp / "MODEL_CARD.md"
    check_card_equals_report(card, report)
    assert len(report["evaluation"]["per_class"]) == len(report["lineage"]["data"]["classes"]) >= 2
    written = card.read_text()
    card.unlink()
    res = CliRunner().invoke(cli.app, ["card", str(comp / "best.onnx"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["path"] == str(card) and card.read_text() == written


def test_card_of_a_folder_without_a_report_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    res = CliRunner().invoke(cli.app, ["card", str(tmp_path / "model.onnx")])
    assert res.exit_code == 1 and "no compress_report.json beside it" in res.stderr
    assert "Traceback" not in res.output


def test_card_of_an_old_or_altered_report_is_written_or_one_line(tmp_path: Path) -> None:
    report = tmp_path / "compress_report.json"
    report.write_text(json.dumps({"task": "image", "metric": "accuracy", "recommended": "m.onnx", "lineage": "junk",
                                  "variants": [1, {"name": "fp32", "metric_value": 0.5}], "evaluation": []}))
    res = CliRunner().invoke(cli.app, ["card", str(report)])
    assert res.exit_code == 0, res.output  # a report without lineage (an older automl): a card with what it has
    assert "| fp32 |" in (tmp_path / "MODEL_CARD.md").read_text()
    report.write_text(json.dumps({"recommended": "m.onnx", "variants": [{"name": "a", "latency_ms": {"b1": 3}}]}))
    res = CliRunner().invoke(cli.app, ["card", str(report)])
    assert res.exit_code == 1 and "not a compress report this automl can read" in res.stderr
    assert "Traceback" not in res.output
