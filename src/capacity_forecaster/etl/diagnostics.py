"""Per-series diagnostics: data-quality counts, gaps and an augmented Dickey-Fuller stationarity test.

The ADF test is the regression of statsmodels' ``adfuller(x, maxlag=k, autolag=None, regression="c")``
(dy_t on y_{t-1}, dy_{t-1..t-k} and a constant), solved for all series of a batch at once with numpy
instead of one statsmodels call per series (about 1.6 ms each, too slow for thousands of series). On a
gap-free series it gives the same statistic; days left empty drop out of the regression (every row
whose lags touch one) instead of being stitched together. The p-value is MacKinnon's approximation
as in adfuller (``statsmodels.tsa.adfvalues.mackinnonp``), vectorised over its coefficient tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsmodels.tsa.adfvalues import tau_c_largep, tau_c_smallp, tau_max_c, tau_min_c, tau_star_c

from capacity_forecaster.etl.days import latest_plausible_day
from capacity_forecaster.etl.grid import run_lengths
from capacity_forecaster.etl.guard import main_reasons, reason_counts, top_reasons, value_records
from capacity_forecaster.schema import DS, METRIC, METRICS, SERVER_ID

# Fewer usable regression rows than this many per coefficient give no test.
ADF_MIN_ROWS_PER_COEF = 3
SIGNIFICANCE = 0.05
_CHUNK = 256


def _adf_chunk(y: np.ndarray, maxlag: int) -> np.ndarray:
    n_series, n_days = y.shape
    n_rows = n_days - maxlag - 1
    n_coef = maxlag + 2
    stat = np.full(n_series, np.nan)
    if n_rows < ADF_MIN_ROWS_PER_COEF * n_coef:
        return stat
    dy = np.diff(y, axis=1)
    target = dy[:, maxlag:]
    design = np.empty((n_series, n_rows, n_coef))
    design[:, :, 0] = y[:, maxlag:-1]
    for i in range(1, maxlag + 1):
        design[:, :, i] = dy[:, maxlag - i:-i]
    design[:, :, -1] = 1.0
    ok = ~np.isnan(target) & ~np.isnan(design).any(axis=2)
    design = np.where(ok[:, :, None], design, 0.0)
    target = np.where(ok, target, 0.0)
    n_ok = ok.sum(axis=1)
    xtx = np.matmul(design.transpose(0, 2, 1), design)
    xty = np.matmul(design.transpose(0, 2, 1), target[:, :, None])[:, :, 0]
    singular = np.linalg.svd(xtx, compute_uv=False)
    well_posed = (n_ok >= ADF_MIN_ROWS_PER_COEF * n_coef) & (singular[:, -1] > 1e-9 * singular[:, 0])
    if not well_posed.any():
        return stat
    inv = np.linalg.inv(xtx[well_posed])
    beta = np.einsum("spq,sq->sp", inv, xty[well_posed])
    resid = target[well_posed] - np.matmul(design[well_posed], beta[:, :, None])[:, :, 0]
    ssr = (resid**2).sum(axis=1)
    dof = n_ok[well_posed] - n_coef
    with np.errstate(all="ignore"):
        se = np.sqrt(ssr / dof * inv[:, 0, 0])
        t_stat = beta[:, 0] / se
    stat[well_posed] = np.where(np.isfinite(t_stat) & (ssr > 1e-12), t_stat, np.nan)
    return stat


def mackinnon_pvalue(stat: np.ndarray) -> np.ndarray:
    """MacKinnon's approximate p-value of ADF statistics (regression "c", one series), vectorised.

    Uses the coefficient tables of ``statsmodels.tsa.adfvalues`` with the logic of its scalar
    ``mackinnonp`` (one call per series costs ~0.3 ms).
    """
    small = np.polyval(tau_c_smallp[0][::-1], stat)
    large = np.polyval(tau_c_largep[0][::-1], stat)
    pvalue = norm.cdf(np.where(stat <= tau_star_c[0], small, large))
    pvalue = np.where(stat > tau_max_c[0], 1.0, np.where(stat < tau_min_c[0], 0.0, pvalue))
    return np.where(np.isfinite(stat), pvalue, np.nan)


def adf_test(values: np.ndarray, maxlag: int) -> tuple[np.ndarray, np.ndarray]:
    """Augmented Dickey-Fuller test (constant, fixed lag) for every series of a grid.

    Args:
        values: (series x days) matrix; NaN marks days left empty or outside the series' span.
        maxlag: number of lagged differences.

    Returns:
        (ADF statistic, MacKinnon p-value) per series; NaN where the series is too short, constant
        or otherwise degenerate.
    """
    stat = np.full(values.shape[0], np.nan)
    for start in range(0, values.shape[0], _CHUNK):
        stat[start:start + _CHUNK] = _adf_chunk(values[start:start + _CHUNK], maxlag)
    return stat, mackinnon_pvalue(stat)


def longest_runs(mask: np.ndarray) -> np.ndarray:
    """Longest run of consecutive True cells per row."""
    if mask.size == 0:
        return np.zeros(mask.shape[0], dtype=np.int64)
    return run_lengths(mask).max(axis=1)


def series_diagnostics(
    server_ids: np.ndarray,
    metrics: np.ndarray,
    first_ds: np.ndarray,
    last_ds: np.ndarray,
    counts: dict[str, np.ndarray],
    missing: np.ndarray,
    unfilled: np.ndarray,
    final_values: np.ndarray,
    noise_scale: np.ndarray,
    method: str,
    maxlag: int,
) -> pd.DataFrame:
    """One row per series describing what ETL found and did.

    Args:
        server_ids / metrics: the series keys.
        first_ds / last_ds: span of each series (datetime64).
        counts: per-series integer counts, output column name -> array, n_obs first.
        missing: (series x days) cells without a usable value before imputation, inside the span.
        unfilled: cells still empty after imputation.
        final_values: processed values (NaN where empty or outside the span), for the ADF test.
        noise_scale: typical noise standard deviation per series (points).
        method: imputation method used.
        maxlag: ADF lag order.

    Returns:
        Frame with columns server_id, metric, the ``counts`` columns (first_ds and last_ds right after
        n_obs),
        longest_gap_days, unfilled_gap_days, noise_scale, adf_stat, adf_pvalue, is_stationary
        (nullable boolean: NA where the test could not run), imputation_method.
    """
    stat, pvalue = adf_test(final_values, maxlag)
    stationary = pd.Series(pvalue < SIGNIFICANCE, dtype="boolean").mask(np.isnan(pvalue)).array
    columns: dict[str, object] = {"server_id": server_ids, "metric": metrics}
    for name, column in counts.items():
        columns[name] = column.astype(np.int64)
        if name == "n_obs":
            columns["first_ds"] = first_ds.astype("datetime64[ns]")
            columns["last_ds"] = last_ds.astype("datetime64[ns]")
    columns.update({
        "longest_gap_days": longest_runs(missing).astype(np.int64),
        "unfilled_gap_days": unfilled.sum(axis=1).astype(np.int64),
        "noise_scale": noise_scale,
        "adf_stat": stat,
        "adf_pvalue": pvalue,
        "is_stationary": stationary,
        "imputation_method": method,
    })
    frame = pd.DataFrame(columns)
    return frame


def with_quarantine(diagnostics: pd.DataFrame, raw: pd.DataFrame, quarantine: pd.DataFrame) -> pd.DataFrame:
    """``diagnostics`` with what the ETL quarantined per series, and a row for every series it quarantined whole.

    A raw series whose every day was quarantined (all out of range, say) has no processed row, so it
    would drop out of forecasts and risk without a trace: it gets a row with ``n_obs`` 0, which the risk
    stage turns into a ``no_data`` series that says why.

    Args:
        diagnostics: ``series_diagnostics`` of the processed series.
        raw: the raw rows the ETL read (server_id, metric).
        quarantine: the ETL's quarantine rows (server_id, metric, reason "code: detail").

    Returns:
        ``diagnostics`` plus ``n_quarantined`` (raw rows quarantined), ``quarantine_reason`` (the most
        common reason of the series' quarantined rows, "" without any) and ``raw_last_ds`` (the series'
        last raw day, days after tomorrow left out: after ``last_ds`` when its last days were quarantined;
        NaT without a dated raw row), ``lost_at_ingest`` (false; see ``IngestLosses``), and one row per
        whole-quarantined series (counts 0, other columns null), sorted by series.
    """
    keys = [SERVER_ID, METRIC]
    reasons = main_reasons(quarantine, keys)
    # Only rows that name a series can lose one: a null id or an unknown metric is no series of the fleet.
    named = raw.loc[raw[SERVER_ID].notna() & raw[METRIC].isin(METRICS), keys] if len(raw) else raw[keys]
    seen = pd.MultiIndex.from_frame(named.astype(object)).unique() if len(named) else pd.MultiIndex.from_tuples(
        [], names=keys)
    lost = seen.difference(pd.MultiIndex.from_frame(diagnostics[keys].astype(object)))
    extra = _empty_rows(lost, diagnostics)
    out = pd.concat([diagnostics, extra], ignore_index=True) if len(extra) else diagnostics.copy()
    index = pd.MultiIndex.from_frame(out[keys].astype(object))
    found = reasons.reindex(index)
    out["n_quarantined"] = found["rows"].fillna(0).to_numpy(dtype=np.int64)
    out["quarantine_reason"] = found["reason"].astype(object).where(found["reason"].notna(), "").to_numpy(dtype=object)
    out["raw_last_ds"] = _raw_last_days(raw, keys).reindex(index).to_numpy(dtype="datetime64[ns]")
    out["lost_at_ingest"] = np.zeros(len(out), dtype=bool)
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def _empty_rows(series: pd.Index, like: pd.DataFrame) -> pd.DataFrame:
    """A row per (server_id, metric) of ``series`` in ``like``'s columns: counts (``n_*``, ``*_days``) 0, the rest
    null in ``like``'s types (a series with nothing processed)."""
    extra = pd.DataFrame(index=series).reset_index()
    for column in like.columns:
        if column in (SERVER_ID, METRIC):
            continue
        if column.startswith("n_") or column.endswith("_days"):
            extra[column] = np.zeros(len(extra), dtype=np.int64)
        else:
            extra[column] = pd.Series([None] * len(extra), dtype=like[column].dtype if len(like) else object)
    return extra


