"""DeepImpact: word segmentation, the first-occurrence rule, and impacts on the real MiniLM backbone.

The reference is built independently of the encoder's tokenizer pipeline:
words from the original Python BERT ``BasicTokenizer`` (transformers' legacy
module), WordPieces from its ``WordpieceTokenizer`` over ``vocab.txt``, the
first WordPiece of the first occurrence of each non-punctuation word, hidden
states from ``AutoModel`` and the MLP head written with torch ops.
"""

from __future__ import annotations

import pytest
import torch
from encoders_helpers import (  # noqa: F401
    TRICKY_TEXTS,
    assert_vectors_close,
    heads_dir,
    minilm,
    read_head,
    scifact_docs,
    scifact_queries,
)
from lsr.encoders import EncoderConfig, SideConfig, load_encoder
from lsr.encoders.text import TextTokenizer, append_new_terms, is_punctuation_word

EDGE_TEXTS = TRICKY_TEXTS + [
    "don't stop: U.S.A. costs $3.14 (approx.) -- C++ #hashtag @user e.g. 1,000,000",
    "Ångström ﬁne ＡＢＣ full-width, e\u0301 combining, Ελληνικά κείμενα, русский текст, عربى, हिन्दी",
    "repeated repeated REPEATED Repeated words; words, words!",
    "subwords: tokenizations unbelievably antidisestablishmentarianism hyperparameterization",
    "x" * 150 + " long-word and !!! ??? ... — – « » “quotes”",
    "...!!!",
]


@pytest.fixture(scope="module")
def legacy(minilm):
    from transformers.models.bert.tokenization_bert_legacy import (
        BasicTokenizer,
        WordpieceTokenizer,
        load_vocab,
    )

    vocab = load_vocab(str(minilm / "vocab.txt"))
    return BasicTokenizer(do_lower_case=True), WordpieceTokenizer(vocab, "[UNK]"), vocab


def legacy_is_punct_word(w: str) -> bool:
    from transformers.models.bert.tokenization_bert_legacy import _is_punctuation

    return all(_is_punctuation(c) for c in w)


def reference_occurrences(legacy, text: str, max_length: int):
    basic, wp, vocab = legacy
    words = basic.tokenize(text)
    ids = [vocab["[CLS]"]]
    first_pos = []
    for w in words:
        first_pos.append(len(ids))
        ids.extend(vocab[p] for p in wp.tokenize(w))
    truncated = len(ids) + 1 > max_length
    ids = ids[: max_length - 1] + [vocab["[SEP]"]]
    terms: dict[str, int] = {}
    for w, pos in zip(words, first_pos):
        if w in terms or legacy_is_punct_word(w):
            continue
        if pos >= max_length - 1:
            break
        terms[w] = pos
    return ids, terms, truncated


def mlp(head: dict, x, prefix="impact_score_encoder"):
    idx = sorted({int(k.split(".")[-2]) for k in head if k.startswith(prefix)})
    for i in idx:
        x = torch.relu(x @ head[f"{prefix}.{i}.weight"].t() + head[f"{prefix}.{i}.bias"])
    return x


def deepimpact_reference(legacy, minilm, head, texts, max_length):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(minilm).eval()
    out = []
    with torch.inference_mode():
        for t in texts:
            ids, terms, _ = reference_occurrences(legacy, t, max_length)
            if not terms:
                out.append({})
                continue
            h = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
            scores = mlp(head, h[list(terms.values())]).squeeze(-1)
            out.append({w: float(s) for w, s in zip(terms, scores) if s > 0})
    return out


def di_config(minilm, head_file, max_length=64, query_kind="words") -> EncoderConfig:
    return EncoderConfig(name="di", type="deepimpact",
                         doc=SideConfig(kind="deepimpact", model=str(minilm), head_file=str(head_file),
                                        max_length=max_length),
                         query=SideConfig(kind=query_kind, model=str(minilm), max_length=32))


