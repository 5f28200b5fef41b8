"""lsr's sentence-transformers modules for uniCOIL, DeepImpact and SparTerm, and builders for new models.

These are sentence-transformers (ST) 6.x modules, so a model built from them
trains with ``SparseEncoderTrainer``, saves with ``model.save(dir)`` and loads
with ``SparseEncoder(dir, trust_remote_code=True)`` (ST 6.x asks for that flag
for any module class outside its own package; :func:`load_impact_encoder`
passes it). lsr's loader (:mod:`lsr.encoders.st_layout`) maps a saved model to
lsr's own ``unicoil`` / ``deepimpact`` / ``words`` sides, which encode the
same vectors without ST.

Modules:

* :class:`ImpactHead` (after ST's ``Transformer``): per token ``w_t =
  ReLU(MLP(h_t))``, the MLP a stack of ``Linear`` layers each followed by ReLU
  (lsr's :class:`~lsr.encoders.heads.MLPHead`), weights saved as
  ``model.safetensors`` with keys ``mlp.0.weight``, ``mlp.0.bias``, ... .
  ``kind="unicoil"``: the weight of each token is scattered into a
  vocabulary-size vector at its token id, special tokens and padding left out,
  repeats reduced by ``document_pooling`` (default max) for documents and
  ``query_pooling`` (default sum, as Pyserini's uniCOIL queries) for queries.
  The module learns which one from the ``task`` ST passes to modules that
  declare it (``encode_query`` / ``encode_document``, and the trainer's
  ``router_mapping``, which the data collator stamps into the features): one
  module, one set of weights, no Router. With no task (plain ``encode``) it
  pools as for documents; in training mode it refuses a batch with no task
  when the two poolings differ, so queries are never silently max-pooled.
  ``kind="deepimpact"``: one impact per distinct whole word, read at the first
  WordPiece of the word's first occurrence (positions from
  :class:`ImpactTransformer`), scattered into ``num_buckets`` hashed dimensions.
* :class:`ImpactTransformer`: ST's ``Transformer`` whose ``preprocess`` cuts
  text into words with lsr's own segmentation (:mod:`lsr.encoders.text`:
  ``window_words`` + ``first_occurrences``, the code lsr's ``DeepImpactSide``
  runs), so the token ids, the scored positions and the words are exactly
  lsr's; it adds ``word_positions``, ``word_buckets`` and ``word_mask`` to the
  features.
* :class:`WordBag`: a parameter-free input module for DeepImpact's query side:
  the query's words (lsr's ``content_words``, the first ``max_words``), weight 1
  each, in the same hashed space (lsr's ``words`` side). It sits on the query
  route of ST's ``Router``; the document route is ImpactTransformer + ImpactHead
  (the inference-free layout ST uses for ``SparseStaticEmbedding``).

Hashed word space: ST's vectors have a fixed dimension, so a word ``w`` is the
dimension :func:`word_bucket` ``= zlib.crc32(w.encode("utf-8")) % num_buckets``
(stable across runs and machines, unlike Python's ``hash``). Two words of one
text that share a bucket keep the larger impact (a query's keep weight 1).
ST's dimensions are bucket numbers, not words: ``SparseEncoder.decode`` looks them
up in the WordPiece vocabulary and shows an unrelated token, or None past the
vocabulary's end, so read such vectors by bucket number (:func:`word_bucket`
gives a word's). lsr's own path (``lsr encode``, ``lsr index``,
:func:`lsr.encoders.load_encoder`) writes the words themselves, so the hash only
affects training and ST's own encodings.

The default ``num_buckets = 2**18`` (262,144): a text with ``n`` distinct words
has about ``n(n-1)/2 / 2**18`` colliding pairs (0.04 for 150 words, 0.17 for
300) and a query word meets an unrelated document word with probability about
``n / 2**18`` (0.06% for 150 words), while a dense batch of vectors stays small
(1 MiB per text in float32; SPLADE's 30,522-term vocabulary is 0.12 MiB).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import torch
from sentence_transformers import SparseEncoder
from sentence_transformers.base.modules import InputModule, Module, Router, Transformer

from .text import TextTokenizer

KINDS = ("unicoil", "deepimpact")
POOLINGS = ("max", "sum")
DEFAULT_NUM_BUCKETS = 2 ** 18
DEFAULT_QUERY_WORDS = 512
WORD_FEATURES = ("word_positions", "word_buckets", "word_mask")


def word_bucket(word: str, num_buckets: int) -> int:
    """The dimension of ``word`` in a hashed space of ``num_buckets`` (``crc32(utf-8) % num_buckets``)."""
    return zlib.crc32(word.encode("utf-8")) % num_buckets


def _check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return value


def _pad(rows: Sequence[Sequence[int]], value: int = 0) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def _texts(inputs: Sequence[Any], prompt: str | None, who: str) -> list[str]:
    texts = list(inputs)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"{who} takes texts only; input {i} is {type(t).__name__}")
    return [prompt + t for t in texts] if prompt else texts


# --------------------------------------------------------------------------- the head
class ImpactHead(Module):
    """Per-token impacts ``ReLU(MLP(h_t))`` pooled into a sparse vector (uniCOIL or DeepImpact).

    Args:
        kind: ``unicoil`` (vocabulary-size output, one weight per token id) or
            ``deepimpact`` (``embedding_dimension`` hashed word buckets, one weight per word).
        in_features: hidden size of the backbone.
        layer_sizes: output size of each ``Linear`` layer, the last 1 (uniCOIL ``[1]``;
            DeepImpact ``[in_features, 1]``).
        embedding_dimension: output dimension (the vocabulary size, or ``num_buckets``).
        document_pooling / query_pooling: ``max`` or ``sum`` over repeats of a token
            (uniCOIL only; DeepImpact scores a word once).
        special_token_ids: token ids that get no weight (uniCOIL: the tokenizer's special tokens).
        dropout: dropout after each hidden layer's ReLU, in training only.
    """

    config_keys: list[str] = ["kind", "in_features", "layer_sizes", "embedding_dimension", "document_pooling",
                              "query_pooling", "special_token_ids", "dropout"]
    forward_kwargs = {"task"}

    def __init__(self, kind: str, in_features: int, layer_sizes: Sequence[int], embedding_dimension: int,
                 document_pooling: str = "max", query_pooling: str = "sum",
                 special_token_ids: Sequence[int] = (), dropout: float = 0.0) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"ImpactHead kind must be one of {', '.join(KINDS)}, got {kind!r}")
        _check_int("in_features", in_features, 1)
        _check_int("embedding_dimension", embedding_dimension, 1)
        sizes = list(layer_sizes) if isinstance(layer_sizes, (list, tuple)) else None
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes) or sizes[-1] != 1:
            raise ValueError(f"layer_sizes must be positive integers ending in 1, got {layer_sizes!r}")
        for name, p in (("document_pooling", document_pooling), ("query_pooling", query_pooling)):
            if p not in POOLINGS:
                raise ValueError(f"{name} must be 'max' or 'sum', got {p!r}")
        if kind == "deepimpact" and (document_pooling, query_pooling) != ("max", "max"):
            raise ValueError("a deepimpact head scores each word once: its poolings must be 'max'")
        ids = list(special_token_ids)
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
            raise ValueError(f"special_token_ids must be non-negative integers, got {special_token_ids!r}")
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.kind = kind
        self.in_features = in_features
        self.layer_sizes = sizes
        self.embedding_dimension = embedding_dimension
        self.document_pooling = document_pooling
        self.query_pooling = query_pooling
        self.special_token_ids = sorted(set(ids))
        self.dropout = float(dropout)
        dims = [in_features, *sizes]
        self.mlp = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.register_buffer("_special", torch.tensor(self.special_token_ids, dtype=torch.long), persistent=False)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """``ReLU(Linear(... ReLU(Linear(h))))`` of ``[..., in_features]`` states: ``[...]`` impacts."""
        x = hidden
        for i, layer in enumerate(self.mlp):
            x = torch.relu(layer(x))
            if self.dropout and i < len(self.mlp) - 1:
                x = torch.nn.functional.dropout(x, self.dropout, self.training)
        return x.squeeze(-1)

    def pooling_for(self, task: str | None) -> str:
        """The pooling for ``task`` (``query``, ``document`` or None = document)."""
        if task == "query":
            return self.query_pooling
        if task not in (None, "document"):
            raise ValueError(f"ImpactHead: unknown task {task!r} (query or document)")
        return self.document_pooling

    def forward(self, features: dict[str, Any], task: str | None = None, **kwargs) -> dict[str, Any]:
        if "cu_seq_lens_q" in features:
            raise ValueError("ImpactHead needs padded inputs: build the Transformer with unpad_inputs=False")
        if task is None:
            task = features.get("task")
        if (self.training and task is None and self.kind == "unicoil"
                and self.query_pooling != self.document_pooling):
            raise ValueError("ImpactHead: a training batch without a task (query or document), but queries and "
                             "documents pool differently; give the trainer a router_mapping "
                             "(e.g. {'query': 'query', 'positive': 'document', 'negative': 'document'})")
        h = features["token_embeddings"]
        if self.kind == "unicoil":
            ids = features["input_ids"]
            keep = features["attention_mask"].bool()
            if len(self.special_token_ids):
                keep &= ~torch.isin(ids, self._special.to(ids.device))
            w = self.scores(h) * keep.to(h.dtype)
            reduce = "amax" if self.pooling_for(task) == "max" else "sum"
            out = torch.zeros(ids.shape[0], self.embedding_dimension, dtype=w.dtype, device=w.device)
            out = out.scatter_reduce(1, ids, w, reduce=reduce, include_self=True)
        else:
            missing = [k for k in WORD_FEATURES if k not in features]
            if missing:
                raise ValueError(f"a deepimpact ImpactHead needs {', '.join(missing)} from ImpactTransformer")
            pos, buckets = features["word_positions"], features["word_buckets"]
            rows = torch.arange(h.shape[0], device=h.device).unsqueeze(1).expand_as(pos)
            w = self.scores(h[rows, pos]) * features["word_mask"].to(h.dtype)
            out = torch.zeros(h.shape[0], self.embedding_dimension, dtype=w.dtype, device=w.device)
            out = out.scatter_reduce(1, buckets, w, reduce="amax", include_self=True)
        features["sentence_embedding"] = out
        return features

    def get_embedding_dimension(self) -> int:
        return self.embedding_dimension

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token=None, cache_folder=None, revision=None,
             local_files_only: bool = False, **kwargs) -> ImpactHead:
        hub = {"subfolder": subfolder, "token": token, "cache_folder": cache_folder, "revision": revision,
               "local_files_only": local_files_only}
        config = cls.load_config(model_name_or_path, **hub)
        model = cls(**config)
        return cls.load_torch_weights(model_name_or_path, model=model, **hub)


# --------------------------------------------------------------------------- DeepImpact's input module
class ImpactTransformer(Transformer):
    """ST's ``Transformer`` that tokenises text into lsr's whole words (DeepImpact's document side).

    ``preprocess`` runs :meth:`TextTokenizer.window_words` and
    :meth:`TextTokenizer.first_occurrences` (the code of lsr's ``DeepImpactSide``):
    the input ids are the words' WordPieces with special tokens, truncated to the
    max length (the trainer's ``max_length``, else ``query_length`` /
    ``document_length`` for the task, else ``max_seq_length``), and the features gain
    ``word_positions`` (first WordPiece of each distinct word's first occurrence),
    ``word_buckets`` (:func:`word_bucket`) and ``word_mask``.
    """

    config_keys: list[str] = [*Transformer.config_keys, "num_buckets"]

    def __init__(self, model_name_or_path: str, *, num_buckets: int = DEFAULT_NUM_BUCKETS, **kwargs) -> None:
        kwargs.setdefault("unpad_inputs", False)
        super().__init__(model_name_or_path, **kwargs)
        self.num_buckets = _check_int("num_buckets", num_buckets, 2)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("ImpactTransformer needs a fast tokenizer (tokenizer.json)")
        self._words: dict[int, TextTokenizer] = {}

    def _should_flatten_inputs(self, *args, **kwargs) -> bool:
        return False

    def text_tokenizer(self, max_length: int) -> TextTokenizer:
        """lsr's tokenizer wrapper for this module's tokenizer at ``max_length`` tokens (cached)."""
        tt = self._words.get(max_length)
        if tt is None:
            tt = self._words[max_length] = TextTokenizer(self.tokenizer, max_length)
        return tt

    def _length(self, task: str | None, override: int | None) -> int:
        if override is not None:
            return int(override)
        per_task = {"query": self.query_length, "document": self.document_length}.get(task)
        return int(per_task if per_task is not None else self.max_seq_length)

    def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict[str, Any]:
        if not inputs:
            return {}
        texts = _texts(inputs, prompt, "ImpactTransformer")
        tt = self.text_tokenizer(self._length(kwargs.get("task"), kwargs.get("max_length")))
        occ = tt.first_occurrences([tt.window_words(t) for t in texts])
        ids = _pad([o[0] for o in occ], tt.pad_id)
        mask = _pad([[1] * len(o[0]) for o in occ])
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": torch.zeros_like(ids),
            "word_positions": _pad([o[2] for o in occ]),
            "word_buckets": _pad([[word_bucket(w, self.num_buckets) for w in o[1]] for o in occ]),
            "word_mask": _pad([[1] * len(o[1]) for o in occ]),
            "modality": "text",
        }

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        words = {k: features.pop(k) for k in WORD_FEATURES if k in features}   # not inputs of the backbone
        features = super().forward(features, **kwargs)
        features.update(words)
        return features


class WordBag(InputModule):
    """DeepImpact's inference-free query side: the query's words, weight 1, in the hashed word space.

    Words are lsr's (:meth:`TextTokenizer.content_words`: the tokenizer's normaliser
    and pre-tokeniser, punctuation-only words dropped), the first ``max_words`` of
    them, as lsr's ``words`` side with binary weights. No parameters.
    """

    config_keys: list[str] = ["num_buckets", "max_words"]

    def __init__(self, tokenizer, num_buckets: int = DEFAULT_NUM_BUCKETS, max_words: int = DEFAULT_QUERY_WORDS):
        super().__init__()
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("WordBag needs a fast tokenizer (tokenizer.json)")
        self.tokenizer = tokenizer
        self.num_buckets = _check_int("num_buckets", num_buckets, 2)
        self.max_words = _check_int("max_words", max_words, 3)
        self.text = TextTokenizer(tokenizer, self.max_words)

    def words(self, text: str) -> list[str]:
        """The distinct words that get weight 1, in order of first appearance."""
        return list(dict.fromkeys(self.text.content_words(text)[: self.max_words]))

    def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict[str, Any]:
        if not inputs:
            return {}
        texts = _texts(inputs, prompt, "WordBag")
        buckets = [sorted({word_bucket(w, self.num_buckets) for w in self.words(t)}) for t in texts]
        # "input_ids" (bucket ids) so that the trainer's feature collection finds the column
        return {"input_ids": _pad(buckets), "attention_mask": _pad([[1] * len(b) for b in buckets])}

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        ids = features["input_ids"]
        out = torch.zeros(ids.shape[0], self.num_buckets, dtype=torch.float32, device=ids.device)
        features["sentence_embedding"] = out.scatter_reduce(
            1, ids, features["attention_mask"].to(out.dtype), reduce="amax", include_self=True)
        return features

    def get_embedding_dimension(self) -> int:
        return self.num_buckets

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_tokenizer(output_path)
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token=None, cache_folder=None, revision=None,
             local_files_only: bool = False, **kwargs) -> WordBag:
        from transformers import AutoTokenizer

        config = cls.load_config(model_name_or_path, subfolder=subfolder, token=token, cache_folder=cache_folder,
                                 revision=revision, local_files_only=local_files_only)
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, subfolder=subfolder, token=token,
                                                  cache_dir=cache_folder, revision=revision,
                                                  local_files_only=local_files_only)
        return cls(tokenizer, **config)


# --------------------------------------------------------------------------- SparTerm
SPARTERM_GATES = ("lexical",)


class SparTermPooling(Module):
    """SparTerm's sparse vector from MLM logits: importance ``pool_i ReLU(logit_{i,v})`` times the lexical gate.

    Input features (ST's fill-mask ``Transformer``): ``token_embeddings`` (the MLM
    logits, ``[B, L, V]``), ``attention_mask`` and ``input_ids`` (``[B, L]``). Output
    ``sentence_embedding`` ``[B, V]``: for each vocabulary id ``v``, the ``pooling``
    (``sum`` or ``max``) of ``ReLU(logit_{i,v})`` over the non-padding positions ``i``
    (special-token positions included, as lsr's ``sparterm`` side pools), kept where
    ``v`` is one of the text's own non-padding token ids and not in
    ``special_token_ids``, 0 elsewhere. Same for queries and documents.

    Args:
        embedding_dimension: the MLM's output size (the vocabulary size).
        pooling: ``sum`` (the SparTerm paper) or ``max``.
        gate: ``lexical`` only (lsr's ``expansion`` gate thresholds a gate model's logits,
            which gives no gradient to train through; it is an inference-time setting of
            lsr's ``sparterm`` side).
        special_token_ids: token ids that are never gated on (the tokenizer's special tokens).
    """

    config_keys: list[str] = ["embedding_dimension", "pooling", "gate", "special_token_ids"]

    def __init__(self, embedding_dimension: int, pooling: str = "sum", gate: str = "lexical",
                 special_token_ids: Sequence[int] = ()) -> None:
        super().__init__()
        _check_int("embedding_dimension", embedding_dimension, 1)
        if pooling not in POOLINGS:
            raise ValueError(f"SparTermPooling pooling must be 'max' or 'sum', got {pooling!r}")
        if gate not in SPARTERM_GATES:
            raise ValueError(f"SparTermPooling gate must be 'lexical' (the expansion gate is not trainable), "
                             f"got {gate!r}")
        ids = list(special_token_ids) if isinstance(special_token_ids, (list, tuple)) else None
        if ids is None or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < embedding_dimension
                              for i in ids):
            raise ValueError(f"special_token_ids must be a list of token ids below {embedding_dimension}, "
                             f"got {special_token_ids!r}")
        self.embedding_dimension = embedding_dimension
        self.pooling = pooling
        self.gate = gate
        self.special_token_ids = sorted(set(ids))
        self.register_buffer("_special", torch.tensor(self.special_token_ids, dtype=torch.long), persistent=False)

    def lexical_gate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[B, V]``: 1 at the text's own non-padding, non-special token ids, else 0."""
        keep = attention_mask.bool()
        if len(self.special_token_ids):
            keep = keep & ~torch.isin(input_ids, self._special.to(input_ids.device))
        gate = torch.zeros(input_ids.shape[0], self.embedding_dimension, dtype=dtype, device=input_ids.device)
        return gate.scatter_reduce(1, input_ids, keep.to(dtype), reduce="amax", include_self=True)

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        if "cu_seq_lens_q" in features:
            raise ValueError("SparTermPooling needs padded inputs: build the Transformer with unpad_inputs=False")
        logits = features["token_embeddings"]
        if logits.dim() != 3 or logits.shape[-1] != self.embedding_dimension:
            raise ValueError(f"SparTermPooling expects MLM logits [batch, length, {self.embedding_dimension}], "
                             f"got {list(logits.shape)} (a fill-mask Transformer comes first)")
        mask = features["attention_mask"]
        act = torch.relu(logits) * mask.unsqueeze(-1).to(logits.dtype)
        imp = act.amax(dim=1) if self.pooling == "max" else act.sum(dim=1)
        features["sentence_embedding"] = imp * self.lexical_gate(features["input_ids"], mask, imp.dtype)
        return features

    def get_embedding_dimension(self) -> int:
        return self.embedding_dimension

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)

    def __repr__(self) -> str:
        return (f"SparTermPooling(pooling={self.pooling!r}, gate={self.gate!r}, "
                f"embedding_dimension={self.embedding_dimension})")


# --------------------------------------------------------------------------- building and loading
QUERY_SIDES = {"unicoil": ("model",), "deepimpact": ("words", "model")}


def _init_head(head: ImpactHead, seed: int | None, init_std: float, init_bias: float) -> None:
    """Normal(0, init_std) weights, zero hidden biases, ``init_bias`` on the last layer's bias."""
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        for i, layer in enumerate(head.mlp):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * init_std)
            layer.bias.fill_(init_bias if i == len(head.mlp) - 1 else 0.0)


def build_impact_encoder(backbone: str, kind: str, *, max_length: int = 256, query_max_length: int | None = None,
                         init_head: str = "random", seed: int | None = None, query_side: str | None = None,
                         document_pooling: str = "max", query_pooling: str | None = None,
                         num_buckets: int = DEFAULT_NUM_BUCKETS, query_max_words: int = DEFAULT_QUERY_WORDS,
                         dropout: float = 0.0, init_std: float | None = None, init_bias: float = 1.0,
                         device: str | None = None, model_kwargs: dict | None = None) -> SparseEncoder:
    """A new ``SparseEncoder``: the pretrained ``backbone`` with a new, randomly initialised impact head.

    ``kind``: ``unicoil`` (Transformer + ImpactHead; queries and documents through the
    model, queries summed over repeated tokens unless ``query_pooling`` says otherwise)
    or ``deepimpact`` (Router: documents through ImpactTransformer + ImpactHead with a
    two-layer MLP; queries through WordBag, or through the model with
    ``query_side="model"``). ``max_length`` caps documents and queries (ST's
    ``max_seq_length``; tokens, special tokens included), and ``query_max_length``
    caps queries when given (ST's ``query_length``); ``query_max_words`` caps a
    WordBag query. ``init_head`` must be ``"random"``: the head has no trained
    weights, and saying so is the caller's job. Weights are drawn from
    Normal(0, ``init_std``) (default: the backbone's ``initializer_range``, else
    0.02) with a generator seeded by ``seed``; the last bias is ``init_bias`` (1.0:
    every token starts with a positive impact, so every token gets a gradient
    through the final ReLU). The trainer must map its columns to tasks
    (``router_mapping``), see :class:`ImpactHead`.
    """
    if init_head != "random":
        raise ValueError(f"init_head must be 'random' (a new, untrained {kind} head), got {init_head!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    query_side = query_side or QUERY_SIDES[kind][0]
    if query_side not in QUERY_SIDES[kind]:
        raise ValueError(f"a {kind} model's query side is one of {', '.join(QUERY_SIDES[kind])}, got {query_side!r}")
    _check_int("max_length", max_length, 3)
    if query_max_length is not None:
        _check_int("query_max_length", query_max_length, 3)
    _check_int("num_buckets", num_buckets, 2)
    _check_int("query_max_words", query_max_words, 3)
    if seed is not None:
        _check_int("seed", seed, 0)
    if kind == "unicoil":
        pools = (document_pooling, query_pooling or "sum")
        if any(p not in POOLINGS for p in pools):
            raise ValueError(f"uniCOIL poolings must be 'max' or 'sum', got {pools[0]!r} (documents) and "
                             f"{pools[1]!r} (queries)")
    elif (document_pooling, query_pooling or "max") != ("max", "max"):
        raise ValueError("DeepImpact scores each word once: its poolings are 'max'")
    for name, v, ok in (("init_std", init_std, lambda x: x > 0), ("init_bias", init_bias, lambda x: True)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                              or not ok(v)):
            raise ValueError(f"{name} must be a finite number{' > 0' if name == 'init_std' else ''}, got {v!r}")
    # documents (and queries, unless query_max_length) follow max_seq_length, so that setting
    # model.max_seq_length later changes them; query_length overrides it for queries only
    lengths = {"max_seq_length": max_length, "query_length": query_max_length, "model_kwargs": model_kwargs}
    if kind == "unicoil":
        trans: Transformer = Transformer(backbone, unpad_inputs=False, **lengths)
        hidden = trans.get_embedding_dimension()
        dim, sizes = max(trans.tokenizer.get_vocab().values()) + 1, [1]
        special = list(trans.tokenizer.all_special_ids)
    else:
        trans = ImpactTransformer(backbone, num_buckets=num_buckets, **lengths)
        hidden = trans.get_embedding_dimension()
        dim, sizes, special, pools = num_buckets, [hidden, 1], [], ("max", "max")
    head = ImpactHead(kind, hidden, sizes, dim, document_pooling=pools[0], query_pooling=pools[1],
                      special_token_ids=special, dropout=dropout)
    std = init_std if init_std is not None else float(getattr(trans.config, "initializer_range", 0.02))
    _init_head(head, seed, std, init_bias)
    if kind == "deepimpact" and query_side == "words":
        bag = WordBag(trans.tokenizer, num_buckets=num_buckets, max_words=query_max_words)
        modules = [Router.for_query_document(query_modules=[bag], document_modules=[trans, head])]
    else:
        modules = [trans, head]
    return SparseEncoder(modules=modules, device=device)


def build_sparterm_encoder(model: str, *, max_length: int = 256, pooling: str = "sum",
                           query_max_length: int | None = None, device: str | None = None,
                           model_kwargs: dict | None = None) -> SparseEncoder:
    """A ``SparseEncoder`` for SparTerm with the lexical gate: ST's fill-mask ``Transformer`` on the MLM
    checkpoint ``model`` + :class:`SparTermPooling` (``pooling`` sum or max).

    ``max_length`` caps documents and queries (ST's ``max_seq_length``; tokens, special
    tokens included), ``query_max_length`` caps queries when given (ST's
    ``query_length``). ``model`` must be a ``*ForMaskedLM`` (or ``*ForPreTraining``)
    checkpoint: one without a trained MLM head is refused rather than given a random
    one. The Transformer keeps padded inputs (``unpad_inputs=False``), which
    :class:`SparTermPooling` needs. No trainable parameters besides the MLM's.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be 'max' or 'sum', got {pooling!r}")
    _check_int("max_length", max_length, 3)
    if query_max_length is not None:
        _check_int("query_max_length", query_max_length, 3)
    from transformers import AutoConfig

    arch = list(getattr(AutoConfig.from_pretrained(model), "architectures", None) or [])
    if arch and not any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in arch):
        raise ValueError(f"{model} is a {', '.join(arch)} checkpoint without an MLM head; SparTerm needs a "
                         "*ForMaskedLM checkpoint (MLM logits over the vocabulary)")
    trans = Transformer(model, transformer_task="fill-mask", unpad_inputs=False, max_seq_length=max_length,
                        query_length=query_max_length, model_kwargs=model_kwargs)
    tok = trans.tokenizer
    if tok is None:
        raise ValueError(f"{model} has no tokenizer")
    vocab = int(trans.config.vocab_size)
    size = max(tok.get_vocab().values()) + 1
    if size != vocab:
        raise ValueError(f"{model}: the MLM's vocabulary ({vocab}) and the tokenizer's ({size}) differ in size")
    pool = SparTermPooling(vocab, pooling=pooling, gate="lexical", special_token_ids=list(tok.all_special_ids))
    return SparseEncoder(modules=[trans, pool], device=device, similarity_fn_name="dot")


def load_impact_encoder(path: str, **kwargs) -> SparseEncoder:
    """``SparseEncoder(path, trust_remote_code=True, **kwargs)``: ST 6.x imports module classes outside its
    own package (here lsr's) only with that flag. Loads any model saved with this module's classes
    (uniCOIL, DeepImpact, SparTerm)."""
    kwargs.setdefault("trust_remote_code", True)
    return SparseEncoder(path, **kwargs)


MODULE_TYPES = {f"{__name__}.{c.__name__}": c for c in (ImpactHead, ImpactTransformer, WordBag, SparTermPooling)}

__all__ = [
    "DEFAULT_NUM_BUCKETS",
    "DEFAULT_QUERY_WORDS",
    "MODULE_TYPES",
    "ImpactHead",
    "ImpactTransformer",
    "SparTermPooling",
    "WordBag",
    "build_impact_encoder",
    "build_sparterm_encoder",
    "load_impact_encoder",
    "word_bucket",
]
