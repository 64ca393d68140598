"""Tokenizer surgery for ``trim-vocab``: which ids a BPE tokenizer needs, and a ``tokenizer.json`` holding only them.

Two kinds of BPE are supported (both read from the ``tokenizers`` JSON format):

* **byte-level** (GPT-2 style: SmolLM2, Qwen2): every token is spelled in the 256-character byte alphabet, so the
  256 single-byte tokens can spell any text; they are always kept.
* **byte-fallback** (SentencePiece-style BPE: Gemma, Llama-2): tokens are spelled in Unicode with ``▁`` for a space;
  a character missing from the vocabulary becomes ``<0x00>``…``<0xFF>`` byte tokens, which are always kept.

Why the kept set must be closed under merges. BPE spells a word by repeatedly applying, among the adjacent symbol
pairs, the merge of lowest rank. Every final token ``t`` of a word is built only from merges inside its own span,
and those happen in the same order as when BPE spells ``t``'s text alone (pairs crossing the span's edges are
never applied, or ``t`` would not be final). So the symbols BPE passes through when spelling ``t`` alone
(:func:`derivation`) are exactly the ones it needs to produce ``t`` anywhere. Keeping them, and every merge whose
two parts and result are kept, gives a tokenizer whose merges are a subset of the original's with the same order,
containing every merge the original applies on covered text: at each step the original's choice is still the
lowest-ranked applicable merge, so covered text is segmented identically (ids renumbered).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError

BYTE_LEVEL = "byte-level"
BYTE_FALLBACK = "byte-fallback"
SPACE_MARK = "\u2581"
_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


# ---- character classes for keep-lists -------------------------------------------------------------------
@cache
def jis_kanji(level: int) -> frozenset[str]:
    """Kanji of JIS X 0208 level 1 (rows 16–47: the 2,965 kanji JIS chose as most common; they hold all but a few
    dozen of the 2,136 jōyō kanji) or, with ``level=2``, levels 1 and 2 (6,355, which hold those too). Read from
    Python's own EUC-JP codec, so no list is shipped."""
    last_row = 0xCF if level == 1 else 0xF4
    out = set()
    for hi in range(0xB0, last_row + 1):
        for lo in range(0xA1, 0xFF):
            try:
                out.add(bytes([hi, lo]).decode("euc_jp"))
            except UnicodeDecodeError:
                continue
    return frozenset(out)


def _in(*ranges: tuple[int, int]):
    return lambda c: any(lo <= ord(c) <= hi for lo, hi in ranges)


_PUNCT_BLOCKS = _in((0x20, 0x7E), (0xA0, 0xBF), (0x2000, 0x206F), (0x3000, 0x303F), (0xFF00, 0xFF65))
CHAR_CLASSES: dict[str, tuple[str, Any]] = {
    "hiragana": ("Hiragana block U+3040–309F", _in((0x3040, 0x309F))),
    "katakana": ("Katakana U+30A0–30FF, phonetic extensions U+31F0–31FF, half-width U+FF65–FF9F", _in((0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF65, 0xFF9F))),
    "cjk-common": ("JIS X 0208 level-1 kanji (the 2,965 most common; all but a few dozen jōyō kanji) and 々", lambda c: c in jis_kanji(1) or c == "々"),
    "cjk-jis": ("JIS X 0208 level-1 and level-2 kanji (6,355, every jōyō kanji in JIS X 0208) and 々", lambda c: c in jis_kanji(2) or c == "々"),
    "cjk-all": ("all CJK Unified Ideographs U+4E00–9FFF, extension A and compatibility ideographs", _in((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))),
    "ascii": ("printable ASCII plus tab and newlines", lambda c: 0x20 <= ord(c) <= 0x7E or c in "\t\n\r"),
    "digits": ("0-9 and full-width ０-９", lambda c: "0" <= c <= "9" or "０" <= c <= "９"),
    "punctuation": ("Unicode punctuation and symbols in ASCII, Latin-1, General Punctuation, CJK Symbols and full-width forms",
                    lambda c: unicodedata.category(c)[0] in "PS" and _PUNCT_BLOCKS(c)),
}


