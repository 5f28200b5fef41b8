"""Reading and writing term-weight vectors and queries.

Documents use Anserini's ``JsonVectorCollection`` form, one JSON object a line::

    {"id": "D1", "contents": "optional text", "vector": {"term": 1.25, ...}}

optionally gzipped (``.gz``). A *vector collection directory* holds such files
as ``*.jsonl`` / ``*.jsonl.gz`` (read in name order) and, optionally,
``encoder.json`` describing the encoder that produced them (``lsr encode``
writes this layout; ``lsr index`` records ``encoder.json`` in the index
manifest so that text queries can be encoded the same way).

Queries are the same JSONL records (``{"id": ..., "vector": {...}}``; a record
with ``"text"``/``"contents"`` and no vector is a text query), or TSV lines
``qid<TAB>term:weight term:weight ...``; a bare ``term`` without ``:weight``
counts 1 for each occurrence (Anserini's pre-tokenised query form). A TSV line
``qid<TAB>free text`` is a text query.

Every malformed line raises :class:`~lsr.errors.InputError` naming the file
and line; nothing is silently skipped.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from .errors import InputError, LsrError

try:  # orjson parses 3-5x faster; the stdlib parser is the fallback
    import orjson as _orjson

    def _loads(line: bytes):
        return _orjson.loads(line)

    _JSON_ERRORS: tuple[type[BaseException], ...] = (_orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - orjson is a core dependency
    def _loads(line: bytes):
        return json.loads(line)

    _JSON_ERRORS = (ValueError,)

ENCODER_FILE = "encoder.json"
_VECTOR_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


def open_text(path: str | os.PathLike, mode: str = "rb"):
    """Open a plain or gzipped file (by the ``.gz`` suffix)."""
    path = os.fspath(path)
    if path.endswith(".gz"):
        return gzip.open(path, mode)
    return open(path, mode)


#: What reading a plain or gzipped file can raise besides lsr's own errors: any ``OSError``
#: (permissions, a directory, a bad gzip header: ``gzip.BadGzipFile``), ``EOFError`` (a truncated
#: ``.gz``) and ``zlib.error`` (corrupt compressed data).
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)


def error_reason(e: BaseException) -> str:
    """A short description of an I/O exception, without the file name (the caller names it)."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


@contextmanager
def reading(path: str | os.PathLike, what: str = "file"):
    """Turn :data:`READ_ERRORS` raised in the block into an :class:`InputError` naming ``path``."""
    path = os.fspath(path)
    try:
        yield
    except READ_ERRORS as e:
        raise InputError(f"{path}: cannot read this {what} ({error_reason(e)})") from None


def check_input_file(path: str | os.PathLike, what: str) -> str:
    """``path`` as a string, or an InputError when it does not exist or is a directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"{what} {path} is a directory, not a file")
    if not os.path.isfile(path):
        raise InputError(f"{what} {path} does not exist")
    return path


def check_output_file(path: str | os.PathLike, what: str = "output file") -> str:
    """``path`` as a string, or an InputError when a file cannot be written there: it is a directory,
    its parent directory does not exist, or that directory is not writable. Checked before any work
    is done, so that a long run does not end in an error."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"{what} {path} is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"{what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: directory {parent} is not writable")
    return path


def vector_files(source: str | os.PathLike) -> list[str]:
    """The JSONL files of a vector collection (a file, or a directory of parts)."""
    source = os.fspath(source)
    if os.path.isdir(source):
        files = sorted(
            os.path.join(source, f) for f in os.listdir(source)
            if f.endswith(_VECTOR_SUFFIXES) and f != ENCODER_FILE
        )
        if not files:
            raise InputError(f"{source}: directory has no *.jsonl or *.jsonl.gz files")
        return files
    if not os.path.exists(source):
        raise InputError(f"{source}: no such file or directory")
    return [source]


