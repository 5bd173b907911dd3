"""Current state per series: observed days over the threshold in the recent window, the last 30 and 90 days.

A server that already runs above its threshold is the most urgent risk there is, whatever its
forecast says or however short its history is. Only *observed* days count: the value is present
and was not imputed by the ETL stage (so a glitch or outlier the ETL replaced is not evidence). With
a finer-than-daily frequency a day counts as over when any of its rows is over.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.etl.days import latest_plausible_day
from capacity_forecaster.risk.levels import Status, thresholds
from capacity_forecaster.schema import DS, METRIC, SERVER_ID, UNUSUAL_FLAGS, VALUE, flag, flagged, require_columns

CURRENT_COLUMNS = (SERVER_ID, METRIC, "observed_days", "last_observed", "last_value", "recent_days",
                   "days_over_recent", "days_over_30d", "days_over_90d", "last_over_ds", "already_breaching",
                   "recent_peak", "recent_usual_peak", "days_saturated_recent", "recent_gap_days",
                   "recent_gap_resumed", "days_after_gap")
_DAY = pd.Timedelta(days=1)


def observed_mask(metrics: pd.DataFrame) -> pd.Series:
    """Rows that hold a measured value: present and not imputed (``is_imputed``, when the column exists)."""
    observed = metrics[VALUE].notna()
    if "is_imputed" in metrics.columns:
        observed &= ~flag(metrics["is_imputed"])
    return observed


def current_state(metrics: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    """How often every series ran over its threshold on its most recent observed days.

    ``days_over_recent`` counts days over the threshold among the last ``cfg.current_window_days``
    observed days (``recent_days`` of them exist); the series is ``already_breaching`` when that
    count reaches ``cfg.current_min_days_over``, or when its last ``cfg.current_last_days``
    observed days are all over (it runs over its threshold now: a quarter-end peak on the last day
    counts). ``days_over_30d`` / ``days_over_90d`` count
    observed days over the threshold in the 30 / 90 calendar days ending on the last observed day.
    "Over" means strictly above the threshold, as for forecast breaches.

    Args:
        metrics: processed metrics: server_id, ds, metric, value (+ is_imputed).
        cfg: risk settings (threshold, metric_thresholds, current_window_days, current_min_days_over,
            current_last_days).

    Returns:
        One row per (server_id, metric) with at least one observed value: server_id, metric,
        observed_days, last_observed, last_value (the last observed day's value), recent_days,
        days_over_recent, days_over_30d, days_over_90d, last_over_ds (last observed day over the
        threshold, NaT if none), already_breaching, recent_peak (the highest of the recent days),
        recent_usual_peak (the highest of the recent days not flagged ``is_anomaly`` / ``is_outlier``; NaN if
        all are),
        days_saturated_recent (recent days with a saturated value, ``is_saturated``: demand above the
        capacity, so the real need is unknown; anomaly and outlier days aside unless the series is
        already breaching; 0 without the column), recent_gap_days and
        recent_gap_resumed (the longest run of days without data between two recent days, and the day
        the data resumed after it: the recent days reach further back than their count says; 0 / NaT
        without a gap), days_after_gap (observed days from that day on; 0 without a gap).
    """
    require_columns(metrics, (SERVER_ID, DS, METRIC, VALUE), "metrics")
    observed = observed_mask(metrics)
    rows = metrics.loc[observed, [SERVER_ID, METRIC, DS, VALUE]]
    if rows.empty:
        return _empty()
    saturated = (flag(metrics.loc[rows.index, "is_saturated"])
                 if "is_saturated" in metrics.columns else pd.Series(False, index=rows.index))
    unusual = flagged(metrics, UNUSUAL_FLAGS)[observed.to_numpy()].set_axis(rows.index)
    day = pd.to_datetime(rows[DS]).dt.floor("D")
    daily = (rows.assign(**{DS: day}, saturated=saturated, usual=rows[VALUE].where(~unusual))
             .groupby([SERVER_ID, METRIC, DS], sort=True, observed=True)
             .agg(**{VALUE: (VALUE, "max"), "saturated": ("saturated", "any"), "usual": ("usual", "max")})
             .reset_index())
    over = daily[VALUE].to_numpy(float) > thresholds(daily[METRIC], cfg).to_numpy(float)
    keys = [SERVER_ID, METRIC]
    grouped = daily.groupby(keys, sort=True, observed=True)
    from_end = grouped.cumcount(ascending=False).to_numpy()
    last = grouped[DS].transform("max")
    age = (last - daily[DS]).dt.total_seconds().to_numpy(float) / _DAY.total_seconds()
    recent = from_end < cfg.current_window_days
    latest = from_end < cfg.current_last_days
    # Days without data before each day, counted where both ends are recent days.
    gap = ((daily[DS] - grouped[DS].shift(1)).dt.days - 1).fillna(0).to_numpy(np.int64)
    gap = np.where(from_end < cfg.current_window_days - 1, gap, 0)
    frame = pd.DataFrame({
        SERVER_ID: daily[SERVER_ID], METRIC: daily[METRIC], DS: daily[DS], VALUE: daily[VALUE],
        "one": 1, "recent": recent.astype(np.int64), "over_recent": (recent & over).astype(np.int64),
        "over_30": (over & (age < 30)).astype(np.int64), "over_90": (over & (age < 90)).astype(np.int64),
        "over_ds": daily[DS].where(over), "over_latest": (latest & over).astype(np.int64),
        "recent_value": daily[VALUE].where(recent), "recent_usual": daily["usual"].where(recent),
        "saturated_recent": (recent & daily["saturated"].to_numpy(bool)).astype(np.int64),
        "saturated_usual": (recent & daily["saturated"].to_numpy(bool) & daily["usual"].notna().to_numpy()
                            ).astype(np.int64),
        "gap": gap,
    })
    out = frame.groupby(keys, sort=True, observed=True).agg(
        observed_days=("one", "sum"), last_observed=(DS, "max"), last_value=(VALUE, "last"),
        recent_days=("recent", "sum"), days_over_recent=("over_recent", "sum"), days_over_30d=("over_30", "sum"),
        days_over_90d=("over_90", "sum"), last_over_ds=("over_ds", "max"),
        over_latest=("over_latest", "sum"), recent_peak=("recent_value", "max"),
        recent_usual_peak=("recent_usual", "max"),
        days_saturated_recent=("saturated_recent", "sum"), saturated_usual=("saturated_usual", "sum"),
        recent_gap_days=("gap", "max")).reset_index()
    longest = frame.groupby(keys, sort=True, observed=True)["gap"].idxmax().to_numpy()
    has_gap = out["recent_gap_days"] > 0
    out["recent_gap_resumed"] = pd.Series(pd.to_datetime(frame[DS].to_numpy()[longest]), index=out.index).where(has_gap)
    out["days_after_gap"] = np.where(has_gap, from_end[longest] + 1, 0).astype(np.int64)
    runs_over_now = (cfg.current_last_days > 0) & (out["over_latest"] >= cfg.current_last_days)
    out["already_breaching"] = (out["days_over_recent"] >= cfg.current_min_days_over) | runs_over_now
    # As for the sizing floor: a series not breaching is not "saturated" by an anomaly or outlier day (an idle
    # fastStorage VM's one 100 % day made every size of it "a minimum").
    out["days_saturated_recent"] = out["days_saturated_recent"].where(out["already_breaching"],
                                                                      out["saturated_usual"])
    return out[list(CURRENT_COLUMNS)]


def rule_text(cfg: RiskConfig) -> str:
    """The already-breaching rule in words, for summaries, reports and the dashboard."""
    text = f"over the threshold on >= {cfg.current_min_days_over} of the last {cfg.current_window_days} observed days"
    if cfg.current_last_days == 1:
        return text + " or on the last one"
    if cfg.current_last_days > 1:
        return text + f" or on each of the last {cfg.current_last_days}"
    return text


# server_risk's column of a series' last raw day, where its raw data go on after its last observed day (the ETL
# quarantined the days between: ``breach.with_lost_series``).
RAW_LAST = "raw_last_observed"
# Where a stale series' reason turns from why it is stale to what its old data said (``stale_lead``).
AS_OF_LAST = "; as of its last data: "
AS_OF_GAP = "; as of the data before the gap: "


def stale_lead(reason: pd.Series) -> pd.Series:
    """The part of stale series' reasons (``mark_stale``) that says why they are stale, without what their
    old data said (a reason without either marker is returned whole)."""
    return reason.astype(str).str.split(f"{re.escape(AS_OF_LAST)}|{re.escape(AS_OF_GAP)}", n=1, regex=True).str[0]


def mark_stale(server_risk: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    """Series whose data end long before the fleet's: status ``stale``, the reason says since when.

    A series is stale when its last observed day lies more than ``cfg.stale_after_days`` before the day the
    series monitored alongside it reached (``peers_latest``: in one fleet, the fleet's latest day unless fewer than
    a quarter of them got there; exports of other periods are left alone), taken never after tomorrow (a server
    whose clock runs years ahead does not set it): a monitoring feed that stopped, or a server that was retired but
    is still in the exports' history. Its level stays what its last data say, but it is not "already breaching" now
    and nothing is recommended on it: its reason says to check its monitoring. Needs the whole fleet's rows
    (``stage.conclude``), not a chunk's.

    A series whose data stopped for at least ``stale_after_days`` and came back for fewer than
    ``current_min_days_over`` days (``stopped_after_gap``) is stale too: those days say nothing current
    (fastStorage's VMs that stop mid-trace keep one sample on its last day). ``stale_since`` is the day
    the data stopped (the last observed day, or the last day before such a gap); NaT elsewhere.

    Args:
        server_risk: server_id, metric, status, reason, first_observed, last_observed (``breach.assess_breaches``).
        cfg: risk settings (``stale_after_days``; 0 = off).

    Returns:
        A copy of ``server_risk`` with the stale series' status and reason changed and ``stale_since`` added;
        one that was already breaching takes back its forecast's crossing (``forecast_breach_ds``) as
        ``breach_ds`` and ``days_to_breach``.
    """
    observed = server_risk["status"] != Status.NO_DATA.value
    last = pd.to_datetime(server_risk["last_observed"])
    if cfg.stale_after_days <= 0 or not observed.any():
        return server_risk
    # A clock set years ahead must not make the rest of the fleet stale: the fleet's latest day is never
    # taken after tomorrow (UTC; the ETL warns about such servers, servers_dated_after_today).
    tomorrow = latest_plausible_day()
    peers = peers_latest(server_risk, observed)
    latest = peers.where(peers <= tomorrow, tomorrow)
    behind = (latest - last).dt.days
    stale = (observed & (behind > cfg.stale_after_days)).to_numpy()
    resumed = stopped_after_gap(server_risk, cfg)
    gapped = observed.to_numpy() & ~stale & resumed.notna().to_numpy()
    out = server_risk.copy()
    out["stale_since"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]")
    if not (stale.any() or gapped.any()):
        return out
    since = last[stale].dt.strftime("%Y-%m-%d")
    whose = np.where(latest[stale] >= min(last[observed].max(), tomorrow), "the fleet's latest day",
                     "the day the servers monitored with it reached")
    # Raw data that go on after the last observed day: the ETL quarantined them (helper-64: a VM at 210-260 %, above
    # etl.saturation_max, for its last 14 days read "check its monitoring").
    raw_last = (pd.to_datetime(server_risk[RAW_LAST]) if RAW_LAST in server_risk.columns
                else pd.Series(pd.NaT, index=server_risk.index))[stale]
    # Only raw data that went on to within stale_after_days of the latest day (helper-70: one quarantined day after
    # the last observed one, then nothing for 19 days, is a feed that stopped).
    cut = ((raw_last > last[stale]) & ((latest[stale] - raw_last).dt.days <= cfg.stale_after_days)).to_numpy()
    what = np.where(cut, ": no usable data since ", ": no data since ")
    advice = np.where(cut, "its raw data go on to " + raw_last.dt.strftime("%Y-%m-%d").fillna("")
                      + " but the ETL quarantined those days: see the quarantine table for why",
                      "check its monitoring, or remove the server from the inventory if it was retired")
    out.loc[stale, "reason"] = (out.loc[stale, METRIC] + what + since + ", "
                                + behind[stale].astype(int).astype(str) + " days before " + whose + " ("
                                + latest[stale].dt.strftime("%Y-%m-%d") + "): " + advice + AS_OF_LAST
                                + out.loc[stale, "reason"])
    out.loc[stale, "stale_since"] = last[stale]
    # Data that stopped, then came back for fewer days than make a series breaching (fastStorage VMs 626 and
    # 636 read with their 0-vCPU rows: saturated until 27 August, one 5-minute sample on the trace's last day).
    stopped = resumed[gapped] - pd.to_timedelta(server_risk.loc[gapped, "recent_gap_days"].astype(int) + 1, unit="D")
    after = server_risk.loc[gapped, "days_after_gap"].astype(int)
    out.loc[gapped, "reason"] = (
        out.loc[gapped, METRIC] + ": no data after " + stopped.dt.strftime("%Y-%m-%d") + " until "
        + resumed[gapped].dt.strftime("%Y-%m-%d") + ", then only " + after.astype(str)
        + np.where(after == 1, " day", " days") + ": check its monitoring (a stopped or migrated server?)"
        + AS_OF_GAP + out.loc[gapped, "reason"])
    out.loc[gapped, "stale_since"] = stopped
    # Not breaching now: a series that was takes back its forecast's own crossing, counted from its last observed
    # day (helper-53: fastStorage 626 kept "0 days" with a breach date 17 days before its last day).
    now = (stale | gapped) & (server_risk["status"] == Status.ALREADY_BREACHING.value).to_numpy()
    if now.any() and "forecast_breach_ds" in out.columns:
        crossing = pd.to_datetime(out.loc[now, "forecast_breach_ds"])
        out.loc[now, "breach_ds"] = out.loc[now, "forecast_breach_ds"]
        out.loc[now, "days_to_breach"] = (crossing - last[now].dt.normalize()).dt.days
    out.loc[stale | gapped, "status"] = Status.STALE.value
    return out


# A series is behind its peers only where at least this share of them went on further: one server of fifteen whose
# export ran 20 days past the others' made the other fourteen stale, breaching ones included (helper-72).
PEER_SHARE = 0.25


def peers_latest(server_risk: pd.DataFrame, observed: pd.Series) -> pd.Series:
    """Per row, the day its data would have reached had its monitoring gone on like its peers': among the series
    observed on its last day (itself included), the latest last day that at least ``PEER_SHARE`` of them reached.

    A series monitored alongside others that went on is stale; exports of other periods are not its peers (helper-64:
    one NAB file of October made every series of March and July stale, breaching ones included), nor is one series
    among many that runs on alone (helper-72).
    """
    last = pd.to_datetime(server_risk["last_observed"])
    first = pd.to_datetime(server_risk["first_observed"]).fillna(last)
    known = (observed & last.notna()).to_numpy()
    ends, starts = last.to_numpy()[known], first.to_numpy()[known]
    latest = last.to_numpy().copy()
    for day in np.unique(ends):
        # Its peers: the series observed on that day (started by it, ended on or after it); their ends, latest first.
        theirs = np.sort(ends[(starts <= day) & (ends >= day)])[::-1]
        reached = theirs[max(int(np.ceil(PEER_SHARE * len(theirs))), 1) - 1]
        latest[known & (last.to_numpy() == day)] = reached
    return pd.Series(pd.to_datetime(latest), index=server_risk.index).where(observed, pd.NaT)


def stopped_after_gap(server_risk: pd.DataFrame, cfg: RiskConfig) -> pd.Series:
    """Per row, the day the data resumed after a gap of at least ``stale_after_days`` inside the recent days,
    where fewer than ``current_min_days_over`` observed days follow it (too few to say anything current);
    NaT elsewhere, and everywhere when the columns are absent or the rule is off."""
    columns = {"recent_gap_days", "recent_gap_resumed", "days_after_gap"}
    if cfg.stale_after_days <= 0 or not columns <= set(server_risk.columns):
        return pd.Series(pd.NaT, index=server_risk.index, dtype="datetime64[ns]")
    gap = pd.to_numeric(server_risk["recent_gap_days"], errors="coerce").fillna(0)
    after = pd.to_numeric(server_risk["days_after_gap"], errors="coerce").fillna(0)
    thin = (gap >= cfg.stale_after_days) & (after > 0) & (after < cfg.current_min_days_over)
    return pd.to_datetime(server_risk["recent_gap_resumed"]).where(thin)


def _empty() -> pd.DataFrame:
    ints = ("observed_days", "recent_days", "days_over_recent", "days_over_30d", "days_over_90d",
            "days_saturated_recent", "recent_gap_days", "days_after_gap")
    return pd.DataFrame({
        **{c: pd.Series(dtype=object) for c in (SERVER_ID, METRIC)},
        "last_observed": pd.Series(dtype="datetime64[ns]"), "last_value": pd.Series(dtype=float),
        **{c: pd.Series(dtype=np.int64) for c in ints},
        "last_over_ds": pd.Series(dtype="datetime64[ns]"), "already_breaching": pd.Series(dtype=bool),
        "recent_peak": pd.Series(dtype=float), "recent_usual_peak": pd.Series(dtype=float),
        "recent_gap_resumed": pd.Series(dtype="datetime64[ns]"),
    })[list(CURRENT_COLUMNS)]


__all__ = ["AS_OF_GAP", "AS_OF_LAST", "CURRENT_COLUMNS", "RAW_LAST", "current_state", "mark_stale", "observed_mask",
           "rule_text", "stale_lead", "stopped_after_gap"]
