"""Growth uplift and scenario files (add, remove, move, move onto) applied to the risk inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from risk_frames import make_forecast, make_history, make_inventory

from capacity_forecaster.errors import ConfigError
from capacity_forecaster.risk.whatif import apply_growth, apply_scenario, load_scenario, parse_scenario


def test_growth_scales_all_quantiles_and_clips() -> None:
    fc = make_forecast("a", "cpu", [50.0, 90.0], spread=5.0)
    out = apply_growth(fc, 20.0, ramp=False)
    assert out["yhat"].tolist() == [60.0, 100.0]
    assert out["yhat_lower"].tolist() == [54.0, 100.0] and out["yhat_upper"].tolist() == [66.0, 100.0]
    assert fc["yhat"].tolist() == [50.0, 90.0]  # input untouched


def test_growth_ramp_compounds_an_annual_rate_per_day() -> None:
    out = apply_growth(make_forecast("a", "cpu", np.full(366, 50.0)), 20.0, ramp=True)
    days = np.arange(1, 367)
    assert out["yhat"].to_numpy() == pytest.approx(50.0 * 1.2 ** (days / 365.25))
    assert out["yhat"].iloc[-1] == pytest.approx(60.0, abs=0.05)  # a year out: the full annual rate
    step = apply_growth(make_forecast("a", "cpu", np.full(5, 50.0)), 20.0, ramp=False)
    assert step["yhat"].tolist() == pytest.approx([60.0] * 5)  # a step change applies at once


def test_scenario_file_is_read_safely_and_unknown_keys_are_named(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: q4\ngrowth: 10\nadd:\n  - like: a\n    count: 2\nremove: [b]\n"
                    "move:\n  - server_id: c\n    datacenter: LON1\n", encoding="utf-8")
    scenario = load_scenario(good)
    assert scenario.name == "q4" and scenario.add[0].count == 2 and scenario.remove == ("b",)
    bad = tmp_path / "bad.yaml"
    bad.write_text("add:\n  - like: a\n    cuont: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml: key 'add.0.cuont'.*allowed keys"):
        load_scenario(bad)
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scenario(evil)
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenario(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="exactly one of 'like'"):
        parse_scenario({"add": [{"count": 1}]})


def _inputs() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    metrics = make_history(["a", "b", "c"], days=90, level=30.0)
    forecasts = pd.concat([make_forecast(s, m, np.full(10, 30.0)) for s in ("a", "b", "c") for m in ("cpu", "memory")])
    inv = make_inventory([{"server_id": "a", "cpu_cores": 8, "memory_gb": 32},
                          {"server_id": "b", "cpu_cores": 4, "memory_gb": 16},
                          {"server_id": "c", "cpu_cores": 16, "memory_gb": 64}])
    return metrics, forecasts, inv


def test_add_remove_and_relocate() -> None:
    metrics, forecasts, inv = _inputs()
    scenario = parse_scenario({"add": [{"like": "a", "count": 2, "scale": 1.5, "datacenter": "SGP1"}],
                               "remove": ["b"], "move": [{"server_id": "c", "environment": "uat"}]})
    out = apply_scenario(metrics, forecasts, inv, scenario)
    assert sorted(out.inventory["server_id"]) == ["a", "c", "new-001", "new-002"]
    new = out.inventory.set_index("server_id").loc["new-001"]
    assert new["datacenter"] == "SGP1" and new["cpu_cores"] == 8
    assert out.templates == {"new-001": "a", "new-002": "a"}
    assert out.forecasts.loc[out.forecasts["server_id"] == "new-002", "yhat"].eq(45.0).all()
    assert out.metrics.loc[out.metrics["server_id"] == "new-001", "value"].eq(45.0).all()
    assert "b" not in set(out.forecasts["server_id"]) | set(out.metrics["server_id"])
    assert out.inventory.set_index("server_id").loc["c", "environment"] == "uat"


def test_moving_a_workload_onto_a_host_adds_it_in_absolute_units() -> None:
    metrics, forecasts, inv = _inputs()
    out = apply_scenario(metrics, forecasts, inv, parse_scenario({"move": [{"server_id": "b", "onto": "c"}]}))
    host = out.forecasts[(out.forecasts["server_id"] == "c") & (out.forecasts["metric"] == "cpu")]
    # b: 30 % of 4 cores = 1.2 cores = 7.5 % of c's 16 cores
    assert host["yhat"].tolist() == pytest.approx([37.5] * 10)
    assert "b" not in set(out.inventory["server_id"])


@pytest.mark.parametrize(("moves", "remove", "said"), [
    ([{"server_id": "a", "onto": "a"}], [], "server a is moved onto itself"),
    ([{"server_id": "a", "onto": "b"}, {"server_id": "b", "onto": "a"}], [],
     "server a is moved onto b, which this scenario moves"),
    ([{"server_id": "a", "onto": "b"}], ["b"], "server a is moved onto b, which this scenario moves away or removes"),
    ([{"server_id": "a", "datacenter": "x"}], ["a"], "server a is both moved and removed"),
    ([{"server_id": "a", "onto": "b"}, {"server_id": "a", "onto": "c"}], [], "server a is moved more than once")])
def test_moves_that_cannot_all_happen_are_refused(moves: list[dict[str, str]], remove: list[str], said: str) -> None:
    """helper-51: 'a onto a' deleted a from the what-if; a cycle or a move of a removed server was taken."""
    with pytest.raises(ConfigError, match=f"s.yaml: key '\\(top level\\)': {said}"):
        parse_scenario({"move": moves, "remove": remove}, "s.yaml")


def test_a_move_onto_a_host_of_unknown_size_names_what_is_missing() -> None:
    """helper-51: on a metrics-only inventory (sizes unknown) the move ended in a KeyError."""
    metrics, forecasts, inv = _inputs()
    with pytest.raises(ConfigError, match="s.yaml: move b onto c converts its load through both servers' cpu_cores"):
        apply_scenario(metrics, forecasts, inv.assign(cpu_cores=float("nan")),
                       parse_scenario({"move": [{"server_id": "b", "onto": "c"}]}), source="s.yaml")


def test_unknown_servers_and_colliding_ids_are_config_errors() -> None:
    metrics, forecasts, inv = _inputs()
    with pytest.raises(ConfigError, match="unknown server"):
        apply_scenario(metrics, forecasts, inv, parse_scenario({"remove": ["zzz"]}), source="s.yaml")
    with pytest.raises(ConfigError, match="already in use"):
        apply_scenario(metrics, forecasts, inv, parse_scenario({"add": [{"like": "a", "id_prefix": "x"}]}).model_copy(
            update={"add": (parse_scenario({"add": [{"like": "a", "id_prefix": "x"}]}).add[0],) * 2}))
    with pytest.raises(ConfigError, match="not a cluster label"):
        clusters = pd.DataFrame({"server_id": ["a"], "cluster_id": [0], "cluster_label": ["steady"]})
        apply_scenario(metrics, forecasts, inv, parse_scenario({"add": [{"cluster": "idle"}]}), clusters)
