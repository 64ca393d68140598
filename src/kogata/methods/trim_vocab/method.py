"""``trim-vocab``: keep only the token ids your texts need and shrink ``embed_tokens`` / ``lm_head`` to match (hf → hf).

Kept ids = the ids the model's own tokenizer produces on the corpus (count ≥ ``min_count``) ∪ added/special tokens
∪ the 256 byte tokens (byte-level alphabet, or ``<0x00>``…``<0xFF>`` for byte-fallback BPE) ∪ ids named by
config.json / generation_config.json / the tokenizer's post-processor ∪ the tokens the chat template renders ∪
``extra_tokens`` ∪ keep-list tokens (character classes, see :data:`~.vocab_tokenizer.CHAR_CLASSES`), then closed
under the merges that build each kept token (see :mod:`.vocab_tokenizer` for why). New ids are 0..K-1 in the
original id order; ``vocab_map.json`` in the artifact lists the old id of each new id.

Guarantees (tested): on text whose original tokens are all kept ("covered" text), the trimmed tokenizer gives the
same tokens (ids renumbered) and the trimmed model gives the same logits for every kept id. Probabilities
renormalise over the kept vocabulary: the trimmed model's log-likelihood of covered text is the original's plus
``-log(1 - p_dropped)`` per token, where ``p_dropped`` is the probability the original put on dropped ids; the
step records that mass measured on the corpus (``dropped_mass_mean``/``max``). Generation cannot emit a dropped id:
those rows no longer exist. The artifact is a plain HF folder (``AutoModelForCausalLM``/``AutoTokenizer``).

Keep-lists keep vocabulary tokens whose text (one leading space ignored) is written only in the selected classes
and is at most ``keep_max_chars`` characters long (default 1: character coverage, so unseen text in those
scripts is spelled by characters rather than bytes; 0 means any length). Tokens BPE can never produce are skipped.

``heldout_target`` (e.g. 1.01) chooses how many corpus tokens to keep by cross-validation on the corpus itself:
part of the documents is held out, the kept set grows by frequency on the rest until the held-out bits/byte ratio
(trimmed vs original, computed on the original model without building the trimmed one) meets the target, and the
final set takes as many of the whole corpus' most frequent tokens; see :mod:`.crossval`. The step records the
search in ``metrics.crossval`` and the ratio in ``metrics.heldout_bpb_ratio``. ``kogata optimize`` trims this way
(``SEARCH_HELDOUT_TARGET``) unless the project's ``search.trim_vocab`` sets ``heldout_target``.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import kogata.methods.trim_vocab.crossval as crossval
import kogata.methods.trim_vocab.tokenizer as vt
from kogata.artifacts.artifact import Artifact
from kogata.core.errors import KogataError
from kogata.methods._shared.texts import read_texts
from kogata.methods.registry import MethodContext, new_step, register_method
from kogata.methods.search_space import SearchSpace, SpaceContext, enabled, params_of
from kogata.methods.trim_vocab.writer import embedding_rows, read_json, write_trimmed

UNUSED_TOKEN = re.compile(r"^<unused\d+>$")
BATCH = 64


@dataclass
class TrimVocabConfig:
    keep: list[str] = field(default_factory=list)  # keep-lists: hiragana, katakana, cjk-common, ascii, digits, ...
    keep_max_chars: int = 1  # longest keep-list token kept, in characters (0: any length)
    min_count: int = 1  # a corpus token is kept when it occurs at least this often
    extra_tokens: list[str] = field(default_factory=list)  # exact tokens, or texts whose tokens are kept
    max_vocab: int | None = None  # keep at most this many ids (specials first, then by corpus frequency)
    drop_unused: bool = True  # drop placeholder tokens named <unusedN> (Gemma has thousands)
    heldout: list[str] = field(default_factory=list)  # text/JSONL files to measure coverage on (not used to choose)
    mass_tokens: int = 256  # corpus tokens on which to measure the probability on dropped ids (0: skip)
    heldout_target: float | None = None  # held-out bits/byte ratio to meet by cross-validation, e.g. 1.01 (None: keep every corpus token)
    cv_fraction: float = 0.2  # share of the corpus documents held out for the cross-validation
    cv_max_tokens: int = 4096  # held-out tokens scored per tried kept set (bounds the time)

    def validate(self) -> None:
        vt.check_keep_lists(self.keep)
        if self.min_count < 1:
            raise KogataError(f"min_count must be at least 1, got {self.min_count}", "use min_count=1 to keep every token seen")
        if self.max_vocab is not None and self.max_vocab < 1:
            raise KogataError(f"max_vocab must be positive, got {self.max_vocab}", "omit max_vocab for no limit")
        if self.keep_max_chars < 0 or self.mass_tokens < 0:
            raise KogataError("keep_max_chars and mass_tokens cannot be negative", "use 0 for no limit / no measurement")
        if self.heldout_target is not None and not 1.0 <= self.heldout_target <= 10.0:
            raise KogataError(f"heldout_target must be a bits/byte ratio between 1.0 and 10, got {self.heldout_target}",
                              "use e.g. heldout_target=1.01 (held-out text at most 1% worse), or omit it to keep every corpus token")
        if not 0.0 < self.cv_fraction <= 0.5:
            raise KogataError(f"cv_fraction must be above 0 and at most 0.5, got {self.cv_fraction}", "use e.g. cv_fraction=0.2 (a fifth of the documents held out)")
        if self.cv_max_tokens < 64:
            raise KogataError(f"cv_max_tokens must be at least 64, got {self.cv_max_tokens}", "use e.g. cv_max_tokens=4096")


def _check_search_section(section: dict, ctx: SpaceContext) -> None:
    """The section's parameters are TrimVocabConfig's (keep-lists checked at project load, not mid-search)."""
    from kogata.methods.registry import build_config, get_method

    try:
        build_config(get_method("trim-vocab"), params_of(section))
    except KogataError as exc:
        raise KogataError(f"{ctx.where}: search.trim_vocab: {exc.message}", exc.hint) from None


SEARCH_HELDOUT_TARGET = 1.0  # what an optimize candidate trims to unless the project says otherwise: the in-corpus
# estimate was 0.03 optimistic on the Japanese handbook (1.005 estimated, 1.036 on files no trim saw; docs/compression.md)


def _search_values(section: dict, ctx: SpaceContext) -> list[dict]:
    """One candidate: the section's parameters, cross-validated to ``heldout_target`` 1.0 unless the section sets
    it (``heldout_target: null`` trims to every corpus token, as without cross-validation)."""
    return [{"heldout_target": SEARCH_HELDOUT_TARGET, **params_of(section)}] if enabled(section, ctx) else []


TRIM_VOCAB_SPACE = SearchSpace(
    key="trim_vocab", family="trim", effort=2, build_s=180, keep_ratio=lambda v: None,
    help=(f"vocabulary trimming to your data, kept set chosen by cross-validation: {{enabled: auto|true|false, "
          f"heldout_target: {SEARCH_HELDOUT_TARGET} (held-out bits/byte ratio; null: keep every corpus token), "
          f"cv_fraction: 0.2, keep: [{', '.join(vt.CHAR_CLASSES)}], ...}}"),
    default={"enabled": "auto"},
    values=_search_values,
    steps=lambda params, ctx: [{"method": "trim-vocab", "params": params}],
    label=lambda params: "trim-vocab",
    validate=_check_search_section,
)


@register_method(
    "trim-vocab",
    TrimVocabConfig,
    input_formats=("hf",),
    summary="keep only the tokens your texts need (+ keep-lists); shrinks embed_tokens/lm_head, exact on covered text",
    uses_data=True,
    search_space=TRIM_VOCAB_SPACE,
)
def trim_vocab(artifact: Artifact, cfg: TrimVocabConfig, ctx: MethodContext) -> Artifact:
    from kogata.artifacts.load import load_tokenizer

    started = time.time()
    src = artifact.path
    vocab = vt.read_bpe(src / "tokenizer.json", what=artifact.name)
    texts = read_texts(ctx.data)
    if not any(t.strip() for t in texts):
        raise KogataError("the corpus for trim-vocab is empty", "pass --data with files holding your texts (.txt, .md or .jsonl)")
    held = read_texts([Path(p) for p in cfg.heldout])
    model_cfg = read_json(src / "config.json")
    rows = embedding_rows(src, model_cfg)
    tok = load_tokenizer(artifact)
    backend = tok.backend_tokenizer
    advance = ctx.task("trim-vocab: tokenising the corpus", len(texts))
    counts, head = count_tokens(backend, texts, vocab.size, advance, cfg.mass_tokens)
    gen_cfg = read_json(src / "generation_config.json")
    cv = None
    if cfg.heldout_target is not None:
        cv = crossval.search(vocab, tok, cfg, texts, src,
                             plan=lambda c, conf: choose_ids(vocab, tok, conf, c, rows, model_cfg, gen_cfg).kept,
                             count=lambda docs: count_tokens(backend, docs, vocab.size, lambda n=1: None)[0], ctx=ctx)
        ranked = [(i, c) for i, c in counts.most_common() if c >= cfg.min_count]
        chosen = counts if cv.counts_top is None else Counter(dict(ranked[: cv.counts_top]))
        plan = choose_ids(vocab, tok, cv.cfg, chosen, rows, model_cfg, gen_cfg)
        plan.corpus_counts = counts
    else:
        plan = choose_ids(vocab, tok, cfg, counts, rows, model_cfg, gen_cfg)
    ctx.log(f"trim-vocab: keeping {len(plan.kept)} of {rows} tokens")
    with ctx.store.stage() as st:
        new_of = write_trimmed(src, st.dir, vocab, plan.kept, rows, artifact.id)
        trimmed = load_tokenizer(st.dir)
        check = vt.compare_segmentation(backend, trimmed.backend_tokenizer, plan.kept, texts)
        if check["docs_covered"] != check["docs_identical"]:
            raise KogataError(
                f"trim-vocab self-check failed: {check['docs_covered'] - check['docs_identical']} covered corpus texts tokenise differently",
                "this is a bug in trim-vocab; please report it with the tokenizer.json",
            )
        _check_chat_template(tok, trimmed, new_of)
        metrics = plan.metrics(vocab, rows)
        metrics.update(corpus_docs=check["docs"], corpus_docs_covered=check["docs_covered"], corpus_token_coverage=check["ids_kept"])
        metrics.update(_param_counts(artifact, st.dir))
        if cv is not None:
            metrics["crossval"] = cv.metrics
            metrics["heldout_bpb_ratio"] = cv.metrics["heldout_bpb_ratio"]
        if held:
            metrics["heldout"] = vt.compare_segmentation(backend, trimmed.backend_tokenizer, plan.kept, held)
        if cfg.mass_tokens:
            metrics.update(dropped_mass(src, plan.kept, backend.encode("", add_special_tokens=True).ids + head))
        step = new_step("trim-vocab", cfg, ctx, started, metrics=metrics,
                        note="probabilities renormalise over the kept vocabulary; logits of kept ids are unchanged")
        return st.commit(
            format="hf",
            name=ctx.artifact_name(f"{artifact.name}.vocab{len(plan.kept)}"),
            parent=artifact,
            step=step,
            architecture=artifact.architecture,
        )


def count_tokens(backend: Any, texts: list[str], size: int, advance: Any, head: int = 0) -> tuple[Counter, list[int]]:
    """How often each id occurs in ``texts`` (no special tokens added), tokenised in batches, and the first
    ``head`` ids in corpus order. Only counts are kept, so a large corpus does not hold every id in memory."""
    counts = np.zeros(size, dtype=np.int64)
    first: list[int] = []
    for i in range(0, len(texts), BATCH):
        batch = texts[i : i + BATCH]
        ids = [e.ids for e in backend.encode_batch(batch, add_special_tokens=False)]
        flat = np.fromiter((j for row in ids for j in row), dtype=np.int64)
        counts += np.bincount(flat, minlength=size)[:size]
        if len(first) < head:
            first.extend(flat[: head - len(first)].tolist())
        advance(len(batch))
    nz = np.flatnonzero(counts)
    return Counter(dict(zip(nz.tolist(), counts[nz].tolist()))), first


# ---- choosing the ids ---------------------------------------------------------------------------------------
@dataclass
class Plan:
    kept: list[int]  # sorted old ids
    sources: dict[str, int]  # how many ids each reason added (first reason wins)
    corpus_counts: Counter
    skipped_for_budget: int
    unreachable_keep_list: int

    def metrics(self, v: vt.BPEVocab, rows: int) -> dict[str, Any]:
        kept = set(self.kept)
        cut_by, kept_by = Counter(), Counter()
        for i in range(rows):
            label = "special" if i in v.added_ids else vt.script_of(v.text(i)) if i < v.size else "unassigned"
            (kept_by if i in kept else cut_by)[label] += 1
        return {
            "vocab_before": rows,
            "vocab_after": len(self.kept),
            "kept_by_reason": self.sources,
            "kept_by_class": dict(kept_by.most_common()),
            "cut_by_class": dict(cut_by.most_common()),
            "corpus_tokens": int(sum(self.corpus_counts.values())),
            "corpus_distinct_tokens": len(self.corpus_counts),
            "skipped_for_max_vocab": self.skipped_for_budget,
            "keep_list_unreachable": self.unreachable_keep_list,
        }


def choose_ids(v: vt.BPEVocab, tok: Any, cfg: TrimVocabConfig, counts: Counter, rows: int,
               model_cfg: dict[str, Any], gen_cfg: dict[str, Any]) -> Plan:
    """The kept ids, closed under merges, within ``max_vocab``; raises when the result would be pointless."""
    added = {i for i in v.added_ids if not (cfg.drop_unused and UNUSED_TOKEN.match(v.tokens[i] or ""))}
    named = vt.referenced_ids(v) | config_token_ids(model_cfg) | config_token_ids(gen_cfg) | set(tok.all_special_ids)
    unk = v.data["model"].get("unk_token")
    if unk in v.ids:
        named.add(v.ids[unk])
    groups: list[tuple[str, list[int]]] = [
        ("special", sorted(added | named)),
        ("bytes", sorted(v.byte_ids)),
        ("chat_template", template_ids(tok)),
        ("extra_tokens", _extra_ids(v, tok, cfg.extra_tokens)),
        ("corpus", [i for i, c in counts.most_common() if c >= cfg.min_count]),
    ]
    unreachable = 0
    if cfg.keep:
        listed = []
        for i in range(min(v.size, rows)):
            text = v.text(i)
            if i in v.added_ids or i in v.byte_ids or text is None or not vt.in_classes(text, cfg.keep, cfg.keep_max_chars):
                continue
            if vt.derivation(v, v.tokens[i]) is None:
                unreachable += 1
            else:
                listed.append(i)
        groups.append(("keep_lists", listed))
    kept: set[int] = set()
    sources: dict[str, int] = {}
    skipped = 0
    for reason, ids in groups:
        mandatory = reason in ("special", "bytes", "chat_template")
        before = len(kept)
        for i in ids:
            if i in kept or i >= rows:
                continue
            add = vt.closure(v, [i]) - kept
            if cfg.max_vocab and not mandatory and len(kept) + len(add) > cfg.max_vocab:
                skipped += 1
                continue
            kept |= add
        sources[reason] = len(kept) - before
        if mandatory and cfg.max_vocab and len(kept) > cfg.max_vocab:
            raise KogataError(
                f"max_vocab={cfg.max_vocab} is below the {len(kept)} special, byte and chat-template tokens that are always kept",
                f"raise max_vocab above {len(kept)}",
            )
    base = sources["special"] + sources["bytes"] + sources["chat_template"]
    if len(kept) == base:
        raise KogataError(
            "the corpus needs no tokens beyond the special and byte tokens, so the trimmed model would be useless",
            "pass texts in the language and domain the model will serve",
        )
    if len(kept) >= rows:
        raise KogataError(f"nothing to trim: the corpus and keep-lists need all {rows} tokens", "use fewer keep-lists or a narrower corpus")
    return Plan(sorted(kept), sources, counts, skipped, unreachable)


def config_token_ids(cfg: dict[str, Any]) -> set[int]:
    """Token ids named by a model or generation config (``*_token_id(s)``, nested ``*_config``)."""
    out: set[int] = set()
    for key, val in cfg.items():
        if isinstance(val, dict) and key.endswith("_config"):
            out |= config_token_ids(val)
        elif key.endswith(("_token_id", "_token_ids")):
            out.update(x for x in (val if isinstance(val, list) else [val]) if isinstance(x, int) and x >= 0)
    return out


def template_ids(tok: Any) -> list[int]:
    """Tokens of the chat template's own text (role names, separators), rendered around a one-character message."""
    if not getattr(tok, "chat_template", None):
        return []
    ids: set[int] = set()
    for msgs in ([{"role": "system", "content": "."}, {"role": "user", "content": "."}, {"role": "assistant", "content": "."}],
                 [{"role": "user", "content": "."}, {"role": "assistant", "content": "."}]):
        for gen in (False, True):
            try:
                text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            except Exception:  # noqa: BLE001 - templates raise anything (e.g. no system role)
                continue
            ids.update(tok.backend_tokenizer.encode(text, add_special_tokens=False).ids)
    return sorted(ids)


