"""End to end: `lsr encode` -> `lsr index` -> `lsr search` with text queries.

The index records the encoder (`encoder.json` of the encoded collection), so
text queries are encoded at search time by the same query encoder: the run
must equal a search with the query vectors that `lsr encode --queries` wrote.
"""

from __future__ import annotations

import json

import lsr
from lsr.cli import main


def test_text_queries_are_encoded_with_the_index_encoder(tmp_path, splade_tiny, scifact_dir, capsys):
    corpus = tmp_path / "corpus.jsonl"
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f, open(corpus, "w", encoding="utf-8") as out:
        for i, line in zip(range(60), f):
            out.write(line)
    queries = tmp_path / "queries.tsv"
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        qs = [json.loads(x) for _, x in zip(range(8), f)]
    queries.write_text("".join(f"{q['_id']}\t{q['text']}\n" for q in qs), encoding="utf-8")

    assert main(["encode", str(splade_tiny), "--corpus", str(corpus), "-o", str(tmp_path / "vecs"),
                 "--queries", str(queries), "--queries-output", str(tmp_path / "qvecs.jsonl"),
                 "--no-progress"]) == 0
    assert main(["index", str(tmp_path / "vecs"), "-o", str(tmp_path / "ix"), "--no-progress"]) == 0
    ix = lsr.Index.open(tmp_path / "ix")
    assert ix.encoder is not None and ix.num_documents == 60
    capsys.readouterr()
    assert main(["search", "-i", str(tmp_path / "ix"), "-q", str(queries), "-k", "5",
                 "--query-format", "text", "-o", str(tmp_path / "text.run")]) == 0
    assert main(["search", "-i", str(tmp_path / "ix"), "-q", str(tmp_path / "qvecs.jsonl"), "-k", "5",
                 "-o", str(tmp_path / "vec.run")]) == 0
    text_run = (tmp_path / "text.run").read_text().splitlines()
    assert len(text_run) == 8 * 5
    assert text_run == (tmp_path / "vec.run").read_text().splitlines()
    # the Python API takes text too
    hits = lsr.Searcher(ix).search(qs[0]["text"], k=5, query_id=qs[0]["_id"])
    assert [f"{h.query_id} Q0 {h.doc_id} {h.rank}" for h in hits] == [" ".join(x.split()[:4]) for x in text_run[:5]]
