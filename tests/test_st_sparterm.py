"""SparTerm as a sentence-transformers model (lsr.encoders.st_modules.SparTermPooling, build_sparterm_encoder)
and lsr's loader for it: built on the real splade-tiny MLM, encoded on real SciFact text by
sentence-transformers, by hand and by lsr's own ``sparterm`` side."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from encoders_helpers import (SCIFACT, SPLADE_TINY, copy_with_config, lsr_rows, minilm_dir, scifact_docs,
                              scifact_queries, st_dense)

import lsr
from lsr.cli import main
from lsr.encoders import IncompatibleModelError, load_encoder, load_query_encoder, resolve_config
from lsr.encoders.st_modules import SparTermPooling, build_sparterm_encoder, load_impact_encoder

pytestmark = pytest.mark.slow   # real models encode real text

MAX_LENGTH, QUERY_LENGTH = 64, 16
N = 16
POOLINGS = ("sum", "max")


@pytest.fixture(scope="module")
def texts():
    docs = [t for _, t in scifact_docs(N)]
    queries = [t for _, t in scifact_queries(N)]
    # repeats (sum adds every occurrence's ReLU logits), punctuation, an empty text, special-token strings
    docs[3] = "The bank by the river bank; bank-notes & banking. " + docs[3]
    docs[5] = ""
    queries[2] = "bank Bank banks bank, river-bank!"
    queries[4] = "[CLS] [SEP] [MASK] cells"
    return docs, queries


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``{pooling: directory}``: SparTerm (sum and max) on splade-tiny, saved by sentence-transformers."""
    root = tmp_path_factory.mktemp("sparterm")
    out = {}
    for pooling in POOLINGS:
        model = build_sparterm_encoder(str(SPLADE_TINY), max_length=MAX_LENGTH, pooling=pooling,
                                       query_max_length=QUERY_LENGTH, device="cpu")
        model.save(str(root / pooling))
        out[pooling] = root / pooling
    return out


_dense = st_dense


