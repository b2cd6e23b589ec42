"""``automl lineage``: a file's chain back to its study and trial as a Rich tree; ``automl card``: where
the model card was written. The chain comes from ``automl.lineage.trace``.

Only ``cli.py`` uses this module; library code never prints.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

STATUS_STYLE = {"start": "bold", "verified": "green", "changed": "bold red", "missing": "red", "unreadable": "red",
                "loop": "red", "too deep": "yellow", "not checked": "yellow"}


def _steps(link: dict[str, Any]) -> str:
    out = []
    steps = link.get("steps")
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, dict):
            continue
        settings = step.get("settings") if isinstance(step.get("settings"), dict) else {}
        shown = {k: v for k, v in settings.items() if isinstance(v, (int, float, str, bool)) and k != "space_source"}
        args = ", ".join(f"{k}={v}" for k, v in list(shown.items())[:6])
        out.append(f"{step.get('step')}" + (f" ({args})" if args else ""))
    return "; ".join(out)


def _metrics(link: dict[str, Any]) -> str:
    m = link.get("metrics") if isinstance(link.get("metrics"), dict) else {}
    name = m.get("metric")
    parts = [f"test {name} {m[f'test_{name}']:.4f}"] if isinstance(m.get(f"test_{name}"), (int, float)) else []
    measured = link.get("measured")
    if isinstance(measured, dict) and isinstance(measured.get("value"), (int, float)):
        parts.append(f"measured as {measured.get('variant')}: {measured.get('metric')} {measured['value']:.4f}")
    return ", ".join(parts)


def _label(link: dict[str, Any]) -> str:
    status = str(link.get("status"))
    style = STATUS_STYLE.get(status, "")
    sha = link.get("sha256")
    head = f"[bold]{escape(str(link.get('name')))}[/] [{style}]{escape(status)}[/]" if style else \
        f"[bold]{escape(str(link.get('name')))}[/] {escape(status)}"
    if sha:
        head += f" [dim]sha256 {sha[:12]}…[/]"
    if status == "changed" and link.get("expected_sha256"):
        head += f" [red](recorded {link['expected_sha256'][:12]}…)[/]"
    return head


def lineage_tree(chain: dict[str, Any]) -> Tree:
    """A Rich tree of ``trace`` output: each file under the one made from it, the study at the end."""
    tree = Tree(f"lineage of [bold]{escape(chain['file'])}[/]: " + ("[green]every link verified[/]" if chain["ok"]
                                                                      else "[red]problems found[/]"))
    parents: dict[int, Tree] = {-1: tree}
    for link in chain["links"]:
        depth = int(link.get("depth", 0))
        node = parents.get(depth - 1, tree).add(_label(link))
        for line in (_steps(link), _metrics(link), link.get("path") or "", link.get("error") or ""):
            if line:
                node.add(f"[dim]{escape(str(line))}[/]")
        parents[depth] = node
    study = chain.get("study") or {}
    last = parents.get(max(parents), tree)
    style = STATUS_STYLE.get(str(study.get("status")), "")
    label = (f"study [bold]{escape(str(study.get('name')))}[/] trial {escape(str(study.get('trial')))} "
             f"[{style or 'default'}]{escape(str(study.get('status')))}[/]")
    node = last.add(label)
    for line in (study.get("storage"), study.get("detail")):
        if line:
            node.add(f"[dim]{escape(str(line))}[/]")
    return tree


def print_lineage(chain: dict[str, Any], console: Console | None = None) -> None:
    """``automl lineage``: the tree, then each problem on its own line."""
    console = console or Console()
    console.print(lineage_tree(chain))
    for problem in chain["problems"]:
        console.print(f"[red]problem:[/] {escape(problem)}", soft_wrap=True)


def print_card_written(info: dict[str, Any], console: Console | None = None) -> None:
    """``automl card``: where the model card went."""
    (console or Console()).print(f"model card written: [bold]{escape(str(info['path']))}[/]", soft_wrap=True)
