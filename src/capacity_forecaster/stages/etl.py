"""The ETL stage: raw/ -> processed/ and quarantine/, server batch by server batch."""

from __future__ import annotations

import logging
import time

import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as pads

from capacity_forecaster.config import Settings
from capacity_forecaster.errors import StorageError
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import StageRun, stage_run

log = logging.getLogger(__name__)


def _server_ids(lake: Lake) -> list[str]:
    dataset = lake.dataset("raw_metrics")
    if dataset is None:
        raise StorageError(
            f"lake {lake.uri} has no raw metrics; run `capfc generate` or `capfc ingest` first"
        )
    ids = pc.unique(dataset.to_table(columns=["server_id"]).column("server_id")).drop_null()
    return sorted(ids.to_pylist())


def _inventory(lake: Lake, servers: list[str]) -> pd.DataFrame:
    """The inventory table; without one, every server of the raw metrics counts as known."""
    from capacity_forecaster.etl.inventory import ids_only_inventory

    if lake.has_table("inventory"):
        return lake.read_table("inventory")
    log.warning("lake %s has no inventory table: every server in raw metrics is taken as known "
                "(capfc ingest writes one, from the mapping's inventory section or the server ids)", lake.uri)
    return ids_only_inventory(servers)


def etl_stage(lake: Lake, settings: Settings) -> StageRun:
    """raw/ -> processed/metrics, processed/features, processed/diagnostics and quarantine/.

    Servers are processed in batches of ``etl.batch_servers`` read straight from the lake, so memory
    stays bounded on large fleets; all tables are published together at the end (a failed run leaves
    the previous processed tables current). With ``etl.imputation = auto`` the method is chosen on the
    first batch by held-out error and kept for the rest. A lake without an inventory table (raw
    metrics written by hand) takes every server of the raw metrics as known.

    Returns:
        The stage run; rows_in == rows_out + rows_quarantined - rows created by imputation.
    """
    from capacity_forecaster.etl.transform import transform

    cfg = settings.etl
    with stage_run(lake, "etl", settings) as run:
        start = time.perf_counter()
        servers = _server_ids(lake)
        inventory = _inventory(lake, servers)
        writers = {name: lake.writer(name) for name in ("metrics", "features", "series_diagnostics")}
        quarantine = lake.writer("quarantine")
        if lake.has_table("quarantine"):
            earlier = lake.read_table("quarantine")
            quarantine.write(earlier[earlier["stage"] != "etl"])
        totals: dict[str, int] = {}
        batch_cfg = cfg
        choice = None
        batches = [servers[i:i + cfg.batch_servers] for i in range(0, len(servers), cfg.batch_servers)] or [[]]
        for index, batch in enumerate(batches):
            selector = pads.field("server_id").isin(batch)
            if index == 0:
                selector = selector | ~pads.field("server_id").is_valid()
            part = lake.read_table("raw_metrics", filter=selector)
            result = transform(part, inventory, batch_cfg)
            if choice is None and result.counts.get("series"):
                choice = result.imputation
                batch_cfg = cfg.model_copy(update={"imputation": choice.method})
            writers["metrics"].write(result.metrics)
            writers["features"].write(result.features)
            writers["series_diagnostics"].write(result.diagnostics)
            quarantine.write(result.quarantine)
            for key, value in result.counts.items():
                totals[key] = totals.get(key, 0) + int(value)
        for writer in (*writers.values(), quarantine):
            run.wrote(writer.commit())
        run.rows_in = totals.get("rows_in", 0)
        run.rows_out = totals.get("rows_out", 0)
        run.rows_quarantined = totals.get("rows_quarantined", 0)
        run.counts = {**totals, "imputation": choice.method if choice else cfg.imputation,
                      "imputation_mae_seasonal": choice.mae_seasonal if choice else None,
                      "imputation_mae_knn": choice.mae_knn if choice else None}
        log.info("etl: %d rows in, %d out, %d quarantined, %d created by imputation, %.1f s",
                 run.rows_in, run.rows_out, run.rows_quarantined, totals.get("rows_imputed_created", 0),
                 time.perf_counter() - start)
    return run
