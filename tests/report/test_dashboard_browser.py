"""The dashboard and the HTML report in real headless Chromium: load, pick a server, see its chart, no errors."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_lake import report_file

from capacity_forecaster.config import Settings
from capacity_forecaster.report.dashboard import create_app, server_for
from capacity_forecaster.report.plotly_bundle import TRACE_TYPES
from capacity_forecaster.report.stage import HTML_FILE
from capacity_forecaster.storage import Lake

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
         "--window-size=1500,1800")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="Debian chromium + chromium-driver are not installed (make test installs them)"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.TemporaryDirectory(prefix="capfc-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile.name}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        profile.cleanup()


@pytest.fixture(scope="module")
def dashboard_url(report_lake: Lake) -> Iterator[str]:
    server = server_for(create_app(report_lake, Settings()), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def test_dashboard_shows_the_stored_what_if(browser: Any, whatif_report) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    lake, _ = whatif_report
    server = server_for(create_app(lake, Settings(), warm=False), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_port}/")
        wait = WebDriverWait(browser, 90)
        wait.until(lambda d: d.find_elements(By.ID, "scenario-banner"))
        banner = browser.find_element(By.ID, "scenario-banner").text
        assert "Stored what-if scenario: growth-20pct: growth +20 %/year" in banner
        assert "earliest breach" in banner and "servers at risk (medium or worse)" in banner
        next(t for t in browser.find_elements(By.CSS_SELECTOR, ".tab") if t.text == "What-if scenario").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#scenario-table td[data-dash-column='change']"))
        first = browser.find_element(By.CSS_SELECTOR, "#scenario-table td[data-dash-column='change']").text
        assert first == "worse"  # most affected first
        assert _severe(browser) == []
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def _severe(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _title(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    titles = driver.find_elements(By.CSS_SELECTOR, "#server-graph .gtitle")
    return titles[0].text if titles else ""


def test_pick_a_server_in_the_risk_table_and_see_its_chart(browser: Any, dashboard_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(dashboard_url)
    wait = WebDriverWait(browser, 90)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#risk-table td[data-dash-column='server_id']"))
    wait.until(lambda d: _title(d).startswith("srv-0001 "))  # the riskiest series is shown first
    row = next(cell for cell in browser.find_elements(By.CSS_SELECTOR, "#risk-table td[data-dash-column='metric']")
               if cell.text == "memory" and cell.find_element(By.XPATH, "..").text.split()[1] == "srv-0002")
    row.click()
    wait.until(lambda d: _title(d).startswith("srv-0002 (nyc-prd-app02): Memory - model Seasonal decomposition"))
    facts = browser.find_element(By.ID, "server-facts").text
    assert "high" in facts and "MASE" in facts

    thumb = browser.find_element(By.CSS_SELECTOR, "#growth [role=slider]")
    thumb.send_keys(*[Keys.ARROW_RIGHT] * 6)  # six steps of 5 % on the what-if slider
    wait.until(lambda d: "growth +30 %" in d.find_element(By.ID, "kpis").text.lower())
    wait.until(lambda d: "what-if +30 %" in d.find_element(By.ID, "server-graph").text)
    ARTIFACTS.mkdir(exist_ok=True)
    time.sleep(0.5)  # let the graph transition finish before the screenshot
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    _no_upload_button(browser)
    # Every tab's charts (the fleet tab's heatmap and accuracy box were built apart from the others).
    for name in [t.text for t in browser.find_elements(By.CSS_SELECTOR, ".tab")]:
        next(t for t in browser.find_elements(By.CSS_SELECTOR, ".tab") if t.text == name).click()
        wait.until(lambda d, name=name: next(t for t in d.find_elements(By.CSS_SELECTOR, ".tab--selected")).text
                   == name)
        time.sleep(1.0)  # the tab's graphs draw their modebars
        if browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"):
            _no_upload_button(browser)
    # helper-73: at 800-1024 px "Recommendations" ran out of its tab into "What-if scenario".
    size = browser.get_window_size()
    try:
        for width in (800, 1024):
            browser.set_window_size(width, 1000)
            time.sleep(0.3)
            spill = browser.execute_script("return Array.from(document.querySelectorAll('.tab'), "
                                           "t => t.scrollWidth - t.clientWidth);")
            assert len(spill) == 6 and max(spill) <= 1, (width, spill)
    finally:
        browser.set_window_size(size["width"], size["height"])
    assert _severe(browser) == []


_MODEBAR = "return Array.from(document.querySelectorAll('.modebar-btn'), b => b.getAttribute('data-title'));"


def _no_upload_button(driver: Any) -> None:
    """plotly.js 3 adds a "Share chart..." button that uploads the chart (server ids, utilisation) to Plotly Cloud
    after one confirm (helper-73); no chart may have it, or Chart Studio's."""
    titles = driver.execute_script(_MODEBAR)
    assert "Download plot as a PNG" in titles  # the modebar is drawn, so its absence below means something
    assert not [t for t in titles if "share" in t.lower() or "chart studio" in t.lower() or "cloud" in t.lower()]


