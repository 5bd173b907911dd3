"""The inventory joined to the servers with metrics, and an ingested inventory merged into the lake's."""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.etl.inventory import ids_only_inventory
from capacity_forecaster.etl.inventory_join import (
    SOURCE_COLUMN,
    id_only,
    id_only_servers,
    join_to_metrics,
    join_warnings,
    merge_inventory,
)


def rows(*ids: str, cores: float = 4.0, source: str | None = "cmdb") -> pd.DataFrame:
    """Informative inventory rows (a core count and a cost) of one source."""
    return pd.DataFrame({"server_id": list(ids), "hostname": [i.lower() for i in ids], "cpu_cores": cores,
                         "monthly_cost_usd": 100.0, SOURCE_COLUMN: source})


def test_ids_differing_in_case_or_whitespace_join_to_the_metrics_id() -> None:
    inventory = rows("ams-app-01.bank.local", "AMS-DB-01.BANK.LOCAL ", "AMS-WEB-01.bank.local", "AMS-OLD-07")
    metrics = ["AMS-APP-01.bank.local", "AMS-DB-01.bank.local", "AMS-WEB-01.bank.local", "AMS-WEB-02.bank.local"]
    joined = join_to_metrics(inventory, metrics)
    assert joined.renamed == [("ams-app-01.bank.local", "AMS-APP-01.bank.local"),
                              ("AMS-DB-01.BANK.LOCAL ", "AMS-DB-01.bank.local")]
    assert joined.added == ["AMS-WEB-02.bank.local"] and joined.without_metrics == ["AMS-OLD-07"]
    assert joined.ambiguous == {}
    out = joined.inventory.set_index("server_id")
    assert sorted(out.index) == sorted([*metrics, "AMS-OLD-07"])
    # The joined row keeps everything but its id; the added one knows only its id.
    assert out.loc["AMS-DB-01.bank.local", "hostname"] == "ams-db-01.bank.local "
    assert out.loc["AMS-DB-01.bank.local", "cpu_cores"] == 4.0
    assert np.isnan(out.loc["AMS-WEB-02.bank.local", "cpu_cores"])
    assert pd.isna(out.loc["AMS-WEB-02.bank.local", SOURCE_COLUMN])


def test_an_ambiguous_match_is_not_joined_and_is_reported() -> None:
    inventory = rows("AMS-DB-01", "ams-db-01", "Web-1")
    joined = join_to_metrics(inventory, ["Ams-Db-01", "WEB-1", "web-1"])
    # Two inventory ids for one metrics id, and two metrics ids for one inventory id.
    assert joined.ambiguous == {"Ams-Db-01": ["AMS-DB-01", "ams-db-01"], "WEB-1": ["Web-1"], "web-1": ["Web-1"]}
    assert joined.renamed == [] and joined.added == ["Ams-Db-01", "WEB-1", "web-1"]
    assert joined.without_metrics == ["AMS-DB-01", "Web-1", "ams-db-01"]


def test_an_exact_match_wins_and_leaves_the_other_spelling_alone() -> None:
    joined = join_to_metrics(rows("db-1", "DB-1"), ["db-1"])
    assert joined.renamed == [] and joined.ambiguous == {} and joined.without_metrics == ["DB-1"]
    # ... and the other spelling is pointed out as a likely leftover.
    assert joined.shadowed == [("DB-1", "db-1")]
    (message,) = join_warnings([], {}, [], joined.without_metrics, joined.shadowed)
    assert "1 of them differ only in case or whitespace from a server with metrics and its own row (DB-1 ~ db-1)" \
        in message


def test_an_informative_row_replaces_an_id_only_row_of_the_metrics_id() -> None:
    inventory = pd.concat([ids_only_inventory(["AMS-DB-01.bank.local"]), rows("AMS-DB-01.BANK.LOCAL")],
                          ignore_index=True)
    joined = join_to_metrics(inventory, ["AMS-DB-01.bank.local"])
    assert joined.renamed == [("AMS-DB-01.BANK.LOCAL", "AMS-DB-01.bank.local")]
    assert joined.inventory["server_id"].tolist() == ["AMS-DB-01.bank.local"]
    assert joined.inventory["cpu_cores"].tolist() == [4.0] and joined.added == []


def test_without_add_missing_no_row_is_added() -> None:
    joined = join_to_metrics(rows("a"), ["a", "b"], add_missing=False)
    assert joined.inventory["server_id"].tolist() == ["a"] and joined.added == []


