"""An experiment that did not pay: term-at-a-time scoring with a threshold raised after every term.

    python benchmarks/scripts/taat_sequential.py INDEX QUERIES.jsonl simulate [--queries 30] [--k 1000]
    python benchmarks/scripts/taat_sequential.py INDEX QUERIES.jsonl time [--queries 200] [--k 1000]

Not part of the package; kept so that the figures in docs/benchmarks.md ("Settings tried": a
threshold after every term) can be repeated. Integer impacts only.

The filtered scorer (``lsr.index.kernels.filtered``) scores the query's high-impact terms in full,
fixes one threshold, and filters the remaining terms' range blocks against it. The variant here
orders the terms the same way (``w * term_max``, largest first) but scores only the first in full,
then takes the remaining terms one at a time, each in the blocks that can still reach the top k,
``bmax[b] + ub[b] >= theta``, where ``bmax[b]`` is the block's largest partial score (kept exact),
``ub[b]`` the sum of ``w * range_max`` of the terms not yet added (the current one included), and
``theta`` a lower bound of the k-th best score raised after every term from a histogram of the
partial scores kept up to date as they change (only counts at or above ``theta`` are kept, which
is all the bound needs). A block that fails once stays out (its bound only falls and ``theta``
only rises); the top k is taken from the blocks that never failed. Exact, like the filtered scorer.

``simulate`` counts, in NumPy, the postings each scheme scores (as a fraction of the query terms'
postings): a fixed threshold after a full phase of ``full_ratio`` of the postings (the filtered
scorer's scheme), the threshold after every term, and the same with a scalar bound (the remaining
terms' ``sum w * term_max``) instead of the per-block ``ub``. ``time`` runs two Numba kernels of the
per-term scheme (``sequential_pairs_one``, the first version, and ``sequential_one``, which scores
the passing pairs in a flat loop as the exhaustive scorer does) against ``exhaustive_one`` and
``filtered_one``, warm, the calls in one order on even queries and the reverse on odd ones, checks
that they all return the same top k, and breaks ``sequential_one``'s time down by replaying the
thresholds of a first run (no histogram), and with the scoring of the passing pairs left out. It
also times exhaustive scoring cut into doc id segments (``segmented_scores``), another idea that
did not pay. Every kernel here runs without dense rows (``lsr.index.kernels.dense``, added after these
figures were taken), reading every term from its postings.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from lsr.index.kernels.dense import no_dense
from lsr.index.kernels.exhaustive import FLAT_CHUNK, _scatter_nibbles, exhaustive_one, score_terms
from lsr.index.kernels.filtered import filtered_one, full_prefix, rest_bounds
from lsr.index.kernels.postings import read_varint
from lsr.index.processors import PROCESSORS, max_pairs
from lsr.index.kernels.topk import _bin_shift, _offer_block, heap_sort_desc
from _common import open_prepared


# ----------------------------------------------------------------------------- NumPy simulation
def simulate(ix, p, k: int) -> None:
    docs = ix.postings_docs
    imp = ix.postings_impacts.astype(np.int64)
    to, tm = ix.term_offsets, ix.term_max.astype(np.int64)
    n, shift = ix.num_documents, ix.range_shift
    nb = (n + (1 << shift) - 1) >> shift

    def kth(a):
        return np.partition(a, len(a) - k)[len(a) - k] if np.count_nonzero(a) >= k else 1

    def block_max(a):
        pad = np.zeros(nb << shift, np.int64)
        pad[:n] = a
        return pad.reshape(nb, 1 << shift).max(1)

    schemes = ("fixed", "per-term", "per-term, scalar bound")
    ratios = (0.0, 0.1, 0.2, 0.3, 0.5)
    tot = {(fr, s): np.zeros(2) for fr in ratios for s in schemes}
    for qi in range(len(p.ids)):
        qt = p.terms[p.offsets[qi]:p.offsets[qi + 1]]
        qw = p.weights[p.offsets[qi]:p.offsets[qi + 1]].astype(np.int64)
        order = np.argsort(-(qw * tm[qt]), kind="stable")
        lens = to[qt + 1] - to[qt]
        terms = []
        for i in range(len(qt)):
            d = docs[to[qt[i]]:to[qt[i] + 1]]
            v = qw[i] * imp[to[qt[i]]:to[qt[i] + 1]]
            bm = np.zeros(nb, np.int64)
            np.maximum.at(bm, d >> shift, v)
            terms.append((d, v, bm))
        for fr in ratios:
            n_full, done = 0, 0
            while n_full < len(qt) and done < fr * lens.sum():
                done += lens[order[n_full]]
                n_full += 1
            for scheme in schemes:
                acc = np.zeros(n, np.int64)
                for i in order[:n_full]:
                    acc[terms[i][0]] += terms[i][1]
                ub = sum((terms[i][2] for i in order[n_full:]), np.zeros(nb, np.int64))
                rest = int(sum(qw[i] * tm[qt[i]] for i in order[n_full:]))
                theta, bmax, alive, scored = kth(acc), block_max(acc), np.ones(nb, bool), 0
                for i in order[n_full:]:
                    d, v, bm = terms[i]
                    alive &= bmax + (rest if scheme.endswith("scalar bound") else ub) >= theta
                    sel = alive[d >> shift]
                    scored += int(sel.sum())
                    acc[d[sel]] += v[sel]
                    ub -= bm
                    rest -= int(qw[i] * tm[qt[i]])
                    bmax = block_max(acc)
                    if scheme != "fixed":
                        theta = max(theta, kth(acc))
                tot[(fr, scheme)] += (done + scored, lens.sum())
    print(f"postings scored / postings of the query terms, k={k}, {len(p.ids)} queries")
    print("full_ratio  " + "  ".join(f"{s:>22s}" for s in schemes))
    for fr in ratios:
        print(f"{fr:10.1f}  " + "  ".join(f"{tot[(fr, s)][0] / tot[(fr, s)][1]:22.3f}" for s in schemes))


# ----------------------------------------------------------------------------- Numba prototypes
SEGMENTS = (12, 15, 17)   # doc id segment sizes (powers of two) of segmented_scores

@njit(cache=True, inline="always")
def _hist_theta(hist, k, s, theta):
    """The lower edge of the highest bin (at or above ``theta``'s) where the count from the top
    reaches k, or ``theta``; leaves ``hist`` as it is."""
    c = 0
    for j in range(hist.shape[0] - 1, (theta >> s) - 1, -1):
        c += hist[j]
        if c >= k:
            return max(theta, np.int64(j) << s)
    return theta


@njit(cache=True, inline="always")
def next_pair(codes, c, blk, shift, mask):
    """Decode the pair code at ``codes[c]`` after block ``blk``: (next position, its block, its posting count)
    (the prototypes' form of :func:`lsr.index.kernels.postings.next_pair`)."""
    v, c = read_varint(codes, c)
    return c, blk + (v >> shift), (v & mask) + 1


@njit(cache=True, inline="always")
def _term_order(ix, q_terms, q_weights, n_bins):
    """(the filtered scorer's term order, the histogram's bin shift for scores up to the query's
    ``sum w * term_max``)."""
    order, _ = full_prefix(ix, q_terms, q_weights, 0.0)
    total = np.int64(0)
    for i in range(q_terms.shape[0]):
        total += np.int64(q_weights[i]) * np.int64(ix.term_max[q_terms[i]])
    return order, _bin_shift(total, n_bins)


@njit(cache=True)
def _select(acc, bmax, ub, keep, hist, theta, k):
    """(hit count, docs, scores) of the top k from the blocks never ruled out whose maximum reaches
    ``theta``; leaves the work buffers all zeros."""
    out_docs = np.empty(k, np.int32)
    out_scores = np.empty(k, acc.dtype)
    size = 0
    for b in range(bmax.shape[0]):
        if keep[b] != 0 and bmax[b] >= theta:
            size = _offer_block(acc, b, 16, theta, k, out_docs, out_scores, size)
    acc[:] = 0
    bmax[:] = 0
    ub[:] = 0
    hist[:] = 0
    heap_sort_desc(out_scores, out_docs, size)
    return size, out_docs, out_scores


@njit(cache=True)
def sequential_one(ix, q_terms, q_weights, k, acc, bmax, ub, keep, hist, pairs, passing, passing_rel, thetas, mode,
                   counts):
    """Top-k scores of one query (range blocks of 16 documents); returns (hit count, docs, scores).
    mode 0: the histogram threshold (``thetas[i]`` records it after term i); 1: no histogram, the
    thresholds replayed from ``thetas``; 2: as 1 with the scoring of the passing pairs left out.
    Adds the passing pairs and their postings to ``counts[0]`` and ``counts[1]``."""
    term_offsets, range_offsets, range_max, code_offsets, codes, low, impacts, shift, n_docs = ix[:9]
    mask = (1 << shift) - 1
    nq = q_terms.shape[0]
    order, s = _term_order(ix, q_terms, q_weights, hist.shape[0])
    # the first term in full: its partial scores, histogram and block maxima come from its postings
    t = q_terms[order[0]]
    w = q_weights[order[0]]
    score_terms(ix, q_terms[order[:1]], q_weights[order[:1]], acc)
    if mode == 0:
        for q in range(term_offsets[t], term_offsets[t + 1]):
            hist[np.int64(w * impacts[q]) >> s] += 1
    blk = 0
    c = code_offsets[t]
    for j in range(range_offsets[t], range_offsets[t + 1]):
        c, blk, n = next_pair(codes, c, blk, shift, mask)
        bmax[blk] = w * range_max[j]
    theta = _hist_theta(hist, k, s, np.int64(1)) if mode == 0 else thetas[0]
    thetas[0] = theta
    # the bounds of the other terms; their pairs decoded into a buffer (the filtered scorer's step 3)
    rest_bounds(ix, q_terms, q_weights, order, 1, ub, pairs)
    keep[:] = 1
    bases = np.empty(FLAT_CHUNK + 16, np.int32)
    poss = np.empty(FLAT_CHUNK + 16, np.int32)
    touched = np.empty(FLAT_CHUNK, np.int64)
    e0 = 0
    for i in range(1, nq):
        t = q_terms[order[i]]
        w = q_weights[order[i]]
        p0 = term_offsets[t]
        r0 = range_offsets[t]
        n_pairs = range_offsets[t + 1] - r0
        # the pairs whose block can still reach the top k (branch-free)
        nb = 0
        rel = np.int32(0)
        for e in range(e0, e0 + n_pairs):
            v = pairs[e]
            blk = v >> 16
            ok = keep[blk] & np.uint8(np.int64(bmax[blk]) + np.int64(ub[blk]) >= theta)
            keep[blk] = ok
            passing[nb] = e
            passing_rel[nb] = rel
            nb += ok
            rel += np.int32(v & 0xFFFF)
        counts[0] += nb
        # their postings, a chunk at a time: expanded, scored in one flat loop, then the block maxima
        x = 0 if mode < 2 else nb
        while x < nb:
            o = 0
            m = 0
            while x < nb and o <= FLAT_CHUNK - 16:
                e = passing[x]
                v = pairs[e]
                blk = v >> 16
                ub[blk] -= w * range_max[r0 + e - e0]
                base = np.int32(blk << shift)
                r = passing_rel[x]
                for y in range(16):
                    bases[o + y] = base
                    poss[o + y] = r + y
                o += np.int32(v & 0xFFFF)
                touched[m] = blk
                m += 1
                x += 1
            counts[1] += o
            for j in range(o):
                q = p0 + poss[j]
                d = bases[j] + ((np.int32(low[q >> 1]) >> ((q & 1) << 2)) & 15)
                old = acc[d]
                nv = old + w * impacts[q]
                acc[d] = nv
                if mode == 0 and nv >= theta:
                    hist[np.int64(nv) >> s] += 1
                    if old >= theta:
                        hist[np.int64(old) >> s] -= 1
            for y in range(m):
                b0 = touched[y] << shift
                mx = acc.dtype.type(0)
                if b0 + 16 <= n_docs:
                    a16 = acc[b0:b0 + 16]
                    for d in range(16):
                        mx = max(mx, a16[d])
                else:
                    for d in range(b0, n_docs):
                        mx = max(mx, acc[d])
                bmax[touched[y]] = mx
        e0 += n_pairs
        if mode == 0:
            theta = _hist_theta(hist, k, s, theta)
            thetas[i] = theta
        else:
            theta = thetas[i]
    return _select(acc, bmax, ub, keep, hist, theta, k)


@njit(cache=True)
def sequential_pairs_one(ix, q_terms, q_weights, k, acc, bmax, ub, keep, hist):
    """The first version of :func:`sequential_one`: every term, the first included, pair by pair
    from the codes (decoded twice, no buffer), each passing pair's postings in a loop of their count
    with the block maximum and the histogram kept as they are scored."""
    term_offsets, range_offsets, range_max, code_offsets, codes, low, impacts, shift = ix[:8]
    mask = (1 << shift) - 1
    nq = q_terms.shape[0]
    order, s = _term_order(ix, q_terms, q_weights, hist.shape[0])
    theta = np.int64(1)
    for i in range(nq):
        t = q_terms[order[i]]
        w = q_weights[order[i]]
        blk = 0
        c = code_offsets[t]
        for j in range(range_offsets[t], range_offsets[t + 1]):
            c, blk, n = next_pair(codes, c, blk, shift, mask)
            ub[blk] += w * range_max[j]
    keep[:] = 1
    for i in range(nq):
        t = q_terms[order[i]]
        w = q_weights[order[i]]
        blk = 0
        c = code_offsets[t]
        p = term_offsets[t]
        for j in range(range_offsets[t], range_offsets[t + 1]):
            c, blk, n = next_pair(codes, c, blk, shift, mask)
            if keep[blk] != 0:
                if np.int64(bmax[blk]) + np.int64(ub[blk]) >= theta:
                    base = blk << shift
                    m = bmax[blk]
                    for q in range(p, p + n):
                        d = base + ((np.int64(low[q >> 1]) >> ((q & 1) << 2)) & 15)
                        old = acc[d]
                        nv = old + w * impacts[q]
                        acc[d] = nv
                        m = max(m, nv)
                        if nv >= theta:
                            hist[np.int64(nv) >> s] += 1
                            if old >= theta:
                                hist[np.int64(old) >> s] -= 1
                    bmax[blk] = m
                    ub[blk] -= w * range_max[j]
                else:
                    keep[blk] = 0
            p += n
        theta = _hist_theta(hist, k, s, theta)
    return _select(acc, bmax, ub, keep, hist, theta, k)


@njit(cache=True)
def segmented_scores(term_offsets, code_offsets, codes, low, impacts, shift, q_terms, q_weights, acc, seg_shift):
    """Exhaustive scoring into ``acc`` cut into doc id segments of ``2**seg_shift`` documents: every
    term's postings of one segment, then the next segment (one cursor per term, a pair that starts
    the next segment held back), so that the part of the accumulator in use stays in cache. Range
    blocks of up to 16 documents; the flat loop of the exhaustive scorer."""
    nq = q_terms.shape[0]
    mask = (1 << shift) - 1
    cpos = np.empty(nq, np.int64)
    cblk = np.zeros(nq, np.int64)
    ppos = np.empty(nq, np.int64)
    held_blk = np.full(nq, -1, np.int64)
    held_n = np.zeros(nq, np.int64)
    for i in range(nq):
        cpos[i] = code_offsets[q_terms[i]]
        ppos[i] = term_offsets[q_terms[i]]
    bases = np.empty(FLAT_CHUNK + 16, np.int32)
    seg_blocks = 1 << (seg_shift - shift)
    n_blocks = (acc.shape[0] + mask) >> shift
    for sb in range(0, n_blocks, seg_blocks):
        se = sb + seg_blocks
        for i in range(nq):
            if held_blk[i] >= se:
                continue
            w = q_weights[i]
            cend = code_offsets[q_terms[i] + 1]
            c, blk, p = cpos[i], cblk[i], ppos[i]
            o = 0
            if held_blk[i] >= 0:
                for y in range(16):
                    bases[y] = np.int32(held_blk[i] << shift)
                o = held_n[i]
                held_blk[i] = -1
            while c < cend:
                c, blk, n = next_pair(codes, c, blk, shift, mask)
                if blk >= se:
                    held_blk[i] = blk
                    held_n[i] = n
                    break
                for y in range(16):
                    bases[o + y] = np.int32(blk << shift)
                o += n
                if o > FLAT_CHUNK - 16:
                    _scatter_nibbles(acc, bases, o, p, w, low, impacts)
                    p += o
                    o = 0
            _scatter_nibbles(acc, bases, o, p, w, low, impacts)
            cpos[i], cblk[i], ppos[i] = c, blk, p + o


def time_kernels(ix, s, p, k: int) -> None:
    if ix.range_shift != 4 or ix.is_float:
        raise SystemExit("the prototype takes integer impacts and range blocks of 16 documents")
    dt = p.score_dtype
    n, nb = ix.num_documents, (ix.num_documents + 15) >> 4
    acc = np.zeros(n, dt)
    bmax, ub = np.zeros(nb, dt), np.zeros(nb, dt)
    keep, hist = np.zeros(nb, np.uint8), np.zeros(4096, np.int64)
    n_pairs = max_pairs(s, p)
    pairs, passing, passing_rel = np.empty(n_pairs, np.int64), np.empty(nb, np.int64), np.empty(nb, np.int32)
    # no dense rows: as when the figures were taken
    ixn = s.index_arrays()._replace(**dict(zip(("dense_slot", "dense", "dense_max"),
                                               no_dense(ix.num_terms, n, nb, ix.postings_impacts.dtype))))
    fb = PROCESSORS["filtered"].work(s, p, None)._replace(acc=acc)
    thetas = [np.zeros(len(p.terms), np.int64) for _ in p.ids]
    counts, no_counts = np.zeros(2, np.int64), np.zeros(2, np.int64)
    n_postings = int((ix.term_offsets[p.terms + 1] - ix.term_offsets[p.terms]).sum())
    times: dict[str, list[float]] = {}
    for rep in range(3):
        for qi in range(len(p.ids)):
            qt, qw = p.terms[p.offsets[qi]:p.offsets[qi + 1]], p.weights[p.offsets[qi]:p.offsets[qi + 1]]
            d_e, s_e = np.empty(k, np.int32), np.empty(k, dt)
            d_f, s_f = np.empty(k, np.int32), np.empty(k, dt)
            d_g, s_g = np.empty(k, np.int32), np.empty(k, dt)
            calls = [("exhaustive_one", lambda: exhaustive_one(ixn, qt, qw, k, (), acc, d_e, s_e)),
                     ("filtered_one", lambda: filtered_one(ixn, qt, qw, k, (s.config.planner.full_ratio,), fb, d_f,
                                                           s_f))]
            calls += [(f"sequential_one mode {m}",
                       lambda m=m: sequential_one(ixn, qt, qw, k, acc, bmax, ub, keep, hist, pairs,
                                                  passing, passing_rel, thetas[qi], m,
                                                  counts if (m == 0 and rep == 0) else no_counts)) for m in (0, 1, 2)]
            calls.append(("sequential_pairs_one", lambda: sequential_pairs_one(ixn, qt, qw, k, acc, bmax, ub, keep,
                                                                                hist)))
            for sh in SEGMENTS:   # then the exhaustive scorer's selection (no terms left to score)
                calls.append((f"segmented 2^{sh}", lambda sh=sh: (
                    segmented_scores(*ix.postings_arrays[:6], qt, qw, acc, sh),
                    exhaustive_one(ixn, qt[:0], qw[:0], k, (), acc, d_g, s_g))[1]))
            if qi % 2:
                calls = calls[::-1]   # every other query in the reverse order
            res = {}
            for name, f in calls:
                t0 = time.perf_counter()
                res[name] = f()
                if rep:
                    times.setdefault(name, []).append(time.perf_counter() - t0)
            n_e = res["exhaustive_one"]
            assert res["filtered_one"] == n_e and np.array_equal(s_f[:n_e], s_e[:n_e])
            c, d_s, s_s = res["sequential_one mode 0"]
            assert c == n_e and np.array_equal(d_s[:c], d_e[:n_e]) and np.array_equal(s_s[:c], s_e[:n_e])
            c, d_s, s_s = res["sequential_pairs_one"]
            assert c == n_e and np.array_equal(d_s[:c], d_e[:n_e]) and np.array_equal(s_s[:c], s_e[:n_e])
            for sh in SEGMENTS:   # d_g, s_g hold the last call's
                assert res[f"segmented 2^{sh}"] == n_e
            assert np.array_equal(d_g[:n_e], d_e[:n_e]) and np.array_equal(s_g[:n_e], s_e[:n_e])
            c1, _, s_1 = res["sequential_one mode 1"]
            assert not rep or (c1 == n_e and np.array_equal(s_1[:c1], s_e[:n_e]))   # replays round 0's
    base = np.array(times["exhaustive_one"])
    print(f"k={k}, {len(p.ids)} queries, warm (a first round untimed), 2 rounds; the top k agreed on every query")
    print(f"{'kernel':34s} {'p50 ms':>7s} {'mean ms':>8s} {'median ratio':>13s} {'faster':>8s}")
    for name, t in times.items():
        t = np.array(t)
        print(f"{name:34s} {np.median(t) * 1e3:7.3f} {t.mean() * 1e3:8.3f} {np.median(t / base):13.3f} "
              f"{int((t < base).sum()):4d}/{len(t)}")
    print(f"sequential_one, per query: {counts[0] / len(p.ids):,.0f} passing (term, block) pairs "
          f"with {counts[1] / len(p.ids):,.0f} postings, of {n_postings / len(p.ids):,.0f} postings of the query terms")
    print("mode 0: histogram threshold; 1: thresholds replayed, no histogram; 2: as 1, passing pairs not scored; "
          "segmented 2^s: exhaustive scoring in doc id segments of 2^s documents")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("queries")
    ap.add_argument("what", choices=("simulate", "time"))
    ap.add_argument("--queries", dest="n", type=int, default=None)
    ap.add_argument("--k", type=int, default=1000)
    a = ap.parse_args(argv)
    ix, s, p = open_prepared(a.index, a.queries, a.n or (30 if a.what == "simulate" else 200))
    if a.what == "simulate":
        simulate(ix, p, a.k)
    else:
        time_kernels(ix, s, p, a.k)


if __name__ == "__main__":
    main()