def _rows(vecs: list[dict], vocab: dict) -> np.ndarray:
    """lsr's ``{token: weight}`` dicts as ST's dense rows."""
    return lsr_rows(vecs, len(vocab), vocab)


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    """Equal to 1e-5, absolute or relative (``|got - want| <= 1e-5 * (1 + |want|)``): a sum-pooled weight
    reaches 100 and more, where one float32 step is about 1e-5."""
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _hand(texts: list[str], length: int, pooling: str) -> np.ndarray:
    """AutoModelForMaskedLM logits of each text alone (no padding), ReLU, sum or max over its tokens, kept at
    its own non-special token ids."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(SPLADE_TINY))
    mlm = AutoModelForMaskedLM.from_pretrained(str(SPLADE_TINY)).eval()
    special = set(tok.all_special_ids)
    out = np.zeros((len(texts), mlm.config.vocab_size), dtype=np.float32)
    for i, text in enumerate(texts):
        enc = tok(text, truncation=True, max_length=length, return_tensors="pt")
        with torch.no_grad():
            act = torch.relu(mlm(**enc).logits[0])
        imp = (act.amax(0) if pooling == "max" else act.sum(0)).numpy()
        for t in set(enc["input_ids"][0].tolist()) - special:
            out[i, t] = imp[t]
    return out


@pytest.mark.parametrize("pooling", POOLINGS)
def test_module_equals_hand_computation(pooling, saved, texts):
    docs, queries = texts
    model = load_impact_encoder(str(saved[pooling]), device="cpu")
    assert isinstance(model[1], SparTermPooling) and model[1].pooling == pooling
    for fn, sample, length in ((model.encode_document, docs, MAX_LENGTH), (model.encode_query, queries, QUERY_LENGTH)):
        want = _hand(sample, length, pooling)
        got = _dense(fn(sample, convert_to_tensor=True, batch_size=5))   # batches pad: the mask must hold
        assert got.shape == want.shape == (len(sample), 30522)
        _assert_close(got, want)
        assert np.array_equal(got > 0, want > 0)
        assert all((r > 0).any() for i, r in enumerate(want) if sample[i]) and (want > 0).sum() > 5 * len(sample)
    # the lexical gate: only the text's own tokens, never a special token, nothing for an empty text
    tok = model.tokenizer
    q = _dense(model.encode_query([queries[4]], convert_to_tensor=True))[0]
    assert {tok.convert_ids_to_tokens(int(i)) for i in np.flatnonzero(q)} <= {"cells", "[", "]", "cl", "##s",
                                                                              "sep", "mask"}
    assert not q[tok.all_special_ids].any()
    assert not _dense(model.encode_document([""], convert_to_tensor=True)).any()
    if pooling == "sum":   # "bank" four times (lower-cased) sums four positions
        one = _dense(model.encode_query(["bank"], convert_to_tensor=True))[0]
        many = _dense(model.encode_query([queries[2]], convert_to_tensor=True))[0]
        bank = tok.convert_tokens_to_ids("bank")
        assert many[bank] > one[bank] > 0


@pytest.mark.parametrize("pooling", POOLINGS)
def test_saved_model_round_trips_and_lsr_encodes_like_st(pooling, saved, texts):
    from sentence_transformers import SparseEncoder

    docs, queries = texts
    path = str(saved[pooling])
    cfg = resolve_config(path)
    assert cfg.type == "sparterm"
    for side, length in ((cfg.doc, MAX_LENGTH), (cfg.query, QUERY_LENGTH)):
        assert (side.kind, side.pooling, side.gate, side.max_length, side.model) == (
            "sparterm", pooling, "lexical", length, path)

    built = build_sparterm_encoder(str(SPLADE_TINY), max_length=MAX_LENGTH, pooling=pooling,
                                   query_max_length=QUERY_LENGTH, device="cpu")
    st = SparseEncoder(path, trust_remote_code=True, device="cpu")
    st_docs = _dense(st.encode_document(docs, convert_to_tensor=True, batch_size=8))
    st_queries = _dense(st.encode_query(queries, convert_to_tensor=True, batch_size=8))
    assert np.array_equal(_dense(built.encode_document(docs, convert_to_tensor=True, batch_size=8)), st_docs)
    assert np.array_equal(_dense(built.encode_query(queries, convert_to_tensor=True, batch_size=8)), st_queries)
    # ST 6.x imports a module class outside its own package only with trust_remote_code
    with pytest.raises(ValueError, match="trust_remote_code"):
        SparseEncoder(path, device="cpu")

    enc = load_encoder(path, threads=1)
    vocab = st.tokenizer.get_vocab()
    lsr_docs = enc.encode_documents(docs, batch_size=8)
    assert enc.last_doc_stats.truncated > 0   # SciFact abstracts are longer than 64 tokens
    lsr_queries = enc.encode_queries(queries)
    assert enc.last_query_stats.truncated > 0   # and some claims longer than 16
    _assert_close(_rows(lsr_docs, vocab), st_docs)
    _assert_close(_rows(lsr_queries, vocab), st_queries)
    assert sum(len(v) for v in lsr_docs) == int((st_docs > 0).sum())
    assert sum(len(v) for v in lsr_queries) == int((st_queries > 0).sum())
    assert lsr_docs[5] == {} and not st_docs[5].any()
    # a long text truncated the same way: SciFact's longest abstract among the first 200
    long_doc = max((t for _, t in scifact_docs(200)), key=len)
    want = _dense(st.encode_document([long_doc], convert_to_tensor=True))
    _assert_close(_rows(enc.encode_documents([long_doc]), vocab), want)


def test_one_backward_pass_reaches_the_mlm(texts):
    model = build_sparterm_encoder(str(SPLADE_TINY), max_length=48, pooling="sum", device="cpu")
    model.train()
    docs, queries = texts[0][:4], texts[1][:3]   # docs[3] and queries[2] share "bank"
    d = model(model.preprocess(docs, task="document"))["sentence_embedding"]
    qf = model.preprocess(queries, task="query")
    q = model(qf)["sentence_embedding"]
    assert (q @ d.T).sum() > 0   # shared terms, so the ranking term has a gradient of its own
    ((q @ d.T).sum() + 0.1 * (q.sum() + d.sum())).backward()
    grads = {n: p.grad for n, p in model[0].auto_model.named_parameters()}
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight",
                 "encoder.layer.1.output.dense.weight", "cls.predictions.transform.dense.weight",
                 "cls.predictions.bias"):
        g = next((g for n, g in grads.items() if n.endswith(name)), None)
        assert g is not None and g.abs().sum() > 0, name
    # the gate is a 0/1 mask: the output bias gets a gradient only at gated token ids
    bias = next(g for n, g in grads.items() if n.endswith("cls.predictions.bias"))
    gated = set(torch.nonzero(q.detach().sum(0) + d.detach().sum(0)).flatten().tolist())
    assert gated and set(torch.nonzero(bias).flatten().tolist()) <= gated


def test_builder_checks_its_arguments():
    with pytest.raises(ValueError, match="pooling must be 'max' or 'sum', got 'mean'"):
        build_sparterm_encoder(str(SPLADE_TINY), pooling="mean")
    with pytest.raises(ValueError, match="max_length must be an integer >= 3"):
        build_sparterm_encoder(str(SPLADE_TINY), max_length=0)
    with pytest.raises(ValueError, match="without an MLM head"):
        build_sparterm_encoder(str(minilm_dir()))   # a BertModel: no MLM head to give logits
    with pytest.raises(ValueError, match=r"gate must be 'lexical' \(the expansion gate is not trainable\)"):
        SparTermPooling(30522, gate="expansion")
    with pytest.raises(ValueError, match="special_token_ids"):
        SparTermPooling(10, special_token_ids=[11])


def test_lsr_encode_and_index_on_saved_model(saved, texts, tmp_path, capsys):
    """`lsr encode DIR --queries` and `lsr index --encoder DIR` + text search, through lsr's sparterm side."""
    queries = texts[1][:6]
    q_tsv = tmp_path / "q.tsv"
    q_tsv.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(queries)), encoding="utf-8")
    st = load_impact_encoder(str(saved["max"]), device="cpu")
    want = _dense(st.encode_query(queries, convert_to_tensor=True))
    out = tmp_path / "q.jsonl"
    assert main(["encode", str(saved["max"]), "--queries", str(q_tsv), "--queries-output", str(out),
                 "--threads", "1", "--no-progress"]) == 0
    got = [json.loads(line)["vector"] for line in out.read_text(encoding="utf-8").splitlines()]
    _assert_close(_rows(got, st.tokenizer.get_vocab()), want)

    corpus = tmp_path / "c.jsonl"
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f, open(corpus, "w", encoding="utf-8") as w:
        for _, line in zip(range(12), f):
            w.write(line)
    ix = tmp_path / "ix"
    assert main(["index", "--encoder", str(saved["sum"]), "--corpus", str(corpus), "-o", str(ix),
                 "--quantization", "float", "--threads", "1", "--no-progress"]) == 0
    index = lsr.Index.open(ix)
    assert index.manifest["counts"]["documents"] == 12
    capsys.readouterr()
    assert main(["search", "-i", str(ix), "-q", str(q_tsv), "--query-format", "text", "-k", "3",
                 "-o", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run").read_text().strip()
    qenc = load_query_encoder(index.encoder)
    assert qenc.config.query.kind == "sparterm"
    want = _dense(load_impact_encoder(str(saved["sum"]), device="cpu").encode_query(queries, convert_to_tensor=True))
    got = qenc.encode_queries(queries)
    _assert_close(_rows(got, st.tokenizer.get_vocab()), want)


_edit = copy_with_config


def test_malformed_config_is_one_line_error(saved, tmp_path, capsys):
    rel = "1_SparTermPooling/config.json"
    cases = [
        (rel, {"gate": "expansion"}, "SparTermPooling gate 'expansion'"),
        (rel, {"pooling": "mean"}, "SparTermPooling pooling 'mean'"),
        (rel, {"special_token_ids": [0]}, "special_token_ids [0] are not the tokenizer's special tokens"),
        (rel, {"special_token_ids": "all"}, "special_token_ids 'all'"),
        (rel, {"embedding_dimension": 1000}, "embedding_dimension 1000 is not the vocabulary size 30522"),
        ("sentence_bert_config.json", {"transformer_task": "feature-extraction"}, "not fill-mask"),
    ]
    for i, (path, change, needle) in enumerate(cases):
        bad = _edit(saved["sum"], tmp_path / f"bad{i}", path, **change)
        with pytest.raises(IncompatibleModelError) as e:
            resolve_config(str(bad))
        assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert main(["encode", str(tmp_path / "bad0"), "--queries", str(tmp_path / "none.tsv"),
                 "--queries-output", str(tmp_path / "q.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsr: error:") and "SparTermPooling gate 'expansion'" in err[0]


def test_trains_with_sparse_encoder_trainer_and_lsr_reads_the_result(tmp_path):
    """Two steps of SparseEncoderTrainer (SpladeLoss over SparseMultipleNegativesRankingLoss) on SciFact training
    pairs: the MLM changes, and the saved model encodes in lsr as the in-memory model does."""
    from datasets import Dataset
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer, SparseEncoderTrainingArguments
    from sentence_transformers.sparse_encoder.losses import SparseMultipleNegativesRankingLoss, SpladeLoss

    with open(SCIFACT / "qrels" / "train.tsv", encoding="utf-8") as f:
        pairs = [line.split("\t")[:2] for line in f.read().splitlines()[1:9]]
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
        queries = {rec["_id"]: rec["text"] for rec in map(json.loads, f)}
    wanted = {d for _, d in pairs}
    docs = {}
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["_id"] in wanted:
                docs[rec["_id"]] = f"{rec['title']} {rec['text']}"
    data = Dataset.from_dict({"query": [queries[q] for q, _ in pairs], "positive": [docs[d] for _, d in pairs]})
    model = build_sparterm_encoder(str(SPLADE_TINY), max_length=48, pooling="sum", device="cpu")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = SpladeLoss(model, SparseMultipleNegativesRankingLoss(model), query_regularizer_weight=1e-4,
                      document_regularizer_weight=1e-4)
    args = SparseEncoderTrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-4,
        report_to=[], save_strategy="no", use_cpu=True, seed=3,
        router_mapping={"query": "query", "positive": "document"})
    SparseEncoderTrainer(model=model, args=args, train_dataset=data, loss=loss).train()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert any("word_embeddings" in n for n in changed) and any("cls.predictions" in n for n in changed)

    model.eval()
    model.save(str(tmp_path / "trained"))
    texts = list(data["positive"])
    want = _dense(model.encode_document(texts, convert_to_tensor=True))
    enc = load_encoder(str(tmp_path / "trained"), threads=1)
    assert resolve_config(str(tmp_path / "trained")).doc.kind == "sparterm"
    _assert_close(_rows(enc.encode_documents(texts), model.tokenizer.get_vocab()), want)
    _assert_close(_dense(load_impact_encoder(str(tmp_path / "trained"), device="cpu").encode_document(
        texts, convert_to_tensor=True)), want)
