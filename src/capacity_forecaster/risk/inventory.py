"""The inventory as the risk stage reads it: every column but server_id optional, unknowns made explicit.

Real inventories are sparse: a metrics-only lake knows server ids and perhaps core counts, rarely
prices. Every risk module takes its inventory through ``complete_inventory``, so an absent column
and a missing value mean the same thing: text columns (environment, datacenter, application, ...)
become ``unknown``, numeric ones (cpu_cores, memory_gb, monthly_cost_usd) NaN. A value that is not a
usable number (text, a non-positive size, a negative cost) is NaN too, never an exception.

*Why "unknown" is one group, not one per server.* Consolidation packs servers of the same
datacenter and environment. A fleet whose inventory has no environment column is one environment as
far as anyone knows, so its servers may share hosts with each other; they never share with a server
whose environment is known (``unknown`` is not ``prod``, and not ``non-prod`` when non-prod
environments may mix).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.errors import SchemaError
from capacity_forecaster.schema import INVENTORY_COLUMNS, SERVER_ID

UNKNOWN = "unknown"
NUMERIC_COLUMNS = ("cpu_cores", "memory_gb", "monthly_cost_usd")
TEXT_COLUMNS = tuple(c for c in INVENTORY_COLUMNS if c not in (SERVER_ID, *NUMERIC_COLUMNS))
# Sizes must be positive to be capacities; a cost may be 0 (a free host) but not negative.
_POSITIVE = ("cpu_cores", "memory_gb")


def complete_inventory(inventory: pd.DataFrame, servers: pd.Index | None = None) -> pd.DataFrame:
    """The inventory with every contract column, one row per server, unknowns explicit.

    Args:
        inventory: at least server_id; any other contract column may be absent or hold nulls.
            Extra columns are kept.
        servers: server ids the result must cover (e.g. every server with metrics); servers
            missing from ``inventory`` get a row of unknowns. None adds none.

    Returns:
        ``schema.INVENTORY_COLUMNS`` (then any extra columns), one row per server_id (first row of
        a repeated id), rows without a server_id dropped: text columns filled with ``unknown``
        (hostname with the server_id), numeric columns float with NaN where unknown or unusable.

    Raises:
        SchemaError: ``inventory`` has no server_id column.
    """
    if SERVER_ID not in inventory.columns:
        found = ", ".join(map(str, inventory.columns)) or "none"
        raise SchemaError(f"inventory: missing column server_id (found: {found}); every other column is optional")
    out = inventory[inventory[SERVER_ID].notna()].drop_duplicates(SERVER_ID).reset_index(drop=True)
    if servers is not None:
        extra = pd.Index(servers).dropna().unique().difference(pd.Index(out[SERVER_ID]))
        if len(extra):
            out = pd.concat([out, pd.DataFrame({SERVER_ID: extra.to_numpy(dtype=object)})], ignore_index=True)
    for column in NUMERIC_COLUMNS:
        values = pd.to_numeric(out[column], errors="coerce") if column in out.columns else np.nan
        out[column] = pd.Series(values, index=out.index, dtype=float)
        bad = out[column] <= 0 if column in _POSITIVE else out[column] < 0
        out.loc[bad | ~np.isfinite(out[column].fillna(0.0)), column] = np.nan
    for column in TEXT_COLUMNS:
        text = (out[column].astype("string").str.strip() if column in out.columns
                else pd.Series(pd.NA, index=out.index, dtype="string"))
        text = text.mask(text == "")
        fill = out[SERVER_ID].astype(str) if column == "hostname" else pd.Series(UNKNOWN, index=out.index)
        out[column] = text.fillna(fill).astype(object)
    extras = [c for c in out.columns if c not in INVENTORY_COLUMNS]
    return out[[*INVENTORY_COLUMNS, *extras]]


__all__ = ["NUMERIC_COLUMNS", "TEXT_COLUMNS", "UNKNOWN", "complete_inventory"]
