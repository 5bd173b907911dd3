"""Configuration: defaults file, precedence, and errors that name the key, value and what is allowed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from capacity_forecaster.config import Settings, load_settings
from capacity_forecaster.errors import ConfigError

DEFAULT_YAML = Path(__file__).resolve().parents[2] / "config" / "default.yaml"


def test_default_yaml_documents_exactly_the_built_in_defaults() -> None:
    from_file = load_settings(DEFAULT_YAML, environ={})
    assert from_file == Settings()
    text = DEFAULT_YAML.read_text()
    documented = yaml.safe_load(text)
    for section, fields in Settings.model_fields.items():
        annotation = fields.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            assert set(documented[section]) == set(annotation.model_fields), section
            for key in annotation.model_fields:
                line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{key}:"))
                assert "#" in line, f"{section}.{key} has no comment in default.yaml"
        else:
            assert section in documented


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("generate:\n  servers: 10\n  seed: 1\n  years: 2\n")
    env = {"CAPFC_GENERATE__SERVERS": "20", "CAPFC_GENERATE__SEED": "2"}
    settings = load_settings(cfg, {"generate.servers": 30}, environ=env)
    assert settings.generate.servers == 30  # command line wins
    assert settings.generate.seed == 2  # environment beats the file
    assert settings.generate.years == 2.0  # file beats the default
    assert settings.generate.holdout_days == 180  # default


def test_lake_env_short_form() -> None:
    assert load_settings(environ={"CAPFC_LAKE": "s3://bucket/x"}).lake.uri == "s3://bucket/x"


def test_the_config_file_variable_is_not_a_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("generate:\n  servers: 12\n")
    # CAPFC_CONFIG names the file (``--config``'s variable); it is not read as a setting called "config".
    settings = load_settings(cfg, environ={"CAPFC_CONFIG": str(cfg), "CAPFC_GENERATE__SEED": "3"})
    assert (settings.generate.servers, settings.generate.seed) == (12, 3)


def test_dates_parse_from_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("generate:\n  end_date: 2025-12-31\n")
    assert load_settings(cfg, environ={}).generate.end_date == dt.date(2025, 12, 31)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("generate:\n  servres: 5\n", r"key 'generate.servres'.*unknown key; allowed keys in section 'generate'"),
        ("generate:\n  servers: 0\n", r"key 'generate.servers' = 0: Input should be greater than or equal to 1"),
        # helper-51: 9999-12-31 wrapped into 1816 with exit 0.
        ("generate:\n  end_date: 9999-12-31\n", r"key 'generate.end_date'.*less than or equal to 2250-12-31"),
        ("generate:\n  end_date: 1600-01-01\n", r"key 'generate.end_date'.*greater than or equal to 1700-01-01"),
        ("generate:\n  servers: 5\n  servers: 6\n", r"not valid YAML at line 3, column 3: key 'servers' is given"),
        ("colour: blue\n", r"key 'colour'.*allowed keys in the top level"),
        ("forecast:\n  engine: spark\n", r"key 'forecast.engine' = 'spark'.*'local' or 'dask'"),
        ("- a\n- b\n", r"must hold a mapping"),
        ("generate: [unclosed\n", r"not valid YAML at line"),
    ],
)
def test_bad_config_names_key_value_and_allowed(tmp_path: Path, text: str, expected: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_settings(cfg, environ={})
    assert str(cfg) in str(info.value)


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CAPFC_RISK__THRESHOLD.*'risk.threshold' = 120"):
        load_settings(environ={"CAPFC_RISK__THRESHOLD": "120"})


def test_every_problem_is_named_and_none_that_only_follows_from_another() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"report.formats": ("docx",)}, environ={})
    # The bad item leaves the tuple empty ("too short"): a consequence, not a second problem to chase.
    assert str(caught.value) == ("command line: key 'report.formats.0' = 'docx': Input should be 'png', 'html', "
                                 "'xlsx' or 'pdf'")
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"report.formats": ("docx",), "risk.threshold": 500}, environ={})
    said = str(caught.value)  # both named, whichever first
    assert "risk.threshold" in said and "report.formats.0" in said and "(also: key '" in said
    assert "too_short" not in said and "at least 1 item" not in said


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(Path("/nonexistent/capfc.yaml"), environ={})


def test_settings_are_frozen_and_hash_is_stable() -> None:
    settings = Settings()
    with pytest.raises(Exception, match="frozen"):
        settings.generate.servers = 5  # type: ignore[misc]
    assert settings.digest() == Settings().digest()
    assert settings.digest() != load_settings(None, {"generate.seed": 7}, environ={}).digest()
