"""sentence-transformers SparseEncoder checkpoints (modules.json) loaded by lsr: checkpoints built here with
sentence-transformers itself from the real splade-tiny, encoded by both on real SciFact text."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import sentence_transformers  # noqa: F401  (the test extra installs it; missing, the tests fail)

import lsr  # noqa: E402
from lsr.cli import main  # noqa: E402
from lsr.encoders import IncompatibleModelError, load_encoder, load_query_encoder, resolve_config  # noqa: E402

N_DOCS, N_QUERIES = 24, 40


@pytest.fixture(scope="module")
def texts(scifact_dir):
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f:
        docs = [json.loads(line) for _, line in zip(range(N_DOCS), f)]
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for _, line in zip(range(N_QUERIES), f)]
    return [f"{d['title']} {d['text']}" for d in docs], queries


@pytest.fixture(scope="module")
def st_checkpoints(tmp_path_factory, splade_tiny):
    """``{name: directory}``: SPLADE max and sum (MLMTransformer), max on a fill-mask Transformer, and an
    inference-free Router, saved by sentence-transformers."""
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import (
        MLMTransformer,
        Router,
        SparseStaticEmbedding,
        SpladePooling,
        Transformer,
    )

    root = tmp_path_factory.mktemp("st")
    out = {}
    for pooling, length in (("max", 128), ("sum", 96)):
        model = SparseEncoder(modules=[MLMTransformer(str(splade_tiny), max_seq_length=length),
                                       SpladePooling(pooling)], device="cpu")
        model.save_pretrained(str(root / pooling))
        out[pooling] = root / pooling
    # the module sentence-transformers 6.x recommends for new SPLADE models
    model = SparseEncoder(modules=[Transformer(str(splade_tiny), transformer_task="fill-mask", max_seq_length=64),
                                   SpladePooling("max")], device="cpu")
    model.save_pretrained(str(root / "transformer"))
    out["transformer"] = root / "transformer"
    mlm = MLMTransformer(str(splade_tiny), max_seq_length=100)
    g = torch.Generator().manual_seed(26)
    vocab_size = len(mlm.tokenizer.get_vocab())
    # idf-like static query weights: positive, spread out, a third of the vocabulary at 0
    weight = -torch.log(torch.rand(vocab_size, generator=g).clamp_min(1e-6))
    weight[torch.rand(vocab_size, generator=g) < 0.33] = 0.0
    static = SparseStaticEmbedding(tokenizer=mlm.tokenizer, weight=weight)
    router = Router.for_query_document(query_modules=[static], document_modules=[mlm, SpladePooling("max")])
    SparseEncoder(modules=[router], device="cpu").save_pretrained(str(root / "router"))
    out["router"] = root / "router"
    return out


def _st_dicts(model, texts, query: bool):
    """sentence-transformers' vectors as ``{token: weight}`` dicts and ``(ids, weights)`` rows."""
    fn = model.encode_query if query else model.encode_document
    dense = fn(texts, convert_to_tensor=True, batch_size=8)
    dense = (dense.to_dense() if dense.is_sparse else dense).float().numpy()
    vocab = {i: t for t, i in model.tokenizer.get_vocab().items()}
    rows = [np.flatnonzero(r) for r in dense]
    return [{vocab[int(i)]: float(r[i]) for i in ids} for r, ids in zip(dense, rows)], rows, dense


def _assert_equal(ours, theirs, tol=1e-5):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert set(a) == set(b)
        assert max((abs(a[t] - b[t]) for t in b), default=0.0) <= tol


@pytest.mark.parametrize("name", ["max", "sum", "transformer", "router"])
def test_st_checkpoint_encodes_like_sentence_transformers(name, st_checkpoints, texts):
    from sentence_transformers import SparseEncoder

    path = st_checkpoints[name]
    docs, queries = texts
    cfg = resolve_config(str(path))
    if name == "router":
        assert (cfg.doc.kind, cfg.doc.pooling, cfg.doc.max_length) == ("splade", "max", 100)
        assert cfg.query.kind == "tokens" and cfg.query.weights.endswith("model.safetensors")
        assert cfg.query.max_length == 100
    else:
        assert cfg.doc == cfg.query
        assert (cfg.doc.kind, cfg.doc.pooling) == ("splade", "sum" if name == "sum" else "max")
        assert cfg.doc.max_length == {"max": 128, "sum": 96, "transformer": 64}[name]
    st = SparseEncoder(str(path), device="cpu")
    enc = load_encoder(str(path), threads=1)
    st_docs, st_rows, _ = _st_dicts(st, docs, query=False)
    st_queries, _, _ = _st_dicts(st, queries, query=True)
    _assert_equal(enc.encode_documents(docs, batch_size=8), st_docs)
    _assert_equal(enc.encode_queries(queries), st_queries)
    # term ids: the tokenizer's ids, the same vocabulary
    batch = enc.encode_documents_sparse(docs, batch_size=8)
    assert batch.token_ids
    vocab = st.tokenizer.get_vocab()
    assert all(vocab[t] == i for i, t in enumerate(batch.terms.tolist()) if t in vocab)
    for i, ids in enumerate(st_rows):
        assert np.array_equal(batch.ids[batch.indptr[i]: batch.indptr[i + 1]], ids)
    if name == "router":
        # the static side really is static: every weight is the token's stored weight, whatever the context
        table = {t: w for q in st_queries for t, w in q.items()}
        assert all(abs(table[t] - w) < 1e-7 for q in enc.encode_queries(queries[::-1]) for t, w in q.items())


