"""Side encoders: one backbone + sparse head each (a document side or a query side).

Every side turns a list of texts into ``{term: weight}`` dicts:

* texts are checked (:func:`~lsr.encoders.text.check_texts`); an empty or
  whitespace-only text gives ``{}`` without running the model;
* texts are tokenised once, sorted by length and cut into batches, so that a
  batch pads only to its own longest text (queries never pad to documents);
* the model runs under ``torch.inference_mode``; outputs come back in input
  order;
* weights of 0 are dropped, then ``min_weight`` and ``top_k`` prune.

Term strings are the tokenizer's tokens (WordPieces such as ``##ing``) or,
for ``deepimpact``/``words``, whole words; none contains whitespace.

:meth:`SideEncoder.encode_sparse` gives the same vectors as one CSR batch
(:class:`SparseBatch`: row pointers, int32 term ids, float32 weights and the
term string of each id), which the one-step indexer feeds to
:meth:`lsr.index.IndexBuilder.add_batch` without building dicts. For the
model sides over a WordPiece vocabulary (``splade``, ``sparterm``,
``unicoil``) the ids are the tokenizer's token ids and :meth:`SideEncoder.encode`
derives its dicts from that batch; the other sides make dicts and the batch
numbers their terms in order of first appearance.

CPU threads: each call runs the model with ``runtime.threads`` torch intra-op
threads, or by default with as many as there are free CPUs, chosen again
between calls (:class:`ThreadChooser`), and restores torch's thread count
afterwards.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from lsr.errors import InputError

from .checkpoints import Checkpoint, load_tokenizer, tokenizer_hash
from .config import RuntimeConfig, SideConfig
from .errors import DeviceError, EncoderConfigError, IncompatibleModelError
from .heads import (
    SPLADE_HEAD_ACTIVATION,
    HeadModel,
    MLMParts,
    cached,
    fused_max_pool,
    fused_sum_pool,
    load_head_model,
    load_mlm,
    padded_pool,
    pool_logits,
)
from .text import TextTokenizer, append_new_terms, check_texts

Progress = Callable[[int], None]


@dataclass
class EncodeStats:
    """Counts for one ``encode`` call."""

    texts: int = 0
    empty: int = 0
    truncated: int = 0
    tokens: int = 0
    expanded: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SparseBatch:
    """Sparse vectors of ``n`` texts in CSR form.

    Text ``i`` has the terms ``terms[ids[indptr[i]:indptr[i+1]]]`` with the
    weights ``weights[indptr[i]:indptr[i+1]]`` (all > 0), in the order its
    ``{term: weight}`` dict lists them (ascending token id for the WordPiece
    model sides). ``terms`` maps an id to its term string: the tokenizer's
    vocabulary when ``token_ids`` is true, else the batch's own list.
    """

    indptr: np.ndarray   # int64[n+1]
    ids: np.ndarray      # int32[nnz]
    weights: np.ndarray  # float32[nnz]
    terms: np.ndarray    # object[...]: id -> term string
    token_ids: bool      # ids are the side's tokenizer ids (terms is its whole vocabulary)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def to_dicts(self) -> list[dict[str, float]]:
        """The ``{term: weight}`` dict of each text (weights as Python floats)."""
        bounds = self.indptr.tolist()
        keys = self.terms[self.ids].tolist() if len(self.ids) else []
        vals = self.weights.tolist()
        return [dict(zip(keys[a:b], vals[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[np.ndarray, np.ndarray]], terms: np.ndarray) -> "SparseBatch":
        """A batch over the token vocabulary ``terms`` from ``(token ids, weights)`` per text."""
        lens = np.fromiter((len(r[0]) for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lens, out=indptr[1:])
        if len(rows) and indptr[-1]:
            ids = np.concatenate([r[0] for r in rows]).astype(np.int32, copy=False)
            weights = np.concatenate([r[1] for r in rows]).astype(np.float32, copy=False)
        else:
            ids, weights = np.zeros(0, np.int32), np.zeros(0, np.float32)
        return cls(indptr, ids, weights, terms, True)

    @classmethod
    def from_dicts(cls, vecs: Sequence[dict[str, float]]) -> "SparseBatch":
        """A batch whose terms are numbered in order of first appearance in ``vecs``."""
        local: dict[str, int] = {}
        ids: list[int] = []
        weights: list[float] = []
        indptr = np.zeros(len(vecs) + 1, dtype=np.int64)
        for i, v in enumerate(vecs):
            for t, w in v.items():
                j = local.get(t)
                if j is None:
                    j = local[t] = len(local)
                ids.append(j)
                weights.append(w)
            indptr[i + 1] = len(ids)
        terms = np.array(list(local), dtype=object) if local else np.zeros(0, dtype=object)
        return cls(indptr, np.asarray(ids, dtype=np.int32), np.asarray(weights, dtype=np.float32), terms, False)


def _machine_cpu_seconds() -> tuple[float, float] | None:
    """(idle CPU-seconds, all CPU-seconds) of the whole machine since boot, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        return (vals[3] + (vals[4] if len(vals) > 4 else 0)) / hz, sum(vals[:8]) / hz  # idle + iowait, all
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _round_cpus(x: float) -> int:
    # a thread needs most of a CPU to pay: 1.7 free CPUs make 2 threads, 1.6 make 1
    return int(math.floor(x + 0.3))


