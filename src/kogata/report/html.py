"""The HTML report: one self-contained file (CSS inline, plotly.js embedded once, no network needed).

:func:`build_view` turns ``results.json`` into rows of formatted strings; the jinja2 template only lays
them out. Strings come from :mod:`kogata.report.i18n` in the suite's language.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kogata.report.format as f
from kogata.report.i18n import fmt, strings
from kogata.report.render import render_page

MAX_SAMPLES = 10
MAX_CELL = 400


# ---- helpers --------------------------------------------------------------------------------------
def entry_label(e: dict[str, Any]) -> str:
    return f"{e['artifact']['name']} · {e['runtime']['name']}"


def primary_metric(results: dict[str, Any]) -> str | None:
    """The quality metric the charts plot: the first quality KPI, else the first metric of the first task."""
    tasks = {t["name"] for t in results["suite"].get("tasks", [])}
    kpis = results["suite"].get("kpis") or {}
    for kind in ("min", "max"):
        for name in kpis.get(kind) or {}:
            if "." in name and name.split(".", 1)[0] in tasks:
                return name
    for e in results["entries"]:
        for task, res in (e.get("quality") or {}).items():
            for metric in res.get("metrics") or {}:
                return f"{task}.{metric}"
    return None


def busy_entries(results: dict[str, Any], factor: float = 1.25) -> list[tuple[str, float, int]]:
    """Entries whose speed was measured while the machine was oversubscribed: (label, load average, cores)."""
    out = []
    for e in results["entries"]:
        eff = e.get("efficiency") or {}
        loads = [v for v in (eff.get("load_avg") or {}).values() if v is not None]
        cores = (eff.get("machine") or results.get("machine") or {}).get("usable_cores") or 1
        if loads and max(loads) > cores * factor:
            out.append((entry_label(e), max(loads), cores))
    return out


def perplexity_windows(results: dict[str, Any], label: Any = entry_label) -> list[dict[str, Any]]:
    """Per perplexity task, the scoring window of its entries (``window``, ``docs_over_window`` in results.json):
    ``[{task, window, over, n, labels}]``, entries with the same figures in one row (labels: ``label(entry)``)."""
    rows: list[dict[str, Any]] = []
    for t in results["suite"].get("tasks", []):
        for e in results["entries"]:
            res = (e.get("quality") or {}).get(t["name"]) or {}
            if res.get("window") is None:
                continue
            same = next((r for r in rows if r["task"] == t["name"] and (r["window"], r["over"], r["n"])
                         == (res["window"], res.get("docs_over_window"), res.get("n"))), None)
            if same is None:
                same = {"task": t["name"], "window": res["window"], "over": res.get("docs_over_window"), "n": res.get("n"), "labels": []}
                rows.append(same)
            same["labels"].append(label(e))
    return rows


def window_lines(results: dict[str, Any], t: dict[str, str], label: Any = entry_label) -> list[str]:
    """One sentence per perplexity task and window (naming the entries when a task was scored with several)."""
    rows = perplexity_windows(results, label)
    lines = []
    for r in rows:
        line = fmt(t["ppl_window_line"], task=r["task"], window=f"{r['window']:,}", over=r["over"], n=r["n"])
        if sum(x["task"] == r["task"] for x in rows) > 1:
            line += f" ({', '.join(r['labels'])})"
        lines.append(line)
    return lines


def _window_row(task: str, entries: list[dict[str, Any]], t: dict[str, str]) -> dict[str, Any] | None:
    """The quality table's row under a perplexity task: each entry's window and how many documents exceed it."""
    results = [(e.get("quality") or {}).get(task) or {} for e in entries]
    if all(r.get("window") is None for r in results):
        return None
    cells = [{"value": f"{r['window']:,}" if r.get("window") is not None else f.DASH, "n": None, "best": False,
              "ci": fmt(t["ppl_over"], over=r.get("docs_over_window"), n=r.get("n")) if r.get("window") is not None else ""}
             for r in results]
    return {"header": False, "metric": t["ppl_window_row"], "lower_better": False, "cells": cells}


def _quality_rows(results: dict[str, Any], entries: list[dict[str, Any]], t: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for task in results["suite"].get("tasks", []):
        metrics: list[str] = []
        for e in entries:
            for m in ((e.get("quality") or {}).get(task["name"], {}).get("metrics") or {}):
                if m not in metrics:
                    metrics.append(m)
        ns = [(e.get("quality") or {}).get(task["name"], {}).get("n") for e in entries]
        rows.append({"header": True, "task": task["name"], "type": task.get("type"), "version": task.get("version"),
                     "n": next((n for n in ns if n is not None), None)})
        for m in metrics:
            vals = []
            for e in entries:
                v = (e.get("quality") or {}).get(task["name"], {}).get("metrics", {}).get(m)
                vals.append(v if isinstance(v, dict) else {"value": v})
            numbers = [v.get("value") for v in vals if not f.missing(v.get("value"))]
            best = (min if f.lower_is_better(m) else max)(numbers) if len(numbers) > 1 else None
            cells = []
            for v in vals:
                ci = f"[{f.score(v.get('ci_low'))}–{f.score(v.get('ci_high'))}]" if not f.missing(v.get("ci_low")) else ""
                cells.append({"value": f.score(v.get("value")), "ci": ci, "n": v.get("n"),
                              "best": best is not None and v.get("value") == best})
            rows.append({"header": False, "metric": m, "lower_better": f.lower_is_better(m), "cells": cells})
        window = _window_row(task["name"], entries, t)
        if window:
            rows.append(window)
    return rows


def _efficiency_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for e in entries:
        eff = e.get("efficiency") or {}
        lat = eff.get("latency") or {}
        a = e["artifact"]
        rows.append({
            "label": entry_label(e),
            "load": f.num(eff.get("load_s")),
            "prefill": f.spread(eff.get("prefill_tok_s")),
            "decode": f.spread(eff.get("decode_tok_s")),
            "ttft": f"{f.num(lat.get('ttft_p50_ms'), 0)} / {f.num(lat.get('ttft_p95_ms'), 0)}" if eff else f.DASH,
            "latency": f"{f.num(lat.get('latency_p50_ms'), 0)} / {f.num(lat.get('latency_p95_ms'), 0)}" if eff else f.DASH,
            "rss": f.mib(eff.get("peak_rss_mb")),
            "disk": f.mib(a["bytes"] / 2**20 if a.get("bytes") else None),
            "params": f.params(a.get("params")),
        })
    return rows


def _cost_rows(entries: list[dict[str, Any]], baseline: str | None, t: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for e in entries:
        c = e.get("cost") or {}
        cur = c.get("currency")
        s = c.get("saving") or {}
        is_base = e["key"] == baseline
        saving, compute = f.DASH, ""
        if s and not is_base:
            saving = f"{f.money(s.get('per_month'), cur)} ({f.pct(s.get('per_month_pct'))})"
            compute = f"{t['compute_only']}: {f.money(s.get('compute_per_month'), cur)} ({f.pct(s.get('compute_per_month_pct'))})"
        rows.append({
            "label": entry_label(e), "baseline": is_base,
            "per_request": f.num(c.get("seconds_per_request")),
            "req_per_hour": f.num(c.get("requests_per_machine_hour")),
            "per_1m": f.money(c.get("cost_per_1m_tokens"), cur),
            "per_1k": f.money(c.get("cost_per_1k_requests"), cur),
            "machines": f"{c['machines']} ({f.num(c.get('machines_needed'), 2)})" if c else f.DASH,
            "per_month": f.money(c.get("cost_per_month"), cur),
            "compute_month": f.money(c.get("compute_cost_per_month"), cur),
            "saving": saving,
            "saving_compute": compute,
            "saving_good": bool(s) and not is_base and (s.get("per_month") or 0) > 0,
            "saving_bad": bool(s) and not is_base and (s.get("per_month") or 0) < 0,
        })
    return rows


def _verdicts(entries: list[dict[str, Any]], t: dict[str, str], primary: str | None) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        kpi = e.get("kpi") or {"gates": [], "failed": []}
        verdict = e.get("verdict") or kpi.get("verdict", "PASS")
        eff = (e.get("efficiency") or {}).get("metrics") or {}
        cost = e.get("cost") or {}
        out.append({
            "label": entry_label(e), "artifact": e["artifact"]["name"], "runtime": e["runtime"]["name"],
            "verdict": verdict, "verdict_text": t[verdict.lower()] if verdict.lower() in t else verdict,
            "error": e.get("error"),
            "failed": [{"metric": g["metric"], "op": g["op"], "threshold": f.num(g["threshold"]),
                        "value": None if g["value"] is None else (f.score(g["value"]) if "." in g["metric"] else f.num(g["value"]))}
                       for g in kpi.get("gates", []) if not g["pass"]],
            "n_gates": len(kpi.get("gates", [])),
            "facts": [
                (primary, f.score((e.get("metrics") or {}).get(primary))) if primary else None,
                (t["decode"], f.num(eff.get("decode_tok_s"))),
                ("p95 (ms)", f.num(eff.get("latency_p95_ms"), 0)),
                (t["rss"], f.mib(eff.get("peak_rss_mb"))),
                (t["per_month"], f.money(cost.get("cost_per_month"), cost.get("currency"))),
            ],
        })
    for v in out:
        v["facts"] = [x for x in v["facts"] if x]
    return out


def _gate_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order: list[tuple[str, str, float]] = []
    for e in entries:
        for g in (e.get("kpi") or {}).get("gates", []):
            if (g["metric"], g["op"], g["threshold"]) not in order:
                order.append((g["metric"], g["op"], g["threshold"]))
    rows = []
    for metric, op, threshold in order:
        cells = []
        for e in entries:
            g = next((g for g in (e.get("kpi") or {}).get("gates", []) if g["metric"] == metric), None)
            if g is None:
                cells.append(None)
                continue
            cells.append({"value": f.num(g["value"]) if "." not in metric else f.score(g["value"]), "pass": g["pass"],
                          "margin": (("+" if g["margin"] >= 0 else "") + f.num(g["margin"])) if g["margin"] is not None else f.DASH,
                          "margin_pct": f.pct(g.get("margin_pct"))})
        rows.append({"metric": metric, "target": f"{op} {f.num(threshold)}", "cells": cells})
    return rows


def busy_note(results: dict[str, Any], t: dict[str, str]) -> str | None:
    busy = busy_entries(results)
    if not busy:
        return None
    worst = max(busy, key=lambda b: b[1])
    return fmt(t["busy_note"], entries=", ".join(b[0] for b in busy), load=f"{worst[1]:.1f}", cores=worst[2])


def _short(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= MAX_CELL else s[:MAX_CELL] + "…"


def _samples(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        for task, res in (e.get("quality") or {}).items():
            samples = (res.get("samples") or [])[:MAX_SAMPLES]
            if not samples:
                continue
            cols: list[str] = []
            for s in samples:
                for k in (s if isinstance(s, dict) else {"sample": s}):
                    if k not in cols:
                        cols.append(k)
            rows = [[_short((s if isinstance(s, dict) else {"sample": s}).get(c, "")) for c in cols] for s in samples]
            out.append({"label": entry_label(e), "task": task, "cols": cols, "rows": rows, "n": len(res.get("samples") or [])})
    return out


def _chart(entries: list[dict[str, Any]], primary: str | None, x_metric: str, title: str, x_title: str, t: dict[str, str]) -> str | None:
    if not primary:
        return None
    import plotly.graph_objects as go

    fig = go.Figure()
    xs, ys = [], []
    positions = ("top right", "bottom right", "top left", "bottom left")  # neighbours' labels do not overprint
    for e in entries:
        m = e.get("metrics") or {}
        x, y = m.get(x_metric), m.get(primary)
        if f.missing(x) or f.missing(y):
            continue
        fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers+text", name=entry_label(e), text=[entry_label(e)],
                                 textposition=positions[len(xs) % len(positions)], marker={"size": 14},
                                 cliponaxis=False,
                                 hovertemplate=f"{entry_label(e)}<br>{x_title}: %{{x:,.0f}}<br>{primary}: %{{y:.3f}}<extra></extra>"))
        xs.append(x)
        ys.append(y)
    if not fig.data:
        return None
    better = t["better_lower"] if f.lower_is_better(primary) else t["better_higher"]
    fig.update_layout(title=title, xaxis_title=f"{x_title} ({t['better_left']})", yaxis_title=f"{primary} ({better})",
                      template="plotly_white", height=420, autosize=True, margin={"l": 60, "r": 30, "t": 50, "b": 50}, showlegend=False)
    fig.update_xaxes(range=[0, max(xs) * 1.35 or 1])  # from zero: distances between points are honest
    if all(0 <= y <= 1 for y in ys) and not f.lower_is_better(primary):
        fig.update_yaxes(range=[-0.05, 1.12])
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


# ---- the view and the page ------------------------------------------------------------------------
def build_view(results: dict[str, Any], language: str | None = None) -> dict[str, Any]:
    """The page's strings; ``language`` overrides the suite's (the optimize report's details follow the project)."""
    suite = results["suite"]
    lang = language or suite.get("language") or "en"
    t = strings(lang)
    entries = results["entries"]
    baseline = results.get("baseline")
    primary = primary_metric(results)
    price = results.get("price") or {}
    eff_settings = {**{"repeats": "?", "prompt_tokens": "?", "gen_tokens": "?", "latency_prompts": "?"}, **(suite.get("efficiency") or {})}
    machine = results.get("machine") or {}
    limit = (results.get("settings") or {}).get("limit")
    base_entry = next((e for e in entries if e["key"] == baseline), None)
    return {
        "t": t,
        "lang": lang,
        "suite": suite,
        "results": results,
        "limit": limit,
        "limit_note": fmt(t["limit_note"], limit=limit) if limit else None,
        "busy_note": busy_note(results, t),
        "machine_line": f"{machine.get('cpu', '?')} · {fmt(t['n_cores'], n=machine.get('usable_cores', machine.get('logical_cores', '?')))} · {machine.get('ram_gb', '?')} GB",
        "duration": fmt(t["minutes"], n=f.num((results.get("duration_s") or 0) / 60, 1)),
        "labels": [entry_label(e) for e in entries],
        "baseline_index": entries.index(base_entry) if base_entry else None,
        "baseline_note": fmt(t["baseline_note"], baseline=entry_label(base_entry)) if base_entry else None,
        "verdicts": _verdicts(entries, t, primary),
        "gates": _gate_rows(entries),
        "quality": _quality_rows(results, entries, t),
        "window_note": t["ppl_window_note"] if perplexity_windows(results) else None,
        "efficiency": _efficiency_rows(entries),
        "efficiency_note": fmt(t["efficiency_note"], **eff_settings),
        "cost": _cost_rows(entries, baseline, t),
        "cost_note": fmt(t["cost_note"], profile=price.get("name", "?"),
                         description=price.get(f"description_{lang}") or price.get("description", ""),
                         requests=int(price.get("requests_per_month") or 0), prompt=int(price.get("prompt_tokens_per_request") or 0),
                         output=int(price.get("output_tokens_per_request") or 0), utilisation=float(price.get("utilisation") or 0)),
        "charts": [c for c in (_chart(entries, primary, "latency_p95_ms", t["chart_latency"], t["latency_axis"], t),
                               _chart(entries, primary, "peak_rss_mb", t["chart_memory"], t["memory_axis"], t)) if c],
        "samples": _samples(entries),
        "samples_note": fmt(t["samples_note"], n=MAX_SAMPLES),
        "machine": machine,
        "versions": results.get("versions") or {},
        "artifacts": [{"label": entry_label(e), "id": e["artifact"]["id"], "format": e["artifact"]["format"],
                       "steps": " → ".join(s.get("method", "?") for s in e["artifact"].get("lineage") or []) or f.DASH,
                       "runtime_info": ", ".join(f"{k}={v}" for k, v in ((e.get("runtime") or {}).get("info") or {}).items()
                                                 if not isinstance(v, (dict, list)) and k not in ("runtime", "artifact"))}
                      for e in entries],
        "footer": fmt(t["generated_by"], version=results.get("kogata_version", "?"), schema=results.get("schema_version", "?")),
    }


def render_html(results: dict[str, Any], language: str | None = None) -> str:
    view = build_view(results, language)
    return render_page("eval.html.j2", view, with_plotly=bool(view["charts"]))


def write_html(results: dict[str, Any], path: Path) -> Path:
    path.write_text(render_html(results), encoding="utf-8")
    return path
