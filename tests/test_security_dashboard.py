"""A run folder is data, never markup: HTML or script in what it records stays text.

Group names, knob names, sources, reasons, signal and metric names, config values and the
run folder's own name all carry payloads here. The plain tests read the HTML; the browser
test loads the page in headless Chromium (skipped, with the reason, when none is installed)
and checks that no payload made an element or ran.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("plotly", reason="the dashboard needs the [report] extra (plotly)")

from cadence.report import load_run, render_dashboard, write_dashboard  # noqa: E402
from cadence.report.dashboard import _plain, _script_safe  # noqa: E402

IMG = """<img src=x onerror="document.title='pwned'">"""
SCRIPT = "</script><script>window.pwned=1;document.title='pwned'</script>"
COMMENT = "<!--<script>window.pwned=2</script>"
SVG = "<svg onload=\"window.pwned=3\"><a href=\"javascript:window.pwned=4\">x</a></svg>"
#: tags plotly itself would draw (a live link, bold text) if handed them unescaped
LINK = '<a href="https://evil.invalid/">click</a><b>bold</b>'
#: a folder name cannot hold '/', so the run's own name carries a tag without one
FOLDER = "run<img src=x onerror=window.pwned=5>"
PAYLOADS = (IMG, SCRIPT, COMMENT, SVG, LINK)


def write_hostile_run(root: Path) -> Path:
    """A run folder in the documented format (docs/formats.md) whose every name is hostile."""
    folder = root / FOLDER
    folder.mkdir(parents=True)
    groups = [IMG, SCRIPT, LINK]
    config = {
        "preset": SCRIPT, "total_steps": 100,
        "controllers": [{"name": IMG, "params": {"x": SCRIPT}}],
        "optimizer": {"class": SVG}, "started": COMMENT,
        "groups": [{"name": g, "num_params": 1} for g in groups],
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    events = [
        {"step": 40, "group": g, "knob": "lr", "old": 0.1, "new": 0.05, "source": SCRIPT,
         "reason": f"{IMG} {COMMENT} reason", "signals": {SVG: 1.5, IMG: SCRIPT},
         "kind": "change"}
        for g in groups
    ] + [
        {"step": 60, "group": None, "knob": None, "old": None, "new": None, "source": IMG,
         "reason": SCRIPT, "signals": {}, "kind": "rollback"},
        {"step": 70, "group": COMMENT, "knob": SVG, "old": IMG, "new": SCRIPT, "source": SVG,
         "reason": "odd values", "signals": {}, "kind": IMG},
        # markup where a step belongs: skipped and counted as a malformed line
        {"step": IMG, "group": "g", "knob": "lr", "old": 1, "new": 2, "source": "s",
         "reason": "r", "signals": {}, "kind": "change"},
    ]
    with (folder / "events.jsonl").open("w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event) + "\n")
    with (folder / "metrics.jsonl").open("w", encoding="utf-8") as fh:
        for step in range(0, 100, 5):
            row = {
                "step": step, "loss": 2.0 / (1 + step),
                "values": {g: {"lr": 0.1 / (1 + step), SVG: 0.01 * step} for g in groups},
                "signals": {SVG: float(step % 7), IMG: float(step % 3)},
            }
            if step % 20 == 0:
                row["metrics"] = {IMG: step / 100, f"{SCRIPT} val_loss": 1.0 / (1 + step),
                                  LINK: step / 50}
            fh.write(json.dumps(row) + "\n")
    return folder


# ---- plain HTML checks ------------------------------------------------------------------
def test_no_payload_appears_raw_in_the_html(tmp_path: Path) -> None:
    page = render_dashboard([write_hostile_run(tmp_path)])
    for payload in (*PAYLOADS, FOLDER):
        assert payload not in page, payload
    assert "</script><script>window.pwned" not in page
    assert "<img" not in page.lower()
    assert "<svg onload" not in page.lower()
    # the only script tags are the page's own: two in the head, one per figure, one at the end
    figures = int(re.search(r'data-cadence-figures="(\d+)"', page).group(1))
    assert figures == 5
    assert len(re.findall(r"<script\b", page, re.IGNORECASE)) == 2 + figures + 1
    assert len(re.findall(r"</script", page, re.IGNORECASE)) == 2 + figures + 1
    assert page.count("<!--") == 0
    # and the text is there, escaped, in the event table and the configuration block
    assert "&lt;img src=x onerror=&quot;document.title=&#x27;pwned&#x27;&quot;&gt;" in page
    assert "&lt;/script&gt;&lt;script&gt;window.pwned=1;" in page


def test_markup_in_a_step_is_skipped_as_a_malformed_line(tmp_path: Path) -> None:
    run = load_run(write_hostile_run(tmp_path))
    assert run.bad_lines == 1
    assert all(isinstance(e["step"], int) for e in run.events)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "metrics.jsonl").write_text(
        '{"step": 1, "signals": "<b>not a table</b>"}\n{"step": 2, "loss": 1.0}\n')
    assert load_run(tmp_path / "x").bad_lines == 1


def test_plotly_strings_are_escaped_for_plotlys_html_subset() -> None:
    assert _plain(IMG) == """&lt;img src=x onerror="document.title='pwned'"&gt;"""
    assert _plain("a &lt; b") == "a &amp;lt; b"  # shown as written, not as an entity
    assert _plain(None) == "None"


def test_a_figure_script_that_could_close_early_is_refused() -> None:
    good = '<div id="f"></div><script>Plotly.newPlot("f", [{"name":"\\u003c"}])</script>'
    assert _script_safe(good) == good
    for breaker in ("</script><script>x()", "<!--", "<SCRIPT>", "\u2028"):
        bad = f'<div></div><script>Plotly.newPlot("f", [{{"name":"{breaker}"}}])</script>'
        with pytest.raises(RuntimeError, match="escaping"):
            _script_safe(bad)


# ---- in a browser -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> str:
    from test_dashboard_browser import find_chromium

    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium); browser test skipped")
    return path


#: Appended to the page by the test: reports, after everything ran, what a payload could set.
PROBE = """<script>
document.body.setAttribute("data-probe-pwned", String(window.pwned));
document.body.setAttribute("data-probe-title", document.title);
document.body.setAttribute("data-probe-imgs", String(document.querySelectorAll("img").length));
document.body.setAttribute("data-probe-live", String(document.querySelectorAll(
  "[onerror], [onload], [onmouseover], [href^='javascript'], [*|href^='javascript'], " +
  "[href*='evil.invalid'], [*|href*='evil.invalid']").length));
