"""``lsr train``: training lsr's encoders on sentence-transformers' ``SparseEncoderTrainer``.

:func:`train` runs one :class:`~lsr.train.config.TrainConfig` into an output directory:

1. the output directory is checked: a new or empty directory is used; one holding an earlier
   run of lsr (``lsr-train.json``) is continued with ``resume`` (the same settings only) or
   replaced with ``overwrite``; anything else is refused, nothing is overwritten;
2. the training groups are read (:mod:`lsr.train.data`), hard negatives mined with an lsr
   index when ``negatives_from`` is set (:mod:`lsr.train.mine`), teacher scores read from a
   file or computed once by a reranker; the groups used are written to ``groups.jsonl``;
3. the model is built (:func:`build_model`): SPLADE from an MLM checkpoint (``Transformer`` for fill-mask
   + ``SpladePooling``) or a ``SparseEncoder`` checkpoint, with an inference-free query side
   (``Router`` + ``SparseStaticEmbedding``) on request; uniCOIL and DeepImpact as a backbone
   plus lsr's head modules, SparTerm as a fill-mask ``Transformer`` + lsr's ``SparTermPooling``
   (:mod:`lsr.encoders.st_modules`);
4. the loss is ST's ``SpladeLoss`` around the ranking loss (``SparseMultipleNegativesRankingLoss``,
   ``SparseMarginMSELoss`` or ``SparseDistillKLDivLoss``) with FLOPS or L1 regularisers whose
   weights rise as λ·min(1, t/T)² (:func:`lsr.train.losses.flops_weight`);
5. ``SparseEncoderTrainer`` trains (checkpoints under ``checkpoints/``, resumable); every
   ``logging_steps`` the loss terms and the mean active terms per query and per document go to
   ``metrics.jsonl`` and stderr; the evaluation of :mod:`lsr.train.evaluate` runs before the
   first step, every ``eval.every`` steps and after the last, into ``metrics.jsonl`` too;
6. the trained model is saved aside and renamed to ``model/``: a sentence-transformers
   directory that ``lsr encode --encoder OUTPUT/model`` and ``lsr index --encoder OUTPUT/model``
   load as it is, and ``SparseEncoder("OUTPUT/model")`` too (uniCOIL and DeepImpact models use
   lsr's modules, which sentence-transformers imports with ``trust_remote_code=True``:
   :func:`lsr.encoders.st_modules.load_impact_encoder`); ``metrics.png`` draws ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from lsr.errors import InputError

from .config import TrainConfig

MARKER = "lsr-train.json"
FORMAT = "lsr-train"
VERSION = 1
MODEL_DIR = "model"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
PLOT = "metrics.png"
GROUPS = "groups.jsonl"
MAXSIM_DIR = "maxsim"
MADE_HERE = {MARKER, MODEL_DIR, CHECKPOINTS, METRICS, PLOT, GROUPS, MAXSIM_DIR}


@dataclass
class TrainResult:
    """What :func:`train` did: where the model is (and the trained ``SparseEncoder`` itself), how long
    it took, the evaluations."""

    output: str
    model_dir: str
    steps: int
    seconds: float
    evaluations: list[dict] = field(default_factory=list)
    model: Any = None


# --------------------------------------------------------------------------- output directory
def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


def _resumable(cfg: TrainConfig) -> dict:
    """The settings a resumed run must share with the run it continues (evaluation may change)."""
    d = cfg.to_dict()
    d.pop("eval", None)
    d["optim"].pop("logging_steps", None)
    return d


def prepare_output(output: str, cfg: TrainConfig, *, resume: bool, overwrite: bool) -> None:
    """Check and claim the output directory (module docstring, step 1)."""
    if resume and overwrite:
        raise InputError("give --resume or --overwrite, not both")
    if os.path.lexists(output) and not os.path.isdir(output):
        raise InputError(f"{output} exists and is not a directory; nothing was overwritten")
    marker = os.path.join(output, MARKER)
    if os.path.isdir(output) and os.listdir(output):
        if not os.path.isfile(marker):
            raise InputError(f"{output} holds something other than an lsr training run; "
                             "choose another output directory (nothing was overwritten)")
        try:
            with open(marker, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError) as e:
            raise InputError(f"{marker} cannot be read ({e}); nothing was overwritten") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise InputError(f"{marker} is not an lsr training marker; nothing was overwritten")
        if info.get("version") != VERSION:
            raise InputError(f"{output}: training run format version {info.get('version')!r} is not "
                             f"supported (this lsr reads {VERSION})")
        if resume:
            old = info.get("config") or {}
            old = {k: v for k, v in old.items() if k != "eval"}
            if isinstance(old.get("optim"), dict):
                old["optim"] = {k: v for k, v in old["optim"].items() if k != "logging_steps"}
            diff = _config_diff(old, _resumable(cfg))
            if diff:
                raise InputError(f"{output} was trained with other settings (recipe {info.get('recipe')!r}; "
                                 f"differs in {', '.join(diff[:6])}); resume it with the same settings "
                                 "or choose another output directory")
            if last_checkpoint(output) is None:
                raise InputError(f"{output} has no checkpoint to resume from (set optim.save_steps to "
                                 "save checkpoints during training)")
            return
        if not overwrite:
            raise InputError(f"{output} holds an lsr training run; --resume to continue it or --overwrite "
                             "to replace it")
        # lsr's own names, and what an interrupted write of one leaves (model.partial-PID, x.tmp-PID)
        foreign = sorted(n for n in os.listdir(output)
                         if n not in MADE_HERE and not any(n.startswith(m + ".") for m in MADE_HERE))
        if foreign:
            raise InputError(f"{output} also holds {', '.join(foreign[:3])}, which lsr did not make; "
                             "nothing was overwritten")
        for name in os.listdir(output):
            p = os.path.join(output, name)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
    elif resume:
        raise InputError(f"{output} holds no training run to resume")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise InputError(f"parent directory {parent} does not exist")
    os.makedirs(output, exist_ok=True)
    _write_json_atomic(marker, {"format": FORMAT, "version": VERSION, "recipe": cfg.name,
                                "config": cfg.to_dict()})


def _write_json_atomic(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def last_checkpoint(output: str) -> str | None:
    """The newest complete trainer checkpoint of a run (``checkpoints/checkpoint-N``, or
    ``maxsim/trainer/checkpoint-N`` for the MaxSim projection); None if there is none."""
    best = None
    for d in (os.path.join(output, CHECKPOINTS), os.path.join(output, MAXSIM_DIR, "trainer")):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if name.startswith("checkpoint-") and name[len("checkpoint-"):].isdigit():
                p = os.path.join(d, name)
                if os.path.isfile(os.path.join(p, "trainer_state.json")):
                    n = int(name[len("checkpoint-"):])
                    if best is None or n > best[0]:
                        best = (n, p)
    return best[1] if best else None


# --------------------------------------------------------------------------- model
def _st_module_types(spec: str) -> list[str]:
    """The module types a local sentence-transformers directory lists ([] for anything else)."""
    path = os.path.join(spec, "modules.json")
    if not os.path.isfile(path):
        return []
    from lsr.io import read_json

    mods = read_json(path, InputError, f"modules.json of {spec}")
    return [str(m.get("type", "")) for m in mods if isinstance(m, dict)] if isinstance(mods, list) else []


def _is_sparse_st_dir(spec: str) -> bool:
    return any(t.rsplit(".", 1)[-1] in ("SpladePooling", "Router", "SparseStaticEmbedding")
               for t in _st_module_types(spec))


def _has_impact_head(spec: str) -> bool:
    return any(t.startswith("lsr.encoders.st_modules.") for t in _st_module_types(spec))


def _route_tokenizers(model) -> list:
    from sentence_transformers.sparse_encoder.modules import Router

    toks = []
    for module in model:
        if isinstance(module, Router):
            for route, sub in module.sub_modules.items():
                first = sub[0] if len(sub) else None
                tok = getattr(first, "tokenizer", None)
                if tok is not None:
                    toks.append((route, tok))
    return toks


def check_tokenizers(model) -> None:
    """A model whose query and document routes tokenise differently is refused (their terms
    would not meet in one index)."""
    toks = _route_tokenizers(model)
    if len(toks) < 2:
        return
    (r0, t0), rest = toks[0], toks[1:]
    v0 = t0.get_vocab()
    for r, t in rest:
        if t.get_vocab() != v0:
            raise InputError(f"the {r0!r} and {r!r} sides of the model use different tokenizers "
                             f"({len(v0)} and {len(t.get_vocab())} tokens); a query term and a document "
                             "term must be the same token")


def build_model(cfg: TrainConfig):
    """The ``SparseEncoder`` to train (module docstring, step 3)."""
    from sentence_transformers.sparse_encoder import SparseEncoder

    if cfg.encoder == "splade":
        if _is_sparse_st_dir(cfg.model):
            model = SparseEncoder(cfg.model)
            check_tokenizers(model)
            return model
        from sentence_transformers.sparse_encoder.modules import (
            Router,
            SparseStaticEmbedding,
            SpladePooling,
            Transformer,
        )

        try:
            mlm = Transformer(cfg.model, transformer_task="fill-mask", max_seq_length=cfg.max_length)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot load {cfg.model} as a masked-language model for SPLADE: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
        pool = SpladePooling(pooling_strategy=cfg.pooling)
        if cfg.query_encoder == "static":
            router = Router.for_query_document(
                query_modules=[SparseStaticEmbedding(tokenizer=mlm.tokenizer, frozen=False)],
                document_modules=[mlm, pool])
            return SparseEncoder(modules=[router], similarity_fn_name="dot")
        return SparseEncoder(modules=[mlm, pool], similarity_fn_name="dot")
    from lsr.encoders import st_modules

    if cfg.encoder == "sparterm":
        if _has_impact_head(cfg.model):
            model = st_modules.load_impact_encoder(cfg.model)
            check_tokenizers(model)
            return model
        try:
            return st_modules.build_sparterm_encoder(cfg.model, max_length=cfg.max_length, pooling=cfg.pooling)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot build SparTerm on {cfg.model}: {str(e).strip().splitlines()[0]}") from None
    if _has_impact_head(cfg.model):
        if cfg.init_head is not None:
            raise InputError(f"{cfg.model} is a trained sentence-transformers model; --init-head random "
                             "would replace its head (start from its backbone instead)")
        model = st_modules.load_impact_encoder(cfg.model)
        check_tokenizers(model)
        return model
    if cfg.init_head is None:
        raise InputError(f"{cfg.model} has no trained {cfg.encoder} head; create a new, untrained one on "
                         "purpose with --init-head random (or init_head: random in the recipe)")
    return st_modules.build_impact_encoder(cfg.model, cfg.encoder, max_length=cfg.max_length,
                                           init_head=cfg.init_head, seed=cfg.seed)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _has_router(model) -> bool:
    from sentence_transformers.sparse_encoder.modules import Router

    return any(isinstance(m, Router) for m in model)


# --------------------------------------------------------------------------- loss
class ActiveTerms:
    """A regulariser wrapper that also counts the active terms of the rows it regularises."""

    def __init__(self) -> None:
        self.sums = {"query": 0.0, "document": 0.0}
        self.rows = {"query": 0, "document": 0}

    def wrap(self, regularizer, side: str):
        import torch

        counter = self

        class Counted(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = regularizer

            def compute_loss_from_embeddings(self, embeddings):
                with torch.no_grad():
                    counter.sums[side] += float((embeddings != 0).sum())
                    counter.rows[side] += int(embeddings.shape[0])
                return self.inner.compute_loss_from_embeddings(embeddings)

            def forward(self, *a, **k):   # SpladeLoss calls compute_loss_from_embeddings; keep the inner's forward
                return self.inner(*a, **k)

        return Counted()

    def take(self) -> dict[str, float]:
        """Mean active terms per query and per document since the last call."""
        out = {f"{s}_active_terms": round(self.sums[s] / self.rows[s], 2) for s in self.sums if self.rows[s]}
        self.sums = {"query": 0.0, "document": 0.0}
        self.rows = {"query": 0, "document": 0}
        return out


def build_loss(cfg: TrainConfig, model):
    """``(SpladeLoss, ActiveTerms)`` of the configuration (module docstring, step 4)."""
    from sentence_transformers.sparse_encoder import losses as L

    from . import losses as lsr_losses

    base = {"mnrl": L.SparseMultipleNegativesRankingLoss, "margin_mse": L.SparseMarginMSELoss,
            "kl_div": L.SparseDistillKLDivLoss}[cfg.loss](model)

    def reg():
        if cfg.regularizer == "l1":
            return lsr_losses.L1Regularizer()
        return L.FlopsLoss(model)

    counter = ActiveTerms()
    lam_q = cfg.query_regularizer_weight if cfg.regularizer != "none" else 0.0
    if cfg.query_encoder == "words":
        lam_q = None    # the query side has no parameters
    lam_d = cfg.document_regularizer_weight if cfg.regularizer != "none" else 0.0
    loss = L.SpladeLoss(model, base, document_regularizer_weight=lam_d, query_regularizer_weight=lam_q,
                        document_regularizer=counter.wrap(reg(), "document"),
                        query_regularizer=counter.wrap(reg(), "query"))
    return loss, counter


# --------------------------------------------------------------------------- callbacks
def _callbacks(cfg: TrainConfig, loss, counter: ActiveTerms, output: str, evaluator, progress: bool):
    from transformers import TrainerCallback

    from .losses import RegularizerWarmupCallback

    metrics_path = os.path.join(output, METRICS)

    def record(row: dict) -> None:
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    class Log(TrainerCallback):
        def __init__(self) -> None:
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            from lsr.progress import Progress

            self.bar = Progress("lsr train", total=state.max_steps, unit="steps", enabled=progress,
                                initial=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            if "loss" not in logs and "train_loss" not in logs:
                return
            row = {"type": "train", "step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
            row.update({k: (round(v, 6) if isinstance(v, float) else v) for k, v in logs.items()})
            row.update(counter.take())
            record(row)
            if progress and "loss" in logs:
                terms = " ".join(f"{k.replace('_regularizer_loss', '_reg').replace('_loss', '')} {v:.4g}"
                                 for k, v in logs.items() if k.endswith("_loss") and isinstance(v, float))
                act = " ".join(f"{k.split('_')[0]} {v:g}" for k, v in row.items() if k.endswith("_active_terms"))
                _say(f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4g} ({terms}); "
                     f"active terms {act}")

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    class Evaluate(TrainerCallback):
        def __init__(self) -> None:
            self.done: set[int] = set()
            self.rows: list[dict] = []

        def run(self, model, step: int) -> None:
            if evaluator is None or step in self.done:
                return
            self.done.add(step)
            m = evaluator(model)
            row = {"type": "eval", "step": step, "dataset": evaluator.name, **m}
            self.rows.append(row)
            record(row)
            if progress:
                shown = ", ".join(f"{k} {m[k]:.4f}" for k in cfg.eval.metrics if k in m)
                _say(f"eval at step {step} on {evaluator.name}: {shown}; active terms q "
                     f"{m['query_active_terms']:.1f} d {m['document_active_terms']:.1f}; "
                     f"FLOPS {m['flops']:.3g} ({m['eval_seconds']:.0f} s)")

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step == 0:
                self.run(model, 0)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if cfg.eval.every and state.global_step % cfg.eval.every == 0:
                self.run(model, state.global_step)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            self.run(model, state.global_step)

    ev = Evaluate()
    return [RegularizerWarmupCallback(loss, cfg.regularizer_warmup_steps), Log(), ev], ev


def _say(line: str) -> None:
    print(f"lsr train: {line}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data
def training_dataset(cfg: TrainConfig, output: str, *, progress: bool = True):
    """The ``datasets.Dataset`` of training groups (module docstring, step 2)."""
    from . import data as D

    td = training_groups(cfg, output, progress=progress)
    return D.to_hf_dataset(td, negatives=cfg.negatives, with_scores=cfg.distills,
                           label="margins" if cfg.loss == "margin_mse" else "scores", seed=cfg.seed)


def training_groups(cfg: TrainConfig, output: str, *, progress: bool = True):
    """The :class:`~lsr.train.data.TrainingData` of a run: read, negatives mined, teacher scores added;
    the groups are written to ``OUTPUT/groups.jsonl``."""
    from . import data as D

    if cfg.data is None:
        raise InputError("no training data: give --data (an ir_datasets id or a TSV/JSONL file)")
    td = D.load_training_data(cfg.data, negatives_per_query=cfg.negatives)
    if cfg.negatives_from is not None:
        from .mine import mine_negatives

        if td.ids_from_text:
            raise InputError(f"{cfg.data} gives texts, not document ids, so negatives cannot be mined from "
                             f"{cfg.negatives_from}; train on an ir_datasets id or JSONL groups with ids")
        if progress:
            _say(f"mining {cfg.negatives} negatives per query from ranks {cfg.mine_window[0]}.."
                 f"{cfg.mine_window[1] - 1} of {cfg.negatives_from}")
        mined = mine_negatives(cfg.negatives_from, td.queries, td.qrels, window=cfg.mine_window,
                               per_query=cfg.negatives, seed=cfg.seed, progress=progress)
        td = td.with_negatives(mined)
    if cfg.teacher_scores is not None:
        td = td.with_scores(D.load_teacher_scores(cfg.teacher_scores))
    elif cfg.teacher is not None:
        td = td.with_scores(teacher_scores(cfg, td, progress=progress))
    elif cfg.distills:
        raise InputError(f"loss {cfg.loss} distils teacher scores: give teacher_scores (a file) or teacher "
                         "(a reranker preset)")
    write_groups(td, os.path.join(output, GROUPS))
    return td


def write_groups(td, path: str) -> None:
    """The groups trained on, one JSON line each (``qid``, ``positive_id``, ``negative_ids``), written
    aside and renamed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for g in td.groups:
            f.write(json.dumps({"qid": g.qid, "positive_id": g.positive, "negative_ids": list(g.negatives)}) + "\n")
    os.replace(tmp, path)


