"""Regenerate the screenshots of the campaign report in docs/_static/ (report-*.png).

Runs a small made-up radiative-transfer sweep with ``pytest --gold --gold-report`` on an
embedded cluster of 4 engines (a case crashes its worker, one runs past its time limit,
one takes its engine down; channel 183.31 fails over snow), then opens the report in
headless Chromium (Debian's ``chromium`` package, driven by Playwright) and photographs
it, whole and section by section. Needs ``pip install -e '.[test]'`` and ``apt-get
install chromium``; takes about a minute::

    python docs/_static/make_report_screenshots.py [--out docs/_static]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Screenshot name -> what it shows (a section of the page, or the top of it).
SHOTS = {
    "report-overview": None,
    "report-run": "section#run",
    "report-timeline": "section#timeline",
    "report-utilisation": "section#utilisation",
    "report-durations": "section#durations",
    "report-failures": "section#failures",
    "report-grid": "section#grid",
}
OVERVIEW_HEIGHT = 900
RUN_TIMEOUT_SECONDS = 900

SWEEP = '''
    """A made-up radiative-transfer sweep: brightness temperatures per channel and scene."""

    import os
    import random
    import signal
    import time
    from pathlib import Path

    import pytest

    CHANNELS = [23.8, 89.0, 165.5, 183.31, 190.31]
    SURFACES = ["ocean", "land", "snow", "ice"]


    @pytest.mark.parametrize("profile", range(8))
    @pytest.mark.parametrize("surface", SURFACES)
    @pytest.mark.parametrize("channel", CHANNELS)
    def test_bt(channel, surface, profile):
        rng = random.Random(f"{channel}-{surface}-{profile}")
        time.sleep(rng.lognormvariate(-1.6, 0.6))
        print(f"simulating {channel} GHz over {surface}, profile {profile}")
        tb = 260 - (150 if channel == 183.31 and surface == "snow" else 0) + rng.gauss(0, 5)
        assert 150 < tb < 320, f"brightness temperature {tb:.1f} K out of range over {surface}"


    def test_scattering_table_segfaults():
        os.kill(os.getpid(), signal.SIGSEGV)


    @pytest.mark.gold(timeout=3)
    def test_cloud_solver_hangs():
        time.sleep(600)


    def test_takes_its_engine_down():
        marker = Path("engine-down-once")
        if not marker.exists():  # the first time only: sent again, it passes elsewhere
            marker.write_text("")
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)
'''


def run_sweep(directory: Path) -> Path:
    (directory / "pytest.ini").write_text("[pytest]\n")
    (directory / "test_rt.py").write_text(textwrap.dedent(SWEEP))
    report = directory / "campaign.html"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "--gold",
        "--gold-engines=4",
        "--gold-report=campaign.html",
        "--gold-report-interval=5",
        "--gold-results=rt.csv",
    ]
    done = subprocess.run(
        command, cwd=directory, timeout=RUN_TIMEOUT_SECONDS, text=True, capture_output=True
    )
    if not report.is_file():
        sys.exit(f"the run left no report:\n{done.stdout}\n{done.stderr}")
    print(done.stdout.strip().splitlines()[-1])
    return report


def photograph(report: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": OVERVIEW_HEIGHT},
            device_scale_factor=1,
        )
        try:
            page = context.new_page()
            page.route(
                "**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort()
            )
            page.goto(report.as_uri())
            page.wait_for_function("() => window.goldReport && window.goldReport.ready")
            # The grid over channel and surface; one failure opened.
            page.locator("#grid-controls select[name='y']").select_option(label="surface")
            page.locator("#failure-table tbody tr.failure").first.click()
            page.wait_for_function("() => Bokeh.documents.every(d => d.is_idle)")
            page.evaluate("() => window.scrollTo(0, 0)")
            for name, selector in SHOTS.items():
                path = out / f"{name}.png"
                if selector is None:
                    page.screenshot(
                        path=path, clip={"x": 0, "y": 0, "width": 1280, "height": OVERVIEW_HEIGHT}
                    )
                else:
                    page.locator(selector).screenshot(path=path)
                print(f"wrote {path}")
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where to write the PNGs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gold-report-shots-") as directory:
        report = run_sweep(Path(directory))
        photograph(report, args.out.resolve())


if __name__ == "__main__":
    main()
