"""The inventory joined to the servers that have metrics, and an ingested inventory merged into the lake's.

Inventory files are typed by people and metrics come from monitoring agents, so the same server is
often spelt differently: ``AMS-DB-01.BANK.LOCAL`` in the CMDB, ``AMS-DB-01.bank.local`` in the export.
``join_to_metrics`` joins an inventory id to a metrics id when they differ only in case and surrounding
whitespace and neither side has another such candidate; the metrics' id is kept (it is the series
key of every table after ingest). A server with metrics is never left without an inventory row: where
none matches, it gets an id-only row (size and cost unknown), as a metrics-only export does.

``merge_inventory`` decides what an ingest's inventory replaces: the rows an earlier inventory of the
same source (``SOURCE_COLUMN``: the mapping's name) delivered, and rows of the same servers. Rows of
other sources stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from capacity_forecaster.etl.inventory import UNKNOWN, id_key, ids_only_inventory
from capacity_forecaster.etl.specs import NUMERIC_INVENTORY_COLUMNS
from capacity_forecaster.messages import examples
from capacity_forecaster.schema import INVENTORY_COLUMNS, SERVER_ID

# Which inventory delivered a row: the mapping's name (or, for a mapping without one, the inventory
# file). Null for rows derived from metric columns, id-only rows and rows written by capfc generate.
SOURCE_COLUMN = "inventory_source"
_EXAMPLES = 3
_PAIRS = 10


def id_only(frame: pd.DataFrame) -> np.ndarray:
    """Per row: it knows nothing but the server id (hostname the id or unknown, other text unknown, no number).

    Such rows come from ``ids_only_inventory`` (a metrics-only export, a server missing from the
    inventory file); any row that says more is informative and wins over them.
    """
    known = np.zeros(len(frame), dtype=bool)
    ids = frame[SERVER_ID].astype(str)
    for column in INVENTORY_COLUMNS:
        if column == SERVER_ID or column not in frame.columns:
            continue
        values = frame[column]
        if column in NUMERIC_INVENTORY_COLUMNS:
            known |= pd.to_numeric(values, errors="coerce").notna().to_numpy()
            continue
        text = values.astype(str).str.strip()
        said = values.notna() & (text != "") & (text != UNKNOWN)
        if column == "hostname":
            said &= text != ids.str.strip()
        known |= said.to_numpy()
    return ~known


def id_only_servers(inventory: pd.DataFrame, metric_ids: Iterable[str]) -> list[str]:
    """The servers with metrics whose inventory row knows only their id (or that have none), sorted."""
    metric = set(map(str, metric_ids))
    ids = inventory[SERVER_ID].astype(str)
    weak = set(ids[id_only(inventory)]) & metric
    return sorted(weak | (metric - set(ids)))


@dataclass(frozen=True)
class InventoryJoin:
    """An inventory matched to the servers with metrics.

    Attributes:
        inventory: the rows, each matched row renamed to its metrics id; with ``add_missing`` an
            id-only row for every server with metrics that had none.
        renamed: (inventory id, metrics id) pairs joined although they differ in case or whitespace.
        ambiguous: metrics id -> the inventory ids it matches case-insensitively where the match is
            not one to one (two inventory ids, or two metrics ids, share the spelling): none joined.
        added: metrics ids given an id-only row.
        without_metrics: inventory ids with no metrics, sorted.
        shadowed: (inventory id, metrics id) where a row without metrics differs only in case or
            whitespace from a server that has its own row: an earlier spelling, most likely.
    """

    inventory: pd.DataFrame
    renamed: list[tuple[str, str]] = field(default_factory=list)
    ambiguous: dict[str, list[str]] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    without_metrics: list[str] = field(default_factory=list)
    shadowed: list[tuple[str, str]] = field(default_factory=list)


def join_to_metrics(inventory: pd.DataFrame, metric_ids: Iterable[str], *, add_missing: bool = True) -> InventoryJoin:
    """Join inventory rows to the servers with metrics, tolerating case and whitespace differences.

    A metrics id without an informative inventory row of its own (none, or an id-only one) takes
    the informative row without metrics whose id equals it after ``id_key``, if that pairing is one
    to one; the row is renamed to the metrics id (an id-only row of that id is dropped).

    Args:
        inventory: server_id (unique) and any other inventory columns.
        metric_ids: the ids of the servers with metrics.
        add_missing: give servers with metrics but no row an id-only row.

    Returns:
        The InventoryJoin; its inventory has the columns of ``inventory`` (sorted by server_id).
    """
    inv = inventory.reset_index(drop=True)
    ids = inv[SERVER_ID].astype(str)
    metric = pd.Index(pd.unique(pd.Series(list(metric_ids), dtype=object).dropna().astype(str)))
    informative = ~id_only(inv)
    has_metrics = ids.isin(metric).to_numpy()
    need = metric.difference(list(ids[informative & has_metrics]))
    spare = inv.index[informative & ~has_metrics]
    wanted = pd.DataFrame({"metrics_id": need.to_numpy(dtype=object),
                           "key": id_key(pd.Series(need, dtype=object)).to_numpy(dtype=object)})
    offered = pd.DataFrame({"row": spare, "inventory_id": ids[spare].to_numpy(dtype=object),
                            "key": id_key(ids[spare]).to_numpy(dtype=object)})
    pairs = wanted.merge(offered, on="key")
    one_to_one = ((pairs.groupby("key")["metrics_id"].transform("nunique") == 1)
                  & (pairs.groupby("key")["inventory_id"].transform("nunique") == 1))
    joined = pairs[one_to_one]
    ambiguous = {str(m): sorted(map(str, group["inventory_id"]))
                 for m, group in pairs[~one_to_one].groupby("metrics_id", sort=True)}
    out = inv.copy()
    if len(joined):
        out.loc[joined["row"].to_numpy(), SERVER_ID] = joined["metrics_id"].to_numpy(dtype=object)
        replaced = id_only(out) & out[SERVER_ID].isin(joined["metrics_id"]).to_numpy()
        replaced &= ~out.index.isin(joined["row"])
        out = out[~replaced]
    added: list[str] = []
    if add_missing:
        added = sorted(metric.difference(list(out[SERVER_ID].astype(str))))
        if added:
            extra = ids_only_inventory(added)
            out = pd.concat([out, extra.reindex(columns=out.columns)], ignore_index=True)
    out = out.sort_values(SERVER_ID, ignore_index=True)
    without = sorted(set(out[SERVER_ID].astype(str)) - set(metric))
    renamed = sorted(zip(joined["inventory_id"].astype(str), joined["metrics_id"].astype(str), strict=True),
                     key=lambda pair: pair[1])
    spelt = dict(zip(id_key(pd.Series(metric, dtype=object)), metric, strict=True))
    shadowed = [(i, spelt[k]) for i, k in zip(without, id_key(pd.Series(without, dtype=object)), strict=True)
                if k in spelt and spelt[k] not in ambiguous]
    return InventoryJoin(out, renamed, ambiguous, added, without, shadowed)


@dataclass(frozen=True)
class InventoryMerge:
    """An ingested inventory merged into the lake's.

    Attributes:
        inventory: the merged rows.
        removed: ids of rows of the same source that the new inventory no longer lists (and that
            have no metrics), dropped.
        unlisted: ids of rows of the same source that the new inventory no longer lists but that
            have metrics: kept, so that the server keeps its size and cost.
    """

    inventory: pd.DataFrame
    removed: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    source: str = ""

    def warnings(self) -> list[str]:
        """What the merge removed or kept against the new delivery's word (none in the usual case)."""
        out = []
        if self.removed:
            out.append(f"the inventory of '{self.source}' no longer lists {len(self.removed):,} server(s) without "
                       f"metrics that its earlier delivery did: their rows were removed, e.g. "
                       f"{examples(self.removed)}")
        if self.unlisted:
            out.append(f"the inventory of '{self.source}' no longer lists {len(self.unlisted):,} server(s) with "
                       f"metrics: their earlier rows are kept, e.g. {examples(self.unlisted)}")
        return out


