"""Nothing outside ``automl/tasks/`` branches on a task's name or kind (issue 25): a task owns its
knowledge, so a new task is one new file. The scan is the issue's own grep; the lines it may still
find are the plug-in seams and formats listed in ``ALLOWED``, each with the reason."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PATTERN = re.compile(r'"(image|tabular|text)"|task ?== ?|metric ?[!=]= ?"rmse"')

#: (path prefix, line regex, why it is not a branch on a task)
ALLOWED: list[tuple[str, str, str]] = [
    ("automl/models/", r'^\s*tasks = \("(image|tabular|text)",\)$', "a family declares the tasks it fits (the seam)"),
    ("automl/data/", r".", "the preprocessing specs' 'kind' is the artifact format; 'text' is a column name"),
    ("automl/study/_settings.py", r'^\s*task: str = "image"$', "the default --task"),
    ("cli.py", r'typer\.Option\("--task".*= "image",$', "the default --task"),
    ("automl/api/_search.py", r'^DEFAULT_MEMORY_TASK = "tabular"$', "the documented task of in-memory data"),
    ("automl/", r"^\s*>>> ", "a docstring example calls the API with a task; it branches on nothing"),
]


def test_no_module_outside_tasks_branches_on_a_tasks_name() -> None:
    files = [REPO / "cli.py", *sorted((REPO / "automl").rglob("*.py")), *sorted((REPO / "compress").rglob("*.py"))]
    found = []
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("automl/tasks/"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if PATTERN.search(line) and not any(rel.startswith(p) and re.search(rx, line) for p, rx, _ in ALLOWED):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "branches on a task's name outside automl/tasks/ (ask the Task instead):\n" + "\n".join(found)
