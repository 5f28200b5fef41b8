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


def test_scifact_subset_end_to_end_equals_brute_force(tmp_path, splade_tiny, scifact_dir):
    """encode -> index (float and 8-bit) -> search text queries -> nDCG@10 vs a float64 brute force."""
    import warnings

    from lsr.eval import evaluate
    from benchmarks.bruteforce import brute_force_run

    qrels: dict[str, dict[str, int]] = {}
    for line in (scifact_dir / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, r = line.split("\t")
        qrels.setdefault(q, {})[d] = int(r)
    # the relevant documents of the first 25 judged queries, plus other documents, 150 in all
    qids = list(qrels)[:25]
    wanted = {d for q in qids for d in qrels[q]}
    corpus = tmp_path / "corpus.jsonl"
    n = 0
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f, open(corpus, "w", encoding="utf-8") as out:
        for line in f:
            doc = json.loads(line)
            if doc["_id"] in wanted or n < 150 - len(wanted):
                out.write(line)
                n += doc["_id"] not in wanted
    texts = {}
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if q["_id"] in qids:
                texts[q["_id"]] = q["text"]
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"id": q, "text": t}) + "\n" for q, t in texts.items()))
    assert main(["encode", str(splade_tiny), "--corpus", str(corpus), "-o", str(tmp_path / "vecs"),
                 "--no-progress"]) == 0
    sub_qrels = {q: qrels[q] for q in qids}
    values = {}
    for quant in ("float", "max"):
        ix_dir = tmp_path / f"ix-{quant}"
        assert main(["index", str(tmp_path / "vecs"), "-o", str(ix_dir), "--quantization", quant,
                     "--no-progress"]) == 0
        run = tmp_path / f"{quant}.run"
        assert main(["search", "-i", str(ix_dir), "-q", str(queries), "-k", "100", "-o", str(run)]) == 0
        values[quant] = evaluate(str(run), sub_qrels, ["nDCG@10"]).aggregate["nDCG@10"]
    from lsr.encoders import load_query_encoder

    qvecs = load_query_encoder(lsr.Index.open(tmp_path / "ix-float").encoder).encode_queries(list(texts.values()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        brute = brute_force_run(tmp_path / "vecs", list(zip(texts, qvecs)), k=100)
    ref = evaluate(brute, sub_qrels, ["nDCG@10"]).aggregate["nDCG@10"]
    assert ref > 0.3                                  # a real model finds the relevant abstracts
    assert abs(values["float"] - ref) <= 1e-4
    assert abs(values["max"] - ref) <= 0.005          # 8-bit quantisation costs at most 0.005
