"""The user docs (README.md and docs/*.md) stay true of the code: their links resolve, and every
``automl …`` command they show uses a real command and real options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

import cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
GLOBAL_OPTIONS = {"--verbose", "-v", "--version", "--help", "-h"}


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def _options() -> dict[str, set[str]]:
    """Each command's option names, from the Typer app itself."""
    group = typer.main.get_command(cli.app)
    return {name: {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}
            for name, cmd in group.commands.items()}


def _commands(page: Path) -> list[str]:
    """``automl …`` command lines: in fenced code blocks (with ``\\`` continuations joined) and in
    inline code spans."""
    text = page.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"^\$ ", "", line.strip())
            if line.startswith("automl "):
                found.append(line)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    found += [m for m in re.findall(r"`(automl [^`]+)`", prose)]
    return found


def test_pages_exist_and_readme_is_short() -> None:
    names = {p.name for p in PAGES}
    for page in ("install.md", "search.md", "tasks.md", "compress.md", "serve.md", "scale-out.md",
                 "security.md", "troubleshooting.md", "benchmarks.md"):
        assert page in names
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150


def test_readme_starts_with_the_two_commands() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    assert blocks[0].strip() == ("python3 -m venv .venv && . .venv/bin/activate && "
                                 "pip install --no-compile -e . && automl search --task image")
    assert blocks[1].strip() == "pip install -e '.[dev]' && python -m pytest"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: broken link {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name}: no heading for #{anchor} in {dest.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_commands_use_real_options(page: Path) -> None:
    options = _options()
    for line in _commands(page):
        line = line.split(" #")[0].replace("…", " ")
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        args = [w for w in words[1:] if w not in GLOBAL_OPTIONS]
        if not args or not re.fullmatch(r"[a-z]+", args[0]):
            continue  # not a command line: "automl 0.1.0 requires …", "automl --version"
        name = args[0]
        assert name in options, f"{page.name}: unknown command in {line!r}"
        for word in args[1:]:
            if word in ("&&", "|", ";", "or"):
                break
            flag = word.split("=")[0].split("[")[0]
            if flag.startswith("--") and len(flag) > 2:
                assert flag in options[name], f"{page.name}: automl {name} has no option {flag} ({line!r})"


def test_architecture_names_every_package_and_stage() -> None:
    """ARCHITECTURE.md's tree stays true: every subpackage of automl/ and every built-in compress
    stage file is named in it, and every module it lists directly under automl/ exists."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for pkg in sorted(p.parent.name for p in (ROOT / "automl").glob("*/__init__.py")):
        assert f"  {pkg}/" in text, f"ARCHITECTURE.md does not name automl/{pkg}/"
    for stage in sorted((ROOT / "compress" / "stages").glob("[!_]*.py")):
        assert f"`{stage.stem}` (" in text or f"{stage.stem} (" in text, f"ARCHITECTURE.md misses stage {stage.stem}"
    top = re.search(r"^  exceptions\.py.*$", text, flags=re.M)
    assert top is not None
    for name in top.group(0).split():
        assert (ROOT / "automl" / name).is_file(), f"ARCHITECTURE.md lists automl/{name}, which does not exist"
