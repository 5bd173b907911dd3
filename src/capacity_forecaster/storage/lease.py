"""Leases of running stages: whether a run that committed a table and has not completed is still running.

A table version committed by a run that has not completed is either work in progress (the run is
still committing its other tables) or the leftover of a run that died. Readers read the last complete
version in both cases (``storage.consistency``); a writer must tell them apart. Building on the
leftover of a dead run is right (a rerun after a crash must not be refused forever); building on the
complete version while the other run is still running would replace that run's rows when it
completes. So a running stage keeps a lease, ``_active/<run id>.json`` (host, process id, last
heartbeat), rewritten every ``HEARTBEAT_SECONDS`` and deleted when the run ends. A run is presumed
running while its lease is younger than ``LEASE_SECONDS`` and, when it was written in this boot and
pid namespace, its process lives. Heartbeats are compared with this host's clock: hosts sharing a
lake need clocks within a few seconds of each other (NTP), as S3's request signing needs anyway
within minutes. Leases of killed runs are deleted when a later stage completes (``sweep``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import posixpath
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from capacity_forecaster.errors import StorageError

if TYPE_CHECKING:
    from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)

ACTIVE_DIR = "_active"
LEASE_SECONDS = 60.0
HEARTBEAT_SECONDS = 15.0


def _path(run_id: str) -> str:
    return posixpath.join(ACTIVE_DIR, f"{run_id}.json")


def _process_space() -> str:
    """Where this process's id is meaningful: host name, boot id and pid namespace.

    Containers often share a host name (SageMaker's ``algo-1``), so a process id is only checked
    against a lease written in the same boot and pid namespace.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # not Linux: no process id is checked, the heartbeat decides
        return ""
    return f"{socket.gethostname()}/{boot}/{namespace}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process with that id
        return True
    except OSError:
        return False
    return True


def running(lake: Lake, run_id: str, *, now: dt.datetime | None = None) -> str | None:
    """Why run ``run_id`` is presumed still running (its lease), or None when it is not.

    A run without a lease has ended (its manifest in ``_runs/`` says how) or was killed before it
    wrote one; a lease older than ``LEASE_SECONDS``, or one written in this boot and pid namespace
    whose process is gone, is the leftover of a run that was killed.
    """
    lease = lake.read_json(_path(run_id))
    if lease is None:
        return None
    try:
        beat = dt.datetime.fromisoformat(str(lease["heartbeat"]))
        host, pid, stage = str(lease["host"]), int(lease["pid"]), str(lease.get("stage", "?"))
    except (KeyError, TypeError, ValueError):
        return None
    age = ((now or dt.datetime.now(dt.UTC)) - beat).total_seconds()
    if age > LEASE_SECONDS:
        return None
    space = _process_space()
    if space and lease.get("process_space") == space and not _process_alive(pid):
        return None
    return f"run {run_id} ({stage}) on {host}, process {pid}, last heard {max(age, 0):.0f} s ago"


class Lease:
    """The lease of the stage running in this process: taken on ``start``, renewed, deleted on ``stop``."""

    def __init__(self, lake: Lake, run_id: str, stage: str) -> None:
        self.lake, self.run_id, self.stage = lake, run_id, stage
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        self.lake.write_json(_path(self.run_id), {
            "run_id": self.run_id, "stage": self.stage, "host": socket.gethostname(), "pid": os.getpid(),
            "process_space": _process_space(), "heartbeat": dt.datetime.now(dt.UTC).isoformat(),
        })

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._write()
            except StorageError as err:  # the stage itself will meet the same storage error
                log.debug("could not renew the lease of run %s: %s", self.run_id, err)

    def start(self) -> None:
        """Write the lease and renew it in the background until ``stop``."""
        self._write()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.run_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and delete the lease (a lease left behind ages out after ``LEASE_SECONDS``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_SECONDS)
        try:
            self.lake.delete_file(_path(self.run_id))
        except StorageError as err:
            log.debug("could not delete the lease of run %s: %s", self.run_id, err)


def sweep(lake: Lake) -> int:
    """Delete the leases of runs that no longer run (killed ones'); returns how many."""
    removed = 0
    for rel in lake.list_files(ACTIVE_DIR):
        run_id = posixpath.basename(rel).removesuffix(".json")
        if rel.endswith(".json") and running(lake, run_id) is None:
            lake.delete_file(rel)
            removed += 1
    return removed
