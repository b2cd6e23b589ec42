"""A tiny fixed CNN space for the study tests: trials differ only in the learning rate, so each takes
about a second on digits."""

from __future__ import annotations


def tiny_space(batch_size: int = 32, lr: tuple[float, float] = (1.0e-2, 5.0e-2)) -> str:
    """The YAML text of the space (depth 1, width 8, AdamW, a log-uniform learning rate)."""
    return (
        "params:\n"
        "  depth: {type: fixed, value: 1}\n"
        "  width: {type: fixed, value: 8}\n"
        "  optimizer: {type: fixed, value: adamw}\n"
        f"  lr: {{type: float, low: {lr[0]:.1e}, high: {lr[1]:.1e}, log: true}}\n"
        f"  batch_size: {{type: fixed, value: {batch_size}}}\n"
    )
