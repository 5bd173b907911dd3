"""What-if inputs: business growth applied to forecasts, and scenario files that add, remove or move servers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from capacity_forecaster.errors import ConfigError
from capacity_forecaster.schema import DS, METRIC, SERVER_ID, VALUE
from capacity_forecaster.yamlfile import read_yaml

logger = logging.getLogger(__name__)

_BOUNDS = ("yhat", "yhat_lower", "yhat_upper")
# A moved workload's utilisation is converted through the capacity it is a share of.
_CAPACITY = {"cpu": "cpu_cores", "memory": "memory_gb"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AddServers(_Model):
    """New servers that behave like an existing server (``like``) or a cluster's most typical member.

    Utilisation (percent) is copied from the template and multiplied by ``scale``; inventory
    fields default to the template's.
    """

    like: str | None = None
    cluster: str | None = None
    count: int = Field(1, ge=1, le=10_000)
    id_prefix: str = Field("new", min_length=1)
    scale: float = Field(1.0, gt=0.0, le=100.0)
    datacenter: str | None = None
    environment: str | None = None
    server_type: str | None = None
    cpu_cores: int | None = Field(None, ge=1)
    memory_gb: int | None = Field(None, ge=1)
    monthly_cost_usd: float | None = Field(None, ge=0.0)

    @model_validator(mode="after")
    def _one_template(self) -> AddServers:
        if (self.like is None) == (self.cluster is None):
            raise ValueError("give exactly one of 'like' (a server id) or 'cluster' (a cluster label)")
        return self


class MoveServer(_Model):
    """Relocate a server (new datacenter / environment) or move its workload onto another server."""

    server_id: str
    datacenter: str | None = None
    environment: str | None = None
    onto: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> MoveServer:
        relocate = self.datacenter is not None or self.environment is not None
        if relocate == (self.onto is not None):
            raise ValueError("give either 'onto' (a host server id) or 'datacenter'/'environment', not both")
        return self


class Scenario(_Model):
    """A what-if scenario file (YAML)."""

    name: str = "scenario"
    growth: float | None = Field(None, ge=-100.0, le=1_000.0)
    add: tuple[AddServers, ...] = ()
    remove: tuple[str, ...] = ()
    move: tuple[MoveServer, ...] = ()

    @model_validator(mode="after")
    def _consistent_moves(self) -> Scenario:
        # helper-51: 'a onto a' deleted a; 'a onto b' with 'b onto a', or a move of a removed server, were taken.
        moved = [m.server_id for m in self.move]
        twice = sorted({s for s in moved if moved.count(s) > 1})
        if twice:
            raise ValueError(f"server {twice[0]} is moved more than once")
        gone = {m.server_id for m in self.move if m.onto is not None} | set(self.remove)
        for move in self.move:
            if move.onto == move.server_id:
                raise ValueError(f"server {move.server_id} is moved onto itself")
            if move.server_id in self.remove:
                raise ValueError(f"server {move.server_id} is both moved and removed")
            if move.onto is not None and move.onto in gone:
                raise ValueError(f"server {move.server_id} is moved onto {move.onto}, which this scenario moves "
                                 "away or removes")
        return self


@dataclass(frozen=True)
class ScenarioInputs:
    """The risk-stage inputs after a scenario.

    Attributes:
        metrics: processed metrics.
        forecasts: forecasts.
        inventory: inventory.
        templates: new server id -> the server it was copied from.
    """

    metrics: pd.DataFrame
    forecasts: pd.DataFrame
    inventory: pd.DataFrame
    templates: dict[str, str] = field(default_factory=dict)


def parse_scenario(data: Any, source: str = "scenario") -> Scenario:
    """Validate a scenario mapping; errors name the source, the key and what is allowed."""
    try:
        return Scenario.model_validate(data if data is not None else {})
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        allowed = ""
        if first["type"] == "extra_forbidden":
            allowed = "; allowed keys: name, growth, add, remove, move (add: " + ", ".join(AddServers.model_fields) \
                + "; move: " + ", ".join(MoveServer.model_fields) + ")"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{source}: key '{key}': {message}{allowed}") from err


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario YAML file (``yaml.safe_load``) and validate it.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or has unknown / invalid keys.
    """
    file = Path(path)
    data = read_yaml(file, "scenario file", "--scenario")
    return parse_scenario(data, f"scenario file {file}")

# Growth rates are annual; a ramp compounds them per day over the calendar year.
_DAYS_PER_YEAR = 365.25


def compounded(pct: float, days: Any) -> Any:
    """The uplift (0.1 = 10 % more load) an annual rate of ``pct`` % reaches on day ``days`` of a ramp."""
    return np.power(1.0 + pct / 100.0, np.asarray(days, dtype=float) / _DAYS_PER_YEAR) - 1.0


