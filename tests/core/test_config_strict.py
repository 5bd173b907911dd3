"""Strict config values (issue 15, D15): no bool as a count, and errors name the real variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from capacity_forecaster.config import GenerateConfig, Settings, load_settings
from capacity_forecaster.errors import ConfigError


@pytest.mark.parametrize("text", ["generate: {servers: true}", "etl: {max_gap_days: false}",
                                  "ingest: {percentile: true}", "etl: {lags: [1, true]}",
                                  "risk: {metric_thresholds: {cpu: true}}"])
def test_bools_are_not_numbers_in_the_config_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config file .*c\.yaml: key '.*' = .*expected a number, not true/false"):
        load_settings(path, environ={})


def test_bools_are_not_numbers_in_python_either() -> None:
    with pytest.raises(ValueError, match="not true/false"):
        GenerateConfig(servers=True)
    assert Settings().etl.max_quarantine_share == 0.5


def test_env_values_parse_by_the_field_type() -> None:
    settings = load_settings(None, environ={"CAPFC_GENERATE__SERVERS": "7", "CAPFC_ETL__LAGS": "[1, 2]",
                                            "CAPFC_LAKE__SSE": "none", "CAPFC_ETL__MAX_QUARANTINE_SHARE": "1",
                                            "CAPFC_LAKE__URI": "123"})
    assert settings.generate.servers == 7 and settings.etl.lags == (1, 2)
    assert settings.lake.sse == "none" and settings.lake.uri == "123"
    assert settings.etl.max_quarantine_share == 1.0


@pytest.mark.parametrize(("env", "expected"), [
    ({"CAPFC_GENERATE__SERVERS": "true"},
     "environment variable CAPFC_GENERATE__SERVERS: key 'generate.servers' = True: expected a number"),
    ({"CAPFC_GENRATE__SERVERS": "3"}, "environment variable CAPFC_GENRATE__SERVERS: key 'genrate': unknown key"),
    ({"CAPFC_GENERATE__SERVERS__X": "1"},
     "environment variable CAPFC_GENERATE__SERVERS__X: key 'generate.servers' = {'x': 1}"),
    ({"CAPFC_ETL__MAX_GAP_DAYZ": "3"}, "environment variable CAPFC_ETL__MAX_GAP_DAYZ: key 'etl.max_gap_dayz'"),
])
def test_env_errors_name_the_variable_that_was_set(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, environ=env)
    assert str(err.value).startswith(expected), str(err.value)


def test_file_key_overridden_by_env_is_reported_as_the_env_variable(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("generate: {servers: 5}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="^environment variable CAPFC_GENERATE__SERVERS: "):
        load_settings(path, environ={"CAPFC_GENERATE__SERVERS": "0"})
