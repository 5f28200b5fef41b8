"""The encoder objects: :class:`Encoder` (documents and queries) and :class:`QueryEncoder`.

Sides are built lazily: encoding only queries never loads the document model
(and the other way round). Models are shared between sides and encoders with
the same checkpoint, device and dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

from lsr import __version__

from .config import EncoderConfig, RuntimeConfig
from .errors import IncompatibleModelError
from .sides import EncodeStats, Progress, SideEncoder, SparseBatch, make_side

DESCRIBE_FORMAT = "lsr-encoder/1"


class QueryEncoder:
    """Encodes queries with the query side of an encoder."""

    def __init__(self, config: EncoderConfig, runtime: RuntimeConfig | None = None) -> None:
        self.config = config
        self.runtime = runtime or RuntimeConfig()
        self._query: SideEncoder | None = None

    @property
    def query_side(self) -> SideEncoder:
        if self._query is None:
            self._query = make_side(self.config.query, self.runtime, "query")
        return self._query

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64,
                       progress: Progress | None = None) -> list[dict[str, float]]:
        """``{term: weight}`` for each query, in input order (an empty query gives ``{}``)."""
        return self.query_side.encode(texts, batch_size=batch_size, progress=progress)

    @property
    def last_query_stats(self) -> EncodeStats:
        return self.query_side.last_stats

    def describe_query(self) -> dict:
        return self.query_side.describe()

    def query_encoder(self, batch_size: int = 64):
        """A PyTerrier transformer (:class:`lsr.pyterrier.LsrQueryEncoder`): ``query`` -> ``query_toks``."""
        from lsr.pyterrier import LsrQueryEncoder

        return LsrQueryEncoder(self, batch_size=batch_size)


class Encoder(QueryEncoder):
    """A document encoder and a query encoder (see :class:`~lsr.encoders.config.EncoderConfig`)."""

    def __init__(self, config: EncoderConfig, runtime: RuntimeConfig | None = None) -> None:
        super().__init__(config, runtime)
        self._doc: SideEncoder | None = None
        self._checked = False

    @property
    def doc_side(self) -> SideEncoder:
        if self._doc is None:
            self._doc = make_side(self.config.doc, self.runtime, "doc")
            self._check_term_spaces()
        return self._doc

    @property
    def query_side(self) -> SideEncoder:
        side = super().query_side
        if self._doc is not None:
            self._check_term_spaces()
        return side

    def _check_term_spaces(self) -> None:
        if self._checked or self._doc is None or self._query is None:
            return
        d, q = self._doc.hf_tokenizer, self._query.hf_tokenizer
        if self.config.doc.term_space == "wordpiece":
            if d.get_vocab() != q.get_vocab():
                raise IncompatibleModelError(f"encoder {self.config.name}: the document and query tokenizers "
                                             "have different vocabularies, so their terms would not match")
        elif self._doc.tokenizer_hash != self._query.tokenizer_hash:
            raise IncompatibleModelError(f"encoder {self.config.name}: the document and query tokenizers "
                                         "normalise or split words differently")
        self._checked = True

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32,
                         expansions: Sequence[str | None] | None = None,
                         progress: Progress | None = None) -> list[dict[str, float]]:
        """``{term: weight}`` for each document, in input order.

        ``expansions`` (optional, one per text, None for none): doc2query text
        given with the documents. uniCOIL-style sides append it to the text;
        DeepImpact sides append only its unique new words (and skip their own
        generation for those documents). ``progress(n)`` is called as batches
        finish.
        """
        return self.doc_side.encode(texts, batch_size=batch_size, expansions=expansions, progress=progress)

    def encode_documents_sparse(self, texts: Sequence[str], batch_size: int = 32,
                                expansions: Sequence[str | None] | None = None,
                                progress: Progress | None = None) -> SparseBatch:
        """The vectors of :meth:`encode_documents` as one CSR :class:`~lsr.encoders.sides.SparseBatch`
        (token ids and float32 weights for the WordPiece model sides)."""
        return self.doc_side.encode_sparse(texts, batch_size=batch_size, expansions=expansions, progress=progress)

    def doc_encoder(self, text_field: str = "text", batch_size: int = 32):
        """A PyTerrier transformer (:class:`lsr.pyterrier.LsrDocEncoder`): ``text_field`` -> ``toks``."""
        from lsr.pyterrier import LsrDocEncoder

        return LsrDocEncoder(self, text_field=text_field, batch_size=batch_size)

    @property
    def last_doc_stats(self) -> EncodeStats:
        return self.doc_side.last_stats

    def describe(self) -> dict:
        """JSON-serialisable description: names, models, revisions, tokenizer hashes, heads, settings.

        ``config`` holds the full configuration with resolved model paths, so
        :func:`~lsr.encoders.load_query_encoder` can rebuild the query side.
        """
        doc = self.doc_side.describe()
        query = self.query_side.describe()
        return {
            "format": DESCRIBE_FORMAT,
            "lsr_version": __version__,
            "name": self.config.name,
            "type": self.config.type,
            "term_space": self.config.doc.term_space,
            "doc_model": doc["model"],
            "query_model": query["model"],
            "revision": {"doc": doc["revision"], "query": query["revision"]},
            "tokenizer_hash": {"doc": doc["tokenizer_hash"], "query": query["tokenizer_hash"]},
            "head": {"doc": doc.get("head"), "query": query.get("head")},
            "pooling": {"doc": doc.get("pooling"), "query": query.get("pooling")},
            "max_length": {"doc": self.config.doc.max_length, "query": self.config.query.max_length},
            "dtype": self.runtime.dtype,
            "doc": doc,
            "query": query,
            "config": self.config.to_dict(),
        }


__all__ = ["DESCRIBE_FORMAT", "Encoder", "QueryEncoder"]
