"""Source mappings: how the columns of a monitoring export become server, time, metric and value."""

from __future__ import annotations

import codecs
import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from capacity_forecaster.errors import ConfigError
from capacity_forecaster.schema import InventoryColumn
from capacity_forecaster.yamlfile import read_yaml

MetricName = Literal["cpu", "memory", "disk", "network"]
NUMERIC_INVENTORY_COLUMNS = ("cpu_cores", "memory_gb", "monthly_cost_usd")


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'America/New_York'") from err
    return name


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvSpec(_Spec):
    """How a delimited text file is split into fields.

    Attributes:
        delimiter: one character; None sniffs it from the first lines. Whitespace around fields is
            always trimmed, so ``;`` also reads files that put a tab after each semicolon.
        encoding: text encoding of the file (any Python codec name).
        decimal: decimal separator of numbers, ``.`` or ``,``.
    """

    delimiter: str | None = None
    encoding: str = "utf-8"
    decimal: Literal[".", ","] = "."

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is None:
            return None
        stripped = value if value.strip() == "" else value.strip()
        if len(stripped) != 1 or stripped in "\"\r\n":
            raise ValueError(
                f"delimiter must be one character other than a quote or newline, got {value!r} "
                "(whitespace after a delimiter is trimmed anyway, so use ';' for ';<tab>' files)"
            )
        return stripped

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            return codecs.lookup(value).name
        except LookupError as err:
            raise ValueError(f"unknown text encoding {value!r}; use e.g. 'utf-8' or 'latin-1'") from err


class ServerIdSpec(_Spec):
    """Where the server id comes from: a column, or a regex group of the file name.

    Attributes:
        column: column holding the server id.
        from_filename: regular expression searched in the file name (not the folder); its first
            group is the id, e.g. ``(\\d+)\\.csv`` turns ``14.csv`` into ``14``.
        prefix: text put in front of every id (also of inventory ids), e.g. ``bitbrains-``.
    """

    column: str | None = None
    from_filename: str | None = None
    prefix: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> ServerIdSpec:
        if (self.column is None) == (self.from_filename is None):
            raise ValueError("server_id: set exactly one of 'column' or 'from_filename'")
        if self.from_filename is not None:
            try:
                pattern = re.compile(self.from_filename)
            except re.error as err:
                raise ValueError(f"server_id.from_filename is not a valid regular expression: {err}") from err
            if pattern.groups < 1:
                raise ValueError("server_id.from_filename needs a capture group, e.g. '(\\d+)\\.csv'")
        return self


class TimestampSpec(_Spec):
    """The sample time column.

    Attributes:
        column: column name.
        kind: ``text`` (ISO 8601, or ``format``) or ``epoch`` (numbers counted from 1970-01-01 UTC).
        unit: unit of epoch numbers (check the values: Bitbrains says [ms] but stores seconds).
        format: strptime format for text that is not ISO 8601, e.g. ``%d/%m/%Y %H:%M``.
        timezone: zone of text timestamps that carry no offset.
    """

    column: str
    kind: Literal["text", "epoch"] = "text"
    unit: Literal["s", "ms", "us", "ns"] = "s"
    format: str | None = None
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_timezone(value)

    @model_validator(mode="after")
    def _format_needs_text(self) -> TimestampSpec:
        if self.format is not None and self.kind != "text":
            raise ValueError("timestamp.format applies to kind 'text' only")
        return self


class MetricSpec(_Spec):
    """One metric of a wide file: a percent column, or usage / capacity x 100.

    Attributes:
        percent: column already in percent of capacity.
        usage: column with the used amount (any unit), divided by ``capacity``.
        capacity: column with the provisioned amount. With ``percent`` it only marks which rows are
            measurements: rows whose capacity is 0 or empty are quarantined either way.
    """

    percent: str | None = None
    usage: str | None = None
    capacity: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> MetricSpec:
        if (self.percent is None) == (self.usage is None):
            raise ValueError("a metric needs exactly one of 'percent' or 'usage' (with 'capacity')")
        if self.usage is not None and self.capacity is None:
            raise ValueError("a metric given by 'usage' also needs 'capacity'")
        return self


