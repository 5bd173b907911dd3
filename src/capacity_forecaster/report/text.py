"""Numbers, dates and machine words as the reports write them for people: money, cents, plurals, days, labels;
"not priced"."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.risk.levels import money  # noqa: F401  (re-exported: the reports format money with it)


def numeric(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column as numbers; all NaN where the column is absent (a sparse inventory)."""
    values = frame[name] if name in frame.columns else pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(values, errors="coerce")


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 server``, ``2 servers``, ``1,200 servers`` (``many``: an irregular plural)."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def cents(value: float) -> float:
    """Money rounded to cents (sums of float costs carry noise such as ``408964.0800000001``)."""
    return round(float(value), 2) + 0.0


def says_something(values: Iterable[Any]) -> bool:
    """Whether a name column (hostname, application, environment) tells anything: some value is neither
    empty nor the ETL's ``unknown`` filler. A column that tells nothing is left out of the report tables
    (an inventory derived from metrics alone has only ids)."""
    return any(isinstance(v, str) and v.strip() not in ("", "unknown") for v in values)


def told_columns(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The ``columns`` of ``frame`` that tell something (``says_something``), in the given order."""
    return [c for c in columns if c in frame.columns and says_something(frame[c])]


def server_title(server: Any, hostname: Any) -> str:
    """``srv-0001 (nyc-prd-app01)``, or the id alone where the hostname is empty, unknown or the id itself (in
    any case)."""
    same = isinstance(hostname, str) and hostname.casefold() == str(server).casefold()
    return f"{server} ({hostname})" if says_something([hostname]) and not same else str(server)


# The forecast models in words for the packs (the lake, the workbook's data sheets and the CLI keep the ids).
MODEL_LABELS = {
    "seasonal_naive": "Last week repeated",
    "recent_level": "Recent level",
    "robust_trend": "Robust trend",
    "robust_combo": "Robust combination",
    "harmonic": "Trend + seasonality",
    "gbm_global": "Gradient boosting (fleet)",
    "ensemble": "Ensemble of the best",
    "prophet": "Prophet",
    "autoets": "Exponential smoothing",
    "autoarima": "ARIMA",
    "mstl": "Seasonal decomposition",
    "amazon_forecast": "Amazon Forecast",
}


def fitted(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters in its middle (``nab-cpu_utiliz…configuration``): an axis label keeps
    both ends of a long id rather than running off the figure."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (width - 1 - head):]


def model_label(name: Any) -> str:
    """A model id in words (``robust_combo`` -> ``Robust combination``); an unknown id as it is."""
    return MODEL_LABELS.get(str(name), str(name))


# What every report says where the inventory has no monthly cost (never a $0 saving).
NOT_PRICED = "not priced"


NO_PRICES = "no monthly cost in the inventory"


def priced_servers(recs: pd.DataFrame) -> int:
    """Recommendations whose server has a monthly cost (the others' savings are unknown, not zero)."""
    return int(numeric(recs, "current_monthly_cost").notna().sum())


def savings_by_action(recs: pd.DataFrame) -> pd.DataFrame:
    """Per action (the index): ``servers``, ``priced`` (those with a monthly cost) and ``savings`` (summed over the
    priced ones; NaN where none is): an upsize of an unpriced server costs an unknown amount, not $0."""
    known = numeric(recs, "current_monthly_cost").notna()
    frame = recs.assign(_priced=known, _savings=numeric(recs, "monthly_savings").where(known))
    return frame.groupby("action").agg(servers=("server_id", "size"), priced=("_priced", "sum"),
                                       savings=("_savings", lambda v: v.sum(min_count=1)))


def action_savings_text(servers: int, priced: int, savings: float) -> str:
    """``6 servers, -$120 (2 priced)``: the servers of one action and what the priced ones save."""
    said = NOT_PRICED if pd.isna(savings) else money(savings, signed=True)
    return f"{plural(servers, 'server')}, {said}" + (f" ({priced:,} priced)" if 0 < priced < servers else "")


def day(value: Any) -> str:
    """An ISO date, or ``-`` for a missing one."""
    return "-" if value is None or pd.isna(value) else pd.Timestamp(value).date().isoformat()


# Columns whose values are machine words (statuses, findings, grades, kinds): people read them with spaces.
LABEL_COLUMNS = ("status", "base_status", "scenario_status", "finding", "performance_risk", "option", "change",
                 "group_by")


def label(value: Any) -> Any:
    """A machine word as people read it (``already_breaching`` -> ``already breaching``); other values as they are."""
    return value.replace("_", " ") if isinstance(value, str) else value


def labelled(frame: pd.DataFrame, columns: tuple[str, ...] = LABEL_COLUMNS) -> pd.DataFrame:
    """``frame`` with the machine words of its ``columns`` (those present) as ``label`` writes them (a new frame;
    the lake's values stay as they are)."""
    present = [c for c in columns if c in frame.columns]
    if not present:
        return frame
    return frame.assign(**{c: frame[c].astype(object).map(label) for c in present})
