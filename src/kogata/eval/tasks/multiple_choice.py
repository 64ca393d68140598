"""``multiple_choice``: the choice with the highest log-likelihood after the prompt (acc) or per character (acc_norm)."""

from __future__ import annotations

from typing import Any

import kogata.eval.metrics as M
from kogata.core.errors import KogataError
from kogata.eval.data import Record
from kogata.eval.tasks import N_SAMPLES, Progress, Task, register_task_type
from kogata.runtimes.base import GenerateRequest, LoglikelihoodRequest


@register_task_type("multiple_choice")
class MultipleChoiceTask(Task):
    """Pick the choice with the highest log-likelihood after the prompt (acc) or per character (acc_norm)."""

    metrics = ("acc", "acc_norm")
    primary = ("acc", "acc_norm")
    keys = ("prompt", "choices", "choices_field", "label", "label_field", "fewshot", "fewshot_data",
            "fewshot_delimiter")  # fmt: skip
    templates = ("prompt", "label", "description")
    required = ("data", "prompt")
    CHUNK = 16  # items scored per runtime call (progress granularity)

    def __init__(self, cfg: dict[str, Any], **kw: Any):
        super().__init__(cfg, **kw)
        self.prompt = self._str("prompt", None)
        self.choices, self.choices_field = self.cfg.get("choices"), self._str("choices_field", None)
        self.label_names: list[str] = []  # with choices given as {label: continuation}
        if (self.choices is None) == (self.choices_field is None):
            raise KogataError(f"{self.where}: give exactly one of choices (a list or mapping) or choices_field (a column)",
                              'e.g. choices: [" yes", " no"]')  # fmt: skip
        if isinstance(self.choices, dict):
            self.label_names, self.choices = [str(k) for k in self.choices], list(self.choices.values())
        if self.choices is not None and (not isinstance(self.choices, list) or len(self.choices) < 2
                                         or not all(isinstance(c, str) and c for c in self.choices)):  # fmt: skip
            raise KogataError(f"{self.where}: choices must be at least two non-empty strings (a list, or a mapping label: text)",
                              'e.g. choices: [" yes", " no"] or choices: {billing: " 請求", shipping: " 配送"}')  # fmt: skip
        self.label, self.label_field = self._str("label", None), self._str("label_field", None)
        if (self.label is None) == (self.label_field is None):
            raise KogataError(f"{self.where}: give exactly one of label (a template) or label_field (a column)", 'e.g. label: "{label}"')
        self._setup_fewshot()
        self.golds = [self.gold(i, r) for i, r in enumerate(self.records)]
        if self.fewshot_records is not None:
            self.fewshot_golds = [self.gold(i, r) for i, r in enumerate(self.fewshot_records)]

    def _extra_columns(self) -> list[str]:
        return [c for c in (self.cfg.get("choices_field"), self.cfg.get("label_field")) if c]

    def item_choices(self, record: Record, index: int = 0) -> list[str]:
        if self.choices is not None:
            return self.choices
        value = record[self.choices_field]
        if not isinstance(value, list) or len(value) < 2 or not all(isinstance(c, str) and c for c in value):
            raise KogataError(f"{self.where}: item {self.item_id(record, index)}: {self.choices_field} must be a list of >= 2 strings",
                              "fix the data")  # fmt: skip
        return value

    def gold(self, index: int, record: Record) -> int:
        choices = self.item_choices(record, index)
        raw = record[self.label_field] if self.label_field else self.render(self.label, record)
        if isinstance(raw, bool):
            raw = str(raw)
        if isinstance(raw, int) or (isinstance(raw, str) and raw.strip().lstrip("-").isdigit()):
            gold = int(raw)
            if not 0 <= gold < len(choices):
                raise KogataError(f"{self.where}: item {self.item_id(record, index)}: label {gold} is out of range 0..{len(choices) - 1}",
                                  "labels are 0-based indexes into choices")  # fmt: skip
            return gold
        wanted = M.normalize_text(str(raw))
        for names in (self.label_names, choices):
            for k, choice in enumerate(names):
                if M.normalize_text(choice) == wanted:
                    return k
        raise KogataError(f"{self.where}: item {self.item_id(record, index)}: label {raw!r} is not one of the choices",
                          f"choices: {', '.join(repr(c.strip()) for c in self.label_names or choices)}")  # fmt: skip

    def context(self, index: int, record: Record) -> str:
        parts = [self.render(self.description, record)] if self.description else []
        golds = self.fewshot_golds if self.fewshot_records is not None else self.golds
        for ex, j in self.fewshot_examples(index):
            parts.append(self.render(self.prompt, ex) + self.item_choices(ex, j)[golds[j]])
        parts.append(self.render(self.prompt, record))
        return self.fewshot_delimiter.join(parts)

    def _run(self, runtime: Any, items: list[tuple[int, Record]], progress: Progress) -> dict[str, Any]:
        per_item: dict[str, list[Any]] = {"id": [], "acc": [], "acc_norm": []}
        samples = []
        for lo in range(0, len(items), self.CHUNK):
            chunk = items[lo : lo + self.CHUNK]
            contexts = [self.context(i, r) for i, r in chunk]
            requests = [LoglikelihoodRequest(ctx, c) for ctx, (i, r) in zip(contexts, chunk) for c in self.item_choices(r, i)]
            results = iter(runtime.loglikelihood(requests))
            for ctx, (i, record) in zip(contexts, chunk):
                choices = self.item_choices(record, i)
                lls = [next(results).logprob for _ in choices]
                s = M.multiple_choice_scores(lls, choices, self.golds[i])
                per_item["id"].append(self.item_id(record, i))
                for k, v in s.items():
                    per_item[k].append(v)
                if len(samples) < N_SAMPLES:
                    best = max(range(len(choices)), key=lambda k: lls[k])
                    samples.append({"id": self.item_id(record, i), "prompt": ctx, "prediction": choices[best],
                                    "target": choices[self.golds[i]], "score": s, "logprobs": lls})  # fmt: skip
            progress(self.name, lo + len(chunk), len(items))
        metrics = {k: M.mean_with_ci(per_item[k], seed=self.seed) for k in self.metrics}
        return {"metrics": metrics, "per_item": per_item, "samples": samples}

    def prompts(self, n: int) -> list[GenerateRequest]:
        return [GenerateRequest(prompt=self.context(i, r), max_tokens=8, stop=["\n"]) for i, r in self.selected(n)]
