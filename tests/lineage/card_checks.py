"""Reading a MODEL_CARD.md back: its front matter and its tables, to compare with compress_report.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def front(text: str) -> dict[str, Any]:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def table(text: str, header_start: str) -> list[list[str]]:
    """The body rows of the first Markdown table whose header row starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def check_card_equals_report(card: Path, report: dict[str, Any]) -> None:
    """Every figure of the card is the report's: the model-index value, the per-class table, the
    compression table; the section headings of the Hugging Face layout are there."""
    text = card.read_text()
    fm = front(text)
    best = next(v for v in report["variants"] if v["name"] == report["recommended_variant"])
    assert fm["library_name"] == "onnx" and report["task"] in fm["tags"] and fm["metrics"] == [report["metric"]]
    result = fm["model-index"][0]["results"][0]
    assert result["metrics"][0]["type"] == report["metric"]
    assert result["metrics"][0]["value"] == best["metric_value"]  # exactly: YAML writes the float's repr
    for heading in ("## Intended use and limits", "## Training data and split", "## Training procedure",
                    "## Evaluation", "## Compression", "## How to reproduce"):
        assert heading in text, heading
    rows = table(text, "| variant |")
    assert [r[0] for r in rows] == [v["name"] for v in report["variants"]]
    for row, v in zip(rows, report["variants"], strict=True):
        assert row[2] == str(v["size_bytes"]) and row[3] == f"{v['metric_value']:.4f}"
        assert row[5] == f"{v['latency_ms']['b1']['p50']:.4f}"
    assert f"**{best['metric_value']:.4f}**" in text
    per_class = report["evaluation"].get("per_class")
    if per_class:
        got = table(text, "| class |")
        want = [[str(r["class"]), f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", str(r["support"])]
                for r in per_class]
        assert got == want
    assert f"automl compress {report['settings']['checkpoint']}" in text
