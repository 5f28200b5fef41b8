"""ICR: in-context reranking from the attention of a causal LM (Chen et al., ICLR 2025).

One prompt per query holds all its candidates and then the query; a document's score
is how much attention the query tokens pay to its tokens, calibrated by the attention
that a content-free query ("N/A") pays to them. No text is generated.

The prompt (the layout of the method's reference code, OSU-NLP-Group/In-Context-Reranking,
with its BEIR settings)::

    {chat prefix}{instruction}{sep}[1] {doc}{sep}[2] {doc} ... {sep}[N] {doc}{sep}
    {query_instruction}{sep}Query: {query}{chat suffix}

``sep`` is :attr:`ICRConfig.separator` (``"\\n\\n"``); ``[i] {doc}`` is
:attr:`ICRConfig.doc_template`. With ``reverse_doc_order`` (the default, as in the
reference's BEIR runs) the candidates appear in reverse first-stage order, so the
first-stage top hit sits last, next to the query, and is numbered ``[N]``. The chat
prefix and suffix are the text that the tokenizer's chat template puts around one
user message with the generation prompt (``use_chat_template``; none without a
template, and then the tokenizer adds its usual special tokens such as BOS). Each
document is cut to its first ``doc_words`` whitespace-separated words (300, RankGPT's
and ICR's BEIR setting) before the prompt is built. Where this differs from the
reference: it hard-codes chat markers per model family (``[INST]`` .. ``[/INST]`` for
Mistral, the Llama-3 header tokens without the template's system turn), writes the
first instruction with a leading space after them, and uses ``" \n\n"`` as the
separator for Llama; here the model's own chat template wraps the prompt, and the
separator is one setting for all models.

Which tokens count. Everything before the query part is the *prefix*; the *query
tokens* are all the tokens after the separator that follows the last document: the
query instruction, ``Query:``, the query and the chat suffix (the reference's
``query_start_idx`` .. ``query_end_idx``). A document's tokens are those of its
``[i] {doc}`` block (the number marker included, as in the reference). The prompt is
tokenised as one string; the token spans come from the tokenizer's character offsets.

Scores. For a query ``q``, the token score of prefix token ``t`` is

    s_q(t) = sum over layers l in the range, sum over heads h, of
             mean over the query tokens j of A[l, h, j, t]

(``A`` the softmax attention weights). The same is computed for the calibration query
``"N/A"`` in the same prompt, and per document (as the reference code does: the
statistics are taken over the document's own tokens)

    c(t) = s_q(t) - s_NA(t),   keep(t) = c(t) > mean(c) - 2 * std(c)   (std with n - 1),
    score(doc) = sum over the document's kept tokens of c(t)

(a one-token document has no spread, its token is at the threshold and masked, so
its score is 0, as in the reference where the standard deviation is NaN). Scores are
summed in float32 and calibrated in float64.

The layer range (``layers``): ``all`` (the method's default), ``middle`` (the middle
third, ``[L // 3, 2L // 3)``; Selective-ICR, arXiv 2602.22591, finds most of the signal
in the middle layers), or ``START-END`` (inclusive, 0-based). Layers after the range
cannot change the attention inside it, so the model is loaded without them
(``num_hidden_layers`` = END + 1): a narrower range that ends early costs less.

Cost. Per query: ONE forward pass over the prefix (instruction + documents) that fills
a :class:`transformers.DynamicCache`, with the model's memory-efficient attention
(SDPA where the model supports it, which never forms the prompt x prompt attention
weights); then the query part runs twice against that cache, the real query and then
"N/A" (the cache is cropped back to the prefix between the two), with eager attention
and ``output_attentions=True``, so only the attention rows of the query tokens exist
(heads x query tokens x prompt per layer, all layers' held until that pass ends). The
prefix is computed once, never twice.
``stats`` counts ``queries``, ``forward_passes`` (3 per query with candidates),
``prefix_tokens`` and ``query_tokens`` (tokens run through the model in each kind of
pass), ``documents``, ``documents_cut`` (documents longer than ``doc_words``) and
``documents_cut_further`` (documents cut below ``doc_words`` to fit the context, below).

Fitting the context. The longest prompt (prefix + the longer of the two query parts)
must fit ``max_context`` tokens (default: the model's ``max_position_embeddings``).
When the documents cut to ``doc_words`` words do not fit, every document is cut to the
largest common word limit that fits (documents already shorter stay whole), down to
``min_doc_words`` words; a candidate list whose prompt does not fit even with every
document cut to ``min_doc_words`` words is an :class:`~lsr.errors.InputError` naming
the token counts (rerank fewer candidates, or use a model with a longer context).

Models: any Hugging Face causal LM whose eager attention returns its weights (Llama,
Mistral, Qwen2/3, SmolLM2, ...); one that returns none (a state-space model such as
Mamba, or an attention implementation without weights) is refused when it is loaded,
with one :class:`~lsr.errors.LsrError` line. float32 and bfloat16 (float16 on a GPU).

From the libraries: transformers loads the model and tokenizer, applies the chat
template, runs the passes, keeps the KV cache (``DynamicCache``, ``crop``), switches
the attention implementation (``set_attn_implementation``) and returns the
attention weights; the tokenizer gives the character offsets. Written here: the prompt
layout and its token spans, the word cuts that fit the context, and the aggregation,
calibration and masking of the attention weights.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from lsr.errors import InputError, LsrError

from .base import Reranker, RerankerConfig, dtype_kwargs, model_context
from .text import SLOT, WORD, cut_words, is_int

#: the first instruction of the reference's prompt (it writes it with a leading space after its
#: hand-written chat prefix; here the chat template supplies what precedes it)
DEFAULT_INSTRUCTION = "Here are some paragraphs:"
#: the instruction before the query of the reference's "IE" prompt (its BEIR setting, SciFact included)
IE_QUERY_INSTRUCTION = ("Please find information that are relevant to the following query in the "
                        "paragraphs above.")
#: the reference's "QA" prompt (its setting for question-answering sets: NQ, FiQA, TREC-COVID, ...)
QA_QUERY_INSTRUCTION = "Please answer the following question based on the information in the paragraphs above."
DEFAULT_QUERY_TEMPLATE = "Query: {query}"
DEFAULT_DOC_TEMPLATE = "[{i}] {text}"
CALIBRATION_QUERY = "N/A"

LAYER_PRESETS = ("all", "middle")

_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_MARK = "\x00ICR-USER-MESSAGE\x00"


def _fill(template: str, values: dict[str, str]) -> str:
    """``template`` with its ``{slot}`` s replaced in one pass (braces inside the values stay as they are)."""
    return SLOT.sub(lambda m: values[m.group(1)], template)


def _check_template(name: str, field: str, template: Any, slots: tuple[str, ...], once: str) -> None:
    if not isinstance(template, str):
        raise InputError(f"{name}: {field} must be a string")
    found = [m.group(1) for m in SLOT.finditer(template)]
    unknown = sorted(set(found) - set(slots))
    if unknown:
        raise InputError(f"{name}: {field} has unknown slot(s) {', '.join('{' + u + '}' for u in unknown)} "
                         f"(slots: {', '.join('{' + s + '}' for s in slots)})")
    if found.count(once) != 1:
        raise InputError(f"{name}: {field} must hold {{{once}}} exactly once, found {found.count(once)}")


def layer_range(spec: str, n_layers: int) -> tuple[int, int]:
    """``(start, end)``, inclusive and 0-based, of a :attr:`ICRConfig.layers` spec for a model of ``n_layers``."""
    if spec == "all":
        return 0, n_layers - 1
    if spec == "middle":
        start = n_layers // 3
        return start, max(start, 2 * n_layers // 3 - 1)
    m = _RANGE.match(spec)
    if m is None:  # ICRConfig validates the syntax; kept for direct callers
        raise InputError(f"layers must be all, middle or START-END, got {spec!r}")
    start, end = int(m.group(1)), int(m.group(2))
    if end >= n_layers:
        raise InputError(f"layers {spec}: the model has {n_layers} layers (0-{n_layers - 1})")
    return start, end


@dataclass(frozen=True)
class ICRConfig(RerankerConfig):
    """Settings of the ICR reranker (beside :class:`RerankerConfig`'s); see the module docstring.

    ``layers``: ``all`` (default), ``middle`` (the middle third), ``START-END`` (inclusive,
    0-based) or a two-item list ``[START, END]`` (stored as ``START-END``).
    ``doc_words``: cut each document to this many words (300; None: no cut).
    ``min_doc_words``: how far documents may be cut further when the prompt would not fit
    the context otherwise (20). ``reverse_doc_order``: the first-stage top hit last,
    next to the query (True, as in the reference's BEIR runs). ``instruction``,
    ``query_instruction`` (the reference's "IE" prompt; :data:`QA_QUERY_INSTRUCTION` is its
    "QA" one), ``query_template`` (``{query}`` once), ``doc_template`` (``{text}`` once,
    ``{i}`` the 1-based position in the prompt), ``separator``: the prompt's pieces.
    ``calibration_query``: the content-free query ("N/A"). ``use_chat_template``: wrap the
    prompt as one user message of the tokenizer's chat template (None: when it has one).
    ``max_context``: the longest prompt in tokens (None: the model's
    ``max_position_embeddings``; more than that is refused). ``prefix_attention``: the attention
    implementation of the prefix pass, as transformers names it (None: the library's default for the
    model, SDPA where supported; ``flash_attention_2`` on a GPU with flash-attn; ``eager`` builds the
    prompt x prompt weights of every layer, avoid it for long prompts).
    """

    layers: str = "all"
    doc_words: int | None = 300
    min_doc_words: int = 20
    reverse_doc_order: bool = True
    instruction: str = DEFAULT_INSTRUCTION
    query_instruction: str = IE_QUERY_INSTRUCTION
    query_template: str = DEFAULT_QUERY_TEMPLATE
    doc_template: str = DEFAULT_DOC_TEMPLATE
    separator: str = "\n\n"
    calibration_query: str = CALIBRATION_QUERY
    use_chat_template: bool | None = None
    max_context: int | None = None
    prefix_attention: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        layers = self.layers
        if isinstance(layers, (list, tuple)):
            if len(layers) != 2 or not all(is_int(x) for x in layers):
                raise InputError(f"{name}: layers as a list must be [START, END] (two integers), got {layers!r}")
            layers = f"{layers[0]}-{layers[1]}"
            object.__setattr__(self, "layers", layers)
        if not isinstance(layers, str):
            raise InputError(f"{name}: layers must be all, middle, START-END or [START, END], got {layers!r}")
        if layers not in LAYER_PRESETS:
            m = _RANGE.match(layers)
            if m is None:
                raise InputError(f"{name}: layers must be all, middle, START-END or [START, END], got {layers!r}")
            if int(m.group(1)) > int(m.group(2)):
                raise InputError(f"{name}: layers {layers}: START is after END")
            object.__setattr__(self, "layers", f"{int(m.group(1))}-{int(m.group(2))}")
        if self.doc_words is not None and (not is_int(self.doc_words) or self.doc_words < 1):
            raise InputError(f"{name}: doc_words must be a positive integer (or null), got {self.doc_words!r}")
        if not is_int(self.min_doc_words) or self.min_doc_words < 1:
            raise InputError(f"{name}: min_doc_words must be a positive integer, got {self.min_doc_words!r}")
        if self.doc_words is not None and self.min_doc_words > self.doc_words:
            raise InputError(f"{name}: min_doc_words ({self.min_doc_words}) is above doc_words ({self.doc_words})")
        if not isinstance(self.reverse_doc_order, bool):
            raise InputError(f"{name}: reverse_doc_order must be true or false, got {self.reverse_doc_order!r}")
        for field in ("instruction", "query_instruction", "calibration_query"):
            if not isinstance(getattr(self, field), str):
                raise InputError(f"{name}: {field} must be a string")
        if not self.calibration_query.strip():
            raise InputError(f"{name}: calibration_query must not be empty")
        if not isinstance(self.separator, str) or not self.separator:
            raise InputError(f"{name}: separator must be a non-empty string")
        _check_template(name, "query_template", self.query_template, ("query",), "query")
        _check_template(name, "doc_template", self.doc_template, ("i", "text"), "text")
        if self.use_chat_template is not None and not isinstance(self.use_chat_template, bool):
            raise InputError(f"{name}: use_chat_template must be true, false or null, got {self.use_chat_template!r}")
        if self.max_context is not None and (not is_int(self.max_context) or self.max_context < 2):
            raise InputError(f"{name}: max_context must be an integer of at least 2 (or null), "
                             f"got {self.max_context!r}")
        if self.prefix_attention is not None and (not isinstance(self.prefix_attention, str)
                                                  or not self.prefix_attention.strip()):
            raise InputError(f"{name}: prefix_attention must name an attention implementation (sdpa, "
                             f"flash_attention_2, eager, ...) or be null, got {self.prefix_attention!r}")


@dataclass
class ICRPrompt:
    """One query's prompt as token ids: the shared prefix, the two query parts, the document spans.

    ``doc_spans[k]`` is the ``[start, end)`` token span (in the prefix) of candidate ``k`` in
    the order the candidates were GIVEN (not the prompt order); ``words``: the word limit the
    documents were cut to (None: none).
    """

    prefix: list[int]
    query: list[int]
    calibration: list[int]
    doc_spans: list[tuple[int, int]]
    words: int | None
    text: str

    @property
    def length(self) -> int:
        """Tokens of the longer of the two full prompts."""
        return len(self.prefix) + max(len(self.query), len(self.calibration))


class ICRReranker(Reranker):
    """In-context reranking from attention weights (see the module docstring)."""

    name: ClassVar[str] = "icr"
    config_class: ClassVar[type[RerankerConfig]] = ICRConfig

    def __init__(self, config: ICRConfig) -> None:
        if not isinstance(config, ICRConfig):
            raise InputError(f"the icr reranker takes an ICRConfig, not {type(config).__name__}")
        super().__init__(config)
        import torch

        from lsr.encoders.checkpoints import Checkpoint, load_tokenizer
        from lsr.encoders.config import RuntimeConfig
        from lsr.encoders.sides import resolve_device

        self._torch = torch
        self.stats = {"queries": 0, "forward_passes": 0, "prefix_tokens": 0, "query_tokens": 0,
                      "documents": 0, "documents_cut": 0, "documents_cut_further": 0}
        self.device, dtype = resolve_device(RuntimeConfig(device=config.device, dtype=config.dtype))
        ckpt = Checkpoint(config.model, config.revision, what="icr reranker model")
        self.checkpoint = ckpt
        self.tokenizer = load_tokenizer(ckpt)

        def load_config():
            from transformers import AutoConfig

            return AutoConfig.from_pretrained(ckpt.spec, **ckpt.hub_kwargs)

        model_config = ckpt.guard("config", load_config)
        n_layers = getattr(model_config, "num_hidden_layers", None)
        if not is_int(n_layers) or n_layers < 1:
            raise LsrError(f"icr reranker model {ckpt.label}: its config gives no number of layers "
                           "(num_hidden_layers); ICR needs a decoder-only causal LM")
        self.n_layers = n_layers
        self.layer_start, self.layer_end = layer_range(config.layers, n_layers)
        keep = self.layer_end + 1
        overrides: dict[str, Any] = {}
        if config.prefix_attention is not None:
            overrides["attn_implementation"] = config.prefix_attention
        if keep < n_layers:   # the layers after the range cannot change the attention in it
            overrides["num_hidden_layers"] = keep
            types = getattr(model_config, "layer_types", None)
            if isinstance(types, (list, tuple)) and len(types) == n_layers:
                overrides["layer_types"] = list(types[:keep])

        def load_model():
            from transformers import AutoModelForCausalLM

            return AutoModelForCausalLM.from_pretrained(ckpt.spec, **dtype_kwargs(config.dtype),
                                                        **ckpt.hub_kwargs, **overrides)

        if keep < n_layers:   # transformers reports the weights of the left-out layers as unexpected: expected here
            from transformers.utils import logging as hf_logging

            previous = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            try:
                model = ckpt.guard("causal LM", load_model)
            finally:
                hf_logging.set_verbosity(previous)
        else:
            model = ckpt.guard("causal LM", load_model)
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.base = self.model.base_model
        self.prefix_attention = getattr(self.model.config, "_attn_implementation", None) or "eager"
        params = inspect.signature(self.base.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._check_attention()

        self.context = model_context(self.model)
        if config.max_context is None:
            self.max_context = self.context
        else:
            if self.context and config.max_context > self.context:
                raise InputError(f"max_context {config.max_context} exceeds the context of {ckpt.label} "
                                 f"({self.context} tokens)")
            self.max_context = config.max_context

        tok = self.tokenizer
        has_template = bool(getattr(tok, "chat_template", None))
        if config.use_chat_template and not has_template:
            raise InputError(f"use_chat_template is set but the tokenizer of {ckpt.label} has no chat template")
        self.use_chat_template = has_template if config.use_chat_template is None else config.use_chat_template
        self.chat_prefix, self.chat_suffix = self._chat_wrap() if self.use_chat_template else ("", "")

    # ---------------------------------------------------------------- set-up helpers
    def _set_attention(self, implementation: str) -> None:
        if getattr(self.model.config, "_attn_implementation", None) == implementation:
            return
        if hasattr(self.model, "set_attn_implementation"):
            self.model.set_attn_implementation(implementation)
        else:   # transformers before set_attn_implementation: the layers read the config at each call
            self.model.config._attn_implementation = implementation

    def _check_attention(self) -> None:
        """LsrError unless eager attention returns one weight tensor per layer (tried on two tokens)."""
        torch = self._torch
        label = f"icr reranker model {self.checkpoint.label} ({type(self.model).__name__})"
        try:
            self._set_attention("eager")
            with torch.inference_mode():
                ids = torch.tensor([[self._probe_token(), self._probe_token()]], device=self.device)
                out = self.base(input_ids=ids, use_cache=False, output_attentions=True)
        except LsrError:
            raise
        except Exception as e:
            from lsr.encoders.errors import one_line

            raise LsrError(f"{label}: cannot run with eager attention and return attention weights "
                           f"({one_line(e)}); ICR needs a causal LM whose attention returns them") from e
        finally:
            self._set_attention(self.prefix_attention)   # back to the prefix pass's implementation
        att = getattr(out, "attentions", None)
        n = self.layer_end + 1
        if (not isinstance(att, (tuple, list)) or len(att) != n
                or any(not isinstance(a, torch.Tensor) or a.dim() != 4 for a in att)):
            raise LsrError(f"{label} returns no attention weights for its {n} layers; ICR needs a causal "
                           "LM whose eager attention returns them (Llama, Mistral, Qwen2/3, SmolLM2, ...)")

    def _probe_token(self) -> int:
        tok = self.tokenizer
        for t in (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, 0):
            if t is not None:
                return int(t)
        return 0

    def _chat_wrap(self) -> tuple[str, str]:
        """The text the chat template puts before and after one user message (with the generation prompt)."""
        try:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": _MARK}], tokenize=False,
                                                      add_generation_prompt=True)
        except Exception as e:
            from lsr.encoders.errors import one_line

            raise LsrError(f"the chat template of {self.checkpoint.label} fails on a user message "
                           f"({one_line(e)}); set use_chat_template: false") from e
        if not isinstance(text, str) or text.count(_MARK) != 1:
            raise LsrError(f"the chat template of {self.checkpoint.label} does not hold the user message "
                           "once as it is; set use_chat_template: false")
        before, after = text.split(_MARK)
        return before, after

    def describe(self) -> dict:
        return {**super().describe(), "layer_range": [self.layer_start, self.layer_end],
                "model_layers": self.n_layers, "max_context": self.max_context,
                "chat_template": self.use_chat_template, "prefix_attention": self.prefix_attention}

    # ---------------------------------------------------------------- the prompt
    def prompt(self, query: str, docs: Sequence[str]) -> ICRPrompt:
        """The token ids of ``query``'s prompt over ``docs`` (cut to fit the context; see the module docstring)."""
        cfg = self.config
        docs = [d.strip() for d in docs]
        longest = max((len(WORD.findall(d)) for d in docs), default=0)
        words = cfg.doc_words if cfg.doc_words is not None and cfg.doc_words < longest else None
        built = self._build(query, docs, words)
        if self.max_context is None or built.length <= self.max_context:
            return built
        # the largest common word limit (below the first one) that fits, found by bisection
        hi = (words if words is not None else longest) - 1
        lo = cfg.min_doc_words
        floor = self._build(query, docs, lo)
        if lo > hi or floor.length > self.max_context:
            raise InputError(
                f"the ICR prompt for {len(docs)} candidates is {floor.length} tokens even with every document "
                f"cut to {lo} words, over the context of {self.max_context} tokens; rerank fewer candidates "
                f"(depth) or use a model with a longer context")
        best = floor
        while lo < hi:
            mid = (lo + hi + 1) // 2
            p = self._build(query, docs, mid)
            if p.length <= self.max_context:
                lo, best = mid, p
            else:
                hi = mid - 1
        return best

    def _build(self, query: str, docs: Sequence[str], words: int | None) -> ICRPrompt:
        cfg = self.config
        sep = cfg.separator
        order = list(range(len(docs)))[::-1] if cfg.reverse_doc_order else list(range(len(docs)))
        prefix = self.chat_prefix + cfg.instruction
        char_spans: dict[int, tuple[int, int]] = {}
        for pos, k in enumerate(order):
            if pos or cfg.instruction:
                prefix += sep
            block = _fill(cfg.doc_template, {"i": str(pos + 1), "text": cut_words(docs[k], words)})
            char_spans[k] = (len(prefix), len(prefix) + len(block))
            prefix += block
        prefix += sep

        def query_part(q: str) -> str:
            body = _fill(cfg.query_template, {"query": q.strip()})
            return (cfg.query_instruction + sep + body if cfg.query_instruction else body) + self.chat_suffix

        enc_q = self._tokenize(prefix + query_part(query))
        enc_n = self._tokenize(prefix + query_part(cfg.calibration_query))
        cut_q = _first_after(enc_q["offset_mapping"], len(prefix))
        cut_n = _first_after(enc_n["offset_mapping"], len(prefix))
        ids_q, ids_n = list(enc_q["input_ids"]), list(enc_n["input_ids"])
        shared = 0   # the two prompts share their prefix tokens (only a token across the boundary could differ)
        limit = min(cut_q, cut_n)
        while shared < limit and ids_q[shared] == ids_n[shared]:
            shared += 1
        if shared == len(ids_q) or shared == len(ids_n):
            raise InputError("the query part of the ICR prompt has no tokens (check query_template)")
        starts = np.array([s for s, _ in enc_q["offset_mapping"][:shared]], dtype=np.int64)
        ends = np.array([e for _, e in enc_q["offset_mapping"][:shared]], dtype=np.int64)
        real = ends > starts   # special tokens added by the tokenizer have no characters
        spans: list[tuple[int, int]] = []
        for k in range(len(docs)):
            a, b = char_spans[k]
            inside = np.flatnonzero(real & (starts >= a) & (starts < b))
            if inside.size == 0:
                raise LsrError(f"document {k} has no tokens in the ICR prompt")
            spans.append((int(inside[0]), int(inside[-1]) + 1))
        return ICRPrompt(prefix=ids_q[:shared], query=ids_q[shared:], calibration=ids_n[shared:],
                         doc_spans=spans, words=words, text=prefix)

    def _tokenize(self, text: str):
        # verbose=False: the length is checked against the model's context here, not the tokenizer's max length
        return self.tokenizer(text, add_special_tokens=not self.use_chat_template, return_offsets_mapping=True,
                              verbose=False)

    # ---------------------------------------------------------------- scoring
    def score(self, query: str, docs: Sequence[str]) -> np.ndarray:
        """ICR scores (float64, one per document, in the order given)."""
        self.stats["queries"] += 1
        if len(docs) == 0:
            return np.zeros(0, dtype=np.float64)
        p = self.prompt(query, docs)
        self.stats["documents"] += len(docs)
        if self.config.doc_words is not None:
            n_words = [len(WORD.findall(d)) for d in docs]
            self.stats["documents_cut"] += sum(n > self.config.doc_words for n in n_words)
            if p.words is not None and p.words < self.config.doc_words:
                self.stats["documents_cut_further"] += sum(n > p.words for n in n_words)
        s_query, s_calib = self.token_scores(p)
        return calibrated_scores(s_query, s_calib, p.doc_spans)

    def token_scores(self, p: ICRPrompt) -> tuple[np.ndarray, np.ndarray]:
        """Per prefix token: the attention from the query tokens (mean over them, summed over the layer
        range and heads), for the real query and for the calibration query; float64."""
        torch = self._torch
        n = len(p.prefix)
        with torch.inference_mode():
            cache = _new_cache()
            self._set_attention(self.prefix_attention)
            ids = torch.tensor([p.prefix], dtype=torch.long, device=self.device)
            self.base(input_ids=ids, use_cache=True, **{self._cache_kw: cache})
            self.stats["forward_passes"] += 1
            self.stats["prefix_tokens"] += n
            self._set_attention("eager")
            try:
                s_query = self._query_pass(cache, p.query, n)
                cache.crop(-len(p.query))   # back to the prefix (a negative count removes tokens)
                s_calib = self._query_pass(cache, p.calibration, n)
            finally:
                self._set_attention(self.prefix_attention)
        return s_query, s_calib

    def _query_pass(self, cache, suffix: list[int], n_prefix: int) -> np.ndarray:
        torch = self._torch
        if cache.get_seq_length() != n_prefix:
            raise LsrError(f"the KV cache holds {cache.get_seq_length()} tokens, not the {n_prefix} of the prefix")
        ids = torch.tensor([suffix], dtype=torch.long, device=self.device)
        out = self.base(input_ids=ids, use_cache=True, output_attentions=True, **{self._cache_kw: cache})
        self.stats["forward_passes"] += 1
        self.stats["query_tokens"] += len(suffix)
        acc = torch.zeros(n_prefix, dtype=torch.float32, device=self.device)
        for layer in range(self.layer_start, self.layer_end + 1):
            a = out.attentions[layer][0, :, :, :n_prefix]          # heads x query tokens x prefix
            acc += a.float().mean(dim=1).sum(dim=0)
        return acc.double().cpu().numpy()


def _new_cache():
    from transformers import DynamicCache

    return DynamicCache()


def _first_after(offsets, boundary: int) -> int:
    """Index of the first token that ends after character ``boundary`` (len(offsets) if none does)."""
    for i, (_, end) in enumerate(offsets):
        if end > boundary:
            return i
    return len(offsets)


def calibrated_scores(s_query: np.ndarray, s_calib: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Per document: the sum of ``s_query - s_calib`` over its tokens above mean - 2 std (of the document)."""
    out = np.zeros(len(spans), dtype=np.float64)
    for k, (a, b) in enumerate(spans):
        c = np.asarray(s_query[a:b], dtype=np.float64) - np.asarray(s_calib[a:b], dtype=np.float64)
        threshold = c.mean() - 2.0 * c.std(ddof=1) if c.size > 1 else c.mean()
        out[k] = c[c > threshold].sum()
    return out


__all__ = ["CALIBRATION_QUERY", "DEFAULT_DOC_TEMPLATE", "DEFAULT_INSTRUCTION", "DEFAULT_QUERY_TEMPLATE",
           "IE_QUERY_INSTRUCTION", "ICRConfig", "ICRPrompt", "ICRReranker", "QA_QUERY_INSTRUCTION",
           "calibrated_scores", "cut_words", "layer_range"]
