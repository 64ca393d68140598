"""Training data for ``lora``: read instruction/QA records or plain text, format them, tokenize, pack, batch.

Record formats (JSONL, one object per line; detected per record, so a ``kogata data prepare`` dataset that mixes
QA and text records trains as it is):

========================  =================================  =========================================
fields                    user message                       answer (the tokens that carry the loss)
========================  =================================  =========================================
instruction, output       instruction (+ ``\\n\\n`` input)    output
 (+ input)
question, answer          ``Context: …\\n\\nQuestion: …``     answer
 (+ context)
prompt, response          prompt                             response
prompt, completion        prompt                             completion
text                      (plain text: loss on every token)
========================  =================================  =========================================

Other field names: ``prompt_field=ticket,… answer_field=summary``. ``.txt``/``.md`` files are plain text.

Formatting: with the model's chat template (when it has one) the user message — after an optional system
prompt — goes in a user turn and the answer in the assistant turn, including the template's end-of-turn
tokens, so the model learns to stop. Without a template the prompt is the same ``User:/Assistant:``
transcript the torch and llama.cpp runtimes use for chat, and the answer is `` answer`` + EOS. Prompt and
answer are tokenized separately (as at inference: the prompt, then generated tokens). With ``loss_on=answers``
the prompt tokens get label −100. With ``plain_prompt`` the record's prompt is the model's whole input as it
is (no template, no transcript, no system prompt; BOS as the tokenizer adds it) and the answer `` answer`` + EOS
follows it: for base models that are sent one plain completion prompt, such as ``rag_qa``'s grounded-answer
prompt for a model without a chat template (:func:`kogata.search.answer.plain_prompt`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError

IGNORE = -100
TEXT_SUFFIXES = (".txt", ".md")
DATA_SUFFIXES = (".jsonl", ".json", *TEXT_SUFFIXES)

# name -> (required fields, optional fields); the first match on a record wins
SCHEMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "instruction": (("instruction", "output"), ("input",)),
    "qa": (("question", "answer"), ("context",)),
    "prompt-response": (("prompt", "response"), ()),
    "prompt-completion": (("prompt", "completion"), ()),
    "text": (("text",), ()),
}
KNOWN = "instruction/output (+input), question/answer (+context), prompt/response, prompt/completion, text"


@dataclass
class Record:
    """One training item before tokenization: a chat exchange, or plain text (``answer is None``)."""

    user: str
    answer: str | None
    where: str  # "file:line", for messages


@dataclass
class Example:
    """A tokenized item: ``labels`` is −100 where no loss is taken."""

    input_ids: list[int]
    labels: list[int]
    where: str = ""

    @property
    def n_targets(self) -> int:
        return sum(1 for t in self.labels[1:] if t != IGNORE)


# ---------------------------------------------------------------------------------------------- reading
def read_records(paths: list[Path], *, prompt_fields: list[str] | None = None, answer_field: str | None = None) -> list[Record]:
    """Every record of every file in ``paths`` (folders are read recursively, in name order)."""
    out: list[Record] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise KogataError(f"data file {p} does not exist", "check the --data path")
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in DATA_SUFFIXES) if p.is_dir() else [p]
        for f in files:
            if f.suffix in TEXT_SUFFIXES or f.suffix not in (".jsonl", ".json"):
                text = f.read_text(encoding="utf-8")
                if text.strip():
                    out.append(Record(user=text, answer=None, where=f"{f}"))
            else:
                out.extend(_records_of(f, prompt_fields or [], answer_field))
    if not out:
        raise KogataError("the training data is empty", "pass --data with JSONL records or text files")
    return out


def _json_items(f: Path) -> Iterator[tuple[int, Any]]:
    if f.suffix == ".json":
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise KogataError(f"{f} is not valid JSON (line {exc.lineno})", "fix the file, or write one record per line as .jsonl") from None
        if not isinstance(doc, list):
            raise KogataError(f"{f} holds a JSON {type(doc).__name__}, not a list of records", "write a list of objects, or JSONL")
        yield from enumerate(doc, 1)
        return
    with open(f, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise KogataError(f"{f} line {n} is not valid JSON ({exc.msg})", "write one JSON object per line") from None


def _records_of(f: Path, prompt_fields: list[str], answer_field: str | None) -> list[Record]:
    unit = "item" if f.suffix == ".json" else "line"
    custom: tuple[str, tuple[str, ...], tuple[str, ...]] | None = None
    if prompt_fields or answer_field:
        if not (prompt_fields and answer_field):
            raise KogataError("prompt_field and answer_field go together", "set both, e.g. prompt_field=ticket answer_field=summary")
        custom = ("custom", (*prompt_fields, answer_field), ())
    out = []
    for n, obj in _json_items(f):
        if not isinstance(obj, dict):
            raise KogataError(f"{f} {unit} {n}: expected a JSON object, got {type(obj).__name__}", "write one object per line")
        name, required, _ = custom or _detect(obj, f, unit, n)
        missing = [k for k in required if _text(obj.get(k)) == ""]
        if missing:
            raise KogataError(
                f"{f} {unit} {n}: missing or empty field {', '.join(repr(m) for m in missing)} "
                f"(a {'/'.join(required)} record)",
                "fix or remove that record",
            )
        out.append(_record(name, obj, prompt_fields, answer_field, f"{f}:{n}"))
    return out


def _detect(obj: dict[str, Any], f: Path, unit: str, n: int) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    for name, (required, optional) in SCHEMES.items():
        if all(k in obj for k in required):
            return name, required, optional
    for name, (required, _optional) in SCHEMES.items():  # a record with part of a field set lacks the rest
        if any(k in obj for k in required) and name != "text":
            missing = [k for k in required if k not in obj]
            raise KogataError(
                f"{f} {unit} {n}: missing field {', '.join(repr(m) for m in missing)} (a {'/'.join(required)} record)",
                "fix or remove that record",
            )
    raise KogataError(
        f"{f} {unit} {n}: no instruction/answer fields (it has: {', '.join(obj) or 'none'})",
        f"known field sets: {KNOWN}; or name yours with prompt_field=… answer_field=…",
    )


def _text(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _record(scheme: str, obj: dict[str, Any], prompt_fields: list[str], answer_field: str | None, where: str) -> Record:
    if scheme == "instruction":
        extra = _text(obj.get("input")).strip()
        return Record(_text(obj["instruction"]) + (f"\n\n{extra}" if extra else ""), _text(obj["output"]), where)
    if scheme == "qa":
        return Record(qa_prompt(_text(obj["question"]), _text(obj.get("context"))), _text(obj["answer"]), where)
    if scheme == "prompt-response":
        return Record(_text(obj["prompt"]), _text(obj["response"]), where)
    if scheme == "prompt-completion":
        return Record(_text(obj["prompt"]), _text(obj["completion"]), where)
    if scheme == "text":
        return Record(_text(obj["text"]), None, where)
    parts = [_text(obj[k]) for k in prompt_fields]
    user = parts[0] if len(parts) == 1 else "\n\n".join(f"{k.replace('_', ' ').capitalize()}: {v}" for k, v in zip(prompt_fields, parts))
    return Record(user, _text(obj[answer_field]), where)


def qa_prompt(question: str, context: str = "") -> str:
    """The user message of a question/answer record (also what evaluation should send)."""
    context = context.strip()
    return (f"Context: {context}\n\n" if context else "") + f"Question: {question.strip()}"


# ---------------------------------------------------------------------------------------------- formatting
@dataclass
class Formatter:
    """Turns a :class:`Record` into token ids: chat template when the tokenizer has one, else a plain transcript."""

    tokenizer: Any
    system_prompt: str | None = None
    use_chat_template: bool = True
    plain_prompt: bool = False  # the prompt is the whole input, as it is

    @property
    def chat(self) -> bool:
        return not self.plain_prompt and self.use_chat_template and bool(getattr(self.tokenizer, "chat_template", None))

    def messages(self, user: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return msgs + [{"role": "user", "content": user}]

    def prompt_text(self, user: str) -> str:
        """What a runtime is given before generating the answer."""
        if self.plain_prompt:
            return user
        if self.chat:
            return self.tokenizer.apply_chat_template(self.messages(user), add_generation_prompt=True, tokenize=False)
        from kogata.runtimes.torch_runtime import render_plain_chat

        return render_plain_chat(self.messages(user))

    def prompt_ids(self, user: str) -> list[int]:
        text = self.prompt_text(user)
        # a chat template writes its own BOS (when the model wants one); a plain transcript gets the tokenizer's
        return list(self.tokenizer(text, add_special_tokens=not self.chat).input_ids)

    def answer_ids(self, user: str, answer: str) -> list[int]:
        tok = self.tokenizer
        if self.chat:
            prompt = self.prompt_text(user)
            full = tok.apply_chat_template(self.messages(user) + [{"role": "assistant", "content": answer}], tokenize=False)
            tail = full[len(prompt):] if full.startswith(prompt) else answer + (tok.eos_token or "")
            return list(tok(tail, add_special_tokens=False).input_ids)
        ids = list(tok(" " + answer.strip(), add_special_tokens=False).input_ids)
        return ids + ([tok.eos_token_id] if tok.eos_token_id is not None else [])

    def text_ids(self, text: str) -> list[int]:
        tok = self.tokenizer
        ids = list(tok(text, add_special_tokens=True).input_ids)
        return ids + ([tok.eos_token_id] if tok.eos_token_id is not None and ids[-1:] != [tok.eos_token_id] else [])


def tokenize_records(records: list[Record], fmt: Formatter, *, max_length: int, loss_on: str = "answers") -> tuple[list[Example], dict[str, int]]:
    """Tokenize; plain texts longer than ``max_length`` are cut into windows, long prompts lose their start."""
    out: list[Example] = []
    stats = {"records": len(records), "truncated_prompts": 0, "truncated_answers": 0, "text_windows": 0}
    for r in records:
        if r.answer is None:
            ids = fmt.text_ids(r.user)
            for i in range(0, len(ids), max_length):
                window = ids[i : i + max_length]
                if len(window) >= 2:
                    out.append(Example(window, list(window), r.where))
                    stats["text_windows"] += 1
            continue
        prompt, answer = fmt.prompt_ids(r.user), fmt.answer_ids(r.user, r.answer)
        if len(answer) > max_length // 2 and len(prompt) + len(answer) > max_length:
            answer = answer[: max(max_length // 2, max_length - len(prompt))]
            stats["truncated_answers"] += 1
        if len(prompt) + len(answer) > max_length:
            prompt = prompt[len(prompt) + len(answer) - max_length :]
            stats["truncated_prompts"] += 1
        labels = (list(prompt) if loss_on == "all" else [IGNORE] * len(prompt)) + list(answer)
        out.append(Example(prompt + answer, labels, r.where))
    return out, stats


def split_eval(items: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, eval): a seeded random ``fraction`` held out (at least one item when fraction > 0)."""
    import random

    if fraction <= 0 or len(items) < 2:
        return list(items), []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(items) - 1, max(1, round(fraction * len(items))))
    held = set(order[:n_eval])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


