"""A real-encoder benchmark collection: documentation text cut into passages, encoded with splade-tiny.

The collection (issue 3) is built from real English text of Debian
documentation packages, downloaded with ``apt-get download`` into
``<work_dir>/debs/`` and unpacked there with ``dpkg-deb -x`` (nothing is
installed). :data:`SOURCES` lists them (source name: package):

* dictionaries (dictd databases, ``.dz`` is gzip-compatible): ``gcide``
  (dict-gcide, Webster's 1913 + WordNet), ``foldoc`` (dict-foldoc),
  ``jargon`` (dict-jargon); ``wordnet`` (wordnet-base: synset words and
  glosses from the ``data.*`` files);
* reStructuredText / plain text: ``linux`` (linux-doc-6.1, Documentation/,
  translations left out); POD: ``perl`` (perl-doc, pod/*.pod);
* HTML manuals (stdlib ``html.parser``): ``python`` (python3.11-doc),
  ``postgresql`` (postgresql-doc-15), ``apache`` (apache2-doc, English),
  ``astropy``, ``django``, ``pandas``, ``scipy``, ``sklearn``,
  ``sqlalchemy``, ``statsmodels``, ``sympy`` (python-*-doc), ``cmake``
  (cmake-doc), ``erlang`` (erlang-doc), ``ghc`` (ghc-doc), ``gimp``
  (gimp-help-en), ``git`` (git-doc), ``handbook`` (debian-handbook,
  English), ``llvm`` (llvm-15-doc), ``nodejs`` (nodejs-doc), ``openjdk``
  (openjdk-17-doc), ``racket`` (racket-doc), ``rust`` (rust-doc),
  ``sqlite`` (sqlite3-doc), ``zsh`` (zsh-doc).

Each document is turned into blocks of plain text (markup, code blocks and
navigation stripped, whitespace collapsed); blocks that are not mostly English
words are dropped. Blocks are split into sentences (sentences over
``UNIT_MAX`` words are cut into equal pieces) and the sentences of a document
are packed greedily into passages of ``PACK_TARGET`` words at most; a short
remainder at the end of a document is merged into the previous passage or,
when that would pass ``MAX_WORDS``, the two are split into halves. Every
passage has ``MIN_WORDS`` to ``MAX_WORDS`` words (documents shorter than
``MIN_WORDS`` give none). Exact duplicate passages are dropped (the first in
source order is kept), and each passage gets the id ``<source>-<n>``.

Sources are processed in sorted order and files in sorted order, so the pool
(``real/passages.tsv``, ``real/meta.json``) is deterministic. A collection of
``n`` passages is a source-balanced selection from the pool: each source
gets an equal share (a source with fewer passages gives all of them and the
rest is shared among the others), taken evenly spaced over the source, in
pool order (``real/passages-<n>.tsv``). The documents are encoded with
:func:`lsr.encoders.collection.encode_corpus` (resumable) into
``real/vectors-<n>/``, the layout ``lsr index`` reads, and the MS MARCO
dev/small queries with the same model's query side into
``real/queries-devsmall.jsonl``. Everything is cached under ``work_dir``
and reused by later calls (keyed by the passage count, the model and
:data:`GENERATOR_VERSION`).

Command line::

    python -m benchmarks.realdata [--work-dir DIR] --passages 300000 [--queries N] [--threads T]

``--work-dir`` defaults to the user cache directory (:mod:`benchmarks.cache`).
``../shared/tools/unpack-real300k ~/.cache/lsr-bench/real300k`` writes the
300k collection already encoded, which ``benchmarks.peer_bench --collection
real`` finds there (no encoding).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import html
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser

from .cache import default_cache_dir

GENERATOR_VERSION = "lsr-realdata/1"

MIN_WORDS = 50
MAX_WORDS = 100
PACK_TARGET = 90
UNIT_MAX = 40

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("LSR_SHARED_DIR") or os.path.join(REPO_ROOT, "..", "shared")   # as the tests read it
DEFAULT_MODEL = os.path.join(SHARED, "models", "splade-tiny")
DEFAULT_QUERIES = os.path.join(SHARED, "data", "msmarco", "topics-qrels", "topics",
                               "topics.msmarco-passage.dev-subset.txt")

Log = Callable[[str], None]


# --------------------------------------------------------------------------- English text
_LETTERS = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
_WORD_RE = re.compile(
    rf"[(\"'\[\u201c\u2018]*[{_LETTERS}]+(?:['\u2019\-][{_LETTERS}]+)*[)\]\"'\u201d\u2019.,;:!?]*")
_WS_RE = re.compile(r"\s+")
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having
he her here hers him his how i if in into is it its itself just may me might more most must my no nor not
now of off on once only or other our out over own same she should so some such than that the their them
then there these they this those through to too under until up upon very was we were what when where which
while who whom why will with would you your
""".split())


def collapse(text: str) -> str:
    """Whitespace runs (newlines, tabs, no-break spaces) to one space, stripped."""
    return _WS_RE.sub(" ", text).strip()


def english_ratios(text: str) -> tuple[float, float]:
    """(share of tokens that are words, share of tokens that are English function words)."""
    toks = text.split()
    if not toks:
        return 0.0, 0.0
    words = sum(1 for t in toks if _WORD_RE.fullmatch(t))
    stop = sum(1 for t in toks if t.strip("()[]\"'.,;:!?\u201c\u201d\u2018\u2019").lower() in STOPWORDS)
    return words / len(toks), stop / len(toks)


def is_english_block(text: str) -> bool:
    """A block worth keeping: mostly words (headings and short lines need no function words)."""
    words, stop = english_ratios(text)
    n = len(text.split())
    if n == 0:
        return False
    if n < 8:
        return words >= 0.6
    return words >= 0.7 and stop >= 0.05


def is_english_passage(text: str) -> bool:
    """A passage worth keeping: at least 80% words, at least 8% English function words."""
    words, stop = english_ratios(text)
    return words >= 0.8 and stop >= 0.08


# --------------------------------------------------------------------------- sentences and passages
_SENT_END = re.compile(r"[.!?][\"')\]\u201d\u2019]*\s+(?=[\"'(\[\u201c\u2018]?[A-Z0-9])")
_ABBREV = frozenset("e.g. i.e. etc. cf. vs. mr. mrs. ms. dr. prof. st. no. fig. vol. pp. p. sec. ch. "
                    "approx. al. esp. inc. ltd. jr. sr. eq. ref. ed. op. viz.".split())


def split_sentences(text: str) -> list[str]:
    """Sentences of a block (a full stop, ! or ? then space then a capital or digit; not after e.g., etc.)."""
    out = []
    start = 0
    for m in _SENT_END.finditer(text):
        head = text[start:m.start() + 1]
        last = head.rsplit(None, 1)[-1].lower() if head.strip() else ""
        if last in _ABBREV or re.fullmatch(r"[a-z]\.", last):
            continue
        out.append(text[start:m.end()].strip())
        start = m.end()
    rest = text[start:].strip()
    if rest:
        out.append(rest)
    return [s for s in out if s]


