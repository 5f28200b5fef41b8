"""lsr: learned sparse retrieval.

Public API (everything users need is importable from ``lsr``)::

    import lsr
    index = lsr.build_index("vectors.jsonl.gz", "my-index")   # or lsr.Index.open("my-index")
    searcher = lsr.Searcher(index)
    results = searcher.search({"term": 1.2, "other": 0.4}, k=10)
    for hit in results:
        print(hit.query_id, hit.doc_id, hit.score, hit.rank)
"""

__version__ = "0.1.0"

from .errors import InputError, IndexFormatError, LsrError  # noqa: E402
from .results import Hit, Results  # noqa: E402

__all__ = ["__version__", "LsrError", "InputError", "IndexFormatError", "Hit", "Results"]

from .config import IndexConfig, QuantizationConfig, SearchConfig  # noqa: E402
from .index import Index, IndexBuilder, Searcher, build_index  # noqa: E402
from .io import Query, read_queries  # noqa: E402

__all__ += ["IndexConfig", "QuantizationConfig", "SearchConfig", "Index", "IndexBuilder", "Searcher",
            "build_index", "Query", "read_queries"]
