"""The ETL stage: raw/ -> processed/ and quarantine/, server batch by server batch."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from capacity_forecaster.config import Settings
from capacity_forecaster.errors import InputError, StorageError
from capacity_forecaster.etl.days import latest_plausible_day
from capacity_forecaster.etl.diagnostics import IngestLosses, with_quarantine
from capacity_forecaster.etl.guard import check_quarantine_share, count_reasons
from capacity_forecaster.messages import examples
from capacity_forecaster.stages.chunks import server_filter, server_ids, servers_per_chunk, text_ids
from capacity_forecaster.stages.raw import keep_quarantine
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import StageRun, stage_run, table_run_id

log = logging.getLogger(__name__)

# Peak memory per server of an ETL batch (3 years: grids, metrics and features frames; measured by
# benchmarks/bench_scale.py) and the bounds of the derived batch size (500 was the fixed default).
ETL_BYTES_PER_SERVER = 3 << 20
ETL_BATCH_BOUNDS = (20, 500)


def _server_ids(lake: Lake) -> list[str]:
    """The sorted distinct server ids of raw_metrics (memory: the ids only)."""
    found = server_ids(lake, "raw_metrics")
    if found is None:
        raise StorageError(
            f"lake {lake.uri} has no raw metrics; run `capfc generate` or `capfc ingest` first"
        )
    return found


def _inventory(lake: Lake, servers: list[str]) -> tuple[pd.DataFrame, int]:
    """The inventory table, with an id-only row for every server of the raw metrics it lacks.

    A server with metrics is never dropped for want of an inventory row (capfc ingest gives every
    one a row; a lake written by hand or by an older version may lack some): it is processed with
    its size and cost unknown, and a warning names how many. Returns (inventory, servers added).
    """
    from capacity_forecaster.etl.inventory import ids_only_inventory

    if not lake.has_table("inventory"):
        log.warning("lake %s has no inventory table: every server in raw metrics is taken as known "
                    "(capfc ingest writes one, from the mapping's inventory section or the server ids)", lake.uri)
        return ids_only_inventory(servers), 0
    inventory = lake.read_table("inventory")
    # Compared as validation compares them: stripped text.
    known = {str(s).strip() for s in inventory["server_id"].dropna()}
    missing = [s for s in servers if str(s).strip() not in known]
    if missing:
        log.warning("%d server(s) in raw metrics have no inventory row (e.g. %s): processed with size and cost "
                    "unknown; capfc ingest with the inventory (or without one) gives them a row",
                    len(missing), ", ".join(map(str, missing[:3])))
        inventory = pd.concat([inventory, ids_only_inventory(missing)], ignore_index=True)
    return inventory, len(missing)


def _read_raw(lake: Lake, selector: pads.Expression) -> pd.DataFrame:
    """Rows of raw_metrics; a date-typed ``ds`` stays in microseconds so that year 9999 survives.

    The lake's generic reader turns dates into nanoseconds, which overflow beyond 2262 and would
    fail the whole run; here such a date reaches validation and is quarantined (``invalid_date``).
    """
    dataset = lake.dataset("raw_metrics")
    info = lake.table_info("raw_metrics")
    if dataset is None or info is None:
        raise StorageError(f"lake {lake.uri} has no raw metrics; run `capfc generate` or `capfc ingest` first")
    try:
        table = dataset.to_table(columns=list(info.schema.names), filter=selector)
    except (OSError, pa.ArrowInvalid) as err:
        raise StorageError(f"cannot read table 'raw_metrics' from {lake.uri}: {err}") from err
    if "ds" in table.column_names:
        kind = table.schema.field("ds").type
        if pa.types.is_date(kind) or (pa.types.is_timestamp(kind) and kind.unit in ("s", "ms")):
            zone = kind.tz if pa.types.is_timestamp(kind) else None
            table = table.set_column(table.column_names.index("ds"), "ds",
                                     table.column("ds").cast(pa.timestamp("us", zone)))
    return table.to_pandas(date_as_object=False, ignore_metadata=True, coerce_temporal_nanoseconds=False)


def _after_today(metrics: pd.DataFrame) -> dict[str, pd.Timestamp]:
    """Servers with an observed day after today (UTC; a day's grace for time zones): their last such day."""
    if metrics.empty:
        return {}
    tomorrow = latest_plausible_day()
    ds = pd.to_datetime(metrics["ds"])
    if ds.dt.tz is not None:
        ds = ds.dt.tz_convert("UTC").dt.tz_localize(None)
    late = metrics[(ds > tomorrow).to_numpy() & metrics["value"].notna().to_numpy()]
    if late.empty:
        return {}
    last = pd.to_datetime(late["ds"]).groupby(late["server_id"]).max()
    return {str(server): pd.Timestamp(day) for server, day in last.items()}


def _warn_after_today(ahead: dict[str, pd.Timestamp]) -> None:
    """One warning for servers whose data run past today: a clock set wrong, or a time column misread."""
    if ahead:
        worst = sorted(ahead.items(), key=lambda kv: (-kv[1].value, kv[0]))[:3]
        log.warning("%d server(s) have data dated after today (%s), e.g. %s: check those servers' clocks, or the "
                    "mapping's timestamp column, unit and time zone; the forecast starts after their last day",
                    len(ahead), f"{pd.Timestamp.now(tz='UTC'):%Y-%m-%d}",
                    ", ".join(f"{server} up to {last:%Y-%m-%d}" for server, last in worst))


def _warn_lost(lost: list[tuple[str, str, int, str]]) -> None:
    """One warning for series the ETL quarantined whole: they have no processed day, so no forecast either."""
    if lost:
        shown = examples((f"{server} {metric} ({days:,} {'day' if days == 1 else 'days'} quarantined, mostly {reason})"
                          if days else f"{server} {metric} (no observed value)"
                          for server, metric, days, reason in lost[:3]), total=len(lost))
        log.warning("%d series have no usable day, so they are not forecast: %s; the risk stage lists them as "
                    "no_data with the reason, and the quarantine table holds their quarantined rows", len(lost), shown)


def _cut_short(diagnostics: pd.DataFrame, days: int) -> list[tuple[str, str, str, str, str]]:
    """Series whose raw days reach more than ``days`` past their last processed day: their last days were
    quarantined, so the risk stage reads them as stale (helper-64: a VM at 210-260 % for its last 14 days read
    "no data since ..., check its monitoring"). ``(server, metric, raw last day, processed last day, reason)``."""
    if days <= 0 or diagnostics.empty:
        return []
    kept = diagnostics[diagnostics["n_obs"] > 0]
    raw = kept["raw_last_ds"].to_numpy().astype("datetime64[D]")
    last = pd.to_datetime(kept["last_ds"], errors="coerce").to_numpy().astype("datetime64[D]")
    known = ~(np.isnat(raw) | np.isnat(last))
    far = known & (np.where(known, raw - last, np.timedelta64(0, "D")) > np.timedelta64(days, "D"))
    return list(zip(kept["server_id"].astype(str)[far], kept["metric"].astype(str)[far],
                    np.datetime_as_string(raw[far]), np.datetime_as_string(last[far]),
                    kept["quarantine_reason"].astype(str)[far], strict=True))


def _warn_cut_short(cut: list[tuple[str, str, str, str, str]]) -> None:
    """One warning for the series ``_cut_short`` found."""
    if cut:
        shown = examples((f"{server} {metric} (raw to {raw}, usable to {last}, mostly {reason})"
                          for server, metric, raw, last, reason in cut[:3]), total=len(cut))
        log.warning("%d series end long before their raw data because their last days were quarantined, so the risk "
                    "stage reads them as stale: %s; their rows are in the quarantine table", len(cut), shown)


def etl_stage(lake: Lake, settings: Settings) -> StageRun:
    """raw/ -> processed/metrics, processed/features, processed/diagnostics and quarantine/.

    Servers are processed in batches of ``etl.batch_servers`` read straight from the lake, so memory
    stays bounded on large fleets; all tables are published together at the end (a failed run leaves
    the previous processed tables current). With ``etl.imputation = auto`` the method is chosen by
    held-out error on a seeded sample of the fleet's servers before the first batch (the same choice
    whatever the batch size) and used for every batch. A lake without an inventory table (raw
    metrics written by hand) takes every server of the raw metrics as known; a server the inventory
    table lacks is processed with an id-only row and counted (``servers_without_inventory``). A run that would
    quarantine more than ``etl.max_quarantine_share`` of the raw rows publishes nothing and raises
    InputError (``capfc etl --force`` sets the share to 1.0).

    Returns:
        The stage run; rows_in == rows_out + rows_quarantined - rows created by imputation.
    """
    from capacity_forecaster.etl.impute import holdout_servers
    from capacity_forecaster.etl.transform import choose_imputation, transform

    cfg = settings.etl
    with stage_run(lake, "etl", settings) as run:
        run.inputs = {"raw": table_run_id(lake, "raw_metrics")}
        start = time.perf_counter()
        servers = _server_ids(lake)
        inventory, without_inventory = _inventory(lake, servers)
        writers = {name: lake.writer(name) for name in ("metrics", "features", "series_diagnostics")}
        quarantine = lake.writer("quarantine")
        # Earlier ETL runs' rows are redone; the ingest's are read for the series it quarantined whole.
        ingest_lost = IngestLosses()
        keep_quarantine(lake, quarantine, lambda rows: rows["stage"] == "etl", ingest_lost.add)
        processed: list[pd.DataFrame] = []  # (server_id, metric) of every raw series
        totals: dict[str, int] = {}
        reasons: dict[str, tuple[int, str]] = {}
        ahead: dict[str, pd.Timestamp] = {}  # servers with data after today: their last day
        lost: list[tuple[str, str, int, str]] = []  # series whose every raw day was quarantined
        cut: list[tuple[str, str, str, str, str]] = []  # series whose last days were quarantined (_cut_short)
        choice = None
        size = servers_per_chunk(cfg.batch_servers, ETL_BYTES_PER_SERVER, *ETL_BATCH_BOUNDS,
                                 "etl.batch_servers")
        batch_cfg = cfg.model_copy(update={"batch_servers": size})
        batches = [servers[i:i + size] for i in range(0, len(servers), size)] or [[]]
        text = text_ids(lake, "raw_metrics")
        if cfg.imputation == "auto":
            # One read per sampled server: each is a narrow id range the scan can prune files by.
            sample = pd.concat([_read_raw(lake, server_filter([server], False, text))
                                for server in holdout_servers(servers)] or [pd.DataFrame()], ignore_index=True)
            choice = choose_imputation(sample, inventory, cfg) if len(sample) else None
            if choice is not None:
                batch_cfg = batch_cfg.model_copy(update={"imputation": choice.method})
        for index, batch in enumerate(batches):
            part = _read_raw(lake, server_filter(batch, index == 0, text))
            result = transform(part, inventory, batch_cfg)
            if choice is None and result.counts.get("series"):
                choice = result.imputation
                batch_cfg = batch_cfg.model_copy(update={"imputation": choice.method})
            writers["metrics"].write(result.metrics)
            ahead.update(_after_today(result.metrics))
            writers["features"].write(result.features)
            diagnostics = with_quarantine(result.diagnostics, part, result.quarantine)
            writers["series_diagnostics"].write(diagnostics)
            if len(diagnostics):  # (the types of the rows of series lost at ingest)
                processed.append(diagnostics[["server_id", "metric"]].astype(object))
                template = diagnostics.iloc[:1]
            lost.extend(diagnostics.loc[diagnostics["n_obs"] == 0, ["server_id", "metric", "n_quarantined",
                                                                    "quarantine_reason"]].itertuples(index=False))
            cut.extend(_cut_short(diagnostics, settings.risk.stale_after_days))
            quarantine.write(result.quarantine)
            count_reasons(result.quarantine, reasons)
            for key, value in result.counts.items():
                totals[key] = totals.get(key, 0) + int(value)
        lost_at_ingest = 0
        if processed:
            keys = pd.MultiIndex.from_frame(pd.concat(processed, ignore_index=True))
            at_ingest = ingest_lost.rows(keys, template)
            if len(at_ingest):
                writers["series_diagnostics"].write(at_ingest)
                lost_at_ingest = len(at_ingest)
        try:
            check_quarantine_share("etl", totals.get("rows_in", 0), totals.get("rows_quarantined", 0),
                                   cfg.max_quarantine_share, "etl.max_quarantine_share", reasons,
                                   "nothing was written and the previous processed tables are kept")
        except InputError:
            for writer in (*writers.values(), quarantine):
                writer.discard()
            raise
        for writer in (*writers.values(), quarantine):
            run.wrote(writer.commit())
        run.rows_in = totals.get("rows_in", 0)
        run.rows_out = totals.get("rows_out", 0)
        run.rows_quarantined = totals.get("rows_quarantined", 0)
        run.quarantine_records = run.rows_quarantined
        _warn_after_today(ahead)
        _warn_lost(lost)
        _warn_cut_short(cut)
        run.counts = {**totals, "series_cut_short": len(cut),
                      "servers_without_inventory": without_inventory, "servers_dated_after_today": len(ahead),
                      "series_all_quarantined": sum(1 for lost_series in lost if lost_series[2] > 0),
                      "series_without_values": sum(1 for lost_series in lost if lost_series[2] == 0),
                      "series_lost_at_ingest": lost_at_ingest,
                      "imputation": choice.method if choice else cfg.imputation,
                      "imputation_mae_seasonal": choice.mae_seasonal if choice else None,
                      "imputation_mae_knn": choice.mae_knn if choice else None}
        log.info("etl: %d servers in %d batch(es) of <= %d, %d rows in, %d out, %d quarantined, "
                 "%d days created (%d filled by imputation, %d left empty), %.1f s", len(servers), len(batches),
                 size, run.rows_in, run.rows_out, run.rows_quarantined, totals.get("rows_created", 0),
                 totals.get("rows_imputed_created", 0), totals.get("rows_unfilled_created", 0),
                 time.perf_counter() - start)
    return run
