"""Ordered severity levels, assessment statuses and recommendation actions used across the risk stage."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Mapping

    from capacity_forecaster.config import RiskConfig


def thresholds(metric: pd.Series, cfg: RiskConfig) -> pd.Series:
    """The breach threshold of every row's metric (``RiskConfig.threshold_for``, once per distinct metric)."""
    return metric.map({m: cfg.threshold_for(str(m)) for m in metric.dropna().unique()}).astype(float)


class RiskLevel(IntEnum):
    """Breach severity, ordered: ``RiskLevel.CRITICAL > RiskLevel.LOW``.

    The lake stores the lower-case name (``label``); compare and sort with the enum.
    """

    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        """The contract spelling (``critical``, ``high``, ``medium``, ``low``)."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> RiskLevel:
        """Parse a contract spelling; raises ValueError naming the valid labels."""
        try:
            return cls[label.upper()]
        except KeyError:
            valid = ", ".join(level.label for level in cls)
            raise ValueError(f"unknown risk level {label!r}; valid levels: {valid}") from None


LEVEL_LABELS = tuple(level.label for level in RiskLevel)
# An ordered dtype so that frames sort and compare by severity, not alphabetically.
RISK_LEVEL_DTYPE = pd.CategoricalDtype(list(LEVEL_LABELS), ordered=True)


def labels_from_codes(codes: np.ndarray) -> np.ndarray:
    """Map integer level codes (``RiskLevel`` values, -1 for none) to labels (None for -1)."""
    table = np.array([*LEVEL_LABELS, None], dtype=object)
    return table[np.where(codes < 0, len(LEVEL_LABELS), codes)]


def level_codes(labels: pd.Series) -> np.ndarray:
    """Integer level codes of a label column; -1 where the label is missing."""
    return pd.Categorical(labels, dtype=RISK_LEVEL_DTYPE).codes.astype(np.int64)


class Status(StrEnum):
    """What a series' level rests on; only NO_DATA (nothing observed) leaves the level null.

    ALREADY_BREACHING: over its threshold on enough of its recent observed days (at least high).
    ASSESSED: a full assessment from the forecast (enough history, not breaching now).
    SHORT_HISTORY: fewer observed days than a full assessment needs; the level comes from the recent
    days and a (baseline, wide-interval) forecast. NO_FORECAST: observed but not forecast; the level
    comes from the recent days only. STALE: observed, but its data end more than ``stale_after_days``
    before the fleet's (the level is as of its last data; nothing is recommended on it). NO_DATA: no
    observed value at all.
    """

    ALREADY_BREACHING = "already_breaching"
    ASSESSED = "assessed"
    SHORT_HISTORY = "short_history"
    NO_FORECAST = "no_forecast"
    STALE = "stale"
    NO_DATA = "no_data"


# Most urgent first: the order reports and summaries list series in, before the level.
STATUS_ORDER = (Status.ALREADY_BREACHING, Status.ASSESSED, Status.SHORT_HISTORY, Status.NO_FORECAST, Status.STALE,
                Status.NO_DATA)


def without_stale(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` (server_risk rows) whose series is not stale: what every count of servers at
    risk and every earliest breach or time remaining is taken from (a frame without status: all of it)."""
    if "status" not in frame.columns:
        return frame
    return frame[frame["status"] != Status.STALE.value]


def stale_words(row: Mapping[Any, Any]) -> str:
    """A stale series in a few words, the same in every output: ``stale: no data since 2013-08-27``;
    ``stale: no usable data since 2013-08-27`` when its raw data went on but the ETL quarantined those days
    (``raw_last_observed``); or, when its data came back for a day or two after the gap
    (``current.stopped_after_gap``), ``stale: data stopped after 2013-08-27 (last seen 2013-09-11)``.

    Args:
        row: a ``server_risk`` row (``stale_since``, the day the data stopped; ``last_observed``;
            ``raw_last_observed``; any may be absent).
    """
    def day(column: str) -> Any:
        value: Any = row.get(column)
        return pd.to_datetime(value)

    since, last = day("stale_since"), day("last_observed")
    if pd.isna(since):
        since = last
    if pd.isna(since):
        return "stale"
    if pd.isna(last) or last <= since:
        raw_last = day("raw_last_observed")
        usable = " usable" if not pd.isna(raw_last) and raw_last > since else ""
        return f"stale: no{usable} data since {since:%Y-%m-%d}"
    return f"stale: data stopped after {since:%Y-%m-%d} (last seen {last:%Y-%m-%d})"


