"""The sharded index (lsr.index.sharded): layout, exact equality with the unsharded index for every exact
query processor, the merge, bad input, and the CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import lsr
from lsr.cli import main
from lsr.config import ALGORITHMS, IndexConfig, QuantizationConfig
from lsr.errors import IndexFormatError, InputError
from lsr.index.sharded import (ShardedIndex, ShardedSearcher, ShardStatus, ShardsUnavailable, merge_topk,
                               shard_index)

EXACT = [a for a in ALGORITHMS if a != "approx"]
TAAT = ("auto", "exhaustive", "blockmax", "filtered")   # float sums in one order whatever the shard


def _docs(seed: int, n: int = 700, vocab: int = 60, integral: bool = True):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = int(rng.integers(0, 9))   # some documents are empty
        terms = rng.choice(vocab, m, replace=False)
        out.append((f"d{i}", {f"t{j}": (float(rng.integers(1, 30)) / 10 if integral else float(rng.random() * 3))
                              for j in terms}))
    return out


def _queries(seed: int, n: int = 25, vocab: int = 60):
    rng = np.random.default_rng(seed)
    qs = [(f"q{i}", {f"t{j}": float(rng.integers(1, 9)) for j in rng.choice(vocab, int(rng.integers(1, 6)),
                                                                           replace=False)}) for i in range(n)]
    qs.append(("common", {"t1": 1.0}))   # many equal scores: ties across shard boundaries
    qs.append(("unknown", {"nope": 1.0}))
    return qs


@pytest.fixture(scope="module")
def quantised(tmp_path_factory):
    """A random 8-bit index (with the bp reorder, so shards cut the reordered doc order) and its shards."""
    d = tmp_path_factory.mktemp("sharded")
    ix = lsr.build_index(_docs(1), d / "ix", IndexConfig(reorder="bp", range_block_docs=8, block_size=8))
    return ix, {s: shard_index(ix.path, d / f"s{s}", s) for s in (1, 3, 7)}


def _same(a: lsr.Results, b: lsr.Results) -> None:
    assert a.query_ids == b.query_ids
    assert a.doc_ids == b.doc_ids
    assert a.scores.dtype == b.scores.dtype
    assert np.array_equal(a.scores, b.scores)
    assert np.array_equal(a.ranks, b.ranks)


@pytest.mark.parametrize("shards", [1, 3, 7])
def test_sharded_search_equals_unsharded_for_every_exact_algorithm(quantised, shards):
    ix, sharded = quantised
    sh = sharded[shards]
    queries = _queries(2)
    with pytest.warns(UserWarning, match="unknown"):
        for algo in EXACT:
            for k in (10, 1000):
                want = lsr.Searcher(ix, algorithm=algo).search_batch(queries, k=k)
                s = lsr.Searcher(sh, algorithm=algo)
                assert isinstance(s, ShardedSearcher)
                _same(s.search_batch(queries, k=k, threads=2), want)
                for qid, q in queries[:3] + queries[-2:]:
                    _same(s.search(q, k=k, query_id=qid), lsr.Searcher(ix, algorithm=algo).search(q, k=k, query_id=qid))
    got, status = s.search_batch_with_status(queries[:3], k=10)
    _same(got, lsr.Searcher(ix, algorithm=algo).search_batch(queries[:3], k=10))
    assert status == ShardStatus(shards, tuple(range(shards)), ()) and status.complete


def test_float_and_16_bit_indexes(tmp_path):
    """One global quantisation: 16-bit impacts equal exactly; float impacts equal exactly for the
    term-at-a-time processors, whose sums run in query term order. The document-at-a-time ones sum a
    document's terms in an order that depends on the top-k threshold (as they already differ from
    exhaustive scoring in the last bit unsharded), so there the scores agree to float32 rounding."""
    docs = _docs(3, integral=False)
    queries = _queries(4)[:-1]
    for q in (QuantizationConfig(bits=16), QuantizationConfig(method="float")):
        (tmp_path / q.method).mkdir()
        ix = lsr.build_index(docs, tmp_path / q.method / "ix", IndexConfig(quantization=q))
        sh = shard_index(ix.path, tmp_path / q.method / "s", 5)
        assert sh.quantization == ix.quantization and sh.manifest["impact_dtype"] == ix.manifest["impact_dtype"]
        for algo in EXACT:
            want = lsr.Searcher(ix, algorithm=algo).search_batch(queries, k=50)
            got = lsr.Searcher(sh, algorithm=algo).search_batch(queries, k=50)
            if not ix.is_float or algo in TAAT:
                _same(got, want)
            else:
                assert got.query_ids == want.query_ids and got.scores.dtype == want.scores.dtype
                np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)


def test_layout_and_manifest(quantised):
    ix, sharded = quantised
    sh = sharded[3]
    root = sh.path
    assert sorted(os.listdir(root)) == ["manifest.json", "shard-00000", "shard-00001", "shard-00002"]
    with open(os.path.join(root, "manifest.json"), encoding="utf-8") as f:
        m = json.load(f)
    assert m["format"] == "lsr-sharded-index" and m["format_version"] == 1
    assert m["counts"]["documents"] == ix.num_documents and m["counts"]["postings"] == ix.num_postings
    assert m["quantization"] == ix.quantization and m["encoder"] == ix.encoder
    assert [(e["doc_start"], e["doc_end"]) for e in m["shards"]] == [(0, 233), (233, 466), (466, 700)]
    from lsr.index.format import sha256_file

    all_ids = []
    for e in m["shards"]:
        shard = lsr.Index.open(os.path.join(root, e["path"]))
        assert type(shard) is lsr.Index
        assert shard.terms == ix.terms and shard.manifest["quantization"] == ix.quantization
        assert shard.num_documents == e["doc_end"] - e["doc_start"] and shard.num_postings == e["postings"]
        assert e["manifest_sha256"] == sha256_file(os.path.join(root, e["path"], "manifest.json"))
        all_ids += shard.doc_ids(np.arange(shard.num_documents))
        # each term's postings are the source's postings in the shard's range
        for t in ("t1", "t7", "t59"):
            src_docs, src_imp = ix.postings(t)
            keep = (src_docs >= e["doc_start"]) & (src_docs < e["doc_end"])
            docs, imp = shard.postings(t)
            assert np.array_equal(docs, src_docs[keep] - e["doc_start"]) and np.array_equal(imp, src_imp[keep])
    assert all_ids == ix.doc_ids(np.arange(ix.num_documents))
    assert sh.doc_ids([0, 699, 233, 232]) == ix.doc_ids([0, 699, 233, 232])
    assert sh.internal_id(ix.doc_id(500)) == 500
    assert np.array_equal(sh.term_max, ix.term_max)
    opened = lsr.Index.open(root)
    assert isinstance(opened, ShardedIndex) and opened.num_shards == 3


def test_merge_topk_against_a_plain_sort():
    rng = np.random.default_rng(0)
    for trial in range(200):
        nq, parts, k = int(rng.integers(0, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 12))
        is_float = trial % 2 == 1
        docs, scores, counts, pool = [], [], [], [[] for _ in range(nq)]
        start = 0
        for _ in range(parts):
            width, n_docs = int(rng.integers(0, 8)), int(rng.integers(1, 30))
            d = np.zeros((nq, width), np.int32)
            s = np.zeros((nq, width), np.float32 if is_float else np.int32)
            c = np.zeros(nq, np.int64)
            for q in range(nq):
                c[q] = int(rng.integers(0, min(width, n_docs) + 1))
                local = np.sort(rng.choice(n_docs, c[q], replace=False))
                vals = rng.integers(1, 4, c[q])   # few values: many ties
                sc = (vals / 4).astype(np.float32) if is_float else vals.astype(np.int32)
                rank = np.lexsort((local, -sc.astype(np.float64)))   # each part in rank order, as searchers give it
                local, sc = local[rank], sc[rank]
                d[q, :c[q]] = local
                s[q, :c[q]] = sc
                d[q, c[q]:] = 999   # garbage past the count
                pool[q] += [(float(x), start + int(y)) for x, y in zip(sc, local)]
            docs.append(d.astype(np.int64) + start)
            scores.append(s)
            counts.append(c)
            start += n_docs
        md, ms, mc = merge_topk(docs, scores, counts, k)
        assert md.shape == (nq, k) and ms.shape == (nq, k) and ms.dtype == scores[0].dtype
        for q in range(nq):
            want = sorted(pool[q], key=lambda h: (-h[0], h[1]))[:k]
            assert mc[q] == len(want)
            assert [(float(s), int(d)) for s, d in zip(ms[q, :mc[q]], md[q, :mc[q]])] == want


def test_approx_runs_on_shards(quantised):
    ix, sharded = quantised
    queries = _queries(5)[:-1]
    want = lsr.Searcher(ix, algorithm="exhaustive").search_batch(queries, k=10).by_query()
    got = lsr.Searcher(sharded[3], algorithm="approx").search_batch(queries, k=10).by_query()
    hits = sum(len({h.doc_id for h in got.get(q, [])} & {h.doc_id for h in want[q]}) for q in want)
    assert hits / sum(len(v) for v in want.values()) > 0.5


def test_bad_sharded_indexes(quantised, tmp_path):
    import shutil

    _, sharded = quantised
    src = sharded[3].path

    def copy(name):
        dst = tmp_path / name
        shutil.copytree(src, dst)
        return dst

    d = copy("missing")
    shutil.rmtree(d / "shard-00001")
    with pytest.raises(IndexFormatError, match="shard 1 .*missing"):
        lsr.Index.open(d)
    d = copy("checksum")
    mp = d / "shard-00002" / "manifest.json"
    mp.write_text(mp.read_text().replace('"created_by"', '"created_by" ', 1))
    with pytest.raises(IndexFormatError, match="checksum mismatch"):
        lsr.Index.open(d)
    # a shard with another quantisation, its checksum updated so that only the quantisation differs
    d = copy("quant")
    mp = d / "shard-00000" / "manifest.json"
    m = json.loads(mp.read_text())
    m["quantization"]["scale"] = m["quantization"]["scale"] * 2
    mp.write_text(json.dumps(m))
    top = json.loads((d / "manifest.json").read_text())
    from lsr.index.format import sha256_file

    top["shards"][0]["manifest_sha256"] = sha256_file(str(mp))
    (d / "manifest.json").write_text(json.dumps(top))
    with pytest.raises(IndexFormatError, match="quantization differs"):
        lsr.Index.open(d)
    d = copy("version")
    top = json.loads((d / "manifest.json").read_text())
    top["format_version"] = 99
    (d / "manifest.json").write_text(json.dumps(top))
    with pytest.raises(IndexFormatError, match="version 99 is not supported"):
        lsr.Index.open(d)
    d = copy("ranges")
    top = json.loads((d / "manifest.json").read_text())
    top["shards"][1]["doc_start"] += 1
    (d / "manifest.json").write_text(json.dumps(top))
    with pytest.raises(IndexFormatError, match="does not continue"):
        lsr.Index.open(d)
    d = copy("escape")
    top = json.loads((d / "manifest.json").read_text())
    top["shards"][1]["path"] = "../elsewhere"
    (d / "manifest.json").write_text(json.dumps(top))
    with pytest.raises(IndexFormatError, match="not a directory name"):
        lsr.Index.open(d)
    # the CLI: one line, exit 2
    for name in ("missing", "checksum", "quant", "version"):
        q = tmp_path / "q.tsv"
        q.write_text("q1\tt1:1\n")
        assert main(["search", "-i", str(tmp_path / name), "-q", str(q)]) == 2


def test_bad_split_requests(quantised, tmp_path):
    ix, sharded = quantised
    with pytest.raises(InputError, match="at most one shard a document"):
        shard_index(ix.path, tmp_path / "many", ix.num_documents + 1)
    with pytest.raises(InputError, match="positive integer"):
        shard_index(ix.path, tmp_path / "zero", 0)
    with pytest.raises(InputError, match="already a sharded index"):
        shard_index(sharded[3].path, tmp_path / "again", 2)
    with pytest.raises(InputError, match="already exists"):
        shard_index(ix.path, sharded[3].path, 2)
    with pytest.raises(InputError, match="is the input|contains the input"):
        shard_index(ix.path, ix.path, 2, overwrite=True)
    # a shard of only empty documents
    docs = [("a", {"x": 1.0}), ("b", {}), ("c", {})]
    small = lsr.build_index(docs, tmp_path / "small")
    with pytest.raises(InputError, match="no postings"):
        shard_index(small.path, tmp_path / "empty-shard", 3)
    assert sorted(os.listdir(tmp_path)) == ["small"]   # nothing left behind


def test_overwrite_and_interrupted_split(quantised, tmp_path, monkeypatch):
    ix, _ = quantised
    out = tmp_path / "out"
    shard_index(ix.path, out, 2)
    first = json.loads((out / "manifest.json").read_text())["created_at"]
    import lsr.index.sharded as sharded_mod

    def boom(*a, **kw):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(sharded_mod, "_finish_shard", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        shard_index(ix.path, out, 3, overwrite=True)
    with pytest.raises(RuntimeError, match="interrupted"):
        shard_index(ix.path, tmp_path / "new", 3)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["out"]   # the old sharded index untouched, nothing else left
    assert lsr.Index.open(out).num_shards == 2
    assert json.loads((out / "manifest.json").read_text())["created_at"] == first
    sh = shard_index(ix.path, out, 4, overwrite=True)
    assert sh.num_shards == 4 and sorted(os.listdir(tmp_path)) == ["out"]
    # overwrite refuses a directory holding something a build did not write
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="notes.txt"):
        shard_index(ix.path, out, 2, overwrite=True)


def test_cli_index_search_info(tmp_path, capsys):
    docs = tmp_path / "docs.jsonl"
    with open(docs, "w") as f:
        for did, vec in _docs(7, n=300):
            f.write(json.dumps({"id": did, "vector": vec}) + "\n")
    q = tmp_path / "q.tsv"
    q.write_text("q1\tt1:2 t2:1\nq2\tt5:1\n")
    assert main(["index", str(docs), "-o", str(tmp_path / "plain"), "--no-progress"]) == 0
    assert main(["index", str(docs), "-o", str(tmp_path / "sh"), "--shards", "3", "--no-progress"]) == 0
    assert "in 3 shard(s)" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl", "plain", "q.tsv", "sh"]
    assert main(["index", str(docs), "-o", str(tmp_path / "sh"), "--shards", "2", "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["index", str(docs), "-o", str(tmp_path / "sh"), "--shards", "2", "--overwrite",
                 "--no-progress"]) == 0
    assert main(["index", str(docs), "-o", str(tmp_path / "one"), "--shards", "1", "--no-progress"]) == 0
    assert isinstance(lsr.Index.open(tmp_path / "one"), ShardedIndex)
    capsys.readouterr()
    runs = {}
    for name in ("plain", "sh", "one"):
        assert main(["search", "-i", str(tmp_path / name), "-q", str(q), "-k", "20"]) == 0
        runs[name] = capsys.readouterr().out
    assert runs["plain"] == runs["sh"] == runs["one"] and runs["plain"].count("\n") > 20
    assert main(["info", str(tmp_path / "sh")]) == 0
    out = capsys.readouterr().out
    assert "2 shard(s)" in out and "shard-00001" in out and "checksums OK" in out


def test_shards_unavailable_carries_its_status():
    st = ShardStatus(4, (0, 2), (1, 3))
    assert not st.complete and st.to_dict()["missing"] == [1, 3]
    e = ShardsUnavailable(st)
    assert e.status is st and "shard 1, 3" in str(e) and e.exit_code == 2


@pytest.mark.slow
def test_real_scifact_index_every_exact_algorithm(scifact_splade_index, scifact_dir, tmp_path):
    """The real splade-tiny SciFact index split into 1, 3 and 7 shards: text queries through the recorded
    encoder, every exact algorithm, k 10 and 1000, identical hits and scores."""
    ix = lsr.Index.open(scifact_splade_index)
    texts = []
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            texts.append((r["_id"], r["text"]))
            if len(texts) == 60:
                break
    plain = lsr.Searcher(ix)
    vectors = dict(zip((qid for qid, _ in texts), plain._encode_texts([t for _, t in texts])))
    for shards in (1, 3, 7):
        sh = shard_index(ix.path, tmp_path / f"s{shards}", shards)
        _same(lsr.Searcher(sh).search_batch(texts[:10], k=100), plain.search_batch(texts[:10], k=100))
        for algo in EXACT:
            for k in (10, 1000):
                _same(lsr.Searcher(sh, algorithm=algo).search_batch(vectors, k=k),
                      lsr.Searcher(ix, algorithm=algo).search_batch(vectors, k=k))


def test_stored_text_and_doc_lengths_follow_their_documents(tmp_path):
    docs = _docs(9, n=120)
    with lsr.IndexBuilder(tmp_path / "ix", IndexConfig(reorder="bp"), store_text=True) as b:
        for did, vec in docs:
            b.add(did, vec, text=f"text of {did} " * (len(did) % 3 + 1))
    ix = b.index
    sh = shard_index(ix.path, tmp_path / "s", 4)
    assert sh.has_text
    for doc in (0, 29, 30, 119):
        assert sh.doc_text(doc) == ix.doc_text(doc) and sh.doc_text(ix.doc_id(doc)) == ix.doc_text(doc)
    got = lsr.Searcher(sh).search({"t3": 1.0}, k=5)
    assert [sh.doc_text(h.doc_id) for h in got] == [ix.doc_text(h.doc_id) for h in got]
    from lsr.rerank.sources import open_docs

    assert open_docs(sh).texts([ix.doc_id(7)]) == {ix.doc_id(7): ix.doc_text(7)}


def test_split_progress_counts_every_posting(quantised, tmp_path, capsys):
    """shard_index(progress=True) off a terminal: one closing line with every posting of the source
    (lines every 30 s before it on a long split); silent without progress."""
    src, _ = quantised
    capsys.readouterr()
    shard_index(src.path, tmp_path / "quiet", 3)
    assert capsys.readouterr().err == ""
    shard_index(src.path, tmp_path / "shown", 3, progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("splitting into 3 shards: ")
    assert f"{src.num_postings}/{src.num_postings} postings" in lines[0].replace(",", ""), lines[0]
