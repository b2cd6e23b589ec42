"""Fixtures of the model-registry tests: the drop-in family folder and one tiny data set per task."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DROP_IN = Path(__file__).parent / "drop_in"


@pytest.fixture
def drop_in_family(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Put ``tests/models/drop_in`` on ``automl.models.__path__``, as if its ``rescnn.py`` were a file of
    the package, and let the registry discover it; removed again afterwards. Yields the family name."""
    import automl.models as pkg
    from automl.models import _registry, list_models, unregister_model

    list_models()  # the built-in families first, so only the drop-in is added below
    monkeypatch.setattr(pkg, "__path__", [*pkg.__path__, str(DROP_IN)])
    monkeypatch.setattr(_registry, "_discovered", False)
    try:
        yield "rescnn"
    finally:
        unregister_model("rescnn")
        sys.modules.pop("automl.models.rescnn", None)


#: families that take other data than their first task's tiny case: family -> (bundle key, DataConfig kwargs)
FAMILY_DATA: dict[str, tuple[str, dict[str, Any]]] = {
    "convae": ("anomaly@digits", {"source": "digits", "normal": ("0",)}),  # images, not the anomaly table
}


def family_bundle_key(family: Any) -> str:
    """The ``task_bundles`` key of the data ``family`` is tested on."""
    return FAMILY_DATA[family.name][0] if family.name in FAMILY_DATA else family.tasks[0]


@pytest.fixture(scope="module")
def task_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """task name -> (task, DataBundle) on the tiny data of ``tests/tasks/test_tasks_registry.py::CASES``,
    loaded on first use."""
    from automl.tasks import DataConfig, get_task
    from tests.tasks.test_tasks_registry import _case

    root = tmp_path_factory.mktemp("family_data")
    cache: dict[str, Any] = {}

    class Bundles(dict):
        def __missing__(self, name: str) -> Any:
            own = next((kw for key, kw in FAMILY_DATA.values() if key == name), None)
            task = get_task(name.split("@")[0])
            cfg = DataConfig(seed=0, **own) if own else DataConfig(source=_case(name).data(root), seed=0)
            cache[name] = (task, task.load_data(cfg))
            return cache[name]

    return Bundles()