def sentence_units(text: str, unit_max: int = UNIT_MAX) -> list[list[str]]:
    """The block's sentences as word lists; a sentence over ``unit_max`` words is cut into equal pieces."""
    units = []
    for sent in split_sentences(text):
        words = sent.split()
        if len(words) <= unit_max:
            units.append(words)
            continue
        pieces = -(-len(words) // unit_max)
        for i in range(pieces):
            units.append(words[i * len(words) // pieces:(i + 1) * len(words) // pieces])
    return [u for u in units if u]


def cut_passages(blocks: Iterable[str], min_words: int = MIN_WORDS, max_words: int = MAX_WORDS,
                 target: int = PACK_TARGET, unit_max: int = UNIT_MAX) -> list[str]:
    """Pack a document's sentences into passages of ``min_words`` .. ``max_words`` words.

    Greedy: sentences are added while the passage stays within ``target``
    words; since no unit is longer than ``unit_max`` (and
    ``target - unit_max >= min_words``), every passage closed that way has
    more than ``min_words`` words. The remainder at the end is kept if long
    enough, else merged into the previous passage, else the two are split
    into halves (each then has ``min_words`` .. ``max_words`` words). A
    document shorter than ``min_words`` words gives no passage.
    """
    if not (0 < unit_max and target - unit_max >= min_words and target <= max_words
            and max_words >= 2 * min_words - 1):
        raise ValueError("need target - unit_max >= min_words, target <= max_words, max_words >= 2*min_words-1")
    passages: list[list[str]] = []
    cur: list[str] = []
    for block in blocks:
        for unit in sentence_units(block, unit_max):
            if cur and len(cur) + len(unit) > target:
                passages.append(cur)
                cur = []
            cur.extend(unit)
    if cur:
        if len(cur) >= min_words:
            passages.append(cur)
        elif passages and len(passages[-1]) + len(cur) <= max_words:
            passages[-1].extend(cur)
        elif passages:
            both = passages.pop() + cur
            half = len(both) // 2
            passages.extend([both[:half], both[half:]])
    return [" ".join(p) for p in passages]


def passage_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).digest()


# --------------------------------------------------------------------------- HTML
_HTML_BLOCK = frozenset("p div li ul ol dl dt dd h1 h2 h3 h4 h5 h6 table tr td th br section blockquote hr "
                        "title caption figure figcaption article header main aside tbody thead".split())
_HTML_SKIP_TAGS = frozenset("script style pre head nav footer textarea svg math button form select".split())
_HTML_SKIP_CLASSES = frozenset([
    # Sphinx (Python manual)
    "sphinxsidebar", "sphinxsidebarwrapper", "related", "footer", "headerlink", "highlight", "toctree-wrapper",
    "literal-block-wrapper", "doctest", "mobile-nav", "breadcrumbs", "clearer",
    # DocBook (PostgreSQL manual)
    "navheader", "navfooter", "toc", "programlisting", "screen", "synopsis", "funcsynopsis", "cmdsynopsis",
    "literallayout", "refsynopsisdiv", "index",
])


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._buf: list[str] = []
        self._skip_tag: str | None = None
        self._skip_depth = 0

    def _flush(self) -> None:
        if self._buf:
            text = collapse("".join(self._buf))
            if text:
                self.blocks.append(text)
            self._buf = []

    def handle_starttag(self, tag, attrs):
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth += 1
            return
        classes = set()
        for k, v in attrs:
            if k == "class" and v:
                classes.update(v.split())
        if tag in _HTML_SKIP_TAGS or classes & _HTML_SKIP_CLASSES or ("role", "navigation") in attrs:
            if tag not in ("br", "hr", "img", "input", "meta", "link"):
                self._flush()
                self._skip_tag = tag
                self._skip_depth = 1
            return
        if tag in _HTML_BLOCK:
            self._flush()

    def handle_startendtag(self, tag, attrs):
        if self._skip_tag is None and tag in _HTML_BLOCK:
            self._flush()

    def handle_endtag(self, tag):
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skip_tag = None
            return
        if tag in _HTML_BLOCK:
            self._flush()

    def handle_data(self, data):
        if self._skip_tag is None:
            self._buf.append(data)

    def close(self):
        super().close()
        self._flush()


def html_blocks(text: str) -> list[str]:
    """Text blocks of an HTML page (stdlib html.parser): paragraphs, list items, headings, cells.

    Skips scripts, styles, ``<pre>`` code, the page head, navigation bars,
    side bars, footers, tables of contents and code listings (by tag and by
    the Sphinx / DocBook class names).
    """
    p = _HTMLText()
    p.feed(text)
    p.close()
    return [b.replace("\u00b6", "").strip() for b in p.blocks if b.replace("\u00b6", "").strip()]


# --------------------------------------------------------------------------- POD
_POD_DOUBLE = tuple(re.compile(rf"([A-Z])<{{{k}}}\s+(.*?)\s+>{{{k}}}", re.S) for k in (4, 3, 2))
_POD_SINGLE = re.compile(r"([A-Z])<([^<>]*)>")
_POD_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&", "apos": "'"}


def _pod_code(code: str, body: str) -> str:
    if code in ("X", "Z"):
        return ""
    if code == "E":
        if body in _POD_ENTITIES:
            return _POD_ENTITIES[body]
        if body.isdigit():
            return chr(int(body))
        if body.lower().startswith("0x"):
            return chr(int(body, 16))
        return html.unescape(f"&{body};")
    if code == "L":
        if "|" in body:
            return body.split("|", 1)[0]
        body = body.strip('"')
        if "/" in body and not body.startswith(("http:", "https:", "ftp:")):
            page, sect = body.split("/", 1)
            sect = sect.strip('"')
            return f"{sect} in {page}" if page and sect else (sect or page)
        return body
    return body


def pod_inline(text: str) -> str:
    """POD formatting codes to plain text (B<>, I<>, C<>, F<>, S<>, L<>, E<>; X<> and Z<> dropped)."""
    prev = None
    while prev != text:
        prev = text
        for pat in _POD_DOUBLE:
            text = pat.sub(lambda m: _pod_code(m.group(1), m.group(2)), text)
        text = _POD_SINGLE.sub(lambda m: _pod_code(m.group(1), m.group(2)), text)
    return text


def pod_blocks(text: str) -> list[str]:
    """Text blocks of a POD document: ordinary paragraphs, headings and item labels.

    Verbatim (indented) paragraphs, ``=begin``/``=end`` regions, ``=for``
    paragraphs and everything after ``=cut`` until the next command are
    skipped.
    """
    blocks = []
    in_pod = True
    begin_depth = 0
    for para in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        if not para.strip():
            continue
        if para.startswith("="):
            m = re.match(r"=(\w+)\s*(.*)", para, re.S)
            if not m:
                continue
            cmd, rest = m.group(1), m.group(2)
            if cmd == "cut":
                in_pod = False
                continue
            in_pod = True
            if cmd == "begin":
                begin_depth += 1
            elif cmd == "end":
                begin_depth = max(0, begin_depth - 1)
            elif begin_depth == 0 and cmd in ("head1", "head2", "head3", "head4", "head5", "head6", "item"):
                label = collapse(pod_inline(rest))
                if label and label not in ("*", "-") and not re.fullmatch(r"\d+\.?", label):
                    blocks.append(label)
            continue
        if not in_pod or begin_depth or para[0] in " \t":
            continue
        block = collapse(pod_inline(para))
        if block:
            blocks.append(block)
    return blocks


# --------------------------------------------------------------------------- reStructuredText / plain text
_RST_KEEP_DIRECTIVES = frozenset("note warning important tip hint attention caution danger error admonition "
                                 "seealso versionadded versionchanged deprecated topic sidebar rubric".split())
_RST_ADORN = re.compile(r"([=\-~^\"'`#*+_:.<>])\1{2,}\s*")
_RST_TABLE = re.compile(r"^(?:[+|].*|=+(?:\s+=+)+\s*)$")
_RST_BULLET = re.compile(r"^(?:[-*+\u2022]|#\.|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)])\s+")
_RST_ROLE = re.compile(r"(?::[\w.+-]+)+:`([^`]*)`")
_RST_REF = re.compile(r"`([^`<]*?)\s*<[^`>]*>`_{0,2}")
_RST_LITERAL = re.compile(r"``(.+?)``")
_RST_INTERP = re.compile(r"`([^`]+)`_{0,2}")
_RST_EMPH = re.compile(r"(\*\*|\*)(\S(?:.*?\S)?)\1")
_RST_SUBST = re.compile(r"\|([\w\s-]+)\|_{0,2}")
_RST_FOOT = re.compile(r"\s*\[(?:#|\*|\d+|#\w+)\]_")


def rst_inline(text: str) -> str:
    """reStructuredText inline markup to plain text (roles, references, literals, emphasis)."""
    def role(m):
        inner = m.group(1)
        mm = re.match(r"(.*?)\s*<[^<>]*>$", inner)
        inner = mm.group(1) if mm and mm.group(1) else inner
        return inner.lstrip("~!")

    text = _RST_ROLE.sub(role, text)
    text = _RST_LITERAL.sub(r"\1", text)
    text = _RST_REF.sub(r"\1", text)
    text = _RST_INTERP.sub(r"\1", text)
    text = _RST_EMPH.sub(r"\2", text)
    text = _RST_SUBST.sub(r"\1", text)
    text = _RST_FOOT.sub("", text)
    text = re.sub(r"(?<=\w)_(?=[\s.,;:)]|$)", "", text)  # name_ references
    return text


def rst_blocks(text: str) -> list[str]:
    """Text blocks (paragraphs) of a reStructuredText or plain-text document.

    Skips literal blocks (the indented block after a paragraph ending in
    ``::``), directives other than admonitions (code-block, toctree,
    kernel-doc, include, tables, ...) with their indented bodies, comments,
    section adornments, grid and simple tables and field-list markers; list
    bullets start a new block.
    """
    blocks: list[str] = []
    para: list[str] = []
    skip_indent: int | None = None

    def flush() -> None:
        if para:
            t = collapse(rst_inline(" ".join(para)))
            if t.endswith("::"):
                t = t[:-1]
            if t:
                blocks.append(t)
            para.clear()

    for raw in text.replace("\r\n", "\n").replace("\t", "        ").split("\n"):
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if not stripped:
            flush()
            continue
        if stripped.startswith(".. ") or stripped == "..":
            flush()
            m = re.match(r"\.\.\s+([\w:-]+)::\s*(.*)", stripped)
            if m and m.group(1) in _RST_KEEP_DIRECTIVES:
                if m.group(2) and m.group(1) in ("admonition", "topic", "sidebar", "rubric"):
                    para.append(m.group(2))
                    flush()
                elif m.group(2) and m.group(1) not in ("versionadded", "versionchanged", "deprecated"):
                    para.append(m.group(2))
                continue
            skip_indent = indent
            continue
        if _RST_ADORN.fullmatch(stripped) or _RST_TABLE.match(stripped):
            flush()
            continue
        m = _RST_BULLET.match(stripped)
        if m:
            flush()
            stripped = stripped[m.end():]
        fm = re.match(r"^:([\w -]+):\s*(.*)$", stripped)
        if fm and not para:
            stripped = fm.group(2)
            if not stripped:
                continue
        para.append(stripped)
        if stripped.endswith("::"):
            flush()
            skip_indent = indent
    flush()
    return blocks


# --------------------------------------------------------------------------- dictd dictionaries
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd_number(s: str) -> int:
    """A dictd index number (base 64, most significant digit first)."""
    n = 0
    for ch in s:
        n = n * 64 + _B64.index(ch)
    return n


def dictd_entries(dict_path: str, index_path: str) -> list[str]:
    """The entries of a dictd database, in file order (gzip/dictzip ``.dz`` or plain), 00-database-* left out."""
    opener = gzip.open if dict_path.endswith(".dz") or dict_path.endswith(".gz") else open
    with opener(dict_path, "rb") as f:
        data = f.read()
    spans = set()
    with open(index_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
                continue
            spans.add((dictd_number(parts[1]), dictd_number(parts[2])))
    return [data[o:o + n].decode("utf-8", errors="replace") for o, n in sorted(spans)]


_GCIDE_ACCENT = re.compile(r"\[([=`'^.\"~,:;]?)([A-Za-z]{1,2})([=`'^.\"~,:;]?)\]")
_GCIDE_SPECIAL = {"[deg]": " degrees", "[frac12]": " 1/2", "[frac14]": " 1/4", "[frac34]": " 3/4",
                  "[ae]": "ae", "[AE]": "AE", "[oe]": "oe", "[OE]": "OE", "[sect]": "section", "[para]": "",
                  "[root]": "root", "[cent]": "cents", "[pound]": "pounds"}
_GCIDE_POS = re.compile(r"^\s*,?\s*(?:(?:[a-z]{1,6}\.\s*|&\s*|pl\.?\s*|[A-Z]\.\s*)+)?(?:,\s*)?")


def _drop_brackets(text: str, opening: str, closing: str) -> str:
    pat = re.compile(re.escape(opening) + r"[^" + re.escape(opening + closing) + r"]*" + re.escape(closing))
    prev = None
    while prev != text:
        prev = text
        text = pat.sub(" ", text)
    return text


def _tidy_punctuation(text: str) -> str:
    """No space before , . ; : and no doubled stops left where bracketed text was removed (ellipses stay)."""
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    text = re.sub(r"(\w)\.\.(?!\.)", r"\1.", text)
    text = re.sub(r"[,;:]+\.", ".", text)
    return collapse(text)


def gcide_entry_text(entry: str) -> str:
    """A GCIDE entry as plain text: ``Headword: definitions ...``.

    Pronunciations (``\\Ca*lor"ic\\``), etymologies and source tags (``[...]``),
    cross-reference braces, parts of speech and sense numbers are removed;
    GCIDE's accent codes (``[=a]``, ``[`e]``) become the bare letter.
    """
    entry = entry.strip()
    if not entry:
        return ""
    first, _, rest = entry.partition("\n")
    if "\\" in first:
        head = first.split("\\", 1)[0].strip().rstrip(",")
        body = first[len(first.split("\\", 1)[0]):] + "\n" + rest
    else:  # a piece of an entry (a few index spans start mid-entry): no headword
        head, body = "", entry
    for k, v in _GCIDE_SPECIAL.items():
        body = body.replace(k, v)
        head = head.replace(k, v)
    body = _GCIDE_ACCENT.sub(r"\2", body)
    head = _GCIDE_ACCENT.sub(r"\2", head)
    body = re.sub(r"\\[^\\]*\\", " ", body)
    body = _drop_brackets(body, "[", "]")
    body = re.sub(r"\([^()]*[*`\"][^()]*\)", " ", body)  # pronunciations in parentheses
    body = body.replace("{", "").replace("}", "")
    body = collapse(body)
    body = re.sub(r"^,?\s*\([^()A-Z.]*\)", "", body)  # a second pronunciation: (lingks)
    body = _GCIDE_POS.sub("", body, count=1)
    body = re.sub(r"(?<!\S)\d{1,2}\.\s+", "", body)  # sense numbers
    body = re.sub(r"(?<!\S)\([a-z]\)\s+", "", body)
    body = _tidy_punctuation(body)
    head = collapse(head.replace("{", "").replace("}", "").replace("*", "").replace('"', ""))
    if not body:
        return ""
    if body[0].islower():
        body = body[0].upper() + body[1:]
    return f"{head}: {body}" if head else body


def dictd_entry_text(entry: str) -> str:
    """A FOLDOC / Jargon File entry as plain text: ``Headword: body``.

    Headword lines are the first unindented lines; dates ``(1997-04-12)``,
    subject tags ``<language>``, bracketed sources and usage tags, slashed
    pronunciations and cross-reference braces are removed.
    """
    lines = entry.strip("\n").split("\n")
    heads = []
    i = 0
    while i < len(lines) and lines[i] and not lines[i][0].isspace():
        heads.append(lines[i].strip())
        i += 1
    body = "\n".join(lines[i:])
    body = re.sub(r"\(\d{4}-\d{2}-\d{2}\)", " ", body)
    body = re.sub(r"<[a-z][a-z ,.&-]*>", " ", body)
    body = _drop_brackets(body, "[", "]")
    body = re.sub(r"(?<!\S)/[^/\s][^/\n]*?/(?=[\s,.;:)]|$)", " ", body)
    body = body.replace("{", "").replace("}", "")
    body = collapse(body)
    body = re.sub(r"^(?:(?:n|adj|adv|v|vt|vi|pl|interj|excl|prep|conj|pron)\.(?:,\s*)?\s*)+", "", body)
    body = re.sub(r"(?<!\S)\d{1,2}\.\s+", "", body)
    body = _tidy_punctuation(body)
    if not heads or not body:
        return ""
    return f"{heads[0]}: {body}"


# --------------------------------------------------------------------------- WordNet
def wordnet_synset_text(line: str) -> str:
    """A WordNet ``data.*`` line as ``word, other word: gloss.`` (``""`` for the licence header)."""
    if not line or line[0] == " " or " | " not in line:
        return ""
    head, gloss = line.split(" | ", 1)
    fields = head.split()
    try:
        n_words = int(fields[3], 16)
    except (IndexError, ValueError):
        return ""
    words = []
    for i in range(n_words):
        w = fields[4 + 2 * i]
        w = re.sub(r"\((?:a|p|ip)\)$", "", w).replace("_", " ")
        if w not in words:
            words.append(w)
    gloss = collapse(gloss)
    if not gloss:
        return ""
    if gloss[-1] not in ".!?\"'":
        gloss += "."
    return f"{', '.join(words)}: {gloss}"


# --------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class Source:
    name: str
    package: str
    description: str
    documents: Callable[[str], Iterator[tuple[str, list[str]]]]  # root -> (doc name, blocks)


def _read_text(path: str) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def _files(root: str, pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, pattern), recursive=True))


def _dictd_docs(name: str, text_of: Callable[[str], str]):
    def docs(root: str) -> Iterator[tuple[str, list[str]]]:
        d = os.path.join(root, "usr/share/dictd")
        blocks = [t for t in (text_of(e) for e in dictd_entries(os.path.join(d, f"{name}.dict.dz"),
                                                                os.path.join(d, f"{name}.index"))) if t]
        yield f"{name}.dict", blocks
    return docs


def _wordnet_docs(root: str) -> Iterator[tuple[str, list[str]]]:
    for path in _files(root, "usr/share/wordnet/data.*"):
        with open(path, encoding="utf-8", errors="replace") as f:
            blocks = [t for t in (wordnet_synset_text(line.rstrip("\n")) for line in f) if t]
        yield os.path.basename(path), blocks


def _html_docs(subdir: str, exclude: str | None = None):
    """Documents of the HTML files under ``root/subdir`` (a glob), minus those whose relative path matches ``exclude``."""
    skip = re.compile(exclude) if exclude else None

    def docs(root: str) -> Iterator[tuple[str, list[str]]]:
        for base in sorted(glob.glob(os.path.join(root, subdir))):
            for path in _files(base, "**/*.html"):
                rel = os.path.relpath(path, base).replace(os.sep, "/")
                if skip is not None and skip.search(rel):
                    continue
                yield rel, html_blocks(_read_text(path))
    return docs


# Sphinx builds: indexes, search page, sources, static files, highlighted module sources.
_SPHINX_SKIP = (r"^_|(^|/)(genindex[^/]*|py-modindex|search|searchindex|np-modindex|copyright|license|bugs"
                r"|download|about)\.html$")


def _perl_docs(root: str) -> Iterator[tuple[str, list[str]]]:
    for path in _files(root, "usr/share/perl/*/pod/*.pod"):
        yield os.path.basename(path), pod_blocks(_read_text(path))


def _linux_docs(root: str) -> Iterator[tuple[str, list[str]]]:
    base = os.path.join(root, "usr/share/doc")
    docs = [p for p in _files(base, "linux-doc-*/Documentation/**/*")
            if p.endswith((".rst", ".rst.gz", ".txt", ".txt.gz"))
            and f"{os.sep}translations{os.sep}" not in p and os.path.isfile(p)]
    for path in docs:
        yield os.path.relpath(path, base), rst_blocks(_read_text(path))


def _html(name: str, package: str, description: str, subdir: str, exclude: str | None = None) -> Source:
    return Source(name, package, description, _html_docs(subdir, exclude))


SOURCES: tuple[Source, ...] = tuple(sorted((
    Source("foldoc", "dict-foldoc", "FOLDOC, the Free On-line Dictionary of Computing (dictd)",
           _dictd_docs("foldoc", dictd_entry_text)),
    Source("gcide", "dict-gcide", "GCIDE, the Collaborative International Dictionary of English (dictd)",
           _dictd_docs("gcide", gcide_entry_text)),
    Source("jargon", "dict-jargon", "the Jargon File (dictd)", _dictd_docs("jargon", dictd_entry_text)),
    Source("wordnet", "wordnet-base", "WordNet 3.0 synsets: words and glosses", _wordnet_docs),
    Source("linux", "linux-doc-6.1", "the Linux 6.1 kernel's Documentation/ (reStructuredText, plain text; "
           "translations left out)", _linux_docs),
    Source("perl", "perl-doc", "perl 5.36 pod/*.pod (POD)", _perl_docs),
    _html("apache", "apache2-doc", "the Apache HTTP Server 2.4 manual, English pages (HTML)",
          "usr/share/doc/apache2-doc/manual/en"),
    _html("astropy", "python-astropy-doc", "the Astropy manual (Sphinx HTML)",
          "usr/share/doc/python-astropy-doc/html", _SPHINX_SKIP),
    _html("cmake", "cmake-doc", "the CMake manual (Sphinx HTML)", "usr/share/doc/cmake-data/html", _SPHINX_SKIP),
    _html("django", "python-django-doc", "the Django 3.2 manual (Sphinx HTML)",
          "usr/share/doc/python-django-doc/html", _SPHINX_SKIP),
    _html("erlang", "erlang-doc", "the Erlang/OTP 25 manuals (HTML; the Java API pages left out)",
          "usr/share/doc/erlang-doc", r"/java/"),
    _html("ghc", "ghc-doc", "the GHC 9.0 user's guide and library docs (HTML; source pages left out)",
          "usr/share/doc/ghc-doc/html", r"(^|/)src/|(^|/)doc-index[^/]*\.html$"),
    _html("gimp", "gimp-help-en", "the GIMP 2.10 user manual, English (HTML)", "usr/share/gimp/2.0/help/en"),
    _html("git", "git-doc", "the Git manual pages and user manual (HTML)", "usr/share/doc/git-doc"),
    _html("handbook", "debian-handbook", "The Debian Administrator's Handbook, English (HTML)",
          "usr/share/doc/debian-handbook/html/en-US"),
    _html("llvm", "llvm-15-doc", "the LLVM 15 documentation (Sphinx HTML)",
          "usr/share/doc/llvm-15-doc/html", _SPHINX_SKIP),
    _html("nodejs", "nodejs-doc", "the Node.js 18 API documentation (HTML; the all-in-one page left out)",
          "usr/share/doc/nodejs/api", r"^all\.html$"),
    _html("openjdk", "openjdk-17-doc", "the Java SE 17 API documentation (javadoc HTML; index, tree and use "
          "pages left out)", "usr/share/doc/openjdk-17-jre-headless/api",
          r"(^|/)(class-use|index-files|legal)/|(^|/)(overview-tree|package-tree|allclasses-index|"
          r"allpackages-index|index-all|deprecated-list|constant-values|serialized-form|search|help-doc|"
          r"system-properties|package-use|overview-summary|index)\.html$"),
    _html("pandas", "python-pandas-doc", "the pandas manual (Sphinx HTML)", "usr/share/doc/python-pandas-doc/html",
          _SPHINX_SKIP),
    _html("postgresql", "postgresql-doc-15", "the PostgreSQL 15 manual (HTML)", "usr/share/doc/postgresql-doc-15/html",
          r"^(bookindex|index|legalnotice)\.html$"),
    _html("python", "python3.11-doc", "the Python 3.11 manual (Sphinx HTML)", "usr/share/doc/python3.11/html",
          _SPHINX_SKIP),
    _html("racket", "racket-doc", "the Racket 8 documentation (Scribble HTML; the German teaching languages "
          "left out)", "usr/share/doc/racket", r"(^|/)deinprogramm/|(^|/)doc-index[^/]*\.html$|^search/"),
    _html("rust", "rust-doc", "the Rust 1.63 books and standard library docs (HTML; sources, arch intrinsics, "
          "print pages and old book editions left out)", "usr/share/doc/rust-doc/html",
          r"^src/|(^|/)(arch|core_arch)/|(^|/)(all|print|search)\.html$|^book/(first|second|2018)-edition/"),
    _html("scipy", "python-scipy-doc", "the SciPy 1.10 manual (Sphinx HTML)", "usr/share/doc/python-scipy-doc/html",
          _SPHINX_SKIP),
    _html("sklearn", "python-sklearn-doc", "the scikit-learn manual (Sphinx HTML)",
          "usr/share/doc/python-sklearn-doc/html", _SPHINX_SKIP),
    _html("sqlalchemy", "python-sqlalchemy-doc", "the SQLAlchemy 1.4 manual (Sphinx HTML)",
          "usr/share/doc/python-sqlalchemy-doc/html", _SPHINX_SKIP),
    _html("sqlite", "sqlite3-doc", "the SQLite 3.40 documentation (HTML)", "usr/share/doc/sqlite3"),
    _html("statsmodels", "python-statsmodels-doc", "the statsmodels manual (Sphinx HTML)",
          "usr/share/doc/python-statsmodels-doc/html", _SPHINX_SKIP),
    _html("sympy", "python-sympy-doc", "the SymPy manual (Sphinx HTML)", "usr/share/doc/python-sympy-doc/html",
          _SPHINX_SKIP),
    _html("zsh", "zsh-doc", "the Zsh manual (HTML)", "usr/share/doc/zsh-common/html"),
), key=lambda s: s.name))


# --------------------------------------------------------------------------- Debian packages
def fetch_package(debs_dir: str, package: str, log: Log = print) -> tuple[str, dict]:
    """Download (``apt-get download``, cached) and unpack (``dpkg-deb -x``) a package.

    Returns (the unpacked root, {"package", "version", "deb", "sha256"}).
    """
    os.makedirs(debs_dir, exist_ok=True)
    found = sorted(glob.glob(os.path.join(debs_dir, f"{package}_*.deb")))
    if not found:
        log(f"apt-get download {package}")
        cmd = ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", package]
        try:
            proc = subprocess.run(cmd, cwd=debs_dir, capture_output=True, text=True)
        except FileNotFoundError:
            raise RuntimeError(f"cannot download {package}: apt-get not found (a Debian system is needed)") from None
        found = sorted(glob.glob(os.path.join(debs_dir, f"{package}_*.deb")))
        if proc.returncode != 0 or not found:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise RuntimeError(f"cannot download {package}: {msg[-1] if msg else 'apt-get failed'}")
    deb = found[-1]
    fields = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Version"], capture_output=True, text=True,
                            check=True).stdout
    info = dict(line.split(": ", 1) for line in fields.strip().splitlines() if ": " in line)
    h = hashlib.sha256()
    with open(deb, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    root = os.path.join(debs_dir, "x", package)
    marker = os.path.join(root, ".unpacked-" + os.path.basename(deb))
    if not os.path.exists(marker):
        if os.path.isdir(root):
            shutil.rmtree(root)
        tmp = root + ".tmp"
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
        open(os.path.join(tmp, ".unpacked-" + os.path.basename(deb)), "w").close()
        os.replace(tmp, root)
    return root, {"package": info.get("Package", package), "version": info.get("Version", "?"),
                  "deb": os.path.basename(deb), "sha256": h.hexdigest()}


# --------------------------------------------------------------------------- the pool
def source_passages(source: Source, root: str, progress: bool = False) -> Iterator[tuple[str, str]]:
    """(document name, passage text) of one unpacked source, in order; non-English blocks and passages dropped."""
    docs = source.documents(root)
    if progress:
        from tqdm import tqdm

        docs = tqdm(docs, desc=source.name, unit="docs", leave=False, dynamic_ncols=True)
    for name, blocks in docs:
        for p in cut_passages(b for b in blocks if is_english_block(b)):
            if is_english_passage(p):
                yield name, p


def word_stats(counts: Sequence[int]) -> dict:
    if not counts:
        return {"n": 0}
    s = sorted(counts)

    def pct(q):
        return s[min(len(s) - 1, int(q * len(s)))]

    return {"n": len(s), "min": s[0], "p5": pct(0.05), "median": statistics.median(s),
            "mean": round(sum(s) / len(s), 2), "p95": pct(0.95), "max": s[-1], "total": sum(s)}


def dedup_passages(items: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], int]:
    """Give ``(source, text)`` items ids ``<source>-<n>`` (n counts per source from 0), dropping exact duplicates.

    Returns (``[(id, text)]``, number of duplicates dropped). The first copy of a text is kept.
    """
    seen: set[bytes] = set()
    next_n: dict[str, int] = {}
    out = []
    dups = 0
    for src, text in items:
        h = passage_hash(text)
        if h in seen:
            dups += 1
            continue
        seen.add(h)
        n = next_n.get(src, 0)
        next_n[src] = n + 1
        out.append((f"{src}-{n}", text))
    return out, dups


