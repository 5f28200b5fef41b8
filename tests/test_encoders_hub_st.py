"""Public sentence-transformers sparse checkpoints on the hub, by layout: each test builds, with
sentence-transformers itself, a checkpoint laid out as the public repository is (real modules, real
tokenizers), loads it in sentence-transformers and in lsr (the directory, and the registry preset with a
``model_path``), and compares the vectors to 1e-5 on real SciFact text.

Layouts (docs/encoders.md, "Public sentence-transformers checkpoints"):

* naver/splade-v3, ibm-granite/granite-embedding-30m-sparse: MLMTransformer at the root + 1_SpladePooling
  (max, relu); granite on RoBERTa with a byte-level BPE tokenizer.
* opensearch-project/opensearch-neural-sparse-encoding-doc-v2-distill / -doc-v2-mini (relu) and -doc-v3-distill /
  -doc-v3-gte (log1p_relu): a Router whose document route is the MLM at the repository root +
  document_1_SpladePooling, and whose query route is query_0_SparseStaticEmbedding (static IDF weights);
  idf.json at the root holds the same weights. doc-v3-gte's backbone is repository code (trust_remote_code).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import sentence_transformers  # noqa: F401  (the test extra installs it; missing, the tests fail)

from encoders_helpers import scifact_docs, scifact_queries  # noqa: E402
from lsr.encoders import IncompatibleModelError, load_encoder, resolve_config  # noqa: E402

N_DOCS, N_QUERIES = 12, 20


@pytest.fixture(scope="module")
def texts():
    return [t for _, t in scifact_docs(N_DOCS)], [t for _, t in scifact_queries(N_QUERIES)]


def _st_dicts(model, texts, query: bool):
    fn = model.encode_query if query else model.encode_document
    dense = fn(texts, convert_to_tensor=True, batch_size=8)
    dense = (dense.to_dense() if dense.is_sparse else dense).float().numpy()
    vocab = {i: t for t, i in model.tokenizer.get_vocab().items()}
    return [{vocab[int(i)]: float(r[i]) for i in np.flatnonzero(r)} for r in dense]


def _assert_equal(ours, theirs, tol=1e-5):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert set(a) == set(b)
        assert max((abs(a[t] - b[t]) for t in b), default=0.0) <= tol


def _assert_encodes_like_st(enc, st, docs, queries):
    _assert_equal(enc.encode_documents(docs, batch_size=8), _st_dicts(st, docs, query=False))
    _assert_equal(enc.encode_queries(queries), _st_dicts(st, queries, query=True))


def _idf_like(n: int, seed: int):
    """Positive spread-out static weights, a third of the vocabulary at 0 (as IDF tables leave tokens out)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    w = -torch.log(torch.rand(n, generator=g).clamp_min(1e-6))
    w[torch.rand(n, generator=g) < 0.33] = 0.0
    return w


def save_opensearch_layout(out, mlm_dir, activation: str, seed: int = 27, trust_remote_code: bool = False):
    """An OpenSearch inference-free repository: Router; document route = the MLM at the repository root +
    document_1_SpladePooling; query route = query_0_SparseStaticEmbedding (frozen static weights); idf.json at
    the root with the same weights."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import (
        MLMTransformer,
        Router,
        SparseStaticEmbedding,
        SpladePooling,
    )

    kw = {"model_args": {"trust_remote_code": True}, "config_args": {"trust_remote_code": True}} \
        if trust_remote_code else {}
    mlm = MLMTransformer(str(mlm_dir), max_seq_length=512, **kw)   # the presets' 512
    vocab = mlm.tokenizer.get_vocab()
    weight = _idf_like(len(vocab), seed)
    static = SparseStaticEmbedding(tokenizer=mlm.tokenizer, weight=weight, frozen=True)
    router = Router.for_query_document(query_modules=[static],
                                       document_modules=[mlm, SpladePooling("max", activation_function=activation)])
    SparseEncoder(modules=[router], device="cpu").save_pretrained(str(out))
    # the MLM moves to the repository root, as the public repositories hold it (router key "")
    for name in os.listdir(out / "document_0_MLMTransformer"):
        shutil.move(str(out / "document_0_MLMTransformer" / name), str(out / name))
    (out / "document_0_MLMTransformer").rmdir()
    rc = json.loads((out / "router_config.json").read_text())
    rc["types"] = {("" if k == "document_0_MLMTransformer" else k): v for k, v in rc["types"].items()}
    rc["structure"]["document"] = ["" if k == "document_0_MLMTransformer" else k for k in rc["structure"]["document"]]
    (out / "router_config.json").write_text(json.dumps(rc, indent=2))
    by_id = {i: t for t, i in vocab.items()}
    idf = {by_id[i]: float(weight[i]) for i in np.flatnonzero(weight.numpy())}
    (out / "idf.json").write_text(json.dumps(idf))
    return out


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, splade_tiny):
    """``{name: directory}`` of the layouts built from the real splade-tiny."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    root = tmp_path_factory.mktemp("hub_st")
    out = {}
    # naver/splade-v3: MLMTransformer at the root + 1_SpladePooling (max, relu); 256 tokens as the preset reads
    SparseEncoder(modules=[MLMTransformer(str(splade_tiny), max_seq_length=256), SpladePooling("max")],
                  device="cpu").save_pretrained(str(root / "splade-v3"))
    out["splade-v3"] = root / "splade-v3"
    for name, act in (("doc-v3-distill", "log1p_relu"), ("doc-v2-distill", "relu")):
        out[name] = save_opensearch_layout(root / name, splade_tiny, act)
    return out


