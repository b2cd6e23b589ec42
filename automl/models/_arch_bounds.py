"""Bounds on a stored model architecture (the ``arch`` of a best.pt), checked before anything is built:
a forged arch must not make building itself slow or large (``check_arch_bounds``), and an arch must
describe exactly the stored weights (``check_arch_matches_weights``, on PyTorch's ``meta`` device).
``automl.artifacts`` runs both when it loads a checkpoint.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from automl.exceptions import ArtifactError, ConfigError
from automl.models._registry import ModelFamily, get_model, list_models

if TYPE_CHECKING:
    import torch

    from automl.models._registry import Arch

__all__ = ["check_arch_bounds", "check_arch_matches_weights", "family_of", "short_value"]


def family_of(arch: object) -> ModelFamily:
    """The registered family named by ``arch["family"]``; ArtifactError when there is none."""
    name = arch.get("family") if isinstance(arch, dict) else None
    try:
        return get_model(name)  # type: ignore[arg-type]
    except ConfigError:
        raise ArtifactError(f"unknown model family {name!r} (known: {', '.join(list_models())})") from None


def short_value(value: object) -> str:
    """A value for an error line, cheap whatever its size (Python refuses to print an int of more than
    4,300 digits, and a list may hold millions of entries)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, (list, tuple, dict)) and len(value) > 8:
        return f"a {type(value).__name__} of {len(value)} entries"
    text = repr(value) if isinstance(value, (list, tuple, dict)) else str(value)
    return text[:40] + ("…" if len(text) > 40 else "")


#: an arch list (per-layer widths, kernel sizes ...) may have at most this many entries per stored
#: tensor (plus a few), counted over its nested lists too: every per-layer entry is backed by a
#: weight, so longer lists are a forged arch asking to build millions of modules
LIST_ENTRIES_PER_TENSOR = 4
#: bounds on every stored arch, whatever its family: nesting of lists and dicts, keys of one dict,
#: characters of a string, magnitude of an integer (a tensor side or a count)
MAX_ARCH_DEPTH = 4
MAX_ARCH_KEYS = 256
MAX_ARCH_STRING = 1000
MAX_ARCH_INT = 2**31 - 1


def check_arch_bounds(arch: Arch, family: ModelFamily, n_tensors: int, source: str = "checkpoint") -> None:
    """ArtifactError unless every size, count, depth and nested list of ``arch`` lies within what
    ``family`` builds (``ModelFamily.limits``, ``max_layers``, ``column_lists``), checked before any
    module is made: a forged arch must not make building itself slow or large. The walk stops at the
    first list over its bound, so a list of millions costs nothing."""

    def bad(what: str) -> ArtifactError:
        return ArtifactError(f"{source}: architecture of family {family.name!r} is out of bounds: {what}")

    if len(arch) > MAX_ARCH_KEYS:
        raise bad(f"{len(arch)} keys (the limit is {MAX_ARCH_KEYS})")
    per_layer = LIST_ENTRIES_PER_TENSOR * n_tensors + 8
    for key, value in arch.items():
        if not isinstance(key, str) or len(key) > 100:
            raise bad(f"key {short_value(key)!r} is not a short string")
        column = key in family.column_lists
        cap = family.column_lists.get(key, family.max_layers)
        total = LIST_ENTRIES_PER_TENSOR * cap if column else per_layer  # entries of all its lists together
        limit = family.limits.get(key)
        entries = 0
        stack: list[tuple[object, int]] = [(value, 0)]
        while stack:
            item, depth = stack.pop()
            if depth > MAX_ARCH_DEPTH:
                raise bad(f"'{key}' is nested deeper than {MAX_ARCH_DEPTH} levels")
            if isinstance(item, (list, tuple)):
                if len(item) > cap:
                    raise bad(f"'{key}' lists {len(item)} entries in one list (the limit is {cap})")
                entries += len(item)
                if entries > total:
                    if column:
                        raise bad(f"'{key}' lists more than {total} entries in all")
                    raise ArtifactError(f"{source}: weights do not match the stored architecture ('{key}' lists "
                                        f"{entries}{'+' if stack else ''} entries for {n_tensors} stored tensors)")
                stack.extend((v, depth + 1) for v in item)
            elif isinstance(item, dict):
                if len(item) > MAX_ARCH_KEYS:
                    raise bad(f"'{key}' holds {len(item)} keys (the limit is {MAX_ARCH_KEYS})")
                stack.extend((v, depth + 1) for v in item.values())
            elif isinstance(item, str):
                if len(item) > MAX_ARCH_STRING:
                    raise bad(f"'{key}' holds a string of {len(item)} characters (the limit is {MAX_ARCH_STRING})")
            elif isinstance(item, bool) or item is None:
                continue
            elif isinstance(item, int):
                if abs(item) > MAX_ARCH_INT or (limit is not None and not limit[0] <= item <= limit[1]):
                    allowed = f"[{limit[0]}, {limit[1]}]" if limit is not None else f"at most {MAX_ARCH_INT}"
                    raise bad(f"'{key}' is {short_value(item)}, the family builds {allowed}")
            elif isinstance(item, float):
                if not math.isfinite(item):
                    raise bad(f"'{key}' holds {item}")
            else:
                raise bad(f"'{key}' holds a {type(item).__name__}, not a plain value")


def check_arch_matches_weights(arch: Arch, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """ArtifactError unless ``arch`` describes exactly the tensors of ``state_dict`` (names and shapes).

    The module is built on PyTorch's ``meta`` device, which records shapes and allocates no memory,
    and its state_dict is compared with the stored one; only a match is later built for real, so
    building costs no more memory than the stored weights already take."""
    import torch

    try:
        family = family_of(arch)
    except ArtifactError as exc:
        raise ArtifactError(f"{source}: {exc}") from None
    check_arch_bounds(arch, family, len(state_dict), source)
    try:
        with torch.device("meta"):
            skeleton = family.build(arch)
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError, NotImplementedError) as exc:
        raise ArtifactError(f"{source}: architecture of family {family.name!r} is incomplete or invalid: "
                            f"{str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    stored = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state_dict.items()}
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    wrong = [k for k in expected if k in stored and stored[k] != expected[k]]
    if wrong:
        k = wrong[0]
        detail = f"'{k}' is {_shape(stored[k])} in the weights, the arch implies {_shape(expected[k])}"
    elif missing or unexpected:
        detail = f"missing {missing[:3]}, unexpected {unexpected[:3]}"
    else:
        return
    raise ArtifactError(f"{source}: weights do not match the stored architecture ({detail})")


def _shape(shape: tuple[int, ...] | None) -> str:
    return "not a tensor" if shape is None else "(" + ", ".join(str(d) for d in shape) + ")"