def test_words_match_bert_basic_tokenizer(legacy, minilm):
    from transformers import AutoTokenizer

    tt = TextTokenizer(AutoTokenizer.from_pretrained(minilm), 512)
    for t in EDGE_TEXTS:
        assert tt.words(t) == legacy[0].tokenize(t), t
        assert tt.content_words(t) == [w for w in legacy[0].tokenize(t) if not legacy_is_punct_word(w)]
    assert tt.content_words("...!!! — «»") == []
    assert is_punctuation_word("—") and is_punctuation_word("$") and not is_punctuation_word("😀")


@pytest.mark.parametrize("max_length", [512, 24, 9])
def test_first_occurrence_rule_and_truncation(legacy, minilm, max_length):
    from transformers import AutoTokenizer

    tt = TextTokenizer(AutoTokenizer.from_pretrained(minilm), max_length)
    texts = EDGE_TEXTS + [t for _, t in scifact_docs(3)]
    got = tt.first_occurrences([tt.window_words(t) for t in texts])
    for t, (ids, terms, positions, truncated) in zip(texts, got):
        want_ids, want_terms, want_trunc = reference_occurrences(legacy, t, max_length)
        assert ids == want_ids, t
        assert dict(zip(terms, positions)) == want_terms, t
        assert truncated == want_trunc, t
    # repeated words are scored once, at the first occurrence
    ids, terms, positions, _ = tt.first_occurrences([tt.window_words("bank river bank money bank")])[0]
    assert terms == ["bank", "river", "money"] and positions == [1, 2, 4]


@pytest.mark.slow
@pytest.mark.parametrize("head_name", ["deepimpact.safetensors", "deepimpact1.safetensors"])
def test_deepimpact_matches_reference(legacy, minilm, heads_dir, head_name):
    head = read_head(heads_dir / head_name)
    enc = load_encoder(di_config(minilm, heads_dir / head_name, max_length=64))
    texts = EDGE_TEXTS + [t for _, t in scifact_docs(5)] + ["", "   "]
    got = enc.encode_documents(texts, batch_size=3)
    assert_vectors_close(got, deepimpact_reference(legacy, minilm, head, texts, 64))
    assert sum(1 for v in got if v) >= len(texts) - 3
    assert enc.last_doc_stats.truncated == sum(reference_occurrences(legacy, t, 64)[2] for t in texts)
    layers = enc.describe()["head"]["doc"]["layers"]
    assert layers == ([[384, 384], [384, 1]] if head_name == "deepimpact.safetensors" else [[384, 1]])


def test_query_side_words(minilm, heads_dir, legacy):
    enc = load_encoder(di_config(minilm, heads_dir / "deepimpact.safetensors"))
    qs = [q for _, q in scifact_queries(5)] + ["Naïve, naive NAIVE café?"]
    got = enc.encode_queries(qs)
    for q, v in zip(qs, got):
        assert v == {w: 1.0 for w in legacy[0].tokenize(q) if not legacy_is_punct_word(w)}
    assert got[-1] == {"naive": 1.0, "cafe": 1.0}
    counts = load_encoder(EncoderConfig(
        name="c", doc=SideConfig(kind="deepimpact", model=str(minilm)),
        query=SideConfig(kind="words", model=str(minilm), weights="counts", max_length=3)))
    assert counts.encode_queries(["a b a c a"])[0] == {"a": 2.0, "b": 1.0}
    assert counts.last_query_stats.truncated == 1


def test_expansion_appends_unique_new_terms(minilm, heads_dir):
    from transformers import AutoTokenizer

    tt = TextTokenizer(AutoTokenizer.from_pretrained(minilm), 512)
    doc = "The Manhattan Project built the atomic bomb."
    queries = ["what was the manhattan project?", "who built the BOMB", "manhattan project scientists, who?"]
    assert append_new_terms(doc, queries, tt) == doc + " what was who scientists"
    assert append_new_terms(doc, ["the bomb!"], tt) == doc
    enc = load_encoder(di_config(minilm, heads_dir / "deepimpact.safetensors"))
    got = enc.encode_documents([doc, "other text"], expansions=["\n".join(queries), None])
    assert enc.last_doc_stats.expanded == 1
    assert_vectors_close(got, enc.encode_documents([doc + " what was who scientists", "other text"]))
