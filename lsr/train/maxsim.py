"""Training a ColBERT-style (MaxSim) projection on sentence-transformers' multi-vector trainer.

The model is sentence-transformers' ``MultiVectorEncoder`` (a BERT-family backbone, a
bias-free ``Dense`` projection of every token vector to ``dim`` dimensions, the scoring
mask, L2 normalisation) trained by its ``MultiVectorEncoderTrainer`` with its
``MultiVectorMultipleNegativesRankingLoss``: for each query, its positive against the
batch's other positives and every hard negative of the batch, scored by MaxSim.

Checkpoints are in the PyLate layout (``modules.json`` listing a ``Transformer`` and a
``Dense`` module, ``config_sentence_transformers.json`` with the ColBERT settings), which
both lsr's MaxSim reranker (:mod:`lsr.rerank.maxsim`) and ``MultiVectorEncoder`` read:

* :func:`init_checkpoint` writes the starting point: the backbone with the ``[Q] `` /
  ``[D] `` marker tokens added to its vocabulary (their embeddings the mean of the
  vocabulary's), and a projection drawn from a seeded normal distribution
  (``N(0, 1 / hidden)``), untrained.
* :func:`train_maxsim` loads it as a ``MultiVectorEncoder`` and trains the projection
  (and, with ``train_backbone``, the backbone; otherwise the backbone's weights are
  frozen) with the trainer's own checkpoints (``OUTPUT/trainer/checkpoint-N``, the
  trainer's format, for resuming), then writes the trained model to ``OUTPUT/model`` in the
  PyLate layout: the starting point's files with the trained weights. ``lsr rerank
  --reranker maxsim --model OUTPUT/model`` loads it as it is.

The training texts are tokenised by the trainer with the marker prompts (``[Q] `` for the
query column, ``[D] `` for the document columns), which gives the same token ids as lsr's
reranker and ``MultiVectorEncoder.encode_query`` / ``encode_document`` (tested).
"""

from __future__ import annotations

import json
import os
import shutil
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lsr.config import _int_at_least, _number_in
from lsr.errors import InputError

QUERY_MARKER = "[Q] "
DOC_MARKER = "[D] "
_STATE = "train-maxsim.json"
# settings that may differ between a run and the run it resumes
_RESUMABLE = ("output", "epochs", "max_steps", "save_steps", "logging_steps", "device")