def pack(examples: list[Example], max_length: int) -> list[Example]:
    """Concatenate examples (labels included) and cut the stream into ``max_length`` blocks.

    Examples in one block attend to each other (no per-document masks); the last, shorter block is kept."""
    ids: list[int] = []
    labels: list[int] = []
    for ex in examples:
        ids.extend(ex.input_ids)
        labels.extend(ex.labels)
    blocks = [Example(ids[i : i + max_length], labels[i : i + max_length], f"packed block {i // max_length + 1}") for i in range(0, len(ids), max_length)]
    return [b for b in blocks if b.n_targets > 0]


# ---------------------------------------------------------------------------------------------- batching
class BatchSchedule:
    """Micro-batch ``g`` of an endless, per-epoch reshuffled stream of examples, a pure function of (seed, g):
    a resumed run sees exactly the batches an uninterrupted one would have."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        import torch

        if epoch not in self._orders:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders = {epoch: torch.randperm(self.n, generator=g).tolist()}
        return self._orders[epoch]

    def indices(self, g: int) -> list[int]:
        out = []
        for pos in range(g * self.batch_size, (g + 1) * self.batch_size):
            epoch, i = divmod(pos, self.n)
            out.append(self._order(epoch)[i])
        return out

    def epoch_of(self, g: int) -> float:
        return g * self.batch_size / self.n


def collate(examples: list[Example], pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids``/``attention_mask``/``labels`` tensors."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(e.labels)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
