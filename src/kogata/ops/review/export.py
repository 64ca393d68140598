"""``kogata review export``: reviewed answers as training data.

Writes a folder (staged, renamed into place when complete)::

    chat.jsonl         one record per corrected (and, unless corrections_only, approved) item:
                       {"id", "system"?, "prompt", "response", "messages": [... , {"role": "assistant", ...}],
                        "review_item", "state", "reviewer", "model_alias", "artifact_id"}
    preferences.jsonl  one pair per corrected item: {"id", "system"?, "prompt", "chosen": corrected,
                       "rejected": original, "messages": [the conversation without the answer], ...}
    manifest.json      counts, filters, time

``prompt``/``response`` is a record shape both ``kogata data prepare`` and ``lora`` read (``system`` is kept
by prepare); ``messages`` carries the whole conversation for chat trainers. For a multi-turn request,
``prompt`` is the last user turn and the earlier turns are only in ``messages``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from kogata.core.io import atomic_write_json, publish_folder, staging_folder
from kogata.ops.review.queue import ReviewItem, ReviewQueue, T

EXPORT_VERSION = 1


def conversation(prompt: Any) -> tuple[str | None, str, list[dict[str, str]]]:
    """(system, last user message, messages) of a request's prompt (messages list or plain text)."""
    if isinstance(prompt, str):
        return None, prompt, [{"role": "user", "content": prompt}]
    messages: list[dict[str, str]] = []
    for m in prompt if isinstance(prompt, list) else []:
        if isinstance(m, dict) and isinstance(m.get("role"), str):
            content = m.get("content")
            if isinstance(content, list):  # OpenAI content parts: keep the text ones
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            messages.append({"role": m["role"], "content": content if isinstance(content, str) else ""})
    if not messages:
        text = json.dumps(prompt, ensure_ascii=False)
        return None, text, [{"role": "user", "content": text}]
    system = next((m["content"] for m in messages if m["role"] in ("system", "developer") and m["content"]), None)
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), messages[-1]["content"])
    return system, user, messages


def chat_record(item: ReviewItem) -> dict[str, Any]:
    system, user, messages = conversation(item.prompt)
    rec: dict[str, Any] = {"id": f"review-{item.id}"}
    if system:
        rec["system"] = system
    rec.update({
        "prompt": user, "response": item.answer, "messages": [*messages, {"role": "assistant", "content": item.answer}],
        "review_item": item.id, "state": item.state, "reviewer": item.reviewer, "model_alias": item.model_alias,
        "artifact_id": item.artifact_id,
    })
    return rec


def preference_record(item: ReviewItem) -> dict[str, Any]:
    system, user, messages = conversation(item.prompt)
    rec: dict[str, Any] = {"id": f"review-{item.id}"}
    if system:
        rec["system"] = system
    rec.update({"prompt": user, "chosen": item.corrected, "rejected": item.original, "messages": messages,
                "review_item": item.id, "reviewer": item.reviewer, "model_alias": item.model_alias, "artifact_id": item.artifact_id})
    return rec


def export_reviewed(queue: ReviewQueue, out: Path, *, corrections_only: bool = False, since: float | None = None) -> dict[str, Any]:
    """Write the dataset folder ``out``; returns its manifest."""
    states = ("corrected",) if corrections_only else ("approved", "corrected")
    stmt = select(T).where(T.c.state.in_(states)).order_by(T.c.id)
    if since is not None:
        stmt = stmt.where(T.c.reviewed_at >= since)
    staging = staging_folder(Path(out), marker="manifest.json", what="review export")
    chat = prefs = 0
    try:
        with queue.engine.connect() as conn, \
                open(staging / "chat.jsonl", "w", encoding="utf-8") as fc, open(staging / "preferences.jsonl", "w", encoding="utf-8") as fp:
            for row in conn.execute(stmt):
                item = ReviewItem.from_row(row)
                if not (item.answer or "").strip():
                    continue
                fc.write(json.dumps(chat_record(item), ensure_ascii=False) + "\n")
                chat += 1
                if item.state == "corrected" and item.corrected != item.original:
                    fp.write(json.dumps(preference_record(item), ensure_ascii=False) + "\n")
                    prefs += 1
        manifest = {"version": EXPORT_VERSION, "created": time.time(), "states": list(states), "since": since,
                    "files": {"chat.jsonl": chat, "preferences.jsonl": prefs}}
        atomic_write_json(manifest, staging / "manifest.json")
        publish_folder(staging, Path(out))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
