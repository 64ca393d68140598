"""The optimize report: an executive summary a manager can read first, then the evidence.

``report.html`` (self-contained: plotly embedded, no network; ``templates/optimize.html.j2`` on the shared
``base.html.j2``) + ``summary.md``, in the project's language from the one en/ja catalog
(:mod:`kogata.report.i18n`); ``details.html`` is the full evaluation report of every candidate (same renderer
as ``kogata eval``). :func:`build_view` turns results.json into formatted strings; templates only lay out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kogata.report.format as f
from kogata.optimize.candidates import BASELINE_LABEL
from kogata.report.html import window_lines
from kogata.report.i18n import fmt, note_text, strings
from kogata.report.render import render_page


def cand_label(label: str, t: dict[str, str]) -> str:
    """A candidate's label in the report's language (the baseline's is words; the others are method names)."""
    return t["opt_baseline_label"] if label == BASELINE_LABEL else label


def _note(note: dict[str, Any], t: dict[str, str]) -> str:
    params = {k: cand_label(v, t) if k in ("candidate", "other", "label") and isinstance(v, str) else v
              for k, v in (note.get("params") or {}).items()}
    return note_text({**note, "params": params}, t)


def reason_text(c: dict[str, Any], t: dict[str, str]) -> str:
    """A candidate row's skip/fail reason in the report's language (a row from an older run: its English text)."""
    if c.get("reason_key") in t:
        return _note({"key": c["reason_key"], "params": c.get("reason_params")}, t)
    return c.get("reason") or ""


def _by_key(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["key"]: e for e in results["entries"]}


def _mib(v: Any) -> str:
    return f.DASH if f.missing(v) else f"{f.mib(v)} MiB"


def _ms(v: Any) -> str:
    return f.DASH if f.missing(v) else f"{f.num(v, 0)} ms"


def _change(b: Any, r: Any) -> float | None:
    return (r - b) / b * 100 if isinstance(b, (int, float)) and isinstance(r, (int, float)) and b else None


def before_after(base: dict[str, Any], rec: dict[str, Any], currency: str, t: dict[str, str]) -> list[dict[str, Any]]:
    bm, rm = base.get("metrics") or {}, rec.get("metrics") or {}
    bc, rc = base.get("cost") or {}, rec.get("cost") or {}
    rows = [
        (t["opt_cost"], f.money(bc.get("cost_per_month"), currency), f.money(rc.get("cost_per_month"), currency),
         _change(bc.get("cost_per_month"), rc.get("cost_per_month"))),
        (t["opt_compute_row"], f.money(bc.get("compute_cost_per_month"), currency), f.money(rc.get("compute_cost_per_month"), currency),
         _change(bc.get("compute_cost_per_month"), rc.get("compute_cost_per_month"))),
        (t["opt_latency"], _ms(bm.get("latency_p95_ms")), _ms(rm.get("latency_p95_ms")),
         _change(bm.get("latency_p95_ms"), rm.get("latency_p95_ms"))),
        (t["opt_memory"], _mib(bm.get("peak_rss_mb")), _mib(rm.get("peak_rss_mb")), _change(bm.get("peak_rss_mb"), rm.get("peak_rss_mb"))),
        (t["opt_size"], _mib(base["artifact"]["bytes"] / 2**20), _mib(rec["artifact"]["bytes"] / 2**20),
         _change(base["artifact"]["bytes"], rec["artifact"]["bytes"])),
    ]
    return [{"label": label, "before": b, "after": r, "change": f.pct(ch) if ch is not None else "",
             "cls": "good" if ch is not None and ch < 0 else "bad" if ch is not None and ch > 0 else ""} for label, b, r, ch in rows]


def machine_text(results: dict[str, Any], t: dict[str, str]) -> str:
    m = results.get("machine") or {}
    cpu = m.get("cpu") or m.get("cpu_model")
    if not cpu:
        return t["unknown"]
    cores = m.get("usable_cores") or m.get("logical_cores")
    return f"{cpu} · {t['cores']} {cores}" if cores else str(cpu)


def contention_note(results: dict[str, Any], t: dict[str, str]) -> str | None:
    c = (results.get("machine") or {}).get("contention") or {}
    if not c.get("contended"):
        return None
    return fmt(t["contention_note"], busy=f"{c.get('busy_cores', 0):.1f}", cores=c.get("usable_cores", "?"),
               threads=c.get("threads_used", "?"), requested=c.get("threads_requested", "?"))


def baseline_note(results: dict[str, Any], t: dict[str, str]) -> str:
    base = _by_key(results).get(results["baseline"]) if results["baseline"] else None
    if base is None:
        return ""
    note = fmt(t["opt_baseline_note"], base=base["artifact"]["name"])
    if any(s.get("method") == "gguf-to-hf" for s in base["artifact"].get("lineage", [])):
        note += " " + t["opt_dequant_note"]
    return note


def reproduce(results: dict[str, Any], t: dict[str, str]) -> str:
    p = results["optimize"]["project"]
    lines = [f"kogata optimize {p['path']}   # {t['opt_resume_comment']}"]
    rec = results["optimize"]["decision"] and results["optimize"]["decision"].get("recommended")
    if rec:
        e = _by_key(results)[rec]
        threads = results["settings"].get("threads") or p["threads"]
        lines.append(f"kogata eval {p['base']} {e['artifact']['name']} --suite {p['suite']} --runtime torch,{p['runtime']} "
                     f"--threads {threads} --out eval-check")
        lines.append(f"kogata models show {e['artifact']['name']}")
    return "\n".join(lines)


def _signed(v: float, relative: bool) -> str:
    v = round(v * 100, 1) if relative else round(v, 3)
    v = v + 0.0 if v else 0.0  # no "-0.0"
    return f"{v:+.1f}%" if relative else f"{v:+.3f}"


def noninferiority_rows(gate: dict[str, Any] | None, t: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for g in (gate or {}).get("tasks", []):
        rel = g["relative"]
        rows.append({"task": g["task"], "metric": g["metric"], "n": g["n"], "verdict": g["verdict"], "verdict_text": t[f"gate_{g['verdict']}"],
                     "difference": f"{_signed(g['improvement'], rel)} [{_signed(g['ci_low'], rel)}, {_signed(g['ci_high'], rel)}]",
                     "margin": f"−{g['margin'] * 100:.0f}%" if rel else f"−{g['margin']:.3f}", "method": t[f"method_{g['method']}"]})
    return rows


def pareto_chart(results: dict[str, Any], t: dict[str, str]) -> str | None:
    import plotly.graph_objects as go

    dec = results["optimize"]["decision"] or {}
    objs, front = dec.get("objectives", {}), set(dec.get("pareto", []))
    entries = _by_key(results)
    currency = (results.get("price") or {}).get("currency")
    symbol = f.CURRENCY_SYMBOLS.get(currency or "", "")
    fig = go.Figure()
    for group, color in (("PASS", "#137a3f"), ("FAIL", "#b42318"), ("ERROR", "#98a2b3")):
        keys = [k for k, o in objs.items() if entries[k].get("verdict") == group and o.get("quality_kept") is not None
                and o.get("compute_cost_per_month") is not None]
        if not keys:
            continue
        fig.add_trace(go.Scatter(
            x=[objs[k]["compute_cost_per_month"] for k in keys], y=[objs[k]["quality_kept"] for k in keys], mode="markers+text",
            text=[cand_label(entries[k]["candidate"]["label"], t) for k in keys], textposition="top center", name=t[group.lower()],
            customdata=[f.money(objs[k]["compute_cost_per_month"], currency) for k in keys],
            hovertemplate="%{text}<br>%{customdata}<br>%{y:.3f}<extra></extra>",
            marker={"size": [16 if k in front else 10 for k in keys], "color": color,
                    "symbol": ["star" if k == dec.get("recommended") else "circle" for k in keys]}))
    if not fig.data:
        return None
    fig.update_layout(height=420, margin={"l": 60, "r": 20, "t": 30, "b": 50}, xaxis_title=t["opt_x_cost"], yaxis_title=t["opt_y_quality"],
                      template="plotly_white", separators=".,")
    # money axis: the currency and thousands separators ("¥17,361"), never SI suffixes ("17.3605k")
    fig.update_xaxes(tickprefix=symbol, ticksuffix="" if symbol else f" {currency or ''}", tickformat=",.0f" if symbol in ("¥", "") else ",.2f",
                     exponentformat="none", separatethousands=True)
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


def build_view(results: dict[str, Any]) -> dict[str, Any]:
    opt = results["optimize"]
    lang = opt["project"].get("language") or "en"
    t = strings(lang)
    dec = opt["decision"] or {}
    entries = _by_key(results)
    currency = results["price"]["currency"]
    base = entries.get(results["baseline"]) if results["baseline"] else None
    rec = entries.get(dec.get("recommended")) if dec.get("recommended") else None
    objs = dec.get("objectives", {})
    gates = dec.get("quality_gates") or {}
    candidates = []
    for c in opt["candidates"]:
        e = entries.get(c["entry"]) if c["entry"] else None
        o = objs.get(c["entry"], {}) if c["entry"] else {}
        m = (e or {}).get("metrics") or {}
        gate = gates.get(c["entry"] or "", {}).get("verdict")
        candidates.append({
            "label": cand_label(c["label"], t), "status": t.get(f"status_{c['status']}", c["status"]), "verdict": (e or {}).get("verdict") or "",
            "verdict_text": t.get(((e or {}).get("verdict") or "").lower(), ""), "gate": gate, "gate_text": t[f"gate_{gate}"] if gate else "",
            "size": _mib(e["artifact"]["bytes"] / 2**20) if e else "", "kept": f.num(o.get("quality_kept"), 3) if o else "",
            "latency": _ms(m.get("latency_p95_ms")) if e else "", "memory": _mib(m.get("peak_rss_mb")) if e else "",
            "cost": f.money((e.get("cost") or {}).get("compute_cost_per_month"), currency) if e else "", "reason": reason_text(c, t)})
    miss = dec.get("closest_miss")
    lineage = []
    for e in results["entries"]:
        steps = " → ".join(s["method"] + (f" ({', '.join(f'{k}={v}' for k, v in s['config'].items() if k != 'note')})" if s.get("config") else "")
                           for s in e["artifact"].get("lineage", []))
        lineage.append({"label": cand_label(e["candidate"]["label"], t), "name": e["artifact"]["name"], "steps": steps})
    settings = results.get("settings") or {}
    return {
        "lang": lang, "t": t, "results": results,
        "meta": fmt(t["opt_meta"], project=opt["project"]["name"], suite=results["suite"]["name"], runtime=opt["project"]["runtime"],
                    threads=settings.get("threads"), created=results["created"][:16].replace("T", " ")),
        "items": fmt(t["opt_items"], screen=settings.get("screen_items") or t["all_items"], full=settings.get("limit") or t["all_items"]),
        "contention_note": contention_note(results, t),
        "rec": rec and {"label": cand_label(rec["candidate"]["label"], t), "name": rec["artifact"]["name"], "id": rec["artifact"]["id"]},
        "before_after": before_after(base, rec, currency, t) if rec and base else [],
        "deltas": [{**d, "baseline_s": f.num(d["baseline"], 3), "value_s": f.num(d["value"], 3),
                    "change": f"{d['delta']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]",
                    "cls": "good" if d["better"] else "bad" if d["delta"] else ""} for d in dec.get("quality_deltas", [])] if rec else [],
        "noninferiority": noninferiority_rows(gates.get(rec["key"]) if rec else None, t),
        "noninf_note": fmt(t["opt_noninf_note"], method=t["method_paired"]),
        "risks": [{"task": r["task"], "text": fmt(t["opt_lost"], kept=format(r["kept"], ".0%"))} for r in dec.get("risks") or []],
        "kpi_margins": [{"gate": f"{g['metric']} {g['op']} {f.num(g['threshold'])}", "value": f.num(g["value"]),
                         "margin": f"{f.num(g['margin'])} ({f.pct(g.get('margin_pct'))})"} for g in dec.get("margins", [])] if rec else [],
        "miss": miss and {"label": cand_label(miss.get("label") or miss["entry"], t), "metric": miss["metric"], "value": f.num(miss["value"]),
                          "target": f"{miss['op']} {f.num(miss['threshold'])}", "short": fmt(t["opt_short"], pct=f"{miss['short_pct']:.1f}")},
        "next_steps": [_note(s, t) if isinstance(s, dict) else str(s) for s in dec.get("next_steps", [])] if not rec else [],
        "notes": [_note(n, t) for n in dec.get("notes", [])],
        "baseline_note": baseline_note(results, t),
        "windows": window_lines(results, t, lambda e: cand_label(e["candidate"]["label"], t)),
        "machine_text": machine_text(results, t),
        "duration": fmt(t["minutes"], n=f"{(results.get('duration_s') or 0) / 60:.1f}"),
        "chart": pareto_chart(results, t) if objs else None,
        "candidates": candidates, "lineage": lineage, "reproduce": reproduce(results, t),
        "footer": fmt(t["generated_by"], version=results.get("kogata_version", "?"), schema=results.get("schema_version", "?")),
    }


def render_html(results: dict[str, Any]) -> str:
    view = build_view(results)
    return render_page("optimize.html.j2", view, with_plotly=bool(view["chart"]))


def render_markdown(results: dict[str, Any]) -> str:
    v = build_view(results)
    t = v["t"]
    out = [f"# {t['opt_title']}", "", v["meta"], "", f"## {t['opt_summary']}", ""]
    if v["contention_note"]:
        out += [f"> ⚠ {v['contention_note']}", ""]
    if v["rec"]:
        r = v["rec"]
        out += [f"**{t['opt_recommend']}: {r['label']}** — `{r['name']}` ({r['id']})", "",
                f"| | {t['opt_before']} | {t['opt_after']} | |", "|---|---|---|---|"]
        out += [f"| {x['label']} | {x['before']} | {x['after']} | {x['change']} |" for x in v["before_after"]]
        out += ["", f"### {t['opt_noninf']}", "", f"| {t['task']} | {t['metric']} | {t['opt_n']} | {t['opt_difference']} | {t['opt_margin_col']} | |",
                "|---|---|---|---|---|---|"]
        out += [f"| {x['task']} | {x['metric']} | {x['n']} | {x['difference']} | {x['margin']} | {x['verdict_text']} |" for x in v["noninferiority"]]
        out += ["", f"### {t['opt_quality']}", "", f"| {t['task']} | {t['metric']} | {t['opt_before']} | {t['opt_after']} | {t['opt_change']} |",
                "|---|---|---|---|---|"]
        out += [f"| {d['task']} | {d['metric']} | {d['baseline_s']} | {d['value_s']} | {d['change']} |" for d in v["deltas"]]
        out += ["", f"### {t['opt_risks']}", ""] + ([f"- {x['task']}: {x['text']}" for x in v["risks"]] or [f"- {t['opt_no_risks']}"])
    else:
        out += [f"**{t['opt_none']}**", ""]
        if v["miss"]:
            m = v["miss"]
            out.append(f"{t['opt_closest']}: {m['label']} — {m['metric']} = {m['value']} ({m['target']}, {m['short']})")
        out += ["", f"{t['opt_next']}:"] + [f"- {s}" for s in v["next_steps"]]
    if v["notes"]:
        out += ["", f"### {t['opt_notes']}", ""] + [f"- {n}" for n in v["notes"]]
    head = [t["opt_candidate"], t["opt_status"], t["opt_verdict"], t["opt_kept"], t["opt_size"], t["opt_reason"]]
    out += ["", f"## {t['opt_candidates']}", "", "| " + " | ".join(head) + " |", "|---|---|---|---|---|---|"]
    out += [f"| {c['label']} | {c['status']} | {c['verdict_text']} | {' '.join(x for x in (c['kept'], c['gate_text']) if x)} | {c['size']} | "
            f"{c['reason']} |" for c in v["candidates"]]
    out += ["", v["baseline_note"], f"{t['opt_machine']}: {v['machine_text']} · {t['opt_budget']}: {v['duration']} · {v['items']}",
            *[f"- {w}" for w in v["windows"]],
            "", f"## {t['opt_reproduce']}", "", "```", v["reproduce"], "```", ""]
    return "\n".join(out)


def write(results: dict[str, Any], folder: Path) -> dict[str, Path]:
    from kogata.report import render_html as render_details

    folder = Path(folder)
    paths = {"html": folder / "report.html", "markdown": folder / "summary.md", "details": folder / "details.html"}
    paths["html"].write_text(render_html(results), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(results), encoding="utf-8")
    language = results["optimize"]["project"].get("language")  # the project's language, not the suite's
    paths["details"].write_text(render_details(results, language=language), encoding="utf-8")
    return paths
