"""Capacity needed by the forecast, standard sizes that meet it, and what a size costs."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.inventory import complete_inventory
from capacity_forecaster.schema import DS, METRIC, SERVER_ID, flag, require_columns

logger = logging.getLogger(__name__)

NEED_COLUMNS = (SERVER_ID, "cpu_cores", "memory_gb", "cpu_peak_upper", "memory_peak_upper", "cpu_needed_pct",
                "memory_needed_pct", "cpu_needed", "memory_needed", "sized_cpu_cores", "sized_memory_gb",
                "exceeds_largest_size", "cpu_recurring", "memory_recurring", "cpu_recent", "memory_recent")
# Fewer servers of a type than this and its prices come from the whole fleet's fit.
_MIN_FIT_SERVERS = 4


def size_gb(values: np.ndarray) -> np.ndarray:
    """Memory sizes as stored: GB to one decimal, a non-zero size never rounded to 0 (a 0.17 GB VM reads 0.2,
    0.03 GB reads 0.1); NaN stays NaN."""
    gb = np.asarray(values, dtype=float)
    rounded = np.round(gb, 1)
    return np.where((gb > 0) & (rounded < 0.1), 0.1, rounded) + 0.0


def standard_size(required: np.ndarray, sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The smallest standard size at or above each requirement.

    Args:
        required: capacity needed (cores or GB); NaN stays NaN.
        sizes: allowed sizes, strictly increasing.

    Returns:
        (size, too_big): the size, and whether the requirement exceeds the largest size (the
        largest is returned then, and the caller must say so).
    """
    table = np.asarray(sizes, dtype=float)
    req = np.asarray(required, dtype=float)
    # A hair of tolerance so that 8.000000001 cores of float noise does not jump a size.
    idx = np.searchsorted(table, np.where(np.isnan(req), 0.0, req) - 1e-9, side="left")
    too_big = (idx >= len(table)) & ~np.isnan(req)
    size = table[np.minimum(idx, len(table) - 1)]
    return np.where(np.isnan(req), np.nan, size), too_big


def seen_over(need: pd.DataFrame, band: float) -> pd.Series:
    """Per row of ``need`` (``capacity_needs`` rows, any index): a metric's sizing peak is over ``band`` and is one
    the server was seen at (its recent or recurring observed peak, not only the forecast's interval): the
    evidence that makes a kept server under-provisioned rather than optimized (``options.findings``) and its
    rationale say "watch"."""
    seen = pd.Series(False, index=need.index)
    for metric in ("cpu", "memory"):
        observed = pd.Series(False, index=need.index)
        for source in (f"{metric}_recent", f"{metric}_recurring"):
            if source in need.columns:
                observed |= flag(need[source])
        seen |= observed & (need[f"{metric}_peak_upper"].astype(float) > band)
    return seen


