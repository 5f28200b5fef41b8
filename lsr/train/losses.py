"""The regularisers and reports lsr adds to sentence-transformers' sparse training.

sentence-transformers (ST) brings the ranking losses (``SparseMultipleNegativesRankingLoss``,
``SparseMarginMSELoss``, ``SparseDistillKLDivLoss``), ``SpladeLoss`` (a ranking loss plus
separately weighted query and document regularisers) and the FLOPS regulariser
(``FlopsLoss``). What it lacks is here, each a small function or module:

* :func:`flops` -- the FLOPS regulariser written out (``sum over the vocabulary of the
  squared mean activation over the batch``); ST's ``FlopsLoss`` computes the same
  (without its threshold), which the tests check.
* :class:`L1Regularizer` -- the mean over the batch of each row's L1 norm, as a module
  with ST's regulariser interface (``compute_loss_from_embeddings``), so it plugs into
  ``SpladeLoss(document_regularizer=..., query_regularizer=...)``.
* :func:`flops_weight` and :class:`RegularizerWarmupCallback` -- SPLADE's quadratic
  warm-up of the regulariser weight, ``lam * min(1, step / T) ** 2`` with the warm-up
  ``T`` given in optimizer steps.
* :func:`nnz_report` -- mean active terms per row and the distance to a target.

Why lsr schedules the weight with its own callback: ST's
``SpladeRegularizerWeightSchedulerCallback`` (quadratic) applies the same formula, at the
same step (``state.global_step`` at the start of each optimizer step), but takes the
warm-up as a *ratio* of the total steps and truncates ``total * ratio`` with ``int()``.
A warm-up stated in steps (SPLADE++: 6,000 of 150,000) therefore goes through a float
product that can land one step short (29/100 of 100 steps is 28.999..., so 28 warm-up
steps); a ratio must lie in (0, 1], so a warm-up longer than the run, or none at all
(``T = 0``), cannot be given. Where ``int(total * T / total) == T`` the two give the same
weights step by step (tested). lsr's callback subclasses ST's, so ``SparseEncoderTrainer``
does not add its default scheduler beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from sentence_transformers.sparse_encoder.callbacks.splade_callbacks import \
    SpladeRegularizerWeightSchedulerCallback
from torch import Tensor, nn


def _matrix(emb: Tensor, what: str) -> Tensor:
    if not isinstance(emb, Tensor):
        raise TypeError(f"{what}: embeddings must be a torch.Tensor, not {type(emb).__name__}")
    if emb.is_sparse:
        emb = emb.to_dense()
    if emb.ndim != 2:
        raise ValueError(f"{what}: embeddings must be a [batch, vocabulary] matrix, got shape {tuple(emb.shape)}")
    return emb


def flops(emb: Tensor) -> Tensor:
    """FLOPS regulariser of a batch ``[batch, vocabulary]``: ``sum_j (mean_i emb[i, j]) ** 2``.

    For non-negative weights (SPLADE's) ``mean_i emb[i, j]`` estimates how often term ``j`` is
    active times its weight, so the sum tracks the expected cost of scoring a query against a
    document (Paria et al., 2020). A scalar tensor that carries gradients.
    """
    emb = _matrix(emb, "flops")
    return (emb.mean(dim=0) ** 2).sum()


def l1(emb: Tensor) -> Tensor:
    """Mean over the batch of each row's L1 norm: ``mean_i sum_j |emb[i, j]|``."""
    emb = _matrix(emb, "l1")
    return emb.abs().sum(dim=1).mean()


class L1Regularizer(nn.Module):
    """The L1 regulariser as a ``SpladeLoss`` regulariser (ST's ``FlopsLoss`` interface).

    ``SpladeLoss(model, loss, document_regularizer=L1Regularizer(), query_regularizer=L1Regularizer(),
    document_regularizer_weight=..., query_regularizer_weight=...)`` adds ``weight * l1(emb)`` for the
    documents (all document columns of the batch together) and the queries. It is not a loss of
    its own: ``forward`` refuses, as ``FlopsLoss.forward`` does.
    """

    def __init__(self, model: Any = None) -> None:
        super().__init__()
        # ST passes regularisers no model; the argument only mirrors FlopsLoss(model, ...) for callers.
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        raise NotImplementedError("L1Regularizer is a regulariser for SpladeLoss "
                                  "(document_regularizer= / query_regularizer=), not a loss of its own")

    def compute_loss_from_embeddings(self, embeddings: Tensor) -> Tensor:
        """:func:`l1` of the batch."""
        return l1(embeddings)

    def get_config_dict(self) -> dict:
        return {}


def flops_weight(step: int, lam: float, warmup_steps: int) -> float:
    """SPLADE's quadratic warm-up of a regulariser weight: ``lam * min(1, step / T) ** 2``.

    ``step`` is the number of optimizer steps already taken (0 for the first), ``T`` =
    ``warmup_steps``; ``T = 0`` means no warm-up (``lam`` from the first step).
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"flops_weight: step must be an integer >= 0, got {step!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"flops_weight: warmup_steps must be an integer >= 0, got {warmup_steps!r}")
    if warmup_steps == 0:
        return float(lam)
    return float(lam) * min(1.0, step / warmup_steps) ** 2


class RegularizerWarmupCallback(SpladeRegularizerWeightSchedulerCallback):
    """Sets a ``SpladeLoss``'s query and document regulariser weights to :func:`flops_weight` of the
    step at the start of every optimizer step (``state.global_step``, the steps already taken).

    The targets ``lam`` are the loss's weights when the callback is made (``None`` for a query
    side without a regulariser stays ``None``). The weights in force are added to the trainer's
    logs (``document_regularizer_weight`` / ``query_regularizer_weight``). On resume the trainer
    restores ``global_step`` before the first step, so the schedule continues where it was.

    It subclasses ST's scheduler callback only so that ``SparseEncoderTrainer`` takes it as the
    loss's scheduler: the trainer adds its own default scheduler (warm-up over a third of the run)
    to a ``SpladeLoss`` that has none, and both would then set the weights.
    """

    def __init__(self, loss: Any, warmup_steps: int) -> None:
        from sentence_transformers.sparse_encoder.losses import SpladeLoss

        if not isinstance(loss, SpladeLoss):
            raise ValueError(f"RegularizerWarmupCallback schedules a SpladeLoss, not a {type(loss).__name__}")
        flops_weight(0, 0.0, warmup_steps)      # validates warmup_steps
        super().__init__(loss, "quadratic", warmup_ratio=1.0)
        self.warmup_steps = warmup_steps
        self.lam_doc = loss.document_regularizer_weight
        self.lam_query = loss.query_regularizer_weight
        self.set_step(0)

    def weights(self, step: int) -> tuple[float | None, float | None]:
        """(document weight, query weight) at ``step``."""
        doc = None if self.lam_doc is None else flops_weight(step, self.lam_doc, self.warmup_steps)
        query = None if self.lam_query is None else flops_weight(step, self.lam_query, self.warmup_steps)
        return doc, query

    def set_step(self, step: int) -> None:
        doc, query = self.weights(step)
        self.loss.document_regularizer_weight, self.loss.query_regularizer_weight = doc, query
        self._current_document_regularizer_weight, self._current_query_regularizer_weight = doc, query

    def on_train_begin(self, args, state, control, **kwargs):
        self.set_step(int(state.global_step))

    def on_step_begin(self, args, state, control, **kwargs):
        self.set_step(int(state.global_step))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None:
            logs["document_regularizer_weight"] = self.loss.document_regularizer_weight
            if self.loss.query_regularizer_weight is not None:
                logs["query_regularizer_weight"] = self.loss.query_regularizer_weight


@dataclass(frozen=True)
class NnzReport:
    """Active terms per row of a batch: ``mean`` (and ``min`` / ``max``) over rows of the count of
    non-zero weights; with a target, ``target``, ``gap = mean - target`` and ``ratio = mean / target``."""

    rows: int
    mean: float
    min: int
    max: int
    target: float | None = None
    gap: float | None = None
    ratio: float | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def nnz_report(emb: Tensor, target: float | None = None, threshold: float = 0.0) -> NnzReport:
    """Mean active terms per row of ``emb`` (``[batch, vocabulary]``, dense or sparse), and, with
    ``target``, the distance to it. A term is active when ``|weight| > threshold`` (default: non-zero)."""
    emb = _matrix(emb, "nnz_report")
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))
                               or not target > 0):
        raise ValueError(f"nnz_report: target must be a positive number, got {target!r}")
    if emb.shape[0] == 0:
        raise ValueError("nnz_report: the batch has no rows")
    counts = (emb.detach().abs() > threshold).sum(dim=1)
    mean = float(counts.double().mean())
    rep = NnzReport(rows=int(emb.shape[0]), mean=mean, min=int(counts.min()), max=int(counts.max()))
    if target is None:
        return rep
    return NnzReport(rows=rep.rows, mean=mean, min=rep.min, max=rep.max, target=float(target),
                     gap=mean - float(target), ratio=mean / float(target))


__all__ = ["L1Regularizer", "NnzReport", "RegularizerWarmupCallback", "flops", "flops_weight", "l1",
           "nnz_report"]
