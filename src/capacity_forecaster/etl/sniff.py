"""CSV dialect sniffing: the delimiter, the header and the average row size from a file's first bytes."""

from __future__ import annotations

import csv
import posixpath
import re
from collections import Counter
from dataclasses import dataclass

from capacity_forecaster.errors import InputError

SNIFF_BYTES = 256 * 1024
CANDIDATES = (",", ";", "|", "\t")
_SAMPLE_LINES = 50
PARQUET = "Parquet"
_ONLY = "capfc ingest reads CSV or Parquet"
# Leading bytes of formats that are not CSV text (checked before any decoding). Compressed files are
# decompressed by their extension (pyarrow: .gz, .bz2, .zst, .lz4), so these are names that do not say it.
_COMPRESSED = (
    (re.compile(rb"^\x1f\x8b"), "gzip", ".gz"), (re.compile(rb"^BZh[1-9]1AY&SY"), "bzip2", ".bz2"),
    (re.compile(rb"^\x28\xb5\x2f\xfd"), "zstd", ".zst"), (re.compile(rb"^\x04\x22\x4d\x18"), "lz4", ".lz4"),
    (re.compile(rb"^\xfd7zXZ\x00"), "xz", None),
)
_UTF16_32 = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
             b"\xfe\xff": "UTF-16"}
# A JSON document or JSON lines: an object, or an array of objects, arrays or strings.
_JSON = re.compile(rb"^\s*(\{\s*[\"}]|\[\s*[\[{\"\]])")
_MARKUP = re.compile(rb"^\s*<(\?xml|!doctype|!--|html)", re.IGNORECASE)


def not_csv(head: bytes, label: str) -> str | None:
    """What a file that is not CSV text looks like (``PARQUET``, or a one-line message), else None.

    Only leading bytes are judged, so a CSV file is never refused for what it holds further down.
    """
    head = head.removeprefix(b"\xef\xbb\xbf")
    if head.startswith(b"PAR1"):
        return PARQUET
    extension = posixpath.splitext(label.lower())[1]
    for magic, name, suffix in _COMPRESSED:
        if magic.match(head):
            fix = "decompress it first" if suffix is None else f"rename it to end in {suffix}, or decompress it"
            return (f"{label}: looks like {name}-compressed data; {_ONLY}, decompressing .gz, .bz2, .zst and "
                    f".lz4 files by their extension — {fix}")
    if head.startswith(b"PK\x03\x04"):
        # A workbook is a ZIP whatever its name: its first member is an Office or OpenDocument part (helper-46:
        # an .xlsx renamed .csv was told to unzip it).
        workbook = any(part in head[:512] for part in (b"[Content_Types].xml", b"xl/", b"docProps/", b"mimetype"))
        if workbook or extension in (".xlsx", ".xlsm", ".ods"):
            return (f"{label}: looks like a spreadsheet workbook; {_ONLY} — save the sheet as CSV "
                    "(UTF-8) or convert it first")
        return f"{label}: looks like a ZIP archive; {_ONLY} — unzip it and ingest the files inside"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return (f"{label}: looks like an Excel 97-2003 workbook (.xls); {_ONLY} — save the sheet as CSV "
                "(UTF-8) or convert it first")
    for bom, name in _UTF16_32.items():
        if head.startswith(bom):
            return (f"{label}: looks like {name} text (Excel's 'Unicode Text' is UTF-16); capfc ingest reads "
                    "CSV in byte-oriented encodings such as UTF-8 or Latin-1 — save it as UTF-8 CSV")
    if _JSON.match(head):
        return (f"{label}: looks like JSON; {_ONLY} — export the data as CSV, or convert it first (docs/ingest.md "
                "shows a jq line for CloudWatch get-metric-data output)")
    if _MARKUP.match(head):
        return (f"{label}: looks like XML or HTML (an error page saved under the export's name?); {_ONLY} — "
                "export the data as CSV")
    return None


@dataclass(frozen=True)
class Dialect:
    """What the reader needs to know about a CSV file.

    Attributes:
        delimiter: the field delimiter (one character).
        header: column names of the first line, surrounding whitespace trimmed.
        bytes_per_row: average size of a line in the sniffed sample (to size read blocks).
    """

    delimiter: str
    header: tuple[str, ...]
    bytes_per_row: float


