"""The command ends without the interpreter's slow teardown (cli._exit_now) only when the process was
started for it; called in-process, ``cli.main`` raises SystemExit as before (pytest survives)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import cli

REPO = Path(__file__).resolve().parents[1]


def test_in_process_main_still_raises_system_exit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["automl", "trials", "--out-dir", str(tmp_path)])
    assert not cli._is_the_process()
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 1


def test_a_real_process_keeps_its_exit_code_output_and_exit_handlers(tmp_path: Path) -> None:
    # python cli.py: the fast exit path; an exit handler registered before main still runs, and the
    # error line and the exit code are those of the command
    code = ("import atexit, os, runpy, sys; atexit.register(lambda: print('handler ran', file=sys.stderr)); "
            "real = os._exit; os._exit = lambda c: (print(f'fast exit {c}', file=sys.stderr, flush=True), real(c)); "
            f"sys.argv = ['cli.py', 'trials', '--out-dir', {str(tmp_path)!r}]; "
            f"runpy.run_path({str(REPO / 'cli.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("error: no study database"), lines
    assert lines[1:] == ["handler ran", "fast exit 1"], lines
