"""report.html and compare.html in a real browser (headless Chromium over DevTools).

Skipped only when chromium is absent outside CI; in CI (CI=true) a missing chromium fails.
"""

from __future__ import annotations

import json
import os

import pytest
from cdp import Page, chromium_path  # tests/cdp.py (tests/ is on sys.path)

from spikefed.config import load_config
from spikefed.report.compare import write_comparison
from spikefed.sim import Simulation

TINY = ["train.rounds=2", "data.num_clients=3", "model.T=2", "data.test_subset=100",
        "train.batch_size=64"]

FIGURE_SIZES = """Array.from(document.querySelectorAll("figure.fig")).map(function (f) {
  var g = f.querySelector("svg, img"), r = g.getBoundingClientRect();
  return {name: f.dataset.figure, w: r.width, h: r.height,
          loaded: g.tagName.toLowerCase() === "svg" || (g.complete && g.naturalWidth > 0)};
})"""


@pytest.fixture(scope="module")
def browser_ready() -> None:
    if chromium_path() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); required in CI")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    dirs = []
    for lr in (0.02, 0.1):
        cfg = load_config(None, TINY + [f"train.lr={lr}", f"name=lr{lr}"])
        Simulation(cfg, root / f"lr{lr}").run()
        dirs.append(root / f"lr{lr}")
    return root, dirs


def _check_page(page: Page, url: str, shot) -> list[dict]:
    page.open(url)
    figures = page.evaluate(FIGURE_SIZES)
    page.screenshot(shot)
    assert page.errors == [], f"console errors on {url}: {page.errors}"
    assert page.requests == [], f"the page fetched from the network: {page.requests}"
    assert figures, f"no figures on {url}"
    for fig in figures:
        assert fig["loaded"] and fig["w"] > 50 and fig["h"] > 50, f"figure not rendered: {fig}"
    assert shot.stat().st_size > 10_000
    return figures


def test_report_renders_and_matches_summary(browser_ready, runs, tmp_path) -> None:
    _, dirs = runs
    run_dir = dirs[1]
    summary = json.loads((run_dir / "summary.json").read_text())
    with Page(tmp_path / "profile") as page:
        figures = _check_page(page, (run_dir / "report.html").as_uri(), tmp_path / "report.png")
        shown = page.evaluate("""Object.fromEntries(Array.from(
            document.querySelectorAll("[data-summary]")).map(function (td) {
              return [td.dataset.summary, td.textContent.trim()]; }))""")
        # clicking a header sorts the per-client table by that column
        page.evaluate('document.querySelector("#clients th:nth-child(3)").click()')
        accs = page.evaluate("""Array.from(document.querySelectorAll("#clients tbody tr"))
            .map(function (tr) { return parseFloat(tr.cells[2].dataset.value); })""")
    names = {f["name"] for f in figures}
    assert {"accuracy", "loss", "bytes", "energy", "participation", "partition"} <= names
    for key in ("final_server_acc", "best_server_acc", "final_client_acc_mean",
                "total_bytes_up", "total_bytes_down", "rounds", "wall_s"):
        text = shown[key].replace(",", "")
        decimals = len(text.split(".")[1]) if "." in text else 0
        assert abs(float(text) - summary[key]) <= 0.5 * 10 ** -decimals + 1e-12, key
    assert len(accs) == 3 and accs == sorted(accs)
    last = [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())][-1]
    assert sorted(accs) == sorted(c["acc"] for c in last["clients"])


def test_compare_renders_and_names_the_best(browser_ready, runs, tmp_path) -> None:
    root, dirs = runs
    html_path, _ = write_comparison([root], tmp_path / "cmp")
    best = max(dirs, key=lambda d: json.loads((d / "summary.json").read_text())[
        "final_server_acc"])
    with Page(tmp_path / "profile") as page:
        figures = _check_page(page, html_path.as_uri(), tmp_path / "compare.png")
        verdict = page.evaluate('document.getElementById("verdict").textContent')
        highlighted = page.evaluate('document.querySelector("#runs tr.best td").textContent')
    assert {f["name"] for f in figures} == {"round", "bytes", "wall"}
    assert verdict.startswith(f"Best: {best.name} ")
    assert highlighted == best.name


def test_harness_sees_errors_network_and_missing_figures(browser_ready, tmp_path) -> None:
    """The checks above can fail: a script error and a remote image are caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><figure class="fig" data-figure="x">'
                   '<img src="http://127.0.0.1:9/none.png"></figure>'
                   "<script>undefinedFunction()</script></body></html>")
    with Page(tmp_path / "profile") as page:
        page.open(bad.as_uri())
        figures = page.evaluate(FIGURE_SIZES)
    assert any("undefinedFunction" in e for e in page.errors)
    assert page.requests == ["http://127.0.0.1:9/none.png"]
    assert not figures[0]["loaded"]
