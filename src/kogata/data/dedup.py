"""Deduplication (exact and near) and diversity selection, on MinHash signatures of character n-grams.

Character n-grams (default 5) rather than words, so Japanese — written without spaces — works the same
as English. Whitespace is removed and case folded before shingling; each n-gram is hashed to 32 bits
(polynomial hash + splitmix64 finaliser, vectorised with numpy) and fed to datasketch's MinHash. Near duplicates are found with
datasketch's MinHash LSH at a Jaccard threshold (default 0.8) and confirmed with the signatures' own
Jaccard estimate; the first record (in input order) of each group is kept.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # datasketch imports scipy (~0.6 s, ~13 MiB): loaded on first use, not by every importer of kogata.data
    from datasketch import MinHash, MinHashLSH

from kogata.data.normalize import dedup_key

NUM_PERM = 128


@dataclass
class Duplicate:
    index: int  # position of the removed text
    of: int  # position of the text it duplicates (kept)
    similarity: float


def exact_duplicates(texts: list[str]) -> list[Duplicate]:
    """Texts whose normalised form (case-folded, whitespace removed) hashes like an earlier one."""
    first: dict[bytes, int] = {}
    out = []
    for i, t in enumerate(texts):
        h = hashlib.sha256(dedup_key(t).encode()).digest()
        if h in first:
            out.append(Duplicate(i, first[h], 1.0))
        else:
            first[h] = i
    return out


_BASE = np.uint64(1_000_003)


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads the polynomial hash's bits (uint64 arithmetic wraps, as intended)."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def shingle_hashes(text: str, n: int = 5) -> list[int]:
    """Distinct 32-bit hashes of the text's character n-grams (whitespace removed, case folded), computed
    with numpy in one pass — much faster than hashing each n-gram with SHA-1 in Python."""
    codes = np.frombuffer(dedup_key(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if codes.size == 0:
        return []
    m = max(codes.size - n + 1, 1)
    h = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(min(n, codes.size)):
            h = h * _BASE + codes[k : k + m]
        h = _mix64(h)
    return np.unique(h & np.uint64(0xFFFFFFFF)).tolist()


def _identity(x: int) -> int:
    return x


def signatures(texts: list[str], n: int = 5, seed: int = 0, tick: Callable[[], None] | None = None) -> list[MinHash]:
    from datasketch import MinHash

    template = MinHash(num_perm=NUM_PERM, seed=seed + 1, hashfunc=_identity)
    kwargs = {"permutations": template.permutations}
    if hasattr(template, "scheme"):  # datasketch >= 2 wants the hashing scheme named with the permutations
        kwargs["scheme"] = template.scheme
    out = []
    for t in texts:
        m = MinHash(num_perm=NUM_PERM, seed=seed + 1, hashfunc=_identity, **kwargs)
        m.update_batch(shingle_hashes(t, n))
        out.append(m)
        if tick:
            tick()
    return out


def _lsh(threshold: float) -> MinHashLSH:
    from datasketch import MinHashLSH

    try:
        return MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    except ValueError:  # thresholds near 1 want fewer than 2 bands; 8 bands of 16 still find them (confirmed below)
        return MinHashLSH(threshold=threshold, num_perm=NUM_PERM, params=(8, NUM_PERM // 8))


def near_duplicates(sigs: list[MinHash], threshold: float = 0.8) -> list[Duplicate]:
    """Each signature whose estimated Jaccard similarity to an earlier *kept* one is ≥ ``threshold``."""
    lsh = _lsh(threshold)
    out = []
    for i, m in enumerate(sigs):
        best, best_sim = -1, 0.0
        for key in lsh.query(m):
            j = int(key)
            sim = m.jaccard(sigs[j])
            if sim >= threshold and (sim > best_sim or (sim == best_sim and j < best)):
                best, best_sim = j, sim
        if best >= 0:
            out.append(Duplicate(i, best, round(best_sim, 4)))
        else:
            lsh.insert(str(i), m)
    return out


def overlapping(texts: list[list[str]], reference: list[str], threshold: float = 0.8, n: int = 5,
                seed: int = 0) -> list[Duplicate]:
    """Each record (a list of its text fields) with a field equal, after normalisation, or ≥ ``threshold`` similar
    (MinHash Jaccard) to one of the ``reference`` texts: ``Duplicate(record index, reference index, similarity)``.

    Used to keep evaluation items out of training data: comparing field by field finds a training record that
    repeats a test question even when its answer differs (the whole record's text would then look different).
    """
    keys = {}
    for j, ref in enumerate(reference):
        keys.setdefault(hashlib.sha256(dedup_key(ref).encode()).digest(), j)
    ref_sigs = signatures(reference, n, seed)
    lsh = _lsh(threshold)
    for j, m in enumerate(ref_sigs):
        lsh.insert(str(j), m)
    field_sigs = iter(signatures([t for fields in texts for t in fields], n, seed))  # one pass, in field order
    out = []
    for i, fields in enumerate(texts):
        best, best_sim = -1, 0.0
        for text in fields:
            m = next(field_sigs)
            if best_sim == 1.0:
                continue  # an exact match was found: the record's other fields need no lookup
            exact = keys.get(hashlib.sha256(dedup_key(text).encode()).digest())
            if exact is not None:
                best, best_sim = exact, 1.0
                continue
            for key in lsh.query(m):
                sim = m.jaccard(ref_sigs[int(key)])
                if sim >= threshold and sim > best_sim:
                    best, best_sim = int(key), sim
        if best >= 0:
            out.append(Duplicate(i, best, round(best_sim, 4)))
    return out


def select_diverse(sigs: list[MinHash], k: int, seed: int = 0) -> list[int]:
    """Greedy farthest-point selection of ``k`` indices: start from a seeded random record, then repeatedly
    take the record least similar (MinHash Jaccard) to everything already chosen. Returns sorted indices."""
    n = len(sigs)
    if k >= n:
        return list(range(n))
    if k <= 0:
        return []
    hv = np.stack([m.hashvalues for m in sigs])
    chosen = [random.Random(seed).randrange(n)]
    nearest = (hv == hv[chosen[0]]).mean(axis=1)  # similarity to the closest chosen record
    nearest[chosen[0]] = np.inf
    while len(chosen) < k:
        nxt = int(np.argmin(nearest))  # ties: lowest index, so the result is deterministic
        chosen.append(nxt)
        nearest = np.maximum(nearest, (hv == hv[nxt]).mean(axis=1))
        nearest[nxt] = np.inf
    return sorted(chosen)
