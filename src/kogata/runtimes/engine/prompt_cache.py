"""The batched engine's prompt cache: KV cells a finished request leaves in its slot, for the next one to reuse.

When a request ends, its slot keeps the KV cells of every token it fed (the prompt, then the sampled tokens) and
:class:`PromptCache` remembers those tokens. A new request takes the free slot whose remembered tokens share the
longest prefix with its prompt (the lowest free id on a tie, and when nothing is shared), as ``llama-server``
does with ``cache_prompt``. Only the rest of its prompt is computed: a shared system prompt, a chat's earlier
turns, a retried request. At least the last prompt token is always recomputed (its logits choose the first new
token). A model whose cache cannot drop a tail (sliding-window layers that already forgot the start) starts from
an empty slot. Kept cells were computed in a different batch than a fresh run would use, so logits can differ in
the last float digits (the test checks greedy text equal and logprobs within 1e-4).

Off (``enabled=False``, and always with a unified KV pool, which needs its cells back at once): slots are taken
lowest id first and emptied when their request ends.
"""

from __future__ import annotations

from typing import Any

from kogata.runtimes.scoring import reusable_prefix


class PromptCache:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.tokens: dict[int, list[int]] = {}  # free slot → the tokens its KV cells still hold
        self.reused_tokens = 0  # prompt tokens not recomputed thanks to the cache (for tests and stats)

    def pick(self, free: list[int], prompt: list[int]) -> tuple[int, int]:
        """(the free slot to take, how many leading tokens of ``prompt`` its cells hold)."""
        best, best_len = free[0], 0
        if self.enabled:
            for slot in free:
                n = reusable_prefix(self.tokens.get(slot, ()), prompt, len(prompt))
                if n > best_len:
                    best, best_len = slot, n
        return best, best_len

    def claim(self, model: Any, slot: int, shared: int, prompt_len: int) -> int:
        """Keep ``slot``'s cells for the first ``shared`` tokens (all but the prompt's last at most) and drop the
        rest; the number of prompt tokens that need no computing."""
        if self.tokens.pop(slot, None) is None:
            return 0  # an empty slot
        keep = min(shared, prompt_len - 1)
        if keep > 0 and model.seq_pos_min(slot) == 0 and model.seq_rm(slot, keep, -1):
            self.reused_tokens += keep
            return keep
        model.seq_rm(slot)
        return 0

    def release(self, model: Any, slot: int, fed: list[int]) -> None:
        """A request on ``slot`` ended having fed ``fed``: remember them, or empty the slot when off."""
        if self.enabled and fed:
            self.tokens[slot] = fed
        else:
            model.seq_rm(slot)
