"""Stage records: which table versions belong together.

A stage commits its tables one by one (each commit atomic, see ``storage.delta``), so a stage that
dies between two commits leaves some tables new and others old. When a stage run completes it
writes one record, ``_stages/<stage>.json`` (a single atomic PUT), naming the version of every
table the stage owns: the ones this run wrote plus, carried over from the stage's previous record,
the ones it did not rewrite. ``Lake`` reads a table's newest version only when that version is
named by a record, was written outside any stage run, or was written by the reading run itself;
otherwise it reads the version the last complete run recorded, so the tables a reader sees always
come from complete runs of their stages.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from capacity_forecaster.errors import StorageError

if TYPE_CHECKING:
    from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)

STAGES_DIR = "_stages"
RUNS_DIR = "_runs"


@dataclass(frozen=True)
class StageRecord:
    """The last complete run of one stage.

    Attributes:
        stage: stage name.
        run_id: the run that completed.
        finished: when it completed (UTC, ISO 8601).
        tables: table name -> Delta version, for every table the stage owns.
    """

    stage: str
    run_id: str
    finished: str
    tables: dict[str, int] = field(default_factory=dict)


def _record(payload: dict[str, Any]) -> StageRecord:
    return StageRecord(
        stage=str(payload["stage"]), run_id=str(payload["run_id"]), finished=str(payload["finished"]),
        tables={str(k): int(v) for k, v in (payload.get("tables") or {}).items()},
    )


def read_records(lake: Lake) -> dict[str, StageRecord]:
    """Stage name -> its last complete record (stages that never completed are absent)."""
    records: dict[str, StageRecord] = {}
    for rel in lake.list_files(STAGES_DIR):
        if not rel.endswith(".json"):
            continue
        payload = lake.read_json(rel)
        if payload is None:
            continue
        try:
            record = _record(payload)
        except (KeyError, TypeError, ValueError) as err:
            raise StorageError(f"{lake.display(rel)} is damaged ({err}); re-run that stage") from err
        records[record.stage] = record
    return records


def recorded_version(records: dict[str, StageRecord], table: str) -> int | None:
    """The newest version of ``table`` a stage record names.

    A table's history is linear (every commit is checked against the version its writer read), so
    the highest recorded version holds every complete run's changes; the record that completed last
    may name an older one (two runs at once: the first to commit completes last).
    """
    versions = [r.tables[table] for r in records.values() if table in r.tables]
    return max(versions) if versions else None


_RECORD_ATTEMPTS = 5


def write_record(lake: Lake, stage: str, run_id: str, tables: dict[str, int]) -> StageRecord:
    """Record a completed stage run: ``tables`` (name -> version written) plus the stage's earlier tables.

    A table keeps the newer of its recorded version and this run's: a run of the same stage that
    committed after this one and completed first already recorded a version holding this run's rows.
    Two runs completing at once both read the record before either writes it; the record is read
    back and merged again until it names at least every version this run wrote.
    """
    path = posixpath.join(STAGES_DIR, f"{stage}.json")
    for _ in range(_RECORD_ATTEMPTS):
        previous = read_records(lake).get(stage)
        owned = dict(previous.tables) if previous is not None else {}
        for name, version in tables.items():
            owned[name] = max(version, owned.get(name, version))
        record = StageRecord(stage=stage, run_id=run_id, finished=dt.datetime.now(dt.UTC).isoformat(),
                             tables=owned)
        lake.write_json(path, {"stage": record.stage, "run_id": record.run_id, "finished": record.finished,
                               "tables": record.tables})
        lake.refresh()
        stored = read_records(lake).get(stage)
        if stored is not None and all(stored.tables.get(name, -1) >= version for name, version in tables.items()):
            return record
    raise StorageError(f"cannot record the completed {stage} run {run_id} in {lake.display(path)}: other runs "
                       f"of {stage} kept replacing the record; run the command again")


def incomplete(lake: Lake, table: str) -> tuple[str, str] | None:
    """``(stage, run id)`` of the run that wrote the newest version of ``table`` and did not complete.

    None when the newest version is named by a stage record or was written outside a stage run.
    """
    snap = lake.delta.snapshot(_table_path(table))
    if snap is None or snap.run_id is None:
        return None
    recorded = recorded_version(lake.stage_records(), table)
    if recorded is not None and recorded >= snap.version:
        return None
    return str(snap.stage), snap.run_id


def _table_path(table: str) -> str:
    from capacity_forecaster.schema import table_spec

    return table_spec(table).path


def parse_time(text: str) -> dt.datetime | None:
    """``text`` as a time (ISO 8601 date or date-time), or None when it is not one (then a run id)."""
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def list_runs(lake: Lake, stage: str | None = None) -> list[dict[str, Any]]:
    """All run manifests in the lake (``_runs/``), oldest first, optionally for one stage."""
    runs = []
    for rel in lake.list_files(RUNS_DIR):
        if not rel.endswith(".json"):
            continue
        payload = lake.read_json(rel)
        if payload and (stage is None or payload.get("stage") == stage):
            runs.append(payload)
    return runs


def succeeded_runs(lake: Lake) -> set[str]:
    """The ids of every run whose manifest says it succeeded (its writes were published)."""
    return {str(run["run_id"]) for run in list_runs(lake)
            if run.get("status", "succeeded") == "succeeded" and run.get("run_id")}


def find_run(lake: Lake, run_id: str) -> dict[str, Any]:
    """The manifest of run ``run_id`` (``_runs/*-<run_id>.json``).

    Raises:
        StorageError: no run has that id.
    """
    for rel in lake.list_files(RUNS_DIR):
        if rel.endswith(f"-{run_id}.json"):
            payload = lake.read_json(rel)
            if payload is not None:
                return payload
    raise StorageError(f"no run '{run_id}' in lake {lake.uri}: give a run id (the run_id of a manifest "
                       "in _runs/) or a time such as 2026-12-01T08:00")
