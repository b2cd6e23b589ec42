"""One rule for ``--device`` everywhere (search, worker, compress): auto, cpu, cuda or cuda:N.

``check_device_name`` checks the spelling without importing torch (settings are checked before
anything heavy loads); ``resolve_device`` also checks that the machine has that device.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from automl.exceptions import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA_N = re.compile(r"cuda:(\d+)")


def check_device_name(name: str) -> str:
    """``name`` when it is auto, cpu, cuda or cuda:N (N a GPU index); ConfigError otherwise."""
    if name in ("auto", "cpu", "cuda") or _CUDA_N.fullmatch(name):
        return name
    raise ConfigError(f"unknown device {name!r} (choose from: {', '.join(DEVICE_NAMES)})")


def resolve_device(name: str) -> torch.device:
    """'auto' -> the first GPU when there is one, else the CPU; 'cuda' and 'cuda:N' must exist here."""
    import torch

    check_device_name(name)
    if name == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if name == "auto":
        return torch.device("cuda" if available else "cpu")
    if not available:
        raise ConfigError(f"device {name!r}: no CUDA GPU is available here (use --device cpu or auto)")
    match = _CUDA_N.fullmatch(name)
    if match:
        count = torch.cuda.device_count()
        if int(match.group(1)) >= count:
            raise ConfigError(
                f"device {name!r}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})"
            )
    return torch.device(name)
