"""The inverted index: streaming builder, memory-mapped format, exact search.

``lsr.index`` is the ``index/`` directory of the repository.
"""

from .builder import IndexBuilder, build_index
from .format import FORMAT_NAME, FORMAT_VERSION
from .index import Index
from .search import PreparedQueries, Searcher

__all__ = ["Index", "IndexBuilder", "build_index", "Searcher", "PreparedQueries",
           "FORMAT_NAME", "FORMAT_VERSION"]
