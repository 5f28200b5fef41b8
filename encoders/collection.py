"""Encoding a corpus into a vector collection directory, resumably; encoding a query file.

Layout of the output directory (what ``lsr index DIR`` reads, see
:mod:`lsr.io`)::

    part-00000.jsonl.gz   {"id": ..., "contents": "", "vector": {term: weight}} per line
    part-00001.jsonl.gz   ...
    encode.state          progress and the settings a resume must match (JSON, named so
                          that readers of *.json / *.jsonl vector files skip it)
    encoder.json          Encoder.describe() plus the runtime (device, dtype, threads,
                          batch size), written when the encode completes

Documents are encoded in *chunks* of ``chunk_docs`` consecutive input records
(one ``encode_documents`` call each: texts are length-sorted into batches
within a chunk). Parts hold consecutive chunks in input order; a part is
written once it holds ``part_size`` documents or ``part_seconds`` seconds of
encoding (default 60), so a killed encode loses at most about a minute of work.
``encode.state`` lists each part's document count. Each part is written to a
temporary name and flushed to disk, the state is updated, and the part is
renamed into place, so a killed encode leaves only whole parts. Running the
same command again continues after the last whole part: the records of
finished parts are read (ids are still checked for duplicates) but not
encoded again, so nothing is lost or duplicated. A resume must use the same
input (path, size, mtime), encoder description, device, chunk size, limit and
expansion field; anything else is refused with the name of what differs
(``--threads``, ``--batch-size`` and ``--part-size`` may change).

:class:`ResumableParts`, :func:`iter_chunks` and :func:`encode_chunks` are shared
with the one-step indexer (:mod:`lsr.index.text_index`), which keeps CSR parts
the same way. With ``ray`` the chunks are encoded on a Ray actor pool instead
(:mod:`lsr.distributed.encode`, which yields what :func:`encode_chunks` yields,
in the same order); the writing and resuming here are the same.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from lsr.errors import InputError, LsrError
from lsr.io import ENCODE_STATE_FORMATS, ENCODER_FILE, write_vectors
from lsr.outputs import refuse_input_overlap

from .corpus import TextRecord, count_records, iter_records, source_fingerprint
from .encoder import Encoder, QueryEncoder

try:
    import orjson as _orjson

    def _dumps(obj) -> bytes:
        return _orjson.dumps(obj)
except ImportError:  # pragma: no cover - orjson is installed with lsr
    def _dumps(obj) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")

STATE_FILE = "encode.state"
STATE_FORMAT = "lsr-encode-state/2"
LEGACY_STATE_FORMAT = "lsr-encode-state/1"   # fixed-size parts; a complete one is still read
PART_NAME = "part-{:05d}.jsonl.gz"
GZIP_LEVEL = 6
CHUNK_DOCS = 256
PART_SECONDS = 60.0
STAT_KEYS = ("docs", "truncated", "empty", "expanded")


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
    runtime: dict | None = None   # what encoder.json records as the runtime, when this call encoded

    @property
    def docs_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a flushed temporary file and a rename."""
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


def write_json(path: str, obj) -> None:
    """``obj`` as indented JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def first_difference(a, b, prefix: str = "") -> str:
    """The dotted path of the first key where two JSON-like values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
    return prefix or "value"


def _write_part(path: str, ids: list[str], vecs: list[dict]) -> None:
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gz:
            for did, vec in zip(ids, vecs):
                gz.write(_dumps({"id": did, "contents": "", "vector": vec}))
                gz.write(b"\n")
        raw.flush()
        os.fsync(raw.fileno())


