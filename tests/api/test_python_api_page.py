"""docs/python-api.md runs: its ```python blocks are executed in order, in one namespace, in a fresh
folder, and each block's output must equal the ```text block after it where the page's figures are
stable (class lists, shapes, names), checked line by line on the lines it names."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


def blocks() -> list[tuple[str, str]]:
    """(python code, the text block that follows it) in page order."""
    text = PAGE.read_text(encoding="utf-8")
    found = re.findall(r"```python\n(.*?)```\n\n```text\n(.*?)```", text, flags=re.S)
    assert len(found) >= 6, "the page lost its examples"
    return found


def test_every_example_of_the_python_api_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from automl.models import unregister_model

    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    outputs = []
    try:
        for code, shown in blocks():
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(code, str(PAGE), "exec"), scope)  # noqa: S102 (the page's own examples)
            outputs.append((buf.getvalue(), shown))
    finally:
        unregister_model("logreg")
    got = dict(zip(["search", "error", "result", "predict", "compress", "progress", "family"], outputs, strict=True))
    # figures depend on the machine's float rounding; names, classes and shapes do not
    assert got["error"][0] == got["error"][1]
    assert got["search"][0].split()[:5] == ["name", "kind", "val_accuracy", "test_accuracy", "0"]
    assert "reference" in got["search"][0] and "hgb" in got["search"][0]
    assert got["result"][0].splitlines()[1].startswith("accuracy maximize ")
    assert got["predict"][0].splitlines()[0] == "['yes' 'no' 'yes']" == got["predict"][1].splitlines()[0]
    assert "['no', 'yes']" in got["predict"][0]
    assert got["compress"][0].splitlines()[-2:] == ["onnx ['yes' 'no' 'yes']", "best.onnx"]
    assert got["progress"][0] == got["progress"][1]
    assert "logreg" in got["family"][0] and got["family"][0].splitlines()[-1].startswith("Linear [")
