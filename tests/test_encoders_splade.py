"""SPLADE on the real splade-tiny checkpoint against a plain reference computation.

The reference (``splade_reference``) follows the paper's formula with torch
ops on Hugging Face's ``AutoModelForMaskedLM``, one text at a time (no
padding): ``w_v = max_i log(1 + ReLU(logit_{i,v}))`` (or the sum for v1),
over every token of the truncated input, special tokens included.
"""

from __future__ import annotations

import os

import json
import time

import pytest
import torch
from encoders_helpers import (  # noqa: F401
    TRICKY_TEXTS,
    assert_vectors_close,
    minilm,
    minilm_dir,
    scifact_docs,
    scifact_queries,
    splade_tiny,
)
from lsr.encoders import (
    EncoderConfig,
    EncoderConfigError,
    IncompatibleModelError,
    SideConfig,
    load_encoder,
    load_query_encoder,
)
from lsr.encoders.text import TextTokenizer

from lsr.errors import InputError

_REF: dict = {}


def _hf(path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    key = str(path)
    if key not in _REF:
        _REF[key] = (AutoTokenizer.from_pretrained(path), AutoModelForMaskedLM.from_pretrained(path).eval())
    return _REF[key]


def splade_reference(path, texts, max_length=256, pooling="max"):
    tok, model = _hf(path)
    vocab = tok.convert_ids_to_tokens(list(range(model.config.vocab_size)))
    out = []
    with torch.inference_mode():
        for t in texts:
            if not t.strip():
                out.append({})
                continue
            enc = tok([t], truncation=True, max_length=max_length, return_tensors="pt")
            act = torch.log1p(torch.relu(model(**enc).logits[0]))
            w = act.amax(0) if pooling == "max" else act.sum(0)
            nz = torch.nonzero(w > 0).flatten().tolist()
            out.append({vocab[i]: float(w[i]) for i in nz})
    return out


def splade_config(path, **kw) -> EncoderConfig:
    side = SideConfig(kind="splade", model=str(path), **kw)
    return EncoderConfig(name="t", type="splade", doc=side, query=side)


@pytest.fixture(scope="module")
def enc(splade_tiny):
    return load_encoder(str(splade_tiny))


def test_documents_match_reference(enc, splade_tiny):
    texts = [t for _, t in scifact_docs(20)] + TRICKY_TEXTS
    got = enc.encode_documents(texts, batch_size=6)
    assert_vectors_close(got, splade_reference(splade_tiny, texts))
    assert all(got)  # real text gives non-empty vectors
    assert enc.last_doc_stats.texts == len(texts)
    assert enc.last_doc_stats.truncated == sum(
        len(_hf(splade_tiny)[0](t)["input_ids"]) > 256 for t in texts)


def test_sum_pooling_matches_reference(splade_tiny):
    e = load_encoder(splade_config(splade_tiny, pooling="sum", max_length=64))
    texts = [t for _, t in scifact_docs(6)] + TRICKY_TEXTS[:2]
    assert_vectors_close(e.encode_documents(texts, batch_size=3),
                         splade_reference(splade_tiny, texts, max_length=64, pooling="sum"))


def test_queries_batch_equals_single_and_reference(enc, splade_tiny):
    qs = [q for _, q in scifact_queries(30)]
    batched = enc.encode_queries(qs, batch_size=7)
    single = [enc.encode_queries([q])[0] for q in qs]
    assert_vectors_close(batched, single)
    assert_vectors_close(batched, splade_reference(splade_tiny, qs))


def test_empty_text_and_whitespace_give_empty_vectors(enc):
    out = enc.encode_documents(["", "   \n\t", "protein"])
    assert out[0] == {} and out[1] == {} and out[2]
    assert enc.last_doc_stats.empty == 2
    assert enc.encode_queries([]) == []


def test_long_text_is_truncated_and_reported(enc, splade_tiny):
    doc = scifact_docs(1)[0][1]
    long_text = " ".join([doc] * 300)  # ~70k tokens, ~600k characters
    t0 = time.perf_counter()
    got = enc.encode_documents([long_text, "short text"])
    assert time.perf_counter() - t0 < 30
    assert enc.last_doc_stats.truncated == 1
    assert_vectors_close(got[:1], splade_reference(splade_tiny, [long_text]))


def test_precut_of_very_long_text_is_exact(enc):
    hf = enc.doc_side.hf_tokenizer
    tt = TextTokenizer(hf, 32)
    words = ("alpha beta-gamma δelta 北京 ünïcode " * 3000).strip()
    spaces = "x" + " " * 5000 + "y " * 40  # a whitespace run longer than the pre-cut window
    for text in (words, spaces, "word " * 5):
        got = tt.encode([text])
        want = hf(text, truncation=True, max_length=32)["input_ids"]
        assert got.ids[0] == want
        assert got.truncated[0] == (len(hf(text)["input_ids"]) > 32)


@pytest.mark.parametrize("bad, needle", [
    ("just a string", "list"),
    ([b"bytes text"], "decode"),
    (["ok", None], "not str"),
    (["bad \udcff surrogate"], "not valid Unicode"),
])
def test_invalid_texts_are_input_errors(enc, bad, needle):
    with pytest.raises(InputError) as e:
        enc.encode_documents(bad)
    assert needle in str(e.value)
    with pytest.raises(InputError):
        enc.encode_queries(bad)


def test_batch_size_must_be_positive(enc):
    with pytest.raises(InputError, match="batch_size"):
        enc.encode_documents(["x"], batch_size=0)


def test_top_k_and_min_weight(splade_tiny, enc):
    text = scifact_docs(2)[1][1]
    full = enc.encode_documents([text])[0]
    e = load_encoder(splade_config(splade_tiny, top_k=10, min_weight=0.3))
    pruned = e.encode_documents([text])[0]
    expect = dict(sorted(((t, w) for t, w in full.items() if w >= 0.3), key=lambda x: -x[1])[:10])
    assert set(pruned) == set(expect)
    assert all(abs(pruned[t] - full[t]) < 1e-6 for t in pruned)


def test_describe_and_load_query_encoder(enc, splade_tiny):
    info = json.loads(json.dumps(enc.describe()))
    assert info["type"] == "splade" and info["doc_model"] == os.path.abspath(splade_tiny)
    assert info["revision"] == {"doc": None, "query": None}
    assert len(info["tokenizer_hash"]["query"]) == 64 and info["doc"]["sha256"]
    assert info["pooling"] == {"doc": "max", "query": "max"} and info["dtype"] == "float32"
    q = "what causes diffusion anisotropy in white matter?"
    qe = load_query_encoder(info)
    assert_vectors_close(qe.encode_queries([q]), enc.encode_queries([q]))
    t0 = time.perf_counter()
    again = load_query_encoder(info)
    assert again is qe and time.perf_counter() - t0 < 0.5
    bad = json.loads(json.dumps(info))
    bad["query"]["tokenizer_hash"] = "0" * 64
    with pytest.raises(IncompatibleModelError, match="tokenizer"):
        load_query_encoder(bad)
    with pytest.raises(EncoderConfigError):
        load_query_encoder({"name": "x"})


def test_checkpoint_without_mlm_head_is_a_clear_error(minilm):
    e = load_encoder(splade_config(minilm))
    with pytest.raises(IncompatibleModelError) as err:
        e.encode_documents(["some text"])
    msg = str(err.value)
    assert "MLM head" in msg and "BertModel" in msg and "\n" not in msg
    with pytest.raises(IncompatibleModelError, match="MLM head"):
        load_encoder(str(minilm_dir()))


def test_max_length_beyond_positions_is_rejected(splade_tiny):
    e = load_encoder(splade_config(splade_tiny, max_length=1000))
    with pytest.raises(EncoderConfigError, match="positions"):
        e.encode_documents(["text"])


def test_inference_free_query_sides(enc, splade_tiny, tmp_path):
    tok = enc.doc_side.hf_tokenizer
    q = "Diffusion, diffusion and TENSOR imaging"
    toks = tok.tokenize(q)
    table = tmp_path / "idf.json"
    table.write_text(json.dumps({"diffusion": 2.5, "tensor": 1.25, ",": 0.0}), encoding="utf-8")
    for weights, want in [("binary", {t: 1.0 for t in toks}),
                          ("counts", {t: float(toks.count(t)) for t in toks}),
                          (str(table), {"diffusion": 2.5, "tensor": 1.25})]:
        cfg = EncoderConfig(name="if", doc=SideConfig(kind="splade", model=str(splade_tiny)),
                            query=SideConfig(kind="tokens", model=str(splade_tiny), weights=weights))
        e = load_encoder(cfg)
        assert e.encode_queries([q])[0] == want
        info = e.describe()
        assert info["query"]["head"] == "none"
        assert load_query_encoder(info).encode_queries([q])[0] == want
    table.write_text(json.dumps({"x": -1}), encoding="utf-8")
    with pytest.raises(EncoderConfigError, match="finite number"):
        load_encoder(EncoderConfig(name="if", doc=SideConfig(kind="splade", model=str(splade_tiny)),
                                   query=SideConfig(kind="tokens", model=str(splade_tiny),
                                                    weights=str(table)))).encode_queries(["x"])


def test_distilbert_and_generic_mlm_architectures(splade_tiny, tmp_path):
    """Seeded tiny DistilBERT (fused path) and RoBERTa (generic full-logits path) MLM checkpoints."""
    from transformers import (
        AutoTokenizer,
        DistilBertConfig,
        DistilBertForMaskedLM,
        RobertaConfig,
        RobertaForMaskedLM,
    )

    tok = AutoTokenizer.from_pretrained(splade_tiny)
    texts = [t for _, t in scifact_docs(3)] + TRICKY_TEXTS[:2]
    torch.manual_seed(0)
    models = {
        "distil": DistilBertForMaskedLM(DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2,
                                                         hidden_dim=64, max_position_embeddings=128)),
        "roberta": RobertaForMaskedLM(RobertaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=64,
                                                    max_position_embeddings=140, pad_token_id=0,
                                                    type_vocab_size=1)),
    }
    for name, model in models.items():
        d = tmp_path / name
        model.save_pretrained(d)
        tok.save_pretrained(d)
        e = load_encoder(splade_config(d, max_length=128))
        got = e.encode_documents(texts, batch_size=2)
        assert_vectors_close(got, splade_reference(d, texts, max_length=128))
        assert e.doc_side.parts.generic == (name == "roberta")


