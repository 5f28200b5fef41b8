"""Gathering external doc ids (UTF-8 bytes) for a list of internal doc ids."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def gather_ids(offsets, id_bytes, docs):
    """Concatenate the ids of ``docs``, each followed by a newline byte."""
    total = 0
    for i in range(docs.shape[0]):
        d = docs[i]
        total += offsets[d + 1] - offsets[d] + 1
    out = np.empty(total, dtype=np.uint8)
    p = 0
    for i in range(docs.shape[0]):
        d = docs[i]
        for j in range(offsets[d], offsets[d + 1]):
            out[p] = id_bytes[j]
            p += 1
        out[p] = 10
        p += 1
    return out


def gather_ids_ref(offsets, id_bytes, docs):
    return b"".join(bytes(id_bytes[offsets[d]:offsets[d + 1]]) + b"\n" for d in docs)
