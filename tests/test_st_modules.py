"""lsr's sentence-transformers modules for uniCOIL and DeepImpact (lsr.encoders.st_modules) and lsr's loader
for models saved with them: built on the real all-MiniLM-L6-v2 backbone with seeded random heads, encoded on
real SciFact text by sentence-transformers and by lsr's own sides."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch
from encoders_helpers import SCIFACT, copy_with_config, lsr_rows, minilm_dir, scifact_docs, scifact_queries, st_dense

from lsr.cli import main
from lsr.encoders import IncompatibleModelError, load_encoder, load_query_encoder, resolve_config
from lsr.encoders.st_modules import (
    ImpactHead,
    build_impact_encoder,
    load_impact_encoder,
    word_bucket,
)
from lsr.encoders.text import TextTokenizer

pytestmark = pytest.mark.slow   # real models encode real text

MAX_LENGTH, QUERY_LENGTH = 64, 24
N = 20


@pytest.fixture(scope="module")
def texts():
    docs = [t for _, t in scifact_docs(N)]
    queries = [t for _, t in scifact_queries(N)]
    # repeats (uniCOIL: max for documents, sum for queries), punctuation, an empty text
    queries[3] = "bank Bank banks bank, river-bank!"
    docs[5] = "The bank by the river bank; bank-notes & banking. " + docs[5]
    docs[7] = ""
    return docs, queries


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``{kind: directory}``: a uniCOIL and a DeepImpact model on MiniLM with seeded random heads, saved by ST."""
    root = tmp_path_factory.mktemp("impact")
    out = {}
    for kind, seed in (("unicoil", 11), ("deepimpact", 12)):
        model = build_impact_encoder(str(minilm_dir()), kind, max_length=MAX_LENGTH, query_max_length=QUERY_LENGTH,
                                     init_head="random", seed=seed, device="cpu")
        model.save(str(root / kind))
        out[kind] = root / kind
    return out


_dense = st_dense


def _bert():
    from transformers import AutoModel, AutoTokenizer

    path = str(minilm_dir())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def _mlp(h: torch.Tensor, sd: dict) -> torch.Tensor:
    """Linear -> ReLU for each layer (mlp.0, mlp.1, ...), by hand."""
    i = 0
    while f"mlp.{i}.weight" in sd:
        h = torch.relu(h @ sd[f"mlp.{i}.weight"].T + sd[f"mlp.{i}.bias"])
        i += 1
    return h[..., 0]


