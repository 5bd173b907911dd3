"""Source mappings: how the columns of a monitoring export become server, time, metric and value."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from capacity_forecaster.errors import ConfigError, other_problems
from capacity_forecaster.etl.specs import (
    CsvSpec,
    ExcludeSpec,
    InventorySpec,
    LongSpec,
    MetricName,
    MetricSpec,
    ServerIdSpec,
    Spec,
    TimestampSpec,
    WeightSpec,
    check_timezone,
)
from capacity_forecaster.schema import METRICS
from capacity_forecaster.yamlfile import read_yaml


class Mapping(Spec):
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
        weight: run-length rows: the column saying how many consecutive samples each row stands for
            (needs ``interval_seconds``).
        exclude_rows: rows that are no sample (a column value saying so), quarantined as ``excluded_row``.
        inventory: optional inventory source; without one, ingest derives an inventory of the
            server ids (every other column unknown).
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
    weight: WeightSpec | None = None
    exclude_rows: ExcludeSpec | None = None
    inventory: InventorySpec | None = None

    @field_validator("day_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="before")
    @classmethod
    def _inventory_csv(cls, data: Any) -> Any:
        # An inventory file of the same export takes its CSV settings unless told otherwise (helper-51: with
        # csv.decimal ',' for the export, '16.384' MB in the inventory was read as 16.384, not 16384).
        if isinstance(data, dict) and "csv" in data and isinstance(data.get("inventory"), dict) \
                and "csv" not in data["inventory"]:
            # Not its skip_lines: the lines above a header are the export file's own.
            shared = {k: v for k, v in data["csv"].items() if k != "skip_lines"} if isinstance(data["csv"], dict) \
                else data["csv"]
            return {**data, "inventory": {**data["inventory"], "csv": shared}}
        return data

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
        if self.weight is not None and self.interval_seconds is None:
            raise ValueError("'weight' needs 'interval_seconds': the spacing of the samples one row stands "
                             "for (e.g. 300 for 5-minute samples)")
        has_file = self.inventory is not None and self.inventory.source is not None
        if self.weight is not None and self.weight.until is not None and not has_file:
            raise ValueError(f"'weight.until' needs 'inventory.source': the file whose column '{self.weight.until}' "
                             f"holds each server's last sample time")
        for metric, spec in self.metrics.items():
            if spec.inventory_capacity is not None and not has_file:
                raise ValueError(f"'metrics.{metric}.inventory_capacity' needs 'inventory.source': the file "
                                 f"whose column '{spec.inventory_capacity}' holds each server's capacity")
        return self

    def column_roles(self) -> dict[str, str]:
        """Source columns the metric files must have, each with the mapping key that names it."""
        roles: dict[str, str] = {}
        if self.server_id.column is not None:
            roles.setdefault(self.server_id.column, "server_id.column")
        roles.setdefault(self.timestamp.column, "timestamp.column")
        for metric, spec in self.metrics.items():
            for key in ("percent", "fraction", "usage", "idle", "free", "capacity"):
                column = getattr(spec, key)
                if column is not None:
                    roles.setdefault(column, f"metrics.{metric}.{key}")
        if self.weight is not None:
            roles.setdefault(self.weight.column, "weight.column")
        if self.exclude_rows is not None:
            roles.setdefault(self.exclude_rows.column, "exclude_rows.column")
        if self.long is not None:
            roles.setdefault(self.long.value, "long.value")
            if self.long.metric_column is not None:
                roles.setdefault(self.long.metric_column, "long.metric_column")
        if self.inventory is not None and self.inventory.source is None:
            for target, source in self.inventory.columns.items():
                column = source if isinstance(source, str) else source.column
                roles.setdefault(column, f"inventory.columns.{target}")
        return roles

    def inventory_capacities(self) -> dict[str, str]:
        """Columns of the inventory file that metrics take their capacity from, with the key naming each."""
        return {spec.inventory_capacity: f"metrics.{metric}.inventory_capacity"
                for metric, spec in self.metrics.items() if spec.inventory_capacity is not None}

    def inventory_joins(self) -> dict[str, str]:
        """Every column of the inventory file joined to the metric rows: capacities and ``weight.until``."""
        joins = self.inventory_capacities()
        if self.weight is not None and self.weight.until is not None:
            joins.setdefault(self.weight.until, "weight.until")
        return joins

    def inventory_times(self) -> set[str]:
        """The joined inventory columns that hold times (``weight.until``), not numbers."""
        return {self.weight.until} if self.weight is not None and self.weight.until is not None else set()

    def metric_names(self) -> tuple[str, ...]:
        """Contract metrics a wide file yields per row (empty for a long file)."""
        return tuple(self.metrics)

    def fraction_metrics(self) -> set[str]:
        """Contract metrics whose values the mapping declares as fractions (multiplied by 100 on read)."""
        if self.long is not None:
            return {metric for metric in METRICS if self.long.unit_of(metric) == "fraction"}
        return {metric for metric, spec in self.metrics.items() if spec.fraction is not None}


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


def _sections(cls: type[BaseModel]) -> set[str]:
    return {cls.__name__}.union(*(_sections(sub) for sub in cls.__subclasses__()))


# Names pydantic puts in an error's location for the branch of a union it tried (helper-51: messages named
# 'inventory.columns.cpu_cores.str' and '...DerivedColumn.divide_by'): never keys a user wrote.
_UNION_TAGS = frozenset({"str", "int", "float", "bool", *_sections(Spec)})


def _key_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p for p in loc if p != "[key]" and p not in _UNION_TAGS)


def describe_validation_error(err: ValidationError, where: str) -> str:
    """One line naming the mapping file, the offending key and what is allowed."""
    # A misspelt key also makes its intended key missing: name the misspelling, it is the cause.
    errors = err.errors()
    # A value that may be text or a section ({column, divide_by}) fails both ways: the section's error says more.
    first = next((e for e in errors if e["type"] == "extra_forbidden"),
                 max(errors, key=lambda e: len(_key_path(e["loc"]))))
    loc = _key_path(first["loc"])
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
    # The other branches of the union at the shown key are not further problems ("also: ... should be a string").
    branches = [e for e in errors if e is not first and any(p in _UNION_TAGS for p in e["loc"])
                and loc[:len(_key_path(e["loc"]))] == _key_path(e["loc"])]
    more = other_problems([e for e in errors if not any(e is b for b in branches)], first)
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
