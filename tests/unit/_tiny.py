"""Helpers for the eval/runtime tests: artifacts around the tiny models of ``tests/tiny_models.py`` and a
small suite written into a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

from kogata.artifacts.artifact import Artifact

FAQ = [
    {"id": "f1", "context": "The SK-R450 refrigerator has a one-year warranty.", "question": "How long is the warranty?", "answer": "one year"},
    {"id": "f2", "context": "Shipping takes three to five business days.", "question": "How long does shipping take?", "answer": "three to five business days"},
    {"id": "f3", "context": "Please restart the SakuraHome app and try again.", "question": "What should I restart?", "answer": "the SakuraHome app"},
    {"id": "f4", "context": "Returns are accepted within 30 days.", "question": "When are returns accepted?", "answer": "within 30 days"},
]
INTENTS = [
    {"id": "i1", "text": "I was charged twice this month.", "label": "billing"},
    {"id": "i2", "text": "Where is my parcel?", "label": "shipping"},
    {"id": "i3", "text": "I want to send the fridge back.", "label": "returns"},
    {"id": "i4", "text": "The app crashes on start.", "label": "technical"},
    {"id": "i5", "text": "Please change my e-mail address.", "label": "account"},
]
DOCS = [
    "Hello, how can I help you today? Shipping takes three to five business days.",
    "冷蔵庫の保証期間は一年間です。アプリを再起動してください。",
    "The refrigerator SK-R450 has a one-year warranty. Please restart the SakuraHome app and try again. "
    "Returns are accepted within 30 days of delivery, with the receipt.",
]

SUITE_YAML = """\
name: tiny-suite
version: 1
language: en
seed: 7
tasks:
  - name: faq_qa
    type: generate
    data: faq.jsonl
    fields: {context: context, question: question, answer: answer}
    prompt: "Text: {context}\\nQuestion: {question}\\nAnswer:"
    target: "{answer}"
    max_tokens: 6
    metrics: [exact_match, f1, rouge_l]
    fewshot: 1
  - name: intent
    type: multiple_choice
    data: intents.jsonl
    fields: {text: text, label: label}
    prompt: "Customer message: {text}\\nTopic:"
    choices: [" billing", " shipping", " returns", " technical", " account"]
    label: "{label}"
  - name: docs_ppl
    type: perplexity
    data: docs.txt
kpis:
  min: {faq_qa.f1: 0.0, intent.acc: 0.0}
  max: {docs_ppl.bits_per_byte: 100, latency_p95_ms: 100000}
"""


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_tiny_suite(folder: Path, yaml_text: str = SUITE_YAML) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "faq.jsonl", FAQ)
    write_jsonl(folder / "intents.jsonl", INTENTS)
    (folder / "docs.txt").write_text("\n\n".join(DOCS) + "\n", encoding="utf-8")
    (folder / "suite.yaml").write_text(yaml_text, encoding="utf-8")
    return folder / "suite.yaml"


def hf_artifact(folder: Path, name: str = "tiny") -> Artifact:
    return Artifact(path=Path(folder), manifest={"id": f"{name}-id", "name": name, "format": "hf"})


def gguf_artifact(gguf_file: Path, name: str = "tiny-gguf") -> Artifact:
    gguf_file = Path(gguf_file)
    return Artifact(path=gguf_file.parent, manifest={"id": f"{name}-id", "name": name, "format": "gguf", "model_file": gguf_file.name})
