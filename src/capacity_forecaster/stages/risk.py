"""The risk stage: forecasts + processed metrics + inventory (+ backtest forecasts) -> risk/ tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from capacity_forecaster.config import Settings
from capacity_forecaster.errors import StorageError
from capacity_forecaster.risk.breach import CUT_COLUMNS, LOST_COLUMNS
from capacity_forecaster.stages.chunks import server_filter, server_ids, servers_per_chunk, text_ids
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import StageRun, stage_run, stale_input, table_run_id

log = logging.getLogger(__name__)

# Peak memory per server of a risk chunk (3 years of 4 metrics and a 180-day forecast: the chunk's
# metrics, forecasts and backtest forecasts with the frames derived from them; measured 1.4-1.6 MB
# with chunks of 50-250 servers, docs/scale.md) and the bounds of the derived chunk size (larger
# chunks only add memory: the per-chunk overhead is already small at 200).
RISK_BYTES_PER_SERVER = 2 << 20
RISK_CHUNK_BOUNDS = (25, 200)


class LakeSource:
    """The risk stage's inputs in the lake: each chunk is read with a filter on its server ids."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def has(self, table: str) -> bool:
        return self.lake.has_table(table)

    def server_ids(self, table: str) -> set[str]:
        return set(server_ids(self.lake, table) or ())

    def span(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        dataset = self.lake.dataset("metrics")
        if dataset is None:
            return None
        low, high = [], []
        try:
            for batch in dataset.to_batches(columns=["ds"]):
                bounds = pc.min_max(batch.column(0))
                if bounds["min"].is_valid:
                    low.append(bounds["min"].as_py())
                    high.append(bounds["max"].as_py())
        except (OSError, pa.ArrowInvalid) as err:
            raise StorageError(f"cannot read table 'metrics' from {self.lake.uri}: {err}") from err
        return (pd.Timestamp(min(low)), pd.Timestamp(max(high))) if low else None

    def lost_series(self) -> pd.DataFrame:
        """``series_diagnostics`` rows with ``n_obs`` 0 (the ETL quarantined every day of the series, or the ingest
        every sample: ``lost_at_ingest``), and those whose raw data go on after their last processed day
        (``CUT_COLUMNS``: the ETL quarantined their last days)."""
        info = self.lake.table_info("series_diagnostics")
        if info is None or not set(LOST_COLUMNS) <= set(info.schema.names):
            return pd.DataFrame(columns=list(LOST_COLUMNS))
        columns, kept = list(LOST_COLUMNS), pc.field("n_obs") == 0
        if "lost_at_ingest" in info.schema.names:
            columns.append("lost_at_ingest")
        if {*CUT_COLUMNS, "last_ds"} <= set(info.schema.names):
            columns += CUT_COLUMNS
            kept = kept | (pc.field("raw_last_ds") > pc.field("last_ds"))
        lost = self.lake.read_table("series_diagnostics", columns=columns, filter=kept)
        return lost[lost["server_id"].notna()].reset_index(drop=True)  # a series names a server

    def read(self, table: str, servers: list[str] | None, columns: Sequence[str]) -> pd.DataFrame:
        info = self.lake.table_info(table)
        wanted = [c for c in columns if info is None or c in info.schema.names]
        selector = None if servers is None else server_filter(servers, False, text_ids(self.lake, table))
        return self.lake.read_table(table, columns=wanted, filter=selector)


def risk_stage(lake: Lake, settings: Settings, *, growth: float | None = None,
               scenario_file: Path | None = None, scenario_name: str | None = None) -> tuple[StageRun, Any]:
    """Breach risk per server and metric, workload clusters, and sizing/consolidation recommendations.

    The base tables (``server_risk``, ``clusters``, ``recommendations``, ``risk_calibration``) are
    always the base. A what-if is stored beside them under its name: its block of rows in
    ``risk_comparison``, ``scenario_risk`` and ``scenario_recommendations`` (each with a ``scenario``
    column) and one row in ``risk_scenarios``; other stored scenarios are kept. The manifest names
    the forecast run the risk run read (``inputs["forecast"]``).

    Args:
        lake: the lake (reads ``metrics``, ``forecasts``, ``inventory`` and, when present,
            ``backtest_forecasts``).
        settings: the configuration (``risk`` section).
        growth: what-if business growth in percent (overrides ``risk.growth``).
        scenario_file: a what-if scenario YAML (add, remove or move servers).
        scenario_name: the name to store the what-if under; None derives it (``growth-20pct``).

    Returns:
        The stage run and the RiskResult (for the CLI's summary).
    """
    from capacity_forecaster.risk.scenarios import index_row, tagged, upsert
    from capacity_forecaster.risk.streaming import stream_risk
    from capacity_forecaster.risk.whatif import load_scenario

    scenario = load_scenario(scenario_file) if scenario_file is not None else None
    with stage_run(lake, "risk", settings) as run:
        run.inputs = {"forecast": table_run_id(lake, "forecasts")}
        stale = stale_input(lake, "forecasts", "metrics", "etl")
        if stale is not None:
            log.warning("risk: the processed metrics changed after the forecasts were made (now run %s; the forecast "
                        "read run %s): breach dates and levels rest on forecasts that start before the newest days; "
                        "run capfc forecast first", *stale)
        # The breach probability reads yhat_lower/yhat_upper as the forecast stage's interval.
        cfg = settings.risk.model_copy(update={"interval": settings.forecast.interval})
        size = servers_per_chunk(cfg.chunk_servers, RISK_BYTES_PER_SERVER, *RISK_CHUNK_BOUNDS, "risk.chunk_servers")
        source = LakeSource(lake)
        result = stream_risk(source, lake.read_table("inventory"), cfg, chunk_servers=size, growth=growth,
                             scenario=scenario, name=scenario_name)
        run.wrote(lake.write_table("server_risk", result.server_risk))
        run.wrote(lake.write_table("clusters", result.clusters))
        run.wrote(lake.write_table("recommendations", result.recommendations))
        run.wrote(lake.write_table("risk_calibration", result.calibration))
        run.wrote(lake.write_table("recommendation_options", result.options))
        run.wrote(lake.write_table("capacity_by_group", result.capacity))
        forecasts = lake.table_info("forecasts")
        run.rows_in = forecasts.rows if forecasts is not None else 0
        run.rows_out = len(result.server_risk)
        run.counts = {"summary": result.summary}
        outcome = result.scenario
        if outcome is not None:
            index = pd.DataFrame([index_row(outcome, result.summary, run.run_id, run.inputs["forecast"])])
            for table, rows in (("risk_comparison", outcome.comparison), ("scenario_risk", outcome.server_risk),
                                ("scenario_recommendations", outcome.recommendations), ("risk_scenarios", index)):
                stored = lake.read_table(table) if lake.has_table(table) else None
                new = rows if table == "risk_scenarios" else tagged(rows, outcome.name)
                run.wrote(lake.write_table(table, upsert(stored, new, outcome.name), validate=False))
            # What the stored scenario was, so reports and the dashboard can name and reproduce it.
            run.counts["scenario"] = {"name": outcome.name, "label": outcome.label, **outcome.parameters,
                                      "summary": outcome.summary}
    return run, result
