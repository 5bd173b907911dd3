"""Validate raw daily metrics: parse, check keys and ranges, resolve duplicates, quarantine the rest.

Every input row ends up either kept (possibly clipped, with its original in ``value_raw``) or in the
quarantine frame with a ``reason`` of the form ``"<code>: <detail>"``. Codes, in the order they are
checked (a row gets the first one that applies):

``null_key``, ``invalid_date``, ``unknown_metric``, ``unknown_server``, ``invalid_value``,
``out_of_range``, ``duplicate`` (same key and value as an earlier row), ``conflicting_duplicate``
(same key, different value, lost the resolution rule).

Values above 100 are saturation, not glitches: CPU demand beyond the provisioned capacity, memory
over-commit. They are kept, clipped to 100 (the original stays in ``value_raw``) and flagged
saturated; only values above ``EtlConfig.saturation_max`` are ``out_of_range`` (no monitoring
system reports that much: a unit error). Slightly negative values (within ``value_tolerance``) are
clipped to 0.

Dates: any datetime64 unit is accepted, so a year-9999 sentinel is an ``invalid_date`` (outside the
plausible range) rather than an overflow; a timezone-aware ``ds`` is the local calendar date where
it is local midnight, else the UTC date where it is UTC midnight (else it has a time of day).

Conflict rule: among the distinct values for one (server_id, metric, ds), keep the one closest to the
series' local median (the median of that series' other values within ``CONFLICT_WINDOW_DAYS`` days);
ties, or no neighbours to compare with, go to the larger value because overstating utilisation is the
safe error in capacity planning. A missing value never beats a number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from capacity_forecaster import schema
from capacity_forecaster.config import EtlConfig
from capacity_forecaster.etl.parse import NULL_MARKERS

SOURCE = "raw_metrics"
STAGE = "etl"
CONFLICT_WINDOW_DAYS = 7
_NULL_TEXT = frozenset({"", "nan", *NULL_MARKERS})
_EPOCH = np.datetime64("1970-01-01", "D")
_ISO_YEAR = r"^\s*([+-]?\d{4,})-\d{2}-\d{2}"
_FIRST_NS_YEAR = 1678
_LAST_NS_YEAR = 2261


@dataclass(frozen=True)
class Validated:
    """Rows that passed validation, as parallel arrays (one entry per kept row), plus the quarantine.

    Attributes:
        rows: position of each kept row in the input frame.
        server_ids: sorted distinct server ids (str) of the kept rows.
        server_codes: index into ``server_ids`` per kept row.
        metric_codes: index into ``schema.METRICS`` per kept row.
        days: calendar day per kept row, as days since 1970-01-01.
        value: the usable value (clipped into [0, 100]; NaN where the source had no value).
        value_raw: the value as parsed from the source, before clipping.
        saturated: value_raw is at or above 100 (the server was at or beyond its capacity).
        quarantine: rejected rows with ``schema.QUARANTINE_COLUMNS`` (text values).
    """

    rows: np.ndarray
    server_ids: np.ndarray
    server_codes: np.ndarray
    metric_codes: np.ndarray
    days: np.ndarray
    value: np.ndarray
    value_raw: np.ndarray
    saturated: np.ndarray
    quarantine: pd.DataFrame


def empty_quarantine() -> pd.DataFrame:
    """An empty quarantine frame with the contract columns (all text)."""
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in schema.QUARANTINE_COLUMNS})


def lookup(table: np.ndarray, codes: np.ndarray, missing: object) -> np.ndarray:
    """``table[codes]`` where codes >= 0, ``missing`` where a code is -1 (safe for an empty table)."""
    padded = np.append(table, np.array([missing], dtype=table.dtype if len(table) else None))
    return padded[np.where(codes >= 0, codes, len(padded) - 1)]


def text_keys(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Factorize a key column into codes and stripped text uniques; nulls and blanks get code -1."""
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    text = np.array([str(u).strip() for u in uniques], dtype=object)
    blank = np.array([t == "" for t in text], dtype=bool)
    if blank.any():
        codes = np.where(lookup(blank, codes, False), -1, codes)
    # Distinct raw values can share a text form (1 and "1"): merge them.
    merged, merged_uniques = pd.factorize(text)
    codes = lookup(merged.astype(np.int64), codes, -1)
    return codes.astype(np.int64), np.asarray(merged_uniques, dtype=object)