_COLUMN = """
return Array.from(document.querySelectorAll("#risk-table td[data-dash-column='" + arguments[0] + "']"),
                  c => c.innerText);
"""


def test_risk_table_pages_sorts_and_filters_on_the_server(browser: Any, dashboard_url: str, report_lake: Lake) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    risk = report_lake.read_table("server_risk")
    page_size = Settings().dashboard.page_size
    assert len(risk) > 2 * page_size  # three pages

    def column(name: str) -> list[str]:
        return browser.execute_script(_COLUMN, name)

    browser.get(dashboard_url)
    wait = WebDriverWait(browser, 90)
    wait.until(lambda d: len(column("rank")) == page_size)
    assert column("rank") == [str(i) for i in range(1, page_size + 1)]  # the first page only was sent
    browser.find_element(By.CSS_SELECTOR, "#risk-table button.next-page").click()
    wait.until(lambda d: column("rank")[:1] == [str(page_size + 1)])
    assert column("rank") == [str(i) for i in range(page_size + 1, 2 * page_size + 1)]
    # Filter on the server: type as a user does in the Risk column's filter cell.
    box = browser.find_element(By.CSS_SELECTOR, "#risk-table th.dash-filter[data-dash-column='risk_level'] input")
    box.send_keys("high", Keys.ENTER)
    high = int((risk["risk_level"] == "high").sum())
    assert 0 < high < page_size
    wait.until(lambda d: column("risk_level") == ["high"] * high)
    # A number filter and a sort, together (on a fresh page): days to breach above 0, earliest breach first.
    browser.get(dashboard_url)
    wait.until(lambda d: len(column("rank")) == page_size)
    days = browser.find_element(By.CSS_SELECTOR, "#risk-table th.dash-filter[data-dash-column='days_to_breach'] input")
    days.send_keys(">0", Keys.ENTER)
    expected = risk["days_to_breach"].dropna()
    expected = sorted(int(v) for v in expected[expected > 0])
    wait.until(lambda d: len(column("days_to_breach")) == min(page_size, len(expected)))
    sort = "#risk-table th.dash-header[data-dash-column='days_to_breach'] .column-header--sort"
    browser.find_element(By.CSS_SELECTOR, sort).click()  # ascending
    wait.until(lambda d: [int(float(v)) for v in column("days_to_breach")] == expected[:page_size])
    browser.find_element(By.CSS_SELECTOR, sort).click()  # descending
    wait.until(lambda d: [int(float(v)) for v in column("days_to_breach")] == expected[::-1][:page_size])
    assert _severe(browser) == []


_TABLE_COLUMN = """
return Array.from(document.querySelectorAll("#" + arguments[0] + " td[data-dash-column='" + arguments[1] + "']"),
                  c => c.innerText);
"""