# --------------------------------------------------------------------------- the activation
def test_log1p_relu_by_hand():
    """log(1 + log(1 + ReLU(x))) in every pooling kernel, against values computed by hand."""
    import torch

    from lsr.encoders.heads import fused_max_pool, fused_sum_pool, padded_pool, pool_logits

    e = math.e
    # logits of 2 texts (rows = tokens) over a 4-term vocabulary; W = identity, bias 0, so T holds the logits
    a = [[-1.0, e - 1, 0.5, e ** (e - 1) - 1],
         [2.0, 0.0, -3.0, e - 1]]
    b = [[e - 1, -2.0, e - 1, 0.0]]
    T = torch.tensor(a + b, dtype=torch.float64)
    W, bias = torch.eye(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)

    def f(x):
        return math.log1p(math.log1p(max(x, 0.0)))

    want_max = [[f(max(r[v] for r in rows)) for v in range(4)] for rows in (a, b)]
    want_sum = [[sum(f(r[v]) for r in rows) for v in range(4)] for rows in (a, b)]
    assert want_max[0][3] == pytest.approx(1.0) and want_max[0][1] == pytest.approx(math.log(2))
    out = torch.empty((2, 4), dtype=torch.float64)
    fused_max_pool(T, [2, 1], W, bias, out, activation="log1p_log1p_relu")
    np.testing.assert_allclose(out.numpy(), want_max, rtol=0, atol=1e-12)
    fused_sum_pool(T, [2, 1], W, bias, out, activation="log1p_log1p_relu")
    np.testing.assert_allclose(out.numpy(), want_sum, rtol=0, atol=1e-12)
    padded = torch.tensor([a, b + [[-9.0, -9.0, -9.0, -9.0]]], dtype=torch.float64)
    mask = torch.tensor([[1, 1], [1, 0]])
    for pooling, want in (("max", want_max), ("sum", want_sum)):
        got = padded_pool(padded, mask, W, bias, pooling, "log1p_log1p_relu")
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
        got = pool_logits(padded, mask.bool().unsqueeze(-1), pooling, "log1p_log1p_relu")
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


def test_log1p_relu_side_is_log1p_of_the_relu_side(splade_tiny, texts):
    """On the real splade-tiny, max pooling: each weight of the log1p_relu side is log1p of the relu side's."""
    from lsr.encoders import EncoderConfig, SideConfig

    docs = texts[0][:4]
    side = SideConfig(kind="splade", model=str(splade_tiny), max_length=128)
    plain = load_encoder(EncoderConfig(name="a", doc=side, query=side), threads=1).encode_documents(docs)
    side2 = side.replace(activation="log1p_relu")
    enc = load_encoder(EncoderConfig(name="b", doc=side2, query=side2), threads=1)
    double = enc.encode_documents(docs)
    for p, d in zip(plain, double):
        assert set(p) == set(d)
        assert max(abs(d[t] - math.log1p(w)) for t, w in p.items()) < 1e-6
    assert enc.describe()["doc"]["activation"] == "log1p_log1p_relu"