class ResumableParts:
    """The parts of a resumable encode in ``directory`` and the state file that lists them.

    ``want`` holds the settings a resume must match (``match`` names them);
    the state adds ``complete`` and ``parts`` (per finished part, its
    ``[docs, truncated, empty, expanded]``). Finished parts are the part files
    numbered 0..k-1 on disk; a part is written to ``<name>.tmp-<pid>``, the
    state updated, then the part renamed into place (:meth:`commit`).
    """

    def __init__(self, directory: str, *, state_file: str, state_format: str, part_suffix: str,
                 want: dict, match: tuple[str, ...], what: str, start_again: str,
                 keep: tuple[str, ...] = ()):
        self.dir = directory
        self.state_path = os.path.join(directory, state_file)
        self.state_format = state_format
        self.part_suffix = part_suffix
        self._part_re = re.compile(r"^part-(\d{5})" + re.escape(part_suffix) + "$")
        self._tmp_re = re.compile(r"^(part-\d{5}" + re.escape(part_suffix) + "|"
                                  + re.escape(state_file) + "|" + "|".join(map(re.escape, keep or ("-",)))
                                  + r")\.tmp-\d+$")
        self.want = want
        self.match = match
        self.what = what
        self.start_again = start_again
        self.keep = keep
        self.state_file = state_file

    def part_path(self, k: int) -> str:
        return os.path.join(self.dir, f"part-{k:05d}{self.part_suffix}")

    def is_own(self, name: str) -> bool:
        return bool(self._part_re.match(name) or self._tmp_re.match(name) or name == self.state_file
                    or name in self.keep)

    def clear(self) -> None:
        """Delete every file of this layout in the directory (parts, state, temporaries, ``keep``)."""
        if os.path.isdir(self.dir):
            for name in os.listdir(self.dir):
                if self.is_own(name):
                    os.unlink(os.path.join(self.dir, name))

    def read_state(self) -> dict | None:
        if not os.path.exists(self.state_path):
            return None
        try:
            with open(self.state_path, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError) as e:
            raise LsrError(f"{self.state_path}: unreadable state ({e}); {self.start_again}") from None
        if not isinstance(state, dict) or state.get("format") != self.state_format:
            found = state.get("format") if isinstance(state, dict) else None
            raise LsrError(f"{self.state_path}: not a {self.state_format} state file (format {found!r}: "
                           f"written by another lsr version?); {self.start_again}")
        return state

    def prepare(self) -> list[list[int]]:
        """Create or check the directory; returns the stats of the finished parts (their count = len)."""
        if os.path.exists(self.dir) and not os.path.isdir(self.dir):
            raise InputError(f"{self.dir} exists and is not a directory")
        os.makedirs(self.dir, exist_ok=True)
        for name in os.listdir(self.dir):
            if self._tmp_re.match(name):  # left by a killed run: never a finished part
                os.unlink(os.path.join(self.dir, name))
        prev = self.read_state()
        if prev is not None:
            for key in self.match:
                if prev.get(key) != self.want.get(key):
                    where = first_difference(prev.get(key), self.want.get(key), key)
                    raise LsrError(f"{self.dir} holds {self.what} with a different {where}; {self.start_again}")
        names = os.listdir(self.dir)
        parts = sorted(int(m.group(1)) for m in map(self._part_re.match, names) if m)
        if parts and prev is None:
            raise LsrError(f"{self.dir} already holds part files but no {self.state_file}; {self.start_again}")
        others = [n for n in names if not self.is_own(n)]
        if prev is None and others:
            raise LsrError(f"{self.dir} is not empty ({others[0]}, ...); {self.start_again}")
        if parts != list(range(len(parts))):
            raise LsrError(f"{self.dir}: part files are not numbered 0..{len(parts) - 1} (a part is missing); "
                           f"{self.start_again}")
        listed = (prev or {}).get("parts", [])
        if len(listed) < len(parts):
            raise LsrError(f"{self.state_path} lists {len(listed)} parts but {len(parts)} are on disk; "
                           f"{self.start_again}")
        self.stats = [list(x) for x in listed[: len(parts)]]
        self.complete = bool(prev and prev.get("complete")) and len(listed) == len(parts)
        self.extra = {k: v for k, v in (prev or {}).items() if k not in self.want and k not in ("complete", "parts")}
        if not self.complete:
            self._save(False)
        return self.stats

    def _save(self, complete: bool) -> None:
        write_json(self.state_path, {**self.want, **self.extra, "complete": complete, "parts": self.stats})

    def commit(self, write: Callable[[str], None], stats: list[int]) -> None:
        """Write the next part with ``write(path)``, list it in the state, then rename it into place."""
        final = self.part_path(len(self.stats))
        tmp = f"{final}.tmp-{os.getpid()}"
        try:
            write(tmp)
            self.stats.append(list(stats))
            self._save(False)
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def finish(self, **extra) -> None:
        """Mark the encode complete (``extra`` goes into the state too)."""
        self.extra.update(extra)
        self.complete = True
        self._save(True)

    def totals(self) -> dict[str, int]:
        return {k: sum(s[i] for s in self.stats) for i, k in enumerate(STAT_KEYS)}