def teacher_scores(cfg: TrainConfig, td, *, progress: bool = True) -> dict[tuple[str, str], float]:
    """Scores of every (query, document) pair of the groups by the reranker ``cfg.teacher``, one
    ``score`` call per query."""
    from lsr.progress import Progress
    from lsr.rerank import load_reranker

    reranker = load_reranker(cfg.teacher)
    by_query: dict[str, list[str]] = {}
    for g in td.groups:
        ids = by_query.setdefault(g.qid, [])
        ids.extend(d for d in (g.positive, *g.negatives) if d not in ids)
    out: dict[tuple[str, str], float] = {}
    with Progress("lsr train: teacher", total=len(by_query), unit="queries", enabled=progress) as bar:
        for qid, ids in by_query.items():
            texts = td.docs.texts(ids)
            scores = reranker.score(td.queries[qid], [texts[d] for d in ids])
            out.update({(qid, d): float(s) for d, s in zip(ids, scores)})
            bar.update(1)
    return out


# --------------------------------------------------------------------------- train
def train(config: TrainConfig, output: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, device: str | None = None) -> TrainResult:
    """Train ``config`` into ``output`` (module docstring). Returns a :class:`TrainResult`."""
    output = os.path.abspath(os.fspath(output))
    if not isinstance(config, TrainConfig):
        raise InputError("train() takes a TrainConfig (see lsr.train.train_config)")
    created = not os.path.lexists(output)
    prepare_output(output, config, resume=resume, overwrite=overwrite)
    try:
        return _train(config, output, resume, progress, device)
    except BaseException:
        # a run that fails or is interrupted before its first checkpoint leaves no directory behind
        if created and last_checkpoint(output) is None and not os.path.isdir(os.path.join(output, MODEL_DIR)):
            shutil.rmtree(output, ignore_errors=True)
        raise


