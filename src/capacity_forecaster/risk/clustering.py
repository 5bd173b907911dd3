"""Workload clusters: K-Means on standardised profile features, k by silhouette, a human label per cluster."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn import config_context
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_samples, silhouette_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.profiles import CPU_OBSERVED, PROFILE_COLUMNS
from capacity_forecaster.schema import SERVER_ID, require_columns

logger = logging.getLogger(__name__)

# Levels enter on a log scale (5 % vs 10 % is as different as 40 % vs 80 %).
_LOG_FEATURES = ("cpu_level", "cpu_p95", "memory_level", "memory_p95", "network_level")
# Evidence features saturate: tanh(x / scale). A 30 % month-end uplift already marks a batch
# workload; 150 % does not make it more of one, and without saturation the strongest members of
# a pattern split off into clusters of their own. Scales are the size of an unmistakable signal.
_EVIDENCE_SCALE = {
    "month_end_uplift": 0.3, "quarter_end_uplift": 0.3, "year_end_uplift": 0.3, "trend": 0.3,
    "trend_change": 0.3, "step_change": 0.3, "leak_signal": 1.0,
}
# Label rules on a cluster's median profile, first match wins; values are the evidence that
# names a pattern (relative uplift / change per year / level shift / saw-tooth score).
_GROWTH_PER_YEAR = 0.15
_STEP = 0.2
_LEAK = 1.0
# cpu's interquartile range over its median level: at 1 or more the level says little (a VM switching
# between idle and saturated: helper-46's vendor export read "steady, CPU ~2 %" for one already at 100 %).
_BURSTY = 1.0
# What tells two clusters with the same pattern apart: the median level of a metric, in percent of
# capacity, in this order of preference (planners size CPU first). A level counts as different when
# the clusters' levels span at least CLEAR_DIFFERENCE fleet standard deviations.
DISTINGUISHING_LEVELS = (("cpu_level", "CPU"), ("memory_level", "memory"), ("network_level", "network"))
CLEAR_DIFFERENCE = 0.5
# Silhouettes compare every server with every other: the score that picks k is taken on a seeded sample of
# this many servers beyond it, and sklearn's distance blocks are held to SILHOUETTE_MEMORY_MB (its default,
# 1 GB, built a 763 MB block for 10,000 servers: fastStorage copied, helper-45).
SILHOUETTE_SAMPLE = 5_000
SILHOUETTE_MEMORY_MB = 64


def feature_matrix(profiles: pd.DataFrame) -> np.ndarray:
    """Standardised clustering features: log levels, saturated evidence, z-scored columns.

    Args:
        profiles: ``profiles.server_profiles`` output.

    Returns:
        (servers, features) matrix in the row order of ``profiles``.
    """
    require_columns(profiles, (SERVER_ID, *PROFILE_COLUMNS), "profiles")
    columns = []
    for name in PROFILE_COLUMNS:
        x = profiles[name].to_numpy(dtype=float)
        if name in _LOG_FEATURES:
            x = np.log(np.maximum(x, 1.0))
        elif name in _EVIDENCE_SCALE:
            x = np.tanh(x / _EVIDENCE_SCALE[name])
        columns.append(x)
    matrix = np.nan_to_num(np.column_stack(columns)) if columns else np.zeros((len(profiles), 0))
    if len(matrix) < 2:
        return np.zeros_like(matrix)
    return StandardScaler().fit_transform(matrix)


def _kmeans(features: np.ndarray, k: int, random_state: int) -> np.ndarray:
    # One thread: the matrices are small, and OpenMP workers spin-waiting on a busy machine cost
    # far more than they save.
    with threadpool_limits(limits=1):
        return KMeans(n_clusters=k, n_init=10, random_state=random_state).fit_predict(features)


def _silhouette_sample(labels: np.ndarray, random_state: int) -> np.ndarray:
    """Row positions to score: all of them up to ``SILHOUETTE_SAMPLE``, else a seeded sample of that many that
    holds at least one member of every cluster (a sample that missed a far outlier's own cluster left one
    label, which silhouette_score refuses: helper-48)."""
    n = len(labels)
    if n <= SILHOUETTE_SAMPLE:
        return np.arange(n)
    picked = np.random.default_rng(random_state).choice(n, SILHOUETTE_SAMPLE, replace=False)
    _, first = np.unique(labels, return_index=True)
    return np.union1d(picked, first)


def choose_k(features: np.ndarray, k_min: int, k_max: int, random_state: int) -> tuple[int, pd.DataFrame]:
    """The number of clusters with the best silhouette within [k_min, k_max].

    The range is clipped to what the data allows (2 <= k <= servers - 1, distinct points); ties
    go to the smaller k. Beyond ``SILHOUETTE_SAMPLE`` servers the silhouette is that of a sample of them
    drawn with ``random_state`` (the same for every k).

    Args:
        features: standardised feature matrix.
        k_min: smallest k tried.
        k_max: largest k tried.
        random_state: K-Means seed.

    Returns:
        (best k, table with columns k, silhouette). With fewer than 3 distinct servers, k is 1
        and the table is empty.
    """
    distinct = len(np.unique(np.round(features, 9), axis=0)) if len(features) else 0
    upper = min(k_max, distinct - 1, len(features) - 1)
    lower = max(2, min(k_min, upper))
    rows = []
    for k in range(lower, upper + 1):
        labels = _kmeans(features, k, random_state)
        if len(np.unique(labels)) < 2:
            continue
        rows_used = _silhouette_sample(labels, random_state)
        with config_context(working_memory=SILHOUETTE_MEMORY_MB):
            score = silhouette_score(features[rows_used], labels[rows_used])
        rows.append((k, float(score)))
    table = pd.DataFrame(rows, columns=["k", "silhouette"])
    if table.empty:
        return 1, table
    best = int(table["k"].to_numpy()[int(np.argmax(table["silhouette"].to_numpy()))])
    return best, table


def label_profile(centre: pd.Series, cfg: RiskConfig, cpu_known: bool = True) -> str:
    """Human label of a cluster from its median profile (first matching rule wins).

    Args:
        centre: median of the cluster's members over ``PROFILE_COLUMNS``.
        cfg: risk settings (idle limits, seasonal uplift).
        cpu_known: most members have cpu values; without them a cluster is never idle (its cpu
            features read 0).

    Returns:
        One of idle, memory-leak, batch/quarter-end, batch/month-end, seasonal/year-end, growing,
        level-shift/migrated, bursty (cpu's interquartile range at least its median level), steady.
    """
    if cpu_known and centre["cpu_p95"] <= cfg.idle_cpu_max and centre["memory_p95"] <= cfg.idle_memory_max:
        return "idle"
    if centre["leak_signal"] >= _LEAK:
        return "memory-leak"
    if centre["month_end_uplift"] >= cfg.seasonal_min_uplift:
        return ("batch/quarter-end" if centre["quarter_end_uplift"] >= centre["month_end_uplift"]
                else "batch/month-end")
    if centre["year_end_uplift"] >= cfg.seasonal_min_uplift:
        return "seasonal/year-end"
    if centre["trend"] >= _GROWTH_PER_YEAR:
        return "growing"
    if centre["step_change"] >= _STEP:
        return "level-shift/migrated"
    if centre["cpu_variability"] >= _BURSTY:
        return "bursty"
    return "steady"


def _level_text(name: str, value: float, decimals: int = 0) -> str:
    """``CPU ~12 %``; with ``decimals`` 1, ``CPU ~0.4 %`` (idle clusters all read ``CPU <1 %`` otherwise), and
    ``CPU <0.1 %`` for what would round to 0 (``~0.0 %`` reads like a missing value)."""
    if decimals:
        smallest = 10.0 ** -decimals
        return f"{name} ~{value:.{decimals}f} %" if value >= smallest / 2 else f"{name} <{smallest:g} %"
    return f"{name} ~{value:.0f} %" if value >= 1 else f"{name} <1 %"


def unique_labels(labels: dict[int, str], centres: pd.DataFrame, spread: pd.Series | None = None) -> dict[int, str]:
    """Make cluster labels unique by naming what differs, deterministically.

    Clusters whose pattern label is shared get the median level of the first metric in
    ``DISTINGUISHING_LEVELS`` whose levels clearly differ between them (range >= ``CLEAR_DIFFERENCE``
    x ``spread``), or else of the metric whose levels differ most, e.g.
    ``seasonal/year-end, CPU ~45 %`` and ``seasonal/year-end, CPU ~12 %``. When the rounded levels
    still coincide, the next metrics' levels are added; only clusters with identical rounded
    levels of every metric fall back to their id (``#3``).

    Args:
        labels: cluster id -> pattern label (``label_profile``).
        centres: cluster id -> median profile (at least the ``DISTINGUISHING_LEVELS`` columns).
        spread: each level's standard deviation across the fleet (None: 1 for every level).

    Returns:
        cluster id -> unique label.
    """
    out = dict(labels)
    for label in sorted(set(labels.values())):
        ids = sorted(cid for cid, name in labels.items() if name == label)
        if len(ids) < 2:
            continue
        group = centres.loc[ids]
        differ = {col: float(group[col].max() - group[col].min())
                  / max(float(spread.get(col, 1.0)) if spread is not None else 1.0, 1e-9)
                  for col, _ in DISTINGUISHING_LEVELS if col in group.columns}
        clear = [col for col in differ if differ[col] >= CLEAR_DIFFERENCE]
        # A level equal in every one of these clusters (a metric the fleet does not have reads 0) tells
        # none apart: it is never named.
        order = clear + sorted((c for c in differ if c not in clear and differ[c] > 0), key=lambda col: -differ[col])
        if not order:  # identical levels: say them (but a metric at 0 in all, absent from the data) before the id
            order = [c for c in differ if (group[c] != 0).any()]
        names = dict(DISTINGUISHING_LEVELS)
        tried = []
        for decimals in (0, 1):  # a decimal only where whole percents cannot tell the clusters apart
            parts: dict[int, list[str]] = {cid: [] for cid in ids}
            for col in order:
                for cid in ids:
                    parts[cid].append(_level_text(names[col], float(group[col].loc[cid]), decimals))
                if len({", ".join(p) for p in parts.values()}) == len(ids):
                    break
            tried.append({cid: ", ".join(parts[cid]) for cid in ids})
            if len(set(tried[-1].values())) == len(ids):
                break
        texts = tried[-1] if len(set(tried[-1].values())) == len(ids) else tried[0]
        clash = {t for t in texts.values() if list(texts.values()).count(t) > 1}
        for cid in ids:
            suffix = texts[cid] + (f" #{cid}" if texts[cid] in clash or not texts[cid] else "")
            out[cid] = f"{label}, {suffix.strip()}"
    return out


def cluster_servers(profiles: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    """Cluster servers by workload profile and name each cluster.

    Deterministic for a given ``cfg.random_state``. Cluster ids are numbered by ascending median
    cpu level, so the same fleet always gets the same ids; clusters that share a pattern are told
    apart by the level that differs most between them (``steady, CPU ~12 %``; ``unique_labels``).

    Args:
        profiles: ``profiles.server_profiles`` output, one row per server.
        cfg: risk settings (k range, random_state, label limits).

    Returns:
        One row per server: server_id, cluster_id, cluster_label (the contract columns), then
        silhouette (the member's silhouette value; 0 with a single cluster). ``attrs["k"]`` is
        the chosen k and ``attrs["silhouette_by_k"]`` the mean silhouette of every k tried.
    """
    if profiles.empty:
        out = pd.DataFrame({SERVER_ID: pd.Series(dtype=object), "cluster_id": pd.Series(dtype=np.int64),
                            "cluster_label": pd.Series(dtype=object), "silhouette": pd.Series(dtype=float)})
        out.attrs.update(k=0, silhouette_by_k={})
        return out
    features = feature_matrix(profiles)
    k, table = choose_k(features, cfg.cluster_k_min, cfg.cluster_k_max, cfg.random_state)
    if k > 1:
        raw = _kmeans(features, k, cfg.random_state)
    else:
        raw = np.zeros(len(profiles), dtype=np.int64)
    with config_context(working_memory=SILHOUETTE_MEMORY_MB):
        member_silhouette = silhouette_samples(features, raw) if k > 1 else np.zeros(len(profiles))
    centres = profiles[list(PROFILE_COLUMNS)].groupby(raw).median()
    order = centres["cpu_level"].sort_values(kind="stable").index
    renumber = {old: new for new, old in enumerate(order)}
    observed = (profiles[CPU_OBSERVED] if CPU_OBSERVED in profiles else pd.Series(True, index=profiles.index))
    cpu_known = observed.astype(float).groupby(raw).mean() >= 0.5
    labels = {renumber[c]: label_profile(centres.loc[c], cfg, bool(cpu_known.loc[c])) for c in centres.index}
    levels = [col for col, _ in DISTINGUISHING_LEVELS]
    labels = unique_labels(labels, centres.rename(index=renumber), profiles[levels].std().fillna(1.0))
    cluster_id = np.array([renumber[c] for c in raw], dtype=np.int64)
    out = pd.DataFrame({
        SERVER_ID: profiles[SERVER_ID].to_numpy(),
        "cluster_id": cluster_id,
        "cluster_label": pd.Series(cluster_id).map(labels).to_numpy(),
        "silhouette": member_silhouette,
    })
    out.attrs.update(k=k, silhouette_by_k=dict(zip(table["k"].astype(int).tolist(),
                                                   table["silhouette"].astype(float).tolist(), strict=True)))
    logger.debug("clustered %d servers into k=%d: %s", len(out), k, out["cluster_label"].value_counts().to_dict())
    return out
