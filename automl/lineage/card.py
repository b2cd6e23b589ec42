"""MODEL_CARD.md: a Hugging Face model card of a compressed model, built from compress_report.json alone.

The YAML front matter holds ``library_name``, ``tags``, ``pipeline_tag``, ``metrics`` and a
``model-index`` whose test figure is the recommended variant's; the sections are intended use and
limits, training data and split, training procedure (search space, trials, chosen parameters),
evaluation (per-class figures), compression (every variant, the hardware it was timed on), how to
reproduce (exact commands) and lineage. Every figure is copied from the report, never recomputed,
so the card and compress_report.json always agree. ``compress`` writes the card beside the
recommended file; ``automl card MODEL`` writes it again.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.exceptions import ArtifactError, ConfigError

if TYPE_CHECKING:
    from automl.tasks import Task

CARD_NAME = "MODEL_CARD.md"
REPORT_NAME = "compress_report.json"
MAX_REPORT_BYTES = 16 << 20  # compress_report.json read for a card (bytes)
MAX_ROWS = 200  # rows of a card table (classes, parameters); the rest are counted


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, bool) or v is None:
        return "—" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        lines.append(f"\n({len(rows) - MAX_ROWS} more rows in compress_report.json)")
    return "\n".join(lines)


def find_report(model: str | Path) -> Path:
    """compress_report.json for ``model``: the report itself, the folder holding it, or a file beside it."""
    path = Path(model)
    cand = path if path.name == REPORT_NAME else (path / REPORT_NAME if path.is_dir() else path.parent / REPORT_NAME)
    if not path.exists():
        raise ArtifactError(f"{path}: not found")
    if not cand.is_file():
        raise ArtifactError(f"{path}: no {REPORT_NAME} beside it (run 'automl compress' first)")
    return cand


def load_report(path: str | Path) -> dict[str, Any]:
    """A compress_report.json, bounded and checked enough to build a card from."""
    path = Path(path)
    if path.stat().st_size > MAX_REPORT_BYTES:
        raise ArtifactError(f"{path}: larger than {MAX_REPORT_BYTES} bytes")
    try:
        report = json.loads(path.read_text(errors="replace"))
    except (ValueError, RecursionError):
        raise ArtifactError(f"{path}: not valid JSON") from None
    if not isinstance(report, dict) or not isinstance(report.get("variants"), list) or "recommended" not in report:
        raise ArtifactError(f"{path}: not a compress report")
    report["variants"] = [v for v in report["variants"] if isinstance(v, dict)]
    for key in ("lineage", "evaluation", "settings", "hardware", "baseline"):
        if not isinstance(report.get(key, {}), dict):
            report[key] = {}
    return report


def _recommended(report: dict[str, Any]) -> dict[str, Any]:
    name = report.get("recommended_variant")
    return next((v for v in report["variants"] if isinstance(v, dict) and v.get("name") == name),
                report["variants"][0] if report["variants"] else {})


def _task(report: dict[str, Any]) -> Task | None:
    """The report's task, or None when no registered task has its name (a report from elsewhere)."""
    from automl.tasks import get_task

    try:
        return get_task(str(report.get("task")))
    except ConfigError:
        return None


def _pipeline(report: dict[str, Any], data: dict[str, Any]) -> str:
    """The Hugging Face pipeline tag: the task says it (``Task.card_pipeline_tag``); else the task's name."""
    task = _task(report)
    return task.card_pipeline_tag(data) if task is not None else str(report.get("task"))


