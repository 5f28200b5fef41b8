"""lsr: learned sparse retrieval.

Public API (everything users need is importable from ``lsr``)::

    import lsr
    index = lsr.build_index("vectors.jsonl.gz", "my-index")   # or lsr.Index.open("my-index")
    searcher = lsr.Searcher(index)
    results = searcher.search({"term": 1.2, "other": 0.4}, k=10)
    for hit in results:
        print(hit.query_id, hit.doc_id, hit.score, hit.rank)

From text in one step (encoder batches go straight into the index builder;
resumable through ``my-index.partial/``)::

    index = lsr.build_index("corpus.jsonl", "my-index", encoder="splade-v3", store_text=True)
    lsr.Searcher(index).search("a text query", k=10)     # encoded by the recorded query encoder
    index.doc_text(hit.doc_id)                             # with store_text

Reranking the top candidates (document text from the index's docstore)::

    pipeline = lsr.Searcher(index) >> lsr.load_reranker("sft-qwen3-reranker-0.6b")   # or lsr.Pipeline(searcher, reranker, depth=100)
    pipeline.search("a text query", k=10)

Training an encoder (sentence-transformers' sparse trainer; the ``train`` extra)::

    cfg = lsr.train.train_config("unicoil", {"model": "BACKBONE", "init_head": "random",
                                             "data": "beir/scifact/train"})
    lsr.train(cfg, "runs/unicoil")        # -> runs/unicoil/model, a SparseEncoder directory
"""

__version__ = "0.1.0"

from .errors import InputError, IndexFormatError, LsrError  # noqa: E402
from .results import Hit, Results  # noqa: E402

__all__ = ["__version__", "LsrError", "InputError", "IndexFormatError", "Hit", "Results"]

from .config import IndexConfig, QuantizationConfig, SearchConfig  # noqa: E402
from .index import Index, IndexBuilder, Searcher, build_index  # noqa: E402
from .index.text_index import build_index_from_text  # noqa: E402
from .io import Query, read_queries  # noqa: E402
from .rerank import Pipeline, Reranker, load_reranker  # noqa: E402
from . import train  # noqa: E402  (lsr.train(config, output) trains; lsr.train.* is the package)
from . import anserini  # noqa: E402  (lsr.anserini.export_index: an index as a JsonVectorCollection)

__all__ += ["IndexConfig", "QuantizationConfig", "SearchConfig", "Index", "IndexBuilder", "Searcher",
            "build_index", "build_index_from_text", "Query", "read_queries", "Pipeline", "Reranker",
            "load_reranker", "train", "anserini"]
