"""Where benchmarks/ keeps its collections and indexes: outside the repository, in the user cache directory.

Default: ``$LSR_BENCH_CACHE`` when set, else ``$XDG_CACHE_HOME/lsr-bench``
(``~/.cache/lsr-bench``). The builders (:mod:`benchmarks.realdata`,
:mod:`benchmarks.peer_bench`) take ``--work-dir`` to use another directory.
A new work tree (a fresh clone, ``git worktree add``) therefore finds the
collections an earlier one built, such as the real-encoder collection that
takes over an hour of CPU to encode.

An already-encoded collection is found by :func:`find_encoded`: the layout
``realdata`` writes (``real/vectors-<n>/`` + ``real/queries-*.jsonl``), or a
directory with ``vectors/`` (term-weight JSONL parts, what ``lsr index``
reads) and ``queries-devsmall.jsonl``, e.g. the unpacked copy of the 300k
collection (``unpack-real300k ~/.cache/lsr-bench/real300k``).
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field

ENV = "LSR_BENCH_CACHE"


def default_cache_dir() -> str:
    """``$LSR_BENCH_CACHE``, else ``$XDG_CACHE_HOME/lsr-bench``, else ``~/.cache/lsr-bench`` (read, not created)."""
    d = os.environ.get(ENV)
    if d:
        return os.path.abspath(os.path.expanduser(d))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "lsr-bench")


@dataclass
class EncodedCollection:
    """An encoded collection on disk: document vectors (a directory ``lsr index`` reads) and encoded queries."""

    vectors_dir: str
    queries_path: str
    source: str                 # how it was found
    meta: dict = field(default_factory=dict)

    @property
    def tag(self) -> str:
        """A short name for caches of what is built from it (``real300k``, ``vectors-300000``)."""
        base = os.path.basename(os.path.normpath(self.vectors_dir))
        return os.path.basename(os.path.dirname(os.path.normpath(self.vectors_dir))) if base == "vectors" else base


def _has_parts(d: str) -> bool:
    return os.path.isdir(d) and bool(glob.glob(os.path.join(d, "part-*.jsonl*")))


def encoded_collection(path: str, queries: str | None = None) -> EncodedCollection:
    """The collection at ``path``: a directory holding ``vectors/`` and ``queries-*.jsonl``, or a vectors
    directory itself (then ``queries``, an encoded queries file, is required). Raises ValueError if not one."""
    path = os.path.abspath(os.path.expanduser(path))
    if _has_parts(os.path.join(path, "vectors")):
        vectors = os.path.join(path, "vectors")
        if queries is None:
            found = sorted(glob.glob(os.path.join(path, "queries-*.jsonl")))
            if not found:
                raise ValueError(f"{path} has vectors/ but no queries-*.jsonl: give the encoded queries file")
            queries = found[0]
    elif _has_parts(path):
        vectors = path
        if queries is None:
            raise ValueError(f"{path} is a vectors directory: give the encoded queries file too")
    else:
        raise ValueError(f"{path} is not an encoded collection (no part-*.jsonl files in it or in its vectors/)")
    queries = os.path.abspath(os.path.expanduser(queries))
    if not os.path.isfile(queries):
        raise ValueError(f"encoded queries file {queries} not found")
    return EncodedCollection(vectors, queries, source=f"given: {path}")


def find_encoded(work_dir: str, n_passages: int) -> EncodedCollection | None:
    """An already-encoded real collection of ``n_passages`` documents under ``work_dir``, or None.

    First what :func:`benchmarks.realdata.ensure_collection` wrote (its record
    ``real/collection-<n>.json`` says the encode finished and where the files
    are), then an unpacked copy ``real<n/1000>k/`` (``vectors/`` and
    ``queries-devsmall.jsonl``), e.g. ``unpack-real300k <work_dir>/real300k``.
    """
    rec = os.path.join(work_dir, "real", f"collection-{n_passages}.json")
    if os.path.isfile(rec):
        with open(rec, encoding="utf-8") as f:
            meta = json.load(f)
        v, q = meta.get("vectors_dir"), meta.get("queries_path")
        if (meta.get("documents") or {}).get("docs") == n_passages and v and q and _has_parts(v) \
                and os.path.isfile(q):
            return EncodedCollection(v, q, source=f"built by benchmarks.realdata ({rec})", meta=meta)
    if n_passages % 1000 == 0:
        d = os.path.join(work_dir, f"real{n_passages // 1000}k")
        q = os.path.join(d, "queries-devsmall.jsonl")
        if _has_parts(os.path.join(d, "vectors")) and os.path.isfile(q):
            return EncodedCollection(os.path.join(d, "vectors"), q, source=f"unpacked copy ({d})")
    return None
