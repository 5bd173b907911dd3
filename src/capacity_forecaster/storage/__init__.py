"""The lake: local folder or S3, Parquet tables, atomic writes, run manifests and SQL views."""

from capacity_forecaster.storage.lake import Lake, TableInfo

__all__ = ["Lake", "TableInfo"]