def likely_first(row: Mapping[Any, Any]) -> bool:
    """The day the breach becomes likely (``likely_breach_ds``) comes before the median's crossing, or the median
    never crosses: the tables and phrases give that day (helper-73: a what-if at +50 % read "critical, 2014-03-05",
    its median's crossing, beside the base's "high, likely by 2013-10-31", as if growth put the breach off; its
    own likely day was 2013-10-28)."""
    breach, likely = row.get("breach_ds"), row.get("likely_breach_ds")
    if likely is None or pd.isna(likely):
        return False
    return breach is None or pd.isna(breach) or pd.Timestamp(likely) < pd.Timestamp(breach)


class Action(StrEnum):
    """Recommendation actions (contract values of ``recommendations.action``)."""

    KEEP = "keep"
    UPSIZE = "upsize"
    RIGHTSIZE = "rightsize"
    CONSOLIDATE = "consolidate"
    DECOMMISSION = "decommission"


# Actions most urgent first: what needs money or a change soonest first, keep last.
ACTION_ORDER = tuple(a.value for a in (Action.UPSIZE, Action.RIGHTSIZE, Action.CONSOLIDATE, Action.DECOMMISSION,
                                       Action.KEEP))


def actions_text(actions: dict[str, int]) -> str:
    """``11 upsize, 25 rightsize, 18 decommission, 46 keep`` (servers per action, most urgent first)."""
    order = {a: i for i, a in enumerate(ACTION_ORDER)}
    ranked = sorted(actions.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
    return ", ".join(f"{count:,} {action}" for action, count in ranked if count) or "none"


# The one ranking of at-risk series every output uses (CLI, reports, dashboard): status (already breaching
# first; stale series, whose data ended long ago, last), then level (critical first), then the most recent
# days over the threshold, then breach date (soonest first, none last), then breach probability (highest
# first), then server_id and metric for a stable tie-break.
RISK_ORDER = ("status", "level", "breach date", "probability")


def rank_risks(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (server_risk rows) in the ``RISK_ORDER`` ranking, as a new frame with a fresh index.

    Needs server_id, metric, risk_level; status, days_over_recent, days_to_breach (or breach_ds) and
    breach_probability are used when present.
    """
    empty = pd.Series(np.nan, index=frame.index)
    status = frame["status"] if "status" in frame.columns else pd.Series(Status.ASSESSED.value, index=frame.index)
    over = frame["days_over_recent"] if "days_over_recent" in frame.columns else empty
    # Days to breach count from each series' last observed day; without them, the breach date itself.
    days = (frame["days_to_breach"] if "days_to_breach" in frame.columns else
            (pd.to_datetime(frame["breach_ds"]) - pd.Timestamp(0)).dt.days if "breach_ds" in frame.columns else empty)
    prob = frame["breach_probability"] if "breach_probability" in frame.columns else empty
    keys = pd.DataFrame({
        "_status": np.select([status == Status.ALREADY_BREACHING.value, status == Status.STALE.value], [0, 2], 1),
        "_level": -level_codes(frame["risk_level"]),
        "_over": -pd.to_numeric(over, errors="coerce").fillna(0).to_numpy(float),
        "_days": pd.to_numeric(days.astype("Float64"), errors="coerce").to_numpy(float, na_value=np.inf),
        "_prob": -pd.to_numeric(prob, errors="coerce").fillna(-1).to_numpy(float),
        "_id": frame["server_id"].astype(str).to_numpy(), "_metric": frame["metric"].astype(str).to_numpy(),
    }, index=frame.index)
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def percent(value: object, digits: int = 0) -> str:
    """A probability (0-1) as a percentage, formatted once from the unrounded value; ``-`` when absent."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "-"
    return f"{float(value):.{digits}%}"  # type: ignore[arg-type]


def money(value: float | None, signed: bool = False) -> str:
    """US dollars without cents, e.g. ``$12,345`` (``+$1,200`` when signed)."""
    if value is None or pd.isna(value):
        return "-"
    sign = "-" if value < 0 else ("+" if signed and value > 0 else "")
    return f"{sign}${abs(value):,.0f}"
