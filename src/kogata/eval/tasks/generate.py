"""``generate``: greedy generation scored against a target with exact_match / f1 / rouge_l / accuracy."""

from __future__ import annotations

from typing import Any

import kogata.eval.metrics as M
from kogata.core.errors import KogataError
from kogata.eval.data import Record
from kogata.eval.tasks import N_SAMPLES, Progress, Task, register_task_type
from kogata.runtimes.base import GenerateRequest


@register_task_type("generate")
class GenerateTask(Task):
    """Greedy generation scored against a target with exact_match / f1 / rouge_l / accuracy."""

    metrics = tuple(M.GENERATE_METRICS)
    primary = ("f1", "rouge_l", "accuracy", "exact_match")
    keys = ("prompt", "target", "chat", "max_tokens", "stop", "metrics", "fewshot", "fewshot_data",
            "fewshot_delimiter", "target_delimiter")  # fmt: skip
    templates = ("prompt", "target", "description")
    required = ("data", "prompt", "target")

    def __init__(self, cfg: dict[str, Any], **kw: Any):
        super().__init__(cfg, **kw)
        self.prompt, self.target = self._str("prompt", None), self._str("target", None)
        self.chat = bool(self.cfg.get("chat", False))
        self.max_tokens = self._int("max_tokens", 32, minimum=1)
        self.target_delimiter = self._str("target_delimiter", " ")
        self.stop = self.cfg.get("stop", ["\n"])
        if not isinstance(self.stop, list) or not all(isinstance(s, str) and s for s in self.stop):
            raise KogataError(f"{self.where}: stop must be a list of non-empty strings", 'e.g. stop: ["\\n"]')
        names = self.cfg.get("metrics", ["exact_match", "f1"])
        self.metric_names: list[str] = [names] if isinstance(names, str) else list(names)
        for m in self.metric_names:
            if m not in M.GENERATE_METRICS:
                raise KogataError(f"{self.where}: unknown metric {m!r}", f"generate metrics: {', '.join(M.GENERATE_METRICS)}")
        self._setup_fewshot()

    def produced_metrics(self) -> list[str]:
        return list(self.metric_names)

    def request(self, index: int, record: Record) -> GenerateRequest:
        shots = self.fewshot_examples(index)
        prompt = self.render(self.prompt, record)
        if self.chat:
            messages = [{"role": "system", "content": self.render(self.description, record)}] if self.description else []
            for ex, _ in shots:
                messages.append({"role": "user", "content": self.render(self.prompt, ex)})
                messages.append({"role": "assistant", "content": self.render(self.target, ex)})
            messages.append({"role": "user", "content": prompt})
            return GenerateRequest(messages=messages, max_tokens=self.max_tokens, stop=list(self.stop))
        parts = [self.render(self.description, record)] if self.description else []
        parts += [self.render(self.prompt, ex) + self.target_delimiter + self.render(self.target, ex) for ex, _ in shots]
        parts.append(prompt)
        return GenerateRequest(prompt=self.fewshot_delimiter.join(parts), max_tokens=self.max_tokens, stop=list(self.stop))

    def _run(self, runtime: Any, items: list[tuple[int, Record]], progress: Progress) -> dict[str, Any]:
        per_item: dict[str, list[Any]] = {"id": [], **{m: [] for m in self.metric_names}}
        samples = []
        for done, (i, record) in enumerate(items, 1):
            req = self.request(i, record)
            prediction = runtime.generate([req])[0].strip()
            target = self.render(self.target, record)
            item_scores = {m: M.GENERATE_METRICS[m](prediction, target) for m in self.metric_names}
            per_item["id"].append(self.item_id(record, i))
            for m, v in item_scores.items():
                per_item[m].append(v)
            if len(samples) < N_SAMPLES:
                shown = req.prompt if req.prompt is not None else req.messages[-1]["content"]
                samples.append({"id": self.item_id(record, i), "prompt": shown, "prediction": prediction,
                                "target": target, "score": item_scores})  # fmt: skip
            progress(self.name, done, len(items))
        metrics = {m: M.mean_with_ci(per_item[m], seed=self.seed) for m in self.metric_names}
        return {"metrics": metrics, "per_item": per_item, "samples": samples}

    def prompts(self, n: int) -> list[GenerateRequest]:
        return [self.request(i, r) for i, r in self.selected(n)]