def read_json(path: str | os.PathLike, error: type[LsrError] = InputError, what: str = "file") -> Any:
    """The JSON value stored at ``path``; an unreadable file or malformed JSON raises ``error`` with one
    line naming ``path`` and ``what`` it should be."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise error(f"{os.fspath(path)}: unreadable {what} ({e})") from None


def read_json_object(path: str | os.PathLike, error: type[LsrError] = InputError, what: str = "file") -> dict:
    """:func:`read_json` of a file that must hold a JSON object (another JSON type raises ``error`` too)."""
    obj = read_json(path, error, what)
    if not isinstance(obj, dict):
        raise error(f"{os.fspath(path)}: {what} must be a JSON object")
    return obj


def read_encoder_info(source: str | os.PathLike) -> dict | None:
    """``encoder.json`` of a vector collection directory, if there is one."""
    source = os.fspath(source)
    path = os.path.join(source, ENCODER_FILE) if os.path.isdir(source) else None
    if path is None or not os.path.exists(path):
        return None
    return read_json_object(path, InputError, "encoder description")


ENCODE_STATE_FILE = "encode.state"
ENCODE_STATE_FORMATS = ("lsr-encode-state/2", "lsr-encode-state/1")   # current, legacy (fixed-size parts)
ENCODE_PART_NAME = "part-{:05d}.jsonl.gz"


def read_vectors_encoder(source: str | os.PathLike, allow_partial: bool = False) -> dict | None:
    """The encoder identity of a vector collection, checking an ``lsr encode`` directory is finished.

    For a directory with ``encode.state`` (``lsr encode`` output): an unfinished encode is an
    :class:`InputError` naming the documents and parts done and the corpus, unless
    ``allow_partial`` (then a warning says how much is there); a finished one whose listed parts
    are not all on disk is an error naming the first missing part. Returns ``encoder.json``, or
    for an encode that has none yet (unfinished) the encoder description in the state with
    ``"runtime": None``. Other sources: ``encoder.json`` if there is one (:func:`read_encoder_info`),
    else None.
    """
    import warnings

    source = os.fspath(source)
    state_path = os.path.join(source, ENCODE_STATE_FILE)
    if not os.path.isdir(source) or not os.path.exists(state_path):
        return read_encoder_info(source)
    state = read_json_object(state_path, InputError, "encode state")
    if state.get("format") not in ENCODE_STATE_FORMATS:
        raise InputError(f"{state_path}: not an lsr encode state (format {state.get('format')!r})")
    listed = state.get("parts")
    listed = listed if isinstance(listed, list) else []
    on_disk = 0
    while on_disk < len(listed) and os.path.isfile(os.path.join(source, ENCODE_PART_NAME.format(on_disk))):
        on_disk += 1
    info = read_encoder_info(source)
    if state.get("complete"):
        if on_disk < len(listed):
            raise InputError(f"{source}: {ENCODE_PART_NAME.format(on_disk)} is missing ({ENCODE_STATE_FILE} "
                             f"lists {len(listed)} parts)")
    else:
        docs = sum(p[0] for p in listed[:on_disk] if isinstance(p, list) and p and isinstance(p[0], int))
        corpus = (state.get("source") or {}).get("source", "?") if isinstance(state.get("source"), dict) else "?"
        limit = f" (limit {state['limit']})" if state.get("limit") else ""
        what = (f"{source} is an unfinished lsr encode: {docs} documents in {on_disk} parts encoded so far from "
                f"{corpus}{limit}")
        if not allow_partial:
            raise InputError(f"{what}; run the same lsr encode command again to finish it, or pass "
                             "--allow-partial (allow_partial=True) to index only those documents")
        warnings.warn(f"{what}; indexing only those documents")
    if info is None and isinstance(state.get("encoder"), dict):
        info = {**state["encoder"], "runtime": None}
    return info


def parse_json_object(line: bytes, where: str) -> dict:
    """One JSONL line as a dict, or an InputError naming ``where``."""
    try:
        rec = _loads(line)
    except _JSON_ERRORS as e:
        raise InputError(f"{where}: malformed JSON ({e})") from None
    if not isinstance(rec, dict):
        raise InputError(f"{where}: expected a JSON object per line")
    return rec


def _check_vector(vec: Any, where: str) -> dict:
    if not isinstance(vec, dict):
        raise InputError(f"{where}: \"vector\" must be a JSON object of term: weight, "
                         f"got {type(vec).__name__}")
    for term, w in vec.items():
        if not isinstance(term, str) or not term:
            raise InputError(f"{where}: empty term in vector")
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise InputError(f"{where}: weight of term {term!r} is not a number: {w!r}")
        if not math.isfinite(w):
            raise InputError(f"{where}: weight of term {term!r} is {w} (must be finite)")
        if w < 0:
            raise InputError(f"{where}: weight of term {term!r} is negative ({w})")
    return vec


def check_vector(vec: Any, where: str = "vector") -> dict:
    """Validate a ``{term: weight}`` mapping: string terms, finite weights >= 0."""
    return _check_vector(vec, where)


def _doc_id(rec: Mapping, where: str) -> str:
    if "id" in rec:
        did = rec["id"]
    elif "docid" in rec:
        did = rec["docid"]
    elif "_id" in rec:
        did = rec["_id"]
    else:
        raise InputError(f"{where}: record has no \"id\"")
    if isinstance(did, bool) or not isinstance(did, (str, int)):
        raise InputError(f"{where}: id must be a string or an integer, got {did!r}")
    did = str(did)
    if not did or any(ch.isspace() for ch in did):
        raise InputError(f"{where}: id {did!r} is empty or contains whitespace "
                         "(it would break TREC run files)")
    return did


def iter_vector_records(source) -> Iterator[tuple[str, Any, str]]:
    """``(doc_id, vector, where)`` with ids checked but weights *not* validated.

    For the index builder, which validates weights a batch at a time with
    NumPy; ``where`` names the file and line (or record number) for errors.
    """
    if isinstance(source, (str, os.PathLike)):
        for path in vector_files(source):
            try:
                with open_text(path, "rb") as f:
                    for lineno, line in enumerate(f, 1):
                        if not line.strip():
                            continue
                        where = f"{path}:{lineno}"
                        rec = parse_json_object(line, where)
                        did = _doc_id(rec, where)
                        vec = rec.get("vector")
                        if not isinstance(vec, dict):
                            if vec is None:
                                raise InputError(f"{where}: record {did!r} has no \"vector\"")
                            raise InputError(f"{where}: \"vector\" must be a JSON object of term: weight")
                        yield did, vec, where
            except READ_ERRORS as e:
                raise InputError(f"{path}: cannot read ({error_reason(e)})") from None
        return
    for i, rec in enumerate(source):
        where = f"record {i}"
        if isinstance(rec, Mapping):
            did = _doc_id(rec, where)
            if "vector" not in rec:
                raise InputError(f"{where}: record {did!r} has no \"vector\"")
            vec = rec["vector"]
        elif isinstance(rec, (tuple, list)) and len(rec) == 2:
            did = _doc_id({"id": rec[0]}, where)
            vec = rec[1]
        else:
            raise InputError(f"{where}: expected a dict with id and vector, or an (id, vector) pair")
        if not isinstance(vec, Mapping):
            raise InputError(f"{where}: vector must be a mapping of term to weight")
        yield did, vec, where


def iter_vectors(source) -> Iterator[tuple[str, dict]]:
    """Validated ``(doc_id, vector)`` pairs from a path or from Python records.

    ``source`` is a JSONL file, a vector collection directory, or an iterable
    of ``{"id":..., "vector":...}`` dicts or ``(id, vector)`` pairs.
    """
    for did, vec, where in iter_vector_records(source):
        yield did, _check_vector(dict(vec), where)


def write_vectors(path: str | os.PathLike, records: Iterable[tuple[str, Mapping[str, float]]],
                  contents: Mapping[str, str] | None = None) -> int:
    """Write ``(id, vector)`` records as JSONL (gzipped for ``.gz``), atomically."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    n = 0
    try:
        with open_text(tmp if not path.endswith(".gz") else tmp + ".gz", "wt") as f:
            for did, vec in records:
                rec = {"id": did, "contents": (contents or {}).get(did, ""),
                       "vector": {t: float(w) for t, w in vec.items()}}
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp if not path.endswith(".gz") else tmp + ".gz", path)
    finally:
        for p in (tmp, tmp + ".gz"):
            if os.path.exists(p):
                os.unlink(p)
    return n


