"""Opening an input: a file or standard input, its encoding, its size, and how much of it has
been read (for the progress bar's ETA).

Encodings: UTF-8 with or without a byte-order mark, UTF-16 (LE or BE) with one. Anything else
that can be recognised — UTF-32, UTF-16 without a BOM (NUL bytes), compressed or binary data —
is an `UnsupportedEncodingError` naming the file. Bytes that do not decode are a problem of
their line only: readers reject that line and go on.

Lines are capped at `MAX_LINE_BYTES`: a longer line is reported as a problem of its own (and
skipped to its end) instead of growing without bound in memory.
"""

from __future__ import annotations

import codecs
import io
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO, cast

#: A whale record is ~400 bytes; a line a thousand times longer is not one.
MAX_LINE_BYTES = 1 << 20
#: An Etherscan body holds at most 10,000 transactions (~10 MB).
MAX_DOCUMENT_BYTES = 256 << 20
_HEAD_BYTES = 1 << 16
_BUFFER_BYTES = 1 << 16
_BLOCK_BYTES = 1 << 20
#: Lines per batch: a batch is validated in one call (short enough to let the writer's thread
#: have the GIL between calls).
BATCH_LINES = 500

#: Line numbers and their lines (bytes, or a Problem each), in order.
LineBatch = tuple[Sequence[int], list["bytes | Problem"]]


class SourceError(Exception):
    """The input as a whole cannot be used (unreadable, an Etherscan error body, …)."""


class UnsupportedEncodingError(SourceError):
    """The input is not UTF-8 or UTF-16 with a byte-order mark."""


class Encoding(StrEnum):
    UTF8 = "utf-8"
    UTF8_BOM = "utf-8-sig"
    UTF16_LE = "utf-16-le"
    UTF16_BE = "utf-16-be"


_BOMS = (
    (codecs.BOM_UTF32_LE, None, "UTF-32"),  # before UTF-16 LE: it starts with the same bytes
    (codecs.BOM_UTF32_BE, None, "UTF-32"),
    (codecs.BOM_UTF8, Encoding.UTF8_BOM, ""),
    (codecs.BOM_UTF16_LE, Encoding.UTF16_LE, ""),
    (codecs.BOM_UTF16_BE, Encoding.UTF16_BE, ""),
)
_SUPPORTED = "UTF-8 (with or without a byte-order mark) or UTF-16 with a byte-order mark"


def sniff(head: bytes, *, path: str) -> tuple[Encoding, int]:
    """(encoding, length of its byte-order mark) from the first bytes of an input."""
    for bom, encoding, name in _BOMS:
        if head.startswith(bom):
            if encoding is None:
                raise UnsupportedEncodingError(
                    f"{path}: unsupported encoding ({name}); use {_SUPPORTED}"
                )
            return encoding, len(bom)
    if head.startswith((b"\x1f\x8b", b"PK\x03\x04", b"BZh", b"\xfd7zXZ")):
        raise UnsupportedEncodingError(
            f"{path}: unsupported encoding (compressed or archived data); decompress it first"
        )
    if head and head.count(0) * 10 > len(head):  # text in UTF-16/32: a NUL in every few bytes
        raise UnsupportedEncodingError(
            f"{path}: unsupported encoding (NUL bytes: UTF-16 or UTF-32 without a byte-order"
            f" mark, or binary data); use {_SUPPORTED}"
        )
    return Encoding.UTF8, 0


@dataclass(frozen=True)
class Problem:
    """A line or record that cannot be used as it is: rejected (`reason`) or skipped."""

    reason: str | None = None
    skipped: str | None = None
    record: object = None