def _extra_ids(v: vt.BPEVocab, tok: Any, extra: list[str]) -> list[int]:
    out: list[int] = []
    for item in extra:
        if item in v.ids:
            out.append(v.ids[item])
        else:
            out.extend(tok.backend_tokenizer.encode(item, add_special_tokens=False).ids)
    return out


def _param_counts(artifact: Artifact, folder: Path) -> dict[str, Any]:
    from kogata.artifacts.inspect import count_params

    before = artifact.params or count_params(artifact.path, "hf")
    after = count_params(folder, "hf")
    return {"params_before": before, "params_after": after,
            "params_reduction": round(1 - after / before, 4) if before and after else None}


# ---- checks and measurements ---------------------------------------------------------------------------------
def _check_chat_template(orig: Any, trimmed: Any, new_of: dict[int, int]) -> None:
    if not getattr(orig, "chat_template", None):
        return
    msgs = [{"role": "user", "content": "."}]
    try:
        a = orig.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    except Exception:  # noqa: BLE001 - the original template cannot render this either
        return
    b = trimmed.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    if [new_of.get(i) for i in a] != list(b):
        raise KogataError("trim-vocab self-check failed: the chat template tokenises differently", "this is a bug in trim-vocab; please report it")


def dropped_mass(model_dir: Path, kept: list[int], ids: list[int]) -> dict[str, Any]:
    """Probability the original model puts on dropped ids when predicting each next token of ``ids`` (the
    tokenizer's leading special tokens, e.g. BOS, then the corpus' first tokens)."""
    import torch
    from transformers import AutoModelForCausalLM

    if len(ids) < 2:
        return {}
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        del logits
        keep = torch.zeros(logp.shape[-1], dtype=torch.bool)
        keep[torch.tensor(kept)] = True
        p_kept = torch.logsumexp(logp[:, keep], dim=-1).exp().clamp(max=1.0)
    p_drop = (1 - p_kept).clamp(min=0.0)
    return {"dropped_mass_tokens": len(ids), "dropped_mass_mean": round(float(p_drop.mean()), 6),
            "dropped_mass_max": round(float(p_drop.max()), 6),
            "renormalisation_gain_nats": round(float(-torch.log(p_kept).mean()), 6)}


