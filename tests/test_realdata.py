"""The real-encoder benchmark collection (benchmarks.realdata): text extraction, passage cutting, encoding.

The extractors and the cutter run on small inline samples written like the
real package files; the encoding test runs real MS MARCO passages and
dev/small queries through the real splade-tiny model. No network, no apt.
"""

from __future__ import annotations

import gzip
import json
import os
import warnings

import pytest

import lsr
from benchmarks import realdata as R
from lsr.io import iter_vectors, read_encoder_info, read_queries

SPHINX_PAGE = """<!DOCTYPE html>
<html><head><title>os.path &#8212; Common pathname manipulations</title>
<script>var DOCUMENTATION_OPTIONS = {};</script><style>body { color: red; }</style></head>
<body>
<div class="related" role="navigation"><ul><li><a href="index.html">Python 3.11 Documentation</a> &#187;</li></ul></div>
<div class="body" role="main">
<section id="module-os.path">
<h1>os.path &#8212; Common pathname manipulations<a class="headerlink" href="#module-os.path">&#182;</a></h1>
<p>This module implements some useful functions on pathnames. To read or write files see
<a class="reference internal" href="functions.html#open"><code class="xref py py-func docutils literal">
<span class="pre">open()</span></code></a>, and for accessing the filesystem see the <code>os</code> module.
The path parameters can be passed as strings, or bytes, or any object implementing the
<code>os.PathLike</code> protocol.</p>
<div class="highlight-python3 notranslate"><div class="highlight"><pre><span></span>&gt;&gt;&gt; import os
&gt;&gt;&gt; os.path.join("a", "b")
</pre></div></div>
<p>Unlike a Unix shell, Python does not do any <em>automatic</em> path expansions. Functions such as
<code>expanduser()</code> and <code>expandvars()</code> can be invoked explicitly when an application
desires shell-like path expansion &amp; more.</p>
<ul><li><p>Return the base name of pathname <em>path</em>.</p></li><li><p>Return the directory name.</p></li></ul>
</section></div>
<div class="sphinxsidebar" role="navigation"><h3>Previous topic</h3><p>pathlib &#8212; Object-oriented filesystem paths</p></div>
<div class="footer">&#169; Copyright 2001-2023, Python Software Foundation.</div>
</body></html>
"""

POD_DOC = """=head1 NAME

perlfilter - Source Filters

=head1 DESCRIPTION

This article is about a little-known feature of Perl called
I<source filters>. Source filters alter the program text of a module
before Perl sees it, much as a C preprocessor alters the source text of
a C program before the compiler sees it. Use C<< $a <=> $b >> to compare, see L<perlop/"Equality Operators">
and L<the manual|perlfunc>. X<filter>The E<lt>STDINE<gt> handle is read S<line by line>.

    file -------> parser

=over 4

=item 1.

Although there can be any number of source streams in existence at any
given time, only one will be active.

=back

=begin html

<p>Not for text readers.</p>

=end html

=cut

sub not_pod { 1 }

=pod

Back in POD after code.

=cut
"""

RST_DOC = """.. SPDX-License-Identifier: GPL-2.0

==================
PCI Error Recovery
==================

:Authors: - Linas Vepstas <linasvepstas@gmail.com>

Many PCI bus controllers are able to detect a variety of hardware
PCI errors on the bus, such as parity errors on the data and address
buses. See :ref:`the recovery API <pci-recovery>` and ``struct pci_driver``
for **details**, or `the web page <https://example.org/>`_.

This structure has the form::

\tstruct pci_error_handlers
\t{
\t\tint (*error_detected)(struct pci_dev *dev, pci_channel_state_t);
\t};

.. code-block:: c

   int x = 1;

.. note::
   The driver must not sleep in this callback.

+--------+--------+
| a      | b      |
+--------+--------+

- First item of a list.
- Second item of a list.
"""

GCIDE_ENTRY = """Calorimeter \\Cal`o*rim"e*ter\\, n. [L. calor heat + -meter; cf.
   F. calorim[`e]tre.]
   1. (Physiol.) An apparatus for measuring the amount of heat
      contained in bodies or developed by some mechanical or
      chemical process, as friction, chemical combination,
      combustion, etc. For combustion processes, a {bomb
      calorimeter} may be used.
      [1913 Webster +PJC]

   2. (Engineering) An apparatus for measuring the proportion of
      unevaporated water contained in steam.
      [1913 Webster]
"""

FOLDOC_ENTRY = """ALTAC

   <language> An extended {Fortran II} for the {Philco 2000},
   built on {TAC}.

   [Sammet 1969, p.146].

   (1995-03-16)
"""

