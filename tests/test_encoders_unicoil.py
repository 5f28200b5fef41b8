"""uniCOIL on the real all-MiniLM-L6-v2 backbone with a seeded head, against the formula.

Reference: ``AutoModel`` last hidden states ``h_t`` of each text alone,
``w_t = ReLU(W h_t + b)``, then per WordPiece the max (documents) or sum
(queries, as Pyserini does) over its occurrences; special tokens excluded.
"""

from __future__ import annotations

import json
import shutil

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
    splade_tiny,
)
from lsr.encoders import (
    EncoderConfig,
    EncoderConfigError,
    IncompatibleModelError,
    SideConfig,
    load_encoder,
)
from lsr.encoders.errors import ModelLoadError


def unicoil_reference(model_dir, head: dict, texts, max_length, reduce="max", prefix="tok_proj"):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    w, b = head[f"{prefix}.weight"], head[f"{prefix}.bias"]
    special = set(tok.all_special_ids)
    out = []
    with torch.inference_mode():
        for t in texts:
            if not t.strip():
                out.append({})
                continue
            enc = tok([t], truncation=True, max_length=max_length, return_tensors="pt")
            h = model(**enc).last_hidden_state[0]
            weights = torch.relu(h @ w.t() + b).squeeze(-1)
            vec: dict[str, float] = {}
            for i, tid in enumerate(enc["input_ids"][0].tolist()):
                if tid in special:
                    continue
                token = tok.convert_ids_to_tokens(tid)
                x = float(weights[i])
                vec[token] = max(vec.get(token, 0.0), x) if reduce == "max" else vec.get(token, 0.0) + x
            out.append({k: v for k, v in vec.items() if v > 0})
    return out


def unicoil_config(model, head_file=None, doc_len=128, query_len=32, **kw) -> EncoderConfig:
    hf = str(head_file) if head_file else None
    return EncoderConfig(name="u", type="unicoil",
                         doc=SideConfig(kind="unicoil", model=str(model), head_file=hf, max_length=doc_len, **kw),
                         query=SideConfig(kind="unicoil", model=str(model), head_file=hf, max_length=query_len,
                                          pooling="sum", **kw))


@pytest.fixture(scope="module")
def enc(minilm, heads_dir):
    return load_encoder(unicoil_config(minilm, heads_dir / "unicoil.safetensors"))


def test_unicoil_matches_reference(enc, minilm, heads_dir):
    head = read_head(heads_dir / "unicoil.safetensors")
    texts = [t for _, t in scifact_docs(8)] + TRICKY_TEXTS + [""]
    got = enc.encode_documents(texts, batch_size=3)
    assert_vectors_close(got, unicoil_reference(minilm, head, texts, 128))
    assert all(got[:8]) and got[-1] == {}
    qs = [q for _, q in scifact_queries(10)] + ["dog dog dog bites dog"]
    assert_vectors_close(enc.encode_queries(qs, batch_size=4), unicoil_reference(minilm, head, qs, 32, "sum"))
    vocab = set(enc.doc_side.hf_tokenizer.get_vocab())
    assert all(set(v) <= vocab and not ({"[CLS]", "[SEP]", "[PAD]"} & set(v)) for v in got)


def test_expansion_field_is_appended(enc):
    texts = ["the cat sat on the mat", "proteins fold"]
    exps = ["where did the cat sit", None]
    got = enc.encode_documents(texts, expansions=exps)
    assert enc.last_doc_stats.expanded == 1 and "where" in got[0]
    assert_vectors_close(got, enc.encode_documents(["the cat sat on the mat where did the cat sit", "proteins fold"]))


def test_head_inside_checkpoint_with_prefix(tmp_path, minilm, heads_dir, enc):
    """A Pyserini-style checkpoint: coil_encoder.bert.* backbone and coil_encoder.tok_proj.* head in one file."""
    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "unicoil-ckpt"
    ckpt.mkdir()
    sd = {f"coil_encoder.bert.{k}": v for k, v in load_file(str(minilm / "model.safetensors")).items()}
    sd.update({f"coil_encoder.{k}": v for k, v in read_head(heads_dir / "unicoil.safetensors").items()})
    save_file(sd, str(ckpt / "model.safetensors"))
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm / name, ckpt / name)
    e2 = load_encoder(unicoil_config(ckpt))
    texts = [t for _, t in scifact_docs(4)]
    assert_vectors_close(e2.encode_documents(texts), enc.encode_documents(texts))
    info = json.loads(json.dumps(e2.describe()))
    assert info["head"]["doc"]["layers"] == [[384, 1]] and info["head"]["doc"]["file"] is None
    assert info["doc"]["sha256"]


def test_bad_heads_are_clear_errors(tmp_path, minilm, heads_dir):
    from safetensors.torch import save_file

    with pytest.raises(IncompatibleModelError, match="no head weights"):
        load_encoder(unicoil_config(minilm)).encode_documents(["x"])
    wrong = tmp_path / "wrong.safetensors"
    save_file({"tok_proj.weight": torch.zeros(1, 128), "tok_proj.bias": torch.zeros(1)}, str(wrong))
    with pytest.raises(IncompatibleModelError, match="shape"):
        load_encoder(unicoil_config(minilm, wrong)).encode_documents(["x"])
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_encoder(unicoil_config(minilm, tmp_path / "nope.safetensors")).encode_documents(["x"])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="cannot read weights"):
        load_encoder(unicoil_config(minilm, garbage)).encode_documents(["x"])
    with pytest.raises(EncoderConfigError, match="positions"):
        load_encoder(unicoil_config(minilm, heads_dir / "unicoil.safetensors", doc_len=4096)).encode_documents(["x"])
