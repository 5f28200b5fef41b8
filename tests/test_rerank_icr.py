"""ICR reranker (lsr.rerank.icr) on a tiny randomly initialised Llama with a real tokenizer.

The model is built here (seeded) and saved with splade-tiny's WordPiece tokenizer from
../shared, so the real loading path (AutoConfig / AutoModelForCausalLM / AutoTokenizer from
a directory) runs. The reference runs each of the two full prompts (prefix + query part)
through the model with eager attention and ``output_attentions=True`` and aggregates,
calibrates and masks the weights with torch, independently of the reranker's code path
(cached prefix, SDPA, cropped cache, numpy calibration).
"""

from __future__ import annotations

import numpy as np
import pytest

import torch
import transformers

from lsr.errors import InputError, LsrError  # noqa: E402
from lsr.rerank.base import load_reranker, reranker_config  # noqa: E402
from lsr.rerank.icr import ICRConfig, ICRReranker, cut_words, layer_range  # noqa: E402
from lsr.results import Results  # noqa: E402

N_LAYERS = 4

DOCS = [
    "Vitamin D deficiency is associated with an increased risk of bone fractures in older adults.",
    "The mitochondria is the powerhouse of the cell and produces most of its ATP.",
    "Paris is the capital and most populous city of France.",
    "A randomised trial found that aspirin lowers the risk of a second heart attack.",
    "x",
]
QUERY = "does vitamin d prevent fractures?"

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|> {% endif %}")


def _save_llama(path, tokenizer, **overrides) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1234)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=N_LAYERS, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, initializer_range=0.5,
                      bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                      pad_token_id=tokenizer.pad_token_id, **overrides)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture(scope="module")
def wordpiece(splade_tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(splade_tiny)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory, wordpiece):
    path = tmp_path_factory.mktemp("tiny-llama")
    _save_llama(path, wordpiece)
    return path


@pytest.fixture(scope="module")
def tiny_llama_chat(tmp_path_factory, wordpiece):
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tiny-llama-chat")
    _save_llama(path, wordpiece)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reranker(tiny_llama):
    return ICRReranker(ICRConfig(model=str(tiny_llama)))


