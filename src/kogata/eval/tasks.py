"""Task types, registered by name: ``perplexity``, ``multiple_choice`` and ``generate``.

A task is built from its YAML mapping (see ``docs/suite-format.md``), loads and validates its data at once
(so a broken suite fails at load time, naming the file, task, item or field), and then

* ``run(runtime, progress=None, limit=None)`` scores it and returns
  ``{"name", "type", "version", "n", "data_sha", "fewshot", "seconds", "metrics", "samples"}`` where each
  metric is ``{"value", "stderr", "ci_low", "ci_high", "n"}`` and ``samples`` holds the first 20 items
  (prompt / prediction / target / score);
* ``prompts(n)`` returns the first ``n`` prompts as :class:`GenerateRequest` (the efficiency probe times them).

Adding a task type = one ``Task`` subclass decorated with ``@register_task_type("name")``.
Prompt templates use Python ``str.format`` fields (``{question}``); every field must be mapped to a data
column in ``fields`` (``{{``/``}}`` write literal braces). Few-shot examples are drawn per item with a
generator seeded by (suite seed, task name, item index), so reruns see identical prompts.
"""

from __future__ import annotations

import difflib
import random
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError
from kogata.runtimes.base import GenerateRequest, LoglikelihoodRequest
import kogata.eval.metrics as M
from kogata.eval.data import Record, fingerprint, load_records

Progress = Callable[[str, int, int], None]  # (task name, items done, items total)
N_SAMPLES = 20
TASK_TYPES: dict[str, type[Task]] = {}


def register_task_type(name: str):
    def deco(cls: type[Task]) -> type[Task]:
        cls.type_name = name
        TASK_TYPES[name] = cls
        return cls

    return deco


def build_task(cfg: dict[str, Any], *, base_dir: Path, seed: int, language: str, source: str) -> Task:
    """Build one task from its suite mapping; ``source`` names the suite file for error messages."""
    if not isinstance(cfg, dict):
        raise KogataError(f"{source}: each entry of tasks must be a mapping, got {type(cfg).__name__}", "write - name: ...\\n  type: ...")
    name = cfg.get("name")
    if not isinstance(name, str) or not name.strip():
        raise KogataError(f"{source}: a task has no name", "give every task a unique name: <identifier>")
    kind = cfg.get("type")
    if kind not in TASK_TYPES:
        raise KogataError(
            f"{source}: task {name!r} has unknown type {kind!r}", f"valid types: {', '.join(sorted(TASK_TYPES))}"
        )
    return TASK_TYPES[kind](cfg, base_dir=base_dir, seed=seed, language=language, source=source)


def template_fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise KogataError(f"bad template {template!r}: {e}", "use {field} for values and {{ }} for literal braces") from None


