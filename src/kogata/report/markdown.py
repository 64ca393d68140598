"""``summary.md``: the verdicts and key numbers of a run as a short Markdown page (for tickets and chat)."""

from __future__ import annotations

from typing import Any

import kogata.report.format as f
from kogata.report.html import busy_note, entry_label, primary_metric, window_lines
from kogata.report.i18n import fmt, strings


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[c.replace("|", "\\|") for c in r] for r in [head, *rows]]
    return ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in head) + "|", *("| " + " | ".join(r) + " |" for r in esc[1:])]


def render_markdown(results: dict[str, Any]) -> str:
    suite = results["suite"]
    t = strings(suite.get("language"))
    primary = primary_metric(results)
    m = results.get("machine") or {}
    lines = [
        f"# {t['title']} — {suite['name']} v{suite.get('version')}",
        "",
        f"- {t['date']}: {results.get('created', '')[:16].replace('T', ' ')}",
        f"- {t['machine']}: {m.get('cpu', '?')}, {fmt(t['n_cores'], n=m.get('usable_cores', '?'))}, {m.get('ram_gb', '?')} GB — {t['threads']}: {results['settings']['threads']}",
        f"- {t['limit']}: {results['settings'].get('limit') or t['all_items']}",
        *[f"- {w}" for w in window_lines(results, t)],
        *(["", f"> ⚠ {busy_note(results, t)}"] if busy_note(results, t) else []),
        "",
        f"## {t['verdicts']}",
        "",
    ]
    rows = []
    for e in results["entries"]:
        eff = (e.get("efficiency") or {}).get("metrics") or {}
        cost = e.get("cost") or {}
        saving = (cost.get("saving") or {}) if e["key"] != results.get("baseline") else {}
        verdict = e.get("verdict") or (e.get("kpi") or {}).get("verdict", "PASS")
        why = e.get("error") or ", ".join((e.get("kpi") or {}).get("failed", []))
        rows.append([
            entry_label(e) + (f" ({t['baseline']})" if e["key"] == results.get("baseline") else ""),
            f"**{t[verdict.lower()]}**" + (f" — {why}" if why else ""),
            f.score((e.get("metrics") or {}).get(primary)) if primary else f.DASH,
            f.num(eff.get("decode_tok_s")),
            f.num(eff.get("latency_p95_ms"), 0),
            f.mib(eff.get("peak_rss_mb")),
            f.money(cost.get("cost_per_month"), cost.get("currency")),
            f.pct(saving.get("per_month_pct")) if saving else f.DASH,
        ])
    head = [t["entry"], t["verdict"], primary or t["quality"], t["decode"], "p95 (ms)", t["rss"], t["per_month"], t["saving"]]
    lines += _table(head, rows)
    lines += ["", f"_{t['generated_by'].format(version=results.get('kogata_version', '?'), schema=results.get('schema_version', '?'))}_", ""]
    return "\n".join(lines)
