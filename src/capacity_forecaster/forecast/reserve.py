"""A fleet-wide sample of series that tops up the training set of a global model's small units.

A global model (``kind = "global"``, e.g. ``gbm_global``) learns from every series of its unit:
one metric at one cutoff within one chunk, or at the final fit only the series that chose it. In a
chunked run or on a small fleet such a unit can hold a few dozen series, and the model then learns
from whatever the chunk happens to hold. The reserve is a seeded sample of up to ``MIN_SERIES``
servers drawn from the whole fleet before the first chunk; a global unit with fewer than
``MIN_SERIES`` series is topped up with reserve series of its metric (in the sample's order) that
are not in the unit, are modelled (triage ``model``) and have at least the model's ``min_history``
known values up to the unit's cutoff. The model learns from both and forecasts only the unit's own
series (``GBMGlobal.fit(extra=...)``).

So the training set no longer depends on how the fleet is chunked: on a fleet of at most
``MIN_SERIES`` servers every global unit learns from every eligible series of its metric, whatever
the chunk size, and a final fit learns from the same series as its backtests did. Units of
``MIN_SERIES`` series or more are left as they are (the booster samples at most ``max_rows``
training rows, reached at ~640 three-year series, so more series add little).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from capacity_forecaster.forecast import backtest as bt
from capacity_forecaster.schema import METRIC, SERIES_KEY, SERVER_ID, VALUE

# A global unit with fewer series is topped up to this many; also the most servers sampled.
MIN_SERIES = 250
SEED = 0
_SERIES = list(SERIES_KEY)


def sample_servers(servers: list[str], size: int = MIN_SERIES, seed: int = SEED) -> list[str]:
    """Up to ``size`` of ``servers``, drawn with a seeded generator, in draw order (the top-up order)."""
    ordered = sorted(servers)
    picked = np.random.default_rng(seed).permutation(len(ordered))[:size]
    return [ordered[i] for i in picked]


@dataclass(frozen=True)
class Reserve:
    """The sampled servers' prepared history and series index (``status`` from triage), in draw order."""

    history: pd.DataFrame
    index: pd.DataFrame
    min_series: int = MIN_SERIES

    @classmethod
    def build(cls, history: pd.DataFrame, order: list[str], min_history_steps: int, freq: str,
              min_series: int = MIN_SERIES) -> Reserve:
        """The reserve of a prepared history of the sampled servers.

        Args:
            history: ``backtest.prepare_history`` of the sampled servers.
            order: the servers in draw order (``sample_servers``).
            min_history_steps: the forecast stage's triage minimum (known steps).
            freq: ``D`` or ``h``.
            min_series: units with fewer series are topped up to this many.
        """
        index = bt.series_index(history)
        tri = bt.triage(index, min_history_steps, freq)
        index = index.merge(tri[[*_SERIES, "status"]], on=_SERIES)
        rank = {server: i for i, server in enumerate(order)}
        index["_rank"] = index[SERVER_ID].map(rank)
        index = index.sort_values(["_rank", METRIC], kind="mergesort").drop(columns="_rank").reset_index(drop=True)
        return cls(history, index, min_series)

    def top_up(self, unit: pd.DataFrame, cutoff: pd.Timestamp | None, min_history: int, freq: str
               ) -> pd.DataFrame | None:
        """History of reserve series to add to a global unit, or None when it needs none.

        Args:
            unit: the unit's series (``server_id, metric``; one metric).
            cutoff: the unit's cutoff (None = the final fit: whole histories).
            min_history: the model's fewest known values per series.
            freq: ``D`` or ``h``.

        Returns:
            ``server_id, metric, ds, value`` of up to ``min_series - len(unit)`` reserve series of the
            unit's metric, truncated at ``cutoff``; None when the unit is big enough or none qualify.
        """
        keys = unit[_SERIES].astype(str).drop_duplicates()
        need = self.min_series - len(keys)
        if need <= 0 or keys.empty:
            return None
        held = pd.MultiIndex.from_frame(keys)
        rows = self.index[(self.index[METRIC] == keys[METRIC].iloc[0]) & (self.index["status"] == "model")]
        rows = rows[~pd.MultiIndex.from_frame(rows[_SERIES]).isin(held)]
        if rows.empty:
            return None
        part = bt.history_until(self.history, rows, cutoff, freq)
        known = part[VALUE].notna().groupby([part[k] for k in _SERIES], sort=False, observed=True).sum()
        chosen = rows[pd.MultiIndex.from_frame(rows[_SERIES]).isin(known[known >= min_history].index)].head(need)
        if chosen.empty:
            return None
        return bt.history_until(self.history, chosen, cutoff, freq)
