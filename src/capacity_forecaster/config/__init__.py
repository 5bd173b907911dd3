"""Typed configuration: frozen models per stage, merged once from file, environment and CLI.

Precedence is command-line option > ``CAPFC_*`` environment variable > YAML file >
built-in defaults. Environment variables name a key as ``CAPFC_<SECTION>__<KEY>``
(for example ``CAPFC_GENERATE__SERVERS=500``); ``CAPFC_LAKE`` and ``CAPFC_LOG_LEVEL``
are short forms of ``lake.uri`` and ``log_level``.
"""

from capacity_forecaster.config.loader import load_settings
from capacity_forecaster.config.sections import (
    ENV_PREFIX,
    AwsConfig,
    AwsStage,
    DashboardConfig,
    EtlConfig,
    ForecastConfig,
    GenerateConfig,
    IngestConfig,
    LakeConfig,
    ReportConfig,
    RiskConfig,
    RiskMetric,
    Settings,
)

__all__ = [
    "AwsConfig",
    "AwsStage",
    "DashboardConfig",
    "ENV_PREFIX",
    "EtlConfig",
    "ForecastConfig",
    "GenerateConfig",
    "IngestConfig",
    "LakeConfig",
    "ReportConfig",
    "RiskConfig",
    "RiskMetric",
    "Settings",
    "load_settings",
]