def capacity_needs(forecasts: pd.DataFrame, inventory: pd.DataFrame, cfg: RiskConfig,
                   current: pd.DataFrame | None = None, analogue: pd.DataFrame | None = None) -> pd.DataFrame:
    """Cores and GB each server needs for its forecast peak upper bound plus headroom.

    need = peak upper bound (%) x current capacity x (1 + headroom) / target utilisation, so
    that after resizing the forecast upper bound plus headroom stays at or under
    ``cfg.target_utilisation``. Every series is sized for at least the highest of its recent observed
    days as well (``current``'s ``recent_usual_peak``: the last ``current_window_days`` observed days,
    anomaly and outlier days aside; ``recent_peak``, all of them, for a series already over its
    threshold): a forecast may expect a series to fall back, but a right-size below what
    the server demonstrably used last week is no saving (helper-41: Bitbrains VM 89, right-sized to
    4 GB on a forecast upper bound of 32 % while its last day read 43 % and an anomaly day 45 % of
    6 GB; in September it used 3.8 GB), and a series already over its threshold runs there now (a
    forecast that fits the current size would otherwise "upsize" it to the size it has). A series with a recurring
    period-end peak in the horizon (``analogue``'s ``analogue_peak``) is sized for that peak where it is
    higher: a model can miss a month-end batch, and a right-size or consolidation must not cut it. Sized values are
    the smallest standard sizes at or above the need (never below it) and at least the smallest
    standard size. Where the current size is unknown (cpu_cores / memory_gb missing) the need is
    known only in percent of the current capacity (``*_needed_pct``) and the absolute columns are NaN.

    Args:
        forecasts: server_id, metric, ds, yhat_upper (cpu and memory rows are used).
        inventory: server_id (+ cpu_cores, memory_gb where known).
        cfg: risk settings (target_utilisation, headroom, standard sizes).
        current: ``current.current_state`` of the servers (None: the forecast alone).
        analogue: ``analogue.summarise_analogue`` of the servers (None: no period-end peaks).

    Returns:
        One row per inventory server: server_id, cpu_cores, memory_gb, cpu_peak_upper,
        memory_peak_upper (% of current capacity; the recent observed peak where that is higher;
        NaN with neither), cpu_needed_pct,
        memory_needed_pct (the need in % of the current capacity), cpu_needed, memory_needed
        (cores, GB; NaN where the size is unknown), sized_cpu_cores, sized_memory_gb,
        exceeds_largest_size, cpu_recurring, memory_recurring (the analogue's peak set the peak),
        cpu_recent, memory_recent (the recent observed days set it).
    """
    require_columns(forecasts, (SERVER_ID, METRIC, DS, "yhat_upper"), "forecasts")
    inventory = complete_inventory(inventory)
    peaks = (forecasts[forecasts[METRIC].isin(["cpu", "memory"])]
             .groupby([SERVER_ID, METRIC])["yhat_upper"].max().unstack(METRIC)
             .reindex(columns=["cpu", "memory"]))
    forecast_peaks = peaks
    recent = pd.DataFrame(columns=["cpu", "memory"], dtype=bool)
    if current is not None and len(current):
        seen = current[current[METRIC].isin(["cpu", "memory"])]
        # A series over its threshold now is sized for its recent days as they were; any other for its usual
        # recent days (anomaly days aside, as the forecast, the idle evidence and the clusters leave them:
        # helper-44, an idle fastStorage VM's one anomalous 100 % day made all its sizing options "very high").
        breaching = flag(seen["already_breaching"])
        usual = seen["recent_usual_peak"] if "recent_usual_peak" in seen.columns else seen["recent_peak"]
        seen = seen.assign(_floor=seen["recent_peak"].where(breaching, usual))
        observed = (seen.pivot_table(index=SERVER_ID, columns=METRIC, values="_floor", aggfunc="max")
                    .reindex(columns=["cpu", "memory"]))
        if len(observed):
            peaks = peaks.combine(observed, np.fmax)
            before = forecast_peaks.reindex(index=observed.index, columns=["cpu", "memory"])
            recent = observed.gt(before) | (observed.notna() & before.isna())
    if analogue is not None and len(analogue):
        recurring = (analogue[analogue[METRIC].isin(["cpu", "memory"])]
                     .pivot_table(index=SERVER_ID, columns=METRIC, values="analogue_peak", aggfunc="max")
                     .reindex(columns=["cpu", "memory"]))
        raised = recurring.gt(peaks.reindex(recurring.index))  # NaN on either side compares False
        peaks = peaks.combine(recurring, np.fmax) if len(recurring) else peaks
    else:
        raised = pd.DataFrame(columns=["cpu", "memory"], dtype=bool)
    out = inventory[[SERVER_ID, "cpu_cores", "memory_gb"]].drop_duplicates(SERVER_ID).reset_index(drop=True)
    aligned = peaks.reindex(out[SERVER_ID])
    # Where the recurring period-end peak, not the forecast, sets the peak (the rationale says so).
    lifted = raised.reindex(index=out[SERVER_ID], columns=["cpu", "memory"], fill_value=False).astype(bool)
    out["cpu_recurring"] = lifted["cpu"].to_numpy(dtype=bool)
    out["memory_recurring"] = lifted["memory"].to_numpy(dtype=bool)
    # Where the recent observed days, not the forecast or a recurring peak, set the peak.
    late = recent.reindex(index=out[SERVER_ID], columns=["cpu", "memory"], fill_value=False).astype(bool)
    out["cpu_recent"] = late["cpu"].to_numpy(dtype=bool) & ~out["cpu_recurring"].to_numpy(dtype=bool)
    out["memory_recent"] = late["memory"].to_numpy(dtype=bool) & ~out["memory_recurring"].to_numpy(dtype=bool)
    out["cpu_peak_upper"] = aligned["cpu"].to_numpy(dtype=float)
    out["memory_peak_upper"] = aligned["memory"].to_numpy(dtype=float)
    factor = (1.0 + cfg.headroom) / (cfg.target_utilisation / 100.0)
    out["cpu_needed_pct"] = out["cpu_peak_upper"] * factor
    out["memory_needed_pct"] = out["memory_peak_upper"] * factor
    out["cpu_needed"] = out["cpu_needed_pct"] / 100.0 * out["cpu_cores"]
    out["memory_needed"] = out["memory_needed_pct"] / 100.0 * out["memory_gb"]
    cores, cores_big = standard_size(np.maximum(out["cpu_needed"].to_numpy(), cfg.cpu_sizes[0]), cfg.cpu_sizes)
    memory, memory_big = standard_size(np.maximum(out["memory_needed"].to_numpy(), cfg.memory_sizes[0]),
                                       cfg.memory_sizes)
    out["sized_cpu_cores"] = np.where(out["cpu_needed"].isna(), np.nan, cores)
    out["sized_memory_gb"] = np.where(out["memory_needed"].isna(), np.nan, memory)
    out["exceeds_largest_size"] = cores_big | memory_big
    return out[list(NEED_COLUMNS)]


