"""Data loaders, splits and the shared preprocessing used by training, predict and serve."""

from __future__ import annotations

from typing import Any

#: a preprocessing spec: the plain dict a task fits on the training split and every model file carries
#: (``kind`` plus the task's own keys: ``channels``/``size``/``mean``/``std``, ``columns``, ``vocab`` ...);
#: JSON values, read by key by the task that owns the ``kind``
PreprocessSpec = dict[str, Any]

__all__ = ["PreprocessSpec"]