def growth_factor(ds: pd.Series, start: pd.Series, pct: float, *, ramp: bool) -> np.ndarray:
    """The uplift (0.1 = 10 % more load) ``apply_growth`` gives day ``ds`` of a horizon starting on ``start``."""
    if not ramp:
        return np.full(len(ds), pct / 100.0)
    days = (pd.to_datetime(ds) - pd.to_datetime(start)).dt.days.to_numpy(float) + 1.0
    return np.asarray(compounded(pct, days), dtype=float)


def apply_growth(forecasts: pd.DataFrame, pct: float, *, ramp: bool = True) -> pd.DataFrame:
    """Scale forecasts by a business growth uplift, clipped to [0, 100].

    Args:
        forecasts: server_id, metric, ds, yhat, yhat_lower, yhat_upper.
        pct: growth in percent (10 = 10 % more load; negative shrinks). With ``ramp`` it is an
            annual rate, compounded daily from each series' first forecast day: day d of the
            horizon carries ``(1 + pct/100) ** (d / 365.25) - 1`` (a 180-day horizon ends near
            half the annual rate); without it the whole ``pct`` applies from day one (a step change,
            e.g. a migration landing at once).
        ramp: annual rate ramped over the horizon (default) instead of a step change.

    Returns:
        A copy of ``forecasts`` with yhat, yhat_lower, yhat_upper scaled.
    """
    out = forecasts.copy()
    if pct == 0 or out.empty:
        return out
    ds = pd.to_datetime(out[DS])
    factor = growth_factor(ds, ds.groupby([out[SERVER_ID], out[METRIC]]).transform("min"), pct, ramp=ramp)
    for col in _BOUNDS:
        out[col] = np.clip(out[col].to_numpy(float) * (1.0 + factor), 0.0, 100.0)
    return out


def _check_ids(ids: list[str], known: pd.Index, what: str, source: str) -> None:
    missing = sorted(set(ids) - set(known))
    if missing:
        raise ConfigError(f"{source}: {what} names unknown server(s) {', '.join(missing)}; "
                          f"they are not in the inventory")


def _template(spec: AddServers, clusters: pd.DataFrame | None, source: str) -> str:
    if spec.like is not None:
        return spec.like
    if clusters is None or clusters.empty:
        raise ConfigError(f"{source}: add.cluster needs clusters, and none were computed")
    members = clusters[clusters["cluster_label"] == spec.cluster]
    if members.empty:
        labels = ", ".join(sorted(clusters["cluster_label"].unique()))
        raise ConfigError(f"{source}: add.cluster {spec.cluster!r} is not a cluster label; labels: {labels}")
    order = "silhouette" if "silhouette" in members.columns else SERVER_ID
    return str(members.sort_values([order, SERVER_ID], ascending=[False, True]).iloc[0][SERVER_ID])


def _merge_onto(frame: pd.DataFrame, source: str, target: str, ratio: dict[str, float], columns: tuple[str, ...]
                ) -> pd.DataFrame:
    """Add the source server's utilisation to the target's, converted through the capacity ratio."""
    src = frame[frame[SERVER_ID] == source].set_index([METRIC, DS])[list(columns)]
    mask = frame[SERVER_ID] == target
    tgt = frame.loc[mask].set_index([METRIC, DS])
    scale = tgt.index.get_level_values(METRIC).map(lambda m: ratio.get(m, 1.0)).to_numpy(dtype=float)
    extra = src.reindex(tgt.index).fillna(0.0).to_numpy(dtype=float) * scale[:, None]
    out = frame.copy()
    out.loc[mask, list(columns)] = np.clip(tgt[list(columns)].to_numpy(dtype=float) + extra, 0.0, 100.0)
    return out


def touched_servers(scenario: Scenario, clusters: pd.DataFrame | None = None, source: str = "scenario") -> set[str]:
    """The servers whose rows a scenario reads or changes: moved ones, their hosts, removed ones, templates.

    Every other server's history and forecasts are the same after ``apply_scenario``.

    Raises:
        ConfigError: an ``add.cluster`` label that is not a cluster.
    """
    moved = {m.server_id for m in scenario.move} | {m.onto for m in scenario.move if m.onto}
    return moved | set(scenario.remove) | {_template(spec, clusters, source) for spec in scenario.add}