def _decode(head: bytes, label: str, encoding: str, truncated: bool) -> str:
    """The sample as text: the header line must decode; later lines may hold bad bytes."""
    if truncated:
        cut = head.rfind(b"\n")
        if cut < 0:
            raise InputError(
                f"{label}: no line break in the first {len(head) // 1024} KiB; expected a CSV file "
                "with a header line (is this a text file?)"
            )
        head = head[: cut + 1]
    end = head.find(b"\n")
    first = head if end < 0 else head[: end + 1]
    try:
        header = first.decode(encoding)
    except UnicodeDecodeError as err:
        raise InputError(
            f"{label}: line 1, byte {err.start + 1}: not valid {encoding} text ({err.reason}); "
            "set csv.encoding in the mapping (e.g. latin-1)"
        ) from err
    # Bad bytes in data lines are the reader's business (those rows are quarantined).
    text = header + head[len(first):].decode(encoding, errors="replace")
    return text.removeprefix("\ufeff")


def _field_counts(lines: list[str], delimiter: str) -> list[int]:
    try:
        return [len(row) for row in csv.reader(lines, delimiter=delimiter, quotechar='"')]
    except csv.Error:
        return []


def _choose_delimiter(lines: list[str], label: str) -> str:
    header = lines[0]
    for candidate in CANDIDATES[:-1]:
        # A tab after every delimiter of the header is padding (Bitbrains' ';<tab>'), even if a
        # value further down holds the delimiter and makes the tab look more regular.
        pairs = header.count(candidate + "\t")
        if pairs and pairs == header.count("\t") == header.count(candidate):
            return candidate
    best: tuple[float, int, int] | None = None
    chosen = ""
    for rank, candidate in enumerate(CANDIDATES):
        counts = _field_counts(lines, candidate)
        if not counts or counts[0] < 2:
            continue
        agree = sum(c == counts[0] for c in counts) / len(counts)
        # Most lines agreeing with the header first, then more fields; ties go to the earlier
        # candidate, so that ';<tab>' files choose ';' and the tab is trimmed as whitespace.
        score = (agree, counts[0], -rank)
        if best is None or score > best:
            best, chosen = score, candidate
    if not chosen:
        raise InputError(
            f"{label}: cannot detect the delimiter: the header line splits into one column on comma, "
            "semicolon, pipe and tab; set csv.delimiter in the mapping"
        )
    return chosen


def sniff(head: bytes, truncated: bool, label: str, encoding: str, delimiter: str | None) -> Dialect | None:
    """Work out the dialect of a CSV file from its first bytes.

    Args:
        head: the first bytes of the file (up to SNIFF_BYTES).
        truncated: whether the file goes on beyond ``head``.
        label: the file, for messages.
        encoding: the mapping's text encoding.
        delimiter: the mapping's delimiter, or None to detect it.

    Returns:
        The Dialect, or None for an empty file (no header line).

    Raises:
        InputError: the text cannot be decoded or no delimiter fits (message names file and line).
    """
    text = _decode(head, label, encoding, truncated)
    all_lines = text.splitlines()
    lines = [line for line in all_lines[:_SAMPLE_LINES] if line.strip() != ""]
    if not lines:
        return None
    if all_lines[0].strip() == "":
        raise InputError(f"{label}: line 1 is empty; expected the header line (column names) there")
    if "\x00" in lines[0]:
        raise InputError(
            f"{label}: line 1 holds NUL bytes; expected a CSV header line (is this a binary file?)")
    chosen = delimiter or _choose_delimiter(lines, label)
    header = tuple(name.strip() for name in next(csv.reader(lines[:1], delimiter=chosen, quotechar='"')))
    return Dialect(chosen, header, len(head) / max(1, len(all_lines)))


def duplicated_names(header: tuple[str, ...]) -> dict[str, int]:
    """Column names that occur more than once in a header, with their counts."""
    return {name: n for name, n in Counter(header).items() if n > 1}