def _head_weights(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_unicoil_head_equals_hand_computation(saved, texts):
    """BertModel hidden states, Linear + ReLU, scatter by token id: max for documents, sum for queries."""
    tok, bert = _bert()
    model = load_impact_encoder(str(saved["unicoil"]), device="cpu")
    sd = _head_weights(saved["unicoil"] / "1_ImpactHead" / "model.safetensors")
    assert set(sd) == {"mlp.0.weight", "mlp.0.bias"}
    special = set(tok.all_special_ids)
    V = len(tok.get_vocab())
    for task, length, reduce in (("document", MAX_LENGTH, max), ("query", QUERY_LENGTH, lambda a, b: a + b)):
        sample = texts[0][:6] if task == "document" else texts[1][:6]
        enc = tok(sample, padding=True, truncation=True, max_length=length, return_tensors="pt")
        with torch.no_grad():
            w = _mlp(bert(**enc).last_hidden_state, sd)
        want = np.zeros((len(sample), V), dtype=np.float32)
        for i in range(len(sample)):
            for j, t in enumerate(enc["input_ids"][i].tolist()):
                if enc["attention_mask"][i, j] and t not in special:
                    want[i, t] = reduce(want[i, t], float(w[i, j])) if want[i, t] else float(w[i, j])
        fn = model.encode_document if task == "document" else model.encode_query
        got = _dense(fn(sample, convert_to_tensor=True))
        assert got.shape == (len(sample), V)
        assert np.abs(got - want).max() < 1e-5
        assert (want > 0).sum() > 20
    # the query with repeats really sums: "bank" x4 (after lower-casing) weighs more than any one of them
    q = _dense(model.encode_query([texts[1][3]], convert_to_tensor=True))[0]
    d = _dense(model.encode_document([texts[1][3]], convert_to_tensor=True))[0]
    bank = tok.convert_tokens_to_ids("bank")
    assert q[bank] > d[bank] > 0


def test_deepimpact_head_equals_hand_computation(saved, texts):
    """One impact per distinct word at the first WordPiece of its first occurrence, in crc32 buckets."""
    tok, bert = _bert()
    model = load_impact_encoder(str(saved["deepimpact"]), device="cpu")
    sd = _head_weights(saved["deepimpact"] / "document_1_ImpactHead" / "model.safetensors")
    assert sorted(sd) == ["mlp.0.bias", "mlp.0.weight", "mlp.1.bias", "mlp.1.weight"]
    sample = texts[0][:6]
    tt = TextTokenizer(tok, MAX_LENGTH)
    occ = tt.first_occurrences([tt.window_words(t) for t in sample])
    nb = 2 ** 18
    want = np.zeros((len(sample), nb), dtype=np.float32)
    for i, (ids, words, positions, _) in enumerate(occ):
        with torch.no_grad():
            h = bert(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))[0][0]
            w = _mlp(h[positions], sd)
        for word, s in zip(words, w.tolist()):
            b = zlib.crc32(word.encode("utf-8")) % nb
            want[i, b] = max(want[i, b], s)
    got = _dense(model.encode_document(sample, convert_to_tensor=True))
    assert np.abs(got - want).max() < 1e-5
    assert all((r > 0).sum() > 10 for r in want)
    # queries: the words, weight 1
    q = _dense(model.encode_query(["Bank, bank: river-banks!"], convert_to_tensor=True))[0]
    assert sorted(np.flatnonzero(q).tolist()) == sorted({word_bucket(w, nb) for w in ("bank", "river", "banks")})
    assert set(q[q > 0].tolist()) == {1.0}


def _lsr_rows(vecs: list[dict], width: int, vocab: dict | None) -> np.ndarray:
    """lsr's ``{term: weight}`` dicts as ST's dense rows: token ids (uniCOIL) or word buckets (max on a clash)."""
    return lsr_rows(vecs, width, vocab, bucket=word_bucket)


@pytest.mark.parametrize("kind", ["unicoil", "deepimpact"])
def test_saved_model_round_trips_and_lsr_encodes_like_st(kind, saved, texts):
    docs, queries = texts
    path = str(saved[kind])
    cfg = resolve_config(path)
    assert cfg.type == kind and cfg.doc.kind == kind and cfg.doc.head_prefix == "mlp"
    assert cfg.doc.max_length == MAX_LENGTH and cfg.doc.head_file.endswith("model.safetensors")
    if kind == "unicoil":
        assert (cfg.doc.pooling, cfg.query.pooling, cfg.query.max_length) == ("max", "sum", QUERY_LENGTH)
        assert cfg.doc.model == cfg.query.model == path
    else:
        assert (cfg.query.kind, cfg.query.max_length) == ("words", 512)
        assert cfg.doc.model.endswith("document_0_ImpactTransformer")

    st = load_impact_encoder(path, device="cpu")
    st_docs = _dense(st.encode_document(docs, convert_to_tensor=True, batch_size=8))
    st_queries = _dense(st.encode_query(queries, convert_to_tensor=True, batch_size=8))
    from sentence_transformers import SparseEncoder

    again = SparseEncoder(path, trust_remote_code=True, device="cpu")
    assert np.array_equal(_dense(again.encode_document(docs, convert_to_tensor=True, batch_size=8)), st_docs)
    assert np.array_equal(_dense(again.encode_query(queries, convert_to_tensor=True, batch_size=8)), st_queries)

    enc = load_encoder(path, threads=1)
    lsr_docs = enc.encode_documents(docs, batch_size=8)
    assert enc.last_doc_stats.truncated > 0   # documents longer than max_length
    lsr_queries = enc.encode_queries(queries)
    vocab = st.tokenizer.get_vocab() if kind == "unicoil" else None
    width = st_docs.shape[1]
    assert width == (len(vocab) if kind == "unicoil" else 2 ** 18)
    assert np.abs(_lsr_rows(lsr_docs, width, vocab) - st_docs).max() < 1e-5
    assert np.abs(_lsr_rows(lsr_queries, width, vocab) - st_queries).max() < 1e-5
    assert lsr_docs[7] == {} and not st_docs[7].any()
    assert sum(len(v) for v in lsr_docs) == int((st_docs > 0).sum())   # no bucket clashes in these texts
    # ST 6.x imports a module class outside its own package only with trust_remote_code
    with pytest.raises(ValueError, match="trust_remote_code"):
        SparseEncoder(path, device="cpu")
    if kind == "deepimpact":
        assert all(w == 1.0 for q in lsr_queries for w in q.values())
        assert "bank" in lsr_docs[5] and "banking" in lsr_docs[5]