def test_index_with_st_router_checkpoint_through_cli(st_checkpoints, texts, scifact_dir, tmp_path, capsys):
    """`lsr index --encoder DIR` on an inference-free ST checkpoint; text search re-encodes queries from the
    recorded encoder, equal to sentence-transformers' encode_query."""
    from sentence_transformers import SparseEncoder

    path = st_checkpoints["router"]
    corpus = tmp_path / "c.jsonl"
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f, open(corpus, "w", encoding="utf-8") as out:
        for _, line in zip(range(30), f):
            out.write(line)
    ix = tmp_path / "ix"
    assert main(["index", "--encoder", str(path), "--corpus", str(corpus), "-o", str(ix), "--quantization", "float",
                 "--threads", "1", "--no-progress"]) == 0
    index = lsr.Index.open(ix)
    assert index.manifest["counts"]["documents"] == 30
    queries = texts[1][:5]
    q_tsv = tmp_path / "q.tsv"
    q_tsv.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(queries)), encoding="utf-8")
    capsys.readouterr()
    assert main(["search", "-i", str(ix), "-q", str(q_tsv), "--query-format", "text", "-k", "5",
                 "-o", str(tmp_path / "run")]) == 0
    assert len((tmp_path / "run").read_text().splitlines()) > 0
    st_queries, _, _ = _st_dicts(SparseEncoder(str(path), device="cpu"), queries, query=True)
    _assert_equal(load_query_encoder(index.encoder).encode_queries(queries), st_queries)


def test_unsupported_st_stack_is_one_line_error(st_checkpoints, tmp_path, capsys):
    """A dense ST stack, a SpladePooling activation lsr does not compute, and a foreign module: one line each."""
    bad = tmp_path / "dense"
    shutil.copytree(st_checkpoints["max"], bad)
    (bad / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    with pytest.raises(IncompatibleModelError, match=r"modules Transformer \+ Pooling are not supported"):
        resolve_config(str(bad))
    assert main(["index", "--encoder", str(bad), "--corpus", str(tmp_path / "none.jsonl"),
                 "-o", str(tmp_path / "ix")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsr: error:") and "Transformer + Pooling" in err[0]

    act = tmp_path / "act"
    shutil.copytree(st_checkpoints["max"], act)
    (act / "1_SpladePooling" / "config.json").write_text(json.dumps(
        {"pooling_strategy": "max", "activation_function": "gelu"}))
    with pytest.raises(IncompatibleModelError, match="activation_function 'gelu'"):
        resolve_config(str(act))

    foreign = tmp_path / "foreign"
    shutil.copytree(st_checkpoints["max"], foreign)
    mods = json.loads((foreign / "modules.json").read_text())
    mods[1]["type"] = "mypackage.MyPooling"
    (foreign / "modules.json").write_text(json.dumps(mods))
    with pytest.raises(IncompatibleModelError, match=r"MLMTransformer \+ mypackage.MyPooling"):
        resolve_config(str(foreign))


def test_st_5x_type_paths_are_accepted(st_checkpoints, tmp_path):
    """The module paths sentence-transformers 5.x wrote (sparse_encoder.models.*, models.Router)."""
    old = tmp_path / "old"
    shutil.copytree(st_checkpoints["router"], old)
    mods = json.loads((old / "modules.json").read_text())
    mods[0]["type"] = "sentence_transformers.models.Router"
    (old / "modules.json").write_text(json.dumps(mods))
    rc = json.loads((old / "router_config.json").read_text())
    rc["types"] = {k: "sentence_transformers.sparse_encoder.models." + v.rsplit(".", 1)[-1]
                   for k, v in rc["types"].items()}
    (old / "router_config.json").write_text(json.dumps(rc))
    (old / "document_0_MLMTransformer" / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 77, "do_lower_case": False}))
    cfg = resolve_config(str(old))
    assert (cfg.doc.kind, cfg.doc.max_length, cfg.query.kind) == ("splade", 77, "tokens")


HUB_SCRIPT = """
import json, sys
from lsr.encoders import load_encoder, resolve_config
texts = json.loads(sys.argv[1])
out = {}
for name in ("max", "router"):
    cfg = resolve_config("lsrtest/" + name)
    enc = load_encoder("lsrtest/" + name, threads=1)
    out[name] = {"doc_model": cfg.doc.model, "query_kind": cfg.query.kind,
                 "docs": enc.encode_documents(texts), "queries": enc.encode_queries(texts)}
print(json.dumps(out))
"""


def test_st_checkpoint_as_hub_id_from_the_cache(st_checkpoints, texts, tmp_path):
    """A hub id whose snapshot is in the Hugging Face cache (offline): the root MLM layout by hub id, the
    Router from the cached snapshot's folders; both encode as the local directory does."""
    import os
    import subprocess
    import sys

    commit = "26" * 20
    for name in ("max", "router"):
        repo = tmp_path / "hub" / f"models--lsrtest--{name}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        shutil.copytree(st_checkpoints[name], repo / "snapshots" / commit)
    sample = texts[0][:3] + texts[1][:3]
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", HUB_SCRIPT, json.dumps(sample)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["max"]["doc_model"] == "lsrtest/max"
    assert got["router"]["doc_model"].endswith(os.path.join(commit, "document_0_MLMTransformer"))
    assert got["router"]["query_kind"] == "tokens"
    for name in ("max", "router"):
        enc = load_encoder(str(st_checkpoints[name]), threads=1)
        _assert_equal(got[name]["docs"], enc.encode_documents(sample), tol=1e-6)
        _assert_equal(got[name]["queries"], enc.encode_queries(sample), tol=1e-6)
