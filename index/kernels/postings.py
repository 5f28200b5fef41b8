"""Pair-coded postings: how the index stores doc ids (format version 3).

The documents are cut into *range blocks* of ``R = 1 << shift`` consecutive
doc ids. A term's postings (ascending doc ids) fall into runs that share a
range block; each run is a *(term, block) pair*. The index stores

* per posting: its impact (``postings_impacts``) and the low ``shift`` bits of
  its doc id (``postings_low``: two 4-bit values a byte when ``shift <= 4``,
  the low nibble first; one byte a posting when ``4 < shift <= 8``);
* per pair: the largest impact of the term in the block (``range_max``) and
  one LEB128 varint in ``range_codes``::

      code = ((block - previous block of the term) << shift) | (count - 1)

  (the previous block of a term's first pair is 0), so the codes of term t
  (bytes ``range_code_offsets[t]`` .. ``range_code_offsets[t + 1]``) give its
  blocks and how many postings each holds, in doc order; pair j of term t is
  ``range_offsets[t] + j``.

Doc id of posting p in a pair of block b: ``(b << shift) | low(p)``. Scanning a
term decodes one varint per pair and one nibble per posting; nothing needs
random access into the codes (the block-max traversal decodes a query's pairs
once, see :mod:`.blockmax`). The pair maxima double as the doc-range block
maxima of the block-max traversal.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def read_varint(codes, c):
    """(value, next position) of the LEB128 varint at ``codes[c]``."""
    byte = np.int64(codes[c])
    c += 1
    v = byte & 0x7F
    sh = 7
    while byte >= 0x80:
        byte = np.int64(codes[c])
        c += 1
        v |= (byte & 0x7F) << sh
        sh += 7
    return v, c


@njit(cache=True, inline="always")
def term_pairs(term_offsets, code_offsets, t):
    """A cursor at term t's first (term, block) pair: (code position, end of its codes, previous block,
    first posting). Walk it with :func:`next_pair` while ``cursor[0] < cursor[1]``."""
    return code_offsets[t], code_offsets[t + 1], np.int64(0), np.int64(term_offsets[t])


@njit(cache=True, inline="always")
def next_pair(codes, shift, cursor):
    """Decode the pair at ``cursor``: (cursor at the next pair, its block, its first posting, its
    posting count)."""
    c, cend, blk, p = cursor
    v, c = read_varint(codes, c)
    blk = blk + (v >> shift)
    n = (v & ((1 << shift) - 1)) + 1
    return (c, cend, blk, p + n), blk, p, n


@njit(cache=True, inline="always")
def low_at(low, p, nib):
    """Low doc id bits of posting p."""
    if nib:
        return (np.int64(low[p >> 1]) >> ((p & 1) << 2)) & 15
    return np.int64(low[p])


def low_length(n_postings: int, shift: int) -> int:
    """Length of ``postings_low`` for ``n_postings`` postings."""
    return (n_postings + 1) // 2 if shift <= 4 else n_postings


@njit(cache=True, inline="always")
def _varint_len(v):
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


# --------------------------------------------------------------------------- encode
@njit(cache=True, parallel=True)
def pair_sizes(term_offsets, docs, shift, out_pairs, out_bytes):
    """Per term: number of pairs and of code bytes. Returns nothing; see :func:`encode`."""
    n_terms = term_offsets.shape[0] - 1
    for t in prange(n_terms):
        pairs = 0
        nbytes = 0
        prev = 0
        p = term_offsets[t]
        end = term_offsets[t + 1]
        while p < end:
            b = np.int64(docs[p]) >> shift
            q = p + 1
            while q < end and (np.int64(docs[q]) >> shift) == b:
                q += 1
            pairs += 1
            nbytes += _varint_len(((b - prev) << shift) | (q - p - 1))
            prev = b
            p = q
        out_pairs[t] = pairs
        out_bytes[t] = nbytes


@njit(cache=True, parallel=True)
def pair_fill(term_offsets, docs, impacts, shift, range_offsets, code_offsets, range_max, codes, low):
    """Write the pairs' maxima and codes and every posting's low bits (offsets already summed).

    With ``shift <= 4`` two postings share a byte of ``low``; a byte may span
    two terms, so the low bits are written in a second, serial-by-byte pass.
    """
    n_terms = term_offsets.shape[0] - 1
    mask = (1 << shift) - 1
    for t in prange(n_terms):
        j = range_offsets[t]
        c = code_offsets[t]
        prev = 0
        p = term_offsets[t]
        end = term_offsets[t + 1]
        while p < end:
            b = np.int64(docs[p]) >> shift
            m = impacts[p]
            q = p + 1
            while q < end and (np.int64(docs[q]) >> shift) == b:
                if impacts[q] > m:
                    m = impacts[q]
                q += 1
            range_max[j] = m
            v = ((b - prev) << shift) | (q - p - 1)
            while v >= 0x80:
                codes[c] = (v & 0x7F) | 0x80
                v >>= 7
                c += 1
            codes[c] = v
            c += 1
            j += 1
            prev = b
            p = q
    n = docs.shape[0]
    if shift <= 4:
        for i in prange(low.shape[0]):
            p = 2 * i
            v = np.int64(docs[p]) & mask
            if p + 1 < n:
                v |= (np.int64(docs[p + 1]) & mask) << 4
            low[i] = v
    else:
        for p in prange(n):
            low[p] = np.int64(docs[p]) & mask


def encode(term_offsets, docs, impacts, shift):
    """(range_offsets, range_max, range_code_offsets, range_codes, postings_low) of sorted postings."""
    if not 0 <= shift <= 8:
        raise ValueError(f"shift must be in [0, 8], got {shift}")
    n_terms = len(term_offsets) - 1
    pairs = np.zeros(n_terms, np.int64)
    nbytes = np.zeros(n_terms, np.int64)
    pair_sizes(term_offsets, docs, shift, pairs, nbytes)
    range_offsets = np.zeros(n_terms + 1, np.int64)
    np.cumsum(pairs, out=range_offsets[1:])
    code_offsets = np.zeros(n_terms + 1, np.int64)
    np.cumsum(nbytes, out=code_offsets[1:])
    range_max = np.empty(int(range_offsets[-1]), impacts.dtype)
    codes = np.empty(int(code_offsets[-1]), np.uint8)
    low = np.empty(low_length(len(docs), shift), np.uint8)
    pair_fill(term_offsets, docs, impacts, shift, range_offsets, code_offsets, range_max, codes, low)
    return range_offsets, range_max, code_offsets, codes, low


def encode_ref(term_offsets, docs, impacts, shift):
    """Plain Python/NumPy reference of :func:`encode`."""
    offs, cofs, rmax, codes = [0], [0], [], bytearray()
    for t in range(len(term_offsets) - 1):
        s, e = int(term_offsets[t]), int(term_offsets[t + 1])
        blocks = np.asarray(docs[s:e], np.int64) >> shift
        uniq, first, counts = np.unique(blocks, return_index=True, return_counts=True)
        prev = 0
        for b, f, n in zip(uniq.tolist(), first.tolist(), counts.tolist()):
            rmax.append(impacts[s + f:s + f + n].max())
            v = ((b - prev) << shift) | (n - 1)
            while True:
                byte = v & 0x7F
                v >>= 7
                codes.append(byte | (0x80 if v else 0))
                if not v:
                    break
            prev = b
        offs.append(offs[-1] + len(uniq))
        cofs.append(len(codes))
    lows = np.asarray(docs, np.int64) & ((1 << shift) - 1)
    if shift <= 4:
        lows = np.append(lows, 0) if len(lows) % 2 else lows
        low = (lows[0::2] | (lows[1::2] << 4)).astype(np.uint8)
    else:
        low = lows.astype(np.uint8)
    return (np.asarray(offs, np.int64), np.asarray(rmax, dtype=impacts.dtype), np.asarray(cofs, np.int64),
            np.frombuffer(bytes(codes), np.uint8).copy(), low)


# --------------------------------------------------------------------------- decode
@njit(cache=True)
def decode_term_into(term_offsets, code_offsets, codes, low, shift, t, out, o):
    """Write term t's doc ids to ``out[o:]``; returns the number written."""
    nib = shift <= 4
    p0 = term_offsets[t]
    cur = term_pairs(term_offsets, code_offsets, t)
    while cur[0] < cur[1]:
        cur, blk, p, n = next_pair(codes, shift, cur)
        base = blk << shift
        for q in range(p, p + n):
            out[o + q - p0] = base + low_at(low, q, nib)
    return cur[3] - p0