@dataclass
class Input:
    """One opened input, positioned after its byte-order mark."""

    path: str
    stream: io.BufferedReader
    encoding: Encoding
    size: int | None  # bytes, when known (a file): the progress bar's total
    head: str  # the first characters, decoded: format detection
    _raw: BinaryIO = field(repr=False)

    @property
    def consumed(self) -> int:
        """Bytes read from the input so far (the buffered read-ahead included)."""
        try:
            return self._raw.tell()
        except OSError:  # a pipe
            return 0

    @property
    def utf8(self) -> bool:
        return self.encoding in (Encoding.UTF8, Encoding.UTF8_BOM)

    def byte_lines(self) -> Iterator[tuple[int, bytes | Problem]]:
        """(line number, the line as UTF-8 bytes, without its newline) — or a Problem for a
        line too long or, from a UTF-16 input, one that does not decode. UTF-8 input is passed
        through undecoded. Blank lines are left out."""
        if self.utf8:
            yield from _capped_byte_lines(self.stream)
            return
        for number, line in self.text_lines():
            if isinstance(line, Problem):
                yield number, line
                continue
            if line.isspace():
                continue
            try:
                yield number, line.encode("utf-8")
            except UnicodeEncodeError as exc:
                yield number, Problem(_undecodable(line, exc))

    def byte_line_batches(self) -> Iterator[LineBatch]:
        """`byte_lines` in batches of at most BATCH_LINES, without an object per line besides
        the line itself (the numbers of a run without blank lines are a range). Lines that are
        only whitespace other than nothing at all may be in a batch; validation rejects them as
        a batch, and the line by line path leaves them out."""
        if self.utf8:
            for numbers, lines in _capped_byte_line_blocks(self.stream):
                for low in range(0, len(lines), BATCH_LINES):
                    high = low + BATCH_LINES
                    yield numbers[low:high], lines[low:high]
            return
        batch: list[int] = []
        kept: list[bytes | Problem] = []
        for number, line in self.byte_lines():
            batch.append(number)
            kept.append(line)
            if len(kept) == BATCH_LINES:
                yield batch, kept
                batch, kept = [], []
        if kept:
            yield batch, kept

    def text_lines(self) -> Iterator[tuple[int, str | Problem]]:
        """(line number, decoded line, newline kept) — or a Problem for a line too long.
        Undecodable bytes survive as lone surrogates; `decoding_problem` finds them."""
        errors = _errors(self.encoding)
        text = io.TextIOWrapper(self.stream, encoding=_codec(self.encoding), errors=errors,
                                newline="")  # fmt: skip
        readline = text.readline
        number = 0
        try:
            while line := readline(MAX_LINE_BYTES + 1):
                number += 1
                if len(line) > MAX_LINE_BYTES and not line.endswith("\n"):
                    while (rest := readline(MAX_LINE_BYTES)) and not rest.endswith("\n"):
                        pass
                    yield number, Problem(_TOO_LONG)
                    continue
                yield number, line
        finally:
            text.detach()  # the stream stays open: open_input owns it

    def document(self) -> str:
        """The whole input as text (an Etherscan body), undecodable bytes as lone surrogates."""
        data = self.stream.read(MAX_DOCUMENT_BYTES + 1)
        if len(data) > MAX_DOCUMENT_BYTES:
            raise SourceError(f"{self.path}: larger than {MAX_DOCUMENT_BYTES >> 20} MiB")
        return data.decode(_codec(self.encoding), errors=_errors(self.encoding))


_TOO_LONG = f"line: longer than {MAX_LINE_BYTES:,} bytes"


#: Undecodable UTF-16 (a lone surrogate, an odd byte at the end) becomes this lone surrogate,
#: which no line can carry on: `decoding_problem` finds it.
_MARK = "\ud800"