def merge_inventory(old: pd.DataFrame | None, new: pd.DataFrame, metric_ids: Iterable[str], *,
                    add_only: bool = False) -> InventoryMerge:
    """The lake's inventory after an ingest delivered ``new``.

    Rules: rows of ``old`` whose ``SOURCE_COLUMN`` equals a source of ``new`` are that inventory's
    earlier delivery and are replaced by it: a row it no longer lists is dropped, unless its server
    has metrics (the row then stays: a partial inventory must not strip a server of its size and
    cost). An informative row of ``new`` replaces the row of the same server_id whatever its
    source; an id-only row of ``new`` (``id_only``) is only added where ``old`` has none. With
    ``add_only`` (a metrics-only export) no row of ``old`` is replaced.

    Args:
        old: the lake's inventory (None: there is none).
        new: the ingest's inventory (ids already joined to the metrics' spelling).
        metric_ids: ids of the servers with metrics in the lake.
        add_only: only add rows for servers ``old`` lacks.

    Returns:
        The InventoryMerge; its inventory has the union of both frames' columns, sorted by server_id.
    """
    if old is None or old.empty:
        return InventoryMerge(new.sort_values(SERVER_ID, ignore_index=True))
    old_ids = old[SERVER_ID].astype(str)
    sources: list[str] = (list(map(str, new[SOURCE_COLUMN].dropna().unique())) if SOURCE_COLUMN in new.columns
                          else [])
    removed: list[str] = []
    unlisted: list[str] = []
    if len(sources) and SOURCE_COLUMN in old.columns:
        stale = (old[SOURCE_COLUMN].isin(sources) & ~old_ids.isin(new[SERVER_ID].astype(str))).to_numpy()
        with_metrics = old_ids.isin(pd.Index(list(metric_ids), dtype=object)).to_numpy()
        # A row the new delivery lists under the metrics' spelling (joined case-insensitively) is not gone: it is
        # replaced under its new id, which the join's own warning names; only rows really unlisted are "removed".
        respelt = id_key(old_ids).isin(set(id_key(new[SERVER_ID].astype(str)))).to_numpy()
        removed = sorted(old_ids[stale & ~with_metrics & ~respelt])
        unlisted = sorted(old_ids[stale & with_metrics])
        old, old_ids = old[~(stale & ~with_metrics)], old_ids[~(stale & ~with_metrics)]
    weak = id_only(new) | add_only
    new_ids = new[SERVER_ID].astype(str)
    replacing = new_ids[~weak]
    adding = ~weak | ~new_ids.isin(old_ids).to_numpy()
    merged = pd.concat([old[~old_ids.isin(replacing).to_numpy()], new[adding]], ignore_index=True)
    return InventoryMerge(merged.sort_values(SERVER_ID, ignore_index=True), removed, unlisted,
                          ", ".join(map(str, sources)))


