"""Small text helpers the LLM rerankers share: template slots and word cuts."""

from __future__ import annotations

import re
from typing import Any

#: a ``{slot}`` of a prompt template
SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: a whitespace-separated word
WORD = re.compile(r"\S+")


def is_int(x: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


def cut_words(text: str, n: int | None) -> str:
    """``text`` up to the end of its ``n``-th whitespace-separated word (all of it when shorter or n is None)."""
    if n is None:
        return text
    for i, m in enumerate(WORD.finditer(text), 1):
        if i == n:
            return text[:m.end()]
    return text