def _train_maxsim(config: TrainConfig, output: str, progress: bool, device: str | None) -> TrainResult:
    """The MaxSim projection (:mod:`lsr.train.maxsim`) on the same training groups; its run directory is
    ``OUTPUT/maxsim`` and the trained checkpoint (PyLate layout) is moved to ``OUTPUT/model``."""
    from . import data as D
    from .maxsim import MaxSimTrainConfig, train_maxsim

    t0 = time.perf_counter()
    td = training_groups(config, output, progress=progress)
    ds = D.to_hf_dataset(td, negatives=config.negatives, seed=config.seed)
    negs = [c for c in ds.column_names if c.startswith("negative_")]
    examples = [(r["query"], r["positive"], [r[c] for c in negs]) for r in ds]
    o = config.optim
    mcfg = MaxSimTrainConfig(backbone=config.model, output=os.path.join(output, MAXSIM_DIR),
                             doc_length=config.max_length, epochs=o.epochs,
                             max_steps=o.max_steps if o.max_steps > 0 else -1, batch_size=o.batch_size,
                             learning_rate=o.learning_rate, seed=config.seed, save_steps=o.save_steps or 10**9,
                             logging_steps=o.logging_steps, device=device or ("cuda" if _cuda() else "cpu"))
    summary = train_maxsim(mcfg, examples, log=_say if progress else None, progress=progress)
    with open(os.path.join(output, METRICS), "a", encoding="utf-8") as f:
        for row in summary.get("loss_history", []):
            f.write(json.dumps({"type": "train", **row}) + "\n")
    final = os.path.join(output, MODEL_DIR)
    if os.path.isdir(final):
        shutil.rmtree(final)
    os.rename(os.path.join(output, MAXSIM_DIR, MODEL_DIR), final)
    seconds = time.perf_counter() - t0
    return TrainResult(output, final, int(summary.get("steps", 0)), seconds, [], None)