# --------------------------------------------------------------------------- layouts against sentence-transformers
@pytest.mark.slow
@pytest.mark.parametrize("name,preset", [("splade-v3", "splade-v3"),
                                         ("doc-v3-distill", "opensearch-doc-v3-distill"),
                                         ("doc-v2-distill", "opensearch-doc-v2-distill"),
                                         ("doc-v2-distill", "opensearch-doc-v2-mini")])
def test_public_layout_encodes_like_sentence_transformers(name, preset, layouts, texts):
    """The directory (read through modules.json) and the registry preset with model_path: both equal to
    sentence-transformers' encode_document / encode_query."""
    from sentence_transformers import SparseEncoder

    path = layouts[name]
    docs, queries = texts
    st = SparseEncoder(str(path), device="cpu")
    cfg = resolve_config(str(path))
    if name == "splade-v3":
        assert cfg.doc == cfg.query and (cfg.doc.kind, cfg.doc.activation, cfg.doc.max_length) == ("splade", "relu", 256)
    else:
        assert cfg.doc.model == str(path)   # the MLM at the repository root
        assert (cfg.doc.kind, cfg.doc.activation, cfg.query.kind) == (
            "splade", "log1p_relu" if "v3" in name else "relu", "tokens")
    _assert_encodes_like_st(load_encoder(str(path), threads=1), st, docs, queries)
    preset_cfg = resolve_config(preset)
    assert preset_cfg.doc.activation == cfg.doc.activation
    _assert_encodes_like_st(load_encoder(preset, model_path=path, threads=1), st, docs, queries)


@pytest.mark.slow
def test_opensearch_idf_json_at_the_root(layouts, texts, tmp_path):
    """The query weights from idf.json at the repository root (a preset's ``weights: idf.json``, or a
    SparseStaticEmbedding whose config names it) equal sentence-transformers' static query vectors."""
    from sentence_transformers import SparseEncoder

    path = layouts["doc-v3-distill"]
    queries = texts[1]
    st_q = _st_dicts(SparseEncoder(str(path), device="cpu"), queries, query=True)
    cfg = resolve_config("opensearch-doc-v3-distill", model_path=path)
    cfg = cfg.replace(query=cfg.query.replace(weights="idf.json"))
    _assert_equal(load_encoder(cfg, threads=1).encode_queries(queries), st_q)
    # a module config naming the JSON table (sentence-transformers' from_json form), found at the root
    alt = tmp_path / "alt"
    shutil.copytree(path, alt)
    (alt / "query_0_SparseStaticEmbedding" / "model.safetensors").unlink()
    (alt / "query_0_SparseStaticEmbedding" / "config.json").write_text(json.dumps({"path": "idf.json",
                                                                                  "frozen": True}))
    alt_cfg = resolve_config(str(alt))
    assert alt_cfg.query.weights == str(alt / "idf.json")
    _assert_equal(load_encoder(str(alt), threads=1).encode_queries(queries), st_q)
    # a preset whose weight file the checkpoint lacks: one clear error
    bad = cfg.replace(query=cfg.query.replace(weights="no-such-idf.json"))
    with pytest.raises(Exception, match="no-such-idf.json"):
        load_encoder(bad, threads=1).encode_queries(queries[:1])


# --------------------------------------------------------------------------- granite: RoBERTa + byte-level BPE
@pytest.fixture(scope="module")
def granite_layout(tmp_path_factory, scifact_dir):
    """A granite-embedding-30m-sparse layout: a small randomly initialised RobertaForMaskedLM with a real
    byte-level BPE tokenizer (trained here by the `tokenizers` library on SciFact abstracts, RoBERTa's
    special tokens and post-processor), MLMTransformer at the root + 1_SpladePooling (max, relu)."""
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    root = tmp_path_factory.mktemp("granite")
    model_dir = root / "mlm"
    corpus = []
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f:
        for _, line in zip(range(2000), f):
            d = json.loads(line)
            corpus.append(f"{d['title']} {d['text']}")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=3000, min_frequency=2, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    tok_file = root / "tokenizer.json"
    bpe.save(str(tok_file))
    tok = RobertaTokenizerFast(tokenizer_file=str(tok_file), model_max_length=512)
    torch.manual_seed(30)
    config = RobertaConfig(vocab_size=bpe.get_vocab_size(), hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=128, max_position_embeddings=514,
                           pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id, type_vocab_size=1)
    model = RobertaForMaskedLM(config).eval()
    with torch.no_grad():   # a spread of positive and negative logits, so that vectors are sparse but not empty
        model.lm_head.bias.normal_(-1.0, 1.0)
    model.save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))
    out = root / "granite"
    SparseEncoder(modules=[MLMTransformer(str(model_dir), max_seq_length=128), SpladePooling("max")],
                  device="cpu").save_pretrained(str(out))
    return out


