"""Amazon Forecast (existing accounts only): export the lake's metrics, train an AutoPredictor, import its quantiles.

Amazon Forecast is closed to new customers (since July 2024); accounts that used it can still call
it. The flow is idempotent and resumable: ``advance`` looks at each resource in order (datasets,
dataset group, import jobs, predictor, forecast, export job), creates the first one missing and
stops while one is still being created, so running it again (or on a schedule) moves the run on.

* ``export_lake`` writes ``metrics`` as a TARGET_TIME_SERIES CSV (``item_id`` = ``server_id|metric``,
  ``timestamp``, ``target_value``) and ``inventory`` as ITEM_METADATA (categorical attributes per
  item) under ``<lake>/_amazon_forecast/input/`` through the lake's filesystem, so the writes keep the
  lake's server-side encryption.
* ``forecast_rows`` turns an export (``item_id, date, p10, p50, p90``) into rows of the
  ``forecasts`` table layout with ``model = "amazon_forecast"`` and ``interval = 0.8`` (P10-P90).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from capacity_forecaster import schema
from capacity_forecaster.aws import names
from capacity_forecaster.aws.clients import AwsClients, is_missing, translated
from capacity_forecaster.errors import AwsError, ConfigError, SchemaError

if TYPE_CHECKING:
    from capacity_forecaster.storage import Lake

log = logging.getLogger(__name__)

MODEL = "amazon_forecast"
FOLDER = "_amazon_forecast"
ITEM_SEP = "|"
FORECAST_TYPES = ("0.1", "0.5", "0.9")
INTERVAL = 0.8  # P10 to P90
# AutoPredictor forecasts at most 500 steps (and at most a third of the history).
MAX_HORIZON = 500
TARGET_SCHEMA = (("item_id", "string"), ("timestamp", "timestamp"), ("target_value", "float"))
# ITEM_METADATA attributes are categorical: sizes are sent as text too. hostname is left out (one
# value per server tells the model nothing).
METADATA_ATTRIBUTES = ("metric", "application", "business_unit", "environment", "datacenter", "server_type",
                       "cpu_cores", "memory_gb")
# capfc grid -> (Forecast frequency, Forecast timestamp format, strftime format)
FREQUENCIES = {"D": ("D", "yyyy-MM-dd", "%Y-%m-%d"), "h": ("H", "yyyy-MM-dd HH:mm:ss", "%Y-%m-%d %H:%M:%S")}
ACTIVE = "ACTIVE"
FAILED = ("CREATE_FAILED", "DELETE_FAILED", "UPDATE_FAILED")


@dataclass(frozen=True)
class ForecastNames:
    """The Amazon Forecast resource names of one run (datasets and group persist across runs)."""

    group: str
    target_dataset: str
    metadata_dataset: str
    target_import: str
    metadata_import: str
    predictor: str
    forecast: str
    export: str

    @classmethod
    def build(cls, job_prefix: str, run: str) -> ForecastNames:
        """Names from the job prefix (``-`` becomes ``_``) and a run id of letters, digits and ``_``.

        Raises:
            ConfigError: a name breaks Amazon Forecast's rule (letters, digits, '_'; at most 63).
        """
        prefix = job_prefix.replace("-", "_")
        prefix = prefix if prefix[:1].isalpha() else f"capfc_{prefix}"
        values = {"group": prefix, "target_dataset": f"{prefix}_metrics", "metadata_dataset": f"{prefix}_inventory",
                  "target_import": f"{prefix}_metrics_{run}", "metadata_import": f"{prefix}_inventory_{run}",
                  "predictor": f"{prefix}_predictor_{run}", "forecast": f"{prefix}_forecast_{run}",
                  "export": f"{prefix}_export_{run}"}
        for key, value in values.items():
            names.check("forecast_name", value, f"Amazon Forecast {key} name")
        return cls(**values)


def item_ids(frame: pd.DataFrame) -> pd.Series:
    """``server_id|metric`` per row (the Amazon Forecast item id)."""
    return frame[schema.SERVER_ID].astype(str) + ITEM_SEP + frame[schema.METRIC].astype(str)


def target_frame(metrics: pd.DataFrame, freq: str = "D") -> pd.DataFrame:
    """The TARGET_TIME_SERIES rows of processed metrics (pure; rows without a value are left out).

    Returns:
        ``item_id, timestamp`` (text in the dataset's timestamp format), ``target_value``.
    """
    known = metrics[metrics[schema.VALUE].notna()]
    return pd.DataFrame({
        "item_id": item_ids(known),
        "timestamp": pd.to_datetime(known[schema.DS]).dt.strftime(FREQUENCIES[freq][2]),
        "target_value": known[schema.VALUE].astype(float).round(6),
    }).sort_values(["item_id", "timestamp"], ignore_index=True)


def metadata_frame(inventory: pd.DataFrame, items: pd.Series) -> pd.DataFrame:
    """The ITEM_METADATA rows: the server's attributes, as text, for each item id (pure).

    Returns:
        ``item_id`` and ``METADATA_ATTRIBUTES``; items of servers missing from the inventory get "unknown".
    """
    unique = pd.Series(items.unique(), name="item_id")
    parts = unique.str.rsplit(ITEM_SEP, n=1, expand=True)
    keys = pd.DataFrame({"item_id": unique, schema.SERVER_ID: parts[0], "metric": parts[1]})
    attributes = [c for c in METADATA_ATTRIBUTES if c != "metric"]
    # Text before the merge: a left merge would turn whole-number sizes into floats ("8.0").
    servers = inventory.reindex(columns=[schema.SERVER_ID, *attributes]).drop_duplicates(schema.SERVER_ID)
    merged = keys.merge(servers.astype("string"), on=schema.SERVER_ID, how="left")
    out = merged[["item_id", *METADATA_ATTRIBUTES]].copy()
    for column in METADATA_ATTRIBUTES:
        out[column] = out[column].astype("string").fillna("unknown")
    return out.sort_values("item_id", ignore_index=True)


def export_lake(lake: Lake, freq: str = "D") -> dict[str, Any]:
    """Write the lake's metrics and inventory as Amazon Forecast CSV files (no header) under ``input/``.

    Returns:
        ``target_uri, metadata_uri`` (where Forecast imports from), ``rows, items``.

    Raises:
        StorageError: a table cannot be read or a file written.
    """
    metrics = lake.read_table("metrics", columns=[schema.SERVER_ID, schema.DS, schema.METRIC, schema.VALUE])
    target = target_frame(metrics, freq)
    inventory = lake.read_table("inventory") if lake.has_table("inventory") else pd.DataFrame()
    metadata = metadata_frame(inventory, target["item_id"])
    written = {}
    for key, frame, file in (("target_uri", target, "target_time_series.csv"),
                             ("metadata_uri", metadata, "item_metadata.csv")):
        relpath = f"{FOLDER}/input/{file}"
        lake.write_bytes(relpath, frame.to_csv(index=False, header=False).encode())
        written[key] = lake.display(relpath)
    log.info("amazon forecast export: %d rows of %d items -> %s", len(target), len(metadata), written["target_uri"])
    return {**written, "rows": len(target), "items": len(metadata)}


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def dataset_request(name: str, dataset_type: str, freq: str, tags: dict[str, str]) -> dict[str, Any]:
    """``CreateDataset`` for TARGET_TIME_SERIES or ITEM_METADATA (pure)."""
    attributes = TARGET_SCHEMA if dataset_type == "TARGET_TIME_SERIES" else \
        (("item_id", "string"), *((c, "string") for c in METADATA_ATTRIBUTES))
    request: dict[str, Any] = {
        "DatasetName": name, "Domain": "CUSTOM", "DatasetType": dataset_type,
        "Schema": {"Attributes": [{"AttributeName": n, "AttributeType": t} for n, t in attributes]},
        "Tags": _tags(tags)}
    if dataset_type == "TARGET_TIME_SERIES":
        request["DataFrequency"] = FREQUENCIES[freq][0]
    return request


def dataset_group_request(name: str, dataset_arns: list[str], tags: dict[str, str]) -> dict[str, Any]:
    """``CreateDatasetGroup`` in the CUSTOM domain (pure)."""
    return {"DatasetGroupName": name, "Domain": "CUSTOM", "DatasetArns": dataset_arns, "Tags": _tags(tags)}


def dataset_import_job_request(name: str, dataset_arn: str, s3_uri: str, role_arn: str, freq: str | None,
                               tags: dict[str, str], kms_key_arn: str | None = None) -> dict[str, Any]:
    """``CreateDatasetImportJob`` of one exported CSV file (pure); ``freq`` None for a file without timestamps."""
    s3: dict[str, Any] = {"Path": s3_uri, "RoleArn": role_arn}
    if kms_key_arn:
        s3["KMSKeyArn"] = kms_key_arn
    request: dict[str, Any] = {"DatasetImportJobName": name, "DatasetArn": dataset_arn,
                               "DataSource": {"S3Config": s3}, "Format": "CSV", "ImportMode": "FULL",
                               "Tags": _tags(tags)}
    if freq is not None:
        request["TimestampFormat"] = FREQUENCIES[freq][1]
    return request


def auto_predictor_request(name: str, dataset_group_arn: str, horizon: int, freq: str,
                           tags: dict[str, str]) -> dict[str, Any]:
    """``CreateAutoPredictor`` for P10/P50/P90 over ``horizon`` steps (pure).

    Raises:
        ConfigError: the horizon is longer than Amazon Forecast allows.
    """
    if not 1 <= horizon <= MAX_HORIZON:
        raise ConfigError(f"forecast.horizon = {horizon}: Amazon Forecast predicts at most {MAX_HORIZON} steps; "
                          "lower it for the Amazon Forecast run (--horizon)")
    return {"PredictorName": name, "ForecastHorizon": horizon, "ForecastTypes": list(FORECAST_TYPES),
            "ForecastFrequency": FREQUENCIES[freq][0], "DataConfig": {"DatasetGroupArn": dataset_group_arn},
            "OptimizationMetric": "AverageWeightedQuantileLoss", "Tags": _tags(tags)}


def forecast_request(name: str, predictor_arn: str, tags: dict[str, str]) -> dict[str, Any]:
    """``CreateForecast`` of the predictor's quantiles (pure)."""
    return {"ForecastName": name, "PredictorArn": predictor_arn, "ForecastTypes": list(FORECAST_TYPES),
            "Tags": _tags(tags)}


def forecast_export_job_request(name: str, forecast_arn: str, s3_uri: str, role_arn: str, tags: dict[str, str],
                                kms_key_arn: str | None = None) -> dict[str, Any]:
    """``CreateForecastExportJob`` writing CSV files to ``s3_uri`` (pure)."""
    s3: dict[str, Any] = {"Path": s3_uri, "RoleArn": role_arn}
    if kms_key_arn:
        s3["KMSKeyArn"] = kms_key_arn
    return {"ForecastExportJobName": name, "ForecastArn": forecast_arn, "Destination": {"S3Config": s3},
            "Format": "CSV", "Tags": _tags(tags)}


@dataclass(frozen=True)
class ForecastRun:
    """What one Amazon Forecast run needs besides its names.

    Attributes:
        lake_uri: ``s3://bucket/prefix`` of the lake (the export and the forecasts live under it).
        role_arn: IAM role Amazon Forecast assumes (reads the input, writes the export).
        account_id: the AWS account (resource ARNs are derived from it).
        region: the AWS region.
        horizon: steps to forecast.
        freq: the lake's grid, "D" or "h".
        tags: tags on every resource.
        kms_key_arn: KMS key ARN Forecast uses for the lake's objects (SSE-KMS lakes).
    """

    lake_uri: str
    role_arn: str
    account_id: str
    region: str
    horizon: int
    freq: str = "D"
    tags: tuple[tuple[str, str], ...] = ()
    kms_key_arn: str | None = None

    def arn(self, kind: str, *parts: str) -> str:
        partition = self.role_arn.split(":")[1]
        return f"arn:{partition}:forecast:{self.region}:{self.account_id}:{kind}/{'/'.join(parts)}"

    def output_uri(self, n: ForecastNames) -> str:
        return f"{self.lake_uri.rstrip('/')}/{FOLDER}/output/{n.export}/"


def steps(run: ForecastRun, n: ForecastNames) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The resources of a run in order: ``(kind, arn, operation, create request)`` (pure)."""
    tags = dict(run.tags)
    lake = run.lake_uri.rstrip("/")
    target, metadata = run.arn("dataset", n.target_dataset), run.arn("dataset", n.metadata_dataset)
    group, predictor = run.arn("dataset-group", n.group), run.arn("predictor", n.predictor)
    forecast = run.arn("forecast", n.forecast)
    return [
        ("dataset", target, "CreateDataset", dataset_request(n.target_dataset, "TARGET_TIME_SERIES", run.freq, tags)),
        ("dataset", metadata, "CreateDataset", dataset_request(n.metadata_dataset, "ITEM_METADATA", run.freq, tags)),
        ("dataset_group", group, "CreateDatasetGroup", dataset_group_request(n.group, [target, metadata], tags)),
        ("dataset_import_job", run.arn("dataset-import-job", n.target_dataset, n.target_import),
         "CreateDatasetImportJob", dataset_import_job_request(
             n.target_import, target, f"{lake}/{FOLDER}/input/target_time_series.csv", run.role_arn, run.freq, tags,
             run.kms_key_arn)),
        ("dataset_import_job", run.arn("dataset-import-job", n.metadata_dataset, n.metadata_import),
         "CreateDatasetImportJob", dataset_import_job_request(
             n.metadata_import, metadata, f"{lake}/{FOLDER}/input/item_metadata.csv", run.role_arn, None, tags,
             run.kms_key_arn)),
        ("auto_predictor", predictor, "CreateAutoPredictor",
         auto_predictor_request(n.predictor, group, run.horizon, run.freq, tags)),
        ("forecast", forecast, "CreateForecast", forecast_request(n.forecast, predictor, tags)),
        ("forecast_export_job", run.arn("forecast-export-job", n.forecast, n.export), "CreateForecastExportJob",
         forecast_export_job_request(n.export, forecast, run.output_uri(n), run.role_arn, tags, run.kms_key_arn)),
    ]


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def advance(run: ForecastRun, n: ForecastNames, clients: AwsClients) -> dict[str, Any]:
    """Move the run one step on: create the first missing resource, or report the one still in progress.

    Returns:
        ``state`` (created, in-progress, done), ``step`` (the resource kind), ``name``, ``arn``,
        ``status`` and, when done, ``output_uri`` (what ``capfc aws forecast-import`` reads).

    Raises:
        AwsError: a resource failed (with Amazon Forecast's message) or a call failed.
    """
    client = clients.client("forecast")
    for kind, arn, operation, request in steps(run, n):
        name = str(next(iter(request.values())))  # every create request starts with the resource's name
        describe = f"describe_{kind}"
        try:
            with translated(f"forecast Describe {name}"):
                described = getattr(client, describe)(**{f"{_pascal(kind)}Arn": arn})
        except AwsError as err:
            if not is_missing(err):
                raise
            with translated(f"forecast {operation} {name}"):
                getattr(client, _snake(operation))(**request)
            log.info("amazon forecast: created %s %s", kind, name)
            return {"state": "created", "step": kind, "name": name, "arn": arn, "status": "CREATE_PENDING"}
        status = described.get("Status", ACTIVE)  # dataset groups answer without a Status while idle
        if status in FAILED:
            raise AwsError(f"Amazon Forecast {kind} {name} is {status}: {described.get('Message', 'no message')}; "
                           "fix the cause, delete it and run again")
        if status != ACTIVE:
            return {"state": "in-progress", "step": kind, "name": name, "arn": arn, "status": status}
    return {"state": "done", "step": "forecast_export_job", "name": n.export, "arn": steps(run, n)[-1][1],
            "status": ACTIVE, "output_uri": run.output_uri(n)}


def _pascal(kind: str) -> str:
    special = {"auto_predictor": "Predictor"}
    return special.get(kind, "".join(p.capitalize() for p in kind.split("_")))


def forecast_rows(export: pd.DataFrame, interval: float = INTERVAL) -> pd.DataFrame:
    """Rows of the ``forecasts`` layout from an Amazon Forecast export (pure).

    Args:
        export: ``item_id, date, p10, p50, p90`` as Forecast writes them (dates in ISO 8601, UTC).
        interval: the coverage of p10..p90.

    Returns:
        ``server_id, metric, ds, model, yhat, yhat_lower, yhat_upper, interval``; quantiles that cross
        are put in order, so ``yhat_lower <= yhat <= yhat_upper``.

    Raises:
        SchemaError: a column is missing or an item id is not ``server_id|metric``.
    """
    missing = [c for c in ("item_id", "date", "p10", "p50", "p90") if c not in export.columns]
    if missing:
        raise SchemaError(f"Amazon Forecast export: missing column(s) {', '.join(missing)}; expected item_id, date, "
                          "p10, p50, p90 (an export of a forecast with ForecastTypes 0.1, 0.5, 0.9)")
    items = export["item_id"].astype(str)
    bad = items[~items.str.contains(ITEM_SEP, regex=False)]
    if len(bad):
        raise SchemaError(f"Amazon Forecast export: item_id {bad.iloc[0]!r} is not server_id{ITEM_SEP}metric "
                          f"({len(bad)} such rows); was the data exported by capfc aws forecast-export?")
    parts = items.str.rsplit(ITEM_SEP, n=1, expand=True)
    ds = pd.to_datetime(export["date"], utc=True).dt.tz_localize(None)
    quantiles = export[["p10", "p50", "p90"]].astype(float).to_numpy()
    quantiles.sort(axis=1)
    out = pd.DataFrame({schema.SERVER_ID: parts[0], schema.METRIC: parts[1], schema.DS: ds, "model": MODEL,
                        "yhat": quantiles[:, 1], "yhat_lower": quantiles[:, 0], "yhat_upper": quantiles[:, 2],
                        "interval": interval})
    return out.sort_values([schema.SERVER_ID, schema.METRIC, schema.DS], ignore_index=True)


def import_forecasts(lake: Lake, source: str) -> dict[str, Any]:
    """Read every CSV file of an export below the lake-relative folder ``source`` and store the rows.

    ``schema.TABLES`` has no table for another system's forecasts (``forecasts`` holds the forecast
    stage's published rows), so they go to ``_amazon_forecast/imported/forecasts.parquet``.

    Returns:
        ``source, written, rows, series, first_ds, last_ds``.

    Raises:
        StorageError: the folder cannot be read. SchemaError: no CSV files or bad content.
    """
    files = [f for f in lake.list_files(source) if f.endswith(".csv")]
    if not files:
        raise SchemaError(f"{lake.display(source)}: no CSV files; give the folder of a finished Forecast export job")
    frames = [pd.read_csv(io.BytesIO(lake.read_bytes(f) or b"")) for f in files]
    rows = forecast_rows(pd.concat(frames, ignore_index=True))
    target = f"{FOLDER}/imported/forecasts.parquet"
    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    lake.write_bytes(target, buffer.getvalue())
    series = rows[[schema.SERVER_ID, schema.METRIC]].drop_duplicates()
    log.info("amazon forecast import: %d rows, %d series from %d file(s) -> %s", len(rows), len(series), len(files),
             lake.display(target))
    return {"source": lake.display(source), "written": lake.display(target), "rows": len(rows),
            "series": len(series), "first_ds": str(rows[schema.DS].min()) if len(rows) else None,
            "last_ds": str(rows[schema.DS].max()) if len(rows) else None}


def run_id(when: dt.datetime) -> str:
    """The default run id: the UTC day, so runs of the same day continue one another."""
    return when.astimezone(dt.UTC).strftime("%Y%m%d") if when.tzinfo else when.strftime("%Y%m%d")