def _datetime_days(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(days since the epoch, NaT, has a time of day) of a datetime64 array of any unit.

    Working in the array's own unit keeps dates beyond the nanosecond range (year 9999) intact.
    """
    nat = np.isnat(values)
    day = values.astype("datetime64[D]")
    with np.errstate(invalid="ignore"):
        off_midnight = ~nat & (values != day.astype(values.dtype))
    return np.where(nat, 0, (day - _EPOCH).astype(np.int64)), nat, off_midnight


def _zoned_days(col: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Days of a timezone-aware ``ds``: the calendar date where the time is midnight in its own zone,
    else the UTC date where it is midnight in UTC (a UTC date shown in another zone)."""
    local_days, nat, local_off = _datetime_days(col.dt.tz_localize(None).to_numpy())
    utc_days, _, utc_off = _datetime_days(col.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy())
    use_utc = local_off & ~utc_off
    return np.where(use_utc, utc_days, local_days), nat, local_off & utc_off


def _parse_days(col: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``ds`` into days since the epoch.

    Returns:
        (days, problem, beyond): problem text or '' per row, and the rows whose date lies outside
        what any plausible range holds (text years before 1678 or after 2261, which no
        nanosecond timestamp can represent).
    """
    n = len(col)
    problem = np.full(n, "", dtype=object)
    beyond = np.zeros(n, dtype=bool)
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        days, nat, off_midnight = _zoned_days(col)
    elif pd.api.types.is_datetime64_any_dtype(col.dtype):
        days, nat, off_midnight = _datetime_days(col.to_numpy())
    else:
        codes, uniques = pd.factorize(col, use_na_sentinel=True)
        text = pd.Series(uniques, dtype=object).astype(str)
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        year = pd.to_numeric(text.str.extract(_ISO_YEAR, expand=False), errors="coerce")
        far = (parsed.isna() & ((year < _FIRST_NS_YEAR) | (year > _LAST_NS_YEAR))).to_numpy()
        values = np.append(parsed.to_numpy(dtype="datetime64[ns]"), np.datetime64("NaT", "ns"))
        index = np.where(codes >= 0, codes, len(values) - 1)
        days, nat, off_midnight = _datetime_days(values[index])
        beyond = np.append(far, False)[index]
        nat &= ~beyond
        problem[(codes >= 0) & nat] = "invalid_date: not an ISO date (expected YYYY-MM-DD)"
    problem[nat & (problem == "")] = "null_key: ds is empty"
    problem[off_midnight & (problem == "")] = (
        "invalid_date: has a time of day; daily metrics need calendar dates (roll up with capfc ingest)"
    )
    return days, problem, beyond


def _parse_values(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``value`` to float; return (values, unparseable) where unparseable marks non-null junk."""
    if pd.api.types.is_bool_dtype(col.dtype) or not pd.api.types.is_numeric_dtype(col.dtype):
        parsed = pd.to_numeric(col.astype(object).where(col.notna(), np.nan), errors="coerce")
        values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
        unparseable = np.zeros(len(col), dtype=bool)
        candidates = np.flatnonzero(np.isnan(values) & col.notna().to_numpy())
        if len(candidates):
            text = col.iloc[candidates].astype(str).str.strip().str.lower()
            unparseable[candidates[~text.isin(_NULL_TEXT).to_numpy()]] = True
        return values, unparseable
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    return values, np.zeros(len(values), dtype=bool)


def _as_text(col: pd.Series, positions: np.ndarray) -> pd.Series:
    """The original field of the given rows as text (None where it was null)."""
    part = col.iloc[positions]
    if pd.api.types.is_datetime64_any_dtype(part.dtype):
        text = part.dt.strftime("%Y-%m-%d %H:%M:%S").str.removesuffix(" 00:00:00")
    elif pd.api.types.is_float_dtype(part.dtype):
        text = pd.Series([repr(float(v)) for v in part.to_numpy()], index=part.index, dtype=object)
    else:
        text = part.astype(str)
    return text.astype(object).where(part.notna().to_numpy(), None).reset_index(drop=True)


def _local_medians(
    keys: np.ndarray, values: np.ndarray, days: np.ndarray, series: np.ndarray, query_days: np.ndarray
) -> np.ndarray:
    """Median of each queried series' values within the conflict window, excluding the day itself."""
    order = np.argsort(keys, kind="stable")
    sorted_keys, sorted_values = keys[order], values[order]
    offsets = np.array([o for o in range(-CONFLICT_WINDOW_DAYS, CONFLICT_WINDOW_DAYS + 1) if o != 0])
    wanted = (series[:, None] << 32) + (query_days[:, None] + offsets[None, :])
    pos = np.clip(np.searchsorted(sorted_keys, wanted), 0, max(len(sorted_keys) - 1, 0))
    if len(sorted_keys) == 0:
        return np.full(len(series), np.nan)
    found = sorted_keys[pos] == wanted
    window = np.where(found, sorted_values[pos], np.nan)
    with np.errstate(all="ignore"):
        has = (~np.isnan(window)).any(axis=1)
        out = np.full(len(series), np.nan)
        if has.any():
            out[has] = np.nanmedian(window[has], axis=1)
    return out


def _resolve_duplicates(
    ok: np.ndarray, series: np.ndarray, days: np.ndarray, value: np.ndarray, value_raw: np.ndarray,
    reason: np.ndarray,
) -> None:
    """Mark exact and conflicting duplicates among ``ok`` rows in ``reason`` (in place) and clear ``ok``."""
    idx = np.flatnonzero(ok)
    if len(idx) < 2:
        return
    keys = (series[idx] << 32) + (days[idx] - days[idx].min())
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    dup_group = np.zeros(len(sk), dtype=bool)
    same_as_prev = sk[1:] == sk[:-1]
    dup_group[1:] |= same_as_prev
    dup_group[:-1] |= same_as_prev
    if not dup_group.any():
        return
    members = idx[order[dup_group]]
    frame = pd.DataFrame({"key": sk[dup_group], "raw": value_raw[members], "pos": members})
    exact = frame.duplicated(["key", "raw"], keep="first").to_numpy()
    reason[members[exact]] = "duplicate: same server_id, ds, metric and value as an earlier row"
    ok[members[exact]] = False
    distinct = frame.loc[~exact]
    counts = distinct.groupby("key")["key"].transform("size").to_numpy()
    conflict = distinct.loc[counts > 1]
    if conflict.empty:
        return
    pos = conflict["pos"].to_numpy()
    single = ok.copy()
    single[pos] = False
    singles = np.flatnonzero(single)
    ref = _local_medians(
        (series[singles] << 32) + days[singles], value[singles], days[singles], series[pos], days[pos]
    )
    cand = value[pos]
    dist = np.where(np.isnan(cand), np.inf, np.where(np.isnan(ref), 0.0, np.abs(cand - ref)))
    ranked = pd.DataFrame({
        "key": conflict["key"].to_numpy(), "dist": dist, "larger": -np.nan_to_num(cand, nan=-np.inf),
        "pos": pos, "value": cand,
    }).sort_values(["key", "dist", "larger", "pos"], kind="stable")
    lost = ranked.duplicated("key", keep="first").to_numpy()
    winner_value = ranked["value"].where(~lost).ffill().to_numpy()
    losers = ranked["pos"].to_numpy()[lost]
    reason[losers] = [
        f"conflicting_duplicate: another row for this server_id, ds and metric has {w:g}; kept the value "
        "closest to the series' local median (ties and no-neighbour cases keep the larger)"
        for w in winner_value[lost]
    ]
    ok[losers] = False


def _flagger(reason: np.ndarray, flagged: np.ndarray):
    """Return ``mark(mask, text)``: give unflagged rows in ``mask`` a reason (text, or a per-row maker)."""

    def mark(mask: np.ndarray, text: str | Callable[[np.ndarray], list[str]]) -> None:
        new = np.flatnonzero(mask & ~flagged)
        if len(new) == 0:
            return
        reason[new] = text(new) if callable(text) else text
        flagged[new] = True

    return mark


def validate(raw: pd.DataFrame, inventory: pd.DataFrame, cfg: EtlConfig) -> Validated:
    """Check raw metric rows against the contract and split them into kept and quarantined rows.

    Args:
        raw: long frame with at least server_id, ds, metric, value (value may be text).
        inventory: frame with a server_id column; rows for other servers are quarantined.
        cfg: ETL settings (``value_tolerance`` and ``saturation_max`` decide clip versus quarantine;
            ``min_year`` and ``max_year`` bound plausible dates).

    Returns:
        Validated arrays for the kept rows and a quarantine frame with columns server_id, ds,
        metric, value (original text), source ("raw_metrics"), reason ("code: detail"), stage ("etl").

    Raises:
        SchemaError: when a required column is missing from ``raw`` or ``inventory``.
    """
    schema.require_columns(raw, schema.RAW_METRIC_COLUMNS, "raw_metrics")
    schema.require_columns(inventory, (schema.SERVER_ID,), "inventory")
    n = len(raw)
    reason = np.full(n, "", dtype=object)
    flagged = np.zeros(n, dtype=bool)
    mark = _flagger(reason, flagged)
    server_codes, server_text = text_keys(raw[schema.SERVER_ID])
    metric_codes, metric_text = text_keys(raw[schema.METRIC])
    days, date_problem, beyond = _parse_days(raw[schema.DS])
    value_raw, unparseable = _parse_values(raw[schema.VALUE])

    mark(server_codes < 0, "null_key: server_id is empty")
    mark(metric_codes < 0, "null_key: metric is empty")
    has_problem = date_problem != ""
    mark(has_problem, lambda rows: list(date_problem[rows]))
    first_day = (np.datetime64(f"{cfg.min_year}-01-01", "D") - _EPOCH).astype(np.int64)
    last_day = (np.datetime64(f"{cfg.max_year}-12-31", "D") - _EPOCH).astype(np.int64)
    mark(~has_problem & (beyond | (days < first_day) | (days > last_day)),
         f"invalid_date: outside the plausible range {cfg.min_year}-01-01..{cfg.max_year}-12-31")
    metric_index = np.array([schema.METRICS.index(m) if m in schema.METRICS else -1 for m in metric_text],
                            dtype=np.int64)
    metric_raw_codes = metric_codes
    metric_codes = np.where(metric_codes >= 0, lookup(metric_index, metric_codes, -2), -2)
    mark(metric_codes == -1, lambda rows: [
        f"unknown_metric: {metric_text[c]!r} is not one of {', '.join(schema.METRICS)}"
        for c in metric_raw_codes[rows]
    ])
    inventory_ids = {str(s).strip() for s in inventory[schema.SERVER_ID].dropna().unique()}
    known_server = np.array([s in inventory_ids for s in server_text], dtype=bool)
    mark((server_codes >= 0) & ~lookup(known_server, server_codes, True), lambda rows: [
        f"unknown_server: {server_text[c]!r} is not in the inventory" for c in server_codes[rows]
    ])
    mark(unparseable, "invalid_value: value is not a number")
    mark(np.isinf(value_raw), "invalid_value: value is not finite")
    tol, top = cfg.value_tolerance, cfg.saturation_max
    with np.errstate(invalid="ignore"):
        mark(value_raw < -tol, lambda rows: [
            f"out_of_range: {v:g} is below 0 beyond the tolerance of {tol:g} (etl.value_tolerance)"
            for v in value_raw[rows]
        ])
        mark(value_raw > top, lambda rows: [
            f"out_of_range: {v:g} is above etl.saturation_max ({top:g} % of capacity), more than any "
            "monitoring system reports; a unit error? (a fraction x 100 twice, MHz or a per-core sum "
            "in a percent column)" for v in value_raw[rows]
        ])

    ok = ~flagged
    series = server_codes * len(schema.METRICS) + metric_codes
    value = np.clip(value_raw, 0.0, 100.0)
    _resolve_duplicates(ok, series, days, value, value_raw, reason)

    kept = np.flatnonzero(ok)
    ids_sorted = np.array(sorted(set(server_text[np.unique(server_codes[kept])])), dtype=object)
    remap = np.full(len(server_text), -1, dtype=np.int64)
    present = np.isin(server_text, ids_sorted)
    remap[present] = np.searchsorted(ids_sorted, server_text[present])
    bad = np.flatnonzero(~ok)
    quarantine = empty_quarantine()
    if len(bad):
        quarantine = pd.DataFrame({
            schema.SERVER_ID: _as_text(raw[schema.SERVER_ID], bad),
            schema.DS: _as_text(raw[schema.DS], bad),
            schema.METRIC: _as_text(raw[schema.METRIC], bad),
            schema.VALUE: _as_text(raw[schema.VALUE], bad),
            "source": SOURCE,
            "reason": reason[bad],
            "stage": STAGE,
        })
    return Validated(
        rows=kept,
        server_ids=ids_sorted,
        server_codes=remap[server_codes[kept]],
        metric_codes=metric_codes[kept],
        days=days[kept],
        value=value[kept],
        value_raw=value_raw[kept],
        saturated=np.greater_equal(value_raw[kept], 100.0, where=~np.isnan(value_raw[kept]),
                                   out=np.zeros(len(kept), dtype=bool)),
        quarantine=quarantine,
    )