def _train(config: TrainConfig, output: str, resume: bool, progress: bool, device: str | None) -> TrainResult:
    from lsr.progress import quiet_libraries

    if config.encoder == "maxsim":
        with quiet_libraries(irds=True):
            return _train_maxsim(config, output, progress, device)
    t0 = time.perf_counter()
    with quiet_libraries(irds=True):
        import transformers
        from sentence_transformers.sparse_encoder import (
            SparseEncoderTrainer,
            SparseEncoderTrainingArguments,
        )
        from sentence_transformers.base.training_args import BatchSamplers

        transformers.set_seed(config.seed)
        if progress:
            _say(config.describe())
        evaluator = None
        if config.eval.dataset is not None:
            from .evaluate import IndexEvaluator

            evaluator = IndexEvaluator(config.eval)
        model = build_model(config)
        dataset = training_dataset(config, output, progress=progress)
        if len(dataset) == 0:
            raise InputError(f"{config.data}: no training groups")
        if device is not None:
            model.to(device)
        loss, counter = build_loss(config, model)
        o = config.optim
        extra: dict[str, Any] = {}
        if _has_router(model) or config.encoder != "splade":
            # the columns' task: a Router picks its route by it, and lsr's uniCOIL head its pooling
            extra["router_mapping"] = {c: ("query" if c == "query" else "document")
                                       for c in dataset.column_names if c != "label"}
        if config.query_encoder == "static":
            extra["learning_rate_mapping"] = {r"sub_modules\.query\.0\.weight$": o.learning_rate_static}
        args = SparseEncoderTrainingArguments(
            output_dir=os.path.join(output, CHECKPOINTS),
            per_device_train_batch_size=o.batch_size,
            learning_rate=o.learning_rate,
            num_train_epochs=o.epochs,
            max_steps=o.max_steps if o.max_steps > 0 else -1,
            warmup_steps=o.warmup_steps,
            weight_decay=o.weight_decay,
            gradient_accumulation_steps=o.gradient_accumulation_steps,
            max_grad_norm=o.max_grad_norm,
            bf16=o.precision == "bf16",
            fp16=o.precision == "fp16",
            logging_steps=o.logging_steps,
            save_strategy="steps" if o.save_steps else "no",
            save_steps=o.save_steps or 500,
            save_total_limit=o.save_total_limit,
            seed=config.seed,
            data_seed=config.seed,
            batch_sampler=BatchSamplers.NO_DUPLICATES if config.loss == "mnrl" else BatchSamplers.BATCH_SAMPLER,
            dataloader_num_workers=o.dataloader_workers,
            report_to="none",
            dataloader_pin_memory=device not in (None, "cpu") or _cuda(),
            disable_tqdm=True,
            use_cpu=device == "cpu",
            **extra,
        )
        callbacks, ev = _callbacks(config, loss, counter, output, evaluator, progress)
        trainer = SparseEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                       callbacks=callbacks)
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        for cb in (PrinterCallback, ProgressCallback):   # lsr's Log callback reports instead
            trainer.remove_callback(cb)
        ckpt = last_checkpoint(output) if resume else None
        if resume and progress:
            _say(f"resuming from {ckpt}")
        trainer.train(resume_from_checkpoint=ckpt)
        model_dir = save_model(model, output)
        steps = trainer.state.global_step
    plot_metrics(os.path.join(output, METRICS), os.path.join(output, PLOT),
                 title=f"{os.path.basename(output)} (recipe {config.name})")
    seconds = time.perf_counter() - t0
    if progress:
        _say(f"trained {steps} steps in {seconds:.0f} s; model in {model_dir}")
    return TrainResult(output, model_dir, steps, seconds, ev.rows, model)