def test_bfloat16_on_cpu_is_close(splade_tiny, enc):
    texts = [t for _, t in scifact_docs(3)]
    e = load_encoder(str(splade_tiny), dtype="bfloat16")
    got = e.encode_documents(texts)
    want = enc.encode_documents(texts)
    assert e.describe()["dtype"] == "bfloat16"
    for g, w in zip(got, want):
        common = set(g) & set(w)
        assert len(common) > 0.8 * len(w)
        assert max(abs(g[t] - w[t]) for t in common) < 0.25


def test_padded_pool_path_matches_fused_kernels():
    """The batched, masked pooling used on GPUs gives the fused CPU kernels' result (checked here on CPU)."""
    from lsr.encoders.heads import fused_max_pool, fused_sum_pool, padded_pool

    g = torch.Generator().manual_seed(0)
    V, H, lengths = 5000, 24, [7, 3, 16, 1]
    weight, bias = torch.randn(V, H, generator=g), torch.randn(V, generator=g)
    T_pad = torch.randn(len(lengths), max(lengths), H, generator=g)
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for b, L in enumerate(lengths):
        mask[b, :L] = 1
    packed = T_pad[mask.bool()]
    for pooling, fused in (("max", fused_max_pool), ("sum", fused_sum_pool)):
        want = torch.empty(len(lengths), V)
        fused(packed, lengths, weight, bias, want)
        got = padded_pool(T_pad, mask, weight, bias, pooling)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        assert (want > 0).any()


def test_separate_query_and_document_checkpoints(splade_tiny, tmp_path):
    """As naver's efficient-splade -doc/-query pairs: two MLM checkpoints over one vocabulary."""
    from benchmarks.encoder_speed import make_minilm_mlm

    query_ckpt = make_minilm_mlm(tmp_path / "query-mlm", seed=1)
    cfg = EncoderConfig(name="pair", type="splade", doc=SideConfig(kind="splade", model=str(splade_tiny)),
                        query=SideConfig(kind="splade", model=str(query_ckpt), max_length=32))
    e = load_encoder(cfg)
    docs = [t for _, t in scifact_docs(3)]
    qs = [q for _, q in scifact_queries(4)]
    assert_vectors_close(e.encode_documents(docs), splade_reference(splade_tiny, docs))
    got_q = e.encode_queries(qs)
    assert_vectors_close(got_q, splade_reference(query_ckpt, qs, max_length=32))
    info = e.describe()
    assert info["doc_model"] != info["query_model"] and info["query"]["sha256"] != info["doc"]["sha256"]
    assert_vectors_close(load_query_encoder(info).encode_queries(qs), got_q)
