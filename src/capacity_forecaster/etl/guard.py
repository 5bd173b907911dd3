"""The quarantine-share guard: a stage that would throw most of its input away stops instead."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from capacity_forecaster.errors import InputError
from capacity_forecaster.etl.mapping import Mapping
from capacity_forecaster.schema import METRICS

# Reasons of a value that was there but could not be read (or cannot be a percentage of that column).
# Empty cells, NaN and rows whose capacity is 0 or empty (not measurements) are not counted: only the
# row rule judges those, so a VM that was unprovisioned for most of a month does not stop an ingest.
UNREADABLE_CODES = ("unparseable_value", "value_out_of_range", "unparseable_capacity", "invalid_capacity")
VALUE_COUNT_COLUMNS = ("server_id", "metric", "column", "values", "unreadable", "example", "example_source")


def count_reasons(quarantine: pd.DataFrame, into: dict[str, tuple[int, str]]) -> None:
    """Add the quarantine's reason codes to ``into`` (code -> (rows, first full reason))."""
    if quarantine.empty:
        return
    reasons = quarantine["reason"].astype(str)
    codes = reasons.str.split(":", n=1).str[0]
    for code, count in codes.value_counts().items():
        rows, example = into.get(str(code), (0, str(reasons[codes == code].iloc[0])))
        into[str(code)] = (rows + int(count), example)


