"""Varint-delimited protobuf messages: how a CIFF file strings its messages together.

Each message is its serialised length as a protobuf varint followed by its bytes (the
``writeDelimitedTo`` / ``parseDelimitedFrom`` framing of the Java runtime). The varints are
encoded and decoded by the ``protobuf`` runtime's own codec (``encoder._VarintBytes``,
``decoder._DecodeVarint``); the reader holds one buffered chunk of the file and the message
being parsed, never the file.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import BinaryIO, TypeVar

from google.protobuf.internal.decoder import _DecodeVarint
from google.protobuf.internal.encoder import _VarintBytes
from google.protobuf.message import DecodeError, Message

from lsr.errors import InputError

M = TypeVar("M", bound=Message)

_CHUNK = 1 << 22
_MAX_MESSAGE = (1 << 31) - 1   # protobuf's limit on one message


class CiffFormatError(InputError):
    """A CIFF file that is truncated, corrupt, or whose content breaks CIFF's rules."""


def write_delimited(f: BinaryIO, message: Message) -> int:
    """Write ``message`` with its varint length prefix; returns the bytes written."""
    data = message.SerializeToString()
    head = _VarintBytes(len(data))
    f.write(head)
    f.write(data)
    return len(head) + len(data)


class DelimitedReader:
    """Read varint-delimited messages from a file one at a time (a buffered chunk in memory); a gzip file
    (recognised by its magic bytes) is decompressed on the way. ``size``: bytes on disk."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise InputError(f"{self.path} does not exist")
        if os.path.isdir(self.path):
            raise InputError(f"{self.path} is a directory, not a CIFF file")
        raw = open(self.path, "rb")
        self.size = os.fstat(raw.fileno()).st_size
        self.compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        self._f: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if self.compressed else raw
        self._raw = raw
        self._buf = b""
        self._at = 0          # position in _buf
        self._consumed = 0    # file offset of _buf[0]

    @property
    def offset(self) -> int:
        """File offset of the next message."""
        return self._consumed + self._at

    def _fill(self, need: int) -> None:
        """Make ``need`` bytes available from ``_at`` (fewer at the end of the file)."""
        have = len(self._buf) - self._at
        if have >= need:
            return
        try:
            more = self._f.read(max(need - have, _CHUNK))
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise CiffFormatError(f"{self.path}: the gzip stream is truncated or corrupt ({e})") from None
        self._consumed += self._at
        self._buf = self._buf[self._at:] + more
        self._at = 0

    def at_end(self) -> bool:
        self._fill(1)
        return self._at >= len(self._buf)

    def read(self, cls: type[M], what: str) -> M:
        """The next message, parsed as ``cls``; ``what`` names it in errors (e.g. ``"postings list 3"``)."""
        start = self.offset
        self._fill(10)
        if self._at >= len(self._buf):
            raise CiffFormatError(f"{self.path}: the file ends before {what} (at byte {start}): it is truncated, "
                                  "or its header counts more messages than it holds")
        try:
            n, p = _DecodeVarint(self._buf, self._at)
        except (IndexError, DecodeError):
            raise CiffFormatError(f"{self.path}: the length of {what} at byte {start} is cut off or not a varint "
                                  "(the file is truncated or corrupt)") from None
        if n > _MAX_MESSAGE:
            raise CiffFormatError(f"{self.path}: {what} at byte {start} claims {n} bytes, more than a protobuf "
                                  "message can hold (the file is corrupt)")
        self._at = p
        self._fill(n)
        if len(self._buf) - self._at < n:
            raise CiffFormatError(f"{self.path}: {what} at byte {start} needs {n} bytes but the file ends "
                                  f"{len(self._buf) - self._at} bytes later (truncated)")
        data = self._buf[self._at:self._at + n]
        self._at += n
        msg = cls()
        try:
            msg.ParseFromString(data)
        except DecodeError as e:
            raise CiffFormatError(f"{self.path}: {what} at byte {start} is not a valid {cls.__name__} message "
                                  f"(corrupt file: {e})") from None
        return msg

    def close(self) -> None:
        self._f.close()
        self._raw.close()
        self._buf = b""

    def __enter__(self) -> "DelimitedReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