class IngestLosses:
    """The series that the ingest quarantined whole (every sample: a capacity the mapping's inventory refused, a
    fastStorage VM without its meta row) and so never reached raw/, whether their server has other series there or
    not: without a row they would leave forecasts, risk and the reports unremarked, their trace a warning of the
    ingest that dropped them (helper-66, helper-72).

    The ETL rewrites the quarantine batch by batch; ``add`` counts each batch's ingest records of delivered samples
    with an unusable value or capacity (``guard.VALUE_REASONS``: not a repeated header line, a footer or an empty
    cell) per series and reason, summed as it goes (memory in proportion to the series, not the records); ``rows``
    gives the diagnostics rows of the series the raw data lack.
    """

    def __init__(self, servers: set[str] | None = None) -> None:
        self._servers = servers  # None: every server the records name
        self._counts: list[pd.Series] = []

    def add(self, quarantine: pd.DataFrame) -> None:
        """Count the ingest's sample records in one batch of the quarantine (rows of every stage)."""
        if quarantine.empty or not {"stage", SERVER_ID, METRIC, "reason"} <= set(quarantine.columns):
            return
        ingest = quarantine[(quarantine["stage"] == "ingest").to_numpy(dtype=bool)
                            & quarantine[METRIC].isin(METRICS).to_numpy(dtype=bool)]
        servers = ingest[SERVER_ID].notna() if self._servers is None else ingest[SERVER_ID].isin(self._servers)
        named = ingest[servers.to_numpy(dtype=bool) & value_records(ingest).to_numpy(dtype=bool)]
        if len(named):
            counts = reason_counts(named.astype({SERVER_ID: object, METRIC: object}), [SERVER_ID, METRIC])
            # Summed as they come: memory in proportion to the series and reasons, not to the batches read.
            self._counts = [pd.concat([*self._counts, counts]).groupby(level=[0, 1, 2]).sum()]

    def rows(self, processed: pd.MultiIndex, like: pd.DataFrame) -> pd.DataFrame:
        """Diagnostics rows (``like``'s columns) of the counted series not in ``processed`` (the raw series the ETL
        wrote diagnostics for): ``n_obs`` 0, ``n_quarantined`` their quarantined samples, ``quarantine_reason`` the
        most common code, ``lost_at_ingest`` true."""
        keys = [SERVER_ID, METRIC]
        if not self._counts:
            return like.iloc[:0]
        reasons = top_reasons(self._counts[0], keys)
        reasons = reasons[~reasons.index.isin(processed)]
        out = _empty_rows(reasons.index, like)
        out["n_quarantined"] = reasons["rows"].to_numpy(dtype=np.int64)
        out["quarantine_reason"] = reasons["reason"].to_numpy(dtype=object)
        out["lost_at_ingest"] = np.ones(len(out), dtype=bool)
        return out.reindex(columns=like.columns)


def _raw_last_days(raw: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Per series, its last raw day not after tomorrow (a day of year 9999, which the ETL quarantines, is no last
    day of its monitoring, and overflows nanoseconds: days are compared as whole days)."""
    if DS not in raw.columns or raw.empty:
        return pd.Series(pd.NaT, index=pd.MultiIndex.from_tuples([], names=keys), dtype="datetime64[ns]")
    days = pd.to_datetime(raw[DS], errors="coerce").to_numpy().astype("datetime64[D]")
    plausible = ~np.isnat(days) & (days <= np.datetime64(latest_plausible_day().date(), "D"))
    dated = raw.loc[plausible, keys].astype(object).assign(day=days[plausible].astype("datetime64[ns]"))
    return dated.groupby(keys, sort=False)["day"].max()
