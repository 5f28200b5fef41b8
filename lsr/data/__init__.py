"""The demo data shipped with lsr (package data): 1,000 BEIR SciFact abstracts and the 300 test queries.

* ``scifact-1k.corpus.jsonl.gz``: the abstracts, BEIR corpus lines (``_id``, ``title``, ``text``);
* ``scifact-test.queries.jsonl.gz``: the 300 SciFact test queries (``_id``, ``text``);
* ``scifact-1k.qrels.tsv``: their relevance judgments (TREC qrels; every judged document is among the 1,000).

``make demo`` encodes, indexes, searches and evaluates them; :func:`path` finds them in a checkout or an
installed wheel alike. ``build_demo.py`` (maintainers) rebuilds them from a BEIR SciFact directory.
SciFact: abstracts ODC-By 1.0, claims and qrels CC BY 4.0 (Wadden et al., 2020).
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

CORPUS = "scifact-1k.corpus.jsonl.gz"
QUERIES = "scifact-test.queries.jsonl.gz"
QRELS = "scifact-1k.qrels.tsv"


def path(name: str) -> Traversable:
    """The shipped demo file ``name`` (e.g. ``path(CORPUS)``; ``str()`` of it is a file path in a normal install)."""
    return files(__name__) / name


__all__ = ["CORPUS", "QRELS", "QUERIES", "path"]
