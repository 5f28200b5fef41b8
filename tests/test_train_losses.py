"""The regularisers, the warm-up schedule and the nnz report lsr adds to sentence-transformers' sparse training.

Each is checked against a hand computation on small tensors written out in this file; the
regularisers also inside a real ``SpladeLoss`` on a SparseEncoder built from the real
splade-tiny checkpoint (../shared), whose SPLADE vectors are recomputed here from
transformers' ``AutoModelForMaskedLM`` (max over tokens of ``log(1 + relu(logits))``).
"""

from __future__ import annotations

import math

import pytest
import torch
from sentence_transformers.sparse_encoder import SparseEncoder, SparseEncoderTrainer, \
    SparseEncoderTrainingArguments
from sentence_transformers.sparse_encoder.callbacks.splade_callbacks import \
    SpladeRegularizerWeightSchedulerCallback
from sentence_transformers.sparse_encoder.losses import FlopsLoss, SparseMultipleNegativesRankingLoss, SpladeLoss
from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling
from transformers import AutoModelForMaskedLM, AutoTokenizer, TrainerControl, TrainerState

from encoders_helpers import SPLADE_TINY, scifact_docs, scifact_queries
from lsr.train.losses import (L1Regularizer, RegularizerWarmupCallback, flops, flops_weight, l1,
                              nnz_report)

EMB = torch.tensor([[0.0, 1.0, 2.0, 0.0],
                    [3.0, 0.0, 1.0, 0.0],
                    [0.0, 0.5, 0.0, 0.0]])


# ------------------------------------------------------------------------------------------- FLOPS
def test_flops_by_hand():
    # column means: 1, 0.5, 1, 0 -> 1 + 0.25 + 1 + 0
    assert flops(EMB).item() == pytest.approx(2.25, abs=1e-7)


def test_sentence_transformers_flops_equals_ours_and_a_loop():
    g = torch.Generator().manual_seed(0)
    emb = torch.relu(torch.randn(7, 50, generator=g))
    loop = 0.0
    for j in range(emb.shape[1]):
        m = sum(float(emb[i, j]) for i in range(emb.shape[0])) / emb.shape[0]
        loop += m * m
    st = FlopsLoss(model=None).compute_loss_from_embeddings(emb)
    assert flops(emb).item() == pytest.approx(loop, rel=1e-6)
    assert st.item() == pytest.approx(loop, rel=1e-6)
    assert flops(EMB.to_sparse()).item() == pytest.approx(2.25)   # sparse input as dense


def test_flops_carries_gradients():
    x = EMB.clone().requires_grad_(True)
    flops(x).backward()
    # d/dx_ij of sum_j (mean_i x_ij)^2 = 2 * mean_j / n
    want = (2 * EMB.mean(dim=0) / EMB.shape[0]).expand_as(EMB)
    torch.testing.assert_close(x.grad, want)


# ---------------------------------------------------------------------------------------------- L1
def test_l1_by_hand():
    assert l1(EMB).item() == pytest.approx((3.0 + 4.0 + 0.5) / 3)
    assert l1(-EMB).item() == pytest.approx(2.5)
    assert L1Regularizer().compute_loss_from_embeddings(EMB).item() == pytest.approx(2.5)
    with pytest.raises(NotImplementedError):
        L1Regularizer()([], None)


@pytest.mark.parametrize("bad", [torch.zeros(3), torch.zeros(2, 3, 4)])
def test_bad_shapes(bad):
    with pytest.raises(ValueError, match="matrix"):
        flops(bad)
    with pytest.raises(ValueError, match="matrix"):
        nnz_report(bad)


@pytest.fixture(scope="module")
def tiny_splade():
    model = SparseEncoder(modules=[MLMTransformer(str(SPLADE_TINY)), SpladePooling(pooling_strategy="max")],
                          device="cpu")
    return model


def _splade_by_hand(texts: list[str]) -> torch.Tensor:
    tok = AutoTokenizer.from_pretrained(SPLADE_TINY)
    mlm = AutoModelForMaskedLM.from_pretrained(SPLADE_TINY).eval()
    rows = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt", truncation=True, max_length=512)
            logits = mlm(**enc).logits[0]                       # [tokens, vocab]
            rows.append(torch.log1p(torch.relu(logits)).max(dim=0).values)
    return torch.stack(rows)


