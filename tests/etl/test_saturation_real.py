"""Saturated Bitbrains Rnd VMs at default settings: days above 100 % are kept, clipped and flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_ingest_real import MONTHS, REPO, RND, local

from capacity_forecaster.config import EtlConfig, IngestConfig
from capacity_forecaster.etl.ingest import ingest
from capacity_forecaster.etl.mapping import load_mapping
from capacity_forecaster.etl.transform import EtlResult, transform

# 407 is pinned at ~100 % CPU for weeks; 206, 270 and 333 grow towards or into saturation.
VMS = (206, 270, 333, 407)

pytestmark = pytest.mark.skipif(not RND.is_dir(), reason=f"shared Bitbrains data not found at {RND}")


@pytest.fixture(scope="module")
def processed() -> tuple[pd.DataFrame, EtlResult]:
    sources = [str(RND / month / f"{vm}.csv") for vm in VMS for month in MONTHS]
    raw = ingest(sources, load_mapping(REPO / "mappings" / "bitbrains.yaml"), IngestConfig(), local)
    return raw.raw_metrics, transform(raw.raw_metrics, raw.inventory, EtlConfig())


def test_saturated_days_are_kept_not_quarantined_or_imputed(processed: tuple[pd.DataFrame, EtlResult]) -> None:
    raw, result = processed
    counts = result.counts
    assert counts["rows_in"] == counts["rows_out"] + counts["rows_quarantined"] - counts["rows_created"]
    assert result.quarantine.empty  # before issue 10: 16 VM-days out_of_range (12 of VM 407)
    merged = raw.merge(result.metrics, on=["server_id", "ds", "metric"], suffixes=("_in", ""))
    assert len(merged) == len(raw)
    over = merged[merged["value_in"] >= 100.0]
    assert len(over) == counts["rows_saturated"] == result.metrics["is_saturated"].sum() == 46
    assert (over["value"] == 100.0).all() and over["is_saturated"].all() and not over["is_imputed"].any()
    np.testing.assert_array_equal(over["value_raw"], over["value_in"])
    assert set(over["server_id"]) == {"bitbrains-206", "bitbrains-407"}
    assert not merged.loc[merged["value_in"] < 100.0, "is_saturated"].any()
    diag = result.diagnostics.set_index(["server_id", "metric"])["n_saturated"]
    assert diag[("bitbrains-407", "cpu")] == 42 and diag[("bitbrains-206", "cpu")] == 4


def test_a_saturated_plateau_survives_glitch_outlier_and_anomaly_checks(
        processed: tuple[pd.DataFrame, EtlResult]) -> None:
    _, result = processed
    m = result.metrics
    vm = m[(m["server_id"] == "bitbrains-407") & (m["metric"] == "cpu")].set_index("ds")
    plateau = vm.loc["2013-08-14":"2013-08-23"]  # ten saturated days in a row, flat at 100 once clipped
    assert len(plateau) == 10 and plateau["is_saturated"].all() and (plateau["value"] == 100.0).all()
    assert not (plateau["is_outlier"] | plateau["is_anomaly"] | plateau["is_imputed"]).any()
    assert (plateau["value_raw"] > 100.0).all()
    assert vm["value"].notna().all() and len(vm) == 92