@njit(cache=True, parallel=True)
def decode_docs(term_offsets, code_offsets, codes, low, shift, out):
    """Every posting's doc id (int32[P], in posting order)."""
    n_terms = term_offsets.shape[0] - 1
    for t in prange(n_terms):
        decode_term_into(term_offsets, code_offsets, codes, low, shift, t, out, term_offsets[t])


def decode_ref(term_offsets, code_offsets, codes, low, shift):
    """Plain Python/NumPy reference of :func:`decode_docs`."""
    n_post = int(term_offsets[-1])
    lows = np.empty(n_post, np.int64)
    if shift <= 4:
        both = np.stack([low & 15, low >> 4], axis=1).reshape(-1)
        lows[:] = both[:n_post]
    else:
        lows[:] = low[:n_post]
    out = np.empty(n_post, np.int32)
    for t in range(len(term_offsets) - 1):
        p = int(term_offsets[t])
        c, cend = int(code_offsets[t]), int(code_offsets[t + 1])
        blk = 0
        while c < cend:
            v, sh = 0, 0
            while True:
                byte = int(codes[c])
                c += 1
                v |= (byte & 0x7F) << sh
                sh += 7
                if byte < 0x80:
                    break
            blk += v >> shift
            n = (v & ((1 << shift) - 1)) + 1
            out[p:p + n] = (blk << shift) | lows[p:p + n]
            p += n
        if p != term_offsets[t + 1]:
            raise ValueError(f"term {t}: codes cover {p - int(term_offsets[t])} postings, "
                             f"expected {int(term_offsets[t + 1] - term_offsets[t])}")
    return out

