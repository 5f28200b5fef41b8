"""Hard negatives mined with lsr's own index (``lsr mine``, ``lsr train --negatives-from``).

:func:`mine_negatives` searches the training queries (texts) with a :class:`~lsr.Searcher` over an
index built from text (``lsr index --encoder``), so each query is encoded by the query encoder the
index records, in batches. For each query with at least one judged positive (relevance > 0) it takes
the hits ranked ``lo <= rank < hi`` (ranks 1-based: ``window=(10, 100)`` is ranks 10 to 99, the
search asks for the top ``hi - 1``), leaves out the query's judged positives, and draws ``per_query``
of the rest uniformly without replacement (all of them where fewer are left; a warning counts those
queries). The draw of a query uses its own RNG seeded by ``(seed, query id)``, so the negatives of a
query depend only on the seed, the query and the index, not on the other queries or the batch size.
The negatives come back in rank order.

:func:`write_groups` writes what was mined as JSONL groups that :func:`lsr.train.data.load_training_data`
reads (with ``corpus=`` the documents' texts), one line per (query, judged positive)::

    {"qid": "1", "query": "...", "positive_id": "D7", "negative_ids": ["D3", ...],
     "negative_ranks": [12, ...], "negative_scores": [31.5, ...]}

(ranks and scores are the mining index's). The file is written to a temporary file beside it and
renamed; an existing file is replaced only with ``overwrite``.
"""

from __future__ import annotations

import json
import os
import random
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from lsr.config import _Config
from lsr.errors import InputError, LsrError
from lsr.results import Hit


