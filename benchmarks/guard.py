"""Guard benchmark: precision/recall per check and per PII type on the labelled cases, false positives on clean text,
latency of all the policy's checks on a 2,000-character answer, and `kogata audit verify` speed on a 200k-row log.

    OMP_NUM_THREADS=1 python benchmarks/guard.py [--policy examples/policy-support-desk.yaml] [--runs 300] [--json out.json]

Targets (issue 13): PII recall ≥ 0.95 and precision ≥ 0.98, false positives on clean text ≤ 2%, p95 ≤ 5 ms,
audit verify ≥ 100k rows/s. Serving throughput with guards + audit on ÷ off: `benchmarks/serve.py --guard`.
Pure Python on one thread; the numbers depend on the machine: record it with them.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from kogata.data.fold import fold
from kogata.guard import GuardContext, Policy

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "benchmarks" / "data" / "guard_cases.jsonl"
POLICY = ROOT / "examples" / "policy-support-desk.yaml"


def evaluate(policy: Policy, cases: list[dict]) -> dict:
    checks = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0})
    types = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0})
    clean, clean_fp, misses = 0, 0, []
    for case in cases:
        ctx = GuardContext(question=case.get("question"), passages=case.get("passages") or [])
        v = policy.check_input(case["text"], ctx) if case["where"] == "input" else policy.check_output(case["text"], ctx)
        fired: dict[str, set[str]] = defaultdict(set)
        for r in v.results:
            if r.fired:
                fired[r.check].update(h.type for h in r.hits)
        expect = case["expect"]
        for name in {c.name for c in policy.checks} | set(expect):
            exp, got = name in expect, name in fired
            key = "tp" if exp and got else "fp" if got else "fn" if exp else None
            if key:
                checks[name][key] += 1
            if exp != got:
                misses.append({"id": case["id"], "check": name, "expected": exp, "found": sorted(fired.get(name, ()))})
        exp_types, got_types = set(expect.get("pii", ())), fired.get("pii", set())
        for t in exp_types | got_types:
            types[t]["tp" if t in exp_types and t in got_types else "fp" if t in got_types else "fn"] += 1
        if not expect:
            clean += 1
            clean_fp += bool(fired)
    return {"checks": _rates(checks), "pii_types": _rates(types), "clean_cases": clean, "clean_false_positives": clean_fp,
            "clean_fp_rate": clean_fp / clean if clean else 0.0, "misses": misses}


def _rates(table) -> dict:
    out = {}
    for name, c in sorted(table.items()):
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        out[name] = {**c, "precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / (tp + fn) if tp + fn else 1.0}
    return out


LONG_EN = ("Thank you for contacting SakuraHome support. The SK-R450 refrigerator has a one-year warranty from the date "
           "of purchase, and the compressor is covered for five years. If you decline a repair after the quote, a diagnostic "
           "fee of ¥2,200 applies. Deliveries to Okinawa may take 2 to 4 extra days. ")
LONG_JA = ("お問い合わせありがとうございます。冷蔵庫SK-R450の保証期間はお買い上げ日から1年間で、コンプレッサーは5年間保証されます。"
           "修理のお見積もり後に取りやめる場合は、診断料2,200円をいただきます。担当の佐藤からお電話03-1234-5678でご連絡します。")


def latency(policy: Policy, runs: int) -> dict:
    text = ""
    while len(text) < 2000:
        text += LONG_JA + LONG_EN
    text = text[:2000]
    ctx = GuardContext(question="冷蔵庫の保証と診断料について教えてください。", passages=[LONG_EN, LONG_JA],
                       logprobs=[-0.4] * 600)
    times, both, cpu = [], [], []
    for i in range(runs + 10):
        fold.cache_clear()  # no help from the previous run
        c0, t0 = time.thread_time(), time.perf_counter()
        policy.check_output(text, ctx)
        t1, c1 = time.perf_counter(), time.thread_time()
        fold.cache_clear()
        t2 = time.perf_counter()
        policy.check_input(text, ctx)
        t3 = time.perf_counter()
        if i >= 10:
            times.append((t1 - t0) * 1000)
            cpu.append((c1 - c0) * 1000)
            both.append((t1 - t0 + t3 - t2) * 1000)
    q, qb = statistics.quantiles(times, n=100), statistics.quantiles(both, n=100)
    # CPU time of this thread: what the checks cost without the waits a busy machine adds to wall time
    qc = statistics.quantiles(cpu, n=100)
    return {"chars": len(text), "runs": runs, "p50_ms": statistics.median(times), "p95_ms": q[94], "max_ms": max(times),
            "min_ms": min(times), "cpu_p50_ms": statistics.median(cpu), "cpu_p95_ms": qc[94],
            "input_and_output_p50_ms": statistics.median(both), "input_and_output_p95_ms": qb[94],
            "output_checks": [c.name for c in policy.checks_on("output")]}


def audit_verify_speed(rows: int, repeat: int = 3) -> dict:
    """Verify a log of ``rows`` realistic rows (written in bulk with their real hashes) ``repeat`` times."""
    import tempfile

    from sqlalchemy import insert

    from kogata.ops.audit import AuditLog, AuditRecord
    from kogata.ops.audit.chain import GENESIS, row_hash
    from kogata.ops.tables import AuditRow

    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog.open(Path(tmp), checkpoint_seconds=3600)
        prev, batch = GENESIS, []
        for i in range(1, rows + 1):
            rec = AuditRecord(request_id=f"req-{i}", response_id=f"chatcmpl-{i}", key_name="support-bot", model_alias="production",
                              artifact_id="a1b2c3d4", endpoint="chat.completions", status="ok", action="allow",
                              latency_ms=123.4 + i, tokens_in=10 + i % 90, tokens_out=20 + i % 200,
                              input=[{"role": "user", "content": f"注文番号{i}の配送状況を教えてください。"}],
                              output=f"ご注文{i}は明日お届け予定です。", verdicts={"output": {"action": "allow", "checks": []}},
                              meta={"mean_logprob": -0.5, "finish_reason": "stop"})
            row = {**rec.columns(), "id": i, "time_us": i}
            row["previous_hash"] = prev
            row["hash"] = prev = row_hash(prev, row)
            batch.append(row)
            if len(batch) == 20_000 or i == rows:
                with log.engine.begin() as conn:
                    conn.execute(insert(AuditRow.__table__), batch)
                batch = []
        speeds = []
        for _ in range(repeat):
            report = log.verify()
            assert report.ok and report.rows == rows, report.problem
            speeds.append(report.rows_per_second)
        log.engine.dispose()
    return {"rows": rows, "rows_per_s_median": statistics.median(speeds), "rows_per_s_min": min(speeds),
            "rows_per_s_max": max(speeds), "repeat": repeat}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default=str(POLICY))
    ap.add_argument("--cases", default=str(CASES))
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--show-misses", action="store_true")
    ap.add_argument("--audit-rows", type=int, default=200_000, help="rows for the audit verify speed (0: skip)")
    args = ap.parse_args(argv)
    policy = Policy.load(args.policy)
    cases = [json.loads(line) for line in Path(args.cases).read_text(encoding="utf-8").splitlines() if line.strip()]
    res = evaluate(policy, cases)
    res["latency"] = latency(policy, args.runs)
    res["machine"] = {"python": sys.version.split()[0], "platform": platform.platform(), "processor": platform.processor()}
    res["cases"] = len(cases)
    print(f"{len(cases)} cases ({res['clean_cases']} clean)")
    print(f"{'check':<14}{'tp':>5}{'fp':>5}{'fn':>5}{'precision':>11}{'recall':>8}")
    for group in ("checks", "pii_types"):
        print(f"-- {group}")
        for name, r in res[group].items():
            print(f"{name:<18}{r['tp']:>5}{r['fp']:>5}{r['fn']:>5}{r['precision']:>11.3f}{r['recall']:>8.3f}")
    print(f"false positives on clean text: {res['clean_false_positives']}/{res['clean_cases']} = {res['clean_fp_rate']:.1%}")
    lat = res["latency"]
    print(f"latency, all output checks ({', '.join(lat['output_checks'])}) on a {lat['chars']}-char answer, {lat['runs']} runs, "
          f"1 thread: p50 {lat['p50_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms (input + output: p50 "
          f"{lat['input_and_output_p50_ms']:.2f} ms, p95 {lat['input_and_output_p95_ms']:.2f} ms); min {lat['min_ms']:.2f} ms, "
          f"thread CPU time p50 {lat['cpu_p50_ms']:.2f} ms, p95 {lat['cpu_p95_ms']:.2f} ms")
    if args.audit_rows:
        res["audit_verify"] = av = audit_verify_speed(args.audit_rows)
        print(f"audit verify: {av['rows']:,} rows, {av['rows_per_s_median']:,.0f} rows/s median "
              f"({av['rows_per_s_min']:,.0f}–{av['rows_per_s_max']:,.0f}, {av['repeat']} runs)")
    if args.show_misses:
        for m in res["misses"]:
            print("miss:", m)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, ensure_ascii=False, indent=1), encoding="utf-8")
    pii = res["checks"].get("pii", {})
    ok = pii.get("recall", 0) >= 0.95 and pii.get("precision", 0) >= 0.98 and res["clean_fp_rate"] <= 0.02 and lat["p95_ms"] <= 5
    ok = ok and (not args.audit_rows or res["audit_verify"]["rows_per_s_median"] >= 100_000)
    print("targets:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