@dataclass(frozen=True)
class CostModel:
    """Monthly cost = fixed + per_core x cores + per_gb x GB, fitted per server type on the inventory.

    Attributes:
        rates: index server_type (plus ``*`` for the whole fleet), columns fixed, per_core, per_gb.
    """

    rates: pd.DataFrame

    @classmethod
    def fit(cls, inventory: pd.DataFrame) -> CostModel:
        """Non-negative least squares of monthly_cost_usd on cores and GB, per server_type.

        Types with fewer than 4 servers use the fleet-wide fit; a fleet too small to fit prices
        every server in proportion to its current cost (see ``project``).

        Servers with an unknown cost, core count or memory size are left out of the fit.

        Args:
            inventory: server_id (+ server_type, cpu_cores, memory_gb, monthly_cost_usd).

        Returns:
            The fitted CostModel.
        """
        inventory = complete_inventory(inventory)
        inventory = inventory.dropna(subset=["cpu_cores", "memory_gb", "monthly_cost_usd"])
        rows = {}
        groups = [("*", inventory), *inventory.groupby("server_type", sort=True)]
        for name, part in groups:
            if len(part) < _MIN_FIT_SERVERS:
                continue
            design = np.column_stack([np.ones(len(part)), part["cpu_cores"].to_numpy(float),
                                      part["memory_gb"].to_numpy(float)])
            coef, _ = nnls(design, part["monthly_cost_usd"].to_numpy(float))
            if coef[1] + coef[2] > 0:
                rows[str(name)] = coef
        return cls(pd.DataFrame.from_dict(rows, orient="index", columns=["fixed", "per_core", "per_gb"]))

    def project(self, frame: pd.DataFrame, new_cores: np.ndarray, new_memory: np.ndarray) -> np.ndarray:
        """Monthly cost of each server at a new size (NaN where its cost or size is unknown).

        The fitted price ratio (new size over current size, ``ratio``) is applied to the server's
        own current cost, so a server that costs more than the fit (licences, support) keeps its
        premium.

        Args:
            frame: server_type, cpu_cores, memory_gb, monthly_cost_usd per server.
            new_cores: new core counts (aligned with ``frame``).
            new_memory: new GB (aligned with ``frame``).

        Returns:
            Projected monthly cost per server.
        """
        cores = frame["cpu_cores"].to_numpy(float)
        memory = frame["memory_gb"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = np.asarray(new_cores, dtype=float) / cores, np.asarray(new_memory, dtype=float) / memory
        return frame["monthly_cost_usd"].to_numpy(float) * self.ratio(frame, *shares)

    def ratio(self, frame: pd.DataFrame, cpu_share: np.ndarray, memory_share: np.ndarray) -> np.ndarray:
        """New cost over current cost when cpu and memory change to the given shares of today's size.

        With a fit and known sizes the ratio of fitted prices; where either size is unknown, or
        nothing could be fitted, the mean of the known shares (cost in proportion to capacity).
        Needs no current cost, so a server without a price still gets a relative answer.

        Args:
            frame: server_type, cpu_cores, memory_gb per server.
            cpu_share: new cores / current cores (aligned with ``frame``; NaN: unknown).
            memory_share: new GB / current GB (NaN: unknown).

        Returns:
            The ratio per server (NaN where neither share is known).
        """
        cpu_share, memory_share = np.asarray(cpu_share, dtype=float), np.asarray(memory_share, dtype=float)
        both = np.column_stack([cpu_share, memory_share])
        known = np.isfinite(both)
        proportional = np.where(known.any(axis=1), np.where(known, both, 0.0).sum(axis=1)
                                / np.maximum(known.sum(axis=1), 1), np.nan)
        if self.rates.empty:
            return proportional
        cores = frame["cpu_cores"].to_numpy(float)
        memory = frame["memory_gb"].to_numpy(float)
        fleet = self.rates.loc["*"] if "*" in self.rates.index else self.rates.iloc[0]
        rates = self.rates.reindex(frame["server_type"].astype(str)).fillna(fleet).to_numpy()
        now = rates[:, 0] + rates[:, 1] * cores + rates[:, 2] * memory
        new = rates[:, 0] + rates[:, 1] * cores * cpu_share + rates[:, 2] * memory * memory_share
        with np.errstate(invalid="ignore", divide="ignore"):
            fitted = np.where(now > 0, new / np.where(now > 0, now, 1.0), 1.0)
        return np.where(np.isfinite(cores) & np.isfinite(memory) & known.all(axis=1), fitted, proportional)
