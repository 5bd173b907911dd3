"""The check for fractions of capacity read as percent, and reading declared fractions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

from capacity_forecaster.config import IngestConfig
from capacity_forecaster.etl.ingest import IngestResult, ingest
from capacity_forecaster.etl.mapping import parse_mapping
from capacity_forecaster.etl.units import MIN_VALUES, ValueTally, fraction_warnings, summarise_values

LONG = {"layout": "long", "server_id": {"column": "host"}, "timestamp": {"column": "time"},
        "long": {"value": "value", "metric_column": "metric"}}
WIDE = {"layout": "wide", "server_id": {"column": "host"}, "timestamp": {"column": "time"},
        "metrics": {"cpu": {"percent": "cpu"}, "memory": {"usage": "used", "capacity": "total"}}}


def local(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def fractions(n: int = 300, top: float = 1.0) -> np.ndarray:
    values = np.random.default_rng(0).uniform(0.0, 0.9, n)
    values[:2] = [top, 0.0]
    return values


def test_fractions_read_as_percent_are_named_with_the_key_to_set() -> None:
    metric = np.zeros(300, dtype=np.int8)
    [message] = fraction_warnings(summarise_values(metric, fractions()), parse_mapping(LONG))
    assert message.startswith("cpu: 300 of the 300 values are at most 1.5 (median ")
    assert "so the servers look idle" in message and "set long.unit: fraction in the mapping" in message
    [wide] = fraction_warnings(summarise_values(metric, fractions()), parse_mapping(WIDE))
    assert "set metrics.cpu.fraction: 'cpu' instead of percent" in wide
    [usage] = fraction_warnings(summarise_values(np.ones(300, dtype=np.int8), fractions()), parse_mapping(WIDE))
    assert "check that metrics.memory.usage ('used') and its capacity are in the same unit" in usage


def test_saturated_fractions_and_a_stray_glitch_still_warn_but_percent_does_not() -> None:
    metric = np.zeros(1000, dtype=np.int8)
    saturated = fractions(1000, top=14.1)
    saturated[2:9] = 1.107  # under 1 % of the values beyond 1: saturation and a glitch
    assert len(fraction_warnings(summarise_values(metric, saturated), parse_mapping(LONG))) == 1
    # helper-66: one node of four saturated (ratios 1.0-1.3 on 5 % of its samples) tipped the share at or below 1
    # under 99 %: no warning, and every server read ~1 %, idle.
    node = np.random.default_rng(1).uniform(0.9, 1.0, 250)
    node[:13] = np.linspace(1.01, 1.3, 13)
    fleet = np.concatenate([fractions(750), node])
    assert (fleet > 1).mean() > 0.01
    assert len(fraction_warnings(summarise_values(np.zeros(1000, dtype=np.int8), fleet), parse_mapping(LONG))) == 1
    percent = saturated * 100
    percent[:985] = np.minimum(percent[:985], 0.8)  # 98.5 % idle, the rest busy: a real, idle fleet
    assert fraction_warnings(summarise_values(metric, percent), parse_mapping(LONG)) == []


@pytest.mark.parametrize("values", [fractions(MIN_VALUES - 1), np.zeros(300), fractions() * 100])
def test_no_warning_for_few_values_all_zeros_or_percentages(values: np.ndarray) -> None:
    assert fraction_warnings(summarise_values(np.zeros(len(values), dtype=np.int8), values), parse_mapping(LONG)) == []


def test_declared_fractions_are_not_warned_about() -> None:
    declared = parse_mapping({**LONG, "long": {**LONG["long"], "unit": {"cpu": "fraction"}}})
    metric = np.repeat(np.array([0, 1], dtype=np.int8), 300)
    warnings = fraction_warnings(summarise_values(metric, np.concatenate([fractions(), fractions()]) / 100), declared)
    assert len(warnings) == 1 and warnings[0].startswith("memory: ")


def ingest_text(tmp_path: Path, text: str, mapping: dict) -> IngestResult:
    path = tmp_path / "export.csv"
    path.write_text(text, encoding="utf-8")
    return ingest([str(path)], parse_mapping(mapping), IngestConfig(), local)


def hourly_long(metrics: dict[str, np.ndarray]) -> str:
    times = pd.date_range("2024-01-01", periods=len(next(iter(metrics.values()))), freq="h")
    rows = [f"vm,{t:%Y-%m-%dT%H:%M:%S},{name},{float(v)!r}" for name, values in metrics.items()
            for t, v in zip(times, values, strict=True)]
    return "host,time,metric,value\n" + "\n".join(rows) + "\n"


def test_ingest_warns_about_fractions_and_reads_declared_ones_as_percent(tmp_path: Path) -> None:
    text = hourly_long({"cpu": fractions(240), "memory": fractions(240) * 100})
    plain = ingest_text(tmp_path, text, LONG)
    assert [w.split(":")[0] for w in plain.warnings if "samples a day" not in w] == ["cpu"]
    declared = ingest_text(tmp_path, text, {**LONG, "long": {**LONG["long"], "unit": {"cpu": "fraction"}}})
    assert [w for w in declared.warnings if "samples a day" not in w] == []
    both = [r.raw_metrics.set_index(["metric", "ds"])["value"] for r in (plain, declared)]
    np.testing.assert_allclose(both[1].loc["cpu"], both[0].loc["cpu"] * 100)
    np.testing.assert_allclose(both[1].loc["memory"], both[0].loc["memory"])


def test_a_wide_fraction_column_is_read_times_100_and_out_of_range_after_it(tmp_path: Path) -> None:
    text = "host,time,cpu_ratio\nvm,2024-01-01T00:00:00,0.25\nvm,2024-01-01T01:00:00,1.05\nvm,2024-01-01T02:00:00,2e4\n"
    result = ingest_text(tmp_path, text, {**WIDE, "metrics": {"cpu": {"fraction": "cpu_ratio"}}})
    assert result.raw_metrics["value_max"].tolist() == [pytest.approx(105.0)]
    assert result.raw_metrics["samples"].tolist() == [2]
    [reason] = result.quarantine["reason"].tolist()
    assert reason.startswith("value_out_of_range: '2e4' from column 'cpu_ratio'")


def test_a_count_read_as_percent_is_named_and_saturation_of_some_servers_is_not() -> None:
    from capacity_forecaster.etl.units import over_hundred_warnings

    rng = np.random.default_rng(1)
    metric = np.zeros(400, dtype=np.int8)
    counts = rng.uniform(100.0, 190.0, 400)  # an ELB request count between 100 and 190 mapped as cpu %
    [message] = over_hundred_warnings(summarise_values(metric, counts))
    assert message.startswith("cpu: 400 of the 400 values are above 100") and "count, bytes or MHz" in message
    assert message.endswith("map it with usage and capacity (docs/ingest.md, Values)")
    # A long file has no usage and capacity keys (helper-60: it was told to use them).
    [message] = over_hundred_warnings(summarise_values(metric, counts), long="MetricName")
    assert message.endswith("leave the metric out (exclude_rows on column 'MetricName') or export it as a "
                            "percentage: a long file's values are percentages or fractions (docs/ingest.md, Values)")
    [message] = over_hundred_warnings(summarise_values(metric, counts), long="")  # one fixed metric (nab.yaml)
    assert message.endswith("read only files of percentages or fractions with this mapping (a long file's values "
                            "are either; docs/ingest.md, Values)")
    saturated = np.concatenate([rng.uniform(5.0, 60.0, 300), rng.uniform(101.0, 129.0, 100)])  # 25 % saturated
    assert over_hundred_warnings(summarise_values(metric, saturated)) == []
    assert over_hundred_warnings(summarise_values(metric[:50], counts[:50])) == []  # too few values to say


def test_ingest_warns_about_a_count_column_mapped_as_percent(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=288, freq="5min").strftime("%Y-%m-%d %H:%M:%S")
    rng = np.random.default_rng(2)
    path = tmp_path / "elb.csv"
    pd.DataFrame({"host": "elb-1", "time": times, "metric": "cpu",
                  "value": np.round(rng.uniform(110, 180, len(times)), 1)}).to_csv(path, index=False)
    result = ingest([str(path)], parse_mapping(LONG), IngestConfig(), local)
    assert any("values are above 100" in w for w in result.warnings)


def test_a_quiet_network_is_not_taken_for_fractions() -> None:
    network = np.full(300, 3, dtype=np.int8)  # schema.METRICS index of network
    assert fraction_warnings(summarise_values(network, fractions()), parse_mapping(LONG)) == []


def test_a_value_tally_counts_exactly_and_takes_the_median_of_a_sample_beyond_its_size() -> None:
    rng = np.random.default_rng(3)
    values = rng.uniform(0.0, 100.0, 50_000)
    metric = (np.arange(50_000) % 2).astype(np.int8)
    tally = ValueTally(sample=5_000)
    for start in range(0, 50_000, 7_000):  # chunk by chunk, as ingest reads
        tally.add(metric[start:start + 7_000], values[start:start + 7_000])
    exact = summarise_values(metric, values)
    sampled = tally.summary()
    for name in ("cpu", "memory"):
        assert (sampled[name].count, sampled[name].at_most_one, sampled[name].over_hundred, sampled[name].maximum) == (
            exact[name].count, exact[name].at_most_one, exact[name].over_hundred, exact[name].maximum)
        assert exact[name].median == pytest.approx(float(np.median(values[metric == (name == "memory")])))
        assert sampled[name].median == pytest.approx(exact[name].median, abs=2.0)