def iter_chunks(source: str, *, chunk_docs: int, skip: int = 0, limit: int | None = None,
                expansion_field: str | None = None) -> Iterator[list[TextRecord]]:
    """The documents of ``source`` in consecutive chunks of ``chunk_docs`` (the last may be shorter).

    The first ``skip`` records are read (their ids are checked for duplicates) but not yielded;
    ``limit`` stops after that many records. A duplicate id is an :class:`InputError`.
    """
    src = source_fingerprint(source)["source"]
    seen: set[str] = set()
    n = 0
    chunk: list[TextRecord] = []
    for rec in iter_records(source, queries=False, expansion_field=expansion_field):
        if limit is not None and n >= limit:
            break
        if rec.id in seen:
            raise InputError(f"{src}: duplicate document id {rec.id!r} (record {n + 1})")
        seen.add(rec.id)
        n += 1
        if n <= skip:
            continue
        chunk.append(rec)
        if len(chunk) == chunk_docs:
            yield chunk
            chunk = []
    if n < skip:
        raise LsrError(f"the input has {n} documents but {skip} were encoded before: the input changed")
    if chunk:
        yield chunk


def encode_chunks(encoder: Encoder, source: str, *, chunk_docs: int, skip: int = 0, limit: int | None = None,
                  expansion_field: str | None = None, batch_size: int = 32, sparse: bool = True,
                  progress: Callable[[int], None] | None = None) -> Iterator[tuple]:
    """``(doc ids, texts, vectors, EncodeStats)`` per chunk of :func:`iter_chunks`, encoded in this process
    with one ``encode_documents_sparse`` call (a SparseBatch; ``sparse=False``: ``encode_documents``,
    a list of dicts) each. :meth:`lsr.distributed.encode.RayEncoding.chunks` yields the same on Ray."""
    for chunk in iter_chunks(source, chunk_docs=chunk_docs, skip=skip, limit=limit,
                             expansion_field=expansion_field):
        texts = [r.text for r in chunk]
        exps = [r.expansion for r in chunk]
        fn = encoder.encode_documents_sparse if sparse else encoder.encode_documents
        vecs = fn(texts, batch_size=batch_size, expansions=exps if any(e is not None for e in exps) else None,
                  progress=progress)
        yield [r.id for r in chunk], texts, vecs, encoder.last_doc_stats


