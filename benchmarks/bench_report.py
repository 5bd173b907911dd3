"""Reports and dashboard on the default fleet: report generation time, dashboard callback latency, HTML load time.

The lake is the default synthetic fleet (100 servers x 3 years) after the real ETL transform and the real
risk stage; forecasts are emulated from ``truth/future`` plus correlated noise (``bench_risk``) and the
backtests are synthetic, because the report's cost does not depend on which model made the numbers and a
real forecast run would dominate the benchmark. Every Result notes this.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.bench_risk import emulated_forecasts
from benchmarks.harness import Result, below, timed
from capacity_forecaster.config import EtlConfig, GenerateConfig, Settings
from capacity_forecaster.generate import generate_fleet
from capacity_forecaster.storage import Lake

logger = logging.getLogger(__name__)

CALLBACK_TARGET = 0.5
HTML_TARGET = 2.0
NOTE = "default fleet, emulated forecasts"
_MODELS = ("autoets", "mstl", "harmonic", "ensemble")


def _backtests(forecasts: pd.DataFrame, seed: int = 3) -> pd.DataFrame:
    """Three cutoffs of plausible errors for the chosen model and a seasonal-naive baseline per series."""
    rng = np.random.default_rng(seed)
    keys = forecasts.groupby(["server_id", "metric"], as_index=False)["model"].first()
    frames = []
    for cutoff in pd.to_datetime(["2025-09-01", "2025-12-01", "2026-03-01"]):
        for model, scale in (("seasonal_naive", 1.0), (None, 0.8)):
            mase = scale * rng.lognormal(0.0, 0.25, len(keys))
            frames.append(keys.assign(model=keys["model"] if model is None else model, cutoff=cutoff,
                                      mae=2 * mase, rmse=2.5 * mase, mape=0.05 * mase, mase=mase,
                                      coverage=rng.uniform(0.7, 0.9, len(keys)), selected=model is None))
    return pd.concat(frames, ignore_index=True)


STORED_GROWTH = 20.0


def build_lake(root: Path) -> Lake:
    """The default fleet through ETL and the real risk stage (with a stored +20 % what-if), in a lake at ``root``."""
    from capacity_forecaster.etl.transform import transform
    from capacity_forecaster.stages.risk import risk_stage

    settings = Settings()
    fleet = generate_fleet(GenerateConfig())
    metrics = transform(fleet.raw_metrics, fleet.inventory, EtlConfig()).metrics
    rng = np.random.default_rng(5)
    forecasts = emulated_forecasts(fleet)
    chosen = forecasts[["server_id", "metric"]].drop_duplicates().assign(
        model=lambda f: rng.choice(_MODELS, len(f)))
    forecasts = forecasts.drop(columns="model").merge(chosen, on=["server_id", "metric"])
    lake = Lake.open(str(root), settings.lake, for_writing=True)
    for name, frame in (("inventory", fleet.inventory), ("metrics", metrics), ("forecasts", forecasts),
                        ("backtests", _backtests(forecasts))):
        lake.write_table(name, frame)
    # The stage (not run_risk alone) so the stored what-if tables exist for the scenario picker.
    risk_stage(lake, settings, growth=STORED_GROWTH)
    return lake


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def _post(client: Any, output: str, outputs: list[tuple[str, str]], inputs: list[tuple[str, str, Any]],
          changed: str, state: list[tuple[str, str, Any]] | None = None) -> tuple[float, float]:
    """One Dash callback over HTTP (Flask test client: routing, JSON both ways, the callback).

    Returns:
        Wall seconds and CPU seconds of this process (the difference is waiting on a shared machine).
    """
    described = [{"id": i, "property": p} for i, p in outputs]
    payload = {"output": output, "outputs": described if len(described) > 1 else described[0],
               "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
               "state": [{"id": i, "property": p, "value": v} for i, p, v in state or []],
               "changedPropIds": [changed]}
    cpu = time.process_time()
    with timed() as t:
        response = client.post("/_dash-update-component", json=payload)
    if response.status_code not in (200, 204):
        raise RuntimeError(f"callback {output} answered HTTP {response.status_code}: {response.get_data()[:200]!r}")
    return t.seconds, time.process_time() - cpu


def _worst(calls: list[tuple[float, float]]) -> tuple[float, str]:
    wall, cpu = max(calls)
    return wall, f"cpu {cpu:.2f} s"


def _dashboard_results(lake: Lake) -> list[Result]:
    from capacity_forecaster.report.dashboard import create_app

    with timed() as start:
        app = create_app(lake, Settings(), warm=False)
    client = app.server.test_client()
    state = app.state
    server, metric = state.default_series()
    drill_out = "..server-graph.figure...server-facts.children.."
    drill_outputs = [("server-graph", "figure"), ("server-facts", "children")]

    def drill(server_id: str, metric_name: str, growth: float) -> tuple[float, float]:
        return _post(client, drill_out, drill_outputs, [("server-pick", "value", server_id),
                                                        ("metric-pick", "value", metric_name),
                                                        ("growth", "value", growth)], "server-pick.value")

    def table(growth: float) -> tuple[float, float]:  # the first page (the table is paged on the server)
        return _post(client, "..risk-table.data...risk-table.page_count..",
                     [("risk-table", "data"), ("risk-table", "page_count")],
                     [("growth", "value", growth), ("risk-table", "page_current", 0), ("risk-table", "sort_by", []),
                      ("risk-table", "filter_query", "")], "growth.value")

    drill(server, metric, 0)  # the first request pays Flask/Dash one-off set-up
    rows = state.risk_rows(0.0)
    other = rows[min(7, len(rows) - 1)]["id"].split("|")
    pick = _worst([_post(client, "..server-pick.value...metric-pick.value...tabs.value..",
                         [("server-pick", "value"), ("metric-pick", "value"), ("tabs", "value")],
                         [("risk-table", "active_cell", {"row": 7, "column": 1, "column_id": "server_id",
                                                         "row_id": "|".join(other)}),
                          ("cluster-graph", "clickData", None)], "risk-table.active_cell",
                         state=[("metric-pick", "value", metric)])])
    drill_base = _worst([drill(other[0], other[1], 0) for _ in range(3)])
    table_base = _worst([table(0) for _ in range(3)])
    savings_out = "..savings-graph.figure...savings-table.data...savings-heading.children.."
    savings_outputs = [("savings-graph", "figure"), ("savings-table", "data"), ("savings-heading", "children")]

    def savings(growth: float) -> tuple[float, float]:
        return _post(client, savings_out, savings_outputs, [("growth", "value", growth)], "growth.value")

    # The first what-if: the history is observed (once, chunk by chunk), then the streamed what-if runs.
    cold = _worst([table(20)])
    # Another growth never computed: one streamed what-if (breaches, upsizes, consolidation, savings).
    savings_cold = _worst([savings(35)])
    names = state.scenario_names
    picks = [_post(client, "..scenario-totals.data...scenario-table.data..",
                   [("scenario-totals", "data"), ("scenario-table", "data")], [("scenario-pick", "value", n)],
                   "scenario-pick.value") for n in (names * 3)[:3]] if names else []
    cpu = time.process_time()
    with timed() as warm_all:
        state.warm()
    warm_cpu = time.process_time() - cpu
    warm = _worst([table(g) for g in (10, 25, 40)])
    drill_growth = _worst([drill(other[0], other[1], g) for g in (10, 25, 40)])
    kpis = _worst([_post(client, "kpis.children", [("kpis", "children")], [("growth", "value", g)], "growth.value")
                   for g in (0, 30)])
    savings_warm = _worst([savings(g) for g in (10, 25, 40)])
    note = f"{NOTE}, {len(rows)} series; HTTP via Flask test client; {_load()}"
    return [
        below("dashboard start-up (load lake, build layout)", start.seconds, 30.0, "s", note),
        below("dashboard callback: pick a row in the risk table", pick[0], CALLBACK_TARGET, "s",
              f"{pick[1]}; {note}"),
        below("dashboard callback: server drill-down (worst of 3)", drill_base[0], CALLBACK_TARGET, "s",
              f"{drill_base[1]}; {note}"),
        below("dashboard callback: risk table (worst of 3)", table_base[0], CALLBACK_TARGET, "s",
              f"{table_base[1]}; {note}"),
        below("dashboard callback: KPI cards (worst of 2)", kpis[0], CALLBACK_TARGET, "s", f"{kpis[1]}; {note}"),
        below("dashboard callback: what-if table, cache warm (worst of 3)", warm[0], CALLBACK_TARGET, "s",
              f"{warm[1]}; slider positions are assessed at start-up in a background thread; {note}"),
        below("dashboard callback: what-if drill-down (worst of 3)", drill_growth[0], CALLBACK_TARGET, "s",
              f"{drill_growth[1]}; {note}"),
        below("dashboard callback: what-if table, cold (the first what-if: observes the history first)", cold[0],
              5.0, "s", f"{cold[1]}; the warm-up thread does it at start-up; {note}"),
        below("dashboard callback: what-if savings and recommendations, cache warm (worst of 3)", savings_warm[0],
              CALLBACK_TARGET, "s", f"{savings_warm[1]}; recommendations tab (figure, table, heading); {note}"),
        below("dashboard callback: what-if savings and recommendations, cold (first use of a growth value)",
              savings_cold[0], 5.0, "s", f"{savings_cold[1]}; the risk stage's streamed what-if (GrowthAssessor), "
              f"once per value for the table, cards and tab (the warm-up does it ahead); {note}"),
        *([below("dashboard callback: pick a stored scenario (worst of 3, first builds it)", _worst(picks)[0],
                 CALLBACK_TARGET, "s", f"{_worst(picks)[1]}; {len(names)} stored; {note}")] if picks else []),
        below("dashboard what-if warm-up, every slider position", warm_all.seconds, 60.0, "s",
              f"cpu {warm_cpu:.1f} s; {len(state.slider_values())} growth values, each one streamed what-if "
              f"(breaches and recommendations); background thread; {_load()}"),
    ]


HTML_LOADS = 3
# Every chart placeholder holds a drawn plotly chart (its SVG, or a canvas for WebGL traces): the page's
# own charts-ready flag is not trusted. Returns performance.now() when true, else null.
_ALL_DRAWN = """
var divs = document.querySelectorAll("div.chart");
if (!divs.length) return null;
for (var i = 0; i < divs.length; i++) { if (!divs[i].querySelector(".main-svg, canvas")) return null; }
return performance.now();
"""


def _chromium(profile: str) -> Any:
    """Headless Chromium with its own user-data directory ``profile`` (a fresh one is a cold browser)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1500,1800"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def _renderer_main_threads(driver: Any) -> dict[int, float]:
    """CPU seconds of each Chromium renderer's main thread (pid -> seconds); empty without psutil."""
    try:
        import psutil
    except ImportError:
        return {}
    out = {}
    for proc in psutil.Process(driver.service.process.pid).children(recursive=True):
        try:
            if "--type=renderer" in proc.cmdline():
                main = next(t for t in proc.threads() if t.id == proc.pid)
                out[proc.pid] = main.user_time + main.system_time
        except (psutil.Error, StopIteration):
            continue
    return out


