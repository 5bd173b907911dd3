"""Series whose data end long before the fleet's: stale, levels as of then, nothing recommended."""

from __future__ import annotations

import numpy as np
import pandas as pd
from risk_frames import LAST_DAY, make_forecast, make_history, make_inventory

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.levels import rank_risks
from capacity_forecaster.risk.stage import render_summary, run_risk

CFG = RiskConfig(cpu_sizes=(2, 4, 8, 16, 32), memory_sizes=(8, 16, 32, 64, 128))


def _fleet(gap_days: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """'live' idles at 5 % up to the fleet's last day; 'gone' ran at 95 % and stopped ``gap_days`` earlier."""
    gone_end = LAST_DAY - pd.Timedelta(days=gap_days)
    metrics = pd.concat([make_history(["live"], days=120, level=5.0),
                         make_history(["gone"], days=120, level=95.0, end=gone_end)], ignore_index=True)
    forecasts = pd.concat([
        *(make_forecast("live", m, np.full(30, 5.0)) for m in ("cpu", "memory")),
        *(make_forecast("gone", m, np.full(30, 95.0), start=gone_end + pd.Timedelta(days=1))
          for m in ("cpu", "memory"))], ignore_index=True)
    inventory = make_inventory([{"server_id": "live"}, {"server_id": "gone"}])
    return metrics, forecasts, inventory


def test_a_server_whose_data_ended_long_ago_is_stale_not_breaching_and_gets_no_upsize() -> None:
    result = run_risk(*_fleet(gap_days=60), CFG)
    gone = result.server_risk[result.server_risk["server_id"] == "gone"]
    assert set(gone["status"]) == {"stale"}
    assert set(gone["risk_level"]) <= {"high", "critical"}  # what its last data say is kept
    assert gone["reason"].str.contains("no data since").all()
    assert gone["reason"].str.contains("60 days before the fleet's latest day").all()
    rec = result.recommendations.set_index("server_id").loc["gone"]
    assert rec["action"] == "keep" and rec["finding"] == "insufficient_data"
    assert "no data since" in rec["rationale"]
    assert result.summary["servers_already_breaching"] == 0 and result.summary["servers_stale"] == 1
    assert result.summary["servers_at_risk"] == 0 and result.summary["earliest_breach"] is None
    assert "Stale: 1 servers" in render_summary(result)
    # Nor among the levels: the CLI's "critical 700" beside the packs' 600 critical servers (helper-45).
    assert result.summary["series_stale"] == 2 and sum(result.summary["series_by_level"].values()) == 2
    assert "stale ones aside, critical 0, high 0, medium 0, low 2" in render_summary(result)
    # Ranked after every live series, whatever its level.
    assert rank_risks(result.server_risk)["server_id"].iloc[-1] == "gone"


def test_a_server_a_few_days_behind_is_not_stale_and_a_zero_setting_turns_it_off() -> None:
    result = run_risk(*_fleet(gap_days=5), CFG)
    gone = result.server_risk[result.server_risk["server_id"] == "gone"]
    assert set(gone["status"]) == {"already_breaching"}
    assert result.recommendations.set_index("server_id").loc["gone", "action"] == "upsize"
    off = run_risk(*_fleet(gap_days=60), CFG.model_copy(update={"stale_after_days": 0}))
    assert "stale" not in set(off.server_risk["status"])


def test_a_server_dated_years_ahead_does_not_make_the_fleet_stale() -> None:
    """A clock 2 years ahead: the rest of the fleet (data to yesterday) stays live, breaching stays breaching."""
    yesterday = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() - pd.Timedelta(days=1)
    ahead = yesterday + pd.DateOffset(years=2)
    metrics = pd.concat([make_history(["hot"], days=120, level=95.0, end=yesterday),
                         make_history(["skewed"], days=120, level=30.0, end=ahead)], ignore_index=True)
    day = pd.Timedelta(days=1)
    forecasts = pd.concat([
        *(make_forecast("hot", m, np.full(30, 95.0), start=yesterday + day) for m in ("cpu", "memory")),
        *(make_forecast("skewed", m, np.full(30, 30.0), start=ahead + day) for m in ("cpu", "memory"))],
        ignore_index=True)
    result = run_risk(metrics, forecasts, make_inventory([{"server_id": "hot"}, {"server_id": "skewed"}]), CFG)
    assert "stale" not in set(result.server_risk["status"])
    assert result.summary["servers_already_breaching"] == 1


def test_data_that_came_back_for_one_day_read_the_same_in_every_output_and_size_nothing() -> None:
    """fastStorage VMs 626 / 636: saturated, silent for two weeks, then one sample on the trace's last day. The
    CLI said "no data since 2013-08-27" (there was a day after), the rationale "any new size is a minimum"."""
    from capacity_forecaster.report.risks import breach_phrase
    from capacity_forecaster.risk.levels import stale_words

    stop = LAST_DAY - pd.Timedelta(days=20)
    back = make_history(["gone"], days=1, level=0.5)
    metrics = pd.concat([make_history(["live"], days=120, level=5.0),
                         make_history(["gone"], days=100, level=100.0, end=stop), back], ignore_index=True)
    forecasts = pd.concat([make_forecast(s, m, np.full(30, v)) for s, v in (("live", 5.0), ("gone", 95.0))
                           for m in ("cpu", "memory")], ignore_index=True)
    result = run_risk(metrics, forecasts, make_inventory([{"server_id": "live"}, {"server_id": "gone"}]), CFG)
    gone = result.server_risk[result.server_risk["server_id"] == "gone"]
    assert set(gone["status"]) == {"stale"}
    words = f"stale: data stopped after {stop:%Y-%m-%d} (last seen {LAST_DAY:%Y-%m-%d})"
    row = gone.iloc[0].to_dict()
    assert stale_words(row) == words == breach_phrase(row)
    assert words in render_summary(result)
    rec = result.recommendations.set_index("server_id").loc["gone"]
    assert rec["action"] == "keep" and rec["finding"] == "insufficient_data"
    assert "then only 1 day: check its monitoring" in rec["rationale"]
    assert "its level as of that data: critical, nothing resized on it" in rec["rationale"]
    assert "minimum" not in rec["rationale"] and "already breaching" not in rec["rationale"]
    assert (stale_words({"stale_since": stop, "last_observed": stop}) == f"stale: no data since {stop:%Y-%m-%d}"
            == stale_words({"last_observed": stop}))
    assert stale_words({}) == "stale"


def test_exports_of_other_periods_are_not_stale_but_a_feed_that_stopped_among_them_is() -> None:
    """helper-64: NAB files cover different months; one file of a later period made every other series stale, those
    pinned at 100 % included (not already breaching, no upsize). A series is judged against the series observed on
    its last day: exports of other periods are no peers, a feed that stopped while its peers went on is stale."""
    march_end = LAST_DAY - pd.Timedelta(days=200)
    stopped_end = march_end - pd.Timedelta(days=30)
    metrics = pd.concat([make_history(["hot"], days=60, level=95.0, end=march_end),
                         make_history(["calm"], days=60, level=20.0, end=march_end),
                         make_history(["stopped"], days=40, level=20.0, end=stopped_end),
                         make_history(["later"], days=60, level=30.0)], ignore_index=True)
    day = pd.Timedelta(days=1)
    forecasts = pd.concat([
        *(make_forecast(s, m, np.full(30, level), start=end + day) for s, level, end in (
            ("hot", 95.0, march_end), ("calm", 20.0, march_end), ("stopped", 20.0, stopped_end),
            ("later", 30.0, LAST_DAY)) for m in ("cpu", "memory"))], ignore_index=True)
    inventory = make_inventory([{"server_id": s} for s in ("hot", "calm", "stopped", "later")])
    result = run_risk(metrics, forecasts, inventory, CFG)
    status = result.server_risk.groupby("server_id")["status"].agg(set)
    assert status["hot"] == {"already_breaching"} and status["calm"] == {"assessed"}
    assert status["later"] == {"assessed"} and status["stopped"] == {"stale"}
    stopped = result.server_risk[result.server_risk["server_id"] == "stopped"]
    assert stopped["reason"].str.contains(
        f"30 days before the day the servers monitored with it reached \\({march_end:%Y-%m-%d}\\)").all()
    assert result.recommendations.set_index("server_id").loc["hot", "action"] == "upsize"


def test_one_server_whose_export_runs_on_alone_does_not_make_the_fleet_stale() -> None:
    """helper-72: fourteen Rnd VMs and one whose export ran 20 days past theirs: all fourteen read stale, the
    breaching ones included ("Already breaching 0"). A series is behind only where a quarter of its peers went on."""
    ahead = LAST_DAY + pd.Timedelta(days=20)
    fleet = [f"vm{i:02d}" for i in range(14)]
    metrics = pd.concat([make_history(fleet, days=90, level=30.0), make_history(["hot"], days=90, level=95.0),
                         make_history(["alone"], days=90, level=20.0, end=ahead)], ignore_index=True)
    day = pd.Timedelta(days=1)
    forecasts = pd.concat([make_forecast(s, m, np.full(30, v), start=end + day)
                           for s, v, end in [*((f, 30.0, LAST_DAY) for f in fleet), ("hot", 95.0, LAST_DAY),
                                             ("alone", 20.0, ahead)] for m in ("cpu", "memory")], ignore_index=True)
    inventory = make_inventory([{"server_id": s} for s in [*fleet, "hot", "alone"]])
    result = run_risk(metrics, forecasts, inventory, CFG)
    assert "stale" not in set(result.server_risk["status"])
    assert result.summary["servers_already_breaching"] == 1
    # ... while a quarter of the fleet going on still leaves the rest behind.
    late = [*fleet[:4], "alone"]
    metrics = pd.concat([make_history(fleet[4:], days=90, level=30.0), make_history(["hot"], days=90, level=95.0),
                         make_history(late, days=90, level=20.0, end=ahead)], ignore_index=True)
    result = run_risk(metrics, forecasts[forecasts["server_id"].isin([*fleet[4:], "hot"])], inventory, CFG)
    assert set(result.server_risk.loc[result.server_risk["server_id"] == "hot", "status"]) == {"stale"}