def default_threads() -> int:
    """torch intra-op threads for the first encode call when none are given: the CPUs this process may
    run on that are idle right now (sampled for 0.2 s from /proc/stat; elsewhere the CPU count less the
    1-minute load average), at least 1 and at most torch's own default. Later calls adjust it
    (:class:`ThreadChooser`).

    On a machine where other processes keep the CPUs busy this gives fewer threads than CPUs: a
    torch thread that has to wait for a CPU holds up the others at every parallel region, so more
    threads than free CPUs make an encode slower than one thread.
    """
    import torch

    cpus = _usable_cpus()
    a = _machine_cpu_seconds()
    idle = None
    if a is not None:
        time.sleep(0.2)
        b = _machine_cpu_seconds()
        if b is not None and b[1] > a[1]:
            idle = (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or cpus)
    if idle is None:
        try:
            idle = cpus - os.getloadavg()[0]
        except (AttributeError, OSError):
            idle = cpus
    return max(1, min(cpus, torch.get_num_threads(), _round_cpus(idle)))


class ThreadChooser:
    """The torch threads of a side's encode calls when none are given, chosen again between calls.

    The first call gets :func:`default_threads`. After at least ``every`` seconds, the next call gets
    the CPUs that were free to this process over that time: the machine's idle CPU time plus this
    process's own CPU time, per second of wall time (/proc/stat and :func:`os.times`), so threads are
    taken back when other processes start and given again when they stop. Without /proc/stat the
    first choice is kept.
    """

    def __init__(self, every: float = 5.0):
        self.every = every
        self.n: int | None = None
        self.cap = 1
        self._mark: tuple[float, float, float] | None = None

    @staticmethod
    def _snapshot() -> tuple[float, float, float] | None:
        m = _machine_cpu_seconds()
        if m is None:
            return None
        t = os.times()
        return time.monotonic(), m[0], t.user + t.system

    def choose(self) -> int:
        import torch

        if self.n is None:
            self.cap = max(1, min(_usable_cpus(), torch.get_num_threads()))
            self.n = default_threads()
            self._mark = self._snapshot()
            return self.n
        now = self._snapshot()
        if now is None or self._mark is None or now[0] - self._mark[0] < self.every:
            return self.n
        wall = now[0] - self._mark[0]
        free = ((now[1] - self._mark[1]) + (now[2] - self._mark[2])) / wall
        self.n = max(1, min(self.cap, _round_cpus(free)))
        self._mark = now
        return self.n


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads, then restore torch's previous count."""
    import torch

    prev = torch.get_num_threads()
    if n == prev:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def resolve_device(runtime: RuntimeConfig):
    """``(torch.device, torch.dtype)`` for a runtime config, or a DeviceError."""
    import torch

    try:
        dev = torch.device(runtime.device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {runtime.device!r} (cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {runtime.device!r} requested but no CUDA GPU is available to torch")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' requested but it is not available")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device type {dev.type!r} (cpu, cuda or mps)")
    if runtime.dtype == "float16" and dev.type == "cpu":
        raise DeviceError("float16 needs a GPU; on the CPU use float32 (exact) or bfloat16")
    if runtime.dtype == "bfloat16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("this GPU does not support bfloat16; use float16 or float32")
    return dev, getattr(torch, runtime.dtype)


def _shared_tokenizer(ckpt: Checkpoint):
    return cached(("tokenizer", ckpt.spec, ckpt.revision), lambda: load_tokenizer(ckpt))


class SideEncoder:
    """Base class: tokenizer, batching, pruning, description. Subclasses implement ``_encode``."""

    kind = ""
    # True where _encode returns (token ids, weights) rows over self.vocab instead of dicts
    native_sparse = False

    def __init__(self, cfg: SideConfig, runtime: RuntimeConfig, role: str) -> None:
        self.cfg = cfg
        self.runtime = runtime
        self.role = role
        self.device, self.dtype = resolve_device(runtime)
        self.ckpt = Checkpoint(cfg.model, cfg.revision, what=f"{role} model")
        self.tok_ckpt = (Checkpoint(cfg.tokenizer, cfg.revision if cfg.tokenizer == cfg.model else None,
                                    what=f"{role} tokenizer") if cfg.tokenizer else self.ckpt)
        self.hf_tokenizer = _shared_tokenizer(self.tok_ckpt)
        self.text = TextTokenizer(self.hf_tokenizer, cfg.max_length)
        self.tokenizer_hash = tokenizer_hash(self.hf_tokenizer)
        self.vocab = np.array(self.text.vocab, dtype=object)
        self.last_stats = EncodeStats()
        self._identity: dict | None = None
        self._chooser = ThreadChooser()

    # -- public ----------------------------------------------------------------
    @property
    def threads(self) -> int:
        """torch threads of the last (or, before any, the next) encode call on the CPU:
        ``runtime.threads``, else chosen by :class:`ThreadChooser` (the free CPUs)."""
        if self.runtime.threads is not None:
            return self.runtime.threads
        return self._chooser.n if self._chooser.n is not None else self._chooser.choose()

    def _call_threads(self) -> int:
        if self.runtime.threads is not None:
            return self.runtime.threads
        return self._chooser.choose()

    def encode(self, texts: Sequence[str], batch_size: int = 32, expansions: Sequence[str | None] | None = None,
               progress: Progress | None = None) -> list[dict[str, float]]:
        """Encode texts into ``{term: weight}`` dicts, in input order."""
        if self.native_sparse:
            return self.encode_sparse(texts, batch_size, expansions, progress).to_dicts()
        return self._run(texts, batch_size, expansions, progress, dict)

    def encode_sparse(self, texts: Sequence[str], batch_size: int = 32,
                      expansions: Sequence[str | None] | None = None,
                      progress: Progress | None = None) -> SparseBatch:
        """Encode texts into one :class:`SparseBatch` (the vectors :meth:`encode` gives, in CSR form)."""
        if not self.native_sparse:
            return SparseBatch.from_dicts(self.encode(texts, batch_size, expansions, progress))
        def empty():
            return np.zeros(0, np.int64), np.zeros(0, np.float32)

        return SparseBatch.from_rows(self._run(texts, batch_size, expansions, progress, empty), self.vocab)

    def _run(self, texts, batch_size, expansions, progress, empty: Callable[[], object]) -> list:
        """The model's output row of each text (``empty()`` for an empty text), in input order."""
        import torch

        texts = check_texts(texts)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        stats = EncodeStats(texts=len(texts))
        if expansions is not None:
            texts = self._merge_expansions(texts, expansions, stats)
        out: list = [None] * len(texts)
        todo = []
        for i, t in enumerate(texts):
            if t.strip():
                todo.append(i)
            else:
                out[i] = empty()
        stats.empty = len(texts) - len(todo)
        if progress is not None and stats.empty:
            progress(stats.empty)
        if todo:
            threads = self._call_threads() if self.device.type == "cpu" else torch.get_num_threads()
            with torch_threads(threads), torch.inference_mode():
                vecs = self._encode([texts[i] for i in todo], batch_size, stats, progress)
            for i, v in zip(todo, vecs):
                out[i] = v
        self.last_stats = stats
        return out

    def describe(self) -> dict:
        """JSON-serialisable description of this side (enough to rebuild it)."""
        d = {"kind": self.cfg.kind, **self.identity(), "term_space": self.cfg.term_space,
             "tokenizer_hash": self.tokenizer_hash, "max_length": self.cfg.max_length,
             "top_k": self.cfg.top_k, "min_weight": self.cfg.min_weight}
        if self.cfg.tokenizer:
            d["tokenizer"] = self.tok_ckpt.spec
        d.update(self._describe_head())
        return d

    def identity(self) -> dict:
        """Model id, resolved revision and (for local directories) a content hash."""
        if self._identity is None:
            self._identity = self.ckpt.guard("identity", self.ckpt.identity)
        return self._identity

    # -- helpers for subclasses ------------------------------------------------
    def _describe_head(self) -> dict:
        return {}

    def _encode(self, texts: list[str], batch_size: int, stats: EncodeStats,
                progress: Progress | None) -> list[dict]:
        raise NotImplementedError

    def _merge_expansions(self, texts: list[str], expansions, stats: EncodeStats) -> list[str]:
        exps = list(expansions)
        if len(exps) != len(texts):
            raise InputError(f"{len(exps)} expansions for {len(texts)} texts")
        checked = check_texts([e if e is not None else "" for e in exps], what="expansion")
        out = []
        for t, e, orig in zip(texts, checked, exps):
            if orig is None or not e.strip():
                out.append(t)
                continue
            stats.expanded += 1
            out.append(self._merge_one(t, e))
        return out

    def _merge_one(self, text: str, expansion: str) -> str:
        return f"{text} {expansion}" if text.strip() else expansion

    def _batches(self, lengths: list[int], batch_size: int) -> list[list[int]]:
        order = sorted(range(len(lengths)), key=lambda j: -lengths[j])
        return [order[s: s + batch_size] for s in range(0, len(order), batch_size)]

    def _pad(self, ids: list[list[int]], idxs: list[int]):
        import torch

        lengths = [len(ids[j]) for j in idxs]
        L = max(lengths)
        arr = np.full((len(idxs), L), self.text.pad_id, dtype=np.int64)
        mask = np.zeros((len(idxs), L), dtype=np.int64)
        for r, j in enumerate(idxs):
            arr[r, : lengths[r]] = ids[j]
            mask[r, : lengths[r]] = 1
        return (torch.from_numpy(arr).to(self.device), torch.from_numpy(mask).to(self.device), lengths)

    def _prune_index(self, row: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Indices of ``row`` (among ``idx``) that survive ``min_weight`` and ``top_k``."""
        vals = row[idx]
        keep = vals > 0
        if self.cfg.min_weight > 0:
            keep &= vals >= self.cfg.min_weight
        idx = idx[keep]
        k = self.cfg.top_k
        if k is not None and len(idx) > k:
            order = np.argsort(-row[idx], kind="stable")[:k]
            idx = np.sort(idx[order])
        return idx

    def _row_to_sparse(self, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, float32 weights) of a dense vocabulary row: its positive weights, pruned by
        ``min_weight`` and ``top_k``."""
        idx = self._prune_index(row, np.flatnonzero(row > 0))
        return idx, row[idx].astype(np.float32, copy=False)


# --------------------------------------------------------------------------- SPLADE / SparTerm
class MLMSide(SideEncoder):
    """SPLADE (``splade``) and SparTerm (``sparterm``) on a ``*ForMaskedLM`` checkpoint.

    SPLADE: ``w_v = pool_i log(1 + ReLU(logit_{i,v}))`` over the attended
    tokens (special tokens included), pool = max (v2, ++, v3) or sum (v1);
    with ``activation: log1p_relu``, ``log(1 + log(1 + ReLU(logit)))``
    (sentence-transformers' name; the OpenSearch v3 models).

    SparTerm: importance ``imp_v = pool_i ReLU(logit_{i,v})`` (sum as in the
    paper, or max) times a binary gate ``g_v``: ``lexical`` gates on the
    tokens present in the text (special tokens excluded); ``expansion`` also
    opens ``v`` when ``sigmoid(max_i gate_logit_{i,v}) > gate_threshold``,
    with gate logits from ``gate_model`` (default: the importance model
    itself), the text's own tokens forced on. Only gated columns of the
    vocabulary projection are computed for the importance.
    """

    native_sparse = True

    def __init__(self, cfg: SideConfig, runtime: RuntimeConfig, role: str) -> None:
        super().__init__(cfg, runtime, role)
        self._parts: MLMParts | None = None
        self._gate_parts: MLMParts | None = None
        self.gate_ckpt = (Checkpoint(cfg.gate_model, None, what=f"{role} gate model")
                          if cfg.kind == "sparterm" and cfg.gate == "expansion" and cfg.gate_model else None)
        if self.gate_ckpt is not None:
            gate_tok = _shared_tokenizer(self.gate_ckpt)
            if tokenizer_hash(gate_tok) != self.tokenizer_hash:
                raise IncompatibleModelError(f"{role} gate model {self.gate_ckpt.label} uses another tokenizer "
                                             "than the importance model")

    @property
    def parts(self) -> MLMParts:
        if self._parts is None:
            self._parts = load_mlm(self.ckpt, self.device, self.dtype, self.cfg.trust_remote_code)
            if self._parts.vocab_size != len(self.vocab):
                raise IncompatibleModelError(
                    f"{self.role} model {self.ckpt.label}: MLM vocabulary ({self._parts.vocab_size}) and "
                    f"tokenizer ({len(self.vocab)}) differ in size")
            self._check_positions(self._parts.model.config)
            if self.cfg.kind == "sparterm" and self._parts.generic:
                raise IncompatibleModelError(f"{self.role} model {self.ckpt.label}: SparTerm supports BERT and "
                                             "DistilBERT MLM checkpoints")
        return self._parts

    @property
    def gate_parts(self) -> MLMParts:
        if self._gate_parts is None:
            if self.gate_ckpt is None:
                self._gate_parts = self.parts
            else:
                self._gate_parts = load_mlm(self.gate_ckpt, self.device, self.dtype, self.cfg.trust_remote_code)
                if self._gate_parts.generic or self._gate_parts.vocab_size != len(self.vocab):
                    raise IncompatibleModelError(f"{self.role} gate model {self.gate_ckpt.label} does not fit "
                                                 "the importance model's vocabulary")
        return self._gate_parts

    def _check_positions(self, config) -> None:
        limit = getattr(config, "max_position_embeddings", None)
        if isinstance(limit, int) and self.cfg.max_length > limit:
            raise EncoderConfigError(f"{self.role} side: max_length {self.cfg.max_length} exceeds the model's "
                                     f"{limit} positions")

    def _describe_head(self) -> dict:
        d = {"head": "mlm", "pooling": self.cfg.pooling}
        if self.cfg.kind == "splade":
            d["activation"] = SPLADE_HEAD_ACTIVATION[self.cfg.activation]
        else:
            d.update({"activation": "relu", "gate": self.cfg.gate, "gate_threshold": self.cfg.gate_threshold,
                      "gate_model": self.gate_ckpt.identity() if self.gate_ckpt is not None else None})
        return d

    def _encode(self, texts, batch_size, stats, progress):
        enc = self.text.encode(texts)
        stats.truncated += sum(enc.truncated)
        stats.tokens += sum(len(x) for x in enc.ids)
        parts = self.parts
        results: list = [None] * len(texts)
        for idxs in self._batches([len(x) for x in enc.ids], batch_size):
            ids, mask, lengths = self._pad(enc.ids, idxs)
            if self.cfg.kind == "splade":
                rows = self._splade_batch(parts, ids, mask, lengths)
                for r, j in enumerate(idxs):
                    results[j] = self._row_to_sparse(rows[r])
            else:
                vecs = self._sparterm_batch(parts, ids, mask, lengths, [enc.ids[j] for j in idxs])
                for r, j in enumerate(idxs):
                    results[j] = vecs[r]
            if progress is not None:
                progress(len(idxs))
        return results

    def _splade_batch(self, parts: MLMParts, ids, mask, lengths) -> np.ndarray:
        import torch

        act = SPLADE_HEAD_ACTIVATION[self.cfg.activation]
        if parts.generic:
            logits = parts.logits(ids, mask)
            out = pool_logits(logits, mask.bool().unsqueeze(-1), self.cfg.pooling, act)
        elif self.device.type == "cpu":
            h = parts.hidden(ids, mask)
            T = parts.transform(h[mask.bool()])
            out = torch.empty((len(lengths), parts.vocab_size), dtype=T.dtype)
            pool = fused_max_pool if self.cfg.pooling == "max" else fused_sum_pool
            pool(T, lengths, parts.weight, parts.bias, out, activation=act)
        else:
            T = parts.transform(parts.hidden(ids, mask))
            out = padded_pool(T, mask, parts.weight, parts.bias, self.cfg.pooling, act)
        return out.float().cpu().numpy()

    def _sparterm_batch(self, parts: MLMParts, ids, mask, lengths, id_lists) -> list[tuple]:
        import torch

        h = parts.hidden(ids, mask)
        T = parts.transform(h[mask.bool()])
        gate_open = None
        if self.cfg.gate == "expansion":
            gp = self.gate_parts
            gT = T if gp is parts else gp.transform(gp.hidden(ids, mask)[mask.bool()])
            gmax = torch.empty((len(lengths), gp.vocab_size), dtype=gT.dtype, device=gT.device)
            fused_max_pool(gT, lengths, gp.weight, gp.bias, gmax, activation="none")
            gate_open = (torch.sigmoid(gmax.float()) > self.cfg.gate_threshold).cpu().numpy()
        special = self.text.special_ids
        out = []
        off = 0
        for r, L in enumerate(lengths):
            seg = T[off: off + L]
            off += L
            lex = {t for t in id_lists[r] if t not in special}
            cols = np.array(sorted(lex), dtype=np.int64)
            if gate_open is not None:
                cols = np.union1d(cols, np.flatnonzero(gate_open[r]))
            if len(cols) == 0:
                out.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
                continue
            ct = torch.from_numpy(cols).to(T.device)
            s = torch.relu(torch.addmm(parts.bias.index_select(0, ct), seg, parts.weight.index_select(0, ct).t()))
            imp = (s.amax(0) if self.cfg.pooling == "max" else s.sum(0)).float().cpu().numpy()
            row = np.zeros(len(self.vocab), dtype=np.float32)
            row[cols] = imp
            idx = self._prune_index(row, cols)
            out.append((idx, row[idx]))
        return out


# --------------------------------------------------------------------------- uniCOIL
class _HeadSide(SideEncoder):
    """Shared loading of backbone + MLP head (uniCOIL, DeepImpact)."""

    def __init__(self, cfg: SideConfig, runtime: RuntimeConfig, role: str) -> None:
        super().__init__(cfg, runtime, role)
        self._model: HeadModel | None = None

    @property
    def model(self) -> HeadModel:
        if self._model is None:
            self._model = load_head_model(self.ckpt, self.cfg.head_file, self.cfg.effective_head_prefix,
                                          self.device, self.dtype)
            limit = getattr(self._model.backbone.config, "max_position_embeddings", None)
            if isinstance(limit, int) and self.cfg.max_length > limit:
                raise EncoderConfigError(f"{self.role} side: max_length {self.cfg.max_length} exceeds the "
                                         f"model's {limit} positions")
        return self._model

    def _describe_head(self) -> dict:
        head = {"type": "mlp", "prefix": self.cfg.effective_head_prefix, "file": self.cfg.head_file,
                "layers": self.model.head.shape, "activation": "relu"}
        if self.cfg.head_file:
            head["sha256"] = _file_sha256(self.cfg.head_file)
        return {"head": head, "pooling": self.cfg.pooling if self.cfg.kind == "unicoil" else "first-occurrence"}


class UniCoilSide(_HeadSide):
    """uniCOIL: ``w_t = ReLU(W h_t + b)`` per token, max (or sum) over repeats of a token.

    No expansion by the model; special tokens ([CLS], [SEP], ...) get no
    weight. An expansion text (doc2query output) is appended to the document
    text with a space before tokenisation.
    """

    native_sparse = True

    def _encode(self, texts, batch_size, stats, progress):
        import torch

        enc = self.text.encode(texts)
        stats.truncated += sum(enc.truncated)
        stats.tokens += sum(len(x) for x in enc.ids)
        model = self.model
        V = len(self.vocab)
        special = torch.tensor(sorted(self.text.special_ids), dtype=torch.long, device=self.device)
        reduce = "amax" if self.cfg.pooling == "max" else "sum"
        results: list = [None] * len(texts)
        for idxs in self._batches([len(x) for x in enc.ids], batch_size):
            ids, mask, _ = self._pad(enc.ids, idxs)
            keep = mask.bool() & ~torch.isin(ids, special)
            h = model.hidden(ids, mask)
            w = model.head(h[keep]).squeeze(-1).float()
            doc = torch.arange(len(idxs), device=self.device).unsqueeze(1).expand_as(ids)[keep]
            flat = doc * V + ids[keep]
            out = torch.zeros(len(idxs) * V, dtype=torch.float32, device=self.device)
            out.scatter_reduce_(0, flat, w, reduce=reduce, include_self=True)
            rows = out.view(len(idxs), V).cpu().numpy()
            for r, j in enumerate(idxs):
                results[j] = self._row_to_sparse(rows[r])
            if progress is not None:
                progress(len(idxs))
        return results


# --------------------------------------------------------------------------- DeepImpact
class DeepImpactSide(_HeadSide):
    """DeepImpact / DeeperImpact: whole-word impacts from the first WordPiece of each word.

    Words come from BERT's basic tokenisation (:mod:`lsr.encoders.text`); each
    distinct non-punctuation word is scored once, at the first WordPiece of
    its first occurrence, by the MLP head; the weight is that score. Words
    whose first occurrence is cut by ``max_length`` are left out. With an
    ``expansion`` config (DeeperImpact), documents are first expanded with the
    unique new words of queries generated by a causal LM; an expansion given
    with the document (an input field) is used instead of generating.
    """

    def __init__(self, cfg: SideConfig, runtime: RuntimeConfig, role: str) -> None:
        super().__init__(cfg, runtime, role)
        self._expander = None

    @property
    def expander(self):
        if self._expander is None and self.cfg.expansion is not None:
            from .expansion import Doc2Query

            self._expander = Doc2Query(self.cfg.expansion, self.runtime)
        return self._expander

    def _merge_one(self, text: str, expansion: str) -> str:
        return append_new_terms(text, [expansion], self.text)

    def _describe_head(self) -> dict:
        d = super()._describe_head()
        if self.cfg.expansion is not None:
            d["expansion"] = self.cfg.expansion.to_dict()
        return d

    def encode(self, texts, batch_size=32, expansions=None, progress=None):
        texts = check_texts(texts)
        if self.cfg.expansion is not None:
            given = list(expansions) if expansions is not None else [None] * len(texts)
            if len(given) != len(texts):
                raise InputError(f"{len(given)} expansions for {len(texts)} texts")
            for i, t in enumerate(texts):
                if given[i] is None and t.strip():
                    given[i] = "\n".join(self.expander.generate(t))
            expansions = given
        return super().encode(texts, batch_size=batch_size, expansions=expansions, progress=progress)

    def _encode(self, texts, batch_size, stats, progress):
        import torch

        occ = self.text.first_occurrences([self.text.window_words(t) for t in texts])
        stats.truncated += sum(1 for o in occ if o[3])
        stats.tokens += sum(len(o[0]) for o in occ)
        results: list[dict] = [{}] * len(texts)
        ids_all = [o[0] for o in occ]
        model = None
        for idxs in self._batches([len(x) for x in ids_all], batch_size):
            live = [j for j in idxs if occ[j][1]]
            if live:
                model = model or self.model
                ids, mask, _ = self._pad(ids_all, live)
                h = model.hidden(ids, mask)
                rows = torch.cat([torch.full((len(occ[j][2]),), r, dtype=torch.long) for r, j in enumerate(live)])
                cols = torch.cat([torch.tensor(occ[j][2], dtype=torch.long) for j in live])
                scores = model.head(h[rows.to(self.device), cols.to(self.device)]).squeeze(-1).float().cpu().numpy()
                off = 0
                for j in live:
                    terms = occ[j][1]
                    vals = scores[off: off + len(terms)]
                    off += len(terms)
                    idx = self._prune_index(vals, np.flatnonzero(vals > 0))
                    results[j] = {terms[k]: float(vals[k]) for k in idx.tolist()}
            if progress is not None:
                progress(len(idxs))
        return results


# --------------------------------------------------------------------------- inference-free sides
class TokensSide(SideEncoder):
    """No transformer: the text's WordPieces (no special tokens), up to ``max_length``.

    ``weights``: ``binary`` (1 per distinct token), ``counts`` (occurrences),
    a JSON file ``{token: weight}`` of learned per-token weights (tokens not
    in the file get no weight), or a ``.safetensors`` file holding one vector
    ``weight`` indexed by token id (sentence-transformers'
    ``SparseStaticEmbedding`` weights). A relative file path that does not
    exist as given names a file of the side's checkpoint (``model``: a local
    directory, or a hub repository whose file is downloaded and cached), e.g.
    ``idf.json`` or ``query_0_SparseStaticEmbedding/model.safetensors``.
    """

    def __init__(self, cfg: SideConfig, runtime: RuntimeConfig, role: str) -> None:
        super().__init__(cfg, runtime, role)
        self.table: dict[str, float] | None = None
        self.weights_path: str | None = None
        if cfg.weights not in ("binary", "counts"):
            path = cfg.weights
            if not os.path.isabs(path) and not os.path.exists(path):
                path = self.ckpt.file(path.replace(os.sep, "/"))
            self.weights_path = path
            self.table = (_read_weight_vector(path, self.text.vocab) if path.endswith(".safetensors")
                          else _read_weight_table(path))

    def identity(self) -> dict:
        return {"model": self.ckpt.spec, "revision": None if self.ckpt.local else self.cfg.revision,
                "sha256": None}

    def _describe_head(self) -> dict:
        d: dict = {"head": "none", "weights": "file" if self.table is not None else self.cfg.weights}
        if self.table is not None:
            d["weights_file"] = self.cfg.weights
            d["weights_sha256"] = _file_sha256(self.weights_path)
        return d

    def _encode(self, texts, batch_size, stats, progress):
        enc = self.text.encode(texts, add_special_tokens=False)
        stats.truncated += sum(enc.truncated)
        stats.tokens += sum(len(x) for x in enc.ids)
        out = []
        for ids in enc.ids:
            counts: dict[str, float] = {}
            for t in ids:
                tok = self.text.vocab[t]
                counts[tok] = counts.get(tok, 0.0) + 1.0
            out.append(self._weigh(counts))
        if progress is not None:
            progress(len(texts))
        return out

    def _weigh(self, counts: dict[str, float]) -> dict[str, float]:
        if self.cfg.weights == "binary":
            vec = {t: 1.0 for t in counts}
        elif self.cfg.weights == "counts":
            vec = counts
        else:
            assert self.table is not None
            vec = {t: self.table[t] for t in counts if self.table.get(t, 0.0) > 0}
        return _prune_dict(vec, self.cfg.min_weight, self.cfg.top_k)


class WordsSide(TokensSide):
    """No transformer: the text's whole words (DeepImpact's segmentation), weight 1 or the count,
    from the first ``max_length`` words."""

    def _encode(self, texts, batch_size, stats, progress):
        out = []
        for t in texts:
            words = self.text.content_words(t)
            if len(words) > self.cfg.max_length:
                stats.truncated += 1
                words = words[: self.cfg.max_length]
            stats.tokens += len(words)
            counts: dict[str, float] = {}
            for w in words:
                counts[w] = counts.get(w, 0.0) + 1.0
            out.append(self._weigh(counts))
        if progress is not None:
            progress(len(texts))
        return out


def _prune_dict(vec: dict[str, float], min_weight: float, top_k: int | None) -> dict[str, float]:
    items = [(t, w) for t, w in vec.items() if w > 0 and w >= min_weight]
    if top_k is not None and len(items) > top_k:
        keep = {t for t, _ in sorted(items, key=lambda tw: -tw[1])[:top_k]}
        items = [(t, w) for t, w in items if t in keep]
    return dict(items)


def _file_sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_weight_table(path: str) -> dict[str, float]:
    from lsr.io import read_json_object

    if not os.path.isfile(path):
        raise EncoderConfigError(f"token weight file {path} does not exist")
    data = read_json_object(path, EncoderConfigError, "token weight file (a JSON object {token: weight})")
    for t, w in data.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise EncoderConfigError(f"{path}: weight of token {t!r} must be a finite number >= 0, got {w!r}")
    return {str(t): float(w) for t, w in data.items()}


def _read_weight_vector(path: str, vocab: list[str]) -> dict[str, float]:
    """``{token: weight}`` from a safetensors file with one vector ``weight`` of the vocabulary's size
    (tokens of weight 0 left out)."""
    from .checkpoints import read_tensors

    if not os.path.isfile(path):
        raise EncoderConfigError(f"token weight file {path} does not exist")
    tensors = read_tensors(path)
    w = tensors.get("weight")
    if w is None or w.ndim != 1 or len(w) != len(vocab):
        found = ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items()) or "nothing"
        raise IncompatibleModelError(f"{path}: expected one vector 'weight' of {len(vocab)} token weights "
                                     f"(the tokenizer's vocabulary), found {found}")
    w = w.float().numpy()
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if len(bad):
        i = int(bad[0])
        raise EncoderConfigError(f"{path}: weight of token {vocab[i]!r} must be a finite number >= 0, "
                                 f"got {float(w[i])!r}")
    nz = np.flatnonzero(w)
    return dict(zip([vocab[i] for i in nz.tolist()], w[nz].tolist()))


SIDE_CLASSES: dict[str, type[SideEncoder]] = {
    "splade": MLMSide, "sparterm": MLMSide, "unicoil": UniCoilSide, "deepimpact": DeepImpactSide,
    "tokens": TokensSide, "words": WordsSide,
}


def make_side(cfg: SideConfig, runtime: RuntimeConfig, role: str) -> SideEncoder:
    """The side encoder for a side config: a neural side whose model is an ONNX export directory
    (:mod:`lsr.encoders.onnx`) runs that export with onnxruntime."""
    if cfg.neural:
        from .onnx import OnnxSide, is_export

        if is_export(cfg.model):
            return OnnxSide(cfg, runtime, role)
    return SIDE_CLASSES[cfg.kind](cfg, runtime, role)


__all__ = [
    "DeepImpactSide",
    "EncodeStats",
    "MLMSide",
    "SparseBatch",
    "SideEncoder",
    "TokensSide",
    "UniCoilSide",
    "WordsSide",
    "ThreadChooser",
    "default_threads",
    "make_side",
    "resolve_device",
    "torch_threads",
]
