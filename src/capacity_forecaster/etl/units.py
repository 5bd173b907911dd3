"""Value units: the checks for fractions of capacity (0-1), and for counts or bytes, read as percentages (0-100)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from capacity_forecaster.etl.mapping import Mapping
from capacity_forecaster.messages import examples
from capacity_forecaster.schema import METRICS

# Fewer values than this say too little about a unit (a short export of an idle server).
MIN_VALUES = 100
# The share of values that must lie at or below FRACTION_CEILING: fractions exceed 1 where a VM is saturated (a
# Prometheus export of the Bitbrains VMs: 0.8 % of CPU values up to 1.107) or a sample is glitched
# (memory 14.1 once), so "every value <= 1" would miss them; a fleet in percent has far fewer
# values that low (that export: 15 % of CPU, 7 % of memory).
SHARE_AT_MOST_ONE = 0.99
# Where a fraction of capacity stops: saturated VMs read up to 1.29 (Bitbrains), turbo clocks below ~1.5
# (etl.saturation_max's evidence). Counting only values up to 1 let one saturated node of four (ratios above 1 on
# 5 % of its samples) hide a fleet of fractions (helper-66: every server then read ~1 %, idle).
FRACTION_CEILING = 1.5
# The metrics checked for fractions: utilisation that a whole fleet rarely keeps under 1 %.
FRACTION_CHECKED = ("cpu", "memory")
# A series whose peak passes this reads in percent (a fraction peaks at FRACTION_CEILING at most).
PERCENT_SEEN = 5.0
# The share of values above 100 that says a column is not a percentage: saturation is a state some
# servers reach some of the time (Bitbrains Rnd: 0.5 % of the CPU samples, 101-129 %), not what most
# of a whole export reads; a count (requests, NAB's ELB request count) or bytes column is.
SHARE_OVER_HUNDRED = 0.5


def _hint(mapping: Mapping, metric: str) -> str:
    if mapping.long is not None:
        return (f"set long.unit: fraction in the mapping (or long.unit: {{{metric}: fraction}} for this metric "
                "alone; docs/ingest.md, Values)")
    spec = next(spec for name, spec in mapping.metrics.items() if name == metric)
    if spec.form in ("usage", "free"):
        return (f"check that metrics.{metric}.{spec.form} ('{spec.value_column}') and its capacity are in the same "
                f"unit (e.g. both MB), or set metrics.{metric}.capacity_multiplier")
    if spec.form == "idle":
        return f"check that metrics.{metric}.idle ('{spec.idle}') is a percent (0-100) of idle time"
    return (f"set metrics.{metric}.fraction: '{spec.value_column}' instead of percent in the mapping "
            "(docs/ingest.md, Values)")


@dataclass(frozen=True)
class MetricValues:
    """What the unit checks need of one metric's accepted values.

    Attributes:
        count: values read.
        at_most_one: values at or below FRACTION_CEILING (a fraction of capacity, saturation included).
        over_hundred: values above 100.
        maximum: the largest value.
        median: their median (of a seeded random sample of ``MEDIAN_SAMPLE`` values where more were
            read without being held in memory at once: ``ValueTally``).
    """

    count: int
    at_most_one: int
    over_hundred: int
    maximum: float
    median: float


# Values kept per metric for the median of an export too large to hold (a median to ~0.1 percentile).
MEDIAN_SAMPLE = 500_000


class ValueTally:
    """``MetricValues`` per metric, gathered chunk by chunk: exact counts and maximum, the median of all
    values up to ``MEDIAN_SAMPLE`` per metric, beyond that of a seeded random sample of that many (each value
    draws a random key; the values with the smallest keys are kept, trimmed whenever 1.5 times as many wait)."""

    def __init__(self, sample: int = MEDIAN_SAMPLE) -> None:
        self._sample = sample
        self._rng = np.random.default_rng(0)
        self._counts = np.zeros((len(METRICS), 3), dtype=np.int64)
        self._maximum = np.full(len(METRICS), -np.inf)
        self._keys: list[list[np.ndarray]] = [[] for _ in METRICS]
        self._kept: list[list[np.ndarray]] = [[] for _ in METRICS]
        self._waiting = np.zeros(len(METRICS), dtype=np.int64)

    def add(self, metric: np.ndarray, value: np.ndarray) -> None:
        """Count a chunk of accepted values (metric codes into schema.METRICS, percent as read)."""
        present = np.flatnonzero(np.bincount(metric.astype(np.intp), minlength=len(METRICS)))
        for code in present.tolist():
            values = value[metric == code] if len(present) > 1 else value
            self._counts[code] += (len(values), np.count_nonzero(values <= FRACTION_CEILING),
                                   np.count_nonzero(values > 100.0))
            self._maximum[code] = max(self._maximum[code], float(values.max()))
            self._keys[code].append(self._rng.random(len(values), dtype=np.float32))
            self._kept[code].append(values)
            self._waiting[code] += len(values)
            if self._waiting[code] > 1.5 * self._sample:
                self._trim(code)

    def _trim(self, code: int) -> None:
        keys, kept = np.concatenate(self._keys[code]), np.concatenate(self._kept[code])
        if len(kept) > self._sample:  # the values with the smallest random keys: a uniform sample
            chosen = np.argpartition(keys, self._sample)[:self._sample]
            keys, kept = keys[chosen], kept[chosen]
        self._keys[code], self._kept[code], self._waiting[code] = [keys], [kept], len(kept)

    def summary(self) -> dict[str, MetricValues]:
        """``MetricValues`` of every metric with a value."""
        out = {}
        for code, name in enumerate(METRICS):
            if not self._counts[code, 0]:
                continue
            self._trim(code)
            out[name] = MetricValues(int(self._counts[code, 0]), int(self._counts[code, 1]),
                                     int(self._counts[code, 2]), float(self._maximum[code]),
                                     float(np.median(self._kept[code][0])))
        return out


def summarise_values(metric: np.ndarray, value: np.ndarray) -> dict[str, MetricValues]:
    """``MetricValues`` of every metric with a value, from all of them at once."""
    tally = ValueTally(max(len(value), 1))
    tally.add(metric, value)
    return tally.summary()


def fraction_warnings(values: dict[str, MetricValues], mapping: Mapping) -> list[str]:
    """Warnings for metrics whose values nearly all lie between 0 and 1.5 percent (a fraction, saturated at most 1.5).

    CPU or memory utilisation that stays at or below 1 % across a whole export is far likelier to be
    a fraction of capacity (Prometheus ``*_utilisation`` ratios, 0.5 = 50 %) read as percent than a
    fleet that idle; read as percent it makes every server look idle (decommission). The values are
    kept as read: only the mapping can say which unit they are in.

    Args:
        values: the accepted values of each metric (``summarise_values`` or ``ValueTally``), in percent as read.
        long: for a long layout, whose values can only be percentages or fractions (no usage and capacity),
            its metric name column (the advice is to leave the metric out with exclude_rows), or "" when it
            has none (one fixed metric: the advice is to give the tool another file).
        mapping: the mapping they were read with (metrics it declares as fractions are skipped).

    Returns:
        One message per metric of FRACTION_CHECKED (cpu, memory) with at least MIN_VALUES values,
        some above 0 and at least SHARE_AT_MOST_ONE of them at or below FRACTION_CEILING, naming the mapping key.
    """
    declared = mapping.fraction_metrics()
    messages = []
    for name, seen in values.items():
        # Disk and network often do sit under 1 % (a quiet NIC); "multiply by 100" would be harmful advice.
        if name in declared or name not in FRACTION_CHECKED or seen.count < MIN_VALUES:
            continue
        if seen.at_most_one >= SHARE_AT_MOST_ONE * seen.count and seen.maximum > 0.0:
            messages.append(
                f"{name}: {seen.at_most_one:,} of the {seen.count:,} values are at most {FRACTION_CEILING:g} (median "
                f"{seen.median:.3g}, max {seen.maximum:.3g}), read as percent of capacity, "
                f"so the servers look idle; if they are fractions (0.5 = 50 %), {_hint(mapping, name)}")
    return messages


def fraction_server_warnings(daily: pd.DataFrame, mapping: Mapping) -> list[str]:
    """Warnings for servers whose cpu or memory never exceeds ``FRACTION_CEILING`` on any sample while other servers'
    clearly read in percent (their maximum above ``PERCENT_SEEN``): one file of fractions among percent files.

    ``fraction_warnings`` judges a metric over the whole export, so one Prometheus ratio file in a folder of percent
    files passed unsaid and its server read as idle (helper-72: NAB's cpu as a fraction beside the same series in
    percent, one "keep" at 0.93 %, the other already breaching). The values are kept as read.

    Args:
        daily: the ingest's daily rows (server_id, metric, value_max, samples).
        mapping: the mapping they were read with (metrics it declares as fractions are skipped).

    Returns:
        One message per metric of FRACTION_CHECKED with such servers (at least MIN_VALUES samples each).
    """
    declared = mapping.fraction_metrics()
    checked = daily[daily["metric"].isin([m for m in FRACTION_CHECKED if m not in declared])]
    if checked.empty:
        return []
    series = checked.groupby(["metric", "server_id"], sort=True).agg(peak=("value_max", "max"),
                                                                     samples=("samples", "sum"))
    messages = []
    for name, rows in series.groupby(level="metric", sort=True):
        low = rows[(rows["peak"] > 0.0) & (rows["peak"] <= FRACTION_CEILING) & (rows["samples"] >= MIN_VALUES)]
        if low.empty or not (rows["peak"] > PERCENT_SEEN).any():
            continue
        servers = low.index.get_level_values("server_id")
        messages.append(
            f"{name}: {len(low):,} of {len(rows):,} servers never exceed {FRACTION_CEILING:g} on any sample while "
            f"others read in percent: {examples((str(s) for s in servers[:3]), total=len(low))}; read as percent "
            f"they look idle; if their files hold fractions (0.5 = 50 %), ingest those files with a mapping that "
            f"reads them ({_hint(mapping, str(name))})")
    return messages


def over_hundred_warnings(values: dict[str, MetricValues], long: str | None = None) -> list[str]:
    """Warnings for metrics whose values are mostly above 100 %.

    Above 100 is saturation (demand over capacity, kept as 100 by the ETL), which servers reach some of
    the time. When most of an export's values of a metric are over 100 the column is likelier a count,
    bytes or MHz mapped as percent (NAB's CloudWatch request counts with a cpu mapping): every server
    would read as saturated. The values are kept as read.

    Args:
        values: the accepted values of each metric (``summarise_values`` or ``ValueTally``), in percent as read.

    Returns:
        One message per metric with at least MIN_VALUES values, more than SHARE_OVER_HUNDRED of them
        above 100.
    """
    messages = []
    for name, seen in values.items():
        if seen.count >= MIN_VALUES and seen.over_hundred > SHARE_OVER_HUNDRED * seen.count:
            messages.append(
                f"{name}: {seen.over_hundred:,} of the {seen.count:,} values are above 100 (median "
                f"{seen.median:.3g}, max {seen.maximum:.3g}), read as percent of capacity, so the servers look "
                "saturated; if this column is a count, bytes or MHz rather than a percentage, "
                + ("map it with usage and capacity (docs/ingest.md, Values)" if long is None else
                   f"leave the metric out (exclude_rows on column '{long}') or export it as a percentage: a long "
                   "file's values are percentages or fractions (docs/ingest.md, Values)" if long else
                   "read only files of percentages or fractions with this mapping (a long file's values are "
                   "either; docs/ingest.md, Values)"))
    return messages