def test_id_only_tells_rows_that_know_nothing_but_the_id() -> None:
    frame = pd.concat([ids_only_inventory(["a"]), rows("b"), rows("c", cores=np.nan).assign(
        monthly_cost_usd=np.nan, hostname="c")], ignore_index=True)
    assert id_only(frame).tolist() == [True, False, True]
    assert id_only_servers(frame, ["a", "b", "c", "d"]) == ["a", "c", "d"]


def test_a_new_inventory_of_the_same_source_replaces_the_earlier_rows() -> None:
    old = pd.concat([rows("AMS-DB-01.BANK.LOCAL", "web-1", "old-7", "kept-1"), rows("other-1", source="cmdb-b"),
                     ids_only_inventory(["web-2"])], ignore_index=True)
    new = rows("AMS-DB-01.bank.local", "web-1", "web-2", cores=8.0)
    merged = merge_inventory(old, new, ["AMS-DB-01.bank.local", "web-1", "web-2", "kept-1", "other-1"])
    out = merged.inventory.set_index("server_id")
    # The misspelt and the retired rows of the same source are gone; a server with metrics the new
    # delivery no longer lists keeps its row; other sources are untouched.
    assert sorted(out.index) == ["AMS-DB-01.bank.local", "kept-1", "other-1", "web-1", "web-2"]
    # The misspelt row is listed again under the metrics' spelling: replaced, not "no longer listed" (helper-37).
    assert merged.removed == ["old-7"] and merged.unlisted == ["kept-1"]
    assert out.loc["web-1", "cpu_cores"] == 8.0 and out.loc["web-2", "cpu_cores"] == 8.0
    assert out.loc["other-1", SOURCE_COLUMN] == "cmdb-b"
    warnings = merged.warnings()
    assert len(warnings) == 2 and "'cmdb' no longer lists 1 server(s) without metrics" in warnings[0]
    assert "e.g. old-7" in warnings[0] and "AMS-DB" not in warnings[0] and "kept-1" in warnings[1]


def test_an_id_only_row_never_overwrites_a_known_row() -> None:
    old = rows("a")
    merged = merge_inventory(old, ids_only_inventory(["a", "b"]), ["a", "b"])
    out = merged.inventory.set_index("server_id")
    assert out.loc["a", "cpu_cores"] == 4.0 and np.isnan(out.loc["b", "cpu_cores"])
    # add_only: not even an informative row replaces one
    merged = merge_inventory(old, rows("a", cores=16.0, source=None), ["a"], add_only=True)
    assert merged.inventory["cpu_cores"].tolist() == [4.0]


def test_a_lake_without_an_inventory_takes_the_new_one() -> None:
    merged = merge_inventory(None, rows("b", "a"), [])
    assert merged.inventory["server_id"].tolist() == ["a", "b"] and merged.warnings() == []


def test_warnings_name_counts_and_examples() -> None:
    messages = join_warnings([("AMS-DB-01.BANK.LOCAL", "AMS-DB-01.bank.local")], {"x": ["X", "x "]},
                             ["w1", "w2", "w3", "w4"], ["old-7"])
    assert messages[0].endswith("(the metrics' id is kept): AMS-DB-01.BANK.LOCAL -> AMS-DB-01.bank.local")
    assert "1 server(s) with metrics match more than one inventory id" in messages[1] and "x ~ X / x " in messages[1]
    assert messages[2].startswith("4 server(s) have metrics but no inventory row: kept with an id-only row")
    assert messages[2].endswith("e.g. w1, w2, w3 and 1 more")
    assert messages[3].startswith("1 inventory row(s) have no metrics in the lake") and "old-7" in messages[3]
    assert join_warnings([], {}, [], []) == []
    # helper-66: a server whose row in the file gives only its id read "no inventory row".
    (thin,) = join_warnings([], {}, [], [], thin=["small"])
    assert thin == ("1 server(s) with metrics have an inventory row that gives only their id (size and cost unknown), "
                    "e.g. small: are the file's columns mapped under inventory.columns?")


def test_fully_qualified_metric_ids_of_short_inventory_ids_get_the_pattern_hint() -> None:
    """helper-60: 'ams-app-01' in the CMDB, 'ams-app-01.bank.local' in the metrics: the fleet counted twice."""
    added = ["AMS-APP-01.bank.local", "ams-db-01.bank.local", "lon-x"]
    (message, _) = join_warnings([], {}, added, ["ams-app-01", "AMS-DB-01", "old-07"])
    assert message.endswith("; 2 of them are an inventory id with a domain (AMS-APP-01.bank.local): server_id.pattern "
                            "'^([^.]+)' in the mapping keeps the host name before the first dot as the id")
    (message, _) = join_warnings([], {}, ["a.b", "c", "d"], ["a"])  # one of three: no pattern to suggest
    assert "server_id.pattern" not in message
