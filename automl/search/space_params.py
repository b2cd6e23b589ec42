"""One parameter of a search space (``Param``): reading it from its YAML mapping, and the checks
on it — its numbers and range, its ``when`` conditions, the ranges the model families that read it
can build (``check_limits``), and the explicit first trials (``firsts``) that name it.

``automl.search.space`` builds a ``Space`` from these; only that module reads files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from automl.exceptions import SearchSpaceError

if TYPE_CHECKING:
    from automl.models import ModelFamily, Params

#: a choice of a categorical parameter (checked: a YAML scalar), as Optuna's suggest_* returns it
Value = bool | int | float | str | None
#: ``when`` conditions: (parameter, the values it must take) pairs, all of which must hold
Conditions = tuple[tuple[str, tuple[object, ...]], ...]

PARAM_TYPES = ("int", "float", "categorical", "fixed")
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
    choices: tuple[Value, ...] = ()
    value: object = None  # a fixed parameter's value: any YAML value
    when: Conditions = ()

    def active(self, params: Params) -> bool:
        """True when every condition of ``when`` holds for the already-sampled ``params``."""
        return all(name in params and params[name] in allowed for name, allowed in self.when)


def space_error(source: str, name: str | None, msg: str) -> SearchSpaceError:
    where = f"{source}: parameter '{name}'" if name else source
    return SearchSpaceError(f"{where}: {msg}")


def _number(source: str, name: str, key: str, value: object, integer: bool = False) -> float | int:
    # PyYAML reads "1e-4" (no dot) as a string, so numeric strings are accepted on purpose.
    if isinstance(value, bool):
        raise space_error(source, name, f"'{key}' must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise space_error(source, name, f"'{key}' must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise space_error(source, name, f"'{key}' must be finite, got {value!r}")
    if integer:
        if number != int(number):
            raise space_error(source, name, f"'{key}' must be an integer for an int parameter, got {value!r}")
        return int(number)
    return number


def parse_param(source: str, name: str, spec: object) -> Param:
    if not isinstance(spec, dict):
        # A bare scalar or list is shorthand: scalar -> fixed, list -> categorical.
        if isinstance(spec, list):
            spec = {"type": "categorical", "choices": spec}
        else:
            spec = {"type": "fixed", "value": spec}
    ptype = spec.get("type")
    if ptype not in PARAM_TYPES:
        raise space_error(source, name, f"unknown type {ptype!r} (allowed: {', '.join(PARAM_TYPES)})")
    unknown = set(spec) - _ALLOWED_KEYS[ptype]
    if unknown:
        raise space_error(
            source,
            name,
            f"unknown key(s) {sorted(unknown)} for type {ptype} (allowed: {sorted(_ALLOWED_KEYS[ptype])})",
        )
    when = _parse_when(source, name, spec.get("when"))
    if ptype in ("int", "float"):
        for key in ("low", "high"):
            if key not in spec:
                raise space_error(source, name, f"'{key}' is required for type {ptype}")
        integer = ptype == "int"
        low = _number(source, name, "low", spec["low"], integer)
        high = _number(source, name, "high", spec["high"], integer)
        if low > high:
            raise space_error(source, name, f"low ({low}) is greater than high ({high})")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise space_error(source, name, f"'log' must be true or false, got {log!r}")
        step = spec.get("step")
        if step is not None:
            step = _number(source, name, "step", step, integer)
            if step <= 0:
                raise space_error(source, name, f"'step' must be > 0, got {step}")
            if log:
                raise space_error(source, name, "'step' and 'log: true' cannot be combined")
        if log and low <= 0:
            raise space_error(source, name, f"'low' must be > 0 when log is true, got {low}")
        if not math.isfinite(high - low):
            raise space_error(source, name, f"the range [{low}, {high}] is wider than a float can hold")
        if step is not None and (high - low) / step > MAX_FLOAT_STEPS:
            raise space_error(source, name, f"[{low}, {high}] in steps of {step} is {(high - low) / step:.3g} steps "
                                     f"(the limit is {MAX_FLOAT_STEPS:.0e}): use a larger step or log: true")
        return Param(name, ptype, low=low, high=high, step=step, log=log, when=when)
    if ptype == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise space_error(source, name, "'choices' must be a non-empty list")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise space_error(source, name, f"choice {c!r} must be a number, string, bool or null")
        if len(set(map(repr, choices))) != len(choices):
            raise space_error(source, name, "'choices' has duplicates")
        return Param(name, ptype, choices=tuple(choices), when=when)
    if "value" not in spec:
        raise space_error(source, name, "'value' is required for type fixed")
    return Param(name, "fixed", value=spec["value"], when=when)


def _parse_when(source: str, name: str, when: object) -> Conditions:
    if when is None:
        return ()
    if not isinstance(when, dict) or not when:
        raise space_error(source, name, "'when' must be a mapping {parameter: [allowed values]}")
    out = []
    for other, allowed in when.items():
        values = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        out.append((str(other), values))
    return tuple(out)


def _families(params: dict[str, Param], p: Param, task: str | None) -> list[ModelFamily]:
    """The model families that may read ``p``: those the space's ``model`` can pick (only the ones
    ``p``'s ``when`` allows), else the task's default family, else every family."""
    from automl.models import get_model, list_models

    names: list[object]
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
                raise space_error(source, p.name, f"range [{_num_text(p.low)}, {_num_text(p.high)}] is outside what "
                                           f"{who} can build: the allowed range is [{lo}, {hi}]")
            continue
        values = p.choices if p.type == "categorical" else (p.value,)
        for v in values:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not lo <= v <= hi:
                raise space_error(source, p.name, f"value {_num_text(v)} is outside what {who} can build: "
                                           f"the allowed range is [{lo}, {hi}]")


def _num_text(v: float) -> str:
    """A number for a message: a huge one in exponent form, not 22 digits."""
    return f"{v:.3g}" if abs(v) >= 1e9 else str(v)


def parse_firsts(source: str, firsts: object, params: dict[str, Param]) -> tuple[Params, ...]:
    """Validate ``firsts``: a list of mappings parameter -> value, each value one the parameter can
    take. Returns them with numbers as numbers and fixed parameters dropped."""
    if firsts is None:
        return ()
    if not isinstance(firsts, list) or not firsts:
        raise space_error(source, None, "'firsts' must be a non-empty list of mappings {parameter: value}")
    out: list[Params] = []
    for i, first in enumerate(firsts):
        where = f"{source}: firsts[{i}]"
        if not isinstance(first, dict) or not first:
            raise SearchSpaceError(f"{where}: must be a non-empty mapping {{parameter: value}}, got {first!r}")
        values: Params = {}
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


def _first_value(where: str, p: Param, value: object) -> object:
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