def check_encode_args(part_size, limit, chunk_docs, part_seconds) -> None:
    for name, v in (("part size", part_size), ("chunk size", chunk_docs)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InputError(f"limit must be a positive integer, got {limit!r}")
    if not (part_seconds > 0):
        raise InputError(f"part_seconds must be positive, got {part_seconds!r}")


def runtime_info(encoder: Encoder, batch_size: int) -> dict:
    """The runtime an encode ran with (recorded next to ``Encoder.describe()``)."""
    side = encoder.doc_side
    return {"device": encoder.runtime.device, "dtype": encoder.runtime.dtype, "threads": side.threads,
            "threads_given": encoder.runtime.threads is not None, "batch_size": batch_size}


def encode_corpus(encoder: Encoder, source: str, output: str, *, batch_size: int = 32,
                  part_size: int = 10_000, expansion_field: str | None = None, limit: int | None = None,
                  progress: bool = False, overwrite: bool = False,
                  on_part: Callable[[int, int], None] | None = None, chunk_docs: int = CHUNK_DOCS,
                  part_seconds: float = PART_SECONDS, ray=None) -> EncodeReport:
    """Encode the documents of ``source`` into the vector collection directory ``output``.

    Resumable (see the module docstring). ``on_part(part_index, docs_done)``
    is called after each part is safely on disk. Duplicate document ids are
    an error. ``overwrite`` deletes an earlier encode's files in ``output``
    and starts again; it refuses (``InputError``) a file, a directory that is
    neither empty nor an encode output (recognised by ``encode.state``), one
    holding files an encode did not write, and an ``output`` that equals or
    contains ``source``. ``progress``: a bar on a terminal, else a line on stderr every
    30 s (:class:`lsr.progress.Progress`). Chunks hold ``min(chunk_docs,
    part_size)`` documents. Returns an :class:`EncodeReport`; ``encoder.json``
    is written when the whole input is encoded. ``ray``: a
    :class:`lsr.distributed.encode.RayEncodeConfig` to encode the chunks on a Ray actor pool instead of
    in this process (same parts, same resume; the runtime recorded adds ``ray``).
    """
    from lsr.progress import Progress

    check_encode_args(part_size, limit, chunk_docs, part_seconds)
    chunk_docs = min(chunk_docs, part_size)
    output = os.fspath(output)
    on_ray = None
    if ray is not None:
        from lsr.distributed.encode import RayEncoding

        refuse_input_overlap(output, [source])
        on_ray = RayEncoding(encoder, ray, batch_size=batch_size)
    description = on_ray.describe() if on_ray is not None else encoder.describe()
    want = {"format": STATE_FORMAT, "source": source_fingerprint(source), "encoder": description,
            "device": encoder.runtime.device, "chunk_docs": chunk_docs, "limit": limit,
            "expansion_field": expansion_field}
    parts = ResumableParts(output, state_file=STATE_FILE, state_format=STATE_FORMAT, part_suffix=".jsonl.gz",
                           want=want, match=("source", "encoder", "device", "chunk_docs", "limit",
                                             "expansion_field"),
                           what="an encode", start_again="use a new output directory or --overwrite to start again",
                           keep=(ENCODER_FILE,))
    refuse_input_overlap(output, [source])
    if overwrite and os.path.lexists(output):
        check_replaceable_encode(output, parts)
        parts.clear()
    legacy = _legacy_complete(output, want)
    if legacy is not None:
        return legacy
    parts.prepare()
    report = EncodeReport(output=output)
    done = parts.totals()
    report.resumed_from = done["docs"]
    if parts.complete:
        report.docs, report.parts, report.complete = done["docs"], len(parts.stats), True
        report.truncated, report.empty, report.expanded = done["truncated"], done["empty"], done["expanded"]
        if not os.path.exists(os.path.join(output, ENCODER_FILE)):
            write_json(os.path.join(output, ENCODER_FILE), description)
        return report

    total = count_records(source) if progress else None
    if total is not None and limit is not None:
        total = min(total, limit)
    t0 = time.perf_counter()
    buf_ids: list[str] = []
    buf_vecs: list[dict] = []
    counts = [0, 0, 0, 0]
    part_t0 = time.monotonic()

    def flush() -> None:
        nonlocal counts, part_t0
        if not buf_ids:
            return
        parts.commit(lambda path: _write_part(path, buf_ids, buf_vecs), counts)
        report.encoded += counts[0]
        buf_ids.clear()
        buf_vecs.clear()
        counts = [0, 0, 0, 0]
        part_t0 = time.monotonic()
        if on_part is not None:
            on_part(len(parts.stats) - 1, parts.totals()["docs"])

    with Progress("lsr encode", total, unit="docs", enabled=progress, initial=report.resumed_from) as bar:
        where = {"chunk_docs": chunk_docs, "skip": report.resumed_from, "limit": limit,
                 "expansion_field": expansion_field, "progress": bar.update}
        chunks = (encode_chunks(encoder, source, batch_size=batch_size, sparse=False, **where) if on_ray is None
                  else on_ray.chunks(source, **where))
        for ids, _texts, vecs, st in chunks:
            buf_ids.extend(ids)
            buf_vecs.extend(vecs if isinstance(vecs, list) else vecs.to_dicts())
            for i, v in enumerate((len(ids), st.truncated, st.empty, st.expanded)):
                counts[i] += v
            if len(buf_ids) >= part_size or time.monotonic() - part_t0 >= part_seconds:
                flush()
        flush()
    report.seconds = time.perf_counter() - t0
    done = parts.totals()
    report.parts = len(parts.stats)
    report.docs, report.truncated, report.empty, report.expanded = (done[k] for k in STAT_KEYS)
    report.runtime = on_ray.runtime_info() if on_ray is not None else runtime_info(encoder, batch_size)
    write_json(os.path.join(output, ENCODER_FILE), {**description, "runtime": report.runtime})
    parts.finish()
    report.complete = True
    return report


def check_replaceable_encode(output: str, parts: ResumableParts) -> None:
    """Raise InputError unless ``overwrite`` may clear ``output``: an empty directory, or an encode
    output (``encode.state`` of a known format) holding only the files an encode writes."""
    if not os.path.isdir(output):
        raise InputError(f"{output} exists and is not a directory: --overwrite replaces only an lsr encode "
                         "output or an empty directory, never a file (choose another output)")
    names = os.listdir(output)
    if not names:
        return
    try:
        with open(os.path.join(output, STATE_FILE), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        state = None
    if not isinstance(state, dict) or state.get("format") not in ENCODE_STATE_FORMATS:
        raise InputError(f"{output} is not an lsr encode output (no readable {STATE_FILE}) and not empty: "
                         "--overwrite replaces only an encode output or an empty directory (choose another "
                         "output)")
    foreign = sorted(n for n in names if not parts.is_own(n))
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise InputError(f"{output} holds {foreign[0]!r}{more}, which lsr encode did not write: --overwrite "
                         "replaces only an encode output (move it, or choose another output)")


def _legacy_complete(output: str, want: dict) -> EncodeReport | None:
    """The report of a complete encode written by an older lsr (state v1) with the same settings, or None
    where the directory holds no v1 state; an unfinished or different v1 encode is refused."""
    path = os.path.join(output, STATE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("format") != LEGACY_STATE_FORMAT:
        return None
    again = "use a new output directory or --overwrite to start again"
    if not state.get("complete"):
        raise LsrError(f"{output} holds an unfinished encode written by an older lsr ({LEGACY_STATE_FORMAT}), "
                       f"which this version cannot continue; {again}")
    for key in ("source", "encoder", "limit", "expansion_field"):
        if state.get(key) != want.get(key):
            where = first_difference(state.get(key), want.get(key), key)
            raise LsrError(f"{output} holds an encode with a different {where}; {again}")
    return EncodeReport(output=output, docs=state.get("docs", 0), resumed_from=state.get("docs", 0),
                        parts=state.get("parts", 0), truncated=state.get("truncated", 0),
                        empty=state.get("empty", 0), expanded=state.get("expanded", 0), complete=True)


def encode_query_file(encoder: QueryEncoder, source: str, output: str, *, batch_size: int = 64,
                      limit: int | None = None, progress: bool = False) -> EncodeReport:
    """Encode the queries of ``source`` into a JSONL file ``{"id":..., "vector": {...}}`` (gzip for ``.gz``).

    The file is what :func:`lsr.io.read_queries` reads (written atomically).
    Duplicate query ids are an error.
    """
    refuse_input_overlap(output, [source], "queries output")
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
    from lsr.progress import Progress

    t0 = time.perf_counter()
    with Progress("lsr encode queries", len(ids), unit="queries", enabled=progress) as bar:
        vecs = encoder.encode_queries(texts, batch_size=batch_size, progress=bar.update)
    seconds = time.perf_counter() - t0
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    write_vectors(output, zip(ids, vecs))
    st = encoder.last_query_stats
    return EncodeReport(output=output, docs=len(ids), encoded=len(ids), parts=1, truncated=st.truncated,
                        empty=st.empty, seconds=seconds, complete=True)


__all__ = ["CHUNK_DOCS", "PART_NAME", "PART_SECONDS", "STATE_FILE", "EncodeReport", "ResumableParts",
           "encode_chunks", "encode_corpus", "encode_query_file", "iter_chunks"]
