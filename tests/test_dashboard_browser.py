"""The dashboard in a real browser: headless Chromium must draw every figure, with no JS error.

Skipped (with the reason) when no Chromium is installed; CI installs Debian's ``chromium``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("plotly", reason="the dashboard needs the [report] extra (plotly)")

from cadence.report import write_dashboard  # noqa: E402
from test_dashboard import write_synthetic_run  # noqa: E402

#: Flags that keep Chromium from reaching the network or needing a GPU/sandbox.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions",
)


def find_chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def dump_dom(browser: str, page: Path, profile: Path) -> str:
    result = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def browser() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium); browser test skipped")
    return path


def test_every_figure_renders_in_headless_chromium(browser: str, tmp_path: Path) -> None:
    runs = [write_synthetic_run(tmp_path / "base", preset="cosine"),
            write_synthetic_run(tmp_path / "cadence")]
    page = write_dashboard(runs, tmp_path / "dashboard.html")
    dom = dump_dom(browser, page, tmp_path / "profile")

    expected = int(re.search(r'data-cadence-figures="(\d+)"', dom).group(1))
    assert expected == 5
    # plotly turned each figure div into a plot container with its SVG layers
    assert dom.count('class="plot-container plotly"') == expected
    assert dom.count('class="main-svg"') >= expected
    # the page's own check (run after the figures): every graph div holds a main-svg
    assert f'data-cadence-rendered="{expected}"' in dom
    # no uncaught JS error was reported by the handler installed before plotly.js
    assert '<pre id="cadence-js-errors"></pre>' in dom
    assert "CADENCE_JS_ERROR" not in dom
    # the curves are drawn as SVG paths, and the event markers as points
    assert dom.count('class="js-line"') >= 4
    assert dom.count('class="point"') >= 4


def test_the_render_check_catches_a_broken_figure(browser: str, tmp_path: Path) -> None:
    """The checks above can fail: break one figure's script and they must notice."""
    page = write_dashboard([write_synthetic_run(tmp_path / "a")], tmp_path / "dashboard.html")
    text = page.read_text()
    page.write_text(text.replace("Plotly.newPlot(", "Plotly.noSuchCall(", 1))
    dom = dump_dom(browser, page, tmp_path / "profile")
    assert 'data-cadence-rendered="4"' in dom
    assert "CADENCE_JS_ERROR" in dom and "noSuchCall" in dom
