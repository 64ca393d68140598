"""The ``kogata improve`` report: one self-contained HTML page in en or ja from the result document
(``improve.json``, :func:`kogata.ops.improve.improve`): the verdict in plain words, what was trained on what,
production vs candidate per task with intervals, the candidate's KPI gates, and the time it took."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from kogata import __version__
from kogata.core.io import atomic_text_file
from kogata.report import format as f
from kogata.report.i18n import fmt, strings
from kogata.report.render import render_page


def _num(v: Any, digits: int = 3) -> str:
    return "-" if not isinstance(v, (int, float)) else f"{v:.{digits}f}"


def _size(n: Any) -> str:
    return f"{f.mib(n / 2**20)} MiB" if isinstance(n, (int, float)) and n else "-"


def _diff(d: dict[str, Any] | None) -> str:
    if not d:
        return "-"
    return f"{d['improvement']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"


def build_view(doc: dict[str, Any], language: str = "en") -> dict[str, Any]:
    t = strings(language)
    lang = language if language in ("en", "ja") else "en"
    d = doc["decision"]
    prod, cand = doc["production"], doc["candidate"]
    rows = [{"task": x["task"], "metric": x["metric"], "production": _num(x["baseline"]), "candidate": _num(x["value"]),
             "diff": _diff(x), "result": t.get(f"imp_verdict_{x['verdict']}", x["verdict"]),
             "badge": {"kept": "PASS", "worse": "FAIL"}.get(x["verdict"], "base")} for x in d.get("tasks") or []]
    held = d.get("corrections")
    if held:
        better = held["ci_low"] > 0 if d.get("require") == "significant" else held["improvement"] > 0
        rows.insert(0, {"task": t["imp_heldout_task"], "metric": "f1", "production": _num(held["baseline"]),
                        "candidate": _num(held["value"]), "diff": _diff(held),
                        "result": t["imp_verdict_better"] if better else t["imp_verdict_not_proven"],
                        "badge": "PASS" if better else "FAIL"})
    gates = [{"metric": g["metric"], "value": f.num(g["value"], 3), "op": g["op"], "threshold": f.num(g["threshold"], 3),
              "badge": "PASS" if g["pass"] else "FAIL"} for g in ((d.get("kpi") or {}).get("gates") or [])]
    names = {"candidate": cand["name"], "production": prod["name"], "alias": d.get("alias") or doc["config"].get("alias", "candidate")}
    tm = doc.get("timings") or {}
    created = dt.datetime.fromtimestamp(doc["created"], tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lora = doc.get("lora") or {}
    return {
        "lang": lang, "t": t, "passed": d["passed"], "reasons": d["reasons"],
        "verdict": fmt(t["imp_passed" if d["passed"] else "imp_failed"], **names),
        "next": fmt(t["imp_next_pass" if d["passed"] else "imp_next_fail"], **names),
        "models": [{"role": t["imp_production"], **prod, "size": _size(prod["bytes"])},
                   {"role": t["imp_candidate"], **cand, "size": _size(cand["bytes"])},
                   {"role": t["imp_float_parent"], **doc["float_parent"], "size": _size(doc["float_parent"]["bytes"])}],
        "steps": " → ".join(doc.get("steps") or []),
        "corr": doc["corrections"], "data": doc.get("data") or {},
        "removed": ", ".join(f"{k} {v}" for k, v in ((doc.get("data") or {}).get("removed") or {}).items()) or "-",
        "other": sum((doc["corrections"].get("other_models") or {}).values()),
        "lora": {"steps": lora.get("steps_done"), "loss": f"{_num(lora.get('train_loss_first'))} → {_num(lora.get('train_loss_last'))}",
                 "eval_loss": f"{_num(lora.get('eval_loss_start'))} → {_num(lora.get('eval_loss_end'))}"},
        "rows": rows, "gates": gates,
        "times": [(t["imp_time_data"], f.seconds(tm.get("data_s"))), (t["imp_time_build"], f.seconds(tm.get("build_s"))),
                  (t["imp_time_eval"], f.seconds(tm.get("eval_s"))), (t["imp_time_total"], f.seconds(tm.get("total_s")))],
        "footer": fmt(t["imp_footer"], product="kogata", version=__version__, created=created),
    }


def write_improve_report(doc: dict[str, Any], out: Path, language: str = "en") -> Path:
    """Write ``out`` (an .html file), renamed into place when complete."""
    html = render_page("improve.html.j2", build_view(doc, language), with_plotly=False)
    out = Path(out)
    with atomic_text_file(out) as fh:
        fh.write(html)
    return out
