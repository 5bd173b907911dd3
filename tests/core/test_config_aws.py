"""The ``aws`` config section: AWS naming rules checked at load time, with the key and the rule in the message."""

from __future__ import annotations

import pytest

from capacity_forecaster.config import load_settings
from capacity_forecaster.errors import ConfigError


def test_defaults_hold_no_credentials_and_valid_names() -> None:
    aws = load_settings(environ={}).aws
    assert aws.glue_database == "capacity_forecaster" and aws.scheduled_stages == ("run", "verify")
    assert not any("key" in name or "secret" in name or "token" in name for name in type(aws).model_fields)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("aws.glue_database", "Capfc-DB", "lowercase letters, digits and underscores"),
        ("aws.role_arn", "my-role", "arn:aws:iam::<12-digit account>:role/<name>"),
        ("aws.schedule_expression", "every day", "cron\\(<min>"),
        ("aws.scheduled_stages", ("risk", "etl"), "must be in pipeline order"),
        ("aws.scheduled_stages", ("train",), "Input should be 'generate', 'etl'"),
        ("aws.tags", {"aws:team": "x"}, "not starting with 'aws:'"),
        ("aws.instance_count", 2, "less than or equal to 1"),
        ("aws.endpoint_url", "localhost:5000", "http\\(s\\)://host"),
    ],
)
def test_bad_aws_values_name_key_and_rule(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=rf"key '{key}(\.\d+)?'.*{expected}"):
        load_settings(None, {key: value}, environ={})


def test_aws_values_from_the_environment() -> None:
    env = {"CAPFC_AWS__SCHEDULED_STAGES": "[etl, forecast, risk, report]", "CAPFC_AWS__REGION": "eu-west-1"}
    aws = load_settings(environ=env).aws
    assert aws.scheduled_stages == ("etl", "forecast", "risk", "report") and aws.region == "eu-west-1"
