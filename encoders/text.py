"""Text handling shared by the encoders: input checks, tokenisation with truncation
reports, and DeepImpact's whole-word segmentation.

Words (DeepImpact, DeeperImpact, the ``words`` query side) are what BERT's
basic tokenizer yields: the tokenizer's normaliser (for uncased BERT: clean
control characters, space out CJK characters, strip accents, lower-case) and
then its pre-tokeniser (split on whitespace and on every punctuation
character). Words made only of punctuation are dropped. A text's words are the
output vocabulary; each word's *first occurrence* is scored on its *first*
WordPiece (see :meth:`TextTokenizer.first_occurrences`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from lsr.errors import InputError


def check_texts(texts: Sequence[str], what: str = "text") -> list[str]:
    """Validate a list of texts: each a ``str`` that encodes as UTF-8.

    Raises :class:`~lsr.errors.InputError` for a bare string (instead of a
    list), a non-string item (bytes must be decoded first) or a string with
    lone surrogates (e.g. from ``errors="surrogateescape"``).
    """
    if isinstance(texts, (str, bytes)):
        raise InputError(f"expected a list of {what}s, got a single {type(texts).__name__}")
    try:
        out = list(texts)
    except TypeError:
        raise InputError(f"expected a list of {what}s, got {type(texts).__name__}") from None
    for i, t in enumerate(out):
        if not isinstance(t, str):
            if isinstance(t, (bytes, bytearray)):
                raise InputError(f"{what} {i} is bytes: decode it (UTF-8) to str first")
            raise InputError(f"{what} {i} is {type(t).__name__}, not str")
        if not t.isascii():
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InputError(f"{what} {i} is not valid Unicode ({e.reason} at character {e.start}); "
                                 "it was probably decoded from non-UTF-8 bytes") from None
    return out


def is_punctuation_char(ch: str) -> bool:
    """BERT's punctuation test: ASCII non-alphanumeric symbols, or a Unicode ``P*`` category."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_punctuation_word(word: str) -> bool:
    """Whether a word consists of punctuation characters only."""
    return all(is_punctuation_char(ch) for ch in word)


@dataclass
class Encoded:
    """Token ids of texts and whether each was truncated."""

    ids: list[list[int]]
    truncated: list[bool]


class TextTokenizer:
    """A private copy of a fast tokenizer, set to truncate at ``max_length`` tokens.

    ``max_length`` counts the special tokens ([CLS], [SEP]). Whether a text
    was truncated is read from the tokenizer's overflow, not guessed from the
    length. Very long texts are first cut at a whitespace after
    ``64 * max_length`` characters; when the cut text still fills the window,
    the result is the same as for the whole text (words before a whitespace
    tokenise the same), otherwise the whole text is tokenised.
    """

    def __init__(self, hf_tokenizer, max_length: int) -> None:
        from tokenizers import Tokenizer

        from .checkpoints import vocab_list

        self.hf = hf_tokenizer
        self.max_length = int(max_length)
        self.backend = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
        self.backend.no_padding()
        self.backend.enable_truncation(self.max_length)
        self.normalizer = self.backend.normalizer
        self.pre_tokenizer = self.backend.pre_tokenizer
        self.special_ids = frozenset(int(i) for i in hf_tokenizer.all_special_ids)
        self.vocab = vocab_list(hf_tokenizer)
        pad = hf_tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self.precut_chars = max(4096, 64 * self.max_length)

    def _precut(self, text: str) -> str:
        if len(text) <= self.precut_chars:
            return text
        lo = self.precut_chars
        # cut before a whitespace so that the last word of the prefix is complete
        for pos in range(lo, min(len(text), lo + 10_000)):
            if text[pos].isspace():
                return text[:pos]
        return text

    def encode(self, texts: list[str], add_special_tokens: bool = True) -> Encoded:
        """Token ids (truncated to ``max_length``) and truncation flags."""
        cut = [self._precut(t) for t in texts]
        encs = ([self.backend.encode(cut[0], add_special_tokens=add_special_tokens)] if len(cut) == 1
                else self.backend.encode_batch(cut, add_special_tokens=add_special_tokens))
        ids: list[list[int]] = []
        trunc: list[bool] = []
        for i, e in enumerate(encs):
            if cut[i] is not texts[i] and not e.overflowing:
                e = self.backend.encode(texts[i], add_special_tokens=add_special_tokens)
            ids.append(e.ids)
            trunc.append(bool(e.overflowing))
        return Encoded(ids, trunc)

    # -- whole words -----------------------------------------------------------
    def words(self, text: str) -> list[str]:
        """All words of a text (normalised, pre-tokenised), punctuation-only words included."""
        norm = self.normalizer.normalize_str(text) if self.normalizer is not None else text
        if self.pre_tokenizer is None:
            return norm.split()
        return [w for w, _ in self.pre_tokenizer.pre_tokenize_str(norm)]

    def content_words(self, text: str) -> list[str]:
        """The words of a text without punctuation-only words, in order, repeats kept."""
        return [w for w in self.words(text) if not is_punctuation_word(w)]

    def window_words(self, text: str) -> list[str]:
        """The leading words of a text that can reach the token window (all of them if few).

        Every word yields at least one WordPiece, so only the first
        ``max_length`` words can have a token inside the window.
        """
        cut = self._precut(text)
        words = self.words(cut)
        if cut is not text and len(words) < self.max_length:
            words = self.words(text)
        return words[: self.max_length]

    def first_occurrences(self, word_lists: list[list[str]]):
        """Score positions for whole words: DeepImpact's first-occurrence rule.

        For each text (given as its words, see :meth:`window_words`) returns
        ``(ids, terms, positions, truncated)``: the WordPiece ids of the words
        (with special tokens, truncated to ``max_length``), the distinct
        non-punctuation words in order of first occurrence, the position of
        the first WordPiece of each such word's first occurrence, and whether
        some word lost its tokens to truncation. Words whose first occurrence
        has no token left in the window are left out.
        """
        encs = self.backend.encode_batch(word_lists, is_pretokenized=True) if word_lists else []
        out = []
        for words, e in zip(word_lists, encs):
            first_tok: dict[int, int] = {}
            for pos, wid in enumerate(e.word_ids):
                if wid is not None and wid not in first_tok:
                    first_tok[wid] = pos
            terms: list[str] = []
            positions: list[int] = []
            seen: set[str] = set()
            for j, w in enumerate(words):
                if w in seen or is_punctuation_word(w):
                    continue
                p = first_tok.get(j)
                if p is None:  # this word and all after it fell outside the window
                    break
                seen.add(w)
                terms.append(w)
                positions.append(p)
            out.append((e.ids, terms, positions, bool(e.overflowing)))
        return out


def append_new_terms(text: str, extra_texts: Sequence[str], tokenizer: TextTokenizer) -> str:
    """``text`` followed by the words of ``extra_texts`` that it lacks, once each, in order.

    This is the doc2query merge of DeepImpact / DeeperImpact: only unique new
    terms are appended (punctuation-only words are not terms).
    """
    have = set(tokenizer.content_words(text))
    new: list[str] = []
    for extra in extra_texts:
        for w in tokenizer.content_words(extra):
            if w not in have:
                have.add(w)
                new.append(w)
    if not new:
        return text
    return f"{text} {' '.join(new)}" if text else " ".join(new)


__all__ = [
    "Encoded",
    "TextTokenizer",
    "append_new_terms",
    "check_texts",
    "is_punctuation_char",
    "is_punctuation_word",
]
