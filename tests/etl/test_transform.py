"""transform end to end: known answers on a hand-built server, and hypothesis invariants over dirty frames."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest
from etl_frames import day, inventory, raw_frame, row
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capacity_forecaster import schema
from capacity_forecaster.config import EtlConfig
from capacity_forecaster.etl.features import CALENDAR_COLUMNS, feature_names
from capacity_forecaster.etl.transform import COUNT_KEYS, transform, transform_batches

METRICS = ("cpu", "memory", "disk", "network")
KEYS = [schema.SERVER_ID, schema.DS, schema.METRIC]


def _dirty_server() -> pd.DataFrame:
    """srv-a with a 3-day and a 10-day cpu gap, a stuck run, an outage, a conflict, clips, a saturated
    day and junk rows (including a value beyond etl.saturation_max)."""
    raw = raw_frame(metrics=METRICS, n_days=140)
    raw.loc[raw[schema.METRIC] == "disk", schema.VALUE] = np.round(30 + 0.01 * np.arange(140), 3)
    is_cpu = raw[schema.METRIC] == "cpu"
    drop = is_cpu & raw[schema.DS].isin([day(d) for d in [*range(30, 33), *range(60, 70)]])
    raw = raw[~drop].copy()
    is_cpu = raw[schema.METRIC] == "cpu"
    stuck = is_cpu & raw[schema.DS].between(day(90), day(94))
    raw.loc[stuck, schema.VALUE] = raw.loc[is_cpu & (raw[schema.DS] == day(90)), schema.VALUE].iloc[0]
    for metric, value in (("cpu", 0.5), ("memory", 1.0), ("network", 0.1)):
        down = (raw[schema.METRIC] == metric) & raw[schema.DS].between(day(110), day(111))
        raw.loc[down, schema.VALUE] = value
    raw.loc[is_cpu & (raw[schema.DS] == day(40)), schema.VALUE] = 100.3
    raw.loc[(raw[schema.METRIC] == "memory") & (raw[schema.DS] == day(45)), schema.VALUE] = 130.0
    extra = pd.DataFrame(
        [("srv-a", day(20), "memory", 95.0), ("srv-x", day(5), "cpu", 10.0),
         ("srv-a", day(41), "cpu", 250.0)],
        columns=KEYS + [schema.VALUE],
    )
    raw = raw[~(is_cpu & (raw[schema.DS] == day(41)))]
    raw = pd.concat([raw, extra], ignore_index=True)
    return raw.assign(samples=np.arange(len(raw)) % 24 + 1, low_coverage=np.arange(len(raw)) % 50 == 0)


@pytest.fixture(scope="module")
def dirty() -> tuple[pd.DataFrame, object]:
    raw = _dirty_server()
    return raw, transform(raw, inventory(("srv-a",)), EtlConfig())


def test_rows_are_accounted_for(dirty) -> None:
    raw, result = dirty
    c = result.counts
    assert set(c) == set(COUNT_KEYS)
    assert c["rows_in"] == len(raw) == c["rows_out"] + c["rows_quarantined"] - c["rows_created"]
    assert c["rows_out"] == 4 * 140 and c["rows_created"] == 13 + 1
    assert c["rows_imputed_created"] == 4 and c["rows_unfilled_created"] == 10


def test_columns_are_the_contract_then_the_carried_extras(dirty) -> None:
    _, result = dirty
    assert list(result.metrics.columns) == [*schema.PROCESSED_METRIC_COLUMNS, "samples", "low_coverage"]
    assert list(result.quarantine.columns) == list(schema.QUARANTINE_COLUMNS)
    names = feature_names((1, 7, 14, 28), (7, 28))
    assert list(result.features.columns) == [*KEYS, *names, *CALENDAR_COLUMNS]
    pd.testing.assert_frame_equal(result.features[KEYS], result.metrics[KEYS])
    created = row(result.metrics, "srv-a", "cpu", 31)
    assert pd.isna(created["samples"]) and pd.isna(created["low_coverage"])
    assert result.metrics["samples"].dtype == "Int64" and result.metrics["low_coverage"].dtype == "boolean"


def test_a_three_day_gap_is_filled_and_a_ten_day_gap_stays_empty(dirty) -> None:
    _, result = dirty
    m = result.metrics
    for offset in (30, 31, 32):
        filled = row(m, "srv-a", "cpu", offset)
        assert filled["is_imputed"] and abs(filled[schema.VALUE] - 40.0) < 5 and np.isnan(filled["value_raw"])
    for offset in range(60, 70):
        empty = row(m, "srv-a", "cpu", offset)
        assert np.isnan(empty[schema.VALUE]) and not empty["is_imputed"]
    diag = result.diagnostics.set_index(schema.METRIC).loc["cpu"]
    assert diag["longest_gap_days"] == 10 and diag["unfilled_gap_days"] == 10 and diag["n_unfilled"] == 10


def test_a_stuck_run_is_replaced_and_its_first_day_kept(dirty) -> None:
    _, result = dirty
    first = row(result.metrics, "srv-a", "cpu", 90)
    assert not first["is_imputed"] and first[schema.VALUE] == first["value_raw"]
    for offset in range(91, 95):
        repeat = row(result.metrics, "srv-a", "cpu", offset)
        assert repeat["is_outlier"] and repeat["is_imputed"] and not repeat["is_anomaly"]
        assert repeat["value_raw"] == first["value_raw"] and repeat[schema.VALUE] != repeat["value_raw"]


def test_an_outage_is_kept_and_flagged(dirty) -> None:
    _, result = dirty
    for metric, value in (("cpu", 0.5), ("memory", 1.0), ("network", 0.1)):
        for offset in (110, 111):
            kept = row(result.metrics, "srv-a", metric, offset)
            assert kept[schema.VALUE] == value and kept["is_anomaly"] and kept["anomaly_score"] > 4
            assert not kept["is_imputed"]
    assert not result.metrics.loc[result.metrics[schema.METRIC] == "disk", "is_anomaly"].any()


def test_clips_conflicts_and_rejects(dirty) -> None:
    _, result = dirty
    clipped = row(result.metrics, "srv-a", "cpu", 40)
    assert clipped[schema.VALUE] == 100.0 and clipped["value_raw"] == 100.3 and clipped["is_saturated"]
    saturated = row(result.metrics, "srv-a", "memory", 45)
    assert saturated[schema.VALUE] == 100.0 and saturated["value_raw"] == 130.0 and saturated["is_saturated"]
    assert not saturated["is_imputed"]
    assert result.metrics["is_saturated"].sum() == result.counts["rows_saturated"] == 2
    diag = result.diagnostics.set_index(schema.METRIC)["n_saturated"]
    assert diag["cpu"] == 1 and diag["memory"] == 1 and diag["disk"] == 0
    assert row(result.metrics, "srv-a", "cpu", 41)["is_imputed"], "the day of a quarantined value is imputed"
    memory = row(result.metrics, "srv-a", "memory", 20)
    assert memory[schema.VALUE] < 60
    codes = sorted(r.split(":")[0] for r in result.quarantine["reason"])
    assert codes == ["conflicting_duplicate", "out_of_range", "unknown_server"]
    loser = result.quarantine[result.quarantine["reason"].str.startswith("conflicting")].iloc[0]
    assert loser[schema.VALUE] == "95.0" and loser[schema.DS] == "2024-01-21"


def test_batches_give_the_same_answer_as_one_pass() -> None:
    servers = ("srv-a", "srv-b", "srv-c")
    raw = raw_frame(servers=servers, metrics=("cpu", "memory"), n_days=90)
    raw = raw.drop(index=[5, 200, 201, 202]).reset_index(drop=True)
    inv = inventory(servers)
    whole = transform(raw, inv, EtlConfig(imputation="seasonal"))
    parts = list(transform_batches(raw, inv, EtlConfig(imputation="seasonal", batch_servers=1)))
    assert [p.metrics[schema.SERVER_ID].unique().tolist() for p in parts] == [[s] for s in servers]
    joined = pd.concat([p.metrics for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole.metrics)
    assert sum(p.counts["rows_in"] for p in parts) == len(raw)


def test_knn_imputation_runs_end_to_end() -> None:
    raw = raw_frame(servers=("srv-a",), metrics=("cpu", "memory"), n_days=90).drop(index=[10, 11, 100])
    result = transform(raw, inventory(), EtlConfig(imputation="knn"))
    assert result.imputation.method == "knn" and result.counts["rows_imputed"] == 3
    assert result.metrics[schema.VALUE].between(0, 100).all()
    assert set(result.diagnostics["imputation_method"]) == {"knn"}


def test_empty_and_all_rejected_inputs_give_empty_frames() -> None:
    raw = raw_frame(n_days=5).assign(server_id="nobody")
    for frame in (raw.iloc[:0], raw):
        result = transform(frame, inventory(), EtlConfig())
        assert result.metrics.empty and list(result.metrics.columns) == list(schema.PROCESSED_METRIC_COLUMNS)
        assert result.features.empty and result.diagnostics.empty
        assert result.counts["rows_quarantined"] == len(frame) == result.counts["rows_in"]


def test_one_info_summary_per_transform(caplog: pytest.LogCaptureFixture) -> None:
    servers = ("srv-a", "srv-b")
    with caplog.at_level(logging.INFO, logger="capacity_forecaster.etl"):
        transform(raw_frame(servers=servers, n_days=30), inventory(servers), EtlConfig(batch_servers=1))
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "rows in" in infos[0].getMessage()


# --- hypothesis: invariants over random dirty frames -----------------------------------------------------

_SERVERS = st.sampled_from(["srv-a", "srv-b", "srv-x", None, "", 7])
_DATES = st.one_of(
    st.integers(0, 45).map(day), st.just(pd.NaT), st.sampled_from(["2024-01-03", "junk", "1969-12-31"])
)
_METRICS = st.sampled_from([*METRICS, "gpu", None])
_VALUES = st.one_of(
    st.floats(-5, 110), st.sampled_from([np.nan, np.inf, -1.0, 150.0, 100.2, 0.0, 100.0]),
    st.sampled_from(["abc", "", "12.5", "nan"]),
)
_ROWS = st.lists(st.tuples(_SERVERS, _DATES, _METRICS, _VALUES), max_size=80)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(schema.RAW_METRIC_COLUMNS), dtype=object)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ROWS)
def test_nothing_is_lost_in_random_dirty_frames(rows: list[tuple]) -> None:
    raw = _frame(rows).assign(row_id=np.arange(len(rows)))
    inv = inventory(("srv-a", "srv-b", "7"))
    raw_before, inv_before = raw.copy(deep=True), inv.copy(deep=True)
    result = transform(raw, inv, EtlConfig())
    c = result.counts
    assert c["rows_in"] == len(raw) == c["rows_out"] + c["rows_quarantined"] - c["rows_created"]
    assert len(result.metrics) == c["rows_out"] and len(result.quarantine) == c["rows_quarantined"]
    carried = result.metrics["row_id"].dropna()
    assert carried.is_unique and len(carried) + len(result.quarantine) == len(raw), "each row in one place"
    values = result.metrics[schema.VALUE]
    assert (values.isna() | values.between(0.0, 100.0)).all()
    assert not result.metrics.duplicated(KEYS).any()
    assert values[result.metrics["is_imputed"]].notna().all()
    for _, series in result.metrics.groupby([schema.SERVER_ID, schema.METRIC]):
        span = (series[schema.DS].max() - series[schema.DS].min()).days + 1
        assert len(series) == span, "every day of a series' span has exactly one row"
    assert all(re.fullmatch(r"[a-z_]+: .+", r) for r in result.quarantine["reason"])
    pd.testing.assert_frame_equal(raw, raw_before)
    pd.testing.assert_frame_equal(inv, inv_before)


def _dirt(data: st.DataObject, raw: pd.DataFrame) -> pd.DataFrame:
    """Random gaps, duplicates, conflicts, out-of-range values and stuck runs on a clean frame."""
    out = raw.copy()
    n = len(out)
    for _ in range(data.draw(st.integers(0, 3), label="gaps")):
        start, length = data.draw(st.integers(0, n - 1)), data.draw(st.integers(1, 12))
        out = out.drop(index=out.index[(out.index >= start) & (out.index < start + length)])
    picks = data.draw(st.lists(st.sampled_from(list(out.index)), max_size=6), label="dirty rows")
    dupes = out.loc[picks[:3]].copy()
    dupes.loc[dupes.index[1::2], schema.VALUE] += 20.0
    for label in picks[3:4]:
        out.loc[label, schema.VALUE] = 250.0
    for label in picks[4:]:
        base = out.index.get_loc(label)
        run = out.index[base:base + 4]
        out.loc[run, schema.VALUE] = out.loc[label, schema.VALUE]
    return pd.concat([out, dupes], ignore_index=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_transforming_the_clean_output_changes_nothing_material(data: st.DataObject) -> None:
    servers = ("srv-a", "srv-b")
    raw = _dirt(data, raw_frame(servers=servers, metrics=("cpu", "network"), n_days=60))
    inv = inventory(servers)
    first = transform(raw, inv, EtlConfig())
    second = transform(first.metrics, inv, EtlConfig())
    assert second.quarantine.empty and second.counts["rows_created"] == 0
    pd.testing.assert_frame_equal(second.metrics[KEYS], first.metrics[KEYS])
    np.testing.assert_allclose(second.metrics[schema.VALUE], first.metrics[schema.VALUE], rtol=0, atol=1e-9)
    assert second.counts["rows_unfilled"] == first.counts["rows_unfilled"]


@pytest.mark.slow
def test_targets_hold_on_a_synthetic_fleet() -> None:
    from capacity_forecaster.config import GenerateConfig
    from capacity_forecaster.generate import generate_fleet

    fleet = generate_fleet(GenerateConfig(servers=40, seed=7))
    result = transform(fleet.raw_metrics, fleet.inventory, EtlConfig())
    c = result.counts
    assert c["rows_in"] == c["rows_out"] + c["rows_quarantined"] - c["rows_created"]
    merged = result.metrics.merge(fleet.truth_actual.rename(columns={"value": "truth"}), on=KEYS)
    filled = merged[merged["is_imputed"]]
    assert np.mean(np.abs(filled[schema.VALUE] - filled["truth"])) < 3.0
    truth = fleet.truth_anomalies[fleet.truth_anomalies["kind"].isin(["outage", "spike"])][KEYS]
    flags = result.metrics.loc[result.metrics["is_anomaly"], KEYS]

    def near(points: pd.DataFrame, targets: pd.DataFrame) -> float:
        shifts = [targets.assign(ds=targets[schema.DS] + pd.Timedelta(days=d)) for d in (-1, 0, 1)]
        shifted = pd.concat(shifts)
        hit = points.merge(shifted.drop_duplicates(), on=KEYS, how="left", indicator=True)
        return float((hit["_merge"] == "both").mean())

    assert near(flags, truth) >= 0.8 and near(truth, flags) >= 0.8