@pytest.mark.slow
def test_granite_roberta_bpe_layout(granite_layout, texts):
    """RoBERTa MLM with a byte-level BPE vocabulary: the BPE tokens ("Ġword") are the terms, equal to
    sentence-transformers by directory and by the granite preset with model_path."""
    from sentence_transformers import SparseEncoder

    docs, queries = texts
    st = SparseEncoder(str(granite_layout), device="cpu")
    cfg = resolve_config(str(granite_layout))
    assert (cfg.doc.kind, cfg.doc.pooling, cfg.doc.max_length) == ("splade", "max", 128)
    enc = load_encoder(str(granite_layout), threads=1)
    _assert_encodes_like_st(enc, st, docs, queries)
    vecs = enc.encode_documents(docs[:3])
    terms = {t for v in vecs for t in v}
    assert any(t.startswith("Ġ") for t in terms) and all(not any(c.isspace() for c in t) for t in terms)
    batch = enc.encode_documents_sparse(docs[:3])
    assert batch.token_ids and batch.terms[st.tokenizer.convert_tokens_to_ids("Ġthe")] == "Ġthe"
    # the preset reads 512 tokens; on texts shorter than ST's 128 both agree
    short = [d[:300] for d in docs]
    preset = load_encoder("granite-embedding-30m-sparse", model_path=granite_layout, threads=1)
    _assert_equal(preset.encode_documents(short), _st_dicts(st, short, query=False))


# --------------------------------------------------------------------------- doc-v3-gte: repository code
CONFIGURATION_PY = '''
from transformers import BertConfig


class LsrTestConfig(BertConfig):
    model_type = "lsrtest_new"
'''

MODELING_PY = '''
from transformers import BertForMaskedLM

from .configuration_lsrtest import LsrTestConfig


class LsrTestForMaskedLM(BertForMaskedLM):
    config_class = LsrTestConfig
'''


def _remote_code_mlm(tmp_path, splade_tiny):
    """splade-tiny as a model whose class is code in the checkpoint (config.json auto_map, model type unknown
    to transformers), as the GTE backbone of doc-v3-gte is."""
    d = tmp_path / "remote_mlm"
    shutil.copytree(splade_tiny, d)
    (d / "configuration_lsrtest.py").write_text(CONFIGURATION_PY)
    (d / "modeling_lsrtest.py").write_text(MODELING_PY)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update({"model_type": "lsrtest_new", "architectures": ["LsrTestForMaskedLM"],
                "auto_map": {"AutoConfig": "configuration_lsrtest.LsrTestConfig",
                             "AutoModelForMaskedLM": "modeling_lsrtest.LsrTestForMaskedLM"}})
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_remote_code_backbone_is_refused_without_trust_remote_code(tmp_path, splade_tiny):
    """A checkpoint whose model class is repository code is read (config), but not loaded unless the side
    sets trust_remote_code; the refusal is one line and runs none of that code."""
    from lsr.cli import main

    d = _remote_code_mlm(tmp_path, splade_tiny)
    (d / "modeling_lsrtest.py").write_text("raise SystemExit('repository code ran')\n")
    enc = load_encoder(str(d), threads=1)
    with pytest.raises(IncompatibleModelError, match="trust_remote_code: true"):
        enc.encode_documents(["a document"])
    assert resolve_config("opensearch-doc-v3-gte").doc.trust_remote_code is True
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"_id": "1", "text": "a document"}) + "\n")
    assert main(["index", "--encoder", str(d), "--corpus", str(corpus), "-o", str(tmp_path / "ix"),
                 "--no-progress"]) == 2