def test_same_seed_same_head_and_init_head_must_be_random():
    with pytest.raises(ValueError, match=r"^init_head must be 'random' \(a new, untrained unicoil head\), got "
                                         r"'pretrained'$"):
        build_impact_encoder(str(minilm_dir()), "unicoil", max_length=32, init_head="pretrained", seed=1)
    with pytest.raises(ValueError, match="kind must be one of unicoil, deepimpact"):
        build_impact_encoder(str(minilm_dir()), "splade", max_length=32, seed=1)
    a, b, c = (build_impact_encoder(str(minilm_dir()), "unicoil", max_length=32, seed=s, device="cpu")
               for s in (3, 3, 4))
    assert torch.equal(a[1].mlp[0].weight, b[1].mlp[0].weight)
    assert not torch.equal(a[1].mlp[0].weight, c[1].mlp[0].weight)
    assert a[1].mlp[0].bias.detach().tolist() == [1.0]


@pytest.mark.parametrize("kind", ["unicoil", "deepimpact"])
def test_one_backward_pass_reaches_head_and_backbone(kind, texts):
    model = build_impact_encoder(str(minilm_dir()), kind, max_length=48, seed=5, device="cpu")
    model.train()
    sample = texts[0][:3] + texts[1][:3]
    feats = model.preprocess(sample[:3], task="document")
    qfeats = model.preprocess(sample[3:], task="query")
    feats["task"], qfeats["task"] = "document", "query"   # as the trainer's collator stamps them
    d = model(feats)["sentence_embedding"]
    q = model(qfeats)["sentence_embedding"]
    loss = (q @ d.T).sum() + d.sum()
    loss.backward()
    head = model[0].sub_modules["document"][1] if kind == "deepimpact" else model[1]
    backbone = model[0].sub_modules["document"][0] if kind == "deepimpact" else model[0]
    for layer in head.mlp:
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    grads = {n: p.grad for n, p in backbone.named_parameters()}
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight",
                 "encoder.layer.5.output.dense.weight"):
        g = next(g for n, g in grads.items() if n.endswith(name))
        assert g is not None and g.abs().sum() > 0, name
    if kind == "unicoil":
        # queries sum and documents max: a training batch without a task is refused, not max-pooled
        with pytest.raises(ValueError, match="router_mapping"):
            model(model.preprocess(sample[3:]))


