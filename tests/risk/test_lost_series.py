"""Series the ETL quarantined whole: the risk stage lists them as no_data, in the base and in what-ifs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from risk_frames import make_forecast, make_history, make_inventory

from capacity_forecaster.config import RiskConfig, load_settings
from capacity_forecaster.risk.streaming import FrameSource, stream_risk
from capacity_forecaster.risk.whatif import parse_scenario
from capacity_forecaster.stages.etl import etl_stage
from capacity_forecaster.stages.forecast import forecast_stage
from capacity_forecaster.stages.raw import ingest_stage
from capacity_forecaster.stages.risk import risk_stage
from capacity_forecaster.storage import Lake

SERVERS = [f"s{i}" for i in range(6)]


class LostSource(FrameSource):
    """Frames, plus s5's memory quarantined whole by the ETL (no processed row, no forecast)."""

    def lost_series(self) -> pd.DataFrame:
        return pd.DataFrame({"server_id": ["s5"], "metric": ["memory"], "n_quarantined": [70],
                             "quarantine_reason": ["out_of_range"]})


def _fleet() -> tuple[LostSource, pd.DataFrame]:
    history = make_history(SERVERS, days=120, level=30.0)
    history = history[~((history["server_id"] == "s5") & (history["metric"] == "memory"))]
    forecasts = pd.concat([make_forecast(s, m, np.full(30, 30.0)) for s in SERVERS for m in ("cpu", "memory")
                           if (s, m) != ("s5", "memory")])
    return LostSource(history, forecasts, None), make_inventory([{"server_id": s} for s in SERVERS])


def test_a_lost_series_is_no_data_with_its_reason_whatever_the_chunks() -> None:
    source, inventory = _fleet()
    for chunk in (None, 2):
        risk = stream_risk(source, inventory, RiskConfig(), chunk_servers=chunk).server_risk
        row = risk.set_index(["server_id", "metric"]).loc[("s5", "memory")]
        assert row["status"] == "no_data" and pd.isna(row["risk_level"])
        assert row["reason"].startswith("memory: all 70 of its days were quarantined by the ETL (mostly out_of_range)")
        assert len(risk) == 12


def test_a_removed_server_leaves_the_what_if_with_its_lost_series_and_a_growth_keeps_it() -> None:
    """helper-39: 'remove: [s5]' left s5's lost memory (and a keep) in the scenario's tables."""
    source, inventory = _fleet()
    for chunk in (None, 2):
        removed = stream_risk(source, inventory, RiskConfig(), chunk_servers=chunk,
                              scenario=parse_scenario({"name": "rm", "remove": ["s5"]})).scenario
        assert "s5" not in set(removed.server_risk["server_id"]) and "s5" not in set(removed.recommendations[
            "server_id"])
        grown = stream_risk(source, inventory, RiskConfig(), chunk_servers=chunk, growth=20.0).scenario
        assert ("s5", "memory") in set(zip(grown.server_risk["server_id"], grown.server_risk["metric"], strict=True))


def test_a_series_with_only_empty_days_says_so_not_quarantined() -> None:
    """helper-56: a series whose raw days are all empty read "all 0 of its days were quarantined (mostly )"."""
    from capacity_forecaster.risk.breach import with_lost_series

    source, _ = _fleet()
    empty = pd.DataFrame({"server_id": ["s5"], "metric": ["memory"], "n_quarantined": [0], "quarantine_reason": [""]})
    risk = stream_risk(source, make_inventory([{"server_id": s} for s in SERVERS]), RiskConfig()).server_risk
    risk = risk[~((risk["server_id"] == "s5") & (risk["metric"] == "memory"))]
    row = with_lost_series(risk, empty, RiskConfig()).set_index(["server_id", "metric"]).loc[("s5", "memory")]
    assert row["status"] == "no_data"
    assert row["reason"] == "memory: no observed value (every raw day is empty): nothing to assess"


class CutSource(FrameSource):
    """Frames, plus s4's cpu whose last 20 raw days the ETL quarantined (its processed days end 20 days early)."""

    def __init__(self, metrics: pd.DataFrame, forecasts: pd.DataFrame, raw_last: pd.Timestamp) -> None:
        super().__init__(metrics, forecasts, None)
        self.raw_last = raw_last

    def lost_series(self) -> pd.DataFrame:
        return pd.DataFrame({"server_id": ["s4", "s5"], "metric": ["cpu", "cpu"], "n_quarantined": [20, 1],
                             "quarantine_reason": ["out_of_range", "out_of_range"], "n_obs": [100, 120],
                             "raw_last_ds": [self.raw_last, self.raw_last]})