def _mark_undecodable(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return _MARK, exc.end


codecs.register_error("whale_tracker.undecodable", _mark_undecodable)


def _errors(encoding: Encoding) -> str:
    # UTF-8: undecodable bytes become U+DC80…U+DCFF, so a reason can name the byte.
    return (
        "surrogateescape"
        if encoding in (Encoding.UTF8, Encoding.UTF8_BOM)
        else ("whale_tracker.undecodable")
    )


def _codec(encoding: Encoding) -> str:
    # The byte-order mark has been consumed already: decode what follows it.
    return "utf-8" if encoding is Encoding.UTF8_BOM else encoding.value


def _capped_byte_lines(stream: io.BufferedReader) -> Iterator[tuple[int, bytes | Problem]]:
    """Lines split out of large blocks (one C call per block, not one per line); blank lines
    are left out, their numbers still count."""
    for numbers, lines in _capped_byte_line_blocks(stream):
        for number, line in zip(numbers, lines, strict=True):
            if isinstance(line, Problem) or not line.isspace():
                yield number, line


def _capped_byte_line_blocks(stream: io.BufferedReader) -> Iterator[LineBatch]:
    """`_capped_byte_lines` a block at a time. A block without empty or overlong lines (the
    common case) is its split as it is, its numbers a range."""
    read = stream.read
    carry = b""
    number = 0
    skipping = False
    while block := read(_BLOCK_BYTES):
        if skipping:
            end = block.find(b"\n")
            if end < 0:
                continue
            block, skipping = block[end + 1 :], False
        parts = (carry + block).split(b"\n") if carry else block.split(b"\n")
        carry = parts.pop()
        if parts and all(parts) and max(map(len, parts)) <= MAX_LINE_BYTES:
            yield range(number + 1, number + 1 + len(parts)), cast("list[bytes | Problem]", parts)
        elif parts:
            numbers: list[int] = []
            kept: list[bytes | Problem] = []
            for n, line in enumerate(parts, number + 1):
                if len(line) > MAX_LINE_BYTES:
                    numbers.append(n)
                    kept.append(Problem(_TOO_LONG))
                elif line and not line.isspace():
                    numbers.append(n)
                    kept.append(line)
            if kept:
                yield numbers, kept
        number += len(parts)
        if len(carry) > MAX_LINE_BYTES:
            number += 1
            yield [number], [Problem(_TOO_LONG)]
            carry, skipping = b"", True
    if carry and not carry.isspace():
        yield [number + 1], [carry]


def decoding_problem(text: str) -> str | None:
    """The reason a decoded line cannot be used (it held undecodable bytes), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return _undecodable(text, exc)
    return None


def _undecodable(text: str, exc: UnicodeEncodeError) -> str:
    char = text[exc.start]
    shown = f"byte 0x{ord(char) - 0xDC00:02x}" if 0xDC80 <= ord(char) <= 0xDCFF else "a byte"
    return f"encoding: {shown} that does not decode, at character {exc.start + 1}"


def utf8_problem(line: bytes) -> str | None:
    """The reason a UTF-8 line does not decode, or None."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"encoding: not valid UTF-8 (byte 0x{line[exc.start]:02x} at byte {exc.start + 1})"
    return None


@contextmanager
def open_input(path: str) -> Iterator[Input]:
    """A file, or standard input for `-`, with its encoding worked out."""
    raw: io.FileIO | None = None
    if path == "-":
        binary = getattr(sys.stdin, "buffer", None)
        if binary is None:  # a text stream in memory (tests, embedding): its text as UTF-8
            text = sys.stdin.read().encode("utf-8", "surrogatepass")
            binary = io.BufferedReader(io.BytesIO(text))
        stream = cast(io.BufferedReader, binary)
        size = None
    else:
        try:
            raw = io.FileIO(path, "r")
            size = os.fstat(raw.fileno()).st_size
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror}") from None
        stream = io.BufferedReader(raw, buffer_size=_BUFFER_BYTES)
    try:
        try:
            start = stream.peek(_HEAD_BYTES)[:_HEAD_BYTES]
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror}") from None
        encoding, bom = sniff(start, path=path)
        stream.read(bom)
        head = start[bom:].decode(_codec(encoding), errors="replace")
        yield Input(path=path, stream=stream, encoding=encoding, size=size, head=head,
                    _raw=raw or stream)  # fmt: skip
    finally:
        if raw is not None:
            raw.close()