GTE_SCRIPT = """
import json, sys
from sentence_transformers import SparseEncoder
from lsr.encoders import load_encoder, resolve_config
path, texts = sys.argv[1], json.loads(sys.argv[2])
st = SparseEncoder(path, device="cpu", trust_remote_code=True)
cfg = resolve_config("opensearch-doc-v3-gte", model_path=path)
# the preset's 8192 tokens are the GTE backbone's; this stand-in (splade-tiny) has 512 positions
cfg = cfg.replace(doc=cfg.doc.replace(max_length=512), query=cfg.query.replace(max_length=512))
enc = load_encoder(cfg, threads=1)
vocab = {i: t for t, i in st.tokenizer.get_vocab().items()}
def st_dicts(fn):
    dense = fn(texts, convert_to_tensor=True).to_dense().float().numpy()
    return [{vocab[int(i)]: float(r[i]) for i in r.nonzero()[0]} for r in dense]
print(json.dumps({"st_docs": st_dicts(st.encode_document), "st_queries": st_dicts(st.encode_query),
                  "docs": enc.encode_documents(texts), "queries": enc.encode_queries(texts),
                  "activation": enc.describe()["doc"]["activation"]}))
"""


@pytest.mark.slow
def test_doc_v3_gte_layout_with_trust_remote_code(tmp_path, splade_tiny, texts):
    """The doc-v3-gte layout (OpenSearch Router, log1p_relu, a backbone that is repository code) with the
    preset (trust_remote_code: true) and model_path equals sentence-transformers with trust_remote_code=True.
    Run in a child process whose HF_MODULES_CACHE is under tmp_path (transformers copies the code there)."""
    mlm = _remote_code_mlm(tmp_path, splade_tiny)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    build = ("import sys; sys.path.insert(0, sys.argv[3]); from test_encoders_hub_st import save_opensearch_layout;"
             "from pathlib import Path; save_opensearch_layout(Path(sys.argv[1]), Path(sys.argv[2]), 'log1p_relu',"
             " trust_remote_code=True)")
    repo = tmp_path / "gte"
    r = subprocess.run([sys.executable, "-c", build, str(repo), str(mlm), os.path.dirname(__file__)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((repo / "config.json").read_text())["auto_map"]
    sample = texts[0][:4] + texts[1][:4]
    r = subprocess.run([sys.executable, "-c", GTE_SCRIPT, str(repo), json.dumps(sample)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["activation"] == "log1p_log1p_relu"
    _assert_equal(got["docs"], got["st_docs"])
    _assert_equal(got["queries"], got["st_queries"])


HUB_ID_SCRIPT = """
import json, sys
from lsr.encoders import load_encoder, resolve_config
texts = json.loads(sys.argv[1])
out = {}
for hub_id in sys.argv[2:]:
    cfg = resolve_config(hub_id)
    enc = load_encoder(hub_id, threads=1)
    out[hub_id] = {"doc_model": cfg.doc.model, "activation": cfg.doc.activation, "query_kind": cfg.query.kind,
                   "docs": enc.encode_documents(texts), "queries": enc.encode_queries(texts)}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_public_hub_ids_from_the_cache(layouts, texts, tmp_path):
    """The public ids themselves, resolved offline from a Hugging Face cache holding checkpoints of their
    layout: read through modules.json (the MLM at the root named by the hub id), equal to the directories."""
    commit = "27" * 20
    ids = {"opensearch-project/opensearch-neural-sparse-encoding-doc-v3-distill": "doc-v3-distill",
           "opensearch-project/opensearch-neural-sparse-encoding-doc-v2-distill": "doc-v2-distill"}
    for hub_id, name in ids.items():
        repo = tmp_path / "hub" / ("models--" + hub_id.replace("/", "--"))
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        shutil.copytree(layouts[name], repo / "snapshots" / commit)
    sample = texts[0][:3] + texts[1][:3]
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", HUB_ID_SCRIPT, json.dumps(sample), *ids], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    for hub_id, name in ids.items():
        assert got[hub_id]["doc_model"] == hub_id and got[hub_id]["query_kind"] == "tokens"
        assert got[hub_id]["activation"] == ("log1p_relu" if "v3" in name else "relu")
        enc = load_encoder(str(layouts[name]), threads=1)
        _assert_equal(got[hub_id]["docs"], enc.encode_documents(sample), tol=1e-6)
        _assert_equal(got[hub_id]["queries"], enc.encode_queries(sample), tol=1e-6)