# --------------------------------------------------------------------------- queries
@dataclass(frozen=True)
class Query:
    """A query: either term weights (``vector``) or text to encode (``text``)."""

    id: str
    vector: dict | None = None
    text: str | None = None


_WEIGHTED = re.compile(r"^(.+):([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf)$")
# a token shaped like term:weight (something after the last colon), whatever the weight
_TERM_COLON = re.compile(r"^(.+):([^:]+)$")


def parse_weighted_terms(s: str, where: str, strict: bool = False) -> dict | None:
    """Parse ``term:weight term ...`` (a bare term counts 1 per occurrence).

    The text is a bag of terms when ``strict`` or when at least one token is
    ``term:NUMBER``; otherwise (not ``strict``) this returns None and the line
    is text. In a bag of terms a token ``term:X`` whose ``X`` is not a number
    is a malformed weight (an :class:`InputError` naming ``where``), not a term.
    """
    parsed: list[tuple[str, float | None, str]] = []
    n_weighted = 0
    for tok in s.split():
        m = _WEIGHTED.match(tok)
        if m:
            n_weighted += 1
            parsed.append((m.group(1), float(m.group(2)), tok))
        else:
            parsed.append((tok, None, tok))
    if n_weighted == 0 and not strict:
        return None
    vec: dict[str, float] = {}
    for term, w, tok in parsed:
        if w is None:
            bad = _TERM_COLON.match(tok)
            if bad:
                raise InputError(f"{where}: weight {bad.group(2)!r} of term {bad.group(1)!r} is not a number")
            w = 1.0
        if not math.isfinite(w):
            raise InputError(f"{where}: weight of term {term!r} is {w} (must be finite)")
        if w < 0:
            raise InputError(f"{where}: weight of term {term!r} is negative ({w})")
        total = vec.get(term, 0.0) + w
        if not math.isfinite(total):
            raise InputError(f"{where}: the weights of term {term!r} add up to {total} (must be finite)")
        vec[term] = total
    return vec


