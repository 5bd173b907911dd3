"""Over-long CSV lines: cut out of the byte stream (and recorded) before the CSV reader sees them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CR, _LF = 13, 10
_HEAD_BYTES = 120


@dataclass(frozen=True)
class LongLine:
    """A line longer than the cap: its length in (UTF-8) bytes and its start as text."""

    length: int
    head: str


class LineGuard:
    """Replaces each line longer than ``max_bytes`` with a filler line the CSV reader rejects.

    pyarrow's streaming CSV reader fails the whole file ("straddling object ... try to increase
    block size?") when one line is longer than its block. Cutting such lines out beforehand keeps
    the rest of the file: the filler (``filler``, e.g. one delimiter more than the header has) is
    a malformed row whose line number the reader reports, so the caller can quarantine it with
    ``long_lines[line]``. Line endings are LF, CRLF or CR; line numbers count from 1 (the header).
    Only the header line is exempt: a header the reader cannot hold is the caller's error.

    The work is vectorised per block (numpy over the bytes); Python touches only the long lines.
    """

    def __init__(self, max_bytes: int, filler: bytes) -> None:
        self.max_bytes = max_bytes
        self.filler = filler
        self.long_lines: dict[int, LongLine] = {}
        self._line = 1
        self._partial = b""
        self._dropped = 0  # bytes of the current over-long line dropped so far (0: not dropping)
        self._head = b""
        self._after_cr = False
        self._cut_cr = False  # the last block ended with the CR of a cut line (its LF may follow)

    def _record(self, length: int, head: bytes) -> None:
        self.long_lines[self._line] = LongLine(length, head[:_HEAD_BYTES].decode("utf-8", errors="replace"))

    def feed(self, data: bytes, final: bool = False) -> bytes:
        """The bytes to pass on for the next ``data`` of the stream (``final``: it is the last)."""
        prefix = b""
        if self._cut_cr:
            # The last block ended with the CR of a cut line, held back: a CRLF split between the
            # blocks ends the filler with its LF (as unsplit, the CR goes with the cut line), a CR
            # alone is the line's end.
            prefix = b"\n" if data[:1] == b"\n" else b"\r"
            data = data[1:] if data[:1] == b"\n" else data
        elif self._after_cr and data[:1] == b"\n":
            # The LF of a CRLF split between two blocks: the CR already ended the line.
            prefix, data = b"\n", data[1:]
        self._cut_cr = False
        codes = np.frombuffer(data, dtype=np.uint8)
        if b"\r" in data:
            lf, cr = codes == _LF, codes == _CR
            ends = lf | cr
            ends[:-1] &= ~(cr[:-1] & lf[1:])  # CR of a CRLF: the LF ends the line
            stops = np.flatnonzero(ends)
        else:
            stops = np.flatnonzero(codes == _LF)
        self._after_cr = data.endswith(b"\r")
        out: list[bytes] = []
        start = 0
        if len(stops):
            starts = np.concatenate(([0], stops[:-1] + 1))
            # A line's length excludes its terminator, the CR of a CRLF included.
            crlf = (codes[stops] == _LF) & (stops > 0) & (codes[np.maximum(stops - 1, 0)] == _CR)
            lengths = stops - starts - crlf.astype(np.int64)
            lengths[0] += len(self._partial) + self._dropped
            long_lines = np.flatnonzero(lengths > self.max_bytes)
            if self._line == 1 and len(long_lines) and long_lines[0] == 0:
                long_lines = long_lines[1:]  # the header is never cut
            for k in long_lines:
                if k == 0 and self._dropped:
                    head = self._head
                else:
                    head = (self._partial if k == 0 else b"") + data[starts[k]:starts[k] + _HEAD_BYTES]
                if k == 0:
                    self._partial = b""
                out.append(data[start:starts[k]])
                line, self._line = self._line, self._line + int(k)
                self._record(int(lengths[k]), head)
                self._line = line
                self._cut_cr = int(stops[k]) == len(data) - 1 and data.endswith(b"\r")
                out.append(self.filler + (b"" if self._cut_cr else data[stops[k]:stops[k] + 1]))
                start = int(stops[k]) + 1
            out.insert(0, self._partial)
            out.append(data[start:stops[-1] + 1])
            self._line += len(stops)
            self._partial, self._dropped, self._head = b"", 0, b""
            start = int(stops[-1]) + 1
        rest = data[start:]
        if self._dropped:
            self._dropped += len(rest)
        elif len(self._partial) + len(rest) > self.max_bytes and self._line > 1:
            self._head = (self._partial + rest)[:_HEAD_BYTES]
            self._dropped = len(self._partial) + len(rest)
            self._partial = b""
        else:
            self._partial += rest
        if final:
            if self._cut_cr:
                out.append(b"\r")
                self._cut_cr = False
            if self._dropped:
                self._record(self._dropped, self._head)
                out.append(self.filler)
                self._dropped = 0
            out.append(self._partial)
            self._partial = b""
        return prefix + b"".join(out)