document.body.setAttribute("data-probe-scripts",
  String(document.querySelectorAll("script").length));
</script>"""


def test_payloads_stay_text_in_headless_chromium(browser: str, tmp_path: Path) -> None:
    from test_dashboard_browser import CHROMIUM_FLAGS

    page = write_dashboard([write_hostile_run(tmp_path / "runs")], tmp_path / "dashboard.html")
    text = page.read_text(encoding="utf-8")
    page.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout

    # every figure drew, and no script error happened
    assert 'data-cadence-rendered="5"' in dom
    assert "CADENCE_JS_ERROR" not in dom
    # nothing ran: no global set, the title unchanged, no element made from the data
    assert 'data-probe-pwned="undefined"' in dom
    title = re.search(r'data-probe-title="([^"]*)"', dom).group(1)
    assert html.unescape(title) == f"cadence · {FOLDER}"  # the folder name, as text
    assert 'data-probe-imgs="0"' in dom
    assert 'data-probe-scripts="9"' in dom  # 2 in the head + 5 figures + 1 at the end + probe
    assert not re.search(r"<img\b", dom, re.IGNORECASE)
    assert not re.search(r"<svg onload", dom, re.IGNORECASE)
    assert 'data-probe-live="0"' in dom  # no element with a handler or a javascript: link
    # the text is shown as written: in the page (event table, config) ...
    assert "&lt;img src=x onerror=\"document.title='pwned'\"&gt;" in dom
    assert "&lt;/script&gt;&lt;script&gt;window.pwned=1;" in dom
    # ... and inside plotly's SVG (legend, panel titles, category labels), as text nodes
    svg_text = " ".join(re.findall(r"<text\b[^>]*>(.*?)</text>", dom, re.DOTALL))
    assert "&lt;img src=x onerror=" in svg_text
    assert "&lt;svg onload=" in svg_text
    assert "&lt;/script&gt;&lt;script&gt;window.pwned=1;" in svg_text
    assert html.escape(LINK, quote=False) in svg_text
    assert not re.search(r"<tspan[^>]*font-weight:\s*bold[^>]*>bold<", dom)  # <b> not drawn