def apply_scenario(
    metrics: pd.DataFrame,
    forecasts: pd.DataFrame,
    inventory: pd.DataFrame,
    scenario: Scenario,
    clusters: pd.DataFrame | None = None,
    source: str = "scenario",
) -> ScenarioInputs:
    """Apply a scenario to the inputs of the risk stage (pure: returns new frames).

    Order: moves, removals, then additions. ``onto`` adds the server's utilisation (history and
    forecast, all three quantiles, comonotone) to the host's, converted through the capacity
    ratio for cpu (cores) and memory (GB), point for point for disk and network (same-size disks
    and links assumed), then removes the server. Added servers copy the template's history and
    forecast times ``scale`` and get ids ``<id_prefix>-001`` ...

    Args:
        metrics: processed metrics.
        forecasts: forecasts.
        inventory: inventory.
        scenario: the validated scenario.
        clusters: base clusters (needed for ``add.cluster``).
        source: where the scenario came from, for error messages.

    Returns:
        ScenarioInputs after the scenario.

    Raises:
        ConfigError: a named server or cluster does not exist, or a new id collides.
    """
    inv = inventory.drop_duplicates(SERVER_ID).reset_index(drop=True)
    known = pd.Index(inv[SERVER_ID])
    _check_ids([m.server_id for m in scenario.move] + [m.onto for m in scenario.move if m.onto] + list(scenario.remove),
               known, "move/remove", source)
    _check_ids([a.like for a in scenario.add if a.like], known, "add.like", source)
    m, f = metrics, forecasts
    capacity = {col: dict(zip(inv[SERVER_ID], inv[col].astype(float), strict=True)) for col in _CAPACITY.values()}
    for move in scenario.move:
        if move.onto is not None:
            ratio = {metric: capacity[col][move.server_id] / capacity[col][move.onto]
                     for metric, col in _CAPACITY.items()}
            carried = set(m.loc[m[SERVER_ID] == move.server_id, METRIC])
            unknown = [_CAPACITY[k] for k in sorted(carried & set(_CAPACITY)) if not np.isfinite(ratio[k])]
            if unknown:
                # helper-51: a metrics-only inventory (sizes unknown) ended in a KeyError.
                raise ConfigError(f"{source}: move {move.server_id} onto {move.onto} converts its load through "
                                  f"both servers' {' and '.join(unknown)}, which the inventory does not give; add "
                                  "them (an inventory file or inventory.defaults in the mapping)")
            m = _merge_onto(m, move.server_id, move.onto, ratio, (VALUE,))
            f = _merge_onto(f, move.server_id, move.onto, ratio, _BOUNDS)
            gone = [move.server_id]
            m, f, inv = (x[~x[SERVER_ID].isin(gone)] for x in (m, f, inv))
        else:
            row = inv[SERVER_ID] == move.server_id
            inv = inv.copy()
            if move.datacenter is not None:
                inv.loc[row, "datacenter"] = move.datacenter
            if move.environment is not None:
                inv.loc[row, "environment"] = move.environment
    if scenario.remove:
        m, f, inv = (x[~x[SERVER_ID].isin(scenario.remove)] for x in (m, f, inv))
    new_m, new_f, new_inv = [m], [f], [inv]
    taken = set(known)
    templates: dict[str, str] = {}
    for spec in scenario.add:
        template = _template(spec, clusters, source)
        if template not in set(inv[SERVER_ID]):
            raise ConfigError(f"{source}: add template {template} was removed or moved by the same scenario")
        ids = [f"{spec.id_prefix}-{i:03d}" for i in range(1, spec.count + 1)]
        clash = sorted(taken & set(ids))
        if clash:
            raise ConfigError(f"{source}: add would create server id(s) already in use: {', '.join(clash[:5])}; "
                              f"choose another id_prefix")
        taken |= set(ids)
        templates.update(dict.fromkeys(ids, template))
        overrides = {k: v for k, v in spec.model_dump().items() if k in inv.columns and v is not None}
        base_row = inv[inv[SERVER_ID] == template]
        new_inv.append(pd.concat([base_row.assign(**{SERVER_ID: i, **overrides}) for i in ids], ignore_index=True))
        hist = m[m[SERVER_ID] == template]
        fut = f[f[SERVER_ID] == template]
        new_m.append(pd.concat([hist.assign(**{SERVER_ID: i, VALUE: np.clip(hist[VALUE] * spec.scale, 0, 100)})
                                for i in ids], ignore_index=True))
        new_f.append(pd.concat([fut.assign(**{SERVER_ID: i, **{c: np.clip(fut[c] * spec.scale, 0, 100)
                                                                for c in _BOUNDS}}) for i in ids],
                               ignore_index=True))
        logger.debug("scenario %s: added %d servers like %s", scenario.name, spec.count, template)
    return ScenarioInputs(pd.concat(new_m, ignore_index=True), pd.concat(new_f, ignore_index=True),
                          pd.concat(new_inv, ignore_index=True), templates)