def check_keep_lists(names: Iterable[str]) -> None:
    bad = [n for n in names if n not in CHAR_CLASSES]
    if bad:
        raise KogataError(f"unknown keep-list {bad[0]!r}", f"valid keep-lists: {', '.join(CHAR_CLASSES)}")


def in_classes(text: str, names: Iterable[str], max_chars: int) -> bool:
    """Is ``text`` (one leading space ignored) 1..max_chars characters (0: any number), all in the named classes?"""
    body = text[1:] if text.startswith(" ") and len(text) > 1 else text
    if not body or (max_chars and len(body) > max_chars):
        return False
    tests = [CHAR_CLASSES[n][1] for n in names]
    return all(any(t(c) for t in tests) for c in body)


_SCRIPT_ALIASES = {"fullwidth": "latin", "halfwidth": "katakana", "katakana-hiragana": "katakana", "modifier": "other",
                   "micro": "greek", "masculine": "latin", "feminine": "latin", "ideographic": "cjk"}


@cache
def _char_label(c: str) -> str:
    if c.isspace():
        return "space"
    cat = unicodedata.category(c)[0]
    if cat in "NPSCM":
        return {"N": "digit", "P": "punctuation", "S": "punctuation", "C": "control", "M": "mark"}[cat]
    name = unicodedata.name(c, "OTHER").split()[0].lower()
    return _SCRIPT_ALIASES.get(name, name)


def script_of(text: str | None) -> str:
    """A coarse label for reporting what was cut: ``hiragana``, ``katakana``, ``cjk``, ``latin``, ``digit``,
    ``punctuation``, ``space``, another Unicode script name in lower case, ``mixed``, or ``bytes`` (not valid UTF-8)."""
    if text is None:
        return "bytes"
    labels = {_char_label(c) for c in text} - {"space"}
    if not labels:
        return "space"
    return labels.pop() if len(labels) == 1 else "mixed"


