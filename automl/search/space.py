"""Search spaces: a YAML file -> a validated ``Space``; ``sample(trial, space)`` -> a plain dict.

File format::

    params:
      depth:      {type: int, low: 1, high: 3}
      lr:         {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      dropout:    {type: float, low: 0.0, high: 0.5, step: 0.1}
      optimizer:  {type: categorical, choices: [adamw, sgd]}
      momentum:   {type: float, low: 0.8, high: 0.99, when: {optimizer: [sgd]}}
      epochs_cap: {type: fixed, value: 10}
    firsts:                       # optional: trials enqueued first in a new study, in this order
      - {optimizer: adamw, lr: 1.0e-3, depth: 2}

``when`` makes a parameter conditional: it is sampled only when every named parameter took one of
the listed values. ``firsts`` lists explicit first trials (a mapping parameter -> value each; the
sampler fills the parameters a first leaves out, and fixed ones may be left out): a new study tries
them before sampling, so even a short budget starts from known good settings. Without ``firsts``,
a space whose ``model`` has several choices gets one first trial per family. This is the only
module that calls ``trial.suggest_*``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from automl.exceptions import SearchSpaceError

PARAM_TYPES = ("int", "float", "categorical", "fixed")
#: bounds on a space file, checked while it is read: its size, the nesting of its YAML, and the
#: values it holds once every alias (``*name``) is expanded (700 bytes of aliases can stand for 10^9)
MAX_SPACE_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000
#: a float range with a step may hold at most this many steps (Optuna counts them exactly)
MAX_FLOAT_STEPS = 10**9
#: training parameters' ranges (the model families' own come from ``ModelFamily.limits``)
TRAINING_LIMITS: dict[str, tuple[int, int]] = {"batch_size": (1, 1 << 16)}
_ALLOWED_KEYS = {
    "int": {"type", "low", "high", "step", "log", "when", "help"},
    "float": {"type", "low", "high", "step", "log", "when", "help"},
    "categorical": {"type", "choices", "when", "help"},
    "fixed": {"type", "value", "when", "help"},
}


@dataclass(frozen=True)
class Param:
    """One searchable parameter."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    value: Any = None
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def active(self, params: dict[str, Any]) -> bool:
        """True when every condition of ``when`` holds for the already-sampled ``params``."""
        return all(name in params and params[name] in allowed for name, allowed in self.when)


@dataclass(frozen=True)
class Space:
    """An ordered, validated search space; ``source`` names the file it came from."""

    params: tuple[Param, ...]
    source: str = "<memory>"
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    #: the validated ``firsts`` of the file (fixed parameters dropped); empty when it has none
    firsts: tuple[dict[str, Any], ...] = ()

    def family_firsts(self) -> list[dict[str, Any]]:
        """The partial trials a new study enqueues before sampling, in order: the file's ``firsts``
        when it has them; otherwise one per model family the space offers (``model`` with several
        choices), in the space's order, so every family is tried even when the budget allows few
        trials, the cheap one listed first (the sampler fills the other parameters)."""
        if self.firsts:
            return [dict(f) for f in self.firsts]
        model = next((p for p in self.params if p.name == "model" and p.type == "categorical" and not p.when), None)
        return [{"model": c} for c in model.choices] if model is not None and len(model.choices) > 1 else []

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def to_yaml(self) -> str:
        """The space as YAML text, so it can be stored with a study and reloaded by a worker."""
        return yaml.safe_dump(self.raw, sort_keys=False)


def _err(source: str, name: str | None, msg: str) -> SearchSpaceError:
    where = f"{source}: parameter '{name}'" if name else source
    return SearchSpaceError(f"{where}: {msg}")