def front_matter(report: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML front matter (Hugging Face model-card metadata)."""
    lin = report.get("lineage") or {}
    data, study = lin.get("data") or {}, lin.get("study") or {}
    best = _recommended(report)
    metric = str(report.get("metric"))
    pipeline = _pipeline(report, data)
    source = str(data.get("source") or "unknown")
    task = _task(report)
    tags = ["automl", "optuna", "onnx", "onnxruntime", str(report.get("task")), *(task.card_tags if task else ()),
            str(best.get("kind"))]
    if best.get("base") == "pruned":
        tags.append("pruned")
    return {
        "library_name": "onnx",
        "pipeline_tag": pipeline,
        "tags": list(dict.fromkeys(tags)),
        "metrics": [metric],
        "model-index": [{
            "name": f"{study.get('name') or 'automl'}-{best.get('name')}",
            "results": [{
                "task": {"type": pipeline, "name": pipeline.replace("-", " ").title()},
                "dataset": {"name": Path(source).name or source, "type": source, "split": "test"},
                "metrics": [{"type": metric, "value": best.get("metric_value"),
                             "name": f"test {metric} ({best.get('name')}, ONNX Runtime)"}],
            }],
        }],
    }


def _search_lines(report: dict[str, Any]) -> list[str]:
    lin = report.get("lineage") or {}
    study = lin.get("study") or {}
    search = (lin.get("search") or {}).get("settings") or {}
    out = [f"An Optuna study, **{_fmt(study.get('name'))}** (storage `{_fmt(study.get('storage'))}`), chose trial "
           f"**{_fmt(study.get('trial'))}** (validation {_fmt(search.get('metric') or report.get('metric'))} "
           f"{_fmt(study.get('value'))})."]
    if not search:
        return [*out, "", "The search settings were not recorded in the checkpoint (made before lineage was recorded)."]
    counts = search.get("trials") or {}
    out += ["", _table(["setting", "value"], [
        ["sampler", search.get("sampler")], ["trial pruner", search.get("pruner")],
        ["max epochs a trial", search.get("epochs")], ["seed", search.get("seed")],
        ["cross-validation folds", search.get("cv") or 0], ["objectives", ", ".join(search.get("objectives") or [])
                                                           or report.get("metric")],
        ["trials (complete / pruned / failed / total)",
         f"{counts.get('complete')} / {counts.get('pruned')} / {counts.get('failed')} / {counts.get('total')}"],
        ["search space file", search.get("space_source")],
    ])]
    params = ((search.get("space") or {}).get("params") or {}) if isinstance(search.get("space"), dict) else {}
    if params:
        rows = []
        for name, p in params.items():
            p = p if isinstance(p, dict) else {"value": p}
            if "choices" in p:
                rng = p["choices"]
            elif "low" in p:
                rng = f"{p.get('low')} … {p.get('high')}" + (" (log)" if p.get("log") else "")
            else:
                rng = p.get("value")
            rows.append([name, p.get("type", "fixed"), json.dumps(rng) if isinstance(rng, list) else rng])
        out += ["", "Search space:", "", _table(["parameter", "type", "range or choices"], rows)]
    chosen = search.get("params") or {}
    if chosen:
        out += ["", "Chosen parameters:", "", _table(["parameter", "value"], [
            [k, f"{v:.6g}" if isinstance(v, float) else v] for k, v in chosen.items()])]
    return out


def _evaluation_lines(report: dict[str, Any]) -> list[str]:
    ev = report.get("evaluation") or {}
    best = _recommended(report)
    metric = report.get("metric")
    base = report.get("baseline") or {}
    out = [f"Test {metric} of `{Path(str(report.get('recommended'))).name}` ({best.get('name')}), measured with "
           f"ONNX Runtime on the test split ({_fmt(ev.get('rows'))} rows): **{_fmt(best.get('metric_value'))}** "
           f"(the PyTorch model before compression: {_fmt(base.get('metric_value'))})."]
    rows = ev.get("per_class") or []
    if rows:
        out += ["", "Per class (precision, recall and F1 from `sklearn.metrics`):", "",
                _table(["class", "precision", "recall", "F1", "support"],
                       [[r.get("class"), r.get("precision"), r.get("recall"), r.get("f1"), r.get("support")]
                        for r in rows])]
    else:
        out += ["", "No per-class figures: the model is a regression."]
    return out


def _compression_lines(report: dict[str, Any]) -> list[str]:
    metric = report.get("metric")
    rows = []
    for v in report["variants"]:
        lat = v.get("latency_ms") if isinstance(v.get("latency_ms"), dict) else {}
        rows.append([v.get("name"), v.get("file"), v.get("size_bytes"), v.get("metric_value"), v.get("drop"),
                     (lat.get("b1") or {}).get("p50"), (lat.get("b64") or {}).get("p50"),
                     str(v.get("verdict") or "") + (" (recommended)" if v.get("recommended") else "")])
    hw = report.get("hardware") or {}
    gpu = hw.get("gpu") or "none"
    return [_table(["variant", "file", "bytes", f"test {metric}", "drop (points)", "p50 batch 1 (ms)",
                    "p50 batch 64 (ms)", "verdict"], rows), "",
            f"Timed on: {_fmt(hw.get('cpu'))}, {_fmt(hw.get('cpu_count'))} CPU cores, GPU {_fmt(gpu)}, provider "
            f"{_fmt(report.get('provider'))}, ONNX Runtime {_fmt(hw.get('onnxruntime'))}, "
            f"PyTorch {_fmt(hw.get('torch'))}."]


def _reproduce_lines(report: dict[str, Any]) -> list[str]:
    lin = report.get("lineage") or {}
    data, study = lin.get("data") or {}, lin.get("study") or {}
    search = (lin.get("search") or {}).get("settings") or {}
    q = shlex.quote
    cmd = ["automl search", f"--task {q(str(report.get('task')))}", f"--data {q(str(data.get('source')))}"]
    if data.get("target"):
        cmd.append(f"--target {q(str(data['target']))}")
    counts = search.get("trials") or {}
    for flag, value in (("--trials", counts.get("total")), ("--epochs", search.get("epochs")),
                        ("--sampler", search.get("sampler")), ("--pruner", search.get("pruner")),
                        ("--seed", search.get("seed")), ("--study", study.get("name"))):
        if value is not None:
            cmd.append(f"{flag} {q(str(value))}")
    space = search.get("space_source")
    if space and not str(space).endswith(f"search_spaces/{report.get('task')}.yaml"):
        cmd.append(f"--space {q(str(space))}")
    s = report.get("settings") or {}
    comp = ["automl compress", q(str(s.get("checkpoint")))]
    for key in ("prune_ratio", "importance", "finetune_epochs", "quantize", "calib_samples", "calibration",
                "max_drop", "seed"):
        if key in s:
            comp.append(f"--{key.replace('_', '-')} {q(str(s[key]))}")
    if s.get("distill"):
        comp += ["--distill", f"--distill-temperature {s.get('distill_temperature')}",
                 f"--distill-weight {s.get('distill_weight')}"]
    if s.get("fallback") is False:
        comp.append("--no-fallback")
    return ["```bash", " ".join(cmd), " ".join(comp), f"automl lineage {q(str(report.get('recommended_copy')))}",
            "```", "", "The search is random (sampler, weight initialisation): the same commands find a model of "
            "similar quality, not the same bytes; `automl lineage` checks the files this card describes."]


def _lineage_lines(report: dict[str, Any]) -> list[str]:
    lin = report.get("lineage") or {}
    versions = lin.get("versions") or {}
    files = lin.get("files") or {}
    rows = [[p.get("name"), p.get("sha256")] for p in lin.get("parents") or [] if isinstance(p, dict)]
    rows += [[n, sha] for n, sha in files.items()]
    return [_table(["file", "sha256"], rows), "",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + "."]


def _article(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"


def build_card(report: dict[str, Any]) -> str:
    """The text of MODEL_CARD.md for a compress report (see the module docstring)."""
    import yaml

    lin = report.get("lineage") or {}
    data = lin.get("data") or {}
    best = _recommended(report)
    classes = data.get("classes") or []
    sizes = data.get("sizes") or {}
    name = front_matter(report)["model-index"][0]["name"]
    what = (f"{len(classes) if not data.get('num_classes') else data['num_classes']} classes"
            if classes else "a regression target")
    notes = [f"- {n}" for n in report.get("notes") or []]
    parts = [
        "---", yaml.safe_dump(front_matter(report), sort_keys=False).strip(), "---", "",
        f"# {name}", "",
        f"{_article(str(report.get('task')))} {report.get('task')} model ({what}) found by an automl (Optuna) "
        f"search and compressed by `automl compress`. The recommended file is "
        f"`{Path(str(report.get('recommended'))).name}` (variant {best.get('name')}, {best.get('size_bytes')} "
        "bytes), also copied to `best.onnx`.", "",
        "## Intended use and limits", "",
        f"Predicts {what} for inputs like those of `{data.get('source')}`: serve it with `automl serve best.onnx` "
        f"or run `automl predict best.onnx INPUTS`; the file carries its own preprocessing. Its figures were "
        f"measured on {sizes.get('test', '?')} held-out rows of the same source only: on data from another "
        f"source, another sensor or another population they do not hold. It was not checked for fairness, "
        f"robustness to adversarial inputs or calibration of its probabilities.",
        *(["", "Notes from compression:", "", *notes] if notes else []), "",
        "## Training data and split", "",
        _table(["", ""], [["source", data.get("source")], ["split seed", data.get("seed")],
                          ["validation / test fraction", f"{data.get('val_fraction')} / {data.get('test_fraction')}"],
                          ["separate test file", data.get("test_source")], ["target column", data.get("target")],
                          ["rows (train / validation / test)",
                           f"{sizes.get('train')} / {sizes.get('val')} / {sizes.get('test')}"],
                          ["rows SHA-256", data.get("rows_sha256")],
                          ["classes", ", ".join(map(str, classes[:50])) + (" …" if len(classes) > 50 else "")]]),
        "", "## Training procedure", "", *_search_lines(report),
        "", "## Evaluation", "", *_evaluation_lines(report),
        "", "## Compression", "", *_compression_lines(report),
        "", "## How to reproduce", "", *_reproduce_lines(report),
        "", "## Lineage", "", *_lineage_lines(report), "",
    ]
    return "\n".join(parts)


def write_card(model: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Write MODEL_CARD.md for ``model`` (a file of a compress output folder, the folder, or its
    compress_report.json) beside the report, or at ``out``; returns ``{"path", "report"}``."""
    from automl.artifacts import atomic_write_bytes

    report_path = find_report(model)
    try:
        text = build_card(load_report(report_path))
    except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:  # a report altered by hand
        raise ArtifactError(f"{report_path}: not a compress report this automl can read "
                            f"({exc.__class__.__name__})") from None
    dest = Path(out) if out else report_path.parent / CARD_NAME
    try:
        atomic_write_bytes(dest, text.encode())
    except OSError as exc:
        raise ArtifactError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return {"path": str(dest), "report": str(report_path)}
