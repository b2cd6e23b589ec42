"""The metadata an automl ONNX file carries, so serve and predict need nothing but the file.

``metadata_props`` keys (all strings):

- ``automl.format_version``: "1"
- ``automl.task``: the task name (``image`` …)
- ``automl.metric``: the metric of the task (``accuracy`` …)
- ``automl.classes``: JSON list of class names (empty for regression)
- ``automl.preprocess``: JSON of the preprocessing spec (the ``preprocess`` dict of best.pt:
  for images ``kind``, ``channels``, ``size``, ``mean``, ``std``, ``input_shape``, ``num_classes``; a
  binary classifier searched for f1, balanced_accuracy or accuracy also ``decision_threshold``, the
  positive-class probability from which predict and serve answer the positive class)
- ``automl.variant``: fp32 | pruned | int8 | int8-dynamic | fp16, and pruned-int8 | pruned-int8-dynamic |
  pruned-fp16 for the quantized files of a pruned model
- ``automl.source``: the checkpoint it was made from
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from automl.exceptions import ArtifactError

PREFIX = "automl."
META_VERSION = "1"
MAX_VALUE_CHARS = 64 * 1024 * 1024  # one metadata value (a 2-million-word vocabulary fits)
MAX_CLASSES = 1_000_000
MAX_CLASS_CHARS = 1000  # characters of one class name

if TYPE_CHECKING:
    import onnx

    from automl.artifacts import Checkpoint
    from automl.data import PreprocessSpec

#: a class name as a file may store it
ClassName = str | int | float


class OnnxMeta(TypedDict):
    """The automl metadata of an ONNX file, parsed and checked (``parse_metadata``)."""

    format_version: str
    task: str
    metric: str
    classes: list[ClassName]
    preprocess: PreprocessSpec  # the task's preprocessing spec (JSON; its keys are the task's)
    variant: str
    source: str


def check_classes(classes: object, where: str) -> None:
    """ArtifactError naming the broken limit unless ``classes`` is a list of at most ``MAX_CLASSES``
    names (strings or numbers) of at most ``MAX_CLASS_CHARS`` characters each."""
    if not isinstance(classes, list):
        raise ArtifactError(f"{where} must be a list of class names, got a {type(classes).__name__}")
    if len(classes) > MAX_CLASSES:
        raise ArtifactError(f"{where} lists {len(classes)} classes (the limit is {MAX_CLASSES})")
    for i, c in enumerate(classes):
        if isinstance(c, bool) or not isinstance(c, (str, int, float)):
            raise ArtifactError(f"{where}[{i}] must be a string or a number, got a {type(c).__name__}")
        if len(str(c)) > MAX_CLASS_CHARS:
            raise ArtifactError(f"{where}[{i}] is a class name of {len(str(c))} characters "
                                f"(the limit is {MAX_CLASS_CHARS})")


def metadata_from_checkpoint(ckpt: Checkpoint, variant: str = "fp32", source: str = "") -> dict[str, str]:
    """The string map to store in ``metadata_props`` for a model made from ``ckpt``."""
    pre = dict(ckpt.get("preprocess") or {})
    return {
        "automl.format_version": META_VERSION,
        "automl.task": str(ckpt.get("task", "")),
        "automl.metric": str((ckpt.get("metrics") or {}).get("metric", "")),
        "automl.classes": json.dumps(list(pre.get("classes", []))),
        "automl.preprocess": json.dumps(pre),
        "automl.variant": variant,
        "automl.source": str(source),
    }


def set_metadata(model_proto: onnx.ModelProto, meta: dict[str, str]) -> None:
    """Replace the ``automl.*`` entries of an onnx ModelProto's ``metadata_props``."""
    keep = [p for p in model_proto.metadata_props if not p.key.startswith(PREFIX)]
    del model_proto.metadata_props[:]
    for p in keep:
        model_proto.metadata_props.add(key=p.key, value=p.value)
    for k, v in meta.items():
        model_proto.metadata_props.add(key=k, value=str(v))


def parse_metadata(props: dict[str, str], source: str = "model") -> OnnxMeta:
    """``{"task", "metric", "classes", "preprocess", "variant"}`` from a metadata map; an ArtifactError
    when the file was not made by automl."""
    if "automl.task" not in props or "automl.preprocess" not in props:
        raise ArtifactError(f"{source}: ONNX file has no automl metadata (export it with 'automl compress')")

    def bad(key: str, what: str) -> ArtifactError:
        return ArtifactError(f"{source}: bad automl metadata: {key} {what}")

    for key, value in props.items():
        if key.startswith(PREFIX) and len(value) > MAX_VALUE_CHARS:
            raise bad(key, f"is {len(value)} characters long (the limit is {MAX_VALUE_CHARS})")
    version = props.get("automl.format_version", META_VERSION)
    if version != META_VERSION:
        raise bad("automl.format_version", f"is {version[:20]!r}; this automl reads version {META_VERSION}")
    parsed: dict[str, object] = {}
    for key in ("classes", "preprocess"):
        try:
            parsed[key] = json.loads(props.get(f"automl.{key}", "[]"))
        except (ValueError, RecursionError) as exc:  # ValueError: also an int of over 4,300 digits
            why = "nested too deeply" if isinstance(exc, RecursionError) else getattr(exc, "msg", str(exc)[:80])
            raise bad(f"automl.{key}", f"is not valid JSON ({why})") from None
    classes, pre = parsed["classes"], parsed["preprocess"]
    check_classes(classes, f"{source}: bad automl metadata: automl.classes")
    if not isinstance(pre, dict) or not isinstance(pre.get("kind"), str):
        raise bad("automl.preprocess", "must be an object with a \"kind\"")
    task = props["automl.task"]
    if not task or len(task) > 64:
        raise bad("automl.task", "must be a task name of 1 to 64 characters")
    return {"format_version": version, "task": task, "metric": props.get("automl.metric", "")[:200],
            "classes": classes, "preprocess": pre, "variant": props.get("automl.variant", "")[:200],
            "source": props.get("automl.source", "")[:4096]}


def read_metadata(path: str | Path) -> OnnxMeta:
    """Read the automl metadata of an ONNX file without loading its weights."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: ONNX file not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends: a corrupt or foreign file
        raise ArtifactError(f"{path}: not a readable ONNX file ({exc.__class__.__name__})") from None
    return parse_metadata({p.key: p.value for p in model.metadata_props}, str(path))