class LongSpec(_Spec):
    """The value and metric of a long file (one value per row).

    Attributes:
        value: column with the value in percent.
        metric_column: column naming the metric of each row.
        metric: the metric of every row, when the file has no metric column.
        metric_names: names used in ``metric_column`` -> contract metric; contract names map to
            themselves.
    """

    value: str
    metric_column: str | None = None
    metric: MetricName | None = None
    metric_names: dict[str, MetricName] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_metric_source(self) -> LongSpec:
        if (self.metric_column is None) == (self.metric is None):
            raise ValueError("long: set exactly one of 'metric_column' or 'metric'")
        if self.metric_names and self.metric_column is None:
            raise ValueError("long.metric_names needs long.metric_column")
        return self


class DerivedColumn(_Spec):
    """A numeric inventory value read from a column, divided by a constant (e.g. KB -> GB)."""

    column: str
    divide_by: float = Field(1.0, gt=0.0)


class InventorySpec(_Spec):
    """Where the inventory comes from.

    Attributes:
        source: path or URI of an inventory file (CSV or Parquet); None derives the inventory from
            the metric files themselves (one row per server, from its latest non-zero values).
        csv: how to split ``source`` if it is a CSV file.
        columns: contract inventory column -> source column (or ``{column, divide_by}``).
        defaults: values for contract columns not in ``columns``. Without one, ``hostname`` is the
            server id, other text columns are ``unknown`` and numbers are NaN.
    """

    source: str | None = None
    csv: CsvSpec = CsvSpec()
    columns: dict[InventoryColumn, str | DerivedColumn] = Field(default_factory=dict)
    defaults: dict[InventoryColumn, str | float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> InventorySpec:
        if self.source is not None and "server_id" not in self.columns:
            raise ValueError("inventory.columns must map server_id when inventory.source is set")
        if self.source is None and "server_id" in self.columns:
            raise ValueError("inventory.columns.server_id needs inventory.source (derived inventories "
                             "take the server id of the metric rows)")
        text_derived = [c for c, v in self.columns.items()
                        if isinstance(v, DerivedColumn) and c not in NUMERIC_INVENTORY_COLUMNS]
        if text_derived:
            raise ValueError(f"divide_by applies to numeric columns only, not {', '.join(text_derived)}")
        both = sorted(set(self.columns) & set(self.defaults))
        if both:
            raise ValueError(f"inventory column(s) {', '.join(both)} are in both 'columns' and 'defaults'")
        if "server_id" in self.defaults:
            raise ValueError("inventory.defaults cannot set server_id")
        return self


class Mapping(_Spec):
    """How one kind of monitoring export maps onto the contract's long frame.

    Attributes:
        name: label used in logs.
        layout: ``wide`` (one row per sample time, one column per metric) or ``long`` (one value per row).
        format: ``auto`` decides by file extension (``.parquet``/``.pq`` is Parquet, anything else CSV).
        csv: delimiter, encoding and decimal separator of CSV files.
        server_id: where the server id comes from.
        timestamp: the sample time column.
        metrics: wide layout: contract metric -> how to compute it.
        long: long layout: value and metric columns.
        interval_seconds: nominal spacing of samples; None uses each series' median spacing.
        day_timezone: zone whose calendar days the daily roll-up uses.
        inventory: optional inventory source.
    """

    name: str = "unnamed"
    layout: Literal["wide", "long"]
    format: Literal["auto", "csv", "parquet"] = "auto"
    csv: CsvSpec = CsvSpec()
    server_id: ServerIdSpec
    timestamp: TimestampSpec
    metrics: dict[MetricName, MetricSpec] = Field(default_factory=dict)
    long: LongSpec | None = None
    interval_seconds: float | None = Field(None, gt=0.0)
    day_timezone: str = "UTC"
    inventory: InventorySpec | None = None

    @field_validator("day_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_timezone(value)

    @model_validator(mode="after")
    def _layout_fields(self) -> Mapping:
        if self.layout == "wide":
            if not self.metrics:
                raise ValueError("layout 'wide' needs 'metrics' (at least one of cpu, memory, disk, network)")
            if self.long is not None:
                raise ValueError("'long' applies to layout 'long' only; use 'metrics' for a wide file")
        else:
            if self.long is None:
                raise ValueError("layout 'long' needs a 'long' section (value, and metric or metric_column)")
            if self.metrics:
                raise ValueError("'metrics' applies to layout 'wide' only; use 'long' for a long file")
        return self

    def column_roles(self) -> dict[str, str]:
        """Source columns the metric files must have, each with the mapping key that names it."""
        roles: dict[str, str] = {}
        if self.server_id.column is not None:
            roles.setdefault(self.server_id.column, "server_id.column")
        roles.setdefault(self.timestamp.column, "timestamp.column")
        for metric, spec in self.metrics.items():
            for key in ("percent", "usage", "capacity"):
                column = getattr(spec, key)
                if column is not None:
                    roles.setdefault(column, f"metrics.{metric}.{key}")
        if self.long is not None:
            roles.setdefault(self.long.value, "long.value")
            if self.long.metric_column is not None:
                roles.setdefault(self.long.metric_column, "long.metric_column")
        if self.inventory is not None and self.inventory.source is None:
            for target, source in self.inventory.columns.items():
                column = source if isinstance(source, str) else source.column
                roles.setdefault(column, f"inventory.columns.{target}")
        return roles

    def metric_names(self) -> tuple[str, ...]:
        """Contract metrics a wide file yields per row (empty for a long file)."""
        return tuple(self.metrics)


def contract_mapping() -> Mapping:
    """The mapping of files already in the contract's raw layout (server_id, ds, metric, value).

    Returns:
        A long-layout Mapping reading columns server_id, ds (ISO text, UTC), metric and value.
    """
    return Mapping(
        name="contract",
        layout="long",
        server_id=ServerIdSpec(column="server_id"),
        timestamp=TimestampSpec(column="ds"),
        long=LongSpec(value="value", metric_column="metric"),
    )


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at ``path`` (used to list its allowed keys)."""
    model: Any = Mapping
    expect_key = False
    for part in path:
        if expect_key:
            expect_key = False
            continue
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        field = model.model_fields.get(str(part)) if is_model else None
        if field is None:
            return None
        annotation = field.annotation
        if get_origin(annotation) in (Union, types.UnionType):
            annotation = next((a for a in get_args(annotation) if a is not type(None)), annotation)
        if get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
            if get_origin(annotation) in (Union, types.UnionType):
                annotation = next((a for a in get_args(annotation)
                                   if isinstance(a, type) and issubclass(a, BaseModel)), annotation)
            expect_key = True
        model = annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def describe_validation_error(err: ValidationError, where: str) -> str:
    """One line naming the mapping file, the offending key and what is allowed."""
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if p != "[key]")
    key = ".".join(str(p) for p in loc)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        owner = _model_at(loc[:-1])
        allowed = ", ".join(owner.model_fields) if owner is not None else "(see docs/ingest.md)"
        msg = f"unknown key; allowed keys here: {allowed}"
        detail = f"key '{key}'"
    elif first["type"] == "missing":
        detail = f"key '{key}'"
        msg = "is required"
    else:
        value = first.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        detail = f"key '{key}'{shown}" if key else "mapping"
    more = f" (and {len(err.errors()) - 1} more problem(s))" if len(err.errors()) > 1 else ""
    return f"{where}: {detail}: {msg}{more}"


def parse_mapping(data: Any, where: str = "mapping") -> Mapping:
    """Validate a mapping given as plain data (what ``yaml.safe_load`` returns).

    Args:
        data: the mapping as nested dicts.
        where: how to name the mapping in error messages (usually its file).

    Returns:
        The validated, frozen Mapping.

    Raises:
        ConfigError: naming ``where``, the key and what is allowed.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a mapping must be a YAML mapping of keys, found {type(data).__name__}")
    try:
        return Mapping.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, where)) from err


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping YAML file (``yaml.safe_load``).

    Args:
        path: the local mapping file.

    Returns:
        The validated, frozen Mapping.

    Raises:
        ConfigError: the file is missing, not YAML, or a key is unknown or invalid (the message names
            the file, the key and what is allowed).
    """
    path = Path(path)
    data = read_yaml(path, "mapping file", "--mapping")
    return parse_mapping(data, f"mapping file {path}")