def main_reasons(quarantine: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group of ``keys`` (a server, a series), its quarantine records and their most common reason code.

    Returns:
        Indexed by ``keys``: ``rows`` (records) and ``reason`` (the most frequent code, ties to the first in
        alphabetical order); no rows for an empty quarantine.
    """
    if quarantine.empty:
        return top_reasons(pd.Series(dtype=np.int64), keys)
    return top_reasons(reason_counts(quarantine, keys), keys)


def sample_records(quarantine: pd.DataFrame) -> pd.Series:
    """The quarantine records of samples: inventory-file rows (reasons inventory_*) say nothing about a server's
    samples; rows the mapping excludes (a stopped VM's) are not lost, and their records count rows per value."""
    return ~quarantine["reason"].astype(str).str.startswith(("inventory_", "excluded_row"))


# Reasons that say a sample of a server's metric was delivered and unusable (its value or capacity), as opposed to a
# row that was no sample at all (a repeated header line, a footer "Total,,", a bad timestamp) or an empty cell (a
# metric not collected there, as a column missing from the file): only these make a series lost at ingest
# (helper-74: a header line inside a concatenated export became a server "host" in every report).
VALUE_REASONS = ("unparseable_value", "non_finite_value", "value_out_of_range", "negative_value", "missing_capacity",
                 "unparseable_capacity", "non_finite_capacity", "zero_capacity", "invalid_capacity")


def value_records(quarantine: pd.DataFrame) -> pd.Series:
    """The quarantine records of delivered samples whose value or capacity was unusable (``VALUE_REASONS``)."""
    return quarantine["reason"].astype(str).str.split(":", n=1).str[0].isin(VALUE_REASONS)


def reason_counts(quarantine: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Records per group of ``keys`` and reason code (``n``, indexed by ``keys`` and ``code``): a quarantine read
    batch by batch sums these (``pd.concat(...).groupby(level=...).sum()``) before ``top_reasons``."""
    codes = quarantine[keys].assign(code=quarantine["reason"].astype(str).str.split(":", n=1).str[0])
    return codes.groupby([*keys, "code"], observed=True).size().rename("n")


def top_reasons(counts: pd.Series, keys: list[str]) -> pd.DataFrame:
    """``main_reasons`` of records counted by ``reason_counts``."""
    if counts.empty:
        index = pd.MultiIndex.from_tuples([], names=keys) if len(keys) > 1 else pd.Index([], name=keys[0])
        return pd.DataFrame({"rows": pd.Series(dtype=np.int64), "reason": pd.Series(dtype=object)}, index=index)
    counted = counts.reset_index()
    counted = counted.sort_values([*keys, "n", "code"], ascending=[*([True] * len(keys)), False, True],
                                  kind="stable")
    return counted.groupby(keys, observed=True).agg(rows=("n", "sum"), reason=("code", "first"))


def _decimal_hint(example: str) -> str:
    """The fix for an unreadable number written with a decimal comma (``'1,5'``), else ""."""
    if example.startswith("unparseable_") and re.search(r"'[-+]?\d+,\d+'", example):
        return "; the numbers use ',' as the decimal mark: set csv: {decimal: ','} in the mapping"
    return ""


def check_quarantine_share(stage: str, rows_in: int, rows_quarantined: int, limit: float, key: str,
                           reasons: dict[str, tuple[int, str]], kept: str) -> None:
    """Stop a stage that would quarantine more than ``limit`` of its input rows.

    Raises:
        InputError: one line with the share, the setting, the main reason (with an example) and how
            to go on anyway (``--force``).
    """
    if rows_in == 0 or rows_quarantined / rows_in <= limit:
        return
    share = rows_quarantined / rows_in
    main = ""
    if reasons:
        code, (count, example) = max(reasons.items(), key=lambda item: item[1][0])
        main = f"; mostly {code} ({count:,} records, e.g. {example[:160]!r}){_decimal_hint(example)}"
    raise InputError(
        f"{stage}: {rows_quarantined:,} of {rows_in:,} rows ({share:.0%}) would be quarantined, more than "
        f"{key} = {limit:g}{main}; {kept}. Fix the input (see the reasons), or rerun with --force "
        f"(or set {key}: 1.0) to accept it"
    )


def value_columns(mapping: Mapping) -> dict[str, str]:
    """The column each metric's values are read from (a long file's value column for every metric)."""
    if mapping.long is not None:
        return dict.fromkeys(METRICS, mapping.long.value)
    return {metric: spec.value_column for metric, spec in mapping.metrics.items()}


def value_counts(server: np.ndarray, metric: np.ndarray, names: list[str], quarantine: pd.DataFrame,
                 columns: dict[str, str]) -> pd.DataFrame:
    """Per series, the values read and how many of them could not be read.

    Args:
        server, metric: server code (index into ``names``) and metric code (index into
            schema.METRICS) of every accepted value.
        names: server ids by code.
        quarantine: the ingest's quarantine records (``UNREADABLE_CODES`` are counted).
        columns: metric -> the column its values come from.

    Returns:
        One row per (server_id, metric) with a value: server_id, metric, column, values (accepted +
        unreadable), unreadable, example (the first unreadable reason, or None).
    """
    return counted_values(accepted_counts(server, metric, len(names)), names, quarantine, columns)


def accepted_counts(server: np.ndarray, metric: np.ndarray, n_names: int) -> np.ndarray:
    """Accepted values per (server code, metric code), flat: ``server * len(METRICS) + metric``."""
    width = len(METRICS)
    return np.bincount(server.astype(np.int64) * width + metric.astype(np.int64), minlength=n_names * width)


def counted_values(accepted: np.ndarray, names: list[str], quarantine: pd.DataFrame,
                   columns: dict[str, str]) -> pd.DataFrame:
    """``value_counts`` from the accepted values already counted per series (``accepted_counts``, summed over
    the chunks of an export that is not held in memory at once)."""
    width = len(METRICS)
    present = np.flatnonzero(accepted)
    frame = pd.DataFrame({"server_id": np.asarray(names, dtype=object)[present // width],
                          "metric": np.asarray(METRICS, dtype=object)[present % width],
                          "accepted": accepted[present]})
    reasons = quarantine["reason"].astype(str)
    bad = quarantine[reasons.str.split(":", n=1).str[0].isin(UNREADABLE_CODES).to_numpy()]
    if len(bad):
        source = bad["source"] if "source" in bad.columns else pd.Series(None, index=bad.index, dtype=object)
        unreadable = (bad.assign(server_id=bad["server_id"].astype(str), metric=bad["metric"].astype(str),
                                 example_source=source)
                      .groupby(["server_id", "metric"], sort=False)
                      .agg(unreadable=("reason", "size"), example=("reason", "first"),
                           example_source=("example_source", "first")).reset_index())
        frame = frame.merge(unreadable, on=["server_id", "metric"], how="outer")
    else:
        frame = frame.assign(unreadable=0, example=None, example_source=None)
    unread = frame["unreadable"].fillna(0).astype(np.int64)
    frame = frame.assign(values=frame["accepted"].fillna(0).astype(np.int64) + unread, unreadable=unread,
                         column=frame["metric"].map(columns))
    return frame.loc[:, list(VALUE_COUNT_COLUMNS)].reset_index(drop=True)


# A series with fewer values than this is not judged alone (one '#VALUE!' cell of a server with one
# row in a small increment would stop a whole export); its values still count in its column's share.
MIN_SERIES_VALUES = 20


def _where(source: object) -> str:
    """`` at file:line`` of an example record (helper-64: the line named the column and server, not the file)."""
    return f" at {source}" if isinstance(source, str) and source else ""


def check_value_shares(stage: str, counts: pd.DataFrame, limit: float, key: str, kept: str) -> None:
    """Stop a stage that could not read more than ``limit`` of one series' values, or of one column's.

    The row rule alone misses a column read in part: a row counts as used when any of its metrics
    gives a value, and a misread format (``1.026,7`` with the wrong separators) rejects only the
    values that use it, the larger ones, which would bias every daily P95 of the series. Series
    with fewer than MIN_SERIES_VALUES values are judged only through their column's share.

    Args:
        counts: value_counts() of the stage.
        limit, key: the share allowed and the setting that holds it.
        kept: what happened to the lake (for the message).

    Raises:
        InputError: one line naming the column, the worst series, the share, the setting, an
            example reason and how to go on anyway (``--force``).
    """
    if counts.empty:
        return
    shares = counts.assign(share=counts["unreadable"] / counts["values"].where(counts["values"] > 0))
    totals = counts.groupby("column")[["unreadable", "values"]].sum()
    bad_columns = totals.index[(totals["unreadable"] > limit * totals["values"]).to_numpy()]
    over = shares[((shares["share"] > limit) & (shares["values"] >= MIN_SERIES_VALUES)).to_numpy()
                  | (shares["column"].isin(bad_columns) & (shares["unreadable"] > 0)).to_numpy()]
    if over.empty:
        return
    worst = over.sort_values(["share", "unreadable"], ascending=False, kind="stable").iloc[0]
    column = counts[counts["column"] == worst["column"]]
    raise InputError(
        f"{stage}: column '{worst['column']}' ({worst['metric']}): {worst['unreadable']:,} of "
        f"{worst['values']:,} values of server {worst['server_id']} ({worst['share']:.0%}) could not be read, "
        f"more than {key} = {limit:g} ({len(over)} of {len(counts)} series over it; "
        f"{int(column['unreadable'].sum()):,} of {int(column['values'].sum()):,} values in the column), e.g. "
        f"{str(worst['example'])[:160]!r}{_where(worst['example_source'])}{_decimal_hint(str(worst['example']))}; "
        f"{kept}. Fix the input or the "
        "mapping (see the reasons), or rerun "
        f"with --force (or set {key}: 1.0) to accept it"
    )
