"""An automl ONNX file ready for inference, shared by ``automl predict`` and ``automl serve``: the ONNX
Runtime session (``automl.runtime.ort``), the file's metadata, the input spec that checks every sample, and
turning model outputs into predictions.

Input checking is strict because every input comes from outside: a bad input is an ``InputError``
(a ``DataError`` with a short ``code``) that says what was wrong, never a crash. The raw inputs of each
kind (images, records, texts) are read and encoded by the task that owns the kind (``automl.tasks``).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.exceptions import ArtifactError, AutomlError, ConfigError, DataError, InputError

if TYPE_CHECKING:
    from automl.data.bundle import InputLimits
    from automl.tasks import Task

#: ONNX Runtime input type -> NumPy dtype. The model's input dtype comes from here, never assumed.
ORT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}
DEFAULT_TOP_K = 5
MAX_TOP_K = 100_000  # classes listed per sample; more than any model has, checked before int()


def task_of(spec: dict[str, Any]) -> Task:
    """The task that owns the spec's ``kind`` of raw input."""
    from automl.tasks import get_task, list_tasks

    kind = str(spec.get("kind", ""))
    try:
        return get_task(kind)
    except ConfigError:
        raise DataError(f"preprocess.kind must be one of {', '.join(list_tasks())}, got {kind[:40]!r}") from None


def raw_to_model_input(raw: list[Any], spec: dict[str, Any]) -> np.ndarray:
    """Raw samples -> the model's input batch, through the task that owns ``spec["kind"]``.

    image: Pillow images, image bytes or file paths; tabular: dict records (column -> value);
    text: strings. Raises DataError with a message that says what was wrong.
    """
    if not isinstance(raw, list) or not raw:
        raise DataError("no inputs given")
    return task_of(spec).encode_inputs(raw, spec)