WORDNET_LINE = ("00006024 03 n 02 heterotroph 0 living_thing 0 001 @ 00004475 n 0000 | an organism that depends on "
                "complex organic substances for nutrition; \"animals are heterotrophs\"  ")


# --------------------------------------------------------------------------- extractors
def test_html_blocks_keep_prose_and_drop_code_navigation_and_chrome():
    blocks = R.html_blocks(SPHINX_PAGE)
    assert blocks[0] == "os.path — Common pathname manipulations"
    text = " ".join(blocks)
    assert "This module implements some useful functions on pathnames. To read or write files see open(), and" in text
    assert "desires shell-like path expansion & more." in text
    assert "Return the base name of pathname path." in blocks and "Return the directory name." in blocks
    for junk in ("DOCUMENTATION_OPTIONS", "color: red", "os.path.join", ">>>", "Python 3.11 Documentation",
                 "Previous topic", "Copyright", "\u00b6"):
        assert junk not in text, junk
    assert R.html_blocks(SPHINX_PAGE) == blocks


def test_pod_blocks():
    blocks = R.pod_blocks(POD_DOC)
    assert blocks[:3] == ["NAME", "perlfilter - Source Filters", "DESCRIPTION"]
    para = blocks[3]
    assert para.startswith("This article is about a little-known feature of Perl called source filters.")
    assert "Use $a <=> $b to compare, see Equality Operators in perlop and the manual." in para
    assert "The <STDIN> handle is read line by line." in para
    assert "Although there can be any number of source streams in existence at any given time, only one will be " \
           "active." in blocks
    text = " ".join(blocks)
    for junk in ("------->", "Not for text readers", "not_pod", "X<", "filter>The"):
        assert junk not in text, junk
    assert "Back in POD after code." in blocks
    assert R.pod_inline("B<bold> I<it> F<file.txt> C<< a->b >> E<0x41>Z<>") == "bold it file.txt a->b A"


def test_rst_blocks():
    blocks = R.rst_blocks(RST_DOC)
    assert blocks[0] == "PCI Error Recovery"
    assert blocks[1] == "- Linas Vepstas <linasvepstas@gmail.com>" or "Linas Vepstas" in blocks[1]
    assert ("Many PCI bus controllers are able to detect a variety of hardware PCI errors on the bus, such as "
            "parity errors on the data and address buses. See the recovery API and struct pci_driver for details, "
            "or the web page.") in blocks
    assert "This structure has the form:" in blocks
    assert "The driver must not sleep in this callback." in blocks
    assert blocks[-2:] == ["First item of a list.", "Second item of a list."]
    text = " ".join(blocks)
    for junk in ("SPDX", "error_detected", "int x", "+---", "| a", "==="):
        assert junk not in text, junk


def test_dictionary_and_wordnet_entries(tmp_path):
    assert R.gcide_entry_text(GCIDE_ENTRY) == (
        "Calorimeter: (Physiol.) An apparatus for measuring the amount of heat contained in bodies or developed by "
        "some mechanical or chemical process, as friction, chemical combination, combustion, etc. For combustion "
        "processes, a bomb calorimeter may be used. (Engineering) An apparatus for measuring the proportion of "
        "unevaporated water contained in steam.")
    assert R.dictd_entry_text(FOLDOC_ENTRY) == "ALTAC: An extended Fortran II for the Philco 2000, built on TAC."
    assert R.wordnet_synset_text(WORDNET_LINE) == ("heterotroph, living thing: an organism that depends on complex "
                                                   "organic substances for nutrition; \"animals are heterotrophs\"")
    assert R.wordnet_synset_text("  1 This software and database is being provided to you") == ""
    # a dictd database: the .dz is gzip-compatible; the index has base-64 offsets and lengths
    body = ("00-database-short\n   A test dictionary\n\n" + GCIDE_ENTRY + "\n" + GCIDE_ENTRY.replace("Calorimeter \\", "Caloric \\")).encode()
    assert R.dictd_number("BMsfY") == ((((1 * 64 + 12) * 64 + 44) * 64 + 31) * 64 + 24)

    def b64(n):
        s = ""
        while True:
            s = R._B64[n % 64] + s
            n //= 64
            if n == 0:
                return s

    first = body.index(b"Calorimeter")
    second = body.index(b"Caloric \\")
    with gzip.open(tmp_path / "t.dict.dz", "wb") as f:
        f.write(body)
    (tmp_path / "t.index").write_text(
        f"00-database-short\t{b64(0)}\t{b64(first)}\n"
        f"Caloric\t{b64(second)}\t{b64(len(body) - second)}\n"
        f"Calorimeter\t{b64(first)}\t{b64(second - first)}\n"
        f"calorimeter\t{b64(first)}\t{b64(second - first)}\n")
    entries = R.dictd_entries(str(tmp_path / "t.dict.dz"), str(tmp_path / "t.index"))
    assert [R.gcide_entry_text(e).split(":")[0] for e in entries] == ["Calorimeter", "Caloric"]


