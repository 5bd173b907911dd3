"""Source expansion and the copies an ingest reads once (etl.sources)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from capacity_forecaster.errors import InputError
from capacity_forecaster.etl import sources
from capacity_forecaster.etl.sources import expand_sources, identical_files


def local(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def test_copies_are_found_by_size_then_bytes_and_empty_files_are_no_copies(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    day = "host,ts,cpu\n" + "".join(f"web,2024-01-01T{h:02d}:00:00Z,{h % 10}\n" for h in range(24))
    (tmp_path / "a.csv").write_text(day)
    (tmp_path / "b.csv").write_text(day)                       # a copy
    (tmp_path / "c.csv").write_text(day.replace("web", "db1"))  # the same size, other bytes
    (tmp_path / "e1.csv").write_text("")
    (tmp_path / "e2.csv").write_text("")
    files = expand_sources([str(tmp_path)], local)
    assert [f.size for f in files] == [len(day)] * 3 + [0, 0]  # sizes from the listing
    read: list[str] = []
    digest = sources._digest
    monkeypatch.setattr(sources, "_digest",
                        lambda source, limit=None: read.append(source.path) or digest(source, limit))
    copies = [(c.path, o.path) for c, o in identical_files(files)]
    assert copies == [(str(tmp_path / "b.csv"), str(tmp_path / "a.csv"))]
    assert sorted(set(read)) == [str(tmp_path / n) for n in ("a.csv", "b.csv", "c.csv")]  # never the empty ones


def test_a_copy_that_cannot_be_read_is_one_clear_line(tmp_path: Path) -> None:
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("host,ts,cpu\nweb,2024-01-01T00:00:00Z,5\n")

    class Refusing:
        type_name = "local"

        def open_input_stream(self, path: str) -> None:
            raise OSError("AWS Error ACCESS_DENIED")

    files = [dataclasses.replace(f, filesystem=Refusing()) for f in expand_sources([str(tmp_path)], local)]
    with pytest.raises(InputError, match=r"a.csv: cannot be opened: AWS Error ACCESS_DENIED"):
        identical_files(files)
