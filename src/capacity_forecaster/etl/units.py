"""Value units: the checks for fractions of capacity (0-1), and for counts or bytes, read as percentages (0-100)."""

from __future__ import annotations

import numpy as np

from capacity_forecaster.etl.mapping import Mapping
from capacity_forecaster.schema import METRICS

# Fewer values than this say too little about a unit (a short export of an idle server).
MIN_VALUES = 100
# The share of values that must lie at or below 1: fractions exceed 1 where a VM is saturated (a
# Prometheus export of the Bitbrains VMs: 0.8 % of CPU values up to 1.107) or a sample is glitched
# (memory 14.1 once), so "every value <= 1" would miss them; a fleet in percent has far fewer
# values that low (that export: 15 % of CPU, 7 % of memory).
SHARE_AT_MOST_ONE = 0.99
# The metrics checked for fractions: utilisation that a whole fleet rarely keeps under 1 %.
FRACTION_CHECKED = ("cpu", "memory")
# The share of values above 100 that says a column is not a percentage: saturation is a state some
# servers reach some of the time (Bitbrains Rnd: 0.5 % of the CPU samples, 101-129 %), not what most
# of a whole export reads; a count (requests, NAB's ELB request count) or bytes column is.
SHARE_OVER_HUNDRED = 0.5


def _hint(mapping: Mapping, metric: str) -> str:
    if mapping.long is not None:
        return (f"set long.unit: fraction in the mapping (or long.unit: {{{metric}: fraction}} for this metric "
                "alone; docs/ingest.md, Values)")
    spec = next(spec for name, spec in mapping.metrics.items() if name == metric)
    if spec.usage is not None:
        return (f"check that metrics.{metric}.usage ('{spec.usage}') and its capacity are in the same unit "
                "(e.g. both MB)")
    return (f"set metrics.{metric}.fraction: '{spec.value_column}' instead of percent in the mapping "
            "(docs/ingest.md, Values)")


def fraction_warnings(metric: np.ndarray, value: np.ndarray, mapping: Mapping) -> list[str]:
    """Warnings for metrics whose values nearly all lie between 0 and 1 percent.

    CPU or memory utilisation that stays at or below 1 % across a whole export is far likelier to be
    a fraction of capacity (Prometheus ``*_utilisation`` ratios, 0.5 = 50 %) read as percent than a
    fleet that idle; read as percent it makes every server look idle (decommission). The values are
    kept as read: only the mapping can say which unit they are in.

    Args:
        metric: metric code (index into schema.METRICS) of every accepted value.
        value: the accepted values, in percent as read.
        mapping: the mapping they were read with (metrics it declares as fractions are skipped).

    Returns:
        One message per metric of FRACTION_CHECKED (cpu, memory) with at least MIN_VALUES values,
        some above 0 and at least SHARE_AT_MOST_ONE of them at or below 1, naming the mapping key to set.
    """
    declared = mapping.fraction_metrics()
    messages = []
    for code, name in enumerate(METRICS):
        # Disk and network often do sit under 1 % (a quiet NIC); "multiply by 100" would be harmful advice.
        if name in declared or name not in FRACTION_CHECKED:
            continue
        values = value[metric == code]
        if len(values) < MIN_VALUES:
            continue
        low = int(np.count_nonzero(values <= 1.0))
        if low >= SHARE_AT_MOST_ONE * len(values) and float(values.max()) > 0.0:
            messages.append(
                f"{name}: {low:,} of the {len(values):,} values are at most 1 (median "
                f"{float(np.median(values)):.3g}, max {float(values.max()):.3g}), read as percent of capacity, "
                f"so the servers look idle; if they are fractions (0.5 = 50 %), {_hint(mapping, name)}")
    return messages


def over_hundred_warnings(metric: np.ndarray, value: np.ndarray) -> list[str]:
    """Warnings for metrics whose values are mostly above 100 %.

    Above 100 is saturation (demand over capacity, kept as 100 by the ETL), which servers reach some of
    the time. When most of an export's values of a metric are over 100 the column is likelier a count,
    bytes or MHz mapped as percent (NAB's CloudWatch request counts with a cpu mapping): every server
    would read as saturated. The values are kept as read.

    Args:
        metric: metric code (index into schema.METRICS) of every accepted value.
        value: the accepted values, in percent as read.

    Returns:
        One message per metric with at least MIN_VALUES values, more than SHARE_OVER_HUNDRED of them
        above 100.
    """
    messages = []
    for code, name in enumerate(METRICS):
        values = value[metric == code]
        if len(values) < MIN_VALUES:
            continue
        over = int(np.count_nonzero(values > 100.0))
        if over > SHARE_OVER_HUNDRED * len(values):
            messages.append(
                f"{name}: {over:,} of the {len(values):,} values are above 100 (median {float(np.median(values)):.3g}, "
                f"max {float(values.max()):.3g}), read as percent of capacity, so the servers look saturated; if "
                "this column is a count, bytes or MHz rather than a percentage, map it with usage and capacity "
                "(docs/ingest.md, Values)")
    return messages