def _limits() -> InputLimits:
    from automl.data.bundle import InputLimits

    return InputLimits()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _npy_header(data: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, data offset) of a ``.npy`` body, read from its header alone."""
    import io

    from numpy.lib import format as npy

    buf = io.BytesIO(data)
    try:
        version = npy.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(buf, max_header_size=10_000)
        elif version == (2, 0):
            shape, fortran, dtype = npy.read_array_header_2_0(buf, max_header_size=10_000)
        else:
            raise ValueError(f"version {version[0]}.{version[1]} is not supported (1.0 or 2.0)")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise InputError(f"the body is not a .npy array ({str(exc)[:120] or exc.__class__.__name__})",
                         "malformed_npy") from None
    if not shape:
        raise InputError("the .npy array is a scalar: send a batch (samples along the first axis)", "wrong_shape")
    return tuple(int(d) for d in shape), bool(fortran), np.dtype(dtype), buf.tell()


def _vocab_size(spec: dict[str, Any]) -> int | None:
    """The number of token ids a text model accepts, when the preprocessing spec says so."""
    for key in ("vocab_size", "num_embeddings"):
        if isinstance(spec.get(key), int):
            return int(spec[key])
    vocab = spec.get("vocab")
    if isinstance(vocab, (list, dict)) and vocab:
        return len(vocab)
    return None


def _shape_text(shape: tuple[int | None, ...] | list[Any]) -> str:
    return "[" + ", ".join("*" if d is None else str(d) for d in shape) + "]"


@dataclass(frozen=True)
class InputSpec:
    """What one sample must look like: the preprocessing spec, the model's input dtype and the
    shape of one sample (``None`` for a free axis)."""

    spec: dict[str, Any]
    dtype: Any
    sample_shape: tuple[int | None, ...]
    max_samples: int = 256
    vocab_size: int | None = field(default=None)
    limits: InputLimits = field(default_factory=lambda: _limits())

    @property
    def kind(self) -> str:
        return str(self.spec.get("kind", ""))

    @functools.cached_property
    def task(self) -> Task:  # frozen dataclass: cached_property writes the instance dict directly
        return task_of(self.spec)

    def check_count(self, n: int, code: str = "too_many_samples") -> None:
        """``code`` names an over-the-limit count: ``too_many_inputs`` for a JSON array longer than the
        schema's ``maxItems`` (a validation error), ``too_many_samples`` for a body that is too large."""
        if n == 0:
            raise InputError("no inputs given: 'inputs' must hold at least one sample", "no_inputs")
        if n > self.max_samples:
            raise InputError(f"too many samples: {n} in one request, the limit is {self.max_samples}", code)

    def from_json(self, inputs: Any, options: dict[str, Any] | None = None) -> np.ndarray:
        """The ``inputs`` list of a JSON request -> the checked model batch.

        Raw samples of the task (tabular records, texts …) are encoded by the task; otherwise
        nested arrays of the sample shape (already preprocessed tensors, encoded rows, token ids).
        """
        if not isinstance(inputs, list):
            raise InputError(f"'inputs' must be a list of samples, got {type(inputs).__name__}", "wrong_type")
        self.check_count(len(inputs), "too_many_inputs")
        task = self.task
        encoded = self._encode(lambda: task.encode_json(inputs, self.spec, options or {}, self.limits))
        if encoded is not None:
            return self.check(encoded)
        if any(isinstance(r, (dict, str)) for r in inputs):
            raise InputError(f"inputs of a {self.kind or 'this'} model must be {task.json_hint} "
                             f"of shape {_shape_text(self.sample_shape)}, all samples alike", "wrong_type")
        return self.check(self.to_array(inputs))

    def from_npy(self, data: bytes) -> np.ndarray:
        """A ``.npy`` body (``numpy.save`` of the batch, no pickles) -> the checked batch. The fast
        path for large tensors: no JSON to parse, no nested lists to walk."""
        shape, fortran, dtype, offset = _npy_header(data)
        if dtype.hasobject or dtype.kind not in "iuf":
            raise InputError(f"the .npy array must hold numbers, got {dtype}", "wrong_dtype")
        # The header is checked against the model before a byte is allocated: it may declare 10^12 rows.
        self._check_shape(shape)
        self.check_count(shape[0])
        declared = math.prod(shape) * dtype.itemsize
        if declared != len(data) - offset:
            raise InputError(f"the .npy header declares {declared} bytes of data, the body holds "
                             f"{len(data) - offset}", "malformed_npy")
        arr = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset)
        return self.check(arr.reshape(shape, order="F" if fortran else "C"))

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        want = self.sample_shape
        fits = len(shape) == len(want) + 1 and all(w is None or w == g for w, g in zip(want, shape[1:], strict=True))
        if not fits:
            raise InputError(f"wrong shape: each sample has shape {list(shape[1:])}, the model takes "
                             f"{_shape_text(want)} ('inputs' is a list of samples)", "wrong_shape")

    def _encode(self, make: Any) -> Any:
        """Run a task's encoder; its DataErrors and slips on odd values become InputErrors."""
        try:
            return make()
        except InputError:
            raise
        except AutomlError as exc:
            raise InputError(str(exc), "invalid_input") from None
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise InputError(f"cannot encode the inputs ({exc.__class__.__name__}: {str(exc)[:160]})") from None

    def from_files(self, files: list[tuple[str, bytes]]) -> np.ndarray:
        """Uploaded files (name, bytes) -> the batch, preprocessed exactly as in training (images)."""
        self.check_count(len(files))
        return self.check(self._encode(lambda: self.task.encode_files(files, self.spec, self.limits)))

    def to_array(self, inputs: list[Any]) -> np.ndarray:
        """Nested lists -> an ndarray of numbers; ragged nesting and non-numbers are InputErrors."""
        try:
            arr = np.asarray(inputs)
        except (ValueError, TypeError, OverflowError):
            raise InputError(f"inputs are ragged: every sample must be a nested array of shape "
                             f"{_shape_text(self.sample_shape)}", "wrong_shape") from None
        if arr.dtype.kind not in "iuf":
            kinds = {"b": "booleans", "U": "strings", "S": "bytes", "O": "mixed values (null, objects or "
                     "ragged arrays)"}
            raise InputError(f"inputs must be numbers, got {kinds.get(arr.dtype.kind, str(arr.dtype))}",
                             "wrong_dtype")
        return arr

    def check(self, arr: np.ndarray) -> np.ndarray:
        """Shape, dtype and value checks; returns a C-contiguous batch of the model's dtype."""
        self._check_shape(arr.shape)
        self.check_count(arr.shape[0])
        target = np.dtype(self.dtype)
        if target.kind == "f":
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise InputError("inputs contain NaN or infinite values", "not_finite")
            out = arr.astype(target, copy=False)
            if not np.isfinite(out).all():
                raise InputError(f"inputs contain values too large for {target.name}", "not_finite")
            return np.ascontiguousarray(out)
        if target.kind in "iu":
            if arr.dtype.kind == "f":
                if not np.isfinite(arr).all():
                    raise InputError("inputs contain NaN or infinite values", "not_finite")
                if not np.array_equal(arr, np.round(arr)):
                    raise InputError(f"wrong dtype: this model takes integers ({target.name}, e.g. token ids), "
                                     "got fractional numbers", "wrong_dtype")
            info = np.iinfo(target)
            lowest = 0 if self.vocab_size is not None else info.min  # token ids are never negative
            if arr.size and (arr.min() < lowest or arr.max() > info.max):
                raise InputError(f"integer inputs out of range for {target.name}", "out_of_range")
            if self.vocab_size is not None and arr.size and arr.max() >= self.vocab_size:
                raise InputError(f"token id {int(arr.max())} is out of range (vocabulary size {self.vocab_size})",
                                 "out_of_range")
            return np.ascontiguousarray(arr.astype(target))
        return np.ascontiguousarray(arr.astype(target))