def _html_load(html: Path) -> tuple[float, float, float | None, int]:
    """One cold load of the HTML report in a fresh browser profile.

    Returns:
        Seconds from navigation to the load event and to every chart drawn (both from the page's own
        clock), CPU seconds of the page's renderer main thread (None without psutil; unlike wall time
        it hardly depends on what else the machine runs), and SEVERE console messages.
    """
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.TemporaryDirectory(prefix="capfc-bench-chromium-")
    driver = _chromium(profile.name)
    try:
        driver.get("data:text/html,<p>warm-up</p>")  # the browser's own start-up is not the page's
        before = _renderer_main_threads(driver)
        driver.get(html.as_uri())
        drawn = WebDriverWait(driver, 120, poll_frequency=0.02).until(lambda d: d.execute_script(_ALL_DRAWN))
        after = _renderer_main_threads(driver)
        load = driver.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd")
        severe = sum(entry["level"] == "SEVERE" for entry in driver.get_log("browser"))
    finally:
        driver.quit()
        profile.cleanup()
    cpu = max((v - before.get(k, 0.0) for k, v in after.items()), default=None)
    return load / 1000, drawn / 1000, cpu, severe


def _browser_results(lake: Lake, html: Path) -> list[Result]:
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        return [Result("HTML report load in headless Chromium", float("nan"), "s", f"< {HTML_TARGET:g}", False,
                       "skipped: /usr/bin/chromium or /usr/bin/chromedriver missing")]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from capacity_forecaster.report.dashboard import create_app, server_for

    loads = [_html_load(html) for _ in range(HTML_LOADS)]
    load_note = _load()
    profile = tempfile.TemporaryDirectory(prefix="capfc-bench-chromium-")
    driver = _chromium(profile.name)
    server = server_for(create_app(lake, Settings(), warm=False), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        driver.get("data:text/html,<p>warm-up</p>")
        with timed() as page:
            driver.get(f"http://127.0.0.1:{server.server_port}/")
            WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#server-graph .gtitle"))
    finally:
        driver.quit()
        profile.cleanup()
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
    load, drawn = float(np.median([x[0] for x in loads])), float(np.median([x[1] for x in loads]))
    cpus = [x[2] for x in loads if x[2] is not None]
    cpu = f"renderer main thread cpu {np.median(cpus):.2f} s (median); " if cpus else ""
    severe = sum(x[3] for x in loads)
    each = ", ".join(f"{x[1]:.2f}" for x in loads)
    size = f"{html.stat().st_size / 1e6:.1f} MB file"
    return [
        below(f"HTML report load event in headless Chromium (median of {HTML_LOADS} cold loads)", load,
              HTML_TARGET, "s", f"{size}; KPIs, messages and tables visible; {load_note}"),
        below(f"HTML report: every chart drawn (median of {HTML_LOADS} cold loads)", drawn, HTML_TARGET, "s",
              f"each {each} s; {cpu}{severe} SEVERE console messages; {size}; {load_note}"),
        below("dashboard page: first table and chart in headless Chromium", page.seconds, 5.0, "s", NOTE),
    ]


def bench_reports_default_fleet() -> list[Result]:
    """Generation time of every report format, dashboard callbacks over HTTP, HTML and dashboard page loads."""
    from capacity_forecaster.report.stage import HTML_FILE, run_report

    root = Path(tempfile.mkdtemp(prefix="capfc-bench-report-"))
    try:
        lake = build_lake(root / "lake")
        cpu = time.process_time()
        with timed() as t:
            result = run_report(lake, Settings())
        cpu = time.process_time() - cpu
        sizes = ", ".join(f"{f.name.rsplit('.', 1)[-1]} {f.size / 1e6:.1f} MB" for f in result.files
                          if not f.name.endswith(".png"))
        results = [below("report: every format (6 PNG, HTML, XLSX, PDF)", t.seconds, 30.0, "s",
                         f"cpu {cpu:.1f} s; {NOTE}; {sizes}; {_load()}")]
        results += _dashboard_results(lake)
        results += _browser_results(lake, root / "lake" / "reports" / HTML_FILE)
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)


BENCHMARKS = [bench_reports_default_fleet]
