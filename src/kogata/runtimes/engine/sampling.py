"""Per-sequence token choice: greedy argmax in numpy, or a llama.cpp sampler chain per sequence.

* ``temperature == 0`` without a schema: the argmax of the row's logits (the first maximum, like llama.cpp's
  greedy sampler) — exactly what the ``llamacpp`` runtime's greedy decoding picks.
* otherwise a native chain built per request: ``grammar`` (when ``json_schema`` is set; the schema is turned
  into GBNF by llama-cpp-python's ``json_schema_to_gbnf``) → ``top_k`` → ``top_p`` → ``temp`` → ``dist(seed)``,
  or ``grammar → greedy`` for a constrained greedy request. Each sequence has its own chain, so its random
  state and grammar state never mix with another sequence's; same seed + same request → same tokens.

The reported log-probability is the chosen token's natural-log probability under the model's distribution
(log-softmax of the raw logits, before temperature, top-k/top-p or grammar), computed in float64.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from kogata.core.errors import KogataError
from kogata.runtimes.base import GenerateRequest


def token_logprob(row: np.ndarray, token: int) -> float:
    x = row.astype(np.float64)
    top = x.max()
    return float(x[token] - top - np.log(np.exp(x - top).sum()))


def top_alternatives(row: np.ndarray, n: int) -> list[tuple[int, float]]:
    """The ``n`` most likely token ids of a logits row with their natural-log probabilities, most likely first."""
    n = max(0, min(n, row.shape[0]))
    if n == 0:
        return []
    x = row.astype(np.float64)
    top = x.max()
    log_z = top + np.log(np.exp(x - top).sum())
    ids = np.argpartition(-x, n - 1)[:n]
    ids = ids[np.argsort(-x[ids], kind="stable")]
    return [(int(i), float(x[i] - log_z)) for i in ids]


def schema_grammar(schema: dict[str, Any]) -> str:
    """GBNF for a JSON schema (an empty schema or ``{"type": "object"}`` means any JSON object)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises plain exceptions for schemas it cannot express
        raise KogataError(f"cannot turn this JSON schema into a grammar: {exc}", "simplify the schema (types, properties, enums, arrays)") from None


class SequenceSampler:
    """Chooses the next token of one sequence from a row of logits of the engine's context."""

    def __init__(self, lc: Any, vocab: Any, request: GenerateRequest):
        self.lc = lc
        self.want_logprob = bool(request.logprobs)
        self.chain = None
        greedy = request.temperature <= 0
        if greedy and request.json_schema is None:
            return
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        self.chain = chain
        if request.json_schema is not None:
            grammar = lc.llama_sampler_init_grammar(vocab, schema_grammar(request.json_schema).encode("utf-8"), b"root")
            if not grammar:
                self.close()
                raise KogataError("llama.cpp rejected the grammar made from this JSON schema", "simplify the schema")
            lc.llama_sampler_chain_add(chain, grammar)
        if greedy:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
            return
        if request.top_k > 0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(request.top_k))
        if request.top_p < 1.0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(request.top_p, 1))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(request.temperature))
        seed = lc.LLAMA_DEFAULT_SEED if request.seed is None else int(request.seed) & 0xFFFFFFFF
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(seed))

    def pick(self, ctx: Any, index: int, row: np.ndarray) -> tuple[int, float | None]:
        """The token for batch output ``index`` (whose logits are ``row``) and its log-probability if asked."""
        if self.chain is None:
            token = int(np.argmax(row))
        else:
            token = int(self.lc.llama_sampler_sample(self.chain, ctx, index))  # also advances the grammar
        return token, (token_logprob(row, token) if self.want_logprob else None)

    def close(self) -> None:
        if self.chain is not None:
            self.lc.llama_sampler_free(self.chain)
            self.chain = None
