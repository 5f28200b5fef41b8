"""The reranking stage: re-score a first stage's candidates with a heavier model.

One contract (:class:`Reranker`: ``rerank(queries, results, docs) -> Results``),
one registry (:data:`RERANKERS`: ``maxsim``, ``icr``, ``sft``), document text
sources (:mod:`lsr.rerank.sources`) and :class:`Pipeline` (first stage then
reranker). The rerankers themselves import torch and transformers when loaded
(the ``rerank`` extra).
"""

from .base import (
    RERANKERS,
    Reranker,
    RerankerConfig,
    available_presets,
    available_rerankers,
    load_reranker,
    register_reranker,
    reranker_class,
    reranker_config,
)
from .pipeline import Pipeline
from .sources import DocSource, open_docs, query_texts

__all__ = ["RERANKERS", "Reranker", "RerankerConfig", "available_presets", "available_rerankers",
           "load_reranker", "Pipeline", "register_reranker", "reranker_class", "reranker_config", "DocSource",
           "open_docs", "query_texts"]