def test_a_series_whose_last_days_were_quarantined_says_so_not_check_its_monitoring() -> None:
    """helper-64: a VM at 210-260 % (above etl.saturation_max) for its last days read "no data since ..., check its
    monitoring" although its monitoring went on; the reason and the short words now say the ETL quarantined them."""
    from capacity_forecaster.report.risks import breach_phrase
    from capacity_forecaster.risk.levels import stale_words

    history = make_history(SERVERS, days=120, level=30.0)
    end = history["ds"].max()
    stop = end - pd.Timedelta(days=20)
    history = history[~((history["server_id"] == "s4") & (history["metric"] == "cpu") & (history["ds"] > stop))]
    forecasts = pd.concat([make_forecast(s, m, np.full(30, 30.0)) for s in SERVERS for m in ("cpu", "memory")])
    inventory = make_inventory([{"server_id": s} for s in SERVERS])
    for chunk in (None, 2):
        result = stream_risk(CutSource(history, forecasts, end), inventory, RiskConfig(), chunk_servers=chunk,
                             growth=20.0)
        for risk in (result.server_risk, result.scenario.server_risk):
            rows = risk.set_index(["server_id", "metric"])
            row = rows.loc[("s4", "cpu")]
            assert row["status"] == "stale" and row["raw_last_observed"] == end
            assert row["reason"].startswith(
                f"cpu: no usable data since {stop:%Y-%m-%d}, 20 days before the fleet's latest day ({end:%Y-%m-%d}): "
                f"its raw data go on to {end:%Y-%m-%d} but the ETL quarantined those days: see the quarantine table")
            assert "check its monitoring" not in row["reason"]
            assert stale_words(row.to_dict()) == f"stale: no usable data since {stop:%Y-%m-%d}" == breach_phrase(
                row.to_dict())
            # s5's cpu ends with its raw data (one day quarantined in between): nothing is said of it.
            s5 = rows.loc[("s5", "cpu")]
            assert pd.isna(s5["raw_last_observed"]) and s5["status"] != "stale"
            assert rows["raw_last_observed"].notna().sum() == 1
    # Raw data that stop soon after the last observed day too: a feed that stopped (helper-70).
    early = stream_risk(CutSource(history, forecasts, stop + pd.Timedelta(days=1)), inventory, RiskConfig())
    row = early.server_risk.set_index(["server_id", "metric"]).loc[("s4", "cpu")]
    assert row["status"] == "stale" and "check its monitoring" in row["reason"] and "usable" not in row["reason"]


def test_a_series_the_ingest_quarantined_whole_is_no_data_with_its_reason(tmp_path: Path) -> None:
    """helper-66: a server's network without a capacity in the inventory had every sample quarantined at ingest, so
    it never reached raw/ and left every risk table with nothing said but the ingest's warning. The ETL reads the
    ingest's quarantine for such series (beside its kept cpu) and the risk stage lists them as no_data, counting
    samples, not days; a series quarantined at ingest and kept later is not lost."""
    days = pd.date_range("2024-01-01", periods=40, freq="D")
    lines = [f"{host},{day:%Y-%m-%dT12:00:00Z},{30 + i % 7 if host != 'c' else ''},{5 + i % 3}"
             for host in ("a", "b", "c") for i, day in enumerate(days)]
    # A header line repeated inside (two exports concatenated) and a footer row: no samples, no servers (helper-74).
    lines.insert(40, "host,ts,cpu,net")
    (tmp_path / "m.csv").write_text("host,ts,cpu,net\n" + "\n".join(lines) + "\nTotal,,,\n")
    (tmp_path / "inv.csv").write_text("host,nic\nb,100\n")
    (tmp_path / "map.yaml").write_text(
        "layout: wide\nserver_id: {column: host}\ntimestamp: {column: ts}\n"
        "metrics: {cpu: {percent: cpu}, network: {usage: net, inventory_capacity: nic}}\n"
        f"inventory: {{source: '{tmp_path / 'inv.csv'}', columns: {{server_id: host}}}}\n")
    settings = load_settings(None, {"lake.uri": str(tmp_path / "lake"), "forecast.horizon": 14}, environ={})
    lake = Lake.open(str(tmp_path / "lake"), settings.lake, for_writing=True)
    ingest_stage(lake, settings, [str(tmp_path / "m.csv")], str(tmp_path / "map.yaml"))
    # c sent only its network (its cpu cells are empty: not collected there) and has no inventory row (helper-72:
    # fastStorage VMs without their meta row vanished from every table): it was quarantined whole, and keeps its place.
    assert sorted(lake.read_table("inventory")["server_id"]) == ["a", "b", "c"]
    run = etl_stage(lake, settings)
    assert run.counts["series_lost_at_ingest"] == 2
    from capacity_forecaster.cli.summaries import etl_line

    assert "2 series quarantined whole at ingest (listed as no_data in risk)" in etl_line(run)
    forecast_stage(lake, settings)
    risk_stage(lake, settings)
    risk = lake.read_table("server_risk").set_index(["server_id", "metric"])
    assert sorted(risk.index) == [("a", "cpu"), ("a", "network"), ("b", "cpu"), ("b", "network"), ("c", "network")]
    assert risk.loc[("c", "network"), "status"] == "no_data"
    assert "c" in set(lake.read_table("recommendations")["server_id"])
    from capacity_forecaster.report.data import load_report_data
    from capacity_forecaster.report.risks import ranked_risks
    from capacity_forecaster.report.summary import headlines

    data = load_report_data(lake, settings)
    said = [line for line in headlines(data, ranked_risks(data)) if "no usable data" in line]
    assert said and said[0].startswith("2 series have no usable data") and "a network, c network;" in said[0]
    row = risk.loc[("a", "network")]
    assert row["status"] == "no_data" and pd.isna(row["risk_level"])
    assert row["reason"] == ("network: all 40 of its samples were quarantined at ingest (mostly missing_capacity): "
                             "nothing to assess; its rows are in the quarantine table")
    assert risk.loc[("b", "network"), "status"] != "no_data"
    # The same export again with the capacities: the networks are kept (the quarantine of the first ingest remains,
    # and they are in raw/ now).
    (tmp_path / "inv.csv").write_text("host,nic\na,100\nb,100\nc,100\n")
    ingest_stage(lake, settings, [str(tmp_path / "m.csv")], str(tmp_path / "map.yaml"))
    assert etl_stage(lake, settings).counts["series_lost_at_ingest"] == 0