def read_queries(path: str | os.PathLike, fmt: str = "auto") -> list[Query]:
    """Read queries from JSONL or TSV (optionally gzipped). ``fmt``: ``auto``, ``vector`` or ``text``.

    In ``auto`` mode a TSV line is a weighted query when at least one token is
    a ``term:NUMBER`` pair (then every ``term:X`` token must have a numeric
    ``X``), and a text query otherwise; with ``vector`` every line is a bag of
    terms (bare terms weigh 1; ``term:X`` with a non-numeric ``X`` is an
    error); with ``text`` the whole line is text. Repeated terms add up.
    An empty query (``qid<TAB>`` with nothing after it, an empty text, or a
    ``{}`` vector) is kept: the search gives it no hits and warns.
    Problems are :class:`InputError` naming the file (and line).
    """
    if fmt not in ("auto", "vector", "text"):
        raise InputError(f"unknown query format {fmt!r} (auto, vector or text)")
    path = check_input_file(path, "query file")
    with reading(path, "query file"), open_text(path, "rb") as f:
        return _parse_queries(f, path, fmt)


def _parse_queries(f, path: str, fmt: str) -> list[Query]:
    out: list[Query] = []
    seen: set[str] = set()
    is_json = path.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz"))
    for lineno, raw in enumerate(f, 1):
        where = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{where}: not valid UTF-8") from None
        if not line.strip():
            continue
        if is_json:
            rec = parse_json_object(raw, where)
            qid = _doc_id(rec, where)
            text = rec.get("text", rec.get("contents"))
            if "vector" in rec and fmt != "text":
                q = Query(qid, vector=dict(_check_vector(rec["vector"], where)))
            elif isinstance(text, str):
                q = Query(qid, text=text)
            else:
                raise InputError(f"{where}: query {qid!r} has neither \"vector\" nor \"text\"")
        else:
            parts = line.rstrip("\r\n").split("\t", 1)
            if len(parts) != 2:
                raise InputError(f"{where}: expected 'qid<TAB>query'")
            qid, body = parts[0].strip(), parts[1]
            qid = _doc_id({"id": qid}, where)
            if fmt == "text":
                q = Query(qid, text=body)
            elif not body.strip():
                q = Query(qid, vector={})
            else:
                vec = parse_weighted_terms(body, where, strict=(fmt == "vector"))
                q = Query(qid, vector=vec) if vec is not None else Query(qid, text=body)
        if q.id in seen:
            raise InputError(f"{where}: duplicate query id {q.id!r}")
        seen.add(q.id)
        out.append(q)
    return out