def test_lsr_encode_and_index_on_saved_models(saved, texts, tmp_path, capsys):
    """`lsr encode DIR --queries` (uniCOIL) and `lsr index --encoder DIR` + text search (DeepImpact)."""
    import lsr

    queries = texts[1][:6]
    q_tsv = tmp_path / "q.tsv"
    q_tsv.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(queries)), encoding="utf-8")
    st = load_impact_encoder(str(saved["unicoil"]), device="cpu")
    want = _dense(st.encode_query(queries, convert_to_tensor=True))
    out = tmp_path / "q.jsonl"
    assert main(["encode", str(saved["unicoil"]), "--queries", str(q_tsv), "--queries-output", str(out),
                 "--threads", "1", "--no-progress"]) == 0
    got = [json.loads(line)["vector"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert np.abs(_lsr_rows(got, want.shape[1], st.tokenizer.get_vocab()) - want).max() < 1e-5

    corpus = tmp_path / "c.jsonl"
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f, open(corpus, "w", encoding="utf-8") as w:
        for _, line in zip(range(15), f):
            w.write(line)
    ix = tmp_path / "ix"
    assert main(["index", "--encoder", str(saved["deepimpact"]), "--corpus", str(corpus), "-o", str(ix),
                 "--quantization", "float", "--threads", "1", "--no-progress"]) == 0
    index = lsr.Index.open(ix)
    assert index.manifest["counts"]["documents"] == 15
    capsys.readouterr()
    assert main(["search", "-i", str(ix), "-q", str(q_tsv), "--query-format", "text", "-k", "3",
                 "-o", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run").read_text().strip()
    di = load_impact_encoder(str(saved["deepimpact"]), device="cpu")
    want = _dense(di.encode_query(queries, convert_to_tensor=True))
    got = load_query_encoder(index.encoder).encode_queries(queries)
    assert np.abs(_lsr_rows(got, want.shape[1], None) - want).max() < 1e-5


def test_deepimpact_with_model_query_side(texts, tmp_path):
    """query_side="model": queries through the same backbone and head (no Router), query_length for queries."""
    model = build_impact_encoder(str(minilm_dir()), "deepimpact", max_length=48, query_max_length=12,
                                 query_side="model", seed=7, device="cpu")
    model.save(str(tmp_path / "m"))
    cfg = resolve_config(str(tmp_path / "m"))
    assert (cfg.doc.kind, cfg.query.kind, cfg.doc.max_length, cfg.query.max_length) == (
        "deepimpact", "deepimpact", 48, 12)
    queries = texts[1][:8]
    want = _dense(load_impact_encoder(str(tmp_path / "m"), device="cpu").encode_query(queries,
                                                                                       convert_to_tensor=True))
    enc = load_encoder(str(tmp_path / "m"), threads=1)
    got = enc.encode_queries(queries)
    assert enc.last_query_stats.truncated > 0
    assert np.abs(_lsr_rows(got, want.shape[1], None) - want).max() < 1e-5
    assert all(len(q) > 1 for q in got)


_edit = copy_with_config


def test_malformed_module_config_is_one_line_error(saved, tmp_path, capsys):
    cases = [
        (saved["unicoil"], "1_ImpactHead/config.json", {"kind": "coil"}, "ImpactHead kind 'coil'"),
        (saved["unicoil"], "1_ImpactHead/config.json", {"layer_sizes": [384, 2]}, "layer_sizes [384, 2]"),
        (saved["unicoil"], "1_ImpactHead/config.json", {"special_token_ids": [0]}, "special_token_ids [0]"),
        (saved["unicoil"], "1_ImpactHead/config.json", {"query_pooling": "mean"}, "query pooling 'mean'"),
        (saved["deepimpact"], "document_1_ImpactHead/config.json", {"embedding_dimension": 1000},
         "num_buckets 262144"),
        (saved["deepimpact"], "query_0_WordBag/config.json", {"max_words": "many"}, "max_words 'many'"),
    ]
    for i, (src, rel, change, needle) in enumerate(cases):
        bad = _edit(src, tmp_path / f"bad{i}", rel, **change)
        with pytest.raises(IncompatibleModelError) as e:
            resolve_config(str(bad))
        assert needle in str(e.value) and "\n" not in str(e.value)
    assert main(["encode", str(tmp_path / "bad0"), "--queries", str(tmp_path / "none.tsv"),
                 "--queries-output", str(tmp_path / "q.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsr: error:") and "ImpactHead kind 'coil'" in err[0]
    # the module itself refuses the same config
    with pytest.raises(ValueError, match="kind must be one of unicoil, deepimpact"):
        ImpactHead("coil", 384, [1], 30522)