@dataclass(frozen=True)
class MineConfig(_Config):
    """Settings of a mining run: the rank window ``(lo, hi)`` (1-based, ``lo <= rank < hi``), negatives
    drawn per query, the RNG seed, queries searched per batch, and search threads (0: all cores)."""

    window: tuple[int, int] = (10, 100)
    negatives: int = 8
    seed: int = 0
    batch_size: int = 1024
    threads: int = 0

    def __post_init__(self) -> None:
        w = self.window
        if isinstance(w, str):
            w = parse_window(w)
        if (not isinstance(w, (tuple, list)) or len(w) != 2
                or any(isinstance(x, bool) or not isinstance(x, int) for x in w)):
            raise InputError(f"window must be two integers (lo, hi), got {self.window!r}")
        lo, hi = w
        if lo < 1 or hi <= lo:
            raise InputError(f"window {lo}:{hi}: ranks start at 1 and lo < hi (ranks lo..hi-1 are sampled)")
        object.__setattr__(self, "window", (lo, hi))
        for name, low in (("negatives", 1), ("batch_size", 1), ("threads", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputError(f"{name} must be an integer >= {low}, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError(f"seed must be an integer, got {self.seed!r}")


def parse_window(text: str) -> tuple[int, int]:
    """``"LO:HI"`` as ``(LO, HI)``; an InputError for anything else (the range is checked by
    :class:`MineConfig`)."""
    lo, sep, hi = str(text).partition(":")
    try:
        if not sep:
            raise ValueError
        return int(lo), int(hi)
    except ValueError:
        raise InputError(f"window {text!r}: expected LO:HI, two integers such as 10:100") from None


def _positives(qrels: Mapping[str, Mapping[str, int]], qid: str) -> list[str]:
    return [d for d, r in qrels.get(qid, {}).items() if r > 0]


def _tally(notes: dict[str, int | None], message: str) -> None:
    """Add a search warning to ``notes``: one starting with a count (``"12 query term(s) unknown ..."``)
    adds its count to the same message's; another is kept once."""
    m = re.match(r"(\d+) (.*)", message, re.S)
    if m is None:
        notes.setdefault(message, None)
    else:
        notes[m.group(2)] = (notes.get(m.group(2)) or 0) + int(m.group(1))


def mine_negative_hits(index, queries, qrels: Mapping[str, Mapping[str, int]], *,
                       window: tuple[int, int] = (10, 100), per_query: int = 8, seed: int = 0,
                       batch_size: int = 1024, threads: int = 0, progress: bool = False) -> dict[str, list[Hit]]:
    """The mined negatives of each query as :class:`~lsr.Hit` (doc id, the index's score and rank),
    in rank order; arguments as :func:`mine_negatives`."""
    from lsr.index import Index, Searcher
    from lsr.progress import Progress
    from lsr.rerank.sources import query_texts

    cfg = MineConfig(window=tuple(window), negatives=per_query, seed=seed, batch_size=batch_size,
                     threads=threads)
    lo, hi = cfg.window
    searcher = index if isinstance(index, Searcher) else Searcher(index if isinstance(index, Index)
                                                                  else Index.open(index))
    texts = query_texts(queries)
    judged = [q for q in texts if _positives(qrels, q)]
    if not judged:
        raise InputError("no query has a judged positive (relevance > 0) in the qrels: nothing to mine for")
    unjudged = len(texts) - len(judged)
    if unjudged:
        warnings.warn(f"{unjudged} of {len(texts)} queries have no judged positive and are not mined for")
    no_text = sum(1 for q in qrels if q not in texts and _positives(qrels, q))
    if no_text:
        warnings.warn(f"{no_text} queries of the qrels have no text among the queries and are not mined for")
    out: dict[str, list[Hit]] = {}
    notes: dict[str, int | None] = {}
    short = 0
    with Progress("lsr mine", len(judged), unit="queries", enabled=progress) as bar:
        for a in range(0, len(judged), cfg.batch_size):
            batch = judged[a:a + cfg.batch_size]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                hits = searcher.search_batch([(q, texts[q]) for q in batch], k=hi - 1,
                                             threads=cfg.threads).by_query()
            for w in caught:
                _tally(notes, str(w.message))
            for q in batch:
                pos = set(_positives(qrels, q))
                cands = [h for h in hits.get(q, []) if lo <= h.rank < hi and h.doc_id not in pos]
                rng = random.Random(f"{cfg.seed}:{q}")
                take = rng.sample(cands, min(cfg.negatives, len(cands)))
                if len(take) < cfg.negatives:
                    short += 1
                out[q] = sorted(take, key=lambda h: h.rank)
            bar.update(len(batch))
    for rest, n in notes.items():   # the search's own warnings, once for all the batches
        warnings.warn(rest if n is None else f"{n} {rest}")
    if short:
        warnings.warn(f"{short} of {len(judged)} queries have fewer than {cfg.negatives} unjudged hits at ranks "
                      f"{lo} to {hi - 1}: they get all they have")
    return out


def mine_negatives(index, queries, qrels: Mapping[str, Mapping[str, int]], *,
                   window: tuple[int, int] = (10, 100), per_query: int = 8, seed: int = 0,
                   batch_size: int = 1024, threads: int = 0, progress: bool = False) -> dict[str, list[str]]:
    """``{qid: [negative doc ids]}`` mined with ``index`` (an :class:`~lsr.Index`, its path, or a
    :class:`~lsr.Searcher`) for every query of ``queries`` (``{qid: text}``, or a query file or
    ``irds:<id>`` as :func:`lsr.rerank.sources.query_texts` reads) that has a judged positive in
    ``qrels`` (``{qid: {docid: relevance}}``): ``per_query`` doc ids drawn uniformly from the hits
    ranked ``window[0] <= rank < window[1]`` that are not judged positives, with a per-query RNG
    seeded by ``seed`` (see the module docstring); in rank order."""
    hits = mine_negative_hits(index, queries, qrels, window=window, per_query=per_query, seed=seed,
                              batch_size=batch_size, threads=threads, progress=progress)
    return {q: [h.doc_id for h in hs] for q, hs in hits.items()}


def _json_number(x):
    return x if isinstance(x, int) else float(x)


def write_groups(path: str | os.PathLike, mined: Mapping[str, list[Hit]], queries,
                 qrels: Mapping[str, Mapping[str, int]], *, overwrite: bool = False) -> int:
    """Write the mined negatives (:func:`mine_negative_hits`) as JSONL groups, one line per (query,
    judged positive) in the order of ``mined`` and of the qrels; atomically. Returns the number of lines.
    An existing ``path`` is an :class:`~lsr.errors.InputError` unless ``overwrite``."""
    from lsr.io import check_output_file
    from lsr.rerank.sources import query_texts

    path = check_output_file(path, "groups file")
    if os.path.exists(path) and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    texts = query_texts(queries)
    target = os.path.realpath(path)
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.tmp-{os.getpid()}")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for qid, hits in mined.items():
                for pos in _positives(qrels, qid):
                    rec = {"qid": qid, "query": texts[qid], "positive_id": pos,
                           "negative_ids": [h.doc_id for h in hits],
                           "negative_ranks": [int(h.rank) for h in hits],
                           "negative_scores": [_json_number(h.score) for h in hits]}
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        raise LsrError(f"cannot write the groups file {path} ({e.strerror or e}); nothing was written") from None
    finally:
        if os.path.lexists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return n


def mine_to_file(index, queries, qrels: Mapping[str, Mapping[str, int]], output: str | os.PathLike,
                 config: MineConfig | None = None, *, overwrite: bool = False, progress: bool = False) -> int:
    """Mine (:func:`mine_negative_hits` with ``config``) and write the groups to ``output``
    (:func:`write_groups`); the output is checked before the search. Returns the number of groups."""
    from lsr.io import check_output_file

    from lsr.rerank.sources import query_texts

    cfg = config or MineConfig()
    check_output_file(output, "groups file")
    if os.path.exists(output) and not overwrite:
        raise InputError(f"{os.fspath(output)} exists; pass --overwrite (overwrite=True) to replace it")
    texts = query_texts(queries)
    hits = mine_negative_hits(index, texts, qrels, window=cfg.window, per_query=cfg.negatives, seed=cfg.seed,
                              batch_size=cfg.batch_size, threads=cfg.threads, progress=progress)
    return write_groups(output, hits, texts, qrels, overwrite=overwrite)


__all__ = ["MineConfig", "parse_window", "mine_negatives", "mine_negative_hits", "write_groups", "mine_to_file"]