@pytest.mark.slow   # a real model encodes real text
def test_l1_and_flops_inside_a_real_splade_loss(tiny_splade):
    """SpladeLoss with L1Regularizer on both sides: its regulariser terms are weight x the hand value."""
    model = tiny_splade
    queries = [q for _, q in scifact_queries(3)]
    docs = [d for _, d in scifact_docs(6)]
    pos, neg = docs[:3], docs[3:]
    feats = [model.preprocess(queries, task="query"), model.preprocess(pos, task="document"),
             model.preprocess(neg, task="document")]
    wq, wd = 0.3, 0.07
    loss = SpladeLoss(model, SparseMultipleNegativesRankingLoss(model), document_regularizer_weight=wd,
                      query_regularizer_weight=wq, document_regularizer=L1Regularizer(),
                      query_regularizer=L1Regularizer())
    model.eval()
    with torch.no_grad():
        out = loss(feats, None)
    q_hand, d_hand = _splade_by_hand(queries), _splade_by_hand(pos + neg)
    assert (q_hand > 0).sum() > 0 and (d_hand > 0).sum() > 0
    l1_q = sum(float(r.abs().sum()) for r in q_hand) / len(queries)
    l1_d = sum(float(r.abs().sum()) for r in d_hand) / len(pos + neg)
    assert out["query_regularizer_loss"].item() == pytest.approx(wq * l1_q, rel=1e-5)
    assert out["document_regularizer_loss"].item() == pytest.approx(wd * l1_d, rel=1e-5)
    # and ST's default (FLOPS) gives weight x flops of the same vectors
    default = SpladeLoss(model, SparseMultipleNegativesRankingLoss(model), document_regularizer_weight=wd,
                         query_regularizer_weight=wq)
    with torch.no_grad():
        out = default(feats, None)
    assert out["document_regularizer_loss"].item() == pytest.approx(wd * flops(d_hand).item(), rel=1e-5)
    assert out["query_regularizer_loss"].item() == pytest.approx(wq * flops(q_hand).item(), rel=1e-5)


# ------------------------------------------------------------------------------------------ warm-up
def test_flops_weight_by_hand():
    assert [flops_weight(s, 2.0, 4) for s in range(7)] == [0.0, 0.125, 0.5, 1.125, 2.0, 2.0, 2.0]
    assert flops_weight(0, 0.5, 0) == 0.5 and flops_weight(9, 0.5, 0) == 0.5
    for bad in ((-1, 1.0, 3), (1.5, 1.0, 3), (1, 1.0, -2), (True, 1.0, 3)):
        with pytest.raises(ValueError):
            flops_weight(*bad)


def _drive(callback, total: int) -> list[tuple]:
    """Step a callback as the trainer does: on_train_begin, then on_step_begin with global_step = steps taken."""
    state, control = TrainerState(), TrainerControl()
    state.max_steps = total
    callback.on_train_begin(None, state, control)
    seen = []
    for step in range(total):
        state.global_step = step
        callback.on_step_begin(None, state, control)
        seen.append((callback.loss.document_regularizer_weight, callback.loss.query_regularizer_weight))
    return seen


@pytest.mark.parametrize("total,warmup", [(10, 3), (20, 20), (100, 6), (12, 1)])
def test_sentence_transformers_quadratic_schedule_equals_ours(tiny_splade, total, warmup):
    """ST's quadratic scheduler with warmup_ratio = T / total gives lam * min(1, t/T)^2 at every step
    where int(total * ratio) == T; ours gives the same."""
    assert int(total * (warmup / total)) == warmup
    mk = lambda: SpladeLoss(tiny_splade, SparseMultipleNegativesRankingLoss(tiny_splade),  # noqa: E731
                            document_regularizer_weight=0.08, query_regularizer_weight=0.1)
    st = _drive(SpladeRegularizerWeightSchedulerCallback(mk(), "quadratic", warmup_ratio=warmup / total), total)
    ours = _drive(RegularizerWarmupCallback(mk(), warmup), total)
    want = [(flops_weight(t, 0.08, warmup), flops_weight(t, 0.1, warmup)) for t in range(total)]
    for got in (st, ours):
        for (d, q), (wd, wq) in zip(got, want):
            assert d == pytest.approx(wd, abs=1e-12) and q == pytest.approx(wq, abs=1e-12)


def test_where_sentence_transformers_ratio_lands_a_step_short(tiny_splade):
    """29/100 of 100 steps is 28.999...: ST warms up over 28 steps, lsr's callback over the 29 it is given."""
    assert int(100 * (29 / 100)) == 28
    mk = lambda: SpladeLoss(tiny_splade, SparseMultipleNegativesRankingLoss(tiny_splade),  # noqa: E731
                            document_regularizer_weight=1.0, query_regularizer_weight=None)
    st = _drive(SpladeRegularizerWeightSchedulerCallback(mk(), "quadratic", warmup_ratio=29 / 100), 100)
    ours = _drive(RegularizerWarmupCallback(mk(), 29), 100)
    assert st[28][0] == 1.0 and ours[28][0] == pytest.approx((28 / 29) ** 2)
    assert ours[29] == (1.0, None) and all(q is None for _, q in ours)