def save_model(model, output: str) -> str:
    """Save the model aside and rename it to ``OUTPUT/model`` (replacing an older one)."""
    final = os.path.join(output, MODEL_DIR)
    tmp = os.path.join(output, f"{MODEL_DIR}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save(tmp)
        if os.path.isdir(final):
            old = f"{final}.old-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_metrics(path: str) -> list[dict]:
    """The rows of a ``metrics.jsonl``."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def plot_metrics(path: str, out: str, title: str = "") -> str | None:
    """Draw ``metrics.jsonl``: the loss terms over steps, and each evaluation measure, active terms
    and FLOPS over steps. Written aside and renamed; None when there is nothing to draw."""
    if not os.path.isfile(path):
        return None
    rows = read_metrics(path)
    train_rows = [r for r in rows if r.get("type") == "train" and "loss" in r]
    eval_rows = [r for r in rows if r.get("type") == "eval"]
    if not train_rows and not eval_rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = [k for k in (eval_rows[0] if eval_rows else {})
                if "@" in k and isinstance(eval_rows[0][k], (int, float))]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    if train_rows:
        keys = sorted({k for r in train_rows for k in r if k.endswith("_loss")} | {"loss"})
        for k in keys:
            pts = [(r["step"], r[k]) for r in train_rows if isinstance(r.get(k), (int, float))]
            if pts:
                ax.plot(*zip(*pts), label=k)
        ax.set_yscale("log" if all(r["loss"] > 0 for r in train_rows) else "linear")
        ax.legend(fontsize=8)
    ax.set(title="training loss", xlabel="step")
    ax = axes[1]
    for k in measures:
        ax.plot([r["step"] for r in eval_rows], [r[k] for r in eval_rows], marker="o", label=k)
    if measures:
        ax.legend(fontsize=8)
    ax.set(title=f"evaluation ({eval_rows[0]['dataset']})" if eval_rows else "evaluation", xlabel="step")
    ax = axes[2]
    for k in ("query_active_terms", "document_active_terms"):
        pts = [(r["step"], r[k]) for r in eval_rows if k in r]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=k.replace("_", " "))
    if eval_rows:
        ax.legend(fontsize=8)
    ax.set(title="mean active terms (evaluation)", xlabel="step")
    fig.suptitle(title)
    fig.tight_layout()
    tmp = f"{out}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out)
    return out


__all__ = ["TrainResult", "build_loss", "build_model", "check_tokenizers", "last_checkpoint", "plot_metrics",
           "prepare_output", "read_metrics", "save_model", "train", "training_dataset"]

