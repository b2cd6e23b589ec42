"""The report of a digits study opens in headless Chromium with every plot drawn, and no network.

Needs Debian's ``chromium`` (``apt-get install -y chromium``); skipped with that hint otherwise.
Chromium runs with its proxy pointed at a closed port, so a page that fetched plotly.js from a CDN
would draw nothing: drawn plots prove the file is self-contained.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.search.test_moo import moo_run  # noqa: F401 - the multi-objective digits study, shared
from tests.study.test_trials import invoke

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs headless chromium (apt-get install -y chromium)")


def chromium_args(user_data_dir: Path) -> list[str]:
    """Flags for a quiet, offline, sandbox-free headless run (CI containers run as root)."""
    return [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--proxy-server=127.0.0.1:9", f"--user-data-dir={user_data_dir}", "--window-size=1280,2000",
    ]


def rendered_dom(page: Path, tmp_path: Path, budget_ms: int = 20000) -> str:
    """The page's DOM after plotly.js ran (virtual time lets every newPlot finish)."""
    args = [*chromium_args(tmp_path / "chromium-profile"), f"--virtual-time-budget={budget_ms}", "--dump-dom",
            page.resolve().as_uri()]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def figure_chunks(dom: str) -> dict[str, str]:
    """div id -> the DOM from that plot's div to the next plot's."""
    marks = list(re.finditer(r'<div id="(fig-[^"]+)" class="([^"]*)"', dom))
    return {m.group(1): m.group(2) + "|" + dom[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(dom)]
            for i, m in enumerate(marks)}


def test_digits_report_draws_every_plot_in_headless_chromium(digits_run: dict[str, Any], tmp_path: Path) -> None:
    r = invoke("report", "--storage", digits_run["storage_url"], "--study", digits_run["study"],
               "--out", str(tmp_path / "report.html"), "--json")
    assert r.exit_code == 0, r.stderr
    info = json.loads(r.stdout)
    dom = rendered_dom(Path(info["report"]), tmp_path)
    chunks = figure_chunks(dom)
    drawn_sections = {re.sub(r"-\d+$", "", fid.removeprefix("fig-")) for fid in chunks}  # fig-slice-2 -> slice
    assert drawn_sections == set(info["figures"])
    for fid, chunk in chunks.items():
        assert "js-plotly-plot" in chunk.split("|", 1)[0], f"{fid}: plotly.js did not run"
        assert chunk.count('class="main-svg"') >= 2, f"{fid}: no SVG drawn"
        marks = chunk.count('class="point"') + chunk.count('class="hm"') + chunk.count('class="trace')
        assert marks > 0, f"{fid}: axes but no data drawn"
    # one dot per completed trial in the optimisation history; 10 x 10 cells in the confusion matrix
    assert chunks["fig-optimization_history"].count('class="point"') == digits_run["n_complete"]
    assert chunks["fig-confusion_matrix"].count('class="hm"') == 1
    assert chunks["fig-per_class"].count('class="point"') == 3 * 10  # precision, recall, F1 bars per digit
    # the leaderboard: each family's best trial (digits: the default cnn, all 3 trials)
    board = dom[dom.index('<h2 id="leaderboard">'):dom.index("<h2>Trials</h2>")]
    assert re.search(r"<td>cnn</td><td>\d/3</td>", board), board[:500]


def test_multi_objective_report_draws_the_pareto_front(moo_run: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    """The Pareto-front section of an --objectives accuracy,latency study: one dot per completed trial,
    the front's members among them, drawn by plotly.js in the browser."""
    r = invoke("report", "--out-dir", moo_run["out"], "--study", "moo", "--out", str(tmp_path / "moo.html"), "--json")
    assert r.exit_code == 0, r.stderr
    info = json.loads(r.stdout)
    dom = rendered_dom(Path(info["report"]), tmp_path)
    chunks = figure_chunks(dom)
    assert "fig-pareto_front" in chunks and info["figures"][0] == "pareto_front"
    chunk = chunks["fig-pareto_front"]
    assert "js-plotly-plot" in chunk.split("|", 1)[0] and chunk.count('class="main-svg"') >= 2
    assert chunk.count('class="point"') == moo_run["n_complete"] == 5  # front members + the other trials
    section = dom[dom.index('<section id="pareto_front">'):]
    section = section[:section.index("</section>")]
    assert section.count("<tr>") == 1 + len(moo_run["front"])  # the table: a header and one row per member
