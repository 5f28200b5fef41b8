"""``lsr rerank`` with the real MaxSim reranker: the precomputed document store built from the CLI, used
from the CLI, equal to reranking from the texts; and bad input around it."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lsr
from benchmarks.rerankers import minilm_colbert
from lsr.cli import main


@pytest.fixture(scope="module")
def colbert(tmp_path_factory):
    return minilm_colbert(str(tmp_path_factory.mktemp("cache")), dim=16, seed=3)


def test_embed_docs_then_rerank_from_the_store(colbert, scifact_dir, tmp_path, capsys):
    docs = tmp_path / "c.jsonl"
    lines = (scifact_dir / "corpus.jsonl").read_text().splitlines()[:12]
    docs.write_text("\n".join(lines) + "\n")
    ids = [json.loads(x)["_id"] for x in lines]
    q = tmp_path / "q.tsv"
    q.write_text("a\tcancer cells in mice\nb\tvitamin D\n")
    run = tmp_path / "run.trec"
    run.write_text("".join(f"{qid} Q0 {d} {r + 1} {20 - r} x\n" for qid in "ab" for r, d in enumerate(ids[:8])))
    base = ["rerank", "--reranker", "maxsim", "--model", colbert, "--no-progress"]
    store = tmp_path / "store"
    assert main(base + ["--docs", str(docs), "--embed-docs", str(store)]) == 0
    assert json.loads((store / "manifest.json").read_text())["num_docs"] == 12
    # an existing store is replaced only with --overwrite
    assert main(base + ["--docs", str(docs), "--embed-docs", str(store)]) == 2
    assert "exists" in capsys.readouterr().err
    from_text, from_store = tmp_path / "t.trec", tmp_path / "s.trec"
    assert main(base + ["--run", str(run), "--queries", str(q), "--docs", str(docs), "--depth", "5",
                        "-o", str(from_text)]) == 0
    assert main(base + ["--run", str(run), "--queries", str(q), "--set", f"doc_embeddings={store}", "--depth", "5",
                        "-o", str(from_store)]) == 0
    t, s = lsr.Results.read_trec(from_text), lsr.Results.read_trec(from_store)
    assert t.doc_ids == s.doc_ids and np.allclose(t.scores, s.scores, atol=1e-4)
    assert len(t) == 16 and t.doc_ids[5:8] == ids[5:8]          # the tail below depth 5 in first-stage order
    capsys.readouterr()
    rc = main(["rerank", "--reranker", "sft", "--model", colbert, "--docs", str(docs), "--embed-docs",
               str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["lsr: error: --embed-docs stores MaxSim document vectors; the sft reranker has none"]
    rc = main(base + ["--run", str(run), "--queries", str(q)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["lsr: error: give --docs (the documents' text) or --set doc_embeddings=DIR"]


def test_checkpoint_layout_errors_are_one_line(colbert, tmp_path, capsys):
    from encoders_helpers import minilm_dir

    q = tmp_path / "q.tsv"
    q.write_text("a\tcancer\n")
    run = tmp_path / "run.trec"
    run.write_text("a Q0 d1 1 2.0 x\n")
    docs = tmp_path / "d.tsv"
    docs.write_text("d1\tcells\n")
    base = ["rerank", "--reranker", "maxsim", "--run", str(run), "--queries", str(q), "--docs", str(docs)]
    for extra, msg in ((["--model", colbert, "--set", "layout=nonsense"], "layout"),
                       (["--model", str(minilm_dir())], "followed by Dense modules"),
                       (["--model", str(minilm_dir()), "--set", "layout=stanford"], "the weights lack linear.weight")):
        rc = main(base + extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("lsr: error: ") and msg in err[0], (extra, err)
