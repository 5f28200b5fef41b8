"""Encoding a corpus into a vector collection directory, resumably; encoding a query file.

Layout of the output directory (what ``lsr index DIR`` reads, see
:mod:`lsr.io`)::

    part-00000.jsonl.gz   {"id": ..., "contents": "", "vector": {term: weight}} per line
    part-00001.jsonl.gz   ...
    encode.state          progress and the settings a resume must match (JSON, named so
                          that readers of *.json / *.jsonl vector files skip it)
    encoder.json          Encoder.describe(), written when the encode completes

Part ``k`` holds input records ``k * part_size`` to ``(k + 1) * part_size - 1``
in input order. Each part is written to a temporary name, flushed to disk and
renamed into place, so a killed encode leaves only whole parts. Running the
same command again continues after the last whole part: the records of
finished parts are read (ids are still checked for duplicates) but not
encoded again, so nothing is lost or duplicated. A resume must use the same
input (path, size, mtime), encoder description, part size, limit and
expansion field; anything else is refused with the name of what differs.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from lsr.errors import InputError, LsrError
from lsr.io import ENCODER_FILE, write_vectors

from .corpus import count_records, iter_records, source_fingerprint
from .encoder import Encoder, QueryEncoder

try:
    import orjson as _orjson

    def _dumps(obj) -> bytes:
        return _orjson.dumps(obj)
except ImportError:  # pragma: no cover - orjson is installed with lsr
    def _dumps(obj) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")

STATE_FILE = "encode.state"
STATE_FORMAT = "lsr-encode-state/1"
PART_NAME = "part-{:05d}.jsonl.gz"
_PART_RE = re.compile(r"^part-(\d{5})\.jsonl\.gz$")
_TMP_RE = re.compile(r"^(part-\d{5}\.jsonl\.gz|encode\.state|encoder\.json)\.tmp-\d+$")
GZIP_LEVEL = 6


@dataclass
class EncodeReport:
    """What an ``encode_corpus`` call did."""

    output: str
    docs: int = 0
    encoded: int = 0
    resumed_from: int = 0
    parts: int = 0
    truncated: int = 0
    empty: int = 0
    expanded: int = 0
    seconds: float = 0.0
    complete: bool = False

    @property
    def docs_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _atomic_write_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_json(path: str, obj) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def _write_part(path: str, ids: list[str], vecs: list[dict]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gz:
                for did, vec in zip(ids, vecs):
                    gz.write(_dumps({"id": did, "contents": "", "vector": vec}))
                    gz.write(b"\n")
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_state(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError) as e:
        raise LsrError(f"{path}: unreadable encode state ({e}); remove the directory or pass --overwrite") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise LsrError(f"{path}: not an lsr encode state file")
    return state


def _first_difference(a, b, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
    return prefix or "value"


def _prepare_dir(output: str, want: dict, overwrite: bool) -> tuple[dict | None, int]:
    """Create or check the output directory; returns (previous state, finished parts)."""
    state_path = os.path.join(output, STATE_FILE)
    if os.path.exists(output) and not os.path.isdir(output):
        raise InputError(f"output {output} exists and is not a directory")
    if os.path.isdir(output) and overwrite:
        for name in os.listdir(output):
            if _PART_RE.match(name) or _TMP_RE.match(name) or name in (STATE_FILE, ENCODER_FILE):
                os.unlink(os.path.join(output, name))
    os.makedirs(output, exist_ok=True)
    names = os.listdir(output)
    for name in names:
        if _TMP_RE.match(name):  # left by a killed run: never a finished part
            os.unlink(os.path.join(output, name))
    prev = None
    if os.path.exists(state_path):
        prev = _read_state(state_path)
        for key in ("source", "encoder", "part_size", "limit", "expansion_field"):
            if prev.get(key) != want.get(key):
                where = _first_difference(prev.get(key), want.get(key), key)
                raise LsrError(f"{output} holds an encode with a different {where}; use a new output "
                               "directory or --overwrite to start again")
    parts = sorted(int(m.group(1)) for m in (_PART_RE.match(n) for n in os.listdir(output)) if m)
    if parts and prev is None:
        raise LsrError(f"{output} already holds part files but no {STATE_FILE}; use a new output directory "
                       "or --overwrite")
    others = [n for n in os.listdir(output) if not (_PART_RE.match(n) or n in (STATE_FILE, ENCODER_FILE))]
    if prev is None and others:
        raise LsrError(f"{output} is not empty ({others[0]}, ...); use a new output directory or --overwrite")
    if parts != list(range(len(parts))):
        raise LsrError(f"{output}: part files are not numbered 0..{len(parts) - 1} (a part is missing); "
                       "use --overwrite to start again")
    return prev, len(parts)


def encode_corpus(encoder: Encoder, source: str, output: str, *, batch_size: int = 32,
                  part_size: int = 10_000, expansion_field: str | None = None, limit: int | None = None,
                  progress: bool = False, overwrite: bool = False,
                  on_part: Callable[[int, int], None] | None = None) -> EncodeReport:
    """Encode the documents of ``source`` into the vector collection directory ``output``.

    Resumable (see the module docstring). ``on_part(part_index, docs_done)``
    is called after each part is safely on disk. Duplicate document ids are
    an error. Returns an :class:`EncodeReport`; ``encoder.json`` is written
    when the whole input is encoded.
    """
    if not isinstance(part_size, int) or part_size < 1:
        raise InputError(f"part size must be a positive integer, got {part_size!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be a positive integer, got {limit!r}")
    output = os.fspath(output)
    src = source_fingerprint(source)
    description = encoder.describe()
    want = {"format": STATE_FORMAT, "source": src, "encoder": description, "part_size": part_size,
            "limit": limit, "expansion_field": expansion_field}
    prev, done_parts = _prepare_dir(output, want, overwrite)
    report = EncodeReport(output=output)
    state = dict(prev) if prev is not None else {**want, "complete": False, "docs": 0, "parts": 0,
                                                  "truncated": 0, "empty": 0, "expanded": 0}
    if prev is not None and prev.get("complete") and done_parts == prev.get("parts"):
        report.docs = prev.get("docs", 0)
        report.resumed_from = report.docs
        report.parts = done_parts
        report.complete = True
        for key in ("truncated", "empty", "expanded"):
            setattr(report, key, prev.get(key, 0))
        if not os.path.exists(os.path.join(output, ENCODER_FILE)):
            _write_json(os.path.join(output, ENCODER_FILE), description)
        return report
    state.update({"complete": False, "parts": done_parts})
    _write_json(os.path.join(output, STATE_FILE), state)

    total = count_records(source) if progress else None
    if total is not None and limit is not None:
        total = min(total, limit)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="docs", desc="encode", dynamic_ncols=True, smoothing=0.1)
    t0 = time.perf_counter()
    seen: set[str] = set()
    n = 0
    part = 0
    skipped_in_part = 0
    buf_ids: list[str] = []
    buf_texts: list[str] = []
    buf_exp: list[str | None] = []

    def flush() -> None:
        nonlocal part
        if not buf_ids:
            return
        exps = buf_exp if any(e is not None for e in buf_exp) else None
        vecs = encoder.encode_documents(buf_texts, batch_size=batch_size, expansions=exps,
                                        progress=bar.update if bar is not None else None)
        st = encoder.last_doc_stats
        _write_part(os.path.join(output, PART_NAME.format(part)), buf_ids, vecs)
        report.encoded += len(buf_ids)
        report.truncated += st.truncated
        report.empty += st.empty
        report.expanded += st.expanded
        part += 1
        state["parts"] = part
        state["docs"] = report.resumed_from + report.encoded
        for key in ("truncated", "empty", "expanded"):
            state[key] = state_base[key] + getattr(report, key)
        _write_json(os.path.join(output, STATE_FILE), state)
        buf_ids.clear()
        buf_texts.clear()
        buf_exp.clear()
        if on_part is not None:
            on_part(part - 1, state["docs"])

    # counts of the parts already on disk (a part renamed just before a kill may miss its counts)
    state_base = {key: (prev or {}).get(key, 0) if done_parts else 0 for key in ("truncated", "empty", "expanded")}
    try:
        for rec in iter_records(source, queries=False, expansion_field=expansion_field):
            if limit is not None and n >= limit:
                break
            if rec.id in seen:
                raise InputError(f"{src['source']}: duplicate document id {rec.id!r} (record {n + 1})")
            seen.add(rec.id)
            n += 1
            if part < done_parts:  # already on disk from an earlier run
                skipped_in_part += 1
                report.resumed_from += 1
                if bar is not None:
                    bar.update(1)
                if skipped_in_part == part_size:
                    part += 1
                    skipped_in_part = 0
                continue
            buf_ids.append(rec.id)
            buf_texts.append(rec.text)
            buf_exp.append(rec.expansion)
            if len(buf_ids) == part_size:
                flush()
        if part < done_parts:
            raise LsrError(f"{output} has {done_parts} parts but the input ends within part {part}; "
                           "the input changed, use --overwrite")
        flush()
    finally:
        if bar is not None:
            bar.close()
    report.seconds = time.perf_counter() - t0
    report.parts = part
    report.docs = n
    for key in ("truncated", "empty", "expanded"):
        setattr(report, key, state_base[key] + getattr(report, key))
    _write_json(os.path.join(output, ENCODER_FILE), description)
    state.update({"complete": True, "parts": part, "docs": n, "truncated": report.truncated,
                  "empty": report.empty, "expanded": report.expanded})
    _write_json(os.path.join(output, STATE_FILE), state)
    report.complete = True
    return report


def encode_query_file(encoder: QueryEncoder, source: str, output: str, *, batch_size: int = 64,
                      limit: int | None = None, progress: bool = False) -> EncodeReport:
    """Encode the queries of ``source`` into a JSONL file ``{"id":..., "vector": {...}}`` (gzip for ``.gz``).

    The file is what :func:`lsr.io.read_queries` reads (written atomically).
    Duplicate query ids are an error.
    """
    ids: list[str] = []
    texts: list[str] = []
    seen: set[str] = set()
    for rec in iter_records(source, queries=True):
        if limit is not None and len(ids) >= limit:
            break
        if rec.id in seen:
            raise InputError(f"{source}: duplicate query id {rec.id!r}")
        seen.add(rec.id)
        ids.append(rec.id)
        texts.append(rec.text)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), unit="queries", desc="queries", dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        vecs = encoder.encode_queries(texts, batch_size=batch_size,
                                      progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    write_vectors(output, zip(ids, vecs))
    st = encoder.last_query_stats
    return EncodeReport(output=output, docs=len(ids), encoded=len(ids), parts=1, truncated=st.truncated,
                        empty=st.empty, seconds=seconds, complete=True)


__all__ = ["PART_NAME", "STATE_FILE", "EncodeReport", "encode_corpus", "encode_query_file"]