def test_recommendations_table_pages_and_filters_on_the_server(browser: Any, report_lake: Lake) -> None:
    from capacity_forecaster.config import DashboardConfig

    recs = report_lake.read_table("recommendations")
    page_size = 5
    assert len(recs) > page_size  # two pages
    server = server_for(create_app(report_lake, Settings(dashboard=DashboardConfig(page_size=page_size)), warm=False),
                        "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _page_and_filter_recommendations(browser, f"http://127.0.0.1:{server.server_port}/", recs, page_size)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def _page_and_filter_recommendations(browser: Any, url: str, recs: Any, page_size: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def servers() -> list[str]:
        return browser.execute_script(_TABLE_COLUMN, "savings-table", "server_id")

    browser.get(url)
    wait = WebDriverWait(browser, 90)
    tab = wait.until(lambda d: next((t for t in d.find_elements(By.CSS_SELECTOR, ".tab")
                                     if t.text == "Recommendations"), None))
    tab.click()
    ordered = recs.sort_values("monthly_savings", ascending=False, kind="stable")["server_id"].tolist()
    wait.until(lambda d: servers() == ordered[:page_size])  # the first page only was sent
    # Rationales wrap whole in their cells (helper-73: cut at 360 px with an ellipsis nobody could open).
    # (The fixture's rationales are short: the cells' style says they wrap.)
    wrapping = browser.execute_script("""return Array.from(document.querySelectorAll(
        "#savings-table td[data-dash-column='rationale']"), d => getComputedStyle(d).whiteSpace);""")
    assert wrapping and set(wrapping) == {"normal"}
    browser.find_element(By.CSS_SELECTOR, "#savings-table button.next-page").click()
    wait.until(lambda d: servers() == ordered[page_size:2 * page_size])
    box = browser.find_element(By.CSS_SELECTOR, "#savings-table th.dash-filter[data-dash-column='action'] input")
    box.send_keys("keep", Keys.ENTER)
    kept = recs[recs["action"] == "keep"].sort_values("monthly_savings", ascending=False, kind="stable")
    assert 0 < len(kept)
    wait.until(lambda d: servers() == kept["server_id"].tolist()[:page_size])
    assert _severe(browser) == []


# Every chart placeholder holds a drawn chart (plotly's SVG, or a canvas for WebGL traces).
_ALL_DRAWN = """
var divs = document.querySelectorAll("div.chart");
if (!divs.length) return false;
for (var i = 0; i < divs.length; i++) { if (!divs[i].querySelector(".main-svg, canvas")) return false; }
return true;
"""


def test_html_report_loads_offline(browser: Any, full_report) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    _, result = full_report
    browser.get(report_file(result, HTML_FILE).as_uri())
    wait = WebDriverWait(browser, 90)
    wait.until(lambda d: d.execute_script(_ALL_DRAWN))
    wait.until(lambda d: d.execute_script("return document.body.classList.contains('charts-ready')"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "div.chart")) == 6
    registered = set(browser.execute_script("return Object.keys(Plotly.PlotSchema.get().traces)"))
    assert TRACE_TYPES <= registered  # the vendored bundle holds every trace type the report may use
    titles = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "div.chart .gtitle")]
    assert "srv-0001 (nyc-prd-app01) CPU: critical risk, breach 2026-07-20" in titles
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "html_report.png"))
    _no_upload_button(browser)
    pick = Select(browser.find_element(By.CSS_SELECTOR, "select.chart-pick"))
    pick.select_by_index(1)  # the second riskiest series replaces the first in the same chart
    wait.until(lambda d: any(t.text.startswith("srv-0002 (nyc-prd-app02) Memory: high risk")
                             for t in d.find_elements(By.CSS_SELECTOR, "div.chart .gtitle")))
    assert _severe(browser) == []