@pytest.mark.slow   # a real model encodes real text
def test_warmup_callback_in_a_real_training_run(tiny_splade, tmp_path):
    """Four optimizer steps of SparseEncoderTrainer with the callback: the trainer adds no scheduler of its
    own beside it, and the weight in force at each step is flops_weight of the steps taken before it."""
    from datasets import Dataset
    from transformers import TrainerCallback

    qs = [q for _, q in scifact_queries(8)]
    ds = [" ".join(d.split()[:30]) for _, d in scifact_docs(8)]
    data = Dataset.from_dict({"query": qs, "positive": ds})
    model = SparseEncoder(modules=[MLMTransformer(str(SPLADE_TINY)), SpladePooling(pooling_strategy="max")],
                          device="cpu")
    loss = SpladeLoss(model, SparseMultipleNegativesRankingLoss(model), document_regularizer_weight=0.4,
                      query_regularizer_weight=0.5, document_regularizer=L1Regularizer())
    seen = []

    class Recorder(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):   # after the step's forward and backward
            seen.append((state.global_step, loss.document_regularizer_weight, loss.query_regularizer_weight))

    args = SparseEncoderTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=4,
                                          logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                                          seed=1, disable_tqdm=True)
    trainer = SparseEncoderTrainer(model=model, args=args, train_dataset=data, loss=loss,
                                   callbacks=[RegularizerWarmupCallback(loss, warmup_steps=3), Recorder()])
    schedulers = [c for c in trainer.callback_handler.callbacks
                  if isinstance(c, SpladeRegularizerWeightSchedulerCallback)]
    assert len(schedulers) == 1 and isinstance(schedulers[0], RegularizerWarmupCallback)
    trainer.train()
    assert [s for s, _, _ in seen] == [1, 2, 3, 4]
    for step, d, q in seen:
        assert d == pytest.approx(flops_weight(step - 1, 0.4, 3)) and q == pytest.approx(flops_weight(step - 1, 0.5, 3))
    logged = [h for h in trainer.state.log_history if "document_regularizer_loss" in h]
    assert len(logged) == 4 and logged[0]["document_regularizer_loss"] == 0.0   # weight 0 at the first step
    assert all(h["document_regularizer_loss"] > 0 for h in logged[1:])


def test_warmup_callback_refuses_other_losses(tiny_splade):
    with pytest.raises(ValueError, match="SpladeLoss"):
        RegularizerWarmupCallback(torch.nn.MSELoss(), 3)
    loss = SpladeLoss(tiny_splade, SparseMultipleNegativesRankingLoss(tiny_splade), document_regularizer_weight=1.0,
                      query_regularizer_weight=1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        RegularizerWarmupCallback(loss, -1)


# ---------------------------------------------------------------------------------------------- nnz
def test_nnz_report_by_hand():
    r = nnz_report(EMB)
    assert (r.rows, r.mean, r.min, r.max, r.target, r.gap) == (3, 5 / 3, 1, 2, None, None)
    r = nnz_report(EMB, target=2)
    assert r.target == 2.0 and r.gap == pytest.approx(5 / 3 - 2) and r.ratio == pytest.approx(5 / 6)
    assert r.to_dict()["gap"] == pytest.approx(-1 / 3)
    assert nnz_report(EMB, threshold=0.75).mean == pytest.approx(4 / 3)   # 0.5 is not above 0.75
    assert nnz_report(EMB.to_sparse(), target=1).gap == pytest.approx(2 / 3)
    for bad in (0, -3, True, "5", math.nan):
        with pytest.raises(ValueError, match="target"):
            nnz_report(EMB, target=bad)
    with pytest.raises(ValueError, match="no rows"):
        nnz_report(torch.zeros(0, 4))


@pytest.mark.slow   # a real model encodes real text
def test_nnz_report_of_real_splade_vectors(tiny_splade):
    docs = [d for _, d in scifact_docs(4)]
    emb = tiny_splade.encode_document(docs, convert_to_tensor=True).to_dense()
    hand = [int((row != 0).sum()) for row in emb]
    r = nnz_report(emb, target=100)
    assert r.mean == pytest.approx(sum(hand) / 4) and (r.min, r.max) == (min(hand), max(hand))
    assert r.gap == pytest.approx(sum(hand) / 4 - 100)