def test_english_filter():
    assert R.is_english_passage(" ".join(["the cat sat on the mat and looked at the dog"] * 6))
    assert not R.is_english_passage(" ".join(["regulator@40 { compatible = <&parent_reg>; reg = <0x40>; };"] * 8))
    assert not R.is_english_passage(" ".join(["Questo documento descrive come funziona il kernel, passo dopo passo."] * 6))
    assert R.is_english_block("Detailed Design")
    assert not R.is_english_block("0x00 0x01 0xff 0x10")


# --------------------------------------------------------------------------- cutting
SENTENCES = [
    "The kernel keeps a list of every device that is attached to the bus.",
    "When a driver is loaded, it asks the bus for the devices it knows how to handle.",
    "Each device is then probed, and the driver decides whether it can work with it or not, for example by "
    "reading a register and comparing the value it finds with the identifiers listed in its table, which can "
    "take a while on slow buses and is therefore done in parallel where that is safe and the hardware allows it.",
    "Errors are reported to the driver through a callback.",
    "The callback must not sleep.",
    "See the chapter on power management for the details, e.g. how a device is resumed.",
]


def _doc(n_sentences: int, offset: int = 0) -> list[str]:
    sents = [f"Step {i + offset}: " + SENTENCES[i % len(SENTENCES)] for i in range(n_sentences)]
    return [" ".join(sents[i:i + 3]) for i in range(0, len(sents), 3)]


@pytest.mark.parametrize("n_sentences", [3, 4, 5, 6, 7, 9, 13, 40, 101])
def test_cut_passages_lengths_and_determinism(n_sentences):
    blocks = _doc(n_sentences)
    passages = R.cut_passages(blocks)
    assert passages == R.cut_passages(list(blocks))
    total = sum(len(b.split()) for b in blocks)
    if total < R.MIN_WORDS:
        assert passages == []
        return
    assert passages, total
    for p in passages:
        assert R.MIN_WORDS <= len(p.split()) <= R.MAX_WORDS, (len(p.split()), p)
    # consecutive words of the document, nothing lost or reordered
    assert " ".join(passages).split() == " ".join(blocks).split()


def test_cut_passages_sentence_aware_and_long_sentences():
    long_sentence = " ".join(f"word{i}" for i in range(230)) + "."
    passages = R.cut_passages(["A short opening sentence here.", long_sentence, "And a closing sentence."])
    assert all(R.MIN_WORDS <= len(p.split()) <= R.MAX_WORDS for p in passages)
    assert " ".join(passages).split() == ("A short opening sentence here. " + long_sentence
                                          + " And a closing sentence.").split()
    short = [f"Part {i}: " + s for i, s in enumerate(SENTENCES * 6) if len(s.split()) < R.UNIT_MAX]
    passages = R.cut_passages(short)
    # sentences of at most UNIT_MAX words are never cut: every passage ends at a sentence end
    assert len(passages) > 3 and all(p.endswith(".") for p in passages)
    assert " ".join(passages).split() == " ".join(short).split()
    assert R.split_sentences("See e.g. the manual. Then run it! Done? Yes.") == [
        "See e.g. the manual.", "Then run it!", "Done?", "Yes."]


def test_dedup_and_stable_ids():
    a = R.cut_passages(_doc(20))
    b = R.cut_passages(_doc(20, offset=100))
    items = [("python", p) for p in a] + [("perl", a[0])] + [("perl", p) for p in b] + [("python", b[1])]
    out, dups = R.dedup_passages(items)
    assert dups == 2
    assert [i for i, _ in out] == [f"python-{i}" for i in range(len(a))] + [f"perl-{i}" for i in range(len(b))]
    assert [t for _, t in out] == a + b
    assert R.dedup_passages(items) == (out, dups)
    assert R.source_of("python-12") == "python" and R.source_of("linux-doc-3") == "linux-doc"


