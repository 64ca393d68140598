"""Retrieval metrics on one ranked list with binary relevance (what the ``retrieval`` task averages per query).

* ``recall_at(ranked, gold, k)`` — the share of the gold items found in the first ``k``;
* ``mrr_at(ranked, gold, k)`` — 1 / rank of the first gold item within ``k`` (0 when none);
* ``ndcg_at(ranked, gold, k)`` — DCG with gain 1 per gold item at rank ``i`` discounted by ``log2(i + 1)``,
  divided by the DCG of an ideal list (``min(len(gold), k)`` gold items first).

``ranked`` may hold repeats (several chunks of one document): only the first occurrence counts (see
:func:`dedupe`). A query without gold items has no defined recall: callers leave it out of these averages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def dedupe(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def recall_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    if not gold:
        raise ValueError("recall is undefined without gold items")
    return len(set(dedupe(ranked)[:k]) & gold) / len(gold)


def mrr_at(ranked: Sequence[str], gold: set[str], k: int = 10) -> float:
    for rank, item in enumerate(dedupe(ranked)[:k], 1):
        if item in gold:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked: Sequence[str], gold: set[str], k: int = 10) -> float:
    if not gold:
        raise ValueError("nDCG is undefined without gold items")
    dcg = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(dedupe(ranked)[:k], 1) if item in gold)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), k) + 1))
    return dcg / ideal
