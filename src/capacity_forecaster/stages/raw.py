"""Stages that fill raw/: the synthetic fleet (generate) and real monitoring exports (ingest)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from capacity_forecaster.config import Settings
from capacity_forecaster.errors import InputError
from capacity_forecaster.etl.guard import check_quarantine_share, check_value_shares, count_reasons, value_records
from capacity_forecaster.etl.partial_days import empty_partial_days
from capacity_forecaster.messages import examples
from capacity_forecaster.schema import METRICS, QUARANTINE_COLUMNS, TABLES
from capacity_forecaster.storage.filesystem import resolve
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import StageRun, list_runs, producing_run, stage_run
from capacity_forecaster.storage.writer import TableWriter

if TYPE_CHECKING:
    from capacity_forecaster.etl.ingest import IngestResult

log = logging.getLogger(__name__)

RAW_CSV_DIR = "raw/csv"


def _export_csv(lake: Lake, name: str, folder: str) -> None:
    """Write a CSV copy of a table (the seed's request for a CSV raw layer), partitioned like it."""
    dataset = lake.dataset(name)
    if dataset is None:
        return
    base = lake.path(folder)
    partitioning = pads.partitioning(flavor="hive", schema=dataset.partitioning.schema) if (
        TABLES[name].partitioned and dataset.partitioning is not None) else None
    pads.write_dataset(
        dataset, base, filesystem=lake.fs, format="csv", partitioning=partitioning,
        basename_template=f"{name}-{{i}}.csv", existing_data_behavior="delete_matching",
    )


# Peak memory per server of a generate chunk (3 years + holdout: the grid, its long frames and their
# Parquet encoding; measured by benchmarks/bench_scale.py) and the bounds of the derived chunk size.
GENERATE_BYTES_PER_SERVER = 1 << 20
GENERATE_CHUNK_BOUNDS = (50, 1000)
_GENERATED = ("inventory", "raw_metrics", "truth_servers", "truth_actual", "truth_future", "truth_anomalies")


def generate_stage(lake: Lake, settings: Settings) -> StageRun:
    """Generate the synthetic fleet and write raw/ and truth/ tables, chunk by chunk of servers.

    Each chunk's rows are written as one batch of every table; the tables are published together at
    the end (a failed run leaves the previous ones current). The rows do not depend on the chunk size
    (``generate.chunk_servers``, by default derived from the available memory).

    Returns:
        The stage run, with the tables written and row counts.
    """
    from capacity_forecaster.generate.fleet import fleet_chunks
    from capacity_forecaster.stages.chunks import servers_per_chunk

    cfg = settings.generate
    with stage_run(lake, "generate", settings) as run:
        start = time.perf_counter()
        chunk = servers_per_chunk(cfg.chunk_servers, GENERATE_BYTES_PER_SERVER, *GENERATE_CHUNK_BOUNDS,
                                  "generate.chunk_servers")
        writers = {name: lake.writer(name) for name in _GENERATED}
        raw_rows = anomalies = chunks = 0
        try:
            # The big tables are written side by side: each write has single-threaded phases (month
            # split, Arrow conversion) that overlap with the other's compression threads.
            with ThreadPoolExecutor(max_workers=2) as pool:
                for part in fleet_chunks(cfg, chunk, categorical=True):
                    batches = [(writers[name], getattr(part, name)) for name in _GENERATED]
                    list(pool.map(lambda item: item[0].write(item[1]), batches))
                    raw_rows += len(part.raw_metrics)
                    anomalies += len(part.truth_anomalies)
                    chunks += 1
                    del part, batches  # before the next chunk is made: one chunk in memory at a time
        except BaseException:
            for writer in writers.values():
                writer.discard()
            raise
        for writer in writers.values():
            run.wrote(writer.commit())
        if lake.has_table("partial_days"):
            # Staged samples of an earlier ingest belong to raw rows this run replaced.
            run.wrote(lake.write_table("partial_days", empty_partial_days()))
        if cfg.format == "csv":
            _export_csv(lake, "inventory", f"{RAW_CSV_DIR}/inventory")
            _export_csv(lake, "raw_metrics", f"{RAW_CSV_DIR}/metrics")
        run.rows_out = raw_rows
        run.counts = {"servers": cfg.servers, "seed": cfg.seed, "anomalies": anomalies, "chunks": chunks,
                      "chunk_servers": chunk}
        log.info(
            "generate: %d servers in %d chunk(s) of <= %d, %d raw rows, %d injected faults/events, %.1f s",
            cfg.servers, chunks, chunk, raw_rows, anomalies, time.perf_counter() - start,
        )
    return run


def _merge(lake: Lake, name: str, new: pd.DataFrame, key: list[str], *, overwrite: bool = True) -> pa.Table:
    """The current table merged with ``new`` on ``key`` (DuckDB anti-join).

    ``overwrite``: rows of ``new`` replace the current rows with the same key; otherwise only rows
    whose key the table does not have yet are added (a current row is never overwritten).
    """
    old = lake.dataset(name)
    if old is None:
        return pa.Table.from_pandas(new, preserve_index=False)
    con = duckdb.connect()
    try:
        con.register("old_rows", old.to_table(columns=[c for c in old.schema.names if c not in ("year", "month")]))
        con.register("new_rows", new)
        using = ", ".join(key)
        sql = (f"SELECT * FROM old_rows ANTI JOIN new_rows USING ({using}) UNION ALL BY NAME SELECT * FROM new_rows"
               if overwrite else
               f"SELECT * FROM old_rows UNION ALL BY NAME (SELECT * FROM new_rows ANTI JOIN old_rows USING ({using}))")
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


_KEY_SCHEMA = pa.schema([("server_id", pa.string()), ("ds", pa.timestamp("ns")), ("metric", pa.string())])


def _merge_raw(lake: Lake, new: pd.DataFrame, pooled: pd.DataFrame) -> tuple[pa.Table | None, pd.DataFrame]:
    """raw_metrics merged with an ingest's daily rows, and the rows whose sample count the merge changed.

    A run's row replaces the lake's row of the same (server_id, ds, metric) unless the lake's row has
    more samples: then an earlier run completed the day (or delivered more of it) and this run holds
    only part of it again, e.g. an export overlapping a complete day, and the lake's row is kept.
    A row that pooled the staged samples of the day (``pooled``) holds the lake row's samples, so
    it is expected to have more; a row that did not and has more replaces a row whose samples it
    could not pool (no longer staged), and so does one with as many samples and other values where
    neither covers the whole day (the day's other part, or a corrected export): the caller warns
    about all three.

    Returns:
        (the merged table, None when it would equal the lake's (the same exports ingested again: nothing to
        commit, so later stages do not read a new version as new data); server_id, ds, metric, lake_samples,
        run_samples and kept (the lake's row was kept) of those rows).
    """
    old = lake.dataset("raw_metrics")
    con = duckdb.connect()
    try:
        con.register("new_rows", new)
        con.register("pooled_rows", pa.Table.from_pandas(pooled[list(_KEY_SCHEMA.names)], schema=_KEY_SCHEMA,
                                                         preserve_index=False))
        if old is None:
            con.execute("CREATE TEMP TABLE old_rows AS SELECT * FROM new_rows WHERE false")
        else:
            con.register("old_rows", old.to_table(columns=[c for c in old.schema.names if c not in ("year", "month")]))
        # A generated lake's rows have no sample counts: the run's rows replace them.
        lake_samples = "o.samples" if "samples" in con.sql("SELECT * FROM old_rows LIMIT 0").columns else "NULL"
        # As many samples, other values, and neither row a whole day: a corrected export of a partial day, or
        # the day's other part after its staged samples expired (helper-55 #3: that replaced the first part
        # unsaid).
        other_part = (f"{lake_samples} = n.samples AND o.coverage < 1 AND n.coverage < 1 "
                      "AND (o.value <> n.value OR o.value_mean <> n.value_mean)") if lake_samples != "NULL" else "false"
        changed = con.sql(
            f"SELECT n.server_id, n.ds, n.metric, {lake_samples}::BIGINT AS lake_samples, n.samples AS run_samples, "
            f"{lake_samples} > n.samples AS kept FROM new_rows n JOIN old_rows o "
            "ON n.server_id = o.server_id AND n.ds = o.ds AND n.metric = o.metric "
            "LEFT JOIN pooled_rows p ON n.server_id = p.server_id AND n.ds = p.ds AND n.metric = p.metric "
            f"WHERE {lake_samples} > n.samples OR (({lake_samples} < n.samples OR {other_part}) "
            "AND p.server_id IS NULL) ORDER BY n.server_id, n.metric, n.ds").df()
        if old is None:
            return pa.Table.from_pandas(new, preserve_index=False), changed
        con.register("kept_rows", changed.loc[changed["kept"].astype(bool), ["server_id", "ds", "metric"]])
        key = "USING (server_id, ds, metric)"
        con.execute(f"CREATE TEMP TABLE written AS SELECT * FROM new_rows ANTI JOIN kept_rows {key}")
        columns = con.sql("SELECT * FROM written LIMIT 0").columns
        if set(columns) == set(con.sql("SELECT * FROM old_rows LIMIT 0").columns):
            listed = ", ".join(f'"{c}"' for c in columns)
            ((differ,),) = con.execute(
                f"SELECT count(*) FROM (SELECT {listed} FROM written EXCEPT ALL "
                f"SELECT {listed} FROM old_rows SEMI JOIN written {key})").fetchall()
            if differ == 0:
                return None, changed
        merged = con.sql(
            f"SELECT * FROM old_rows ANTI JOIN written {key} UNION ALL BY NAME SELECT * FROM written"
        ).to_arrow_table()
        return merged, changed
    finally:
        con.close()


def _check_day_timezone(lake: Lake, zone: str) -> None:
    """Refuse to merge days cut in another zone than the lake's raw days (helper-51: UTC and New York days side by
    side in raw_metrics, and samples staged under a UTC day that no New York run would complete).

    The lake's zone is that of the run that wrote the current raw_metrics: an ingest records its mapping's
    ``day_timezone``, a generated fleet's days are UTC. An older ingest that recorded none is not checked.
    """
    info = lake.table_info("raw_metrics")
    if info is None:
        return
    producer = producing_run(list_runs(lake), "raw_metrics", info.written_version)
    if producer is None:
        return
    before = "UTC" if producer.get("stage") == "generate" else (producer.get("counts") or {}).get("day_timezone")
    if before and before != zone:
        raise InputError(f"ingest: the mapping cuts days in day_timezone '{zone}', the lake's raw days were cut in "
                         f"'{before}' (run {producer.get('run_id')}); merging would mix the two; use the same "
                         "day_timezone, or --replace to rebuild raw/ from these exports")


def _without_days(partial: pd.DataFrame, days: pd.DataFrame) -> pd.DataFrame:
    """Staged samples except those of ``days`` (server_id, ds, metric)."""
    if days.empty or partial.empty:
        return partial
    drop = pd.MultiIndex.from_arrays([days["server_id"].astype(str), days["metric"].astype(str),
                                      pd.DatetimeIndex(days["ds"]).as_unit("ns")])
    mine = pd.MultiIndex.from_arrays([partial["server_id"].astype(str), partial["metric"].astype(str),
                                      pd.DatetimeIndex(partial["ds"]).as_unit("ns")])
    return partial[~mine.isin(drop)].reset_index(drop=True)


def _merge_warnings(changed: pd.DataFrame) -> list[str]:
    """Warnings (logged) about rows a merge kept from the lake, or replaced without pooling their samples."""
    messages = []
    kept = changed["kept"].astype(bool)
    more = changed["run_samples"] > changed["lake_samples"]
    for rows, text in ((changed[kept], "already in raw_metrics have more samples than this run delivers for them "
                                       "and were kept ({}); a run that delivers part of a complete day again (an "
                                       "overlapping export, an older file) does not replace it"),
                       (changed[~kept & more], "in raw_metrics were replaced by this run's rows with more samples "
                                               "without pooling the samples behind them ({}), which were no longer "
                                               "staged in raw/partial_days (ingest.partial_days_window)"),
                       (changed[~kept & ~more], "in raw_metrics, each part of a day, were replaced by this run's "
                                                "rows with as many samples but other values ({}): a corrected "
                                                "export, or the day's other part, which cannot be pooled once the "
                                                "first part's samples left raw/partial_days "
                                                "(ingest.partial_days_window)")):
        if len(rows):
            first = rows.iloc[0]
            example = (f"e.g. {first['server_id']} {first['metric']} {pd.Timestamp(first['ds']):%Y-%m-%d}: "
                       f"{first['lake_samples']} samples in the lake, {first['run_samples']} in this run")
            messages.append(f"{len(rows)} day(s) " + text.format(example))
            log.warning("ingest: %s", messages[-1])
    return messages


# Quarantine rows a rewrite gathers per file it writes.
QUARANTINE_FILE_ROWS = 250_000


def keep_quarantine(lake: Lake, writer: TableWriter, replace: Callable[[pd.DataFrame], pd.Series],
                    observe: Callable[[pd.DataFrame], None] | None = None) -> None:
    """Write the lake's quarantine rows except those ``replace`` selects to ``writer``, batch by batch; ``observe``,
    when given, sees every batch read (kept or not).

    The quarantine grows with the bad rows of every export ingested, and every ingest and ETL rewrites it:
    read whole, it took memory in proportion to all of them.
    """
    dataset = lake.dataset("quarantine")
    if dataset is None:
        return
    columns = list(QUARANTINE_COLUMNS)
    kept: list[pd.DataFrame] = []
    rows = 0
    for batch in dataset.to_batches(columns=[c for c in columns if c in dataset.schema.names]):
        old = batch.to_pandas()
        if observe is not None:
            observe(old)
        kept.append(old[~replace(old).to_numpy(dtype=bool)])
        rows += len(kept[-1])
        if rows >= QUARANTINE_FILE_ROWS:  # a file per this many rows, not per batch (one per earlier run's file)
            writer.write(pd.concat(kept, ignore_index=True).reindex(columns=columns))
            kept, rows = [], 0
    if rows:
        writer.write(pd.concat(kept, ignore_index=True).reindex(columns=columns))


def _write_inventory(lake: Lake, run: StageRun, result: IngestResult, replace: bool) -> list[str]:
    """Join the ingest's inventory to every server with metrics in the lake, merge it and write it.

    Run after raw_metrics is written. Ids that differ from the metrics' only in case or whitespace
    are joined (``inventory_join``); the rows of the same inventory source are replaced; every server
    with metrics ends with a row, and so does every server whose samples this run quarantined, all of them (a
    fastStorage VM without its meta row: it stays in the fleet, its series ``no_data`` with the reason, not gone
    from every count; helper-72). Returns the warnings (each also logged).
    """
    from capacity_forecaster.etl.inventory_join import (
        SOURCE_COLUMN,
        id_only_servers,
        join_to_metrics,
        join_warnings,
        merge_inventory,
    )
    from capacity_forecaster.stages.chunks import server_ids

    metric_ids = server_ids(lake, "raw_metrics") or []
    quarantined = result.quarantine
    if len(quarantined):
        named = quarantined.loc[value_records(quarantined) & quarantined["metric"].isin(METRICS), "server_id"]
        metric_ids = sorted({*metric_ids, *(s for s in named.dropna().astype(str) if s.strip())})
    first = join_to_metrics(result.inventory, metric_ids, add_missing=False)
    old = None if replace or not lake.has_table("inventory") else lake.read_table("inventory")
    merged = merge_inventory(old, first.inventory, metric_ids, add_only=result.inventory_ids_only)
    final = join_to_metrics(merged.inventory, metric_ids)
    # A metrics-only export's inventory is the ids by design; with an inventory file every server it
    # lacks is worth a word, at every ingest, not only the first.
    lacking = ([] if result.inventory_ids_only else final.added if SOURCE_COLUMN not in result.inventory.columns
               else id_only_servers(final.inventory, metric_ids))
    # Without a row in this run's file, or with one there that gives only the id (helper-66: "no inventory row" of a
    # server in the file; helper-70: not the id-only rows earlier metrics-only runs wrote).
    in_file = set(first.inventory["server_id"].astype(str))
    thin = [server for server in lacking if server in in_file]
    messages = [*merged.warnings(), *join_warnings([*first.renamed, *final.renamed],
                                                   first.ambiguous | final.ambiguous,
                                                   [server for server in lacking if server not in in_file],
                                                   final.without_metrics, final.shadowed, thin),
                *_lookalikes_across_runs(set(result.raw_metrics["server_id"].astype(str)), metric_ids)]
    for message in messages:
        log.warning("%s", message)
    table = pa.Table.from_pandas(final.inventory, preserve_index=False)
    if SOURCE_COLUMN in table.column_names and pa.types.is_null(table.schema.field(SOURCE_COLUMN).type):
        table = table.set_column(table.column_names.index(SOURCE_COLUMN), SOURCE_COLUMN,
                                 table.column(SOURCE_COLUMN).cast(pa.string()))
    run.wrote(lake.write_table("inventory", table))
    return messages


def _lookalikes_across_runs(delivered: set[str], lake_ids: list[str]) -> list[str]:
    """A warning for ids of this delivery that differ from ids earlier runs wrote only in case, spaces or Unicode
    form (``WEB-04`` in July's export, ``web-04`` in August's): two servers in the lake, each with part of the
    history. Pairs within one delivery are ``ingest``'s own warning."""
    from capacity_forecaster.etl.inventory import id_key

    earlier = pd.Series(sorted(set(lake_ids) - delivered), dtype=object)
    if earlier.empty or not delivered:
        return []
    mine = pd.Series(sorted(delivered), dtype=object)
    theirs = dict(zip(id_key(earlier), earlier, strict=True))
    pairs = [(theirs[k], i) for i, k in zip(mine, id_key(mine), strict=True) if k in theirs]
    if not pairs:
        return []
    shown = examples((f"{old!r} / {new!r}" for old, new in pairs), sep="; ", total=len(pairs))
    return [f"{len(pairs)} server id(s) of this export differ from ids already in the lake only in case, spaces or "
            f"Unicode form and are kept as separate servers: {shown}; if they are one server, make the ids agree "
            "(server_id.case: lower in the mapping does for case and spaces) and ingest every export again with "
            "--replace"]


def ingest_stage(lake: Lake, settings: Settings, sources: list[str], mapping_file: str | None,
                 *, replace: bool = False) -> StageRun:
    """Read monitoring exports into raw/ (daily P95 roll-up), merging with what is there.

    A day delivered in part by several runs is pooled: the samples of incomplete days are staged in
    ``partial_days`` and a later run that delivers the same (server_id, ds, metric) rolls the staged
    samples up with its own (``etl.partial_days``). Rows with the same (server_id, ds, metric) as
    rows already in ``raw_metrics`` replace them, unless the lake's row has more samples (a run that
    delivers part of a complete day again keeps the complete day), so ingesting the same export
    twice never duplicates rows or samples; ``replace`` starts the raw tables and the staging afresh.
    The inventory is always written: from the mapping's inventory section (its rows replace those
    of the same servers, and an inventory file's rows replace those of the same source), or, for a
    metrics-only export, the server ids alone, which only add servers the inventory does not know
    yet (a richer inventory row is never overwritten). It is joined to the servers with metrics
    (ids differing only in case or whitespace), and every server with metrics gets a row.

    Returns:
        The stage run: rows read, rows written, rows quarantined.
    """
    from capacity_forecaster.etl.ingest import ingest
    from capacity_forecaster.etl.mapping import contract_mapping, load_mapping

    mapping = contract_mapping() if mapping_file is None else load_mapping(mapping_file)
    if not replace:
        _check_day_timezone(lake, mapping.day_timezone)

    def filesystem_for(uri: str) -> tuple[object, str]:
        location = resolve(uri, settings.lake, role="source")
        return location.fs, location.path

    with stage_run(lake, "ingest", settings) as run:
        start = time.perf_counter()
        staged = None if replace or not lake.has_table("partial_days") else lake.read_table("partial_days")
        try:
            result = ingest(sources, mapping, settings.ingest, filesystem_for, staged)
        except InputError as err:
            if mapping_file is None and "not found; columns are:" in str(err):
                # Without --mapping the file was read as the contract's layout: say so, and where mappings are.
                raise InputError(f"{err}; no --mapping was given, so the file was read as the contract's "
                                 "server_id, ds, metric, value layout (mappings/ has ones for Bitbrains, NAB "
                                 "CloudWatch and generic long or wide exports)") from err
            raise
        if replace and result.rows_read == 0 and lake.has_table("raw_metrics"):
            # helper-51: a header-only export with --replace emptied raw_metrics, with a warning only.
            raise InputError(f"ingest --replace: {', '.join(result.files) or 'the sources'} "
                             f"{'has' if len(result.files) == 1 else 'have'} no data rows; raw/ was left as it is "
                             "(replacing it with nothing would empty it)")
        run.rows_in = result.rows_read
        run.rows_quarantined, run.quarantine_records = result.rows_quarantined, len(result.quarantine)
        reasons: dict[str, tuple[int, str]] = {}
        count_reasons(result.quarantine, reasons)
        reasons.pop("excluded_row", None)  # rows the mapping excludes are not lost: the guard leaves them out
        check_quarantine_share("ingest", result.rows_read - result.rows_excluded,
                               result.rows_quarantined - result.rows_excluded, settings.ingest.max_quarantine_share,
                               "ingest.max_quarantine_share", reasons, "nothing was written to the lake")
        check_value_shares("ingest", result.values, settings.ingest.max_quarantine_share,
                           "ingest.max_quarantine_share", "nothing was written to the lake")
        for message in result.deferred:  # what this run writes: said now that the guards let it write
            log.warning("%s", message)
        warnings = list(result.warnings)
        if replace:
            raw, changed = pa.Table.from_pandas(result.raw_metrics, preserve_index=False), None
        else:
            raw, changed = _merge_raw(lake, result.raw_metrics, result.pooled_days)
            warnings += _merge_warnings(changed)
        kept = result.raw_metrics.iloc[:0] if changed is None else changed[changed["kept"].astype(bool)]
        if raw is not None:
            run.wrote(lake.write_table("raw_metrics", raw))
        partial = _without_days(result.partial_days, kept)
        staged_days = (len(partial[["server_id", "metric", "ds"]].drop_duplicates()) if len(kept)
                       else result.carryover.days_staged)
        run.wrote(lake.write_table("partial_days", partial))
        warnings += _write_inventory(lake, run, result, replace)
        files = set(result.files)

        def same_sources(frame: pd.DataFrame) -> pd.Series:
            origin = frame["source"].astype(str).str.rsplit(":", n=1).str[0]
            return (frame["stage"] == "ingest") & (origin.isin(files) | frame["source"].isin(files))

        quarantine = lake.writer("quarantine")
        if not replace:
            keep_quarantine(lake, quarantine, same_sources)
        quarantine.write(result.quarantine.reindex(columns=list(QUARANTINE_COLUMNS)))
        run.wrote(quarantine.commit())
        carry = result.carryover
        run.rows_out = 0 if raw is None else len(result.raw_metrics) - len(kept)
        # rows_read == rows_used + rows_quarantined; the quarantine may hold several records per row.
        run.counts = {"rows_used": result.rows_used, "rows_excluded": result.rows_excluded,
                      "file_copies": result.file_copies,
                      "quarantine_records": len(result.quarantine),
                      "files": len(result.files), "days_pooled": carry.days_combined,
                      "days_completed": carry.days_completed, "samples_pooled": carry.samples_combined,
                      "samples_repeated": carry.repeats, "partial_days_staged": staged_days,
                      "partial_days_expired": carry.days_expired,
                      "lake_days_kept": len(kept), "warnings": warnings, "day_timezone": mapping.day_timezone}
        # The warnings were logged once as they arose; they are kept in the manifest.
        log.info("ingest: %d files, %d rows read, %d used, %d quarantined (%d quarantine records), "
                 "%d daily values written, %d day(s) completed with samples of earlier runs, "
                 "%d partial day(s) staged, %.1f s", len(result.files), result.rows_read, result.rows_used,
                 result.rows_quarantined, len(result.quarantine), run.rows_out, carry.days_completed,
                 run.counts["partial_days_staged"], time.perf_counter() - start)
    return run
