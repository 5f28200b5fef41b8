"""The SFT pointwise reranker: a causal LM fine-tuned to answer "yes" or "no" to a query-document pair.

Each candidate is scored alone. The pair is written into :attr:`SFTConfig.template`
(by default Qwen3-Reranker's prompt, :data:`QWEN3_RERANKER_TEMPLATE`), tokenised as
one string with ``add_special_tokens=False``, and run through the model once; from the
logits at the last position, ``l_yes`` and ``l_no`` of the two answer tokens give

    P(yes) = exp(l_yes) / (exp(l_yes) + exp(l_no)) = 1 / (1 + exp(-(l_yes - l_no)))

computed in float64 from the two logits (a log-softmax over the pair, so it never
overflows). :meth:`SFTReranker.score` returns P(yes) (``output: probability``, the
default) or the log-odds ``l_yes - l_no`` (``output: log_odds``). Both rank the
candidates the same way, except that P(yes) rounds to exactly 1.0 in float64 once
the log-odds pass about 36.7 (and to 0.0 below about -745): with a model that is that
sure of many candidates, the probabilities tie and the ties keep the first-stage order,
where the log-odds still tell them apart.

Batching: the pairs given to :meth:`SFTReranker.score_many` (each query's on its own
with ``share_prefix``, all queries' together without) are sorted by (token count, token
ids), cut into batches of ``batch_size`` sequences, and LEFT padded (the last position
is then the last real token of every row) with position ids that start at 0 at each
row's first real token, so a padded row sees the same positions as when run alone.
When the tokenizer has no pad token, the end-of-text token (or the unknown token, or
id 0) fills the padding: padded positions are masked out, so any id works and the
embeddings are never resized. Scores do not depend on the order of the candidates
(the batches are made from the sorted prompts); they depend on the batch size only
through the floating-point rounding of the padded matrix products.

Shared prefix (``share_prefix``, on by default): the prompts of one query begin with the
same tokens (the template's opening, the instruction, the query). Their longest common
run of leading token ids is run through the model once per query, and its key/value
cache (transformers' cache object, copied and repeated over each batch) serves every
candidate of that query, so only the tokens from the document on are run per candidate.
The padding then lies between the shared prefix and each candidate's own tokens
(masked out; positions continue from the prefix length). The scores equal those of
whole prompts up to floating-point rounding; ``stats`` shows the saving
(``prompt_tokens`` against ``tokens``). A model whose cache cannot be repeated over a
batch runs whole prompts.

Truncation cuts the document only: the whole prompt is tokenised once, the tokens that
cover the document are located with the tokenizer's character offsets, and when the
prompt is longer than ``max_length`` the last document tokens are dropped so that the
prompt is exactly ``max_length`` tokens; the text before and after the document (the
instruction, the query and the answer cue at the end) is never cut. A prompt whose
text without the document already exceeds ``max_length`` is an
:class:`~lsr.errors.InputError`. ``doc_words`` optionally cuts each document to its
first N whitespace-separated words before that (as ICR's prompts do).

From the libraries: transformers loads the model and tokenizer, runs the forward pass
(``logits_to_keep=1`` where the model takes it, so only the last position's logits are
computed) and gives the character offsets of the tokens. Written here: the template
filling, the document-only truncation on those offsets, the padding and batching, and
the two-logit softmax.

Text that spells a special token of the tokenizer (``<|im_end|>`` in a document, say) is
read as that token, as in the model card's code: the prompt is one string.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from lsr.errors import InputError

from .base import Reranker, RerankerConfig, dtype_kwargs, model_context
from .text import SLOT, cut_words, is_int

#: Qwen3-Reranker's prompt (its model card), with the instruction, query and document slots
QWEN3_RERANKER_TEMPLATE = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}<|im_end|>\n"
    "<|im_start|>assistant\n<think>\n\n</think>\n\n"
)

#: Qwen3-Reranker's default instruction
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

#: ``max_length`` when none is given (lowered to the model's context when that is shorter)
DEFAULT_MAX_LENGTH = 8192

OUTPUTS = ("probability", "log_odds")

_SLOTS = ("instruction", "query", "document")


@dataclass(frozen=True)
class SFTConfig(RerankerConfig):
    """Settings of the SFT pointwise reranker (beside :class:`RerankerConfig`'s).

    ``template``: the prompt, with the slots ``{document}`` (exactly once), ``{query}``
    (at least once) and ``{instruction}`` (optional); other braces are kept as text, but
    a ``{name}`` that is not one of the three slots is refused (a misspelt slot).
    ``instruction``: what fills ``{instruction}``. ``yes_token`` / ``no_token``: the two
    answer strings; each must be exactly one token of the model's tokenizer (checked when
    the model is loaded). ``max_length``: the longest prompt in tokens (None: 8192, or the
    model's context when shorter; more than the model's context is refused).
    ``doc_words``: cut each document to its first N words before tokenising (None:
    no word cut). ``output``: ``probability`` (P(yes), the default) or ``log_odds``
    (``l_yes - l_no``; the same ranking without saturating at 1.0). ``share_prefix``: run
    the leading tokens that a query's prompts share once and reuse their cache (same
    scores up to rounding, less work).
    """

    template: str = QWEN3_RERANKER_TEMPLATE
    instruction: str = DEFAULT_INSTRUCTION
    yes_token: str = "yes"
    no_token: str = "no"
    max_length: int | None = None
    doc_words: int | None = None
    output: str = "probability"
    share_prefix: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if not isinstance(self.template, str):
            raise InputError(f"{name}: template must be a string")
        slots = [m.group(1) for m in SLOT.finditer(self.template)]
        unknown = sorted(set(slots) - set(_SLOTS))
        if unknown:
            raise InputError(f"{name}: template has unknown slot(s) {', '.join('{' + u + '}' for u in unknown)} "
                             f"(slots: {{instruction}}, {{query}}, {{document}})")
        if slots.count("document") != 1:
            raise InputError(f"{name}: template must hold {{document}} exactly once, "
                             f"found {slots.count('document')}")
        if "query" not in slots:
            raise InputError(f"{name}: template must hold {{query}}")
        if not isinstance(self.instruction, str):
            raise InputError(f"{name}: instruction must be a string")
        for field in ("yes_token", "no_token"):
            v = getattr(self, field)
            if not isinstance(v, str) or not v:
                raise InputError(f"{name}: {field} must be a non-empty string, got {v!r}")
        if self.yes_token == self.no_token:
            raise InputError(f"{name}: yes_token and no_token must differ, both are {self.yes_token!r}")
        if self.max_length is not None and (not is_int(self.max_length) or self.max_length < 2):
            raise InputError(f"{name}: max_length must be an integer of at least 2 (or null), "
                             f"got {self.max_length!r}")
        if self.doc_words is not None and (not is_int(self.doc_words) or self.doc_words < 1):
            raise InputError(f"{name}: doc_words must be a positive integer (or null), "
                             f"got {self.doc_words!r}")
        if not isinstance(self.share_prefix, bool):
            raise InputError(f"{name}: share_prefix must be true or false, got {self.share_prefix!r}")
        if self.output not in OUTPUTS:
            raise InputError(f"{name}: output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")

    def prompt(self, query: str, document: str) -> tuple[str, int, int]:
        """The filled template and the character span ``[start, end)`` of the document in it.

        The slots are filled in one pass over the template, so a query or document that
        contains ``{document}`` or other braces is inserted as it is.
        """
        values = {"instruction": self.instruction, "query": query, "document": document}
        out: list[str] = []
        pos = 0
        length = 0
        start = end = -1
        for m in SLOT.finditer(self.template):
            text = self.template[pos:m.start()]
            out.append(text)
            length += len(text)
            value = values[m.group(1)]
            if m.group(1) == "document":
                start, end = length, length + len(value)
            out.append(value)
            length += len(value)
            pos = m.end()
        out.append(self.template[pos:])
        return "".join(out), start, end


class SFTReranker(Reranker):
    """Pointwise yes/no reranker over a Hugging Face causal LM (see the module docstring).

    ``stats``: ``forward_passes`` (model calls, shared-prefix runs included),
    ``sequences`` (prompts scored), ``prompt_tokens`` (the tokens of those prompts),
    ``tokens`` (tokens run through the model: each shared prefix once, then each
    prompt's own tokens), ``padded_tokens`` (tokens run including the padding),
    ``truncated_documents`` (prompts whose document was cut to fit ``max_length``).
    """

    name: ClassVar[str] = "sft"
    config_class: ClassVar[type[RerankerConfig]] = SFTConfig

    def __init__(self, config: SFTConfig) -> None:
        if not isinstance(config, SFTConfig):
            raise InputError(f"the sft reranker takes an SFTConfig, not {type(config).__name__}")
        super().__init__(config)
        import torch

        from lsr.encoders.checkpoints import Checkpoint, load_tokenizer
        from lsr.encoders.config import RuntimeConfig
        from lsr.encoders.errors import IncompatibleModelError
        from lsr.encoders.sides import resolve_device

        self.stats = {"forward_passes": 0, "sequences": 0, "prompt_tokens": 0, "tokens": 0, "padded_tokens": 0,
                      "truncated_documents": 0}
        self.device, dtype = resolve_device(RuntimeConfig(device=config.device, dtype=config.dtype))
        ckpt = Checkpoint(config.model, config.revision, what="sft reranker model")
        self.checkpoint = ckpt
        self.tokenizer = load_tokenizer(ckpt)
        # lengths are managed here (document-only truncation to max_length): the tokenizer's own
        # limit would only warn about the untruncated prompts it is given
        self.tokenizer.model_max_length = 1 << 62
        self.yes_id = self._answer_id(config.yes_token, "yes_token")
        self.no_id = self._answer_id(config.no_token, "no_token")
        if self.yes_id == self.no_id:
            raise InputError(f"yes_token {config.yes_token!r} and no_token {config.no_token!r} are the same "
                             f"token of {ckpt.label} (id {self.yes_id})")

        arch = ckpt.architectures
        if arch and not any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in arch):
            raise IncompatibleModelError(f"sft reranker model {ckpt.label} is a {', '.join(arch)}, not a causal "
                                         "language model (the reranker reads its next-token logits)")

        def load():
            from transformers import AutoModelForCausalLM

            return AutoModelForCausalLM.from_pretrained(ckpt.spec, **dtype_kwargs(config.dtype),
                                                        **ckpt.hub_kwargs)

        model = ckpt.guard("causal LM", load)
        self.model = model.to(device=self.device, dtype=dtype).eval()
        vocab = self.model.get_output_embeddings()
        n_out = getattr(getattr(vocab, "weight", None), "shape", (None,))[0]
        if n_out is not None and max(self.yes_id, self.no_id) >= n_out:
            raise InputError(f"the answer token ids {self.yes_id}/{self.no_id} lie outside the output "
                             f"vocabulary ({n_out}) of {ckpt.label}")
        self.context = model_context(self.model)
        if config.max_length is None:
            self.max_length = min(DEFAULT_MAX_LENGTH, self.context) if self.context else DEFAULT_MAX_LENGTH
        else:
            if self.context and config.max_length > self.context:
                raise InputError(f"max_length {config.max_length} exceeds the context of {ckpt.label} "
                                 f"({self.context} tokens)")
            self.max_length = config.max_length
        tok = self.tokenizer
        pad = tok.pad_token_id
        for alt in (tok.eos_token_id, tok.unk_token_id, 0):
            if pad is not None:
                break
            pad = alt
        self.pad_id = int(pad)
        params = inspect.signature(self.model.forward).parameters
        self._keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
        self._positions = "position_ids" in params
        # the cache argument's name (``cache`` in recent transformers, ``past_key_values`` before)
        self._cache_kw = next((k for k in ("cache", "past_key_values") if k in params), None)
        self._torch = torch

    # ---------------------------------------------------------------- set-up helpers
    def _answer_id(self, text: str, field: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            shown = self.tokenizer.convert_ids_to_tokens(ids)
            raise InputError(f"{field} {text!r} is {len(ids)} tokens {shown} for the tokenizer of "
                             f"{self.checkpoint.label}, not one")
        return int(ids[0])

    def describe(self) -> dict:
        return {**super().describe(), "yes_token_id": self.yes_id, "no_token_id": self.no_id,
                "effective_max_length": self.max_length}

    # ---------------------------------------------------------------- tokenisation
    def encode(self, query: str, docs: Sequence[str]) -> list[list[int]]:
        """The token ids fed to the model for each ``(query, doc)`` prompt, truncated to ``max_length``."""
        return [ids for ids, _ in self._encode([(query, d) for d in docs])]

    def _encode(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], bool]]:
        cfg = self.config
        prompts = [cfg.prompt(q, cut_words(d, cfg.doc_words)) for q, d in pairs]
        enc = self.tokenizer([p for p, _, _ in prompts], add_special_tokens=False,
                             return_offsets_mapping=True)
        out: list[tuple[list[int], bool]] = []
        for (text, start, end), ids, offsets in zip(prompts, enc["input_ids"], enc["offset_mapping"]):
            if len(ids) <= self.max_length:
                out.append((list(ids), False))
                continue
            # document tokens: [a, b) = those overlapping [start, end); tokens from b on lie after it
            a = 0
            while a < len(ids) and offsets[a][1] <= start:
                a += 1
            b = a
            while b < len(ids) and offsets[b][0] < end:
                b += 1
            head, tail, doc = list(ids[:a]), list(ids[b:]), list(ids[a:b])
            first_straddles = a < b and offsets[a][0] < start
            if doc and offsets[b - 1][1] > end:
                # the last document token runs on into the text after the document: cut it with the
                # document and tokenise that text alone
                tail = self._tokens(text[end:])
                doc = doc[:-1]
            keep = self.max_length - len(head) - len(tail)
            if first_straddles and (keep <= 0 or not doc):
                # the first document token began in the text before the document and is not kept
                # (or was cut with the end): that text is tokenised alone
                head = self._tokens(text[:start])
                doc = doc[1:]
                keep = self.max_length - len(head) - len(tail)
            if keep < 0:
                raise InputError(f"the prompt without its document is {len(head) + len(tail)} tokens, more "
                                 f"than max_length {self.max_length} (query {pairs[len(out)][0][:60]!r})")
            out.append((head + doc[:keep] + tail, True))
        return out

    def _tokens(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ---------------------------------------------------------------- scoring
    def score(self, query: str, docs: Sequence[str]) -> np.ndarray:
        """P(yes) (or the log-odds, per ``output``) of each document, float64, in the order given."""
        return self.score_many([(query, docs)])[0]

    def score_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """Scores of several queries' candidates, their pairs batched together."""
        pairs = [(q, d) for q, docs in items for d in docs]
        log_odds = self.log_odds(pairs)
        if self.config.output == "probability":
            scores = _probability(log_odds)
        else:
            scores = log_odds
        out: list[np.ndarray] = []
        pos = 0
        for _, docs in items:
            out.append(scores[pos:pos + len(docs)].copy())
            pos += len(docs)
        return out

    def log_odds(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """``l_yes - l_no`` (float64) at the last position of each ``(query, document)`` prompt."""
        if not pairs:
            return np.zeros(0, dtype=np.float64)
        encoded = self._encode(pairs)
        self.stats["truncated_documents"] += sum(t for _, t in encoded)
        seqs = [ids for ids, _ in encoded]
        self.stats["sequences"] += len(seqs)
        self.stats["prompt_tokens"] += sum(len(s) for s in seqs)
        out = np.empty(len(seqs), dtype=np.float64)
        pooled: list[int] = []
        if self.config.share_prefix:
            groups: dict[str, list[int]] = {}
            for i, (q, _) in enumerate(pairs):
                groups.setdefault(q, []).append(i)
            for rows in groups.values():
                if len(rows) < 2 or not self._shared_prefix_run(rows, seqs, out):
                    pooled += rows
        else:
            pooled = list(range(len(seqs)))
        order = sorted(pooled, key=lambda i: (-len(seqs[i]), seqs[i]))
        bs = self.config.batch_size
        for b0 in range(0, len(order), bs):
            rows = order[b0:b0 + bs]
            pair_logits = self._last_logits([seqs[i] for i in rows])
            out[rows] = pair_logits[:, 0] - pair_logits[:, 1]
        return out

    def _shared_prefix_run(self, rows: list[int], seqs: list[list[int]], out: np.ndarray) -> bool:
        """Score ``rows`` (prompts of one query) over their common leading tokens, run once and cached.

        False (nothing scored) when the prompts share no leading token or the model's cache cannot
        be repeated over a batch.
        """
        torch = self._torch
        first = seqs[rows[0]]
        n = min(len(seqs[i]) for i in rows) - 1          # every prompt keeps at least one token of its own
        p = 0
        while p < n and all(seqs[i][p] == first[p] for i in rows):
            p += 1
        if p == 0:
            return False
        prefix = torch.tensor([first[:p]], dtype=torch.long, device=self.device)
        kwargs: dict[str, Any] = {"input_ids": prefix, "attention_mask": torch.ones_like(prefix), "use_cache": True}
        if self._positions:
            kwargs["position_ids"] = torch.arange(p, device=self.device)[None]
        if self._keep_kw:
            kwargs[self._keep_kw] = 1
        if self._cache_kw is None:
            return False
        with torch.inference_mode():
            result = self.model(**kwargs)
        cache = getattr(result, self._cache_kw, None)
        self.stats["forward_passes"] += 1
        self.stats["tokens"] += p
        self.stats["padded_tokens"] += p
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            return False
        order = sorted(rows, key=lambda i: (-len(seqs[i]), seqs[i]))
        bs = self.config.batch_size
        for b0 in range(0, len(order), bs):
            batch = order[b0:b0 + bs]
            pair_logits = self._last_logits([seqs[i][p:] for i in batch], prefix=(cache, p))
            out[batch] = pair_logits[:, 0] - pair_logits[:, 1]
        return True

    def _last_logits(self, seqs: list[list[int]], prefix: tuple[Any, int] | None = None) -> np.ndarray:
        """``[l_yes, l_no]`` (float64) at the last position of each sequence, run as one left-padded batch.

        ``prefix``: ``(cache, p)``, the model's cache of ``p`` tokens that come before every
        sequence (copied and repeated over the batch; the padding then lies between the prefix
        and each sequence, masked out, and positions continue from ``p``).
        """
        import copy

        torch = self._torch
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[r, width - len(s):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs: dict[str, Any] = {"input_ids": ids.to(self.device), "use_cache": False}
        if prefix is not None:
            cache, p = prefix
            past = copy.deepcopy(cache)
            past.batch_repeat_interleave(len(seqs))
            kwargs.update({self._cache_kw: past, "use_cache": True})
            mask = torch.cat([torch.ones((len(seqs), p), dtype=torch.long), mask], dim=1)
            positions = positions + p
        kwargs["attention_mask"] = mask.to(self.device)
        if self._positions:
            kwargs["position_ids"] = positions.to(self.device)
        if self._keep_kw:
            kwargs[self._keep_kw] = 1
        with torch.inference_mode():
            logits = self.model(**kwargs).logits[:, -1, :]
            pair = logits[:, [self.yes_id, self.no_id]].to(torch.float64).cpu().numpy()
        self.stats["forward_passes"] += 1
        self.stats["tokens"] += sum(len(s) for s in seqs)
        self.stats["padded_tokens"] += width * len(seqs)
        return pair


def _probability(log_odds: np.ndarray) -> np.ndarray:
    """P(yes) = exp(l_yes) / (exp(l_yes) + exp(l_no)) from ``l_yes - l_no``, as a two-way log-softmax."""
    d = np.asarray(log_odds, dtype=np.float64)
    # log P(yes) = -log(1 + exp(-d)) = -logaddexp(0, -d): finite for every finite d
    return np.exp(-np.logaddexp(0.0, -d))


__all__ = ["DEFAULT_INSTRUCTION", "DEFAULT_MAX_LENGTH", "QWEN3_RERANKER_TEMPLATE", "SFTConfig", "SFTReranker",
           "cut_words"]