@pytest.fixture(scope="module")
def two_scenarios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, Lake]]:
    """A dashboard (warm-up thread on) over a lake whose real risk stage stored two what-ifs: +20 %/year
    (ramped) then a -30 % step (the most recent, shown first); the slider is a step change too, so +50 %
    moves the fixture's 90-day horizon clearly."""
    from report_lake import build_whatif_lake

    from capacity_forecaster.stages.risk import risk_stage

    lake = build_whatif_lake(tmp_path_factory.mktemp("two-scenarios") / "lake")
    settings = Settings().model_copy(update={"risk": Settings().risk.model_copy(update={"growth_ramp": False})})
    risk_stage(lake, settings, growth=-30.0)
    app = create_app(lake, settings)
    server = server_for(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", app.state, lake
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


_CARDS = """
return Array.from(document.querySelectorAll("#kpis > div"), c => Array.from(c.children, p => p.innerText));
"""


def _card(driver: Any, label: str) -> tuple[str, str, str]:
    """(label, value, note) of the KPI card whose label starts with ``label`` (any case); read in one
    script, so a re-render between reads cannot leave a stale element."""
    for parts in driver.execute_script(_CARDS):
        if len(parts) == 3 and parts[0].lower().startswith(label.lower()):
            return parts[0], parts[1], parts[2]
    return "", "", ""


def _mark(driver: Any, text: str) -> None:
    """Click the slider where its mark ``text`` is drawn (as a user does: the slider under it takes the click)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    # Dash 4 draws the marks as .dash-slider-mark (rc-slider, before it, as .rc-slider-mark-text).
    from selenium.webdriver.support.ui import WebDriverWait

    def found(d: Any) -> Any:
        marks = d.find_elements(By.CSS_SELECTOR, "#growth .rc-slider-mark-text, #growth .dash-slider-mark")
        return next((m for m in marks if m.text == text), False)

    # The cards can be filled before the slider's marks are drawn: wait for the mark itself.
    ActionChains(driver).move_to_element(WebDriverWait(driver, 30).until(found)).click().perform()


def test_slider_moves_savings_and_upsizes(browser: Any, two_scenarios: tuple[str, Any, Lake]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from capacity_forecaster.report.text import money

    url, state, _lake = two_scenarios
    base, grown, shrunk = state.savings(0.0), state.savings(50.0), state.savings(-30.0)
    assert base.upsizes == 3 and shrunk.upsizes == 0 and money(grown.net) != money(base.net)
    browser.get(url)
    wait = WebDriverWait(browser, 90)
    wait.until(lambda d: _card(d, "Net savings / month")[1] == money(base.net))
    assert _card(browser, "Upsizes")[1] == "3"
    _mark(browser, "+50 %")
    wait.until(lambda d: _card(d, "Net savings / month (growth +50 %)")[1] == money(grown.net))
    assert _card(browser, "Net savings / month")[2].startswith(f"base {money(base.net)}")
    assert _card(browser, "Upsizes (growth +50 %)")[1:] == ("3", "base 3")
    next(t for t in browser.find_elements(By.CSS_SELECTOR, ".tab") if t.text == "Recommendations").click()
    wait.until(lambda d: "+50 % growth" in d.find_element(By.ID, "savings-heading").text)
    _mark(browser, "-30 %")
    wait.until(lambda d: _card(d, "Upsizes (growth -30 %)")[1:] == ("0", "base 3"))
    assert _card(browser, "Net savings / month")[1] == money(shrunk.net)
    wait.until(lambda d: "-30 % growth" in d.find_element(By.ID, "savings-heading").text)
    actions = {c.text for c in browser.find_elements(By.CSS_SELECTOR, "#savings-table td[data-dash-column='action']")}
    assert "upsize" not in actions and "consolidate" in actions
    assert _severe(browser) == []


def test_pick_a_stored_scenario_and_see_the_lakes_numbers(browser: Any, two_scenarios: tuple[str, Any, Lake]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from capacity_forecaster.report.text import money

    url, state, lake = two_scenarios
    name = "growth-20pct"
    assert state.scenario_names[0] != name  # the older one: picking it changes what the tab shows
    comparison = lake.read_table("risk_comparison").query("scenario == @name")
    stored = lake.read_table("scenario_recommendations")
    recs = stored.query("scenario == @name")
    assert money(recs["monthly_savings"].sum()) != money(stored.query("scenario != @name")["monthly_savings"].sum())
    at_risk = comparison[comparison["scenario_risk_level"].isin(["medium", "high", "critical"])]["server_id"].nunique()
    browser.get(url)
    wait = WebDriverWait(browser, 90)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".tab"))
    next(t for t in browser.find_elements(By.CSS_SELECTOR, ".tab") if t.text == "What-if scenario").click()
    wait.until(lambda d: d.find_elements(By.ID, "scenario-pick"))
    browser.find_element(By.ID, "scenario-pick").click()
    # Dash 4's dropdown: a listbox of options, each holding a radio whose value is the option's value.
    option = f"[role=option]:has(input[value='{name}'])"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, option))
    browser.find_element(By.CSS_SELECTOR, option).click()

    def totals(driver: Any) -> dict[str, tuple[str, str]]:
        cells = driver.find_elements(By.CSS_SELECTOR, "#scenario-totals td")
        texts = [c.text for c in cells]
        return {texts[i]: (texts[i + 1], texts[i + 2]) for i in range(0, len(texts) - 2, 3)}

    wait.until(lambda d: totals(d).get("Net savings per month", ("", ""))[1] == money(recs["monthly_savings"].sum()))
    shown = totals(browser)
    assert shown["Net savings per month"][0] == money(lake.read_table("recommendations")["monthly_savings"].sum())
    assert shown["Servers at risk (medium or worse)"][1] == f"{at_risk}"
    rows = comparison.set_index(["server_id", "metric"])["change"]
    for row in browser.find_elements(By.CSS_SELECTOR, "#scenario-table tr"):
        cells = {c.get_attribute("data-dash-column"): c.text for c in row.find_elements(By.CSS_SELECTOR, "td")}
        if cells:
            assert rows[(cells["server_id"], cells["metric"])] == cells["change"]
    assert _severe(browser) == []