def _short_names_hint(added: Sequence[str], without_metrics: Sequence[str]) -> str:
    """A hint when the metrics' ids are fully qualified host names whose first label is an inventory id without
    metrics (helper-60: 'ams-app-01' in the CMDB, 'ams-app-01.bank.local' in the metrics doubled the fleet)."""
    short = {name.strip().casefold() for name in without_metrics}
    matched = [name for name in added if "." in name and name.split(".", 1)[0].strip().casefold() in short]
    if not matched or 2 * len(matched) < len(added):
        return ""
    return (f"; {len(matched):,} of them are an inventory id with a domain ({matched[0]}): server_id.pattern "
            "'^([^.]+)' in the mapping keeps the host name before the first dot as the id")


def join_warnings(renamed: list[tuple[str, str]], ambiguous: dict[str, list[str]], added: list[str],
                  without_metrics: list[str], shadowed: Sequence[tuple[str, str]] = (),
                  thin: Sequence[str] = ()) -> list[str]:
    """One message per kind of mismatch between the inventory and the metrics (none where all match); ``thin``: the
    servers with metrics whose inventory row knows only their id."""
    out = []
    if renamed:
        shown = examples((f"{inv} -> {met}" for inv, met in renamed), _PAIRS, total=len(renamed))
        out.append(f"{len(renamed):,} inventory server id(s) differ from the metrics' only in case or surrounding "
                   f"whitespace and were joined to them (the metrics' id is kept): {shown}")
    if ambiguous:
        shown = examples((f"{met} ~ {' / '.join(inv)}" for met, inv in ambiguous.items()), _EXAMPLES, sep="; ",
                         total=len(ambiguous))
        out.append(f"{len(ambiguous):,} server(s) with metrics match more than one inventory id, or share one "
                   f"with another server, when case and whitespace are ignored: not joined, fix the ids in the "
                   f"inventory ({shown})")
    if added:
        out.append(f"{len(added):,} server(s) have metrics but no inventory row: kept with an id-only row (size "
                   f"and cost unknown), e.g. {examples(added)}{_short_names_hint(added, without_metrics)}")
    if thin:
        out.append(f"{len(thin):,} server(s) with metrics have an inventory row that gives only their id (size and "
                   f"cost unknown), e.g. {examples(thin)}: are the file's columns mapped under inventory.columns?")
    if without_metrics:
        stale = ""
        if shadowed:
            pairs = ", ".join(f"{inv} ~ {met}" for inv, met in shadowed[:_EXAMPLES])
            stale = (f"; {len(shadowed):,} of them differ only in case or whitespace from a server with metrics "
                     f"and its own row ({pairs}): an earlier spelling? capfc ingest --replace (with every "
                     "export) rebuilds the inventory from what is delivered now")
        out.append(f"{len(without_metrics):,} inventory row(s) have no metrics in the lake: they are listed but "
                   f"cannot be assessed, e.g. {examples(without_metrics)}{stale}")
    return out
