"""Reading documents and queries to encode: JSONL, TSV, or an ir_datasets id.

Sources:

* JSONL (``.jsonl``, ``.json``, optionally ``.gz``), one object a line. The id
  is ``_id``, ``id`` or ``docid``. The text is ``contents`` if present, else
  ``title`` and ``text`` joined by a space (the BEIR layout; an empty title is
  skipped); for queries also ``query``. An optional expansion field (doc2query
  text, ``expansion_field``) is read when named.
* TSV (any other name, optionally ``.gz``): ``id<TAB>text``; with an
  expansion field named, a third column is the expansion.
* ``irds:<ir_datasets id>`` (e.g. ``irds:beir/scifact``): the dataset's docs
  or queries, text from ``default_text()``.

Ids must be non-empty and contain no whitespace; a line that is not valid
UTF-8, malformed JSON, a record without id or text, or a text that is not a
string raises :class:`~lsr.errors.InputError` naming the file and line. Blank
lines are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lsr.errors import InputError, LsrError
from lsr.io import open_text

from .errors import one_line

try:
    import orjson as _orjson

    def _loads(b: bytes) -> Any:
        return _orjson.loads(b)

    _JSON_ERRORS: tuple[type[BaseException], ...] = (_orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - orjson is installed with lsr
    import json as _json

    def _loads(b: bytes) -> Any:
        return _json.loads(b)

    _JSON_ERRORS = (ValueError,)

IRDS_PREFIX = "irds:"
_JSON_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


@dataclass(frozen=True)
class TextRecord:
    """A document or query to encode."""

    id: str
    text: str
    expansion: str | None = None


def _check_id(raw: Any, where: str) -> str:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise InputError(f"{where}: id must be a string or an integer, got {raw!r}")
    did = str(raw)
    if not did or any(ch.isspace() for ch in did):
        raise InputError(f"{where}: id {did!r} is empty or contains whitespace")
    return did


def _text_of(rec: dict, where: str, queries: bool) -> str:
    if "contents" in rec:
        text = rec["contents"]
    elif "text" in rec or "title" in rec:
        title = rec.get("title")
        body = rec.get("text")
        for name, v in (("title", title), ("text", body)):
            if v is not None and not isinstance(v, str):
                raise InputError(f"{where}: \"{name}\" must be a string, got {type(v).__name__}")
        text = " ".join(p for p in (title, body) if p)
    elif queries and "query" in rec:
        text = rec["query"]
    else:
        raise InputError(f"{where}: record has no text (\"contents\", or \"title\"/\"text\")")
    if not isinstance(text, str):
        raise InputError(f"{where}: text must be a string, got {type(text).__name__}")
    return text


def _lines(path: str) -> Iterator[tuple[int, str, bytes]]:
    try:
        with open_text(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at "
                                     f"offset {e.start})") from None
                if lineno == 1 and line.startswith("\ufeff"):
                    line = line[1:]
                    raw = line.encode("utf-8")
                if line.strip():
                    yield lineno, line, raw
    except (OSError, EOFError) as e:
        raise InputError(f"{path}: cannot read ({e})") from None


def _iter_file(path: str, queries: bool, expansion_field: str | None) -> Iterator[TextRecord]:
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if path.endswith(_JSON_SUFFIXES):
        for lineno, _line, raw in _lines(path):
            where = f"{path}:{lineno}"
            try:
                rec = _loads(raw)
            except _JSON_ERRORS as e:
                raise InputError(f"{where}: malformed JSON ({e})") from None
            if not isinstance(rec, dict):
                raise InputError(f"{where}: expected a JSON object per line")
            for key in ("_id", "id", "docid", "query_id", "qid"):
                if key in rec:
                    rid = _check_id(rec[key], where)
                    break
            else:
                raise InputError(f"{where}: record has no id (\"_id\", \"id\" or \"docid\")")
            exp = None
            if expansion_field is not None:
                exp = rec.get(expansion_field)
                if isinstance(exp, list) and all(isinstance(x, str) for x in exp):
                    exp = "\n".join(exp)
                if exp is not None and not isinstance(exp, str):
                    raise InputError(f"{where}: \"{expansion_field}\" must be a string or a list of strings")
            yield TextRecord(rid, _text_of(rec, where, queries), exp)
        return
    for lineno, line, _raw in _lines(path):
        where = f"{path}:{lineno}"
        parts = line.rstrip("\r\n").split("\t", 2 if expansion_field is not None else 1)
        if len(parts) < 2:
            raise InputError(f"{where}: expected 'id<TAB>text'")
        rid = _check_id(parts[0].strip(), where)
        exp = parts[2] if len(parts) > 2 else None
        yield TextRecord(rid, parts[1], exp)


def _iter_irds(dataset_id: str, queries: bool) -> Iterator[TextRecord]:
    try:
        import ir_datasets
    except ImportError:
        raise LsrError("irds: sources need the ir_datasets package (pip install ir_datasets)") from None
    try:
        ds = ir_datasets.load(dataset_id)
    except KeyError:
        raise InputError(f"unknown ir_datasets id {dataset_id!r}") from None
    what = "queries" if queries else "docs"
    has = ds.has_queries() if queries else ds.has_docs()
    if not has:
        raise InputError(f"ir_datasets {dataset_id!r} has no {what}")
    try:
        it = ds.queries_iter() if queries else ds.docs_iter()
        for n, obj in enumerate(it):
            where = f"irds:{dataset_id} {what[:-1]} {n}"
            rid = _check_id(obj.query_id if queries else obj.doc_id, where)
            text = obj.default_text() if hasattr(obj, "default_text") else getattr(obj, "text", None)
            if not isinstance(text, str):
                raise InputError(f"{where}: no text")
            yield TextRecord(rid, text)
    except LsrError:
        raise
    except Exception as e:  # download or cache problems inside ir_datasets
        raise InputError(f"irds:{dataset_id}: cannot read {what} ({one_line(e)})") from e


def iter_records(source: str, queries: bool = False, expansion_field: str | None = None) -> Iterator[TextRecord]:
    """Records of a source (see the module docstring)."""
    source = os.fspath(source)
    if source.startswith(IRDS_PREFIX):
        dataset_id = source[len(IRDS_PREFIX):]
        if not dataset_id:
            raise InputError("irds: needs a dataset id, e.g. irds:beir/scifact")
        if expansion_field is not None:
            raise InputError("an expansion field cannot be read from an ir_datasets source")
        return _iter_irds(dataset_id, queries)
    return _iter_file(source, queries, expansion_field)


def count_records(source: str, queries: bool = False) -> int | None:
    """Number of records (non-blank lines, or the dataset's count), for progress bars; None if unknown."""
    source = os.fspath(source)
    if source.startswith(IRDS_PREFIX):
        try:
            import ir_datasets

            ds = ir_datasets.load(source[len(IRDS_PREFIX):])
            return ds.queries_count() if queries else ds.docs_count()
        except (LookupError, OSError, ValueError, ImportError, AttributeError, NotImplementedError, TypeError):
            return None  # the count only sizes the progress bar; reading reports real problems
    if not os.path.isfile(source):
        return None
    n = 0
    with open_text(source, "rb") as f:
        for line in f:
            if line.strip():
                n += 1
    return n


def source_fingerprint(source: str) -> dict:
    """What identifies an input for resuming: the irds id, or the file's path, size and mtime."""
    source = os.fspath(source)
    if source.startswith(IRDS_PREFIX):
        return {"source": source}
    if not os.path.isfile(source):
        raise InputError(f"{source}: no such file")
    st = os.stat(source)
    return {"source": os.path.abspath(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


__all__ = ["IRDS_PREFIX", "TextRecord", "count_records", "iter_records", "source_fingerprint"]
