"""Rebuild the embedded demo data from a BEIR SciFact directory (maintainers only).

    python -m lsr.data.build_demo SCIFACT_DIR      # BEIR SciFact, unzipped

SCIFACT_DIR is BEIR SciFact in its original layout (corpus.jsonl,
queries.jsonl, qrels/test.tsv). Chooses 1,000 abstracts (every document
judged for a test query, then the first others in corpus order, kept in
corpus order) and writes, into the package's data folder (or ``--output``):

* ``scifact-1k.corpus.jsonl.gz``: those abstracts as BEIR corpus lines
  (``_id``, ``title``, ``text``), what ``lsr encode`` / ``lsr index --encoder``
  read;
* ``scifact-test.queries.jsonl.gz``: the 300 test queries (``_id``, ``text``),
  what ``lsr search --query-format text`` reads;
* ``scifact-1k.qrels.tsv``: the test qrels (TREC format; every judged
  document is among the 1,000).

Only the standard library is used; the gzip files carry no time stamp, so a
rebuild from the same input gives the same bytes.
SciFact: abstracts ODC-By 1.0, claims and qrels CC BY 4.0 (Wadden et al., 2020).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os

from lsr.data import CORPUS, QRELS, QUERIES

N_DOCS = 1000


def _read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _gzip_lines(records: list[dict]) -> bytes:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def build(scifact_dir: str, out_dir: str) -> dict[str, int]:
    """Write the three demo files into ``out_dir``; returns the counts written."""
    with open(os.path.join(scifact_dir, "qrels", "test.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    qrels = rows[1:] if rows and rows[0][0] == "query-id" else rows
    corpus = _read_jsonl(os.path.join(scifact_dir, "corpus.jsonl"))
    judged = {d for _, d, _ in qrels}
    missing = judged - {r["_id"] for r in corpus}
    if missing:
        raise SystemExit(f"{scifact_dir}: {len(missing)} judged documents are not in corpus.jsonl")
    chosen = {r["_id"] for r in corpus if r["_id"] in judged}
    for r in corpus:
        if len(chosen) >= N_DOCS:
            break
        chosen.add(r["_id"])
    docs = [{"_id": r["_id"], "title": r.get("title", ""), "text": r["text"]} for r in corpus if r["_id"] in chosen]
    qids = {q for q, _, _ in qrels}
    queries = [{"_id": q["_id"], "text": q["text"]}
               for q in _read_jsonl(os.path.join(scifact_dir, "queries.jsonl")) if q["_id"] in qids]
    os.makedirs(out_dir, exist_ok=True)
    _write_atomic(os.path.join(out_dir, CORPUS), _gzip_lines(docs))
    _write_atomic(os.path.join(out_dir, QUERIES), _gzip_lines(queries))
    _write_atomic(os.path.join(out_dir, QRELS),
                  "".join(f"{q}\t0\t{d}\t{rel}\n" for q, d, rel in qrels).encode("utf-8"))
    return {"documents": len(docs), "queries": len(queries), "qrels": len(qrels)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Rebuild lsr's embedded SciFact demo data from a BEIR SciFact directory.")
    p.add_argument("scifact_dir", help="BEIR SciFact directory (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    p.add_argument("-o", "--output", default=os.path.dirname(os.path.abspath(__file__)),
                   help="where to write the files (default: the folder of this module)")
    args = p.parse_args(argv)
    counts = build(args.scifact_dir, args.output)
    print(", ".join(f"{v} {k}" for k, v in counts.items()), "->", args.output)


if __name__ == "__main__":
    main()