class Task:
    """Shared parts: data, fields, templates, few-shot, limits, result assembly."""

    type_name = ""
    common_keys = ("name", "type", "version", "data", "fields", "limit", "description")
    keys: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()  # keys whose values are templates
    required: tuple[str, ...] = ()

    def __init__(self, cfg: dict[str, Any], *, base_dir: Path, seed: int, language: str, source: str):
        self.cfg, self.base_dir, self.seed, self.language = dict(cfg), base_dir, seed, language
        self.name: str = cfg["name"]
        self.where = f"{source}: task {self.name!r}"
        allowed = set(self.common_keys) | set(self.keys)
        for key in cfg:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"valid keys for {self.type_name}: {', '.join(sorted(allowed))}"
                raise KogataError(f"{self.where}: unknown key {key!r}", hint)
        for key in self.required:
            if cfg.get(key) in (None, ""):
                raise KogataError(f"{self.where}: missing {key!r}", f"a {self.type_name} task needs {key}")
        self.version = cfg.get("version", 1)
        self.limit = self._int("limit", None, minimum=1)
        self.description = self._str("description", "")
        self.fields: dict[str, str] = self._fields(cfg.get("fields"))
        for key in self.templates:
            for var in template_fields(self._str(key, "")):
                if var not in self.fields:
                    raise KogataError(
                        f"{self.where}: template variable {{{var}}} in {key} has no entry in fields",
                        f"add it to fields, e.g. fields: {{{var}: <column name>}}",
                    )
        self.records = load_records(cfg.get("data"), base_dir, where=f"{self.where}, data")
        self._check_columns(self.records, "data")
        self.data_sha = fingerprint(self.records)

    # ---------------------------------------------------------------- config helpers
    def _default_fields(self) -> dict[str, str]:
        return {}

    def _fields(self, value: Any) -> dict[str, str]:
        if value is None:
            return self._default_fields()
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise KogataError(f"{self.where}: fields must map template variables to column names", "e.g. fields: {question: question}")
        return dict(value)

    def _str(self, key: str, default: str | None) -> Any:
        value = self.cfg.get(key, default)
        if value is not None and not isinstance(value, str):
            raise KogataError(f"{self.where}: {key} must be a string, got {type(value).__name__}", f"quote the value of {key}")
        return value

    def _int(self, key: str, default: int | None, minimum: int = 0) -> Any:
        value = self.cfg.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise KogataError(f"{self.where}: {key} must be an integer >= {minimum}, got {value!r}", f"fix {key}")
        return value

    def _check_columns(self, records: list[Record], what: str) -> None:
        columns = set(self.fields.values()) | set(self._extra_columns())
        for i, record in enumerate(records):
            missing = sorted(c for c in columns if c not in record)
            if missing:
                raise KogataError(
                    f"{self.where}: item {self.item_id(record, i)} in {what} has no column {missing[0]!r}",
                    f"columns present: {', '.join(map(str, record))}; fix fields or the data",
                )

    def _extra_columns(self) -> list[str]:
        return []

    @staticmethod
    def item_id(record: Record, index: int) -> str:
        return str(record.get("id", f"#{index + 1}"))

    def render(self, template: str, record: Record) -> str:
        return template.format(**{var: _text(record[col]) for var, col in self.fields.items()})

    # ---------------------------------------------------------------- few-shot
    def _setup_fewshot(self) -> None:
        self.fewshot = self._int("fewshot", 0)
        self.fewshot_delimiter = self._str("fewshot_delimiter", "\n\n")
        self.fewshot_records: list[Record] | None = None
        if self.cfg.get("fewshot_data") is not None:
            self.fewshot_records = load_records(self.cfg["fewshot_data"], self.base_dir, where=f"{self.where}, fewshot_data")
            self._check_columns(self.fewshot_records, "fewshot_data")

    def fewshot_examples(self, index: int) -> list[tuple[Record, int]]:
        """The few-shot examples for item ``index``: (record, its index in its pool)."""
        if not self.fewshot:
            return []
        if self.fewshot_records is not None:
            source, pool = self.fewshot_records, list(range(len(self.fewshot_records)))
        else:
            source, pool = self.records, [j for j in range(len(self.records)) if j != index]
        rng = random.Random(f"{self.seed}:{self.name}:{index}")
        return [(source[j], j) for j in rng.sample(pool, min(self.fewshot, len(pool)))]

    # ---------------------------------------------------------------- running
    def selected(self, limit: int | None = None) -> list[tuple[int, Record]]:
        caps = [c for c in (self.limit, limit) if c is not None]
        n = min([len(self.records), *caps])
        return list(enumerate(self.records[:n]))

    def run(self, runtime: Any, progress: Progress | None = None, limit: int | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        items = self.selected(limit)
        metrics, samples = self._run(runtime, items, progress or (lambda *_: None))
        return {
            "name": self.name,
            "type": self.type_name,
            "version": self.version,
            "n": len(items),
            "data_sha": self.data_sha,
            "fewshot": getattr(self, "fewshot", 0),
            "seconds": round(time.perf_counter() - started, 3),
            "metrics": metrics,
            "samples": samples[:N_SAMPLES],
        }

    def _run(self, runtime: Any, items: list[tuple[int, Record]], progress: Progress) -> tuple[dict, list]:
        raise NotImplementedError

    def prompts(self, n: int) -> list[GenerateRequest]:
        raise NotImplementedError


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


@register_task_type("generate")
class GenerateTask(Task):
    """Greedy generation scored against a target with exact_match / f1 / rouge_l / accuracy."""

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
        self.metric_names = self.cfg.get("metrics", ["exact_match", "f1"])
        if isinstance(self.metric_names, str):
            self.metric_names = [self.metric_names]
        for m in self.metric_names:
            if m not in M.GENERATE_METRICS:
                raise KogataError(f"{self.where}: unknown metric {m!r}", f"generate metrics: {', '.join(M.GENERATE_METRICS)}")
        self._setup_fewshot()

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

    def _run(self, runtime: Any, items: list[tuple[int, Record]], progress: Progress) -> tuple[dict, list]:
        scores: dict[str, list[float]] = {m: [] for m in self.metric_names}
        samples = []
        for done, (i, record) in enumerate(items, 1):
            req = self.request(i, record)
            prediction = runtime.generate([req])[0].strip()
            target = self.render(self.target, record)
            item_scores = {m: M.GENERATE_METRICS[m](prediction, target) for m in self.metric_names}
            for m, v in item_scores.items():
                scores[m].append(v)
            if len(samples) < N_SAMPLES:
                shown = req.prompt if req.prompt is not None else req.messages[-1]["content"]
                samples.append({"id": self.item_id(record, i), "prompt": shown, "prediction": prediction,
                                "target": target, "score": item_scores})  # fmt: skip
            progress(self.name, done, len(items))
        return {m: M.mean_with_ci(v, seed=self.seed) for m, v in scores.items()}, samples

    def prompts(self, n: int) -> list[GenerateRequest]:
        return [self.request(i, r) for i, r in self.selected(n)]


@register_task_type("multiple_choice")
class MultipleChoiceTask(Task):
    """Pick the choice with the highest log-likelihood after the prompt (acc) or per character (acc_norm)."""

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

    def _run(self, runtime: Any, items: list[tuple[int, Record]], progress: Progress) -> tuple[dict, list]:
        per_item: dict[str, list[float]] = {"acc": [], "acc_norm": []}
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
                for k, v in s.items():
                    per_item[k].append(v)
                if len(samples) < N_SAMPLES:
                    best = max(range(len(choices)), key=lambda k: lls[k])
                    samples.append({"id": self.item_id(record, i), "prompt": ctx, "prediction": choices[best],
                                    "target": choices[self.golds[i]], "score": s, "logprobs": lls})  # fmt: skip
            progress(self.name, lo + len(chunk), len(items))
        return {k: M.mean_with_ci(v, seed=self.seed) for k, v in per_item.items()}, samples

    def prompts(self, n: int) -> list[GenerateRequest]:
        return [GenerateRequest(prompt=self.context(i, r), max_tokens=8, stop=["\n"]) for i, r in self.selected(n)]


@register_task_type("perplexity")
class PerplexityTask(Task):
    """Rolling log-likelihood of whole documents: token/word perplexity and bits per byte (lm-eval definitions)."""

    required = ("data",)
    CHUNK = 8

    def _default_fields(self) -> dict[str, str]:
        return {"text": "text"}

    def __init__(self, cfg: dict[str, Any], **kw: Any):
        super().__init__(cfg, **kw)
        if "text" not in self.fields:
            raise KogataError(f"{self.where}: fields needs a 'text' entry naming the document column", "e.g. fields: {text: body}")

    def text(self, record: Record) -> str:
        return _text(record[self.fields["text"]])

    def _run(self, runtime: Any, items: list[tuple[int, Record]], progress: Progress) -> tuple[dict, list]:
        texts = [self.text(r) for _, r in items]
        results = []
        for lo in range(0, len(texts), self.CHUNK):
            results += runtime.loglikelihood_rolling(texts[lo : lo + self.CHUNK])
            progress(self.name, min(lo + self.CHUNK, len(texts)), len(texts))
        lps = [r.logprob for r in results]
        denominators = {
            "token_perplexity": [r.n_tokens for r in results],
            "word_perplexity": [M.count_words(t) for t in texts],
            "bits_per_byte": [M.count_bytes(t) for t in texts],
        }
        out = {
            name: M.ratio_metric_with_ci(lambda num, den, f=fn: f(num, den), lps, denominators[name], seed=self.seed)
            for name, fn in M.PERPLEXITY_METRICS.items()
        }
        samples = [{"id": self.item_id(r, i), "prompt": t[:200], "prediction": None, "target": None,
                    "score": {"logprob": res.logprob, "n_tokens": res.n_tokens}}
                   for (i, r), t, res in zip(items[:N_SAMPLES], texts, results)]  # fmt: skip
        return out, samples

    def prompts(self, n: int) -> list[GenerateRequest]:
        out = []
        for _, r in self.selected(n):
            words = self.text(r).split(" ")
            out.append(GenerateRequest(prompt=" ".join(words[:48]) if len(words) > 1 else self.text(r)[:160], max_tokens=32))
        return out