@dataclass(frozen=True)
class MaxSimTrainConfig:
    """Settings of a MaxSim training run.

    ``backbone``: a Hugging Face directory (or hub id) of a BERT-family encoder; ``output``: the
    run's directory. ``dim``: the projection's width; ``query_length`` / ``doc_length``: tokens per
    query (padded with mask tokens) and at most per document, markers included; ``train_backbone``:
    train the backbone too (else only the projection); ``epochs`` or ``max_steps`` (> 0 wins);
    ``batch_size``: queries per step; ``learning_rate``: the projection's (AdamW, linear decay after
    ``warmup_ratio`` of the steps), ``backbone_learning_rate``: the backbone's; ``scale``: the
    loss's ``1 / temperature``; ``seed``: the projection's draw and the trainer's; ``save_steps``:
    a trainer checkpoint every N steps; ``device``: ``cpu``, ``cuda``, ...
    """

    backbone: str
    output: str
    dim: int = 128
    query_length: int = 32
    doc_length: int = 180
    train_backbone: bool = False
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 16
    learning_rate: float = 1e-3
    backbone_learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    scale: float = 1.0
    seed: int = 0
    save_steps: int = 20
    logging_steps: int = 5
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("backbone", "output", "device"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise InputError(f"MaxSimTrainConfig: {name} must be a non-empty string, got {v!r}")
        for name, lo in (("dim", 1), ("query_length", 4), ("doc_length", 4), ("batch_size", 1),
                         ("save_steps", 1), ("logging_steps", 1), ("seed", 0)):
            _int_at_least(f"MaxSimTrainConfig: {name}", getattr(self, name), lo)
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps == 0 \
                or self.max_steps < -1:
            raise InputError(f"MaxSimTrainConfig: max_steps must be -1 (use epochs) or > 0, got {self.max_steps!r}")
        for name in ("epochs", "learning_rate", "backbone_learning_rate", "scale"):
            _number_in(f"MaxSimTrainConfig: {name}", getattr(self, name), 0.0, float("inf"), lo_open=True)
        if isinstance(self.warmup_ratio, bool) or not isinstance(self.warmup_ratio, (int, float)) \
                or not 0 <= self.warmup_ratio < 1:
            raise InputError(f"MaxSimTrainConfig: warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if not isinstance(self.train_backbone, bool):
            raise InputError(f"MaxSimTrainConfig: train_backbone must be true or false, got {self.train_backbone!r}")

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------- checkpoints
def _write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def init_checkpoint(backbone: str, output: str, *, dim: int = 128, seed: int = 0, query_length: int = 32,
                    doc_length: int = 180) -> str:
    """Write an untrained PyLate-layout checkpoint at ``output`` (module docstring) and return its path.

    Written to a temporary directory beside ``output`` and renamed; an existing ``output`` is an
    InputError."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    output = os.path.abspath(output)
    if os.path.exists(output):
        raise InputError(f"{output} exists; a new checkpoint is not written over it")
    try:
        tok = AutoTokenizer.from_pretrained(backbone)
        model = AutoModel.from_pretrained(backbone)
    except OSError as e:
        raise InputError(f"cannot load the backbone {backbone!r}: {e}") from None
    if not getattr(tok, "is_fast", False):
        raise InputError(f"{backbone}: needs a fast tokenizer (tokenizer.json)")
    tok.add_tokens([QUERY_MARKER, DOC_MARKER])
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    with torch.no_grad():
        table = model.get_input_embeddings().weight
        table[old:] = table[:old].mean(dim=0)
    hidden = int(model.config.hidden_size)
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(dim, hidden, generator=g) / hidden ** 0.5
    tmp = f"{output}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "1_Dense"))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    _write_json(os.path.join(tmp, "sentence_bert_config.json"),
                {"max_seq_length": doc_length - 1, "do_lower_case": False})
    _write_json(os.path.join(tmp, "modules.json"), [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}])
    _write_json(os.path.join(tmp, "1_Dense", "config.json"),
                {"in_features": hidden, "out_features": dim, "bias": False,
                 "activation_function": "torch.nn.modules.linear.Identity", "use_residual": False})
    save_file({"linear.weight": weight.contiguous()}, os.path.join(tmp, "1_Dense", "model.safetensors"))
    _write_json(os.path.join(tmp, "config_sentence_transformers.json"), {
        "model_type": "ColBERT", "query_prefix": QUERY_MARKER, "document_prefix": DOC_MARKER,
        "query_length": query_length, "document_length": doc_length, "attend_to_expansion_tokens": False,
        "skiplist_words": list(string.punctuation), "do_query_expansion": True, "similarity_fn_name": "MaxSim"})
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    os.replace(tmp, output)
    return output


def load_encoder(path: str, device: str = "cpu"):
    """A checkpoint (PyLate layout, or any that ``MultiVectorEncoder`` reads) as a ``MultiVectorEncoder``."""
    from sentence_transformers.multi_vector_encoder import MultiVectorEncoder

    return MultiVectorEncoder(path, device=device, local_files_only=os.path.isdir(path))


def projection_weight(model):
    """The ``Dense`` projection's weight of a ``MultiVectorEncoder`` (``[dim, hidden]``)."""
    from sentence_transformers.base.modules.dense import Dense

    dense = [m for m in model if isinstance(m, Dense)]
    if len(dense) != 1:
        raise InputError(f"expected one Dense projection in the model, found {len(dense)}")
    return dense[0].linear.weight


def export_checkpoint(model, init_dir: str, output: str, *, with_backbone: bool) -> str:
    """Write ``model`` (a ``MultiVectorEncoder`` loaded from ``init_dir``) to ``output`` in the PyLate
    layout: ``init_dir``'s files, the trained projection, and (``with_backbone``) the trained backbone
    weights. Written beside ``output`` and renamed into place (an existing ``output`` is replaced)."""
    from safetensors.torch import save_file

    output = os.path.abspath(output)
    tmp = f"{output}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(init_dir, tmp)
    w = projection_weight(model).detach().float().cpu().contiguous()
    save_file({"linear.weight": w}, os.path.join(tmp, "1_Dense", "model.safetensors"))
    if with_backbone:
        backbone = model[0].model
        for name in ("model.safetensors", "pytorch_model.bin"):
            p = os.path.join(tmp, name)
            if os.path.exists(p):
                os.unlink(p)
        backbone.save_pretrained(tmp)
    old = f"{output}.old-{os.getpid()}"
    if os.path.exists(output):
        os.replace(output, old)
    os.replace(tmp, output)
    shutil.rmtree(old, ignore_errors=True)
    return output


# ------------------------------------------------------------------------------------------- training
def _dataset(examples: Sequence[tuple[str, str, Sequence[str]]]):
    from datasets import Dataset

    if not examples:
        raise InputError("no training examples")
    n = len(examples[0][2])
    cols: dict[str, list[str]] = {"query": [], "positive": []}
    cols.update({f"negative_{i + 1}": [] for i in range(n)})
    for i, ex in enumerate(examples):
        if len(ex) != 3:
            raise InputError(f"training example {i}: expected (query, positive, negatives), got {len(ex)} items")
        q, p, negs = ex
        if not isinstance(q, str) or not isinstance(p, str) or any(not isinstance(x, str) for x in negs):
            raise InputError(f"training example {i}: the query, positive and negatives must be strings")
        if len(negs) != n:
            raise InputError(f"training example {i} has {len(negs)} negatives, the first has {n}: every "
                             "example needs the same number")
        cols["query"].append(q)
        cols["positive"].append(p)
        for j, x in enumerate(negs):
            cols[f"negative_{j + 1}"].append(x)
    return Dataset.from_dict(cols)


def _check_output(cfg: MaxSimTrainConfig) -> bool:
    """True when ``cfg.output`` holds a run of the same settings (resume), False when it is new or
    empty; InputError when it holds something else or a run with other settings."""
    out = cfg.output
    if not os.path.exists(out):
        return False
    if not os.path.isdir(out):
        raise InputError(f"{out} is a file, not a training directory")
    state = os.path.join(out, _STATE)
    if not os.path.isfile(state):
        if os.listdir(out):
            raise InputError(f"{out} holds something else (no {_STATE}); nothing is written there")
        return False
    with open(state, encoding="utf-8") as f:
        try:
            saved = json.load(f).get("config", {})
        except (json.JSONDecodeError, AttributeError):
            raise InputError(f"{state} is not a MaxSim training state file") from None
    mine = cfg.to_dict()
    differ = sorted(k for k in mine if k not in _RESUMABLE and saved.get(k) != mine[k])
    if differ:
        raise InputError(f"{out} holds a run with other settings ({', '.join(differ)}); "
                         "resume it with the same settings or choose another output")
    return True


def build_trainer(cfg: MaxSimTrainConfig, model, data, *, progress: bool = False):
    """The ``MultiVectorEncoderTrainer`` of a run: ``model`` (a ``MultiVectorEncoder``), ``data`` (a
    ``datasets.Dataset`` with columns query, positive, negative_1, ...), the loss, the marker prompts
    per column, checkpoints in ``OUTPUT/trainer``."""
    from sentence_transformers.multi_vector_encoder import (MultiVectorEncoderTrainer,
                                                            MultiVectorEncoderTrainingArguments)
    import torch
    import transformers
    from sentence_transformers.multi_vector_encoder.losses import MultiVectorMultipleNegativesRankingLoss

    loss = MultiVectorMultipleNegativesRankingLoss(model, scale=cfg.scale)
    doc_cols = [c for c in data.column_names if c != "query"]
    # transformers 5 takes the warm-up ratio as a float warmup_steps (warmup_ratio is deprecated there)
    warmup = ({"warmup_steps": float(cfg.warmup_ratio)} if int(transformers.__version__.split(".")[0]) >= 5
              else {"warmup_ratio": cfg.warmup_ratio})
    optimizer = None
    if cfg.train_backbone:    # two learning rates: the projection's and the backbone's
        backbone = list(model[0].parameters())
        ids = {id(p) for p in backbone}
        head = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        optimizer = torch.optim.AdamW([{"params": head, "lr": cfg.learning_rate},
                                       {"params": backbone, "lr": cfg.backbone_learning_rate}], weight_decay=0.0)
    args = MultiVectorEncoderTrainingArguments(
        output_dir=os.path.join(cfg.output, "trainer"), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, seed=cfg.seed, **warmup,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2, logging_steps=cfg.logging_steps,
        report_to=[], disable_tqdm=not progress,
        use_cpu=cfg.device == "cpu", prompts={"query": QUERY_MARKER, **{c: DOC_MARKER for c in doc_cols}},
        batch_sampler="no_duplicates")
    return MultiVectorEncoderTrainer(model=model, args=args, train_dataset=data, loss=loss,
                                     optimizers=(optimizer, None))


def train_maxsim(config: MaxSimTrainConfig, examples: Sequence[tuple[str, str, Sequence[str]]], *,
                 log: Callable[[str], None] | None = None, progress: bool = False) -> dict:
    """Train (module docstring) on ``examples``: ``(query, positive, [negatives])`` triples, every one
    with the same number of hard negatives. Continues from the last trainer checkpoint in
    ``OUTPUT/trainer`` when the output holds a run of the same settings. Returns a summary (also in
    ``OUTPUT/train-maxsim.json``): steps, training seconds, the loss history, the checkpoint path."""
    from transformers.trainer_utils import get_last_checkpoint

    say = log or (lambda m: None)
    cfg = config
    resuming = _check_output(cfg)
    data = _dataset(examples)
    os.makedirs(cfg.output, exist_ok=True)
    init_dir = os.path.join(cfg.output, "init")
    if not os.path.isfile(os.path.join(init_dir, "modules.json")):
        shutil.rmtree(init_dir, ignore_errors=True)
        init_checkpoint(cfg.backbone, init_dir, dim=cfg.dim, seed=cfg.seed, query_length=cfg.query_length,
                        doc_length=cfg.doc_length)
    _write_json(os.path.join(cfg.output, _STATE), {"config": cfg.to_dict(), "finished": False})
    model = load_encoder(init_dir, cfg.device)
    if not cfg.train_backbone:
        for p in model[0].parameters():
            p.requires_grad_(False)
    trainer = build_trainer(cfg, model, data, progress=progress)
    doc_cols = [c for c in data.column_names if c != "query"]
    args = trainer.args
    last = get_last_checkpoint(args.output_dir) if resuming and os.path.isdir(args.output_dir) else None
    say(f"training on {len(data)} examples ({len(doc_cols) - 1} hard negatives each), "
        f"{'projection and backbone' if cfg.train_backbone else 'projection only'}"
        + (f"; resuming from {last}" if last else ""))
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - t0
    final = export_checkpoint(model, init_dir, os.path.join(cfg.output, "model"), with_backbone=cfg.train_backbone)
    history = [h for h in trainer.state.log_history if "loss" in h]
    summary = {"config": cfg.to_dict(), "finished": True, "examples": len(data),
               "steps": int(trainer.state.global_step), "train_seconds": round(seconds, 1),
               "resumed_from": last, "train_loss": float(result.training_loss),
               "loss_history": [{"step": h["step"], "loss": h["loss"]} for h in history],
               "model": final, "init": init_dir}
    _write_json(os.path.join(cfg.output, _STATE), summary)
    say(f"trained {summary['steps']} steps in {seconds:.0f} s -> {final}")
    return summary


__all__ = ["DOC_MARKER", "QUERY_MARKER", "MaxSimTrainConfig", "build_trainer", "export_checkpoint", "init_checkpoint",
           "load_encoder", "projection_weight", "train_maxsim"]