def _implied_shape(spec: dict[str, Any]) -> list[Any] | None:
    """The sample shape the preprocessing spec produces: its ``input_shape``, or for a spec of
    ``channels`` and ``size`` (images) [channels, height, width]."""
    if isinstance(spec.get("input_shape"), list):
        return list(spec["input_shape"])
    if isinstance(spec.get("size"), list) and isinstance(spec.get("channels"), int):
        return [spec["channels"], *spec["size"]]
    return None


def check_graph_matches_spec(shape: list[Any], ort_type: str, spec: dict[str, Any], source: str) -> None:
    """ArtifactError unless the graph's input agrees with the metadata: each fixed axis of the graph
    equals the spec's sample shape, and token ids (a spec with a vocabulary) go into an integer input,
    anything else into a float one. Checked at load, before any input is preprocessed to the spec's
    size (metadata claiming 8192 x 8192 on an 8 x 8 graph would otherwise upscale every upload)."""
    dims = list(shape)[1:]
    implied = _implied_shape(spec)
    if implied is not None:
        fixed = [d if isinstance(d, int) and d > 0 else None for d in dims]
        if len(dims) != len(implied) or any(d is not None and d != w for d, w in zip(fixed, implied, strict=True)):
            raise ArtifactError(f"{source}: the automl metadata's input shape {str(implied)[:60]} does not match "
                                f"the graph's input {_shape_text(fixed)}: the file was altered")
    dtype = ORT_DTYPES.get(ort_type)
    if dtype is not None:
        want = "integer" if _vocab_size(spec) is not None else "float"
        got = "integer" if np.dtype(dtype).kind in "iu" else "float" if np.dtype(dtype).kind == "f" else "other"
        if got != want:
            raise ArtifactError(f"{source}: the automl metadata describes {want} inputs but the graph's input "
                                f"is {ort_type}: the file was altered")


