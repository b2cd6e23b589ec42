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
from typing import TYPE_CHECKING

import yaml

from automl.exceptions import SearchSpaceError
from automl.search.space_params import (
    PARAM_TYPES,
    TRAINING_LIMITS,
    Param,
    Value,
    check_limits,
    parse_firsts,
    parse_param,
    space_error,
)

if TYPE_CHECKING:
    import optuna

    from automl.models import Params


__all__ = ["PARAM_TYPES", "TRAINING_LIMITS", "Param", "Space", "Value", "check_limits", "grid",
           "list_builtin_spaces", "load_space", "parse_space", "resolve_space", "safe_load_bounded", "sample"]

#: bounds on a space file, checked while it is read: its size, the nesting of its YAML, and the
#: values it holds once every alias (``*name``) is expanded (700 bytes of aliases can stand for 10^9)
MAX_SPACE_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000

@dataclass(frozen=True)
class Space:
    """An ordered, validated search space; ``source`` names the file it came from."""

    params: tuple[Param, ...]
    source: str = "<memory>"
    raw: dict[str, object] = field(default_factory=dict, compare=False)
    #: the validated ``firsts`` of the file (fixed parameters dropped); empty when it has none
    firsts: tuple[Params, ...] = ()

    def family_firsts(self) -> list[Params]:
        """The partial trials a new study enqueues before sampling, in order: the file's ``firsts``
        when it has them; otherwise one per model family the space offers (``model`` with several
        choices), in the space's order, so every family is tried even when the budget allows few
        trials, the cheap one listed first (the sampler fills the other parameters)."""
        if self.firsts:
            return [dict(f) for f in self.firsts]
        return [{"model": c} for c in self.families]

    @property
    def families(self) -> tuple[Value, ...]:
        """The model families the space offers: the choices of its top-level categorical ``model``, or
        () when it has fewer than two."""
        model = next((p for p in self.params if p.name == "model" and p.type == "categorical" and not p.when), None)
        return tuple(model.choices) if model is not None and len(model.choices) > 1 else ()

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def to_yaml(self) -> str:
        """The space as YAML text, so it can be stored with a study and reloaded by a worker."""
        return yaml.safe_dump(self.raw, sort_keys=False)


def parse_space(data: object, source: str = "<memory>", task: str | None = None) -> Space:
    """Validate a parsed YAML document and return a ``Space``. Integer ranges (and numeric choices)
    are checked against what the model families the space can pick build (``check_limits``; ``task``
    names the task, whose default family is the one a space without ``model`` trains)."""
    if not isinstance(data, dict) or "params" not in data:
        raise space_error(source, None, "expected a mapping with a top-level 'params' key")
    raw_params = data["params"]
    if not isinstance(raw_params, dict) or not raw_params:
        raise space_error(source, None, "'params' must be a non-empty mapping of parameter names")
    unknown_top = set(data) - {"params", "description", "firsts"}
    if unknown_top:
        raise space_error(source, None,
                   f"unknown top-level key(s) {sorted(unknown_top)} (allowed: params, description, firsts)")
    params: list[Param] = []
    seen: dict[str, Param] = {}
    for name, spec in raw_params.items():
        name = str(name)
        param = parse_param(source, name, spec)
        for other, allowed in param.when:
            if other not in seen:
                # Conditions may only refer to parameters defined earlier, so sampling order works.
                raise space_error(source, name, f"condition names '{other}', which is not defined before it")
            parent = seen[other]
            if parent.type == "categorical":
                bad = [v for v in allowed if v not in parent.choices]
                if bad:
                    raise space_error(source, name, f"condition value(s) {bad} are not choices of '{other}'")
        seen[name] = param
        params.append(param)
    check_limits(source, seen, task)
    firsts = parse_firsts(source, data.get("firsts"), seen)
    return Space(tuple(params), source=source, raw=data, firsts=firsts)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the nesting of the document bounded while it is composed (a deeply
    nested file would otherwise end in a RecursionError)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
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


def safe_load_bounded(text: str, source: str) -> object:
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
    """``None`` -> the task's default space (``Task.default_space``, else the shipped one named after the
    task); a built-in name -> that space; else a file path."""
    if spec is None:
        from automl.tasks import get_task

        own = get_task(task).default_space
        return load_space(Path(own) if own else builtin_space_path(task), task)
    spec_str = str(spec)
    if not Path(spec_str).exists() and spec_str in list_builtin_spaces():
        return load_space(builtin_space_path(spec_str), task)
    if not Path(spec_str).exists():
        raise SearchSpaceError(f"--space {spec_str}: search-space file not found, and not a built-in space "
                               f"({', '.join(list_builtin_spaces())})")
    return load_space(spec_str, task)


def sample(trial: optuna.trial.Trial, space: Space) -> Params:
    """Ask an Optuna trial for every active parameter; returns a plain dict."""
    params: Params = {}
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


def grid(space: Space, float_points: int = 3) -> dict[str, list[Value]]:
    """A grid for Optuna's GridSampler: every categorical choice, every int step, and floats on
    their step (or ``float_points`` evenly spaced points, geometric when log)."""
    out: dict[str, list[Value]] = {}
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
