"""Cross-validated ``trim-vocab`` (``heldout_target``): choose the kept set by what it costs on text it never saw.

1. **Split.** The corpus documents (the texts :func:`~kogata.methods._shared.texts.read_texts` returns: one per
   text file, one per JSONL string; with fewer than :data:`MIN_DOCS` of them, each is split at blank lines) are
   ordered by the SHA-256 of their text and the first ``round(cv_fraction × n)`` distinct texts are held out (at
   least one, never all). The order does not depend on file order, so the split is stable; identical texts land
   on the same side.
2. **Ladder.** Candidate kept sets: ``K(n)`` = what :func:`~.method.choose_ids` keeps (specials, bytes, chat
   template, extra tokens, keep-lists, merge closure, ``max_vocab``) when the corpus counts are those of the *fit*
   part restricted to its ``n`` most frequent tokens; ``n = N`` is every token seen in the fit part. Beyond it,
   two rungs add character keep-lists for the scripts that make up ≥ 1 % of the corpus' characters, with tokens
   of at most 1 and then 2 characters (unseen words are then spelled from characters rather than bytes).
3. **Score without building.** For a set K the held-out text is tokenised by the trimmed tokenizer for K (ids
   mapped back to the original ones) and the ORIGINAL model is run on those ids; its logits restricted to K and
   renormalised (log-softmax over K) are exactly the trimmed model's (its ``lm_head`` rows are the kept rows, every
   other weight is unchanged). The output matrix is applied in chunks of positions, so a 262k-wide logit matrix is
   never held for a whole sequence. The reference is the original model and tokenizer on the same text; the
   ratio is ``NLL_K / NLL_ref`` (= the bits-per-byte ratio: the bytes are the same). Held-out documents are scored
   in segments of at most :data:`SEGMENT_TOKENS` original tokens, each after the tokenizer's leading special
   tokens (BOS, or EOS where none is added), ``cv_max_tokens`` original tokens in all.
4. **Search.** ``K(N)`` is scored first; if it meets the target, the smallest ``n`` that does is found by
   bisection on a log scale (assuming the ratio falls as ``n`` grows), to within a factor :data:`STEP`. If not,
   the keep-list rungs are tried in turn; if none meets it, the largest set tried is kept and ``met`` is false.
5. **Final set.** Built from the WHOLE corpus: its ``n`` most frequent tokens (every token seen when ``n = N``),
   with the keep-lists of the chosen rung. The recorded ratio is the one measured for the fit-part ranking at the
   same ``n`` on the held-out part (the final ranking saw more text, so it is, if anything, a cautious estimate).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import kogata.methods.trim_vocab.tokenizer as vt
from kogata.core.errors import KogataError

MIN_DOCS = 5
SEGMENT_TOKENS = 512
STEP = 1.1
CHUNK_ELEMENTS = 1 << 23  # logits per chunk (positions × vocabulary): 32 MiB of float32
AUTO_SHARE = 0.01
AUTO_CLASSES = ("hiragana", "katakana", "cjk-common", "ascii", "digits", "punctuation")


def split_documents(texts: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """(fit, held-out) documents; see the module docstring."""
    docs = [t for t in texts if t.strip()]
    if len(docs) < MIN_DOCS:
        docs = [p for t in docs for p in re.split(r"\n\s*\n", t) if p.strip()]
    distinct = sorted({hashlib.sha256(d.encode("utf-8")).digest() for d in docs})
    if len(distinct) < 2:
        raise KogataError("heldout_target needs at least 2 different documents to hold some out",
                          "give several files (or texts separated by blank lines), or omit heldout_target")
    n_held = min(len(distinct) - 1, max(1, round(fraction * len(distinct))))
    held_hashes = set(distinct[:n_held])
    held = [d for d in docs if hashlib.sha256(d.encode("utf-8")).digest() in held_hashes]
    return [d for d in docs if hashlib.sha256(d.encode("utf-8")).digest() not in held_hashes], held


def segments(backend: Any, docs: list[str], max_tokens: int) -> list[str]:
    """Held-out text pieces of at most SEGMENT_TOKENS original tokens each, cut at token starts, max_tokens in all."""
    out: list[str] = []
    total = 0
    for d in docs:
        offs = backend.encode(d, add_special_tokens=False).offsets
        for s in range(0, len(offs), SEGMENT_TOKENS):
            take = min(SEGMENT_TOKENS, max_tokens - total, len(offs) - s)
            if take <= 0:
                return out
            e = s + take
            piece = d[offs[s][0] if s else 0 : offs[e][0] if e < len(offs) else len(d)]
            if piece.strip():
                out.append(piece)
                total += take
    return out


def auto_classes(texts: list[str]) -> list[str]:
    """Keep-list classes holding at least AUTO_SHARE of the corpus' non-space characters."""
    chars = Counter(c for t in texts for c in t if not c.isspace())
    n = sum(chars.values()) or 1
    return [name for name in AUTO_CLASSES
            if sum(k for c, k in chars.items() if vt.CHAR_CLASSES[name][1](c)) / n >= AUTO_SHARE]


