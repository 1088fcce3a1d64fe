"""report.html in a real headless browser (Playwright driving Debian's Chromium): the page loads,
the headline and every image render, and nothing overflows a 1280 px wide window."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from procedures.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Chromium as root in a container: no sandbox, no GPU, nothing fetched from the network
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Playwright's deadlines, ms: far above the page's time on a loaded machine
SAFETY_MS = 300_000


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    with sync_api.sync_playwright() as p:
        # Playwright's 30 s default deadlines (launch, load, each query) are only a safety net here:
        # a loaded CI machine must not fail the test by being slow
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, timeout=SAFETY_MS)
        yield b
        b.close()


def test_tune_report_renders_with_headline_images_and_no_overflow(browser, tmp_path):
    out = tmp_path / "tune"
    assert main(["tune", "--size", "6x6", "--seed", "1", "--quiet", "--out", str(out)]) == 0
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(SAFETY_MS)
    page.goto((out / "report.html").as_uri())
    page.wait_for_load_state("load")
    head = page.locator("#headline")
    assert head.is_visible()
    text = head.inner_text()
    assert text.startswith(("Goal met: ", "Goal missed: ")) and "working cells within 1 %" in text
    assert page.title().startswith("Write-verify tuning — tune")
    images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    assert len(images) >= 6
    assert all(done and width > 0 for _, done, width in images), images     # every image decoded
    assert page.locator("figcaption").count() == len(images)
    # nothing wider than the window: no horizontal scrolling, no element past the right edge
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    right = page.evaluate("Math.max(...[...document.body.querySelectorAll('*')]"
                          ".map(e => e.getBoundingClientRect().right))")
    assert right <= 1280
    assert "µS" in page.inner_text("body") and "µJ" in page.inner_text("body")
    page.close()
