"""What the measurement scripts in benchmarks/scripts share: opening an index and reading encoded queries.

The scripts are run as ``python benchmarks/scripts/NAME.py``, so this module is imported from the
script's own folder; it is not part of the installed package.
"""

from __future__ import annotations

import json
import warnings

import lsr


def setting_value(v: str):
    """A setting's value from the command line: an int, else a float, else the string."""
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def read_queries(path: str, n: int | None = None, skip: int = 0) -> list[tuple[str, dict]]:
    """(query id, term -> weight) pairs from a JSONL file of ``{"id", "vector"}`` records.

    ``skip`` records are passed over first; then at most ``n`` are read (all when ``n`` is None).
    """
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i < skip:
                continue
            if n is not None and len(out) >= n:
                break
            r = json.loads(line)
            out.append((r["id"], r["vector"]))
    return out


def open_index(path: str) -> "lsr.Index":
    """The index at ``path``, opened without checksum verification and with warnings silenced (the
    scripts time kernels; their output should be the table only)."""
    warnings.simplefilter("ignore")
    return lsr.Index.open(path, verify=False)


def open_prepared(index: str, queries: str, n: int | None, skip: int = 0):
    """(index, default Searcher, prepared queries) for ``n`` queries of ``queries`` after the first ``skip``."""
    ix = open_index(index)
    s = lsr.Searcher(ix)
    return ix, s, s.prepare(read_queries(queries, n, skip))