class Scorer:
    """Negative log-likelihood of token sequences under the original model, renormalised over a set of kept ids."""

    def __init__(self, model_dir: Path):
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        cfg = self.model.config
        self.cap = getattr(cfg, "final_logit_softcapping", None) or getattr(getattr(cfg, "text_config", None), "final_logit_softcapping", None)
        self.cache: dict[tuple[int, ...], Any] = {}  # hidden states of the reference sequences
        self.forward_tokens = 0

    def hidden(self, ids: list[int], keep: bool = False) -> Any:
        key = tuple(ids)
        if key in self.cache:
            return self.cache[key]
        with self.torch.no_grad():
            h = self.model.get_decoder()(input_ids=self.torch.tensor([ids])).last_hidden_state[0]
        self.forward_tokens += len(ids)
        if keep:
            self.cache[key] = h
        return h

    def nll(self, seqs: list[list[int]], kept: list[int] | None = None, keep: bool = False) -> float:
        """−Σ log p(token | prefix) over every token after the first of each sequence (original ids); with ``kept``
        the distribution is renormalised over those ids, as the trimmed model's is."""
        torch = self.torch
        head = self.model.get_output_embeddings()
        weight, bias = head.weight, getattr(head, "bias", None)
        pos = None
        if kept is not None:
            index = torch.tensor(kept)
            weight = weight[index]
            bias = bias[index] if bias is not None else None
            pos = torch.full((head.weight.shape[0],), -1, dtype=torch.long)
            pos[index] = torch.arange(len(kept))
        chunk = max(1, CHUNK_ELEMENTS // weight.shape[0])
        total = 0.0
        with torch.no_grad():
            for ids in seqs:
                h = self.hidden(ids, keep)[:-1]
                tgt = torch.tensor(ids[1:])
                if pos is not None:
                    tgt = pos[tgt]
                    if bool((tgt < 0).any()):
                        raise ValueError("a target id is not in the kept set")
                for s in range(0, len(tgt), chunk):
                    logits = torch.nn.functional.linear(h[s : s + chunk], weight, bias)
                    if self.cap:
                        logits = torch.tanh(logits / self.cap) * self.cap
                    lp = logits.gather(1, tgt[s : s + chunk, None])[:, 0] - torch.logsumexp(logits, -1)
                    total -= float(lp.double().sum())
        return total


def prefix_ids(backend: Any, tok: Any) -> list[int]:
    """What each segment is scored after: the tokenizer's own leading special tokens, else BOS, else EOS."""
    ids = backend.encode("", add_special_tokens=True).ids
    if ids:
        return ids
    for i in (tok.bos_token_id, tok.eos_token_id):
        if isinstance(i, int):
            return [i]
    return []


def trimmed_backend(v: vt.BPEVocab, kept: list[int]) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(vt.trimmed_json(v, kept)))


def heldout_nll(scorer: Scorer, v: vt.BPEVocab, kept: list[int], texts: list[str], prefix: list[int]) -> float:
    """NLL (nats) of ``texts`` under the model trimmed to ``kept``, computed on the original model."""
    enc = trimmed_backend(v, kept).encode_batch(texts, add_special_tokens=False)
    return scorer.nll([prefix + [kept[j] for j in e.ids] for e in enc], kept)


@dataclass
class Outcome:
    counts_top: int | None  # how many of the whole corpus' most frequent tokens to keep (None: all)
    cfg: Any  # the config to build the final set with (keep-lists of the chosen rung)
    metrics: dict[str, Any] = field(default_factory=dict)