def reference_scores(model_dir, prompt, layers) -> np.ndarray:
    """ICR's scores from the two FULL prompts with eager attention (no cache), in torch."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32).eval()
    n = len(prompt.prefix)
    token_scores = []
    for part in (prompt.query, prompt.calibration):
        ids = torch.tensor([prompt.prefix + part])
        with torch.no_grad():
            att = model(ids, output_attentions=True).attentions
        # query rows, averaged over the query tokens; summed over the layers, then the heads
        per_layer = torch.stack([att[layer][0, :, n:, :].mean(1) for layer in layers])
        token_scores.append(per_layer.sum(0).sum(0)[:n].double())
    s_query, s_calib = token_scores
    out = []
    for a, b in prompt.doc_spans:
        c = s_query[a:b] - s_calib[a:b]
        keep = c > c.mean() - 2 * c.std()          # torch.std: n - 1; NaN for one token -> all masked
        out.append(float((c * keep).sum()))
    return np.array(out)


# ------------------------------------------------------------------------------- exactness and reuse
def test_scores_equal_full_prompt_reference_and_prefix_runs_once(reranker, tiny_llama):
    reranker.reset_stats()
    scores = reranker.score(QUERY, DOCS)
    prompt = reranker.prompt(QUERY, DOCS)
    ref = reference_scores(tiny_llama, prompt, range(N_LAYERS))
    assert scores.dtype == np.float64 and scores.shape == (len(DOCS),)
    assert np.ptp(ref) > 1e-2                                  # the comparison is not between near-zeros
    np.testing.assert_allclose(scores, ref, rtol=0, atol=1e-5)
    # one prefix pass and two query passes; the prefix tokens are run once, not once per query
    n_q, n_na = len(prompt.query), len(prompt.calibration)
    assert reranker.stats["forward_passes"] == 3
    assert reranker.stats["prefix_tokens"] == len(prompt.prefix)
    assert reranker.stats["query_tokens"] == n_q + n_na
    assert len(prompt.prefix) > 3 * max(n_q, n_na)             # two full prompts would run the prefix twice
    assert reranker.stats["queries"] == 1 and reranker.stats["documents"] == len(DOCS)
    # deterministic
    np.testing.assert_array_equal(reranker.score(QUERY, DOCS), scores)


def test_prompt_layout_reverse_order_and_tokenisation(reranker, wordpiece):
    p = reranker.prompt(QUERY, DOCS[:3])
    expected_prefix = ("Here are some paragraphs:\n\n[1] " + DOCS[2] + "\n\n[2] " + DOCS[1]
                       + "\n\n[3] " + DOCS[0] + "\n\n")
    assert p.text == expected_prefix                           # no chat template: the tokenizer's [CLS] leads
    full = expected_prefix + ("Please find information that are relevant to the following query in the "
                              "paragraphs above.\n\nQuery: " + QUERY)
    assert p.prefix + p.query == wordpiece(full)["input_ids"]
    na = wordpiece(expected_prefix + full[len(expected_prefix):].replace(QUERY, "N/A"))["input_ids"]
    assert p.prefix + p.calibration == na
    # spans in the order the documents were given; each is its "[i] text" block
    for k, (a, b) in enumerate(p.doc_spans):
        number = 3 - k
        assert wordpiece.decode(p.prefix[a:b]) == wordpiece.decode(wordpiece(f"[{number}] {DOCS[k]}",
                                                                             add_special_tokens=False)["input_ids"])
    # the query tokens are everything after the documents: the instruction, "Query:", the query, [SEP]
    assert wordpiece.decode(p.query, skip_special_tokens=True).startswith("please find information")
    assert p.query[-1] == wordpiece.sep_token_id


def test_first_stage_order_kept_when_not_reversed(tiny_llama):
    rr = ICRReranker(ICRConfig(model=str(tiny_llama), reverse_doc_order=False))
    p = rr.prompt(QUERY, DOCS[:2])
    assert p.text == "Here are some paragraphs:\n\n[1] " + DOCS[0] + "\n\n[2] " + DOCS[1] + "\n\n"
    assert p.doc_spans[0][0] < p.doc_spans[1][0]


def test_chat_template_wraps_prompt_and_matches_reference(tiny_llama_chat, wordpiece):
    rr = ICRReranker(ICRConfig(model=str(tiny_llama_chat)))
    assert rr.use_chat_template
    p = rr.prompt(QUERY, DOCS)
    assert p.text.startswith("<|user|> Here are some paragraphs:\n\n[1] x\n\n")
    query_text = wordpiece.decode(p.query)
    assert query_text.endswith("< | end | > < | assistant | >")    # the template's suffix is among the query tokens
    assert wordpiece.cls_token_id not in p.prefix                 # no special tokens added with a template
    np.testing.assert_allclose(rr.score(QUERY, DOCS), reference_scores(tiny_llama_chat, p, range(N_LAYERS)),
                               rtol=0, atol=1e-5)
    plain = ICRReranker(ICRConfig(model=str(tiny_llama_chat), use_chat_template=False))
    assert plain.prompt(QUERY, DOCS).text.startswith("Here are some paragraphs:")


def test_prefix_attention_choice_does_not_change_scores(tiny_llama, reranker):
    rr = ICRReranker(ICRConfig(model=str(tiny_llama), prefix_attention="eager"))
    assert rr.prefix_attention == "eager" and reranker.prefix_attention == "sdpa"
    np.testing.assert_allclose(rr.score(QUERY, DOCS), reranker.score(QUERY, DOCS), rtol=0, atol=1e-5)
    with pytest.raises(LsrError, match="cannot load causal LM"):
        ICRReranker(ICRConfig(model=str(tiny_llama), prefix_attention="no_such_attention"))


def test_use_chat_template_without_one_is_refused(tiny_llama):
    with pytest.raises(InputError, match="no chat template"):
        ICRReranker(ICRConfig(model=str(tiny_llama), use_chat_template=True))


# ------------------------------------------------------------------------------- layers
def test_layer_range_selects_layers_and_skips_the_rest(tiny_llama, reranker):
    rr = ICRReranker(ICRConfig(model=str(tiny_llama), layers=[1, 2]))
    assert (rr.layer_start, rr.layer_end) == (1, 2) and rr.config.layers == "1-2"
    assert rr.model.config.num_hidden_layers == 3                 # layer 3 is never run
    p = rr.prompt(QUERY, DOCS)
    scores = rr.score(QUERY, DOCS)
    np.testing.assert_allclose(scores, reference_scores(tiny_llama, p, [1, 2]), rtol=0, atol=1e-5)
    assert np.max(np.abs(scores - reranker.score(QUERY, DOCS))) > 1e-3
    mid = ICRReranker(ICRConfig(model=str(tiny_llama), layers="middle"))
    assert (mid.layer_start, mid.layer_end) == (1, 1)
    np.testing.assert_allclose(mid.score(QUERY, DOCS), reference_scores(tiny_llama, p, [1]), rtol=0, atol=1e-5)


def test_layer_range_spec():
    assert layer_range("all", 30) == (0, 29)
    assert layer_range("middle", 30) == (10, 19)
    assert layer_range("middle", 32) == (10, 20)
    assert layer_range("middle", 2) == (0, 0)
    assert layer_range("3-7", 30) == (3, 7)
    with pytest.raises(InputError, match="has 30 layers"):
        layer_range("3-30", 30)


def test_layers_beyond_the_model_are_refused(tiny_llama):
    with pytest.raises(InputError, match=f"has {N_LAYERS} layers"):
        ICRReranker(ICRConfig(model=str(tiny_llama), layers="2-9"))


# ------------------------------------------------------------------------------- dtypes
def test_bfloat16_scores_are_finite(tiny_llama):
    # (the random model's large activations make bfloat16 rounding visible in the scores: only finiteness and
    # the passes are checked here)
    rr = ICRReranker(ICRConfig(model=str(tiny_llama), dtype="bfloat16"))
    assert rr.model.dtype == torch.bfloat16
    scores = rr.score(QUERY, DOCS)
    assert scores.shape == (len(DOCS),) and np.all(np.isfinite(scores))
    assert np.ptp(scores) > 0
    assert rr.stats["forward_passes"] == 3


# ------------------------------------------------------------------------------- fitting the context
def test_words_cut_and_further_cut_to_fit_and_too_long_refused(tiny_llama):
    long_docs = [" ".join(f"word{i}x{j}" for j in range(40)) for i in range(3)]
    rr = ICRReranker(ICRConfig(model=str(tiny_llama), doc_words=30, min_doc_words=5))
    p = rr.prompt(QUERY, long_docs)
    assert p.words == 30 and "word0x29" in p.text and "word0x30" not in p.text
    fits = p.length
    # a context that holds the documents only when they are cut further
    tight = ICRReranker(ICRConfig(model=str(tiny_llama), doc_words=30, min_doc_words=5, max_context=fits - 40))
    q = tight.prompt(QUERY, long_docs)
    assert 5 <= q.words < 30 and q.length <= fits - 40
    assert tight._build(QUERY, [d.strip() for d in long_docs], q.words + 1).length > fits - 40   # the largest that fits
    tight.score(QUERY, long_docs)
    assert tight.stats["documents_cut"] == 3 and tight.stats["documents_cut_further"] == 3
    # a context too small even at min_doc_words
    small = ICRReranker(ICRConfig(model=str(tiny_llama), doc_words=30, min_doc_words=5, max_context=40))
    with pytest.raises(InputError, match=r"even with every document cut to 5 words, over the context of 40"):
        small.score(QUERY, long_docs)
    with pytest.raises(InputError, match="exceeds the context"):
        ICRReranker(ICRConfig(model=str(tiny_llama), max_context=10_000))


def test_cut_words():
    assert cut_words("a  b\nc d", 3) == "a  b\nc"
    assert cut_words("a b", 5) == "a b"
    assert cut_words("a b", None) == "a b"


# ------------------------------------------------------------------------------- models without attention
def test_model_without_attention_weights_is_refused(tmp_path, wordpiece):
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    MambaForCausalLM(MambaConfig(vocab_size=len(wordpiece), hidden_size=16, state_size=4,
                                 num_hidden_layers=2)).save_pretrained(tmp_path)
    wordpiece.save_pretrained(tmp_path)
    with pytest.raises(LsrError, match=r"MambaForCausalLM\) returns no attention weights"):
        ICRReranker(ICRConfig(model=str(tmp_path)))


# ------------------------------------------------------------------------------- the contract
def test_rerank_through_the_contract_keeps_ids(reranker):
    ids = ["d-a", "d-b", "d-c", "d-d", "d-e"]
    docs = dict(zip(ids, DOCS))
    run = Results(["q1"] * 5 + ["q2"] * 2, ids + ["d-c", "d-a"],
                  np.array([9, 8, 7, 6, 5, 2, 1], dtype=np.float32), np.array([1, 2, 3, 4, 5, 1, 2]))
    out = reranker.rerank({"q1": QUERY, "q2": "capital of france"}, run, docs, depth=4)
    assert out.query_ids == ["q1"] * 5 + ["q2"] * 2
    top4 = reranker.score(QUERY, DOCS[:4])
    assert out.doc_ids[:4] == [ids[i] for i in np.argsort(-top4, kind="stable")]
    assert out.doc_ids[4] == "d-e"                                # below depth: kept, below the reranked
    np.testing.assert_allclose(out.scores[:4], np.sort(top4)[::-1])
    assert sorted(out.doc_ids[5:]) == ["d-a", "d-c"]
    assert list(out.ranks) == [1, 2, 3, 4, 5, 1, 2]


def test_no_candidates_gives_no_scores(reranker):
    assert reranker.score(QUERY, []).shape == (0,)


# ------------------------------------------------------------------------------- config
@pytest.mark.parametrize("bad, match", [
    ({"layers": "late"}, "layers must be"),
    ({"layers": "5-2"}, "START is after END"),
    ({"layers": [1]}, r"\[START, END\]"),
    ({"doc_words": 0}, "doc_words"),
    ({"doc_words": 10, "min_doc_words": 20}, "above doc_words"),
    ({"query_template": "Query:"}, r"\{query\} exactly once"),
    ({"doc_template": "[{i}] {txt}"}, "unknown slot"),
    ({"separator": ""}, "separator"),
    ({"calibration_query": " "}, "calibration_query"),
    ({"max_context": 1}, "max_context"),
    ({"use_chat_template": "yes"}, "use_chat_template"),
    ({"prefix_attention": ""}, "prefix_attention"),
])
def test_bad_config_is_refused(bad, match):
    with pytest.raises(InputError, match=match):
        ICRConfig(model="x", **bad)


def test_presets_load():
    name, cfg = reranker_config("icr-smollm2-135m-instruct")
    assert name == "icr" and isinstance(cfg, ICRConfig) and cfg.model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert cfg.doc_words == 300 and cfg.reverse_doc_order and cfg.layers == "all"
    name, cfg = reranker_config("icr-llama-3.1-8b-instruct")
    assert name == "icr" and cfg.model == "meta-llama/Llama-3.1-8B-Instruct"


def test_load_reranker_from_mapping(tiny_llama):
    rr = load_reranker({"reranker": "icr", "model": str(tiny_llama), "layers": "middle"})
    assert isinstance(rr, ICRReranker) and rr.describe()["layer_range"] == [1, 1]
