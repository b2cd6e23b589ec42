"""``automl.compress`` and ``Result.export``: the Python form of ``automl compress``, silent unless given a
``progress`` callable.

``compress`` (the package beside ``automl``) sits above the library: it is imported inside these
functions only, and ``automl.api`` is the one part of ``automl`` that may do so (tests/test_imports.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.api._quiet import CompressEvents, Progress, check_progress, quiet
from automl.exceptions import ArtifactError, ConfigError

if TYPE_CHECKING:
    import pandas as pd

EXPORT_CHECK_ROWS = 64  # test rows the exported file is compared on with PyTorch
EXPORT_TOL = 1e-4  # largest |ONNX - PyTorch| output difference accepted (as compress's parity check)


def compress(best_pt: str | os.PathLike[str], *, progress: Progress | None = None, **options: Any) -> pd.DataFrame:
    """Prune, quantize and export ``best_pt`` to ONNX and measure every variant, as ``automl compress``.

    ``options`` are ``automl compress``'s (``out``, ``prune_ratio``, ``quantize``, ``finetune_epochs``,
    ``max_drop``, ``repeats`` …: ``compress.context.CompressSettings``); an unknown one is a
    ConfigError. Returns the variants table, one row per variant (``name``, ``path``, ``verdict`` and
    its figures), best first as the report lists them; ``attrs`` holds ``recommended`` (the file to
    ship), ``report_path`` and the whole ``report``.

    >>> table = automl.compress("runs/tabular-frame-0123abcd4567/best.pt", quantize="none")  # doctest: +SKIP
    >>> table.attrs["recommended"]                                                          # doctest: +SKIP
    '.../compressed/model.fp32.onnx'
    """
    import dataclasses

    import pandas as pd

    from compress.pipeline import CompressSettings, run_compress

    check_progress(progress)
    known = sorted(f.name for f in dataclasses.fields(CompressSettings) if f.name != "checkpoint")
    unknown = [k for k in options if k not in known]
    if unknown:
        raise ConfigError(f"compress() got an unknown keyword {unknown[0]!r}; known: {', '.join(known)}")
    if "out" in options and options["out"] is not None:
        options["out"] = os.fspath(options["out"])
    settings = CompressSettings(checkpoint=os.fspath(best_pt), **options)
    with quiet() as warned:
        result = run_compress(settings, observer=CompressEvents(progress) if progress is not None else None)
    report = result.report
    table = pd.DataFrame(report.get("variants", []))
    table.attrs.update(recommended=result.recommended, report_path=result.report_path, report=report,
                       warnings=warned)
    return table


def export(best_pt: str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> Path:
    """``best_pt`` as one FP32 ONNX file with automl metadata (default ``best.onnx`` beside it), written by
    automl's one exporter and compared with PyTorch on test rows; ArtifactError when they differ."""
    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.data.bundle import DataConfig
    from automl.runtime.export import export_checked
    from automl.runtime.onnx_meta import metadata_from_checkpoint
    from automl.tasks import get_task

    src = Path(best_pt)
    dest = Path(path) if path is not None else src.with_name("best.onnx")
    with quiet():
        ckpt = load_checkpoint(src)
        data = ckpt.get("data")
        if not isinstance(data, dict) or "source" not in data:
            raise ArtifactError(f"{src}: checkpoint records no training data ('data'): nothing to check the export on")
        task = get_task(str(ckpt["task"]))
        bundle = task.load_data(DataConfig(**data))
        model = model_from_checkpoint(ckpt, str(src))
        x_check = bundle.x_test[:EXPORT_CHECK_ROWS] if len(bundle.y_test) else bundle.x_val[:EXPORT_CHECK_ROWS]
        info = export_checked(model, task.example_input(bundle.meta, 1), dest, metadata_from_checkpoint(ckpt),
                              x_check.cpu(), EXPORT_TOL)
    if not info["parity_ok"]:
        raise ArtifactError(f"{dest}: the ONNX outputs differ from PyTorch's by {info['parity_max_abs_diff']:.3g} "
                            f"(more than {EXPORT_TOL})")
    return dest
