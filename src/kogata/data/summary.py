"""Summaries of a prepared dataset: rich tables for the terminal and one self-contained HTML page.

Both read only the manifest. The HTML has inline CSS, no scripts and no external resources; every string
from the data is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

from rich.console import Group
from rich.table import Table

from kogata.data.filters import REASONS

_MORE_REASONS = {
    "exact_duplicate": "same text (after normalisation) as an earlier record",
    "near_duplicate": "MinHash Jaccard similarity ≥ --near-dup-threshold to an earlier record",
    "not_selected": "left out by --target-size diversity selection",
}


def describe(reason: str) -> str:
    return REASONS.get(reason) or _MORE_REASONS.get(reason, reason)


def _stage_rows(m: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for s in m["stages"]:
        removed = ", ".join(f"{k} {v}" for k, v in (s.get("removed") or {}).items()) or "-"
        name = "read (files → records)" if s["stage"] == "read" else s["stage"]
        rows.append((name, str(s["in"]), str(s["out"]), removed))
    return rows


def render_terminal(m: dict[str, Any], out_dir: str) -> Group:
    """Stages, removals with one example each, PII counts and the output facts."""
    stages = Table(title=f"data prepare → {out_dir}", title_justify="left")
    for col, just in (("stage", "left"), ("in", "right"), ("out", "right"), ("removed", "left")):
        stages.add_column(col, justify=just)
    for row in _stage_rows(m):
        stages.add_row(*row)

    removed = Table(title="removed", title_justify="left")
    for col in ("reason", "count", "why", "example"):
        removed.add_column(col, overflow="fold")
    for reason, entry in m["removed"].items():
        ex = entry["examples"][0] if entry["examples"] else None
        example = f"{ex['id']}: {ex['snippet'][:50]!r}" if ex else "-"
        removed.add_row(reason, str(entry["count"]), describe(reason), example)

    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="dim")
    facts.add_column()
    facts.add_row("records", f"{m['records']} ({', '.join(f'{k} {v}' for k, v in m['kinds'].items())})")
    facts.add_row("languages", ", ".join(f"{k} {v}" for k, v in m["langs"].items()))
    pii = m["pii"]
    facts.add_row("PII replaced", "off (--no-pii)" if pii is None else (", ".join(f"{k} {v}" for k, v in pii.items() if v) or "none found"))
    if m["files"]["binary_skipped"]:
        facts.add_row("binary skipped", ", ".join(m["files"]["binary_skipped"]))
    if m["splits"]:
        facts.add_row("splits", ", ".join(f"{k} {v}" for k, v in m["splits"].items()))
    facts.add_row("fingerprint", m["fingerprint"][:16])
    parts: list[Any] = [stages]
    if m["removed"]:
        parts.append(removed)
    parts.append(facts)
    return Group(*parts)


_CSS = """
body{margin:0;font:15px/1.5 -apple-system,"Segoe UI","Hiragino Sans","Noto Sans JP","Yu Gothic",Roboto,sans-serif;color:#1d2430;background:#f6f8fb}
main{max-width:1100px;margin:0 auto;padding:28px 24px 60px}
h1{font-size:24px;margin:0 0 6px}h2{font-size:18px;margin:30px 0 8px;border-bottom:2px solid #e3e7ee;padding-bottom:4px}
.meta{color:#5d6877;font-size:13.5px}.meta b{color:#1d2430}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13.5px}
th,td{padding:6px 10px;border-bottom:1px solid #e3e7ee;text-align:left;vertical-align:top}
th{background:#eef1f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
.snip{display:block;white-space:pre-wrap;color:#3b4452;font-size:12.5px;margin:2px 0 6px}
.bar{display:inline-block;height:10px;background:#2457c5;border-radius:2px;vertical-align:middle}
"""


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(m: dict[str, Any]) -> str:
    """One self-contained page (inline CSS, no scripts, no links)."""
    e = lambda v: escape(str(v))  # noqa: E731
    first_in = m["stages"][1]["in"] if len(m["stages"]) > 1 else m["records"]
    stage_rows = []
    for stage, n_in, n_out, removed in _stage_rows(m):
        width = int(200 * int(n_out) / first_in) if first_in and not stage.startswith("read") else 0
        stage_rows.append([e(stage), n_in, n_out, f'<span class="bar" style="width:{width}px"></span>' if width else "", e(removed)])
    removed_rows = []
    for reason, entry in m["removed"].items():
        examples = "".join(f"<code>{e(x['id'])}</code> {e(x['detail'])}<span class=\"snip\">{e(x['snippet'])}</span>" for x in entry["examples"])
        removed_rows.append([f"<b>{e(reason)}</b><br>{e(describe(reason))}", e(entry["stage"]), str(entry["count"]), examples])
    pii = m["pii"]
    pii_html = "<p>PII scrubbing was off (<code>--no-pii</code>).</p>" if pii is None else _table(["type", "replaced"], [[f"<code>[{e(k)}]</code>", str(v)] for k, v in pii.items()], {1})
    files = m["files"]
    file_rows = [[f"<code>{e(f['source'])}</code>", e(f["encoding"]), str(f["records"])] for f in files["read"]]
    file_rows += [[f"<code>{e(s)}</code>", "binary: skipped", "0"] for s in files["binary_skipped"]]
    cfg_rows = [[f"<code>{e(k)}</code>", f"<code>{e(v)}</code>"] for k, v in m["config"].items()]
    splits = ", ".join(f"{e(k)} {v}" for k, v in (m["splits"] or {}).items()) or "none"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>kogata dataset — {m['records']} records</title><style>{_CSS}</style></head>
<body><main>
<h1>Dataset: {m['records']} records</h1>
<p class="meta"><b>fingerprint</b> <code>{e(m['fingerprint'])}</code> · <b>seed</b> {e(m['seed'])} · <b>created</b> {e(m['created'])}
 · <b>characters</b> {m['chars']:,} · <b>languages</b> {e(', '.join(f'{k} {v}' for k, v in m['langs'].items()))}
 · <b>kinds</b> {e(', '.join(f'{k} {v}' for k, v in m['kinds'].items()))} · <b>splits</b> {splits}</p>
<h2>Stages</h2>{_table(["stage", "in", "out", "", "removed"], stage_rows, {1, 2})}
<h2>Removed records</h2>{_table(["reason", "stage", "count", "examples"], removed_rows, {2}) if removed_rows else "<p>Nothing was removed.</p>"}
<p class="meta">Every removed record is in <code>removed.jsonl</code> with its reason.</p>
<h2>PII</h2>{pii_html}
<h2>Files</h2>{_table(["file", "encoding", "records"], file_rows, {2})}
<h2>Configuration</h2>{_table(["setting", "value"], cfg_rows)}
<p class="meta">kogata {e(m['tool_versions']['kogata'])} · datasketch {e(m['tool_versions']['datasketch'])} · manifest version {m['version']}</p>
</main></body></html>
"""