# ---- reading a BPE tokenizer ------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def byte_alphabet() -> dict[int, str]:
    """GPT-2's byte → printable character table used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


@dataclass
class BPEVocab:
    """A BPE tokenizer read from ``tokenizer.json``: id ↔ token, merge ranks, and the ids that are always kept."""

    data: dict[str, Any]
    kind: str  # BYTE_LEVEL | BYTE_FALLBACK
    tokens: list[str | None]  # id -> token (model vocabulary and added tokens)
    ids: dict[str, int]  # model vocabulary: token -> id
    merges: list[tuple[str, str]]
    merge_rank: dict[tuple[str, str], int]
    added_ids: set[int]
    byte_ids: set[int]

    @property
    def size(self) -> int:
        return len(self.tokens)

    def text(self, i: int) -> str | None:
        """The text a token stands for (``▁`` → space, byte alphabet decoded); None for a lone byte or partial UTF-8."""
        tok = self.tokens[i]
        if tok is None:
            return None
        if i in self.added_ids:
            return tok
        if self.kind == BYTE_FALLBACK:
            return None if _BYTE_TOKEN.match(tok) else tok.replace(SPACE_MARK, " ")
        inv = _byte_inverse()
        try:
            return bytes(inv[c] for c in tok).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            return None


@lru_cache(maxsize=1)
def _byte_inverse() -> dict[str, int]:
    return {c: b for b, c in byte_alphabet().items()}


def _is_byte_level(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    if node.get("type") == "ByteLevel":
        return True
    return any(_is_byte_level(p) for p in node.get("pretokenizers", []) or node.get("decoders", []) or [])


def read_bpe(path: Path, *, what: str = "the model") -> BPEVocab:
    """Parse ``tokenizer.json``; raise :class:`KogataError` for tokenizers trim-vocab cannot trim."""
    if not path.is_file():
        raise KogataError(f"{what} has no tokenizer.json", "trim-vocab needs a fast (tokenizers) tokenizer saved as tokenizer.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    mtype = model.get("type") or ("BPE" if "merges" in model else "unknown")
    supported = "BPE tokenizers (byte-level like SmolLM2/Qwen, or SentencePiece-style with byte fallback like Gemma)"
    if mtype != "BPE":
        raise KogataError(
            f"{what} uses a {mtype} tokenizer, which trim-vocab cannot trim",
            f"trim-vocab supports {supported}; use this model untrimmed",
        )
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise KogataError(f"{what} uses a BPE with subword prefixes/suffixes", f"trim-vocab supports {supported}")
    if _is_byte_level(data.get("pre_tokenizer")) or _is_byte_level(data.get("decoder")):
        kind = BYTE_LEVEL
    elif model.get("byte_fallback"):
        kind = BYTE_FALLBACK
    else:
        raise KogataError(
            f"{what} uses a BPE with neither byte-level encoding nor byte fallback",
            "trimming it would turn text outside the kept vocabulary into <unk>; use this model untrimmed",
        )
    ids: dict[str, int] = dict(model["vocab"])
    size = max([*ids.values(), *(t["id"] for t in data.get("added_tokens") or [])]) + 1
    tokens: list[str | None] = [None] * size
    for tok, i in ids.items():
        tokens[i] = tok
    added_ids = set()
    for t in data.get("added_tokens") or []:
        tokens[t["id"]] = t["content"]
        added_ids.add(t["id"])
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges") or []]
    if kind == BYTE_LEVEL:
        byte_ids = {ids[c] for c in byte_alphabet().values() if c in ids}
    else:
        byte_ids = {i for tok, i in ids.items() if _BYTE_TOKEN.match(tok)}
    return BPEVocab(
        data=data,
        kind=kind,
        tokens=tokens,
        ids=ids,
        merges=merges,
        merge_rank={m: r for r, m in enumerate(merges)},
        added_ids=added_ids,
        byte_ids=byte_ids,
    )


# ---- merge closure ----------------------------------------------------------------------------------------
def derivation(v: BPEVocab, token: str) -> list[str] | None:
    """Every symbol BPE passes through when it spells ``token``'s text alone (its characters, each intermediate
    merge result, and ``token``), or None when BPE never produces ``token`` from its text (unreachable)."""
    syms = list(token)
    if any(s not in v.ids for s in syms):
        return None
    seen = list(syms)
    rank = v.merge_rank
    while len(syms) > 1:
        best, at = None, -1
        for i in range(len(syms) - 1):
            r = rank.get((syms[i], syms[i + 1]))
            if r is not None and (best is None or r < best):
                best, at = r, i
        if best is None:
            break
        merged = syms[at] + syms[at + 1]
        if merged not in v.ids:
            return None
        syms[at : at + 2] = [merged]
        seen.append(merged)
    return seen if syms == [token] else None


def closure(v: BPEVocab, ids: Iterable[int]) -> set[int]:
    """``ids`` plus every token their derivations pass through (the merge parents, recursively)."""
    out: set[int] = set()
    for i in ids:
        if i in out:
            continue
        out.add(i)
        tok = v.tokens[i]
        if tok is None or i in v.added_ids or i in v.byte_ids:
            continue
        path = derivation(v, tok)
        if path:
            out.update(v.ids[s] for s in path)
    return out


def referenced_ids(v: BPEVocab) -> set[int]:
    """Ids the tokenizer.json itself names outside the vocabulary: post-processor templates, padding."""
    found: set[int] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("RobertaProcessing", "BertProcessing"):
                found.update(int(node[k][1]) for k in ("sep", "cls") if k in node)
            for spec in (node.get("special_tokens") or {}).values() if isinstance(node.get("special_tokens"), dict) else []:
                found.update(spec.get("ids", []))
            for p in node.get("processors", []) or []:
                walk(p)

    walk(v.data.get("post_processor"))
    pad = v.data.get("padding") or {}
    if "pad_id" in pad:
        found.add(int(pad["pad_id"]))
    return {i for i in found if 0 <= i < v.size}


def compare_segmentation(orig: Any, trimmed: Any, kept: list[int], texts: list[str]) -> dict[str, Any]:
    """How much of the original segmentation of ``texts`` the trimmed tokenizer keeps.

    ``ids_kept``: share of original tokens whose id is kept; ``segmentation_kept``: share of original tokens that
    the trimmed tokenizer produces at the same place with the same (renumbered) id; ``docs_covered``: texts all of
    whose tokens are kept; ``docs_identical``: texts tokenised identically (ids mapped)."""
    kept_set = set(kept)
    out = {"docs": len(texts), "tokens": 0, "docs_covered": 0, "docs_identical": 0, "ids_kept": 0.0, "segmentation_kept": 0.0}
    n_kept = n_same = 0
    for i in range(0, len(texts), 64):
        batch = texts[i : i + 64]
        a = orig.encode_batch(batch, add_special_tokens=False)
        b = trimmed.encode_batch(batch, add_special_tokens=False)
        for ea, eb in zip(a, b):
            mapped = [kept[j] for j in eb.ids]
            covered = all(j in kept_set for j in ea.ids)
            out["tokens"] += len(ea.ids)
            n_kept += sum(1 for j in ea.ids if j in kept_set)
            out["docs_covered"] += covered
            out["docs_identical"] += covered and mapped == ea.ids
            n_same += sum((Counter(zip(ea.ids, ea.offsets)) & Counter(zip(mapped, eb.offsets))).values())
    if out["tokens"]:
        out["ids_kept"] = round(n_kept / out["tokens"], 6)
        out["segmentation_kept"] = round(n_same / out["tokens"], 6)
    return out


# ---- writing the trimmed tokenizer -----------------------------------------------------------------------
def trimmed_json(v: BPEVocab, kept: list[int]) -> dict[str, Any]:
    """``tokenizer.json`` for the sorted old ids ``kept``, renumbered 0..K-1 in the original order."""
    new_of = {old: new for new, old in enumerate(kept)}
    data = dict(v.data)
    model = dict(data["model"])
    model["vocab"] = {v.tokens[o]: n for o, n in new_of.items() if v.ids.get(v.tokens[o]) == o}
    keep = model["vocab"]
    as_str = any(isinstance(m, str) for m in data["model"].get("merges") or [])
    model["merges"] = [f"{a} {b}" if as_str else [a, b] for a, b in v.merges if a in keep and b in keep and a + b in keep]
    data["model"] = model
    data["added_tokens"] = [dict(t, id=new_of[t["id"]]) for t in data.get("added_tokens") or [] if t["id"] in new_of]
    data["post_processor"] = _remap_processor(data.get("post_processor"), new_of)
    if isinstance(data.get("padding"), dict) and "pad_id" in data["padding"]:
        data["padding"] = dict(data["padding"], pad_id=new_of.get(data["padding"]["pad_id"], 0))
    return data


def _remap_processor(node: Any, new_of: dict[int, int]) -> Any:
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if isinstance(node.get("special_tokens"), dict):
        node["special_tokens"] = {k: dict(s, ids=[new_of[i] for i in s.get("ids", [])]) for k, s in node["special_tokens"].items()}
    for key in ("sep", "cls"):
        if isinstance(node.get(key), list) and len(node[key]) == 2:
            node[key] = [node[key][0], new_of[int(node[key][1])]]
    if isinstance(node.get("processors"), list):
        node["processors"] = [_remap_processor(p, new_of) for p in node["processors"]]
    return node


def remap_tokenizer_config(cfg: dict[str, Any], new_of: dict[int, int]) -> dict[str, Any]:
    """``tokenizer_config.json`` with ``added_tokens_decoder`` keyed by the new ids (dropped ones removed)."""
    cfg = dict(cfg)
    dec = cfg.get("added_tokens_decoder")
    if isinstance(dec, dict):
        cfg["added_tokens_decoder"] = {str(new_of[int(k)]): t for k, t in dec.items() if int(k) in new_of}
    return cfg


def remap_added_tokens_file(added: dict[str, int], new_of: dict[int, int]) -> dict[str, int]:
    """The legacy ``added_tokens.json`` (content → id)."""
    return {c: new_of[i] for c, i in added.items() if i in new_of}