def _number(source: str, name: str, key: str, value: Any, integer: bool = False) -> float | int:
    # PyYAML reads "1e-4" (no dot) as a string, so numeric strings are accepted on purpose.
    if isinstance(value, bool):
        raise _err(source, name, f"'{key}' must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _err(source, name, f"'{key}' must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise _err(source, name, f"'{key}' must be finite, got {value!r}")
    if integer:
        if number != int(number):
            raise _err(source, name, f"'{key}' must be an integer for an int parameter, got {value!r}")
        return int(number)
    return number


def _parse_param(source: str, name: str, spec: Any) -> Param:
    if not isinstance(spec, dict):
        # A bare scalar or list is shorthand: scalar -> fixed, list -> categorical.
        if isinstance(spec, list):
            spec = {"type": "categorical", "choices": spec}
        else:
            spec = {"type": "fixed", "value": spec}
    ptype = spec.get("type")
    if ptype not in PARAM_TYPES:
        raise _err(source, name, f"unknown type {ptype!r} (allowed: {', '.join(PARAM_TYPES)})")
    unknown = set(spec) - _ALLOWED_KEYS[ptype]
    if unknown:
        raise _err(
            source,
            name,
            f"unknown key(s) {sorted(unknown)} for type {ptype} (allowed: {sorted(_ALLOWED_KEYS[ptype])})",
        )
    when = _parse_when(source, name, spec.get("when"))
    if ptype in ("int", "float"):
        for key in ("low", "high"):
            if key not in spec:
                raise _err(source, name, f"'{key}' is required for type {ptype}")
        integer = ptype == "int"
        low = _number(source, name, "low", spec["low"], integer)
        high = _number(source, name, "high", spec["high"], integer)
        if low > high:
            raise _err(source, name, f"low ({low}) is greater than high ({high})")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise _err(source, name, f"'log' must be true or false, got {log!r}")
        step = spec.get("step")
        if step is not None:
            step = _number(source, name, "step", step, integer)
            if step <= 0:
                raise _err(source, name, f"'step' must be > 0, got {step}")
            if log:
                raise _err(source, name, "'step' and 'log: true' cannot be combined")
        if log and low <= 0:
            raise _err(source, name, f"'low' must be > 0 when log is true, got {low}")
        if not math.isfinite(high - low):
            raise _err(source, name, f"the range [{low}, {high}] is wider than a float can hold")
        if step is not None and (high - low) / step > MAX_FLOAT_STEPS:
            raise _err(source, name, f"[{low}, {high}] in steps of {step} is {(high - low) / step:.3g} steps "
                                     f"(the limit is {MAX_FLOAT_STEPS:.0e}): use a larger step or log: true")
        return Param(name, ptype, low=low, high=high, step=step, log=log, when=when)
    if ptype == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _err(source, name, "'choices' must be a non-empty list")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise _err(source, name, f"choice {c!r} must be a number, string, bool or null")
        if len(set(map(repr, choices))) != len(choices):
            raise _err(source, name, "'choices' has duplicates")
        return Param(name, ptype, choices=tuple(choices), when=when)
    if "value" not in spec:
        raise _err(source, name, "'value' is required for type fixed")
    return Param(name, "fixed", value=spec["value"], when=when)


def _parse_when(source: str, name: str, when: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if when is None:
        return ()
    if not isinstance(when, dict) or not when:
        raise _err(source, name, "'when' must be a mapping {parameter: [allowed values]}")
    out = []
    for other, allowed in when.items():
        values = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        out.append((str(other), values))
    return tuple(out)


def parse_space(data: Any, source: str = "<memory>", task: str | None = None) -> Space:
    """Validate a parsed YAML document and return a ``Space``. Integer ranges (and numeric choices)
    are checked against what the model families the space can pick build (``check_limits``; ``task``
    names the task, whose default family is the one a space without ``model`` trains)."""
    if not isinstance(data, dict) or "params" not in data:
        raise _err(source, None, "expected a mapping with a top-level 'params' key")
    raw_params = data["params"]
    if not isinstance(raw_params, dict) or not raw_params:
        raise _err(source, None, "'params' must be a non-empty mapping of parameter names")
    unknown_top = set(data) - {"params", "description", "firsts"}
    if unknown_top:
        raise _err(source, None,
                   f"unknown top-level key(s) {sorted(unknown_top)} (allowed: params, description, firsts)")
    params: list[Param] = []
    seen: dict[str, Param] = {}
    for name, spec in raw_params.items():
        name = str(name)
        param = _parse_param(source, name, spec)
        for other, allowed in param.when:
            if other not in seen:
                # Conditions may only refer to parameters defined earlier, so sampling order works.
                raise _err(source, name, f"condition names '{other}', which is not defined before it")
            parent = seen[other]
            if parent.type == "categorical":
                bad = [v for v in allowed if v not in parent.choices]
                if bad:
                    raise _err(source, name, f"condition value(s) {bad} are not choices of '{other}'")
        seen[name] = param
        params.append(param)
    check_limits(source, seen, task)
    firsts = _parse_firsts(source, data.get("firsts"), seen)
    return Space(tuple(params), source=source, raw=data, firsts=firsts)


def _families(params: dict[str, Param], p: Param, task: str | None) -> list[Any]:
    """The model families that may read ``p``: those the space's ``model`` can pick (only the ones
    ``p``'s ``when`` allows), else the task's default family, else every family."""
    from automl.models import get_model, list_models

    names: list[Any]
    model = params.get("model")
    if model is not None and model.type in ("categorical", "fixed"):
        names = list(model.choices) if model.type == "categorical" else [model.value]
    elif task is not None:
        from automl.tasks import get_task

        names = [get_task(task).default_model]
    else:
        names = list_models()
    for other, allowed in p.when:
        if other == "model":
            names = [n for n in names if n in allowed]
    known = set(list_models())
    return [get_model(n) for n in names if isinstance(n, str) and n in known]


def check_limits(source: str, params: dict[str, Param], task: str | None = None) -> None:
    """SearchSpaceError, naming the parameter and its allowed range, when a numeric range or a
    numeric choice lies outside what the families that read it can build (``ModelFamily.limits``;
    several families: the range all of them build, or with no task known the widest) or outside a
    training parameter's range (``TRAINING_LIMITS``)."""
    for p in params.values():
        if p.type not in ("int", "float", "categorical", "fixed"):
            continue
        readers = [f for f in _families(params, p, task) if p.name in f.limits]
        if readers:
            lows, highs = [f.limits[p.name][0] for f in readers], [f.limits[p.name][1] for f in readers]
            wide = task is None and "model" not in params
            lo, hi = (min(lows), max(highs)) if wide else (max(lows), min(highs))
            who = f"model famil{'y' if len(readers) == 1 else 'ies'} {', '.join(repr(f.name) for f in readers)}"
        elif p.name in TRAINING_LIMITS:
            (lo, hi), who = TRAINING_LIMITS[p.name], "training"
        else:
            continue
        if p.type in ("int", "float"):
            assert p.low is not None and p.high is not None
            if not lo <= p.low <= p.high <= hi:
                raise _err(source, p.name, f"range [{_num_text(p.low)}, {_num_text(p.high)}] is outside what "
                                           f"{who} can build: the allowed range is [{lo}, {hi}]")
            continue
        values = p.choices if p.type == "categorical" else (p.value,)
        for v in values:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not lo <= v <= hi:
                raise _err(source, p.name, f"value {_num_text(v)} is outside what {who} can build: "
                                           f"the allowed range is [{lo}, {hi}]")


def _num_text(v: float) -> str:
    """A number for a message: a huge one in exponent form, not 22 digits."""
    return f"{v:.3g}" if abs(v) >= 1e9 else str(v)


def _parse_firsts(source: str, firsts: Any, params: dict[str, Param]) -> tuple[dict[str, Any], ...]:
    """Validate ``firsts``: a list of mappings parameter -> value, each value one the parameter can
    take. Returns them with numbers as numbers and fixed parameters dropped."""
    if firsts is None:
        return ()
    if not isinstance(firsts, list) or not firsts:
        raise _err(source, None, "'firsts' must be a non-empty list of mappings {parameter: value}")
    out: list[dict[str, Any]] = []
    for i, first in enumerate(firsts):
        where = f"{source}: firsts[{i}]"
        if not isinstance(first, dict) or not first:
            raise SearchSpaceError(f"{where}: must be a non-empty mapping {{parameter: value}}, got {first!r}")
        values: dict[str, Any] = {}
        for name, value in first.items():
            name = str(name)
            param = params.get(name)
            if param is None:
                raise SearchSpaceError(f"{where}: '{name}' is not a parameter of the space "
                                       f"(parameters: {', '.join(params)})")
            values[name] = _first_value(where, param, value)
        for name in values:  # a value for a parameter its own first switches off is a mistake
            for other, allowed in params[name].when:
                known = values.get(other, params[other].value if params[other].type == "fixed" else None)
                if (other in values or params[other].type == "fixed") and known not in allowed:
                    raise SearchSpaceError(f"{where}: '{name}' is only sampled when {other} is one of "
                                           f"{list(allowed)}, and this first has {other}={known!r}")
        out.append({k: v for k, v in values.items() if params[k].type != "fixed"})
    return tuple(out)


def _first_value(where: str, p: Param, value: Any) -> Any:
    """``value`` checked against what ``p`` can take (numbers converted); SearchSpaceError otherwise."""
    if p.type == "fixed":
        if value != p.value or isinstance(value, bool) != isinstance(p.value, bool):
            raise SearchSpaceError(f"{where}: '{p.name}' is fixed at {p.value!r}, got {value!r}")
        return p.value
    if p.type == "categorical":
        for c in p.choices:
            if c == value and isinstance(c, bool) == isinstance(value, bool):
                return c
        raise SearchSpaceError(f"{where}: '{p.name}' = {value!r} is not one of its choices {list(p.choices)}")
    number = _number(where, p.name, "value", value, integer=p.type == "int")
    assert p.low is not None and p.high is not None
    if not p.low <= number <= p.high:
        raise SearchSpaceError(f"{where}: '{p.name}' = {value!r} is outside its range [{p.low}, {p.high}]")
    if p.step and abs((number - p.low) / p.step - round((number - p.low) / p.step)) > 1e-9:
        raise SearchSpaceError(f"{where}: '{p.name}' = {value!r} is not on its step {p.step} from {p.low}")
    return number


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the nesting of the document bounded while it is composed (a deeply
    nested file would otherwise end in a RecursionError)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """Nodes of the YAML graph once every alias is expanded (an alias re-uses its anchor's node, so
    the graph is small while its expansion may not be); counted once per distinct node."""
    if id(node) in memo:
        return memo[id(node)]
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(v, memo) for v in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = min(size, MAX_YAML_NODES + 1)  # capped: a chain of aliases stays a small number
    return memo[id(node)]


def safe_load_bounded(text: str, source: str) -> Any:
    """``yaml.safe_load`` with the document's nesting and its size after alias expansion bounded
    (``MAX_YAML_DEPTH``, ``MAX_YAML_NODES``); SearchSpaceError beyond them."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise SearchSpaceError(f"{source}: holds more than {MAX_YAML_NODES} values once its aliases (*name) "
                                   "are expanded; write the values out, or use fewer aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_space(path: str | Path, task: str | None = None) -> Space:
    """Read and validate a search-space YAML file (``task``: see ``parse_space``)."""
    path = Path(path)
    if not path.is_file():
        raise SearchSpaceError(f"{path}: search-space file not found")
    size = path.stat().st_size
    if size > MAX_SPACE_BYTES:
        raise SearchSpaceError(f"{path}: {size} bytes is over the limit of {MAX_SPACE_BYTES} for a space file")
    try:
        data = safe_load_bounded(path.read_text(encoding="utf-8"), str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SearchSpaceError(f"{path}: malformed YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise SearchSpaceError(f"{path}: not a UTF-8 text file") from None
    return parse_space(data, source=str(path), task=task)


def builtin_space_path(name: str) -> Path:
    """Path of a space shipped in the ``search_spaces`` package (``image``, ``image-full`` …)."""
    ref = resources.files("search_spaces") / f"{name}.yaml"
    with resources.as_file(ref) as p:
        return Path(p)


def list_builtin_spaces() -> list[str]:
    return sorted(
        p.name[: -len(".yaml")] for p in resources.files("search_spaces").iterdir() if p.name.endswith(".yaml")
    )


def resolve_space(spec: str | Path | None, task: str) -> Space:
    """``None`` -> the task's default space; a built-in name -> that space; else a file path."""
    if spec is None:
        return load_space(builtin_space_path(task), task)
    spec_str = str(spec)
    if not Path(spec_str).exists() and spec_str in list_builtin_spaces():
        return load_space(builtin_space_path(spec_str), task)
    if not Path(spec_str).exists():
        raise SearchSpaceError(f"--space {spec_str}: search-space file not found, and not a built-in space "
                               f"({', '.join(list_builtin_spaces())})")
    return load_space(spec_str, task)


def sample(trial: Any, space: Space) -> dict[str, Any]:
    """Ask an Optuna trial for every active parameter; returns a plain dict."""
    params: dict[str, Any] = {}
    for p in space.params:
        if not p.active(params):
            continue
        if p.type == "fixed":
            params[p.name] = p.value
        elif p.type == "categorical":
            params[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.type == "int":
            params[p.name] = trial.suggest_int(
                p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
            )
        else:
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return params


def grid(space: Space, float_points: int = 3) -> dict[str, list[Any]]:
    """A grid for Optuna's GridSampler: every categorical choice, every int step, and floats on
    their step (or ``float_points`` evenly spaced points, geometric when log)."""
    out: dict[str, list[Any]] = {}
    for p in space.params:
        if p.type == "fixed":
            continue
        if p.type == "categorical":
            out[p.name] = list(p.choices)
        elif p.type == "int":
            step = int(p.step or 1)
            values = list(range(int(p.low), int(p.high) + 1, step))
            if len(values) > 8:  # keep the grid finite and useful
                values = sorted({int(round(v)) for v in _spread(p.low, p.high, 4, p.log)})
            out[p.name] = values
        else:
            if p.step:
                n = int(math.floor((p.high - p.low) / p.step + 1e-9)) + 1
                values = [round(p.low + i * p.step, 12) for i in range(n)]
                if len(values) > 8:
                    values = _spread(p.low, p.high, float_points, False)
            else:
                values = _spread(p.low, p.high, float_points, p.log)
            out[p.name] = values
    return out


def _spread(low: float, high: float, n: int, log: bool) -> list[float]:
    if n <= 1 or low == high:
        return [low]
    if log:
        a, b = math.log(low), math.log(high)
        # exp(log(x)) can land a rounding error outside [low, high], which Optuna then warns about
        return [min(high, max(low, math.exp(a + (b - a) * i / (n - 1)))) for i in range(n)]
    return [low + (high - low) * i / (n - 1) for i in range(n)]
