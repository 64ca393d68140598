"""Per-key quotas (requests/minute, tokens/minute over a sliding 60 s window) and usage counters.

Hot counters live in memory; :meth:`UsageCounter.flush` adds them to ``key_usage`` (one row per key and
minute) — the server flushes every few seconds and at shutdown, so a crash loses at most that window.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from kogata.core.tables import KeyUsage
from kogata.serve.errors import rate_limited
from kogata.serve.gateway.auth import Principal

WINDOW_S = 60.0


class Quotas:
    """Sliding-window rpm/tpm per key. ``admit`` raises a 429 :class:`APIError` with ``Retry-After``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: dict[str, deque[float]] = defaultdict(deque)
        self._tokens: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._token_sum: dict[str, int] = defaultdict(int)

    def _expire(self, key: str, now: float) -> None:
        reqs = self._requests[key]
        while reqs and now - reqs[0] >= WINDOW_S:
            reqs.popleft()
        toks = self._tokens[key]
        while toks and now - toks[0][0] >= WINDOW_S:
            self._token_sum[key] -= toks.popleft()[1]

    def admit(self, who: Principal) -> None:
        if who.key_id is None or (who.rpm is None and who.tpm is None):
            return
        key = who.key_id
        with self._lock:
            now = self._clock()
            self._expire(key, now)
            reqs = self._requests[key]
            if who.rpm is not None and len(reqs) >= who.rpm:
                raise rate_limited(f"key {who.name!r}: {who.rpm} requests per minute reached", WINDOW_S - (now - reqs[0]),
                                   code="rate_limit_requests")
            toks = self._tokens[key]
            if who.tpm is not None and self._token_sum[key] >= who.tpm:
                raise rate_limited(f"key {who.name!r}: {who.tpm} tokens per minute reached", WINDOW_S - (now - toks[0][0]),
                                   code="rate_limit_tokens")
            reqs.append(now)

    def add_tokens(self, who: Principal, n: int) -> None:
        if who.key_id is None or who.tpm is None or n <= 0:
            return
        with self._lock:
            self._tokens[who.key_id].append((self._clock(), n))
            self._token_sum[who.key_id] += n


class UsageCounter:
    """Requests and tokens in/out per key and minute, in memory until flushed to ``key_usage``."""

    def __init__(self, engine: Engine | None):
        self.engine = engine
        self._lock = threading.Lock()
        self._hot: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0])

    def count(self, who: Principal, *, requests: int = 0, tokens_in: int = 0, tokens_out: int = 0) -> None:
        if who.key_id is None:
            return
        minute = int(time.time() // 60)
        with self._lock:
            row = self._hot[(who.key_id, minute)]
            row[0] += requests
            row[1] += tokens_in
            row[2] += tokens_out

    def flush(self) -> int:
        """Add the hot counters to the database; returns the number of rows written."""
        with self._lock:
            hot, self._hot = self._hot, defaultdict(lambda: [0, 0, 0])
        if not hot or self.engine is None:
            return 0
        try:
            with Session(self.engine) as s, s.begin():
                for (key_id, minute), (req, tin, tout) in hot.items():
                    row = s.get(KeyUsage, (key_id, minute))
                    if row is None:
                        s.add(KeyUsage(key_id=key_id, minute=minute, requests=req, tokens_in=tin, tokens_out=tout))
                    else:
                        row.requests += req
                        row.tokens_in += tin
                        row.tokens_out += tout
        except Exception:
            with self._lock:  # keep the counts for the next flush
                for k, (req, tin, tout) in hot.items():
                    row = self._hot[k]
                    row[0] += req
                    row[1] += tin
                    row[2] += tout
            raise
        return len(hot)
