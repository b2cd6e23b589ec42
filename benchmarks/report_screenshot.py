"""Render an `automl report` in headless Chromium, offline, and save a full-page screenshot.

    python benchmarks/report_screenshot.py                       # a fresh 6-trial digits search first
    python benchmarks/report_screenshot.py --storage sqlite:///runs/automl.db --study image-digits

Prints, for every plot of the report, whether plotly drew it (SVG with data marks in the rendered
DOM) and writes report.html, dom.html and report.png (open the PNG to look at the plots). Chromium's
proxy points at a closed port, so the page must be self-contained to draw anything.
Needs Debian's chromium: apt-get install -y chromium.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--proxy-server=127.0.0.1:9", "--hide-scrollbars"]


def chromium(browser: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=180)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", help="study storage URL (default: run a small digits search first)")
    ap.add_argument("--study", help="study name (default: the storage's only study)")
    ap.add_argument("--out", default="runs/report-screenshot", help="folder for report.html, dom.html, report.png")
    ap.add_argument("--width", type=int, default=1300)
    ap.add_argument("--height", type=int, default=7000)
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium not found: apt-get install -y chromium", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage, study = args.storage, args.study
    if storage is None:
        from automl.study import SearchSettings, run_search

        t = time.perf_counter()
        result = run_search(SearchSettings(task="image", trials=6, epochs=4, pruner="median", out=str(out / "search"),
                                           device="cpu", seed=1))
        storage, study = result.storage, result.study
        print(f"search: {result.counts} in {time.perf_counter() - t:.1f} s")

    from automl.report import write_report
    from automl.study.trials import load_study

    t = time.perf_counter()
    report = write_report(load_study(storage, study), out / "report.html")
    print(f"report: {report.path} ({report.bytes / 1e6:.1f} MB) in {time.perf_counter() - t:.1f} s")
    uri = Path(report.path).resolve().as_uri()

    t = time.perf_counter()
    proc = chromium(browser, "--virtual-time-budget=20000", "--dump-dom", uri)
    dom = proc.stdout
    (out / "dom.html").write_text(dom, encoding="utf-8")
    print(f"dump-dom: {len(dom) / 1e6:.1f} MB in {time.perf_counter() - t:.1f} s (exit {proc.returncode})")
    marks = list(re.finditer(r'<div id="(fig-[^"]+)" class="([^"]*)"', dom))
    ok = bool(marks)
    print(f"{'plot':<28} {'plotly ran':>10} {'svg':>4} {'marks':>6}")
    for i, m in enumerate(marks):
        chunk = dom[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(dom)]
        ran = "js-plotly-plot" in m.group(2)
        svg = chunk.count('class="main-svg"')
        n = chunk.count('class="point"') + chunk.count('class="hm"') + chunk.count('class="trace')
        ok &= ran and svg > 0 and n > 0
        print(f"{m.group(1):<28} {str(ran):>10} {svg:>4} {n:>6}")

    t = time.perf_counter()
    png = out / "report.png"
    proc = chromium(browser, "--virtual-time-budget=20000", f"--window-size={args.width},{args.height}",
                    f"--screenshot={png.resolve()}", uri)
    print(f"screenshot: {png} in {time.perf_counter() - t:.1f} s (exit {proc.returncode})")
    print("all plots drawn" if ok else "SOME PLOTS ARE NOT DRAWN")
    return 0 if ok and png.is_file() else 1


if __name__ == "__main__":
    sys.exit(main())