class OnnxModel:
    """An automl ONNX file: session, metadata, input spec, file hash and provider."""

    def __init__(self, path: str | Path, *, threads: int = 0, providers: list[str] | None = None,
                 spinning: bool = True, max_samples: int = 256, limits: InputLimits | None = None) -> None:
        from automl.runtime.onnx_meta import read_metadata
        from automl.runtime.ort import make_session
        from automl.tasks import decision_threshold

        self.path = Path(path)
        self.meta = read_metadata(self.path)
        try:  # the file may come from anywhere: check its spec before anything uses it
            task_of(self.meta["preprocess"]).validate_spec(self.meta["preprocess"])
            self.decision = decision_threshold(self.meta["preprocess"])  # (threshold, positive class) or None
        except DataError as exc:
            raise ArtifactError(f"{self.path}: bad automl metadata: automl.{exc}") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # e.g. an int of 5,000 digits
            raise ArtifactError(f"{self.path}: bad automl metadata: automl.preprocess "
                                f"({exc.__class__.__name__})") from None
        self.session = make_session(self.path, providers, threads, spinning)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ArtifactError(f"{self.path}: expected one model input, found {len(inputs)}")
        inp = inputs[0]
        self.input_name: str = inp.name
        self.input_type: str = inp.type
        if inp.type not in ORT_DTYPES:
            raise ArtifactError(f"{self.path}: unsupported input type {inp.type}")
        names = [o.name for o in outputs]
        self.output_name: str = "logits" if "logits" in names else names[0]
        self.spec: dict[str, Any] = dict(self.meta["preprocess"])
        self.task: str = str(self.meta["task"])
        self.classes: list[str] = [str(c) for c in self.meta.get("classes") or []]
        check_graph_matches_spec(inp.shape, inp.type, self.spec, str(self.path))
        dims = list(inp.shape)[1:]
        stored = self.spec.get("input_shape")
        sample: list[int | None] = []
        for i, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                sample.append(d)
            elif isinstance(stored, list) and i < len(stored) and self.task_fixed_shape():
                sample.append(int(stored[i]))  # e.g. images always have the training shape
            else:
                sample.append(None)
        self.input = InputSpec(self.spec, ORT_DTYPES[inp.type], tuple(sample), max_samples, _vocab_size(self.spec),
                               limits or _limits())
        self.provider: str = self.session.get_providers()[0]
        self.sha256 = sha256_file(self.path)
        self.size_bytes = self.path.stat().st_size

    def task_fixed_shape(self) -> bool:
        return bool(task_of(self.spec).fixed_shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw model outputs (N, K) for a checked batch."""
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def describe(self) -> dict[str, Any]:
        """What ``GET /metadata`` answers."""
        return {
            "model": self.path.name,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "task": self.task,
            "metric": self.meta.get("metric", ""),
            "variant": self.meta.get("variant", ""),
            "kind": self.input.kind,
            "input": {"name": self.input_name, "dtype": np.dtype(self.input.dtype).name,
                      "shape": ["batch", *["*" if d is None else d for d in self.input.sample_shape]]},
            "preprocess": self.input.task.describe_spec(self.spec),
            "classes": self.classes,
            "output": "probabilities" if self.classes else "value",
            **({"decision_threshold": self.decision[0], "positive_class": self.classes[self.decision[1]]}
               if self.decision is not None and len(self.classes) == 2 else {}),
            "provider": self.provider,
            "providers": list(self.session.get_providers()),
        }


def format_outputs(outputs: np.ndarray, classes: list[str], top_k: int | None = None,
                   task: Task | None = None, decision: tuple[float, int] | None = None) -> list[dict[str, Any]]:
    """Model outputs -> one plain dict per sample, as ``task`` formats them (``Task.format_outputs``);
    without a task: class probabilities when ``classes`` are given, else the values
    (``automl.tasks.format_outputs``). ``decision``: the model's binary (threshold, positive class)."""
    if task is not None:
        if decision is None:  # a task of its own may keep the signature without a decision
            return task.format_outputs(outputs, classes, top_k)
        return task.format_outputs(outputs, classes, top_k, decision)
    from automl.tasks import format_outputs as class_or_value

    return class_or_value(outputs, classes, top_k, decision)


def parse_top_k(value: Any, default: int = DEFAULT_TOP_K) -> int:
    """``?top_k=`` -> an int in [1, MAX_TOP_K]; an InputError (code ``invalid_parameter``) for anything
    else. The text is length-checked before ``int()``: a 309-digit number is a valid Python int that
    no float (and no model) can hold."""
    if value is None or value == "":
        return default
    text = str(value).strip()
    if len(text) > len(str(MAX_TOP_K)) or not text.isascii() or not text.isdigit():
        raise InputError(f"top_k must be an integer in [1, {MAX_TOP_K}], got {text[:40]!r}"
                         + (f" ({len(text)} characters)" if len(text) > 40 else ""), "invalid_parameter")
    k = int(text)
    if not 1 <= k <= MAX_TOP_K:
        raise InputError(f"top_k must be an integer in [1, {MAX_TOP_K}], got {k}", "invalid_parameter")
    return k