def test_balanced_selection():
    pool = ([(f"a-{i}", f"text a {i}") for i in range(10)] + [(f"b-{i}", f"text b {i}") for i in range(100)]
            + [(f"c-{i}", f"text c {i}") for i in range(40)])
    assert R.balanced_quota({"a": 10, "b": 100, "c": 40}, 90) == {"a": 10, "b": 40, "c": 40}
    assert R.balanced_quota({"a": 10, "b": 100, "c": 40}, 61) == {"a": 10, "b": 26, "c": 25}
    sel = R.select_passages(pool, 61)
    assert len(sel) == 61 and len({i for i, _ in sel}) == 61
    assert sel == R.select_passages(pool, 61)
    assert [i for i, _ in sel] == [i for i, _ in pool if i in {j for j, _ in sel}]  # pool order
    counts = {s: sum(1 for i, _ in sel if i.startswith(s + "-")) for s in "abc"}
    assert counts == {"a": 10, "b": 26, "c": 25}
    b_ids = [int(i.split("-")[1]) for i, _ in sel if i.startswith("b-")]
    assert b_ids[0] == 0 and b_ids[-1] >= 90  # spread over the whole source
    with pytest.raises(ValueError):
        R.select_passages(pool, 151)


def test_source_passages_from_an_unpacked_tree(tmp_path):
    base = tmp_path / "usr/share/doc/x/html"
    (base / "library").mkdir(parents=True)
    (base / "_sources").mkdir()
    page = SPHINX_PAGE.replace("</section>", "".join(f"<p>{s}</p>" for s in SENTENCES * 3) + "</section>")
    (base / "library" / "os.path.html").write_text(page, encoding="utf-8")
    (base / "genindex.html").write_text(page, encoding="utf-8")
    (base / "_sources" / "copy.html").write_text(page, encoding="utf-8")
    src = R._html("x", "x-doc", "test", "usr/share/doc/x/html", R._SPHINX_SKIP)
    got = list(R.source_passages(src, str(tmp_path)))
    assert got and {name for name, _ in got} == {"library/os.path.html"}
    assert all(R.MIN_WORDS <= len(p.split()) <= R.MAX_WORDS for _, p in got)
    assert got == list(R.source_passages(src, str(tmp_path)))


def test_every_source_has_a_package_and_unique_name():
    names = [s.name for s in R.SOURCES]
    assert names == sorted(names) and len(set(names)) == len(names) and len(names) >= 6
    assert all("-" not in n for n in names)  # ids are <source>-<n>


# --------------------------------------------------------------------------- encoding
def _msmarco_passages(shared_dir, n):
    out = []
    with open(shared_dir / "data" / "msmarco" / "dl19-judged-passages" / "collection.tsv", encoding="utf-8") as f:
        for line in f:
            pid, text = line.rstrip("\n").split("\t", 1)
            out.append((f"msmarco-{pid}", text))
            if len(out) == n:
                break
    return out


