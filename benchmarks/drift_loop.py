"""The improvement loop on a real model, one run (issue 14): a simulated week of support-desk traffic through
``kogata serve`` → drift detection on the audit log → simulated reviewers correct queued answers from a gold set
→ ``kogata improve`` → shadow → ``kogata models alias promote`` → rollback.

    python benchmarks/drift_loop.py [--model smollm2-135m-gguf] [--suite support-desk-en] [--threads 2] \\
        [--reference 200] [--quiet 1000] [--shift 300] [--window 50] [--out bench-out/drift-loop]

Traffic: templated customer questions with templated gold answers (Sakura Denki, see QUESTIONS). Before the shift
10% are Japanese about the known products; after it 60% Japanese, half about new products, half with a longer
story. Every request goes through the real server (the ``openai`` client, 8 threads, loopback) with the support
policy and the audit log on; the review queue samples 30% of answers. Measured:

* false alarms: drift alerts on the windows of the quiet stream (target 0 on ≥ 20 windows);
* detection delay: requests after the shift until the first window with an alert (target ≤ 200);
* reviewers correct up to ``--review-budget`` queued answers with the gold answer → ``kogata improve`` (LoRA on the
  production model's float parent, same quantization) → candidate vs production on the held-out corrections and on
  a fresh set of shifted questions (paired 95% interval), the suite's KPIs, time to retrain on this CPU;
* a shadow of the candidate on ``--shadow`` requests, then promote (gates) and rollback: failed requests.

Everything runs in a temporary KOGATA_HOME holding copies of the model's artifacts (your store is not touched).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

OLD = ["air conditioner", "refrigerator", "washing machine", "rice cooker", "microwave"]
NEW = ["SH-Aero X9 purifier", "SakuraBot vacuum", "NanoDry 7 dryer"]
# (question template, gold answer template) in English and Japanese
EN = [("How do I clean the filter of my {p}?", "Rinse the filter of the {p} with water once a month and let it dry."),
      ("Is the {p} still under warranty after {n} months?", "The {p} has a one-year warranty from the date of purchase."),
      ("Where can I download the manual for the {p}?", "You can download the {p} manual from the Sakura Denki support site."),
      ("The {p} shows error E{n}. How can I fix it?", "For error E{n}, switch the {p} off, wait ten minutes and switch it on again."),
      ("Can I return the {p} I bought {n} days ago?", "You can return the {p} within 30 days of delivery.")]
JA = [("{p}のフィルターの掃除方法を教えてください。", "{p}のフィルターは月に一度水洗いし、よく乾かしてください。"),
      ("購入から{n}か月たった{p}は保証の対象ですか？", "{p}の保証期間はお買い上げ日から一年間です。"),
      ("{p}の取扱説明書はどこでダウンロードできますか？", "{p}の取扱説明書はサクラ電機のサポートサイトからダウンロードできます。"),
      ("{p}にエラーE{n}が表示されます。直し方を教えてください。", "エラーE{n}の場合は{p}の電源を切り、十分後に入れ直してください。"),
      ("{n}日前に買った{p}は返品できますか？", "{p}はお届けから三十日以内であれば返品できます。")]
STORY = {"en": " I already tried restarting it twice and reading the FAQ, but nothing changed.",
         "ja": "再起動もFAQの確認も二回試しましたが、変わりませんでした。"}


def question(rng: random.Random, shifted: bool) -> tuple[str, str]:
    """(question, gold answer)."""
    ja = rng.random() < (0.6 if shifted else 0.1)
    products = NEW if shifted and rng.random() < 0.5 else OLD
    q, a = rng.choice(JA if ja else EN)
    p, n = rng.choice(products), rng.randint(2, 40)
    q = q.format(p=p, n=n)
    if shifted and rng.random() < 0.5:
        q += STORY["ja" if ja else "en"]
    return q, a.format(p=p, n=n)


def copy_artifacts(src_store, dst_home: Path, ref: str) -> str:
    """Copy ``ref`` and its float relatives (parent chain and converted children) into a fresh store."""
    from kogata.artifacts.store import Store

    art = src_store.get(ref)
    keep = {art.id}
    a = art
    while a.parent and src_store.find(a.parent):
        a = src_store.get(a.parent)
        keep.add(a.id)
    keep |= {c.id for c in src_store.children(art.id)}
    (dst_home / "artifacts").mkdir(parents=True, exist_ok=True)
    for art_id in keep:
        shutil.copytree(src_store.get(art_id).path, dst_home / "artifacts" / art_id)
    Store(dst_home)  # indexes the copied folders
    return art.id


def send(client, questions: list[str], threads: int = 8, model: str = "production") -> list[dict]:
    def one(q: str) -> dict:
        t0 = time.perf_counter()
        try:
            r = client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": q}], max_tokens=24, temperature=0)
            return {"ok": True, "s": time.perf_counter() - t0, "artifact": r.headers.get("x-kogata-artifact")}
        except Exception as exc:  # noqa: BLE001 - counted, the benchmark reports failures
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, questions))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-gguf")
    ap.add_argument("--suite", default="support-desk-en")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reference", type=int, default=200)
    ap.add_argument("--quiet", type=int, default=1000)
    ap.add_argument("--shift", type=int, default=300)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--review-budget", type=int, default=160)
    ap.add_argument("--review-sample", type=float, default=0.3, help="share of answers the review queue samples")
    ap.add_argument("--fresh", type=int, default=40, help="fresh shifted questions scored after improve")
    ap.add_argument("--shadow", type=int, default=60)
    ap.add_argument("--lora-steps", type=int, default=60)
    ap.add_argument("--limit", type=int, default=None, help="items per suite task in improve's eval")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "drift-loop")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--shadow-only", type=Path, help="only the shadow/promote/rollback phase, on this earlier run's KOGATA_HOME")
    args = ap.parse_args()
    if args.shadow_only:
        from kogata.artifacts.store import Store
        from kogata.ops.aliases import current_aliases

        os.environ["KOGATA_HOME"] = str(args.shadow_only)
        store = Store(args.shadow_only)
        now = current_aliases(store.engine)
        res = shadow_phase(args.shadow_only, store, args, args.out / "policy.yaml", random.Random(args.seed + 1),
                           now["production"]["artifact_id"], now["candidate"]["artifact_id"])
        print("shadow:", res, flush=True)
        doc = json.loads((args.out / "drift_loop.json").read_text(encoding="utf-8"))
        doc["shadow"] = res
        (args.out / "drift_loop.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
        return

    from kogata.artifacts.store import Store

    home = Path(tempfile.mkdtemp(prefix="drift-loop-home-"))
    os.environ["KOGATA_HOME"] = str(home)
    src = Store(Path(os.environ.get("KOGATA_SOURCE_HOME", Path.home() / ".kogata")))
    prod_id = copy_artifacts(src, home, args.model)
    store = Store(home)
    from kogata.ops.aliases import record_alias

    record_alias(store.engine, "production", prod_id, by="benchmark", reason="deployed")
    args.out.mkdir(parents=True, exist_ok=True)
    policy = args.out / "policy.yaml"
    text = (ROOT / "examples" / "policy-support-desk.yaml").read_text(encoding="utf-8")
    policy.write_text(text.split("\nreview:")[0] + f"\nreview:\n  sample_rate: {args.review_sample}\n", encoding="utf-8")
    result: dict = {"model": args.model, "threads": args.threads, "machine_cores": os.cpu_count()}

    rng = random.Random(args.seed)
    quiet = [question(rng, False) for _ in range(args.reference + args.quiet)]
    shifted = [question(rng, True) for _ in range(args.shift)]
    fresh = [question(rng, True) for _ in range(args.fresh)]
    gold = {q: a for q, a in quiet + shifted + fresh}

    # ---- a week of traffic through the real server ------------------------------------------------
    from openai import OpenAI

    server = _serve(home, args, policy)
    t0 = time.perf_counter()
    try:
        client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        answers = send(client, [q for q, _ in quiet]) + send(client, [q for q, _ in shifted])
    finally:
        server.stop()
    result["traffic"] = {"requests": len(answers), "failed": sum(not a["ok"] for a in answers),
                         "seconds": round(time.perf_counter() - t0, 1)}
    print("traffic:", result["traffic"], flush=True)

    # ---- detection on the audit log ------------------------------------------------------------------
    from kogata.ops.audit import AuditLog
    from kogata.ops.drift import rolling, served

    ex = served(AuditLog.open(home))
    ref, stream = ex[: args.reference], ex[args.reference:]
    n_quiet = args.quiet
    quiet_reports = rolling(stream[:n_quiet], ref, args.window)
    shift_reports = rolling(stream[n_quiet - 4 * args.window:], ref, args.window)
    first = next((r for r in shift_reports if r.alerts), None)
    delay = first.window["last"] + 1 - 4 * args.window if first else None
    result["drift"] = {"quiet_windows": len(quiet_reports), "false_alarms": sum(bool(r.alerts) for r in quiet_reports),
                       "false_alarm_signals": sorted({a.name for r in quiet_reports for a in r.alerts}),
                       "detection_delay_requests": delay, "alerts": sorted(a.name for a in first.alerts) if first else [],
                       "verdict_en": first.verdict("en") if first else None, "verdict_ja": first.verdict("ja") if first else None}
    print("drift:", result["drift"], flush=True)
    from kogata.report.monitor import write_monitor_report

    windows = rolling(stream, ref, 100 if len(stream) >= 400 else args.window)
    for lang in ("en", "ja") if windows else ():
        write_monitor_report(windows, args.out / f"monitor.{lang}.html", lang)

    # ---- simulated reviewers -------------------------------------------------------------------------
    from kogata.ops.review import ReviewQueue
    from kogata.ops.review.export import conversation, export_reviewed

    queue = ReviewQueue(store.engine)
    items = queue.list(state="open", limit=10_000)
    items.sort(key=lambda it: -it.id)  # the newest first: the shifted traffic
    corrected = 0
    for it in items:
        if corrected >= args.review_budget:
            break
        q = conversation(it.prompt)[1]
        if q in gold:
            queue.correct(it.id, "simulated-reviewer", gold[q])
            corrected += 1
    export = args.out / "corrections"
    shutil.rmtree(export, ignore_errors=True)
    export_reviewed(queue, export, corrections_only=True)
    result["review"] = {"queued": len(items), "corrected": corrected}
    print("review:", result["review"], flush=True)

    # ---- improve -------------------------------------------------------------------------------------
    import kogata.core.settings as settings
    from kogata.ops.improve import ImproveConfig, improve

    settings.set_threads(args.threads)
    t0 = time.perf_counter()
    cfg = ImproveConfig(corrections=export, suite=args.suite, out=args.out / "improve", threads=args.threads,
                        lora={"steps": args.lora_steps}, limit=args.limit)
    doc = improve(cfg, store, log=lambda m: print("  improve:", m, flush=True))
    d = doc["decision"]
    result["improve"] = {"passed": d["passed"], "reasons": d["reasons"], "heldout_f1": d["corrections"],
                         "tasks": [{k: t[k] for k in ("task", "metric", "baseline", "value", "improvement", "ci_low", "ci_high", "verdict")}
                                   for t in d["tasks"]],
                         "kpi": (d.get("kpi") or {}).get("verdict"), "timings_s": {k: round(v, 1) for k, v in doc["timings"].items()},
                         "lora": doc["lora"], "wall_s": round(time.perf_counter() - t0, 1)}
    print("improve:", json.dumps(result["improve"], ensure_ascii=False)[:2000], flush=True)
    cand_id = doc["candidate"]["id"]
    result["fresh_shifted"] = _fresh(store, prod_id, cand_id, fresh, args)
    print("fresh shifted:", result["fresh_shifted"], flush=True)

    # ---- shadow, promote, rollback -------------------------------------------------------------------
    if d["passed"]:
        result["shadow"] = shadow_phase(home, store, args, policy, rng, prod_id, cand_id)
        print("shadow:", result["shadow"], flush=True)
    (args.out / "drift_loop.json").write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    print(f"wrote {args.out / 'drift_loop.json'} (home {home})")


def shadow_phase(home: Path, store, args, policy: Path, rng: random.Random, prod_id: str, cand_id: str) -> dict:
    """Serve production with a shadow of the candidate; one request at a time (a shadow runs only while the
    candidate is idle), each waiting for its shadow row; then promote and roll back on the running server while
    4 clients keep asking, counting failed requests and which artifact answered."""
    import threading

    from openai import OpenAI
    from sqlalchemy import func, select

    from kogata.ops.aliases import current_aliases, promote_alias, rollback_alias
    from kogata.ops.traffic import PromotionGates, T, promotion_gates, split_summary

    def shadow_rows() -> int:
        with store.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(T).where(T.c.kind == "shadow")).scalar_one()

    server = _serve(home, args, policy, shadow=True)
    live: dict = {"failed": 0, "requests": 0, "answered_by": {}}
    try:
        client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        sent = []
        for _ in range(args.shadow):
            before = shadow_rows()
            sent += send(client, [question(rng, True)[0]], threads=1)
            deadline = time.monotonic() + 30
            while shadow_rows() == before and time.monotonic() < deadline:
                time.sleep(0.1)
        gates = promotion_gates(split_summary(store.engine, cand_id), PromotionGates(min_requests=min(50, args.shadow)))
        promoted = all(g["pass"] for g in gates)
        stop = threading.Event()

        def clients() -> None:
            while not stop.is_set():
                for r in send(client, [question(rng, True)[0] for _ in range(4)], threads=4):
                    live["requests"] += 1
                    live["failed"] += not r["ok"]
                    if r["ok"]:
                        live["answered_by"][r["artifact"]] = live["answered_by"].get(r["artifact"], 0) + 1

        worker = threading.Thread(target=clients, daemon=True)
        worker.start()
        flips = {}
        if promoted:
            for what, target, act in (("promote", cand_id, lambda: promote_alias(store.engine, "candidate", "production", by="benchmark")),
                                      ("rollback", prod_id, lambda: rollback_alias(store.engine, "production", by="benchmark"))):
                t0 = time.perf_counter()
                act()
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    models = client.models.list().data
                    if any(m.id == "production" and getattr(m, "artifact_id", None) == target for m in models):
                        break
                    time.sleep(0.2)
                flips[what] = {"served_after_s": round(time.perf_counter() - t0, 1),
                               "now": current_aliases(store.engine)["production"]["artifact_id"] == target}
                time.sleep(5)
        stop.set()
        worker.join(timeout=120)
    finally:
        server.stop()
    return {"shadow_requests": len(sent), "failed": sum(not r["ok"] for r in sent), "gates": gates, "promoted": promoted,
            "flips": flips, "live_requests": live["requests"], "live_failed": live["failed"],
            "answered_by": {("candidate" if k == cand_id else "production" if k == prod_id else k): v for k, v in live["answered_by"].items()}}


def _serve(home: Path, args, policy: Path, shadow: bool = False):
    from serve import Server, free_port

    cfg = args.out / ("serve-shadow.yaml" if shadow else "serve.yaml")
    models = '  - artifact: "@production"\n' + ('  - artifact: "@candidate"\nshadow: {production: candidate}\n' if shadow else "")
    cfg.write_text(f"models:\n{models}policy: {policy}\nparallel: 8\nctx: 1024\nthreads: {args.threads}\n", encoding="utf-8")
    port = free_port()
    env = {**os.environ, "KOGATA_HOME": str(home), "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT / "src")}
    return Server([sys.executable, "-m", "kogata", "serve", "--config", str(cfg), "--port", str(port)], port, env, "/health")


def _fresh(store, prod_id: str, cand_id: str, fresh: list[tuple[str, str]], args) -> dict:
    """Production vs candidate on shifted questions nobody reviewed (paired bootstrap on token F1)."""
    from kogata.eval.noninferiority import paired_difference
    from kogata.eval.tasks import build_task
    from kogata.runtimes import open_runtime

    path = args.out / "fresh-shifted.jsonl"
    path.write_text("".join(json.dumps({"id": f"fresh-{i}", "prompt": q, "response": a}, ensure_ascii=False) + "\n"
                            for i, (q, a) in enumerate(fresh)), encoding="utf-8")
    task = build_task({"name": "fresh_shifted", "type": "generate", "data": path.name, "prompt": "{prompt}", "target": "{response}",
                       "fields": {"prompt": "prompt", "response": "response"}, "chat": True, "max_tokens": 48, "stop": [],
                       "metrics": ["f1"]}, base_dir=path.parent, seed=1234, language="en", source="drift_loop")
    res = {}
    for name, art_id in (("production", prod_id), ("candidate", cand_id)):
        rt = open_runtime("llamacpp", store.get(art_id))
        try:
            res[name] = task.run(rt)
        finally:
            rt.close()
    return paired_difference(res["candidate"], res["production"], "f1", relative=False)


if __name__ == "__main__":
    main()
