"""The configuration sections (frozen pydantic models with bounds) and ``Settings``, their union."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from capacity_forecaster.aws import names as aws_names
from capacity_forecaster.aws.sagemaker import check_chain
from capacity_forecaster.config.strict import bool_as_number
from capacity_forecaster.errors import ConfigError

ENV_PREFIX = "CAPFC_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # Lax pydantic reads true as 1: `servers: true` must be an error, not one server.
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and bool_as_number(value, field.annotation):
            raise ValueError("expected a number, not true/false")
        return value


class LakeConfig(_Section):
    """Where the lake lives and how S3 is reached."""

    uri: str = Field("./lake", min_length=1)
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    sse: Literal["AES256", "aws:kms", "none"] = "AES256"
    sse_kms_key_id: str | None = None
    # A dead or frozen endpoint fails within about max_attempts * (connect or read timeout) + backoff.
    s3_connect_timeout: float = Field(5.0, gt=0.0, le=300.0)
    s3_read_timeout: float = Field(8.0, gt=0.0, le=3_600.0)
    s3_max_attempts: int = Field(3, ge=1, le=20)
    # False: `capfc sql` and sqlalchemy_engine are read-only over the lake's views (no file access).
    sql_unsafe: bool = False
    # Table versions stay readable (time travel, `capfc sql --as-of`) this long after a newer one
    # replaced them; a completed stage then vacuums them, with files no commit names (crashed writes).
    retention_hours: float = Field(168.0, ge=0.0, le=87_600.0)


class GenerateConfig(_Section):
    """Synthetic fleet parameters (``capfc generate``)."""

    servers: int = Field(100, ge=1, le=100_000)
    years: float = Field(3.0, gt=0.0, le=20.0)
    # Within the nanosecond time range with room for 20 years of history and 3 of horizon (helper-51: 9999-12-31
    # wrapped into 1816, 1600-01-01 into 2184).
    end_date: dt.date = Field(dt.date(2026, 6, 30), ge=dt.date(1700, 1, 1), le=dt.date(2250, 12, 31))
    holdout_days: int = Field(180, ge=0, le=1_095)
    seed: int = Field(42, ge=0)
    format: Literal["parquet", "csv"] = "parquet"
    missing_rate: float = Field(0.015, ge=0.0, le=0.5)
    glitch_rate: float = Field(0.002, ge=0.0, le=0.1)
    duplicate_rate: float = Field(0.002, ge=0.0, le=0.1)
    anomaly_rate: float = Field(0.002, ge=0.0, le=0.1)
    # Servers generated and written per chunk; memory follows the chunk, the output does not depend on
    # it. None: derived from the available memory (capped, see docs/scale.md).
    chunk_servers: int | None = Field(None, ge=1, le=100_000)


class IngestConfig(_Section):
    """Defaults for ``capfc ingest`` that a mapping file may override."""

    percentile: float = Field(95.0, gt=0.0, le=100.0)
    min_coverage: float = Field(0.5, ge=0.0, le=1.0)
    chunk_rows: int = Field(1_000_000, ge=1_000)
    # CSV lines longer than this (UTF-8 bytes) are quarantined as line_too_long instead of failing
    # the file; read blocks grow to hold twice this, so raising it costs memory per open file.
    max_line_bytes: int = Field(1 << 20, ge=64, le=1 << 30)
    # An ingest that would quarantine more than this share of the rows it read, or could not read
    # this share of one series' values, stops (exit 2) and writes nothing; 1.0 (or `capfc ingest
    # --force`) accepts any share. See docs/ingest.md.
    max_quarantine_share: float = Field(0.5, ge=0.0, le=1.0)
    # Samples of a day an export delivered in part stay staged (raw/partial_days) for a later
    # ingest to complete until their series has data this many days later. See docs/ingest.md.
    partial_days_window: int = Field(3, ge=0, le=366)
    # Accepted samples held in memory before they are spilled to a temporary folder in groups of servers
    # (SPILL_BUCKETS), which are then rolled up one group at a time: ingest memory stays bounded whatever the
    # export's size (0 = never spill). See docs/ingest.md, Performance.
    spill_rows: int = Field(1_000_000, ge=0)


class EtlConfig(_Section):
    """Validation, cleansing, imputation and anomaly detection (``capfc etl``)."""

    # Values down to -value_tolerance are clipped to 0; lower ones are quarantined.
    value_tolerance: float = Field(0.5, ge=0.0, le=10.0)
    # A utilisation above 100 is saturation (CPU demand beyond the provisioned capacity, memory
    # over-commit): kept, clipped to 100 and flagged is_saturated. Only values above this bound are
    # quarantined: Bitbrains reports at most ~130 %, CloudWatch caps at 100, hypervisor CPU demand
    # with turbo clocks stays below ~150 %; far beyond is a unit error (a fraction x 100 twice, MHz
    # or a per-core sum in a percent column). See docs/etl.md, "Saturation".
    saturation_max: float = Field(200.0, gt=100.0, le=100_000.0)
    outlier_threshold: float = Field(6.0, gt=0.0)
    anomaly_threshold: float = Field(4.0, gt=0.0)
    max_gap_days: int = Field(7, ge=0, le=366)
    imputation: Literal["auto", "seasonal", "knn"] = "auto"
    knn_neighbors: int = Field(5, ge=1, le=50)
    lags: tuple[int, ...] = (1, 7, 14, 28)
    rolling_windows: tuple[int, ...] = (7, 28)
    # Servers per ETL batch; None: derived from the available memory, at most 500 (docs/scale.md).
    batch_servers: int | None = Field(None, ge=1, le=100_000)
    # A run that would quarantine more than this share of the raw rows stops (exit 2) and leaves
    # the previous processed tables in place; 1.0 (or `capfc etl --force`) accepts any share.
    max_quarantine_share: float = Field(0.5, ge=0.0, le=1.0)
    # Dates outside these years are quarantined (epoch-zero and typo years would otherwise
    # stretch a series' span over decades of empty rows).
    min_year: int = Field(2000, ge=1900, le=2200)
    max_year: int = Field(2100, ge=1900, le=2200)
    # Exactly repeated values for this many consecutive days are a stuck-sensor glitch
    # (unless the series repeats values that often by itself, or sits at 0 or 100).
    stuck_min_run: int = Field(3, ge=2, le=60)
    # Lagged differences in the per-series ADF stationarity test (fixed: no per-series lag search).
    adf_maxlag: int = Field(7, ge=0, le=60)

    @model_validator(mode="after")
    def _check_ranges(self) -> EtlConfig:
        if any(k < 1 or k > 366 for k in self.lags):
            raise ValueError("lags must be between 1 and 366 days (a lag of 0 would leak the target)")
        if any(w < 2 or w > 366 for w in self.rolling_windows):
            raise ValueError("rolling_windows must be between 2 and 366 days")
        if self.min_year > self.max_year:
            raise ValueError(f"min_year {self.min_year} is after max_year {self.max_year}")
        return self


class ForecastConfig(_Section):
    """Forecast stage (``capfc forecast``)."""

    horizon: int = Field(180, ge=1, le=1_095)
    models: str = "auto"
    engine: Literal["local", "dask"] = "local"
    scheduler: str | None = None
    interval: float = Field(0.8, gt=0.0, lt=1.0)
    backtest_windows: int = Field(3, ge=0, le=20)
    n_jobs: int = Field(2, ge=1, le=512)
    # Grid of the processed metrics: "D" (daily, ds a date) or "h" (hourly, ds a UTC timestamp);
    # horizon, backtest_step and batch sizes count steps of this grid.
    freq: Literal["D", "h"] = "D"
    # Steps between rolling-origin cutoffs; None = horizon // 2 (see forecast/backtest.py).
    backtest_step: int | None = Field(None, ge=1, le=1_095)
    ensemble_size: int = Field(3, ge=2, le=10)
    # A series leaves its metric's fleet-best model only for one with a backtest MAE lower by more
    # than this fraction (0 = plain per-series minimum; see forecast/selection.py).
    selection_margin: float = Field(0.15, ge=0.0, lt=1.0)
    # Series with fewer known days get the baseline with wide intervals and a recorded reason; longer
    # ones are backtested with a design sized to their history (forecast/backtest.py ``design``).
    min_history_days: int = Field(14, ge=1, le=3_650)
    # Series per unit for local models; None = about 4 units per worker, at most 256 series.
    batch_size: int | None = Field(None, ge=1, le=100_000)
    # Seconds to wait for the Dask scheduler at ``scheduler`` before giving up.
    scheduler_timeout: float = Field(10.0, gt=0.0, le=600.0)
    # Series per chunk: the stage holds one chunk of series at a time (forecast/chunked.py); None =
    # derived from the available memory (250-1,000). Per-series models give the same rows whatever
    # the size; a global model (gbm_global) learns from each unit's series topped up from a fleet-wide
    # sample (forecast/reserve.py).
    chunk_series: int | None = Field(None, ge=1, le=1_000_000)
    # Local folder keeping finished chunks so that a killed run restarted with the same inputs resumes
    # (forecast/checkpoint.py; a SageMaker spot job uses /opt/ml/checkpoints); None = no checkpoints.
    checkpoint_dir: str | None = None


RiskMetric = Literal["cpu", "memory", "disk", "network"]
# Standard sizes a server is right-sized to (cores, GB); cf. the VM shapes of common hypervisors.
_CPU_SIZES = (2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)
_MEMORY_SIZES = (2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


class RiskConfig(_Section):
    """Breach risk, clustering and recommendations (``capfc risk``).

    Percent values are utilisation of the server's capacity (0-100); probabilities are 0-1.
    """

    # Breach
    threshold: float = Field(80.0, gt=0.0, le=100.0)
    metric_thresholds: dict[RiskMetric, float] = Field(default_factory=dict)
    # What-if growth in percent: an annual rate compounded over the horizon (growth_ramp), or a step
    # change applied from the first forecast day (growth_ramp: false).
    growth: float = Field(0.0, ge=-100.0, le=1_000.0)
    growth_ramp: bool = True
    interval: float = Field(0.8, gt=0.0, lt=1.0)
    error_correlation: float = Field(0.9, ge=0.0, le=1.0)
    # Calibration against the forecast stage's backtests (risk/calibration.py): with calibrate on,
    # the correlation is fitted once there are calibration_min_breaches breach (and non-breach)
    # windows, an isotonic map once there are isotonic_min_breaches; each is used only if it
    # predicts held-out servers better. calibration_bins: bins of the reliability table.
    calibrate: bool = True
    calibration_min_breaches: int = Field(10, ge=1, le=1_000_000)
    isotonic_min_breaches: int = Field(20, ge=1, le=1_000_000)
    calibration_bins: int = Field(10, ge=2, le=100)
    min_history_days: int = Field(60, ge=1, le=3_650)
    # Current state (risk/current.py): a series over its threshold on at least current_min_days_over
    # of its last current_window_days observed (not imputed) days is already breaching: at least
    # high, whatever its history length or forecast.
    current_window_days: int = Field(14, ge=1, le=366)
    current_min_days_over: int = Field(3, ge=1, le=366)
    # ... or whose last current_last_days observed days are all over it (0 = off): it runs over now.
    current_last_days: int = Field(1, ge=0, le=366)
    # A series whose last observed day is more than stale_after_days before the fleet's latest observed
    # day is stale (its monitoring stopped, or the server was retired): its level stays as of its last
    # data, but nothing is recommended on it (0 = off).
    stale_after_days: int = Field(14, ge=0, le=3_650)
    # Risk levels: critical/high = the breach is likely (probability >= likely_probability) within
    # critical_days/high_days; medium = sustained breach probability over the horizon >= medium_probability
    critical_days: int = Field(30, ge=1, le=1_095)
    high_days: int = Field(90, ge=1, le=1_095)
    likely_probability: float = Field(0.5, gt=0.0, le=1.0)
    medium_probability: float = Field(0.3, gt=0.0, le=1.0)
    # ... medium asks for a sustained breach: P(over on at least medium_min_days days) (1 = any day).
    medium_min_days: int = Field(3, ge=1, le=366)
    # Seasonal peaks: the last N business days of a month / quarter count as its end; a pattern is
    # recurring when those days run at least seasonal_min_uplift (relative) above the rest.
    period_end_business_days: int = Field(3, ge=1, le=10)
    seasonal_min_uplift: float = Field(0.15, ge=0.0, le=10.0)
    # Seasonal analogue (a second opinion on recurring peaks): last year's same period-end days
    # times the year-over-year growth; crossing the threshold on this many days raises the level
    # to at least medium. 0 switches the check off.
    analogue_min_days: int = Field(3, ge=0, le=366)
    # Clusters
    cluster_k_min: int = Field(3, ge=2, le=50)
    cluster_k_max: int = Field(10, ge=2, le=50)
    random_state: int = Field(0, ge=0)
    # Right-sizing and upsizing: new capacity keeps the forecast peak upper bound plus headroom
    # at or below target_utilisation.
    target_utilisation: float = Field(80.0, gt=0.0, le=100.0)
    headroom: float = Field(0.2, ge=0.0, le=5.0)
    rightsize_min_savings: float = Field(0.1, ge=0.0, le=1.0)
    cpu_sizes: tuple[int, ...] = Field(_CPU_SIZES, min_length=1)
    memory_sizes: tuple[int, ...] = Field(_MEMORY_SIZES, min_length=1)
    upsize_min_level: Literal["critical", "high", "medium"] = "medium"
    # ... and only when the series' breach probability is at least this (already breaching always is).
    upsize_min_probability: float = Field(0.5, ge=0.0, le=1.0)
    # Performance risk of a sizing option: its projected peak (forecast upper bound on the new size,
    # % of capacity) below each band is very_low, low, medium, high; at or above the last very_high.
    performance_risk_bands: tuple[float, float, float, float] = (50.0, 65.0, 80.0, 95.0)
    # Ranked sizing options per server (recommendation_options).
    max_options: int = Field(3, ge=1, le=10)
    # Consolidation
    consolidation_candidate_max: float = Field(40.0, gt=0.0, le=100.0)
    consolidation_target: float = Field(70.0, gt=0.0, le=100.0)
    max_servers_per_host: int = Field(8, ge=2, le=1_000)
    mix_nonprod_environments: bool = False
    milp_max_servers: int = Field(12, ge=0, le=200)
    milp_time_limit: float = Field(10.0, gt=0.0, le=3_600.0)
    # Decommission: idle on every (non-anomalous) day of a history covering min_history_days.
    idle_cpu_max: float = Field(10.0, ge=0.0, le=100.0)
    idle_memory_max: float = Field(25.0, ge=0.0, le=100.0)
    idle_network_max: float = Field(10.0, ge=0.0, le=100.0)
    idle_min_coverage: float = Field(0.9, ge=0.0, le=1.0)
    # Servers read and assessed per chunk by capfc risk (None: from the available memory; docs/scale.md).
    chunk_servers: int | None = Field(None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _consistent(self) -> RiskConfig:
        problems = []
        if self.critical_days > self.high_days:
            problems.append(f"critical_days ({self.critical_days}) must not exceed high_days ({self.high_days})")
        if self.current_min_days_over > self.current_window_days:
            problems.append(f"current_min_days_over ({self.current_min_days_over}) must not exceed "
                            f"current_window_days ({self.current_window_days})")
        if self.medium_probability > self.likely_probability:
            problems.append(f"medium_probability ({self.medium_probability}) must not exceed "
                            f"likely_probability ({self.likely_probability})")
        if self.isotonic_min_breaches < self.calibration_min_breaches:
            problems.append(f"isotonic_min_breaches ({self.isotonic_min_breaches}) must not be below "
                            f"calibration_min_breaches ({self.calibration_min_breaches})")
        if self.cluster_k_min > self.cluster_k_max:
            problems.append(f"cluster_k_min ({self.cluster_k_min}) must not exceed cluster_k_max "
                            f"({self.cluster_k_max})")
        worst = min([self.threshold, *self.metric_thresholds.values()])
        if self.consolidation_target > worst:
            problems.append(f"consolidation_target ({self.consolidation_target}) must not exceed the lowest "
                            f"breach threshold ({worst})")
        for name in ("cpu_sizes", "memory_sizes"):
            sizes = getattr(self, name)
            if any(s <= 0 for s in sizes) or list(sizes) != sorted(set(sizes)):
                problems.append(f"{name} must be positive and strictly increasing, got {list(sizes)}")
        bands = list(self.performance_risk_bands)
        if bands != sorted(set(bands)) or not all(0.0 < b <= 100.0 for b in bands):
            problems.append(f"performance_risk_bands must be strictly increasing in (0, 100], got {bands}")
        bad = {k: v for k, v in self.metric_thresholds.items() if not 0.0 < v <= 100.0}
        if bad:
            problems.append(f"metric_thresholds values must be in (0, 100], got {bad}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def threshold_for(self, metric: str) -> float:
        """The breach threshold of ``metric`` (its override, else ``threshold``)."""
        return float(self.metric_thresholds.get(metric, self.threshold))  # type: ignore[call-overload]


class ReportConfig(_Section):
    """Report packs (``capfc report``): formats, how many servers the charts and tables name."""

    formats: tuple[Literal["png", "html", "xlsx", "pdf"], ...] = Field(("png", "html", "xlsx", "pdf"), min_length=1)
    title: str = Field("Server capacity outlook", min_length=1, max_length=80)
    # Forecast-vs-actual panels (the riskiest series first) and rows of the top-risks tables.
    chart_series: int = Field(6, ge=1, le=12)
    top_risks: int = Field(15, ge=1, le=200)
    # Days of observed history drawn before the forecast in forecast-vs-actual charts.
    history_days: int = Field(180, ge=14, le=3_650)
    # The utilisation heatmap shows this metric for at most this many servers (the busiest).
    heatmap_metric: Literal["cpu", "memory", "disk", "network"] = "cpu"
    heatmap_servers: int = Field(50, ge=5, le=500)
    # Forecast data sheet of the workbook: one row per series and week, or every daily forecast row.
    forecast_sheet: Literal["weekly", "daily"] = "weekly"
    # Paper of the PDF pack (landscape): ISO A4 or US letter.
    page_size: Literal["a4", "letter"] = "a4"
    # The stored what-if shown beside the base (its name, e.g. growth-20pct); None: the most recent one.
    scenario: str | None = Field(None, min_length=1, max_length=64)
    # Forecast vs actual over time: the current forecast run and up to this many earlier ones are scored
    # against the actuals observed since (older versions must still be readable: lake.retention_hours).
    accuracy_runs: int = Field(5, ge=1, le=52)
    # Servers capfc report reads at a time: forecast rows for the Forecast data sheet and the accuracy history,
    # metrics for the workload profiles (None: from the available memory; docs/scale.md).
    chunk_servers: int | None = Field(None, ge=1, le=100_000)


class DashboardConfig(_Section):
    """Interactive dashboard (``capfc dashboard``)."""

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8050, ge=1, le=65_535)
    # Days of observed history shown in the server drill-down (loaded once when the app starts).
    history_days: int = Field(365, ge=14, le=3_650)
    # Range of the what-if growth slider, in percent of the forecast load.
    growth_min: float = Field(-30.0, ge=-100.0, le=0.0)
    growth_max: float = Field(50.0, gt=0.0, le=1_000.0)
    page_size: int = Field(15, ge=5, le=200)
    # Largest request body accepted, in bytes (larger ones get 413 before they are read).
    max_request_bytes: int = Field(1_048_576, ge=1_024, le=1_073_741_824)


AwsStage = Literal["generate", "etl", "forecast", "risk", "report", "run", "verify"]
# Which naming rule of aws/names.py each text key of AwsConfig must follow.
_AWS_NAME_RULES = {
    "region": "region", "endpoint_url": "endpoint_url", "glue_database": "glue_name",
    "athena_workgroup": "athena_workgroup", "image_uri": "image_uri", "role_arn": "role_arn",
    "instance_type": "instance_type", "job_prefix": "job_prefix", "config_s3_uri": "s3_uri",
    "schedule_expression": "schedule", "schedule_rule": "rule_name", "lambda_arn": "lambda_arn",
    "quicksight_data_source_id": "resource_id", "quicksight_principal_arn": "principal_arn",
    "forecast_role_arn": "role_arn",
}


class AwsConfig(_Section):
    """AWS deployment (``capfc aws ...``): Glue/Athena catalog, SageMaker jobs, schedule, QuickSight.

    Never credentials: boto3 uses the standard chain. Names are checked against the AWS naming
    rules (``aws/names.py``), so a bad one fails here, naming the rule, before any AWS call.
    """

    region: str | None = None
    endpoint_url: str | None = None
    glue_database: str = "capacity_forecaster"
    athena_workgroup: str = "capfc"
    image_uri: str | None = None
    role_arn: str | None = None
    instance_type: str = "ml.m5.xlarge"
    # One instance: a lake table has one writer at a time, so a job never fans out over instances;
    # scale up with instance_type (and forecast.n_jobs) instead.
    instance_count: int = Field(1, ge=1, le=1)
    volume_size_gb: int = Field(30, ge=1, le=16_384)
    max_runtime_seconds: int = Field(14_400, ge=60, le=777_600)
    job_prefix: str = "capfc"
    config_s3_uri: str | None = None
    scheduled_stages: tuple[AwsStage, ...] = ("run", "verify")
    schedule_expression: str = "cron(0 3 * * ? *)"
    schedule_rule: str = "capfc-daily"
    lambda_arn: str | None = None
    quicksight_data_source_id: str = "capfc-athena"
    quicksight_principal_arn: str | None = None
    tags: dict[str, str] = Field(default_factory=lambda: {"project": "aws-capacity-forecaster"})
    # The forecast step of the scheduled chain (and `capfc aws submit forecast --training`) as a
    # SageMaker training job: only training jobs can run on managed spot capacity (up to ~70-90 %
    # cheaper), and the forecast stage is the long, resumable one. False keeps processing jobs.
    forecast_training_job: bool = False
    spot_training: bool = True
    # Spot only: the job gives up after this long, waiting for capacity and interruptions included;
    # at least max_runtime_seconds (AWS's rule). None = twice max_runtime_seconds (at most 28 days).
    max_wait_seconds: int | None = Field(None, ge=60, le=2_419_200)
    # IAM role Amazon Forecast assumes to read the export and write its forecasts (`capfc aws forecast-*`).
    forecast_role_arn: str | None = None
    # Jobs in your VPC (both lists, or neither): NetworkConfig.VpcConfig of processing jobs, VpcConfig of
    # training jobs. The subnets need a route to S3 (a gateway endpoint) and to the SageMaker/ECR
    # endpoints SageMaker uses; docs/aws.md lists them.
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    # The chain's verify step also re-registers the written tables in aws.glue_database (capfc aws verify
    # --glue-database), so a column a stage adds reaches the Glue catalog the same night.
    verify_registers_glue: bool = True

    @model_validator(mode="after")
    def _vpc(self) -> AwsConfig:
        try:
            aws_names.check_vpc(self.subnet_ids, self.security_group_ids, "aws")
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return self

    @model_validator(mode="after")
    def _wait_covers_runtime(self) -> AwsConfig:
        if self.max_wait_seconds is not None and self.max_wait_seconds < self.max_runtime_seconds:
            raise ValueError(f"max_wait_seconds ({self.max_wait_seconds}) must be at least max_runtime_seconds "
                             f"({self.max_runtime_seconds}): a spot job's wait includes its runtime")
        return self

    @field_validator(*_AWS_NAME_RULES)
    @classmethod
    def _aws_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        problem = None if value is None else aws_names.problem(_AWS_NAME_RULES[str(info.field_name)], value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("scheduled_stages")
    @classmethod
    def _stage_chain(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            check_chain(value, "scheduled_stages")
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            return aws_names.check_tags(value, "tags")
        except ConfigError as err:
            raise ValueError(str(err)) from None


class Settings(_Section):
    """The whole configuration; one instance is built by the CLI and passed down."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # auto: rich on a terminal, plain one-line records otherwise; json: one JSON object per line.
    log_format: Literal["auto", "rich", "plain", "json"] = "auto"
    lake: LakeConfig = LakeConfig()
    generate: GenerateConfig = GenerateConfig()
    ingest: IngestConfig = IngestConfig()
    etl: EtlConfig = EtlConfig()
    forecast: ForecastConfig = ForecastConfig()
    risk: RiskConfig = RiskConfig()
    report: ReportConfig = ReportConfig()
    dashboard: DashboardConfig = DashboardConfig()
    aws: AwsConfig = AwsConfig()

    @model_validator(mode="before")
    @classmethod
    def _upper_log_level(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("log_level"), str):
            data = {**data, "log_level": data["log_level"].upper()}
        if isinstance(data, dict) and isinstance(data.get("log_format"), str):
            data = {**data, "log_format": data["log_format"].lower()}
        return data

    def digest(self) -> str:
        """Stable hash of the effective configuration, recorded in run manifests."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
