"""Mapping files: the shipped examples load; mistakes name the file, the key and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from capacity_forecaster.errors import ConfigError
from capacity_forecaster.etl.mapping import Mapping, contract_mapping, load_mapping, parse_mapping

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
WIDE = {
    "layout": "wide",
    "server_id": {"column": "host"},
    "timestamp": {"column": "ts"},
    "metrics": {"cpu": {"percent": "cpu"}},
}


def with_changes(**changes: object) -> dict:
    return {**WIDE, **changes}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "map.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["bitbrains.yaml", "bitbrains_faststorage.yaml", "generic_wide.yaml",
                                  "generic_long.yaml", "nab.yaml"])
def test_shipped_mappings_load(name: str) -> None:
    mapping = load_mapping(MAPPINGS / name)
    assert isinstance(mapping, Mapping)


def test_bitbrains_mapping_reads_seconds_and_only_percent_metrics() -> None:
    mapping = load_mapping(MAPPINGS / "bitbrains.yaml")
    assert mapping.timestamp.kind == "epoch" and mapping.timestamp.unit == "s"
    assert set(mapping.metrics) == {"cpu", "memory"}
    assert mapping.metrics["memory"].usage == "Memory usage [KB]"
    assert mapping.server_id.prefix == "bitbrains-"
    roles = mapping.column_roles()
    assert roles["Timestamp [ms]"] == "timestamp.column"
    assert roles["CPU cores"] == "inventory.columns.cpu_cores"


def test_contract_mapping_is_long() -> None:
    mapping = contract_mapping()
    assert mapping.layout == "long" and mapping.long is not None and mapping.long.metric_column == "metric"


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "layout: wide\nserver_id: {column: host}\ntimestamp: {column: ts, unti: ms}\n"
                           "metrics: {cpu: {percent: cpu}}\n")
    with pytest.raises(ConfigError) as err:
        load_mapping(path)
    message = str(err.value)
    assert str(path) in message and "'timestamp.unti'" in message
    assert "allowed keys here: column, kind, unit, format, timezone" in message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (with_changes(timestamp={"column": "ts", "kind": "epoch", "unit": "h"}),
         "key 'timestamp.unit' = 'h'"),
        (with_changes(day_timezone="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (with_changes(server_id={"from_filename": r"\d+\.csv"}), "needs a capture group"),
        (with_changes(server_id={"from_filename": "([0-9]+"}), "not a valid regular expression"),
        (with_changes(server_id={"column": "a", "from_filename": "(a)"}), "exactly one of 'column' or"),
        (with_changes(metrics={}), "layout 'wide' needs 'metrics'"),
        (with_changes(metrics={"cpu": {"usage": "u"}}), "also needs 'capacity'"),
        (with_changes(metrics={"cpu": {"percent": "p", "usage": "u", "capacity": "c"}}), "exactly one of"),
        (with_changes(metrics={"gpu": {"percent": "p"}}), "key 'metrics.gpu'"),
        (with_changes(metrics={"cpu": {"percent": "p", "fraction": "f"}}),
         "exactly one of 'percent' (0-100), 'fraction' (0-1), 'usage'"),
        (with_changes(layout="long", metrics={}, long={"value": "v", "metric": "cpu", "unit": "ratio"}),
         "key 'long.unit' = 'ratio': expected 'percent' (0-100) or 'fraction' (0-1)"),
        (with_changes(layout="long", metrics={}, long={"value": "v", "metric": "cpu", "unit": {"gpu": "fraction"}}),
         "key 'long.unit': expected 'percent' (0-100) or 'fraction' (0-1), or a unit per metric"),
        (with_changes(layout="long", metrics={}, long={"value": "v", "metric": "cpu", "scale": 100}),
         "key 'long.scale': unknown key; allowed keys here: value, unit,"),
        (with_changes(csv={"encoding": "utf-16"}), "'utf-16' is not supported"),
        (with_changes(csv={"delimiter": "::"}), "delimiter must be one character"),
        (with_changes(csv={"encoding": "klingon"}), "unknown text encoding"),
        (with_changes(csv={"encoding": "rot13"}), "'rot13' is not a text encoding"),  # helper-51: a traceback
        (with_changes(csv={"encoding": "base64"}), "'base64' is not a text encoding"),
        (with_changes(csv={"encoding": "undefined"}), "'undefined' is not a text encoding"),
        (with_changes(layout="long"), "layout 'long' needs a 'long' section"),
        (with_changes(interval_seconds=0), "key 'interval_seconds' = 0"),
        (with_changes(timestamp={"column": "ts", "kind": "epoch", "format": "%Y"}), "kind 'text' only"),
        (with_changes(inventory={"source": "inv.csv", "columns": {"hostname": "h"}}), "must map server_id"),
        (with_changes(inventory={"columns": {"server_id": "h"}}), "needs inventory.source"),
        (with_changes(inventory={"columns": {"hostname": {"column": "h", "divide_by": 2}}}),
         "numeric columns"),
        (with_changes(inventory={"columns": {"cpu_cores": "c"}, "defaults": {"cpu_cores": 2}}), "both"),
        ({**WIDE, "timestamp": None}, "key 'timestamp'"),
        ({k: v for k, v in WIDE.items() if k != "server_id"}, "key 'server_id': is required"),
    ],
)
def test_invalid_mappings_say_what_is_wrong(data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_mapping(data, "mapping file m.yaml")
    assert str(err.value).startswith("mapping file m.yaml: ")
    assert fragment in str(err.value)


def test_semicolon_tab_delimiter_is_read_as_semicolon() -> None:
    assert parse_mapping(with_changes(csv={"delimiter": ";\t"})).csv.delimiter == ";"
    assert parse_mapping(with_changes(csv={"delimiter": "\t"})).csv.delimiter == "\t"


def test_yaml_errors_and_wrong_shapes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is not valid YAML at line 3, column 1"):
        load_mapping(write(tmp_path, "layout: wide\nmetrics: [unclosed\n"))
    with pytest.raises(ConfigError, match="must be a YAML mapping of keys, found list"):
        load_mapping(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_mapping(tmp_path / "absent.yaml")
    # helper-51: a key written twice kept the last one silently ('layout' twice gave an unrelated error).
    with pytest.raises(ConfigError, match=r"is not valid YAML at line 4, column 3: key 'column' is given twice"):
        load_mapping(write(tmp_path, "layout: wide\nserver_id:\n  column: a\n  column: b\n"))
    with pytest.raises(ConfigError, match=r"not valid YAML .*: could not determine a constructor .*python/object"):
        load_mapping(write(tmp_path, "layout: !!python/object:os.system {}\n"))  # still plain data only


def test_errors_name_the_keys_a_user_wrote_not_pydantic_union_branches() -> None:
    """helper-51: "key 'inventory.columns.cpu_cores.str': ... (also: key '...DerivedColumn.divide_by': ...)"."""
    bad = with_changes(inventory={"columns": {"cpu_cores": {"column": "x", "divide_by": "abc"}}})
    with pytest.raises(ConfigError) as caught:
        parse_mapping(bad, "m.yaml")
    assert str(caught.value) == ("m.yaml: key 'inventory.columns.cpu_cores.divide_by' = 'abc': Input should be a "
                                 "valid number, unable to parse string as a number")


def test_mapping_is_frozen() -> None:
    mapping = parse_mapping(WIDE)
    with pytest.raises(ValidationError, match="frozen"):
        mapping.layout = "long"  # type: ignore[misc]


def test_fraction_units_per_layout() -> None:
    wide = parse_mapping(with_changes(metrics={"cpu": {"fraction": "cpu_ratio"}, "memory": {"percent": "m"}}))
    assert wide.fraction_metrics() == {"cpu"} and wide.metrics["cpu"].value_column == "cpu_ratio"
    assert wide.column_roles()["cpu_ratio"] == "metrics.cpu.fraction"
    long = {"layout": "long", "server_id": {"column": "h"}, "timestamp": {"column": "t"}}
    every = parse_mapping({**long, "long": {"value": "v", "metric_column": "m", "unit": "fraction"}})
    assert every.fraction_metrics() == {"cpu", "memory", "disk", "network"}
    some = parse_mapping({**long, "long": {"value": "v", "metric_column": "m", "unit": {"cpu": "fraction"}}})
    assert some.fraction_metrics() == {"cpu"} and some.long is not None and some.long.unit_of("memory") == "percent"
    assert parse_mapping({**long, "long": {"value": "v", "metric": "cpu"}}).fraction_metrics() == set()


@pytest.mark.parametrize(("server_id", "said"), [
    ({"from_filename": r"(\d+)\.csv", "pattern": "x"}, "server_id.pattern applies to server_id.column"),
    ({"column": "instance", "pattern": "(["}, "server_id.pattern is not a valid regular expression"),
])
def test_a_bad_server_id_pattern_is_named(server_id: dict, said: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(said)):
        parse_mapping(with_changes(server_id=server_id))


def test_a_misspelt_key_is_the_one_problem_named_not_the_key_it_meant() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_mapping(with_changes(timestamp={"colum": "ts"}))
    said = str(caught.value)
    assert "key 'timestamp.colum': unknown key" in said and "also" not in said and "Field required" not in said
