"""The one results type: ranked hits (query id, doc id, score, rank).

:class:`Results` is columnar (NumPy arrays for scores and ranks, lists of
string ids) so that a batch of 7,000 queries x 1,000 hits stays cheap, and
iterates as :class:`Hit` tuples. Every stage (search, reranking, evaluation)
takes and returns this type. TREC run files (``qid Q0 docid rank score tag``)
are read and written here, and pandas frames in PyTerrier's convention (``qid``, ``docno``,
``score``, ``rank`` from 0) and ir-measures records are made here.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from .errors import InputError, LsrError
from .io import check_input_file, reading


class Hit(NamedTuple):
    query_id: str
    doc_id: str
    score: float
    rank: int


def _pandas():
    try:
        import pandas
    except ImportError:
        raise InputError("Results.to_pandas needs pandas: pip install pandas") from None
    return pandas


def _format_score(s) -> str:
    if isinstance(s, (int, np.integer)):
        return str(int(s))
    f = float(s)
    if f.is_integer() and abs(f) < 2**53:
        return str(int(f))
    return repr(f)


@dataclass
class Results:
    """Ranked hits for one or more queries.

    Hits of one query are contiguous and in rank order (rank 1 first). Within
    a query, ``scores`` never increase with the rank; equal scores are ordered
    by the engine's tie rule (ascending internal doc id, i.e. collection
    order), and the ranks written to run files follow that order.
    """

    query_ids: list[str] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    ranks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores)
        self.ranks = np.asarray(self.ranks, dtype=np.int64)
        n = len(self.query_ids)
        if not (len(self.doc_ids) == n == len(self.scores) == len(self.ranks)):
            raise ValueError("Results columns have different lengths")

    # -- construction -----------------------------------------------------
    @classmethod
    def from_hits(cls, hits: Iterable[Hit | tuple]) -> "Results":
        q, d, s, r = [], [], [], []
        for h in hits:
            qid, did, score, rank = h
            q.append(str(qid)); d.append(str(did)); s.append(score); r.append(int(rank))
        return cls(q, d, np.asarray(s), np.asarray(r, dtype=np.int64))

    @classmethod
    def concat(cls, parts: Iterable["Results"]) -> "Results":
        parts = list(parts)
        if not parts:
            return cls()
        q: list[str] = []
        d: list[str] = []
        for p in parts:
            q.extend(p.query_ids); d.extend(p.doc_ids)
        return cls(q, d, np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.ranks for p in parts]))

    # -- access -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.query_ids)

    def __iter__(self) -> Iterator[Hit]:
        s = self.scores.tolist()
        r = self.ranks.tolist()
        for i in range(len(self.query_ids)):
            yield Hit(self.query_ids[i], self.doc_ids[i], s[i], r[i])

    def __getitem__(self, i: int) -> Hit:
        return Hit(self.query_ids[i], self.doc_ids[i], self.scores[i].item(), int(self.ranks[i]))

    def query_order(self) -> list[str]:
        """Query ids in order of first appearance."""
        return list(dict.fromkeys(self.query_ids))

    def by_query(self) -> dict[str, list[Hit]]:
        out: dict[str, list[Hit]] = {}
        for h in self:
            out.setdefault(h.query_id, []).append(h)
        return out

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{qid: {docid: score}}`` as ir-measures and pytrec_eval take it."""
        out: dict[str, dict[str, float]] = {}
        for h in self:
            out.setdefault(h.query_id, {})[h.doc_id] = float(h.score)
        return out

    # -- TREC run files -----------------------------------------------------
    def write_trec(self, dest: str | os.PathLike | io.TextIOBase, tag: str = "lsr") -> None:
        """Write ``qid Q0 docid rank score tag`` lines.

        A path to a regular file (or to none yet) is written atomically: into
        a temporary file beside it (beside the file a symbolic link points
        to), flushed to disk, then renamed over it. A failed write (a full
        disk, a missing directory) removes the temporary file, leaves the
        file as it was, and raises an :class:`~lsr.errors.LsrError` that says
        so. A path to something else that exists (``/dev/stdout``, a FIFO, a
        device) is written in place.
        """
        if any(ch.isspace() for ch in tag) or not tag:
            raise InputError(f"run tag {tag!r} must be a non-empty word without spaces")
        if hasattr(dest, "write"):
            self._write_lines(dest, tag)
            return
        path = os.fspath(dest)
        if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
            try:
                with open(path, "w", encoding="utf-8") as f:
                    self._write_lines(f, tag)
            except OSError as e:
                raise LsrError(f"cannot write the run to {path} ({e.strerror or e})") from None
            return
        target = os.path.realpath(path)
        tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                self._write_lines(f, tag)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as e:
            reason = e.strerror or str(e)
            raise LsrError(f"cannot write the run file {path} ({reason}); nothing was written "
                           f"(the {len(self)} hits are lost, {path} is as it was)") from None
        finally:
            if os.path.lexists(tmp):
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def _write_lines(self, f, tag: str) -> None:
        for h in self:
            f.write(f"{h.query_id} Q0 {h.doc_id} {h.rank} {_format_score(h.score)} {tag}\n")

    # -- interop ------------------------------------------------------------
    def to_pandas(self):
        """A ``pandas.DataFrame`` in PyTerrier's result convention: columns ``qid``, ``docno``,
        ``score``, ``rank``, one row per hit in this order, ``rank`` counted from 0 (PyTerrier's
        first rank) where lsr counts from 1."""
        pd = _pandas()
        return pd.DataFrame({"qid": list(self.query_ids), "docno": list(self.doc_ids),
                             "score": self.scores.copy(), "rank": self.ranks - 1})

    @classmethod
    def from_pandas(cls, df) -> "Results":
        """Results from a DataFrame with ``qid``, ``docno`` and ``score`` columns (PyTerrier's; other
        columns are ignored). Each query's hits are ranked by score, descending; equal scores keep
        the order of the frame's ``rank`` column if it has one, else its row order. Queries keep the
        order of their first row. A missing column or a NaN score is an
        :class:`~lsr.errors.InputError`."""
        missing = [c for c in ("qid", "docno", "score") if c not in getattr(df, "columns", ())]
        if missing:
            raise InputError(f"a results frame needs the columns qid, docno and score (missing: "
                             f"{', '.join(missing)})")
        qids = [str(x) for x in df["qid"].tolist()]
        dids = [str(x) for x in df["docno"].tolist()]
        try:
            scores = np.asarray(df["score"].to_numpy(), dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("the score column of a results frame holds non-numbers") from None
        if np.isnan(scores).any():
            raise InputError(f"{int(np.isnan(scores).sum())} score(s) of the results frame are NaN")
        tie = (np.asarray(df["rank"].to_numpy(), dtype=np.float64) if "rank" in df.columns
               else np.arange(len(qids), dtype=np.float64))
        first: dict[str, int] = {}
        for q in qids:
            first.setdefault(q, len(first))
        qpos = np.asarray([first[q] for q in qids], dtype=np.int64)
        order = np.lexsort((np.arange(len(qids)), tie, -scores, qpos))
        q_sorted = qpos[order]
        starts = np.r_[0, np.flatnonzero(np.diff(q_sorted)) + 1] if len(order) else np.zeros(0, np.int64)
        ranks = np.arange(len(order), dtype=np.int64) - np.repeat(starts, np.diff(np.r_[starts, len(order)])) + 1
        return cls([qids[i] for i in order], [dids[i] for i in order], scores[order], ranks)

    def to_ir_measures(self) -> list:
        """The hits as ``ir_measures.ScoredDoc`` records, for ``ir_measures.calc_aggregate`` /
        ``iter_calc`` (ir-measures ranks by score; lsr's ties by rank are kept by
        :func:`lsr.eval.metrics.evaluate`)."""
        try:
            import ir_measures
        except ImportError:
            raise InputError("Results.to_ir_measures needs ir-measures: pip install 'lsr[eval]'") from None
        return [ir_measures.ScoredDoc(h.query_id, h.doc_id, float(h.score)) for h in self]

    @classmethod
    def read_trec(cls, path: str | os.PathLike) -> "Results":
        """Read a TREC run file; hits are re-ranked per query by (score desc, file order).

        Every problem (a missing or unreadable file, a malformed line, bytes
        that are not UTF-8) is an :class:`~lsr.errors.InputError` naming the
        file (and line)."""
        path = check_input_file(path, "run file")
        rows: dict[str, list[tuple[float, int, str]]] = {}
        n = 0
        with reading(path, "run file"), open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise InputError(f"{path}:{lineno}: not valid UTF-8") from None
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 6:
                    raise InputError(f"{path}:{lineno}: a TREC run line has 6 fields "
                                     f"(qid Q0 docid rank score tag), found {len(parts)}")
                qid, _, did, _rank, score, _tag = parts
                try:
                    sc = float(score)
                except ValueError:
                    raise InputError(f"{path}:{lineno}: score {score!r} is not a number") from None
                if math.isnan(sc):
                    raise InputError(f"{path}:{lineno}: score is NaN")
                rows.setdefault(qid, []).append((sc, n, did))
                n += 1
        q, d, s, r = [], [], [], []
        for qid, hits in rows.items():
            hits.sort(key=lambda t: (-t[0], t[1]))
            for rank, (sc, _, did) in enumerate(hits, 1):
                q.append(qid); d.append(did); s.append(sc); r.append(rank)
        return cls(q, d, np.asarray(s, dtype=np.float64), np.asarray(r, dtype=np.int64))
