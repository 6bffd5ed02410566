"""Opening campaign reports in a real browser: Debian's Chromium, driven by Playwright.

Playwright's own browser download is not used (nor reachable): the system's
``/usr/bin/chromium`` is launched headless with a fresh profile, and every request that
is not for a ``file:`` URL is blocked and recorded. Without Chromium (or Playwright) the
browser tests are skipped, except under CI (``CI=true``), where they must run.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: How long a report may take to draw in a test (a loaded CI machine is slow).
READY_TIMEOUT_MS = 120_000
VIEWPORT = {"width": 1300, "height": 900}


def why_no_browser() -> str | None:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (install Debian's package: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    return None


@dataclass
class ReportPage:
    """A report opened in the browser, with what went wrong while it loaded."""

    page: Any
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def js(self, expression: str, argument: Any = None) -> Any:
        return self.page.evaluate(expression, argument)

    def pixel(self, x: float, y: float) -> tuple[int, int, int]:
        """The colour at page coordinates (x, y), from a screenshot."""
        from PIL import Image

        png = self.page.screenshot(clip={"x": x, "y": y, "width": 1, "height": 1}, full_page=True)
        red, green, blue, *_ = Image.open(io.BytesIO(png)).convert("RGB").getpixel((0, 0))
        return red, green, blue


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium with a fresh profile; closed however the tests end. Per module:
    Playwright's sync API keeps an asyncio loop running in this thread until it stops,
    and later tests of other modules may run loops of their own (asyncio.run)."""
    problem = why_no_browser()
    if problem is not None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"the browser tests must run under CI: {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    playwright = sync_playwright().start()
    try:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=VIEWPORT,
        )
        try:
            yield context
        finally:
            context.close()
    finally:
        playwright.stop()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def open_report(browser: Any) -> Iterator[Any]:
    """``open_report(path)``: the report loaded and drawn, as a :class:`ReportPage`."""
    pages: list[Any] = []

    def open_page(path: Path, wait: bool = True) -> ReportPage:
        page = browser.new_page()
        pages.append(page)
        opened = ReportPage(page)

        def route(request_route: Any) -> None:
            url = request_route.request.url
            if url.startswith("file:"):
                request_route.continue_()
            else:  # networking is off: nothing but the file itself may load
                opened.blocked.append(url)
                request_route.abort()

        page.route("**/*", route)
        page.on("console", lambda m: m.type == "error" and opened.errors.append(m.text))
        page.on("pageerror", lambda error: opened.errors.append(f"page error: {error}"))
        page.goto(path.resolve().as_uri(), wait_until="commit", timeout=READY_TIMEOUT_MS)
        page.wait_for_load_state("domcontentloaded", timeout=READY_TIMEOUT_MS)
        if wait:
            page.wait_for_function(
                "() => window.goldReport && window.goldReport.ready", timeout=READY_TIMEOUT_MS
            )
        return opened

    yield open_page
    for page in pages:
        page.close()