def test_ensure_collection_encodes_and_reuses_the_cache(tmp_path, shared_dir, splade_tiny):
    passages = _msmarco_passages(shared_dir, 20)
    queries = str(shared_dir / "data" / "msmarco" / "topics-qrels" / "topics" / "topics.msmarco-passage.dev-subset.txt")
    logs: list[str] = []
    coll = R.ensure_collection(str(tmp_path), 20, model=str(splade_tiny), n_queries=5, threads=1, log=logs.append,
                               passages=passages, queries=queries, part_size=8, progress=False)
    assert coll.vectors_dir == str(tmp_path / "real" / "vectors-20")
    assert coll.queries_path == str(tmp_path / "real" / "queries-devsmall-5.jsonl")
    assert R.read_tsv(coll.passages_path) == passages
    vecs = list(iter_vectors(coll.vectors_dir))
    assert [d for d, _ in vecs] == [p for p, _ in passages]
    assert all(len(v) > 10 for _, v in vecs)
    assert sorted(os.listdir(coll.vectors_dir)) == ["encode.state", "encoder.json", "part-00000.jsonl.gz",
                                                    "part-00001.jsonl.gz", "part-00002.jsonl.gz"]
    info = read_encoder_info(coll.vectors_dir)
    assert info is not None and info["name"] == "splade-tiny" and info["type"] == "splade"
    qs = read_queries(coll.queries_path)
    with open(queries, encoding="utf-8") as f:
        first5 = [line.split("\t")[0] for _, line in zip(range(5), f)]
    assert [q.id for q in qs] == first5 and all(q.vector for q in qs)
    meta = coll.meta
    assert meta["selection"]["per_source"] == {"msmarco": 20}
    assert meta["documents"]["docs"] == 20 and meta["encodes"][0]["encoded"] == 20
    assert meta["queries"]["queries"] == 5
    with open(tmp_path / "real" / "collection-20.json", encoding="utf-8") as f:
        assert json.load(f)["n_passages"] == 20

    # the same weights as encoding directly with the project's encoder
    from lsr.encoders import load_encoder

    enc = load_encoder(R.encoder_config(str(splade_tiny)))
    direct = enc.encode_documents([t for _, t in passages[:3]])
    for (_, got), want in zip(vecs[:3], direct):
        assert got.keys() == want.keys()
        assert all(abs(got[t] - want[t]) < 1e-5 for t in want)

    # searchable: an index of the vectors answers the encoded queries
    index = lsr.build_index(coll.vectors_dir, str(tmp_path / "index"))
    with warnings.catch_warnings():  # query terms that no one of the 20 passages has
        warnings.simplefilter("ignore", UserWarning)
        results = lsr.Searcher(index, k=5).search_batch(qs)
    assert set(results.query_ids) == {q.id for q in qs} and len(results.query_ids) == 25

    # a second call reuses everything
    logs.clear()
    again = R.ensure_collection(str(tmp_path), 20, model=str(splade_tiny), n_queries=5, threads=1, log=logs.append,
                                passages=passages, queries=queries, part_size=8, progress=False)
    assert again.vectors_dir == coll.vectors_dir and again.meta["encodes"] == meta["encodes"]
    assert any("documents: cached" in line for line in logs) and any("queries: cached" in line for line in logs)

    # a smaller selection is a new, balanced collection of the same pool
    small = R.ensure_collection(str(tmp_path), 10, model=str(splade_tiny), n_queries=5, threads=1, log=logs.append,
                                passages=passages, queries=queries, part_size=8, progress=False)
    assert small.vectors_dir.endswith("vectors-10")
    ids = [d for d, _ in iter_vectors(small.vectors_dir)]
    assert ids == [passages[i][0] for i in range(0, 20, 2)]

    # found again as an encoded collection (no encoding), and the peer benchmark runs on it from the cache
    from benchmarks.cache import find_encoded

    found = find_encoded(str(tmp_path), 20)
    assert (found.vectors_dir, found.queries_path, found.tag) == (coll.vectors_dir, coll.queries_path, "vectors-20")
    assert find_encoded(str(tmp_path), 30) is None
    from benchmarks import peer_bench

    res = peer_bench.main(["--collection", "real", "--passages", "20", "--queries", "5", "--peers", "scipy",
                           "--ks", "5", "--batch-repeats", "1", "--work-dir", str(tmp_path), "--quiet",
                           "--no-overhead"])
    assert res["collection"]["vectors_dir"] == coll.vectors_dir and res["collection"]["source"].startswith("built")
    assert {r["engine"] for r in res["rows"]} == {"lsr", "scipy"} and all(r["exact"] for r in res["rows"])


def test_cache_dir_and_encoded_collection_layouts(tmp_path, monkeypatch):
    """The user cache directory by default (LSR_BENCH_CACHE, XDG_CACHE_HOME), and unpack-real300k's layout."""
    from benchmarks.cache import default_cache_dir, encoded_collection, find_encoded

    monkeypatch.delenv("LSR_BENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == str(tmp_path / "xdg" / "lsr-bench")
    monkeypatch.setenv("LSR_BENCH_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == str(tmp_path / "mine")
    assert not (tmp_path / "mine").exists() and not (tmp_path / "xdg").exists()   # read, not created

    d = tmp_path / "real2k"
    (d / "vectors").mkdir(parents=True)
    with gzip.open(d / "vectors" / "part-00000.jsonl.gz", "wt") as f:
        f.write(json.dumps({"id": "a", "contents": "", "vector": {"x": 1.0}}) + "\n")
    assert find_encoded(str(tmp_path), 2000) is None            # no queries yet
    (d / "queries-devsmall.jsonl").write_text(json.dumps({"id": "q", "vector": {"x": 1.0}}) + "\n")
    c = find_encoded(str(tmp_path), 2000)
    assert c.vectors_dir == str(d / "vectors") and c.tag == "real2k" and c.source.startswith("unpacked copy")
    assert encoded_collection(str(d)).queries_path == str(d / "queries-devsmall.jsonl")
    assert encoded_collection(str(d / "vectors"), str(d / "queries-devsmall.jsonl")).vectors_dir == str(d / "vectors")
    for args, msg in (((str(d / "vectors"),), "give the encoded queries file too"),
                      ((str(tmp_path),), "is not an encoded collection"),
                      ((str(d), str(tmp_path / "none.jsonl")), "not found")):
        with pytest.raises(ValueError, match=msg):
            encoded_collection(*args)
