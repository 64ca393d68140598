"""Write a Hugging Face tokenizer (``tokenizer.json``) into a GGUF file in the form llama.cpp reads.

Two kinds of BPE tokenizer are supported:

* byte-level BPE (GPT-2 style, e.g. SmolLM2 and Qwen2): written as ``tokenizer.ggml.model = "gpt2"``
  with the merges and the name of llama.cpp's pre-tokenizer whose split regex matches the HF one;
* SentencePiece-style BPE with byte fallback (Gemma): written as ``tokenizer.ggml.model = "llama"``
  with per-token scores and types. llama.cpp's SPM tokenizer repeatedly merges the adjacent pair whose
  merged token has the highest score; a token's score is minus the rank of the first HF merge that
  produces it, so both merge in the same order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import gguf

from kogata.core.errors import KogataError

# Split regexes of HF pre-tokenizers that llama.cpp implements, keyed to llama.cpp's names.
_SPLIT_REGEX_TO_PRE = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
}

_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_SPIECE_SPACE = "\u2581"


def write_vocab(writer: gguf.GGUFWriter, hf_dir: Path, n_rows: int) -> int:
    """Add the tokenizer of the HF model in ``hf_dir`` to ``writer``.

    ``n_rows`` is the number of rows of the token embedding; the token list is padded with unused
    tokens up to that size. Returns the number of tokens written.
    """
    tok = _read_json(hf_dir / "tokenizer.json")
    if tok is None:
        raise KogataError(f"no tokenizer.json in {hf_dir}", "save the tokenizer with a fast (tokenizers) tokenizer")
    tok_config = _read_json(hf_dir / "tokenizer_config.json") or {}
    model = tok.get("model") or {}
    if model.get("type") != "BPE":
        raise KogataError(
            f"cannot export a {model.get('type')!r} tokenizer to GGUF", "only BPE tokenizers are supported"
        )
    tokens, added = _token_table(tok, n_rows)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    if _is_byte_level(tok):
        _write_gpt2(writer, tok, tokens, added, merges)
    elif _is_sentencepiece_like(tok):
        _write_spm(writer, tok, tokens, added, merges)
    else:
        raise KogataError(
            "cannot export this tokenizer to GGUF: it is neither byte-level BPE nor SentencePiece-style BPE",
            "supported: GPT-2 style byte-level BPE, SentencePiece BPE with byte fallback",
        )
    _write_special_tokens(writer, hf_dir, tok, tok_config, tokens)
    template = _chat_template(hf_dir, tok_config)
    if template:
        writer.add_chat_template(template)
    return len(tokens)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _token_table(tok: dict[str, Any], n_rows: int) -> tuple[list[str], dict[int, dict[str, Any]]]:
    """Token strings by id (padded to ``n_rows``) and the added tokens by id."""
    added = {int(a["id"]): a for a in tok.get("added_tokens", [])}
    by_id: dict[int, str] = {int(i): t for t, i in tok["model"]["vocab"].items()}
    by_id.update({i: a["content"] for i, a in added.items()})
    largest = max(by_id)
    if largest >= n_rows:
        raise KogataError(
            f"the tokenizer has token id {largest} but the model embeds only {n_rows} tokens",
            "the tokenizer does not belong to this model",
        )
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(n_rows)]
    if len(set(tokens)) != len(tokens):  # llama.cpp aborts the process on a repeated token string
        seen: set[str] = set()
        repeated = next(t for t in tokens if t in seen or seen.add(t))
        raise KogataError(f"the tokenizer has the token {repeated!r} twice", "llama.cpp needs unique token strings")
    return tokens, added


def _steps(component: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not component:
        return []
    if component.get("type") == "Sequence":
        return list(component.get("pretokenizers") or component.get("normalizers") or [])
    return [component]


def _is_byte_level(tok: dict[str, Any]) -> bool:
    return any(s.get("type") == "ByteLevel" for s in _steps(tok.get("pre_tokenizer")))


def _is_sentencepiece_like(tok: dict[str, Any]) -> bool:
    """Spaces become "▁" and nothing else splits the text (llama.cpp's SPM tokenizer does not)."""
    steps = _steps(tok.get("normalizer")) + _steps(tok.get("pre_tokenizer"))
    replaces_spaces = any(
        s.get("type") == "Metaspace" or (s.get("type") == "Replace" and s.get("content") == _SPIECE_SPACE)
        for s in steps
    )
    # Gemma's Split(" ") is a no-op: the normalizer has already replaced every space.
    splits = [
        s
        for s in _steps(tok.get("pre_tokenizer"))
        if s.get("type") != "Metaspace" and not (s.get("type") == "Split" and s.get("pattern") == {"String": " "})
    ]
    return replaces_spaces and not splits


def _write_gpt2(
    writer: gguf.GGUFWriter, tok: dict[str, Any], tokens: list[str], added: dict[int, dict], merges: list[str]
) -> None:
    types = []
    for i in range(len(tokens)):
        if i in added:
            types.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
        elif tokens[i] == f"[PAD{i}]":
            types.append(gguf.TokenType.UNUSED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_gpt2_pre_tokenizer(tok))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)


