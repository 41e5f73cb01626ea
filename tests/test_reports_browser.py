"""The whole report built from stored artifacts, then opened from file:// in headless Chromium.

The browser half needs Debian's `chromium` and `chromium-driver` (make test installs them as
root); without them it skips locally and fails when CI=true. Screenshots of every page land
in artifacts/report-screenshots/ (gitignored).
"""

from __future__ import annotations

import base64
import gc
import re
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from reports import build_report
from tests.conftest import require_command
from tests.reports_fixtures import (
    add_confirmation,
    make_empty,
    make_only_failed,
    make_population_study,
    make_single_objective,
    make_two_objective,
    write_benchmarks,
)

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "artifacts" / "report-screenshots"

# Plot containers each page must hold (what the fixtures allow to be drawn).
EXPECTED_PLOTS = {
    "index.html": 0,
    "benchmarks.html": 3,  # CPU vs CUDA bars, data path bars, trend
    "studies/fashion-lr.html": 9,  # confirmation, history, curves, acc vs img/s, parallel,
    # importance, slice, contour, timeline
    "studies/mnist-pareto.html": 9,  # no curves; Pareto front; one importance per objective
    "studies/fashion-population.html": 8,  # as fashion-lr; curves in fractional epochs, the
    # timeline with a box per population
    "studies/all-failed.html": 1,  # the timeline of the failed trials
    "studies/empty.html": 0,
}

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
    # Any attempt to reach the network fails, and shows up as a console error.
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[str]]:
    """The report folder, and the warnings the build gave."""
    root = tmp_path_factory.mktemp("report")
    storage = JournalStorage(JournalFileBackend(str(root / "optuna-journal.log")))
    add_confirmation(make_single_objective(storage))
    make_two_objective(storage)
    make_population_study(storage)
    make_only_failed(storage)
    make_empty(storage)
    write_benchmarks(root / ".benchmarks")  # with one damaged file
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # objects earlier tests left for the garbage collector (a database connection's
    # ResourceWarning, say) must not be collected inside, and counted as, the build's warnings
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = build_report(
            storage=str(root / "optuna-journal.log"),
            benchmarks_dir=root / ".benchmarks",
            out_dir=root / "out",
        )
    return index.parent, [str(w.message) for w in caught]


def test_build_writes_every_page_offline(report):
    out, messages = report
    # The damaged benchmark file is the only thing warned about: every figure drew.
    assert len(messages) == 1 and "0003_broken" in messages[0], messages
    for page, plots in EXPECTED_PLOTS.items():
        html = (out / page).read_text()
        assert html.count('class="plotly-graph-div"') == plots, page
        # plotly.js comes from beside the pages, never from a CDN.
        assert re.findall(r'<script src="([^"]+)"', html) == [
            "../plotly.min.js" if "/" in page else "plotly.min.js"
        ]
        assert "cdn.plot.ly" not in html
    assert [p.name for p in out.rglob("*.js")] == ["plotly.min.js"]
    study = (out / "studies" / "fashion-lr.html").read_text()
    assert "25%" in study  # ledger: 36 of 48 epochs trained
    assert '<div class="v">36</div><div class="l">epochs trained</div>' in study  # whole: ints
    population = (out / "studies" / "fashion-population.html").read_text()
    # ledger in fractional epochs: 9.2221 of 18 trained; the table's epochs too
    assert '<div class="v">9.22</div><div class="l">epochs trained</div>' in population
    assert "<td>0.11</td>" in population and "<td>gpu-box-101-4</td>" in population


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = require_command("chromium", "chromium")
    chromedriver = require_command("chromedriver", "chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e '.[dev]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_the_confirmation_figure_shows_every_seed(report, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    out, _ = report
    browser.get((out / "studies" / "fashion-lr.html").as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script(
            "return !!document.querySelector('#plot-confirmation svg.main-svg')"
        )
    )
    # 2 configurations x 3 seeds as dots, 2 means, 2 search values: 10 drawn points
    points = browser.execute_script(
        "return document.querySelectorAll('#plot-confirmation .scatterlayer .point').length"
    )
    assert points == 2 * 3 + 2 + 2
    card = browser.find_element("id", "confirmation").text
    assert "confirmed winner" in card and "winner's curse" in card
    assert "3 seeds" in card and "n=6,000" in card


@pytest.mark.slow
def test_pages_render_in_chromium(report, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    out, _ = report
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    queue, seen = [out / "index.html"], set()
    while queue:
        page = queue.pop(0)
        if page in seen:
            continue
        seen.add(page)
        name = page.relative_to(out).as_posix()
        browser.get(page.as_uri())
        # Every plot container gets plotly's SVG once plotly.js has run.
        WebDriverWait(browser, 30).until(
            lambda d: d.execute_script(
                "return document.readyState === 'complete' && Array.from("
                "document.querySelectorAll('.plotly-graph-div')).every("
                "div => div.querySelector('svg.main-svg'))"
            )
        )
        plots = browser.execute_script(
            "return document.querySelectorAll('.plotly-graph-div').length"
        )
        assert plots == EXPECTED_PLOTS[name], name
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, f"console errors on {name}: {errors}"
        _screenshot(browser, SCREENSHOTS / (name.replace("/", "_") + ".png"))
        # Every link stays on disk and resolves; pages are visited in turn.
        for href in browser.execute_script(
            "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"
        ):
            assert href.startswith("file://"), f"{name} links off the machine: {href}"
            target = Path(href.removeprefix("file://").split("#", 1)[0])
            assert target.is_file(), f"{name} links to a missing file: {href}"
            if target.suffix == ".html":
                queue.append(target)
    assert {p.relative_to(out).as_posix() for p in seen} == set(EXPECTED_PLOTS)


@pytest.mark.slow
def test_trials_table_sorts_on_click(report, browser):
    out, _ = report
    browser.get((out / "studies" / "fashion-lr.html").as_uri())
    first_trial = "return document.querySelector('table.sortable tbody td').textContent"
    assert browser.execute_script(first_trial) != "9"  # best first: trial 8
    browser.execute_script("document.querySelector('table.sortable thead th').click()")
    # One click on "trial" sorts descending: the last trial comes first.
    assert browser.execute_script(first_trial) == "9"
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _screenshot(driver, path: Path) -> None:
    """The whole page, not just the window (Chrome DevTools Protocol)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1400, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
