"""Every Parquet file of a pipeline-written lake matches its Glue/Athena columns, column for column.

The lake is written by the real stages (generate, etl, forecast, risk) on a tiny fleet; each file's
footer is read and mapped to the Athena type the Glue definition declares (issue 12: a file Presto
reads must never disagree with the catalog, e.g. INT32/Null where the table says string).
"""

from __future__ import annotations

import posixpath

import pyarrow.parquet as pq
import pytest

from capacity_forecaster.api import run_stage
from capacity_forecaster.aws.catalog import hive_type, lake_definitions
from capacity_forecaster.config import Settings
from capacity_forecaster.schema import PARTITION_SCHEMA, TABLES
from capacity_forecaster.storage import Lake


@pytest.fixture(scope="module")
def pipeline_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    root = tmp_path_factory.mktemp("footers") / "lake"
    settings = Settings.model_validate({
        "lake": {"uri": str(root)},
        "generate": {"servers": 4, "years": 1, "holdout_days": 30},
        "forecast": {"horizon": 30},
    })
    for stage in ("generate", "etl", "forecast", "risk"):
        run_stage(stage, str(root), settings)
    return Lake.open(str(root))


def test_every_file_footer_matches_the_glue_columns(pipeline_lake: Lake) -> None:
    definitions, _ = lake_definitions(pipeline_lake, s3_uri="s3://bucket/capfc")
    assert len(definitions) >= 15
    partition = set(PARTITION_SCHEMA.names)
    checked = 0
    for definition in definitions:
        spec = TABLES[definition.name]
        info = pipeline_lake.table_info(definition.name)
        assert info is not None
        declared = [(c.name, c.type) for c in definition.columns if not (spec.partitioned and c.name in partition)]
        for rel in info.files:
            footer = pq.read_schema(posixpath.join(pipeline_lake.path(spec.path), rel))
            found = [(f.name.lower(), hive_type(f.type, f"{definition.name}.{f.name}")) for f in footer]
            assert found == declared, f"{definition.name}/{rel}"
            checked += 1
    assert checked >= len(definitions)
