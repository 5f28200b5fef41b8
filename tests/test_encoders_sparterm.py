"""SparTerm on the real splade-tiny MLM checkpoint against the formula with torch ops.

Importance ``imp_v = pool_i ReLU(logit_{i,v})`` (sum, as in the paper, or
max); gate ``g_v``: lexical = the text's own tokens (no special tokens);
expansion = lexical OR ``sigmoid(max_i gate_logit_{i,v}) > threshold``;
output ``imp * g`` without zeros.
"""

from __future__ import annotations

import os

import pytest
import torch
from encoders_helpers import (  # noqa: F401
    TRICKY_TEXTS,
    assert_vectors_close,
    scifact_docs,
    scifact_queries,
    splade_tiny,
)
from lsr.encoders import EncoderConfig, SideConfig, load_encoder


def sparterm_reference(path, texts, pooling, gate, threshold=0.5, max_length=256):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForMaskedLM.from_pretrained(path).eval()
    vocab = tok.convert_ids_to_tokens(list(range(model.config.vocab_size)))
    special = set(tok.all_special_ids)
    out = []
    with torch.inference_mode():
        for t in texts:
            enc = tok([t], truncation=True, max_length=max_length, return_tensors="pt")
            logits = model(**enc).logits[0]
            r = torch.relu(logits)
            imp = r.sum(0) if pooling == "sum" else r.amax(0)
            g = torch.zeros(logits.shape[1], dtype=torch.bool)
            ids = [i for i in enc["input_ids"][0].tolist() if i not in special]
            g[ids] = True
            if gate == "expansion":
                g |= torch.sigmoid(logits.amax(0)) > threshold
            w = imp * g
            out.append({vocab[i]: float(w[i]) for i in torch.nonzero(w > 0).flatten().tolist()})
    return out


@pytest.mark.parametrize("pooling, gate", [("sum", "lexical"), ("max", "lexical"), ("sum", "expansion")])
def test_sparterm_matches_reference(splade_tiny, pooling, gate):
    side = SideConfig(kind="sparterm", model=str(splade_tiny), pooling=pooling, gate=gate, max_length=128)
    enc = load_encoder(EncoderConfig(name="st", type="sparterm", doc=side, query=side))
    texts = [t for _, t in scifact_docs(6)] + TRICKY_TEXTS
    got = enc.encode_documents(texts, batch_size=4)
    want = sparterm_reference(splade_tiny, texts, pooling, gate, max_length=128)
    assert_vectors_close(got, want)
    assert all(got[:6])
    qs = [q for _, q in scifact_queries(8)]
    assert_vectors_close(enc.encode_queries(qs), sparterm_reference(splade_tiny, qs, pooling, gate, max_length=128))
    if gate == "lexical":
        tok = enc.doc_side.hf_tokenizer
        for t, v in zip(texts, got):
            assert set(v) <= set(tok.tokenize(t)[:126])
    else:
        lexical = sparterm_reference(splade_tiny, texts[:6], pooling, "lexical", max_length=128)
        assert any(set(e) > set(lx) for e, lx in zip(got[:6], lexical))  # the gate expands


def test_sparterm_separate_gate_model_and_threshold(splade_tiny):
    side = SideConfig(kind="sparterm", model=str(splade_tiny), gate="expansion", gate_model=str(splade_tiny),
                      gate_threshold=0.9, max_length=64)
    enc = load_encoder(EncoderConfig(name="st", type="sparterm", doc=side, query=side))
    texts = [t for _, t in scifact_docs(3)]
    assert_vectors_close(enc.encode_documents(texts),
                         sparterm_reference(splade_tiny, texts, "max", "expansion", 0.9, max_length=64))
    assert enc.describe()["doc"]["gate_model"]["model"] == os.path.abspath(splade_tiny)