def search(v: vt.BPEVocab, tok: Any, cfg: Any, texts: list[str], model_dir: Path,
           plan: Callable[[Counter, Any], list[int]], count: Callable[[list[str]], Counter], ctx: Any) -> Outcome:
    """Choose the kept set by cross-validation (module docstring); ``plan(counts, cfg)`` → kept ids, ``count(texts)``
    → corpus counts."""
    started = time.time()
    backend = tok.backend_tokenizer
    fit, held = split_documents(texts, cfg.cv_fraction)
    pieces = segments(backend, held, cfg.cv_max_tokens)
    prefix = prefix_ids(backend, tok)
    fit_counts = count(fit)
    ranked = [(i, c) for i, c in fit_counts.most_common() if c >= cfg.min_count]
    scorer = Scorer(model_dir)
    ref = [prefix + e.ids for e in backend.encode_batch(pieces, add_special_tokens=False)]
    held_tokens = sum(len(r) - len(prefix) for r in ref)
    held_bytes = sum(len(p.encode("utf-8")) for p in pieces)
    nll_ref = scorer.nll(ref, keep=True)
    advance = ctx.task("trim-vocab: cross-validating the kept set", None)
    tried: list[dict[str, Any]] = []

    def ratio(label: Any, counts: Counter, c: Any) -> tuple[float, int]:
        try:
            kept = plan(counts, c)
        except KogataError:
            return math.inf, 0
        r = heldout_nll(scorer, v, kept, pieces, prefix) / nll_ref if nll_ref > 0 else 1.0
        tried.append({"fit_tokens": label, "kept": len(kept), "ratio": round(r, 6)})
        ctx.log(f"trim-vocab: cross-validation: {label} fit tokens → {len(kept)} kept, held-out bits/byte ×{r:.4f}")
        advance(1)
        return r, len(kept)

    def top(n: int) -> Counter:
        return Counter(dict(ranked[:n]))

    big = len(ranked)
    best, _ = ratio(big, top(big), cfg)
    chosen: Outcome
    met = best <= cfg.heldout_target
    if met:
        lo, hi, at_hi = 0, big, best
        while hi > lo + 1 and hi > lo * STEP:
            mid = min(hi - 1, max(lo + 1, round(math.sqrt(max(lo, 1) * hi))))
            r, _ = ratio(mid, top(mid), cfg)
            if r <= cfg.heldout_target:
                hi, at_hi = mid, r
            else:
                lo = mid
        best = at_hi
        chosen = Outcome(None if hi == big else hi, cfg)
    else:
        chosen = Outcome(None, cfg)
        classes = sorted(set(cfg.keep) | set(auto_classes(texts)), key=list(vt.CHAR_CLASSES).index)
        for chars in (1, 2):
            if not classes or (set(classes) <= set(cfg.keep) and (cfg.keep_max_chars == 0 or cfg.keep_max_chars >= chars)):
                continue  # adds nothing to what the config keeps already
            rung = replace(cfg, keep=classes, keep_max_chars=0 if cfg.keep_max_chars == 0 else max(chars, cfg.keep_max_chars))
            r, size = ratio(f"all+keep≤{chars}", top(big), rung)
            if size == 0:
                break
            chosen, best = Outcome(None, rung), r
            if r <= cfg.heldout_target:
                met = True
                break
    if not met:
        ctx.log(f"trim-vocab: held-out bits/byte ×{best:.4f} misses heldout_target {cfg.heldout_target} even with every "
                f"token seen (and keep-lists); keeping the largest set tried")
    bits = held_bytes * math.log(2)
    chosen.metrics = {
        "target": cfg.heldout_target, "met": bool(met), "heldout_bpb_ratio": round(best, 6),
        "heldout_bpb_reference": round(nll_ref / bits, 6) if bits else None,
        "heldout_tokens": held_tokens, "heldout_bytes": held_bytes, "heldout_segments": len(pieces),
        "fit_docs": len(fit), "heldout_docs": len(held), "fit_distinct_tokens": big,
        "corpus_tokens_kept": "all" if chosen.counts_top is None else chosen.counts_top,
        "keep": list(chosen.cfg.keep), "keep_max_chars": chosen.cfg.keep_max_chars,
        "tried": tried, "forward_tokens": scorer.forward_tokens, "seconds": round(time.time() - started, 1),
    }
    return chosen