def _gpt2_pre_tokenizer(tok: dict[str, Any]) -> str:
    """Name of the llama.cpp pre-tokenizer that splits text like the HF one."""
    norm = _steps(tok.get("normalizer"))
    if any(s.get("type") != "NFC" for s in norm):
        raise KogataError(
            "cannot export a byte-level tokenizer with a text normalizer to GGUF",
            "llama.cpp does not normalize text for GPT-2 style tokenizers",
        )
    steps = _steps(tok.get("pre_tokenizer"))
    kinds = [s.get("type") for s in steps]
    last = steps[-1]
    if last.get("type") == "ByteLevel" and not last.get("add_prefix_space", False):
        use_regex = last.get("use_regex", True)
        if kinds == ["ByteLevel"] and use_regex:
            return "gpt-2"
        if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and use_regex:
            return "smollm"
        if kinds == ["Split", "ByteLevel"] and not use_regex and steps[0].get("behavior") == "Isolated":
            pre = _SPLIT_REGEX_TO_PRE.get((steps[0].get("pattern") or {}).get("Regex", ""))
            if pre and not steps[0].get("invert"):
                return pre
    raise KogataError(
        f"cannot export this byte-level pre-tokenizer to GGUF: {kinds}",
        "supported: GPT-2, SmolLM (digits + GPT-2), Qwen2 and Llama 3 pre-tokenizers",
    )


def _write_spm(
    writer: gguf.GGUFWriter, tok: dict[str, Any], tokens: list[str], added: dict[int, dict], merges: list[str]
) -> None:
    vocab: dict[str, int] = tok["model"]["vocab"]
    scores = [-float(len(merges) + i) for i in range(len(tokens))]
    seen: set[int] = set()
    for rank, merge in enumerate(merges):
        left, _, right = merge.partition(" ")
        i = vocab.get(left + right)
        if i is not None and i not in seen:
            seen.add(i)
            scores[i] = -float(rank)
    unk = tok["model"].get("unk_token")
    types = []
    for i, text in enumerate(tokens):
        if i in added:
            types.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
        elif text == unk:
            types.append(gguf.TokenType.UNKNOWN)
        elif _BYTE_TOKEN.fullmatch(text):
            types.append(gguf.TokenType.BYTE)
        elif text == f"[PAD{i}]":
            types.append(gguf.TokenType.UNUSED)
        else:
            types.append(gguf.TokenType.NORMAL)
    if unk is not None and unk in vocab and vocab[unk] in added:
        types[vocab[unk]] = gguf.TokenType.UNKNOWN
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_add_space_prefix(_adds_space_prefix(tok))


def _adds_space_prefix(tok: dict[str, Any]) -> bool:
    for s in _steps(tok.get("normalizer")) + _steps(tok.get("pre_tokenizer")):
        if s.get("type") == "Prepend" and s.get("prepend") == _SPIECE_SPACE:
            return True
        if s.get("type") == "Metaspace" and (
            s.get("prepend_scheme") in ("always", "first") or s.get("add_prefix_space") is True
        ):
            return True
    return False


def _token_id(value: Any, tokens: list[str]) -> int | None:
    if isinstance(value, dict):
        value = value.get("content")
    if not isinstance(value, str):
        return None
    try:
        return tokens.index(value)
    except ValueError:
        return None


def _write_special_tokens(
    writer: gguf.GGUFWriter, hf_dir: Path, tok: dict[str, Any], tok_config: dict[str, Any], tokens: list[str]
) -> None:
    config = _read_json(hf_dir / "config.json") or {}
    ids: dict[str, int | None] = {}
    for kind in ("bos", "eos", "unk", "pad"):
        ids[kind] = _token_id(tok_config.get(f"{kind}_token"), tokens)
        if ids[kind] is None:
            fallback = config.get(f"{kind}_token_id")
            if isinstance(fallback, list):
                fallback = fallback[0] if fallback else None
            ids[kind] = fallback if isinstance(fallback, int) and 0 <= fallback < len(tokens) else None
    if ids["bos"] is not None:
        writer.add_bos_token_id(ids["bos"])
    if ids["eos"] is not None:
        writer.add_eos_token_id(ids["eos"])
    if ids["unk"] is not None:
        writer.add_unk_token_id(ids["unk"])
    if ids["pad"] is not None:
        writer.add_pad_token_id(ids["pad"])

    first, last = _template_ends(tok.get("post_processor"))
    add_bos = tok_config.get("add_bos_token")
    if add_bos is None:
        add_bos = ids["bos"] is not None and first == tokens[ids["bos"]]
    add_eos = tok_config.get("add_eos_token")
    if add_eos is None:
        add_eos = ids["eos"] is not None and last == tokens[ids["eos"]]
    writer.add_add_bos_token(bool(add_bos))
    writer.add_add_eos_token(bool(add_eos))


def _template_ends(post: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """The special tokens (if any) the post-processor puts before and after a single text."""
    if not post:
        return None, None
    if post.get("type") == "Sequence":
        for p in post.get("processors") or []:
            ends = _template_ends(p)
            if ends != (None, None):
                return ends
        return None, None
    if post.get("type") != "TemplateProcessing" or not post.get("single"):
        return None, None
    single = post["single"]
    first = single[0].get("SpecialToken", {}).get("id")
    last = single[-1].get("SpecialToken", {}).get("id")
    return first, last


def _chat_template(hf_dir: Path, tok_config: dict[str, Any]) -> str | list[dict[str, str]] | None:
    template = tok_config.get("chat_template")
    if template:
        return template
    jinja = hf_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    data = _read_json(hf_dir / "chat_template.json")
    return data.get("chat_template") if isinstance(data, dict) else None