def source_of(pid: str) -> str:
    return pid.rsplit("-", 1)[0]


def _write_tsv(path: str, passages: Iterable[tuple[str, str]]) -> tuple[int, str]:
    tmp = f"{path}.tmp-{os.getpid()}"
    h = hashlib.sha256()
    n = 0
    with open(tmp, "wb") as f:
        for pid, text in passages:
            if "\t" in text or "\n" in text or "\r" in text:
                text = collapse(text)
            line = f"{pid}\t{text}\n".encode("utf-8")
            h.update(line)
            f.write(line)
            n += 1
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return n, h.hexdigest()


def read_tsv(path: str) -> list[tuple[str, str]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            pid, text = line.rstrip("\n").split("\t", 1)
            out.append((pid, text))
    return out


def _write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


def _summary(passages: Sequence[tuple[str, str]]) -> dict:
    per_source: dict[str, list[int]] = {}
    for pid, text in passages:
        per_source.setdefault(source_of(pid), []).append(len(text.split()))
    allw = [w for ws in per_source.values() for w in ws]
    return {"passages": len(passages),
            "per_source": {s: len(ws) for s, ws in sorted(per_source.items())},
            "words": word_stats(allw),
            "words_per_source": {s: word_stats(ws) for s, ws in sorted(per_source.items())}}


def build_pool(work_dir: str, log: Log = print, progress: bool = True,
               sources: Sequence[Source] = SOURCES) -> tuple[str, dict]:
    """Download, extract and cut every source into ``real/passages.tsv`` + ``real/meta.json`` (cached)."""
    real = os.path.join(work_dir, "real")
    os.makedirs(real, exist_ok=True)
    path, meta_path = os.path.join(real, "passages.tsv"), os.path.join(real, "meta.json")
    want_sources = [s.name for s in sorted(sources, key=lambda s: s.name)]
    meta = _read_json(meta_path)
    if (meta and meta.get("generator") == GENERATOR_VERSION and meta.get("origin") == "debian"
            and meta.get("sources") == want_sources and os.path.isfile(path)
            and os.path.getsize(path) == meta.get("bytes")):
        log(f"pool: cached {path} ({meta['passages']:,} passages)")
        return path, meta
    t0 = time.perf_counter()
    debs = os.path.join(work_dir, "debs")
    packages = {}
    roots = {}
    for src in sorted(sources, key=lambda s: s.name):
        roots[src.name], packages[src.name] = fetch_package(debs, src.package, log)
    t_fetch = time.perf_counter() - t0
    raw_counts: dict[str, int] = {}
    seconds: dict[str, float] = {}

    def items() -> Iterator[tuple[str, str]]:
        for src in sorted(sources, key=lambda s: s.name):
            t = time.perf_counter()
            n = 0
            for _doc, text in source_passages(src, roots[src.name], progress=progress):
                n += 1
                yield src.name, text
            raw_counts[src.name] = n
            seconds[src.name] = round(time.perf_counter() - t, 1)
            log(f"  {src.name:<11} {n:>9,} passages from {packages[src.name]['package']} "
                f"{packages[src.name]['version']} ({seconds[src.name]:.1f} s)")

    log("pool: cutting passages")
    passages, dups = dedup_passages(items())
    n, sha = _write_tsv(path, passages)
    meta = {"generator": GENERATOR_VERSION, "origin": "debian", "sources": want_sources,
            "packages": packages, "descriptions": {s.name: s.description for s in sources},
            "cut": {"min_words": MIN_WORDS, "max_words": MAX_WORDS, "target": PACK_TARGET, "unit_max": UNIT_MAX},
            "before_dedup": raw_counts, "duplicates_dropped": dups, **_summary(passages),
            "bytes": os.path.getsize(path), "sha256": sha,
            "seconds": {"fetch": round(t_fetch, 1), **seconds}}
    _write_json(meta_path, meta)
    log(f"pool: {n:,} passages ({dups:,} duplicates dropped) in {time.perf_counter() - t0:.0f} s -> {path}")
    return path, meta


def _given_pool(work_dir: str, passages: Iterable, log: Log) -> tuple[str, dict]:
    """Write given passages (``(id, text)`` pairs or texts) as the pool (cached by content)."""
    items = []
    for i, p in enumerate(passages):
        if isinstance(p, str):
            items.append((f"given-{i}", collapse(p)))
        else:
            pid, text = p
            if not pid or any(ch.isspace() for ch in pid):
                raise ValueError(f"passage id {pid!r} is empty or contains whitespace")
            items.append((pid, collapse(text)))
    ids = [pid for pid, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate passage ids")
    h = hashlib.sha256()
    for pid, text in items:
        h.update(f"{pid}\t{text}\n".encode("utf-8"))
    real = os.path.join(work_dir, "real")
    os.makedirs(real, exist_ok=True)
    path, meta_path = os.path.join(real, "passages.tsv"), os.path.join(real, "meta.json")
    meta = _read_json(meta_path)
    if (meta and meta.get("generator") == GENERATOR_VERSION and meta.get("sha256") == h.hexdigest()
            and os.path.isfile(path) and os.path.getsize(path) == meta.get("bytes")):
        log(f"pool: cached {path} ({meta['passages']:,} given passages)")
        return path, meta
    _n, sha = _write_tsv(path, items)
    meta = {"generator": GENERATOR_VERSION, "origin": "given", "sources": sorted({source_of(i) for i in ids}),
            "packages": {}, **_summary(items), "bytes": os.path.getsize(path), "sha256": sha}
    _write_json(meta_path, meta)
    log(f"pool: {len(items):,} given passages -> {path}")
    return path, meta


# --------------------------------------------------------------------------- selection
def balanced_quota(counts: dict[str, int], n: int) -> dict[str, int]:
    """Passages to take from each source: equal shares, a small source gives all it has (water filling)."""
    total = sum(counts.values())
    if n > total:
        raise ValueError(f"asked for {n:,} passages but only {total:,} exist ({counts})")
    order = sorted(counts, key=lambda s: (counts[s], s))
    quota = {}
    remaining = n
    for i, s in enumerate(order):
        share = remaining // (len(order) - i)
        quota[s] = min(counts[s], share)
        remaining -= quota[s]
    for s in reversed(order):  # rounding leftovers, largest sources first
        if remaining == 0:
            break
        extra = min(remaining, counts[s] - quota[s])
        quota[s] += extra
        remaining -= extra
    return {s: quota[s] for s in sorted(quota)}


def select_passages(passages: Sequence[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """A deterministic, source-balanced selection of exactly ``n`` passages, in pool order.

    Each source's quota (:func:`balanced_quota`) is taken evenly spaced over
    that source's passages, so the whole of each source is covered.
    """
    by_source: dict[str, list[int]] = {}
    for i, (pid, _t) in enumerate(passages):
        by_source.setdefault(source_of(pid), []).append(i)
    quota = balanced_quota({s: len(ix) for s, ix in by_source.items()}, n)
    keep = set()
    for s, ix in by_source.items():
        q = quota[s]
        keep.update(ix[(j * len(ix)) // q] for j in range(q))
    return [passages[i] for i in sorted(keep)]


# --------------------------------------------------------------------------- encoding
@dataclass
class RealCollection:
    """A cached real-encoder collection (see the module docstring)."""

    passages_path: str
    vectors_dir: str
    queries_path: str
    meta: dict = field(default_factory=dict)


def encoder_config(model: str):
    """The splade-tiny preset's settings (SPLADE, max pooling, 256 / 64 tokens) on the checkpoint ``model``."""
    from lsr.encoders import EncoderConfig, SideConfig

    model = os.path.abspath(model)
    name = os.path.basename(model.rstrip("/")) or "splade"
    return EncoderConfig(name=name, type="splade", description=f"SPLADE (max pooling) on {name}",
                         doc=SideConfig(kind="splade", model=model, pooling="max", max_length=256),
                         query=SideConfig(kind="splade", model=model, pooling="max", max_length=64))


def _model_tag(model: str) -> str:
    """'' for the default model, else ``-<name>-<hash of the path>`` for the cache names."""
    model = os.path.realpath(model)
    if os.path.isdir(DEFAULT_MODEL) and model == os.path.realpath(DEFAULT_MODEL):
        return ""
    name = re.sub(r"[^\w.-]", "_", os.path.basename(model.rstrip("/")))
    return f"-{name}-{hashlib.sha1(model.encode()).hexdigest()[:8]}"


def _state_source(vectors_dir: str) -> dict | None:
    from lsr.encoders.collection import STATE_FILE

    st = _read_json(os.path.join(vectors_dir, STATE_FILE))
    return st.get("source") if st else None


def ensure_collection(work_dir: str, n_passages: int | None = 300_000, model: str | None = None,
                      n_queries: int | None = None, threads: int | None = None, log: Log = print, *,
                      passages: Iterable | None = None, queries: str | Iterable | None = None,
                      batch_size: int = 32, part_size: int = 10_000, progress: bool = True) -> RealCollection:
    """Build (or reuse) the real-encoder collection under ``work_dir`` and return where it is.

    ``n_passages`` documents (``None``: the whole pool) from the Debian
    sources (or from ``passages``, ``(id, text)`` pairs or texts, instead),
    encoded by the SPLADE checkpoint ``model`` (default
    ``<repo>/../shared/models/splade-tiny``) into ``real/vectors-<n>/``;
    the MS MARCO dev/small queries (or ``queries``: a ``id<TAB>text`` file or
    ``(id, text)`` pairs), the first ``n_queries`` of them, encoded by the
    same model into ``real/queries-devsmall.jsonl``. Everything already
    built is reused; an interrupted encode continues where it stopped.
    """
    from lsr.encoders import load_encoder
    from lsr.encoders.collection import encode_corpus, encode_query_file
    from lsr.encoders.corpus import source_fingerprint

    t_start = time.perf_counter()
    model = os.path.abspath(model if model is not None else DEFAULT_MODEL)
    if not os.path.isdir(model):
        raise FileNotFoundError(f"model checkpoint {model} not found (give --model / model=)")
    work_dir = os.path.abspath(work_dir)
    real = os.path.join(work_dir, "real")
    os.makedirs(real, exist_ok=True)
    timings: dict[str, float] = {}

    # 1. the pool and the selection
    t = time.perf_counter()
    pool_path, pool_meta = (build_pool(work_dir, log, progress) if passages is None
                            else _given_pool(work_dir, passages, log))
    timings["pool_s"] = round(time.perf_counter() - t, 2)
    n = pool_meta["passages"] if n_passages is None else int(n_passages)
    if n < 1:
        raise ValueError(f"n_passages must be positive, got {n_passages!r}")
    sel_path = os.path.join(real, f"passages-{n}.tsv")
    sel_meta_path = os.path.join(real, f"passages-{n}.json")
    sel_meta = _read_json(sel_meta_path)
    if not (sel_meta and sel_meta.get("pool_sha256") == pool_meta["sha256"] and os.path.isfile(sel_path)
            and os.path.getsize(sel_path) == sel_meta.get("bytes")):
        pool = read_tsv(pool_path)
        chosen = select_passages(pool, n)
        _n, sha = _write_tsv(sel_path, chosen)
        sel_meta = {"generator": GENERATOR_VERSION, "pool_sha256": pool_meta["sha256"], **_summary(chosen),
                    "quota": balanced_quota(pool_meta["per_source"], n),
                    "bytes": os.path.getsize(sel_path), "sha256": sha}
        _write_json(sel_meta_path, sel_meta)
        log(f"selection: {n:,} of {pool_meta['passages']:,} passages -> {sel_path}")
    else:
        log(f"selection: cached {sel_path}")
    log("  per source: " + ", ".join(f"{s} {c:,}" for s, c in sel_meta["per_source"].items()))
    w = sel_meta["words"]
    log(f"  words per passage: min {w['min']}, median {w['median']}, mean {w['mean']}, max {w['max']}")

    # 2. documents
    tag = _model_tag(model)
    vectors_dir = os.path.join(real, f"vectors-{n}{tag}")
    encoder = load_encoder(encoder_config(model), threads=threads)
    overwrite = False
    prev_src = _state_source(vectors_dir)
    if prev_src is not None and prev_src != source_fingerprint(sel_path):
        log(f"documents: {vectors_dir} was encoded from another passages file; encoding again")
        overwrite = True
    log(f"documents: {n:,} passages, model {model} -> {vectors_dir}")
    t = time.perf_counter()
    try:
        rep = encode_corpus(encoder, sel_path, vectors_dir, batch_size=batch_size, part_size=part_size,
                            progress=progress, overwrite=overwrite)
    except Exception as e:  # a different encoder description: start again
        from lsr.errors import LsrError

        if isinstance(e, LsrError) and "holds an encode with a different" in str(e):
            log(f"documents: {e}; encoding again")
            rep = encode_corpus(encoder, sel_path, vectors_dir, batch_size=batch_size, part_size=part_size,
                                progress=progress, overwrite=True)
        else:
            raise
    timings["documents_s"] = round(time.perf_counter() - t, 2)
    if rep.encoded:
        log(f"documents: encoded {rep.encoded:,} in {rep.seconds:.1f} s ({rep.docs_per_second:.1f} docs/s)"
            + (f", resumed after {rep.resumed_from:,}" if rep.resumed_from else "")
            + f"; {rep.truncated} truncated, {rep.empty} empty")
    else:
        log(f"documents: cached ({rep.docs:,} documents, {rep.parts} parts)")

    # 3. queries
    qsrc = DEFAULT_QUERIES if queries is None else queries
    if not isinstance(qsrc, (str, os.PathLike)):
        qtsv = os.path.join(real, "queries-given.tsv")
        _write_tsv(qtsv, [(str(q), str(text)) for q, text in qsrc])
        qsrc = qtsv
    qsrc = os.path.abspath(os.fspath(qsrc))
    if not os.path.isfile(qsrc):
        raise FileNotFoundError(f"queries file {qsrc} not found (give queries=)")
    is_devsmall = os.path.isfile(DEFAULT_QUERIES) and os.path.realpath(qsrc) == os.path.realpath(DEFAULT_QUERIES)
    qname = "devsmall" if is_devsmall else "given"
    queries_path = os.path.join(real, f"queries-{qname}{'' if n_queries is None else f'-{n_queries}'}{tag}.jsonl")
    qinfo_path = queries_path + ".meta"
    want_q = {"generator": GENERATOR_VERSION, "source": source_fingerprint(qsrc), "limit": n_queries,
              "encoder": _strip_volatile(encoder.describe())}
    qinfo = _read_json(qinfo_path)
    if qinfo and os.path.isfile(queries_path) and {k: qinfo.get(k) for k in want_q} == want_q:
        log(f"queries: cached {queries_path} ({qinfo['queries']:,} queries)")
        qrep = qinfo
    else:
        t = time.perf_counter()
        r = encode_query_file(encoder, qsrc, queries_path, limit=n_queries, progress=progress)
        qrep = {**want_q, "queries": r.docs, "seconds": round(r.seconds, 2),
                "queries_per_second": round(r.docs / r.seconds, 1) if r.seconds else None,
                "truncated": r.truncated, "empty": r.empty}
        _write_json(qinfo_path, qrep)
        timings["queries_s"] = round(time.perf_counter() - t, 2)
        log(f"queries: encoded {r.docs:,} in {r.seconds:.1f} s -> {queries_path}")

    # 4. the record of what is there
    coll_meta_path = os.path.join(real, f"collection-{n}{tag}.json")
    old = _read_json(coll_meta_path) or {}
    encodes = old.get("encodes", []) if old.get("vectors_dir") == vectors_dir and not overwrite else []
    if rep.encoded:
        encodes.append({"encoded": rep.encoded, "resumed_from": rep.resumed_from, "seconds": round(rep.seconds, 2),
                        "docs_per_second": round(rep.docs_per_second, 1), "threads": threads,
                        "batch_size": batch_size, "when": time.strftime("%Y-%m-%d %H:%M:%S")})
    meta = {"generator": GENERATOR_VERSION, "n_passages": n, "model": model, "meta_path": coll_meta_path,
            "passages_path": sel_path, "vectors_dir": vectors_dir, "queries_path": queries_path,
            "pool": {k: pool_meta.get(k) for k in ("origin", "passages", "per_source", "packages",
                                                   "duplicates_dropped", "before_dedup", "words")},
            "selection": {k: sel_meta.get(k) for k in ("passages", "per_source", "words", "words_per_source",
                                                       "sha256")},
            "documents": {"docs": rep.docs, "parts": rep.parts, "truncated": rep.truncated, "empty": rep.empty},
            "encodes": encodes,
            "queries": {k: qrep.get(k) for k in ("queries", "seconds", "queries_per_second", "truncated",
                                                 "empty", "limit")},
            "timings": {**timings, "total_s": round(time.perf_counter() - t_start, 2)}}
    _write_json(coll_meta_path, meta)
    return RealCollection(passages_path=sel_path, vectors_dir=vectors_dir, queries_path=queries_path, meta=meta)


def _strip_volatile(desc: dict) -> dict:
    return {k: v for k, v in desc.items() if k != "lsr_version"}


# --------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.realdata",
                                 description="Build (or reuse) the real-encoder benchmark collection: Debian "
                                             "documentation passages and MS MARCO dev/small queries encoded "
                                             "with splade-tiny.")
    ap.add_argument("--work-dir", default=None,
                    help="cache directory (default: $LSR_BENCH_CACHE, else $XDG_CACHE_HOME/lsr-bench; here "
                         f"{default_cache_dir()})")
    ap.add_argument("--passages", type=int, default=300_000, help="number of passages (default 300000)")
    ap.add_argument("--queries", type=int, default=None, help="encode only the first N dev/small queries")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--model", default=None, help=f"SPLADE checkpoint (default {DEFAULT_MODEL})")
    ap.add_argument("--batch-size", type=int, default=32, help="documents per encoder batch (default 32)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    args.work_dir = os.path.abspath(os.path.expanduser(args.work_dir or default_cache_dir()))
    # Waiting OpenMP threads sleep instead of spinning: on a shared (or niced) machine, spinning torch threads
    # that cannot all run at once slowed the encode about 3x (measured: 8.7 vs 29 docs/s with 2 threads while
    # other processes used most of the 2 cores). Must be set before torch starts its thread pool.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    t0 = time.perf_counter()
    coll = ensure_collection(args.work_dir, args.passages, model=args.model, n_queries=args.queries,
                             threads=args.threads, batch_size=args.batch_size, progress=not args.no_progress,
                             log=lambda s: print(s, flush=True))
    print(f"passages: {coll.passages_path}")
    print(f"vectors:  {coll.vectors_dir}")
    print(f"queries:  {coll.queries_path}")
    print(f"meta:     {coll.meta['meta_path']}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
