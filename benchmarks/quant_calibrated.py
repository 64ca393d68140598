"""Calibrated quantization of SmolLM2-135M: perplexity ratio vs the float model, size and decode speed of plain and
importance-matrix (imatrix) GGUF types.

    python benchmarks/quant_calibrated.py [--model smollm2-135m] [--rounds 3] [--repeats 2] [--build-threads 2]
                                          [--markdown FILE] [--json FILE]

Variants, built with kogata's ``quantize`` (identical artifacts already in the store are reused, so reruns only
measure): ``base`` (export-gguf F32 of the float HF artifact, the reference), ``Q8_0``, ``Q4_K_M``,
``Q4_K_M+imatrix``, the same with every ``ffn_down`` at Q6_K (a per-tensor override), ``IQ4_XS+imatrix``,
``Q4_0``, ``Q4_0+imatrix``. The imatrix variants use ``calibration=`` a folder holding copies of both support-desk
suites' training texts (``docs_train.txt``, ``faq_train.jsonl``, ``tickets_train.jsonl``, en and ja; read by the
quantize method), one imatrix for all of them (computed once, reused).

Measured on text the calibration did not contain — the suites' ``docs_heldout.txt`` (en, ja), documents split at
blank lines — with ``benchmarks/compression_table.py``'s own measurement child (llamacpp runtime, rolling
log-likelihood, F32 KV cache), so the ratios are comparable with that table: ppl× = exp(NLL_v/T − NLL_base/T),
bpb× = NLL_v/NLL_base. Decode: that script's ``speed`` child (greedy, 64 new tokens after a fixed prompt, EOS
ignored, prefill excluded), 1 thread, ``--rounds`` rounds that each run every variant once in its own process
(side by side, so a busy period hits all variants alike), ``--repeats`` timed runs after one warm-up per process;
median and [min–max] over all runs. The machine is shared: the 1-minute load average seen by each run is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compression_table as table  # noqa: E402  (its measurement child and formatting, one copy)

SUITES = ROOT / "src" / "kogata" / "suites"
CALIBRATION_FILES = ("docs_train.txt", "faq_train.jsonl", "tickets_train.jsonl")
VARIANTS = {  # name → quantize params (None: the F32 base)
    "base": None,
    "Q8_0": {"type": "Q8_0"},
    "Q4_K_M": {"type": "Q4_K_M"},
    "Q4_K_M+imatrix": {"type": "Q4_K_M", "calibration": True},
    "Q4_K_M+imatrix, ffn_down Q6_K": {"type": "Q4_K_M", "calibration": True, "tensor_types": {"ffn_down": "Q6_K"}},
    "IQ4_XS+imatrix": {"type": "IQ4_XS", "calibration": True},
    "Q4_0": {"type": "Q4_0"},
    "Q4_0+imatrix": {"type": "Q4_0", "calibration": True},
    # per-tensor overrides at Q8_0 (for Gemma-3-270M, whose Japanese ppl× at plain Q8_0 was 1.0137; ≤ 1.01 wanted)
    "Q8_0, token_embd F16": {"type": "Q8_0", "token_embedding_type": "F16"},
    "Q8_0, attn_v + ffn_down F16": {"type": "Q8_0", "tensor_types": {"attn_v": "F16", "ffn_down": "F16"}},
}
DEFAULT_VARIANTS = [n for n in VARIANTS if not n.startswith("Q8_0, ")]
TARGET = ("Q4_K_M+imatrix", 1.04)
log = table.log


def calibration_folder() -> Path:
    """A stable folder with copies of both suites' training texts (the same path every run, so the quantize
    config — which names it — is the same and the artifacts are reused)."""
    folder = Path(tempfile.gettempdir()) / "kogata-bench-calibration"
    folder.mkdir(exist_ok=True)
    for lang in table.LANGS:
        for name in CALIBRATION_FILES:
            shutil.copyfile(SUITES / f"support-desk-{lang}" / name, folder / f"{lang}-{name}")
    return folder


def build(model: str, calib: Path, variants: list[str]) -> dict[str, Any]:
    from kogata.artifacts.store import Store
    from kogata.methods.registry import MethodContext, apply_method

    store = Store()
    ctx = MethodContext(store=store, log=lambda m: log(f"{model}: {m}"))
    base = apply_method(store.get(model), "export-gguf", {"out_type": "f32"}, ctx)
    arts: dict[str, Any] = {}
    for name in ["base", *[v for v in variants if v != "base"]]:
        params = VARIANTS[name]
        started = time.time()
        if params is None:
            arts[name] = base
            continue
        p = {**params, "calibration": str(calib)} if params.get("calibration") else params
        arts[name] = apply_method(base, "quantize", p, ctx)
        log(f"{name}: {arts[name].name} ({arts[name].id}) in {time.time() - started:.0f}s")
    return arts


def measure(arts: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    child = argparse.Namespace(repeats=args.repeats, warmup=1, new_tokens=args.new_tokens, indomain_docs=0)
    ppl = {}
    for name, art in arts.items():
        log(f"perplexity {name}")
        ppl[name] = table.run_child(art.path, "ppl", 1, child, sets="heldout_en,heldout_ja")
    speed: dict[str, list[dict[str, Any]]] = {name: [] for name in arts}
    for r in range(args.rounds):
        for name, art in arts.items():
            log(f"decode round {r + 1}/{args.rounds}: {name}")
            speed[name].append(table.run_child(art.path, "speed", 1, child))
    return {"ppl": ppl, "speed": speed}


def report(arts: dict[str, Any], res: dict[str, Any], calib: Path, md: bool) -> str:
    sets = {f"heldout_{lang}": table.documents(table.HELDOUT[lang]) for lang in table.LANGS}
    base = res["ppl"]["base"]
    sb = table.speed_stats(res["speed"]["base"])
    header = ["variant", "MiB", "held-out ppl× en", "held-out ppl× ja", "bpb× en / ja", "decode tok/s 1T median [min–max]", "speed× base"]
    rows, ratios = [], {}
    for name, art in arts.items():
        c = {n: table.compare(res["ppl"][name], base, n) for n in sets} if name != "base" else {}
        ratios[name] = c
        s = table.speed_stats(res["speed"][name])
        cell = lambda n, k: "1 (ref)" if name == "base" else table.f_ratio(c[n], k)  # noqa: E731, B023
        rows.append([name, f"{art.bytes / 2**20:.1f}", cell("heldout_en", "ppl_ratio"), cell("heldout_ja", "ppl_ratio"),
                     "1 (ref)" if name == "base" else f"{cell('heldout_en', 'bpb_ratio')} / {cell('heldout_ja', 'bpb_ratio')}",
                     f"{s['median']:.1f} [{s['min']:.1f}–{s['max']:.1f}]", f"{s['median'] / sb['median']:.2f}×"])
    out = [table.render(rows, header, md), ""]
    bp = {n: math.exp(table.nll(base, n)[0] / table.nll(base, n)[1]) for n in sets}
    out.append(f"- base (F32 GGUF of the float model dequantised from the shipped Q4_1 GGUF) held-out token ppl: en {bp['heldout_en']:.3f} "
               f"({table.nll(base, 'heldout_en')[1]} tokens, {len(sets['heldout_en'])} docs), ja {bp['heldout_ja']:.3f} "
               f"({table.nll(base, 'heldout_ja')[1]} tokens, {len(sets['heldout_ja'])} docs).")
    imatrix = next((a.lineage[-1]["metrics"]["imatrix"] for a in arts.values() if a.lineage and "imatrix" in (a.lineage[-1].get("metrics") or {})), None)
    if imatrix:
        out.append(f"- imatrix: calibration {calib} ({', '.join(sorted(p.name for p in calib.iterdir()))}), {imatrix.get('tokens')} tokens, "
                   f"{imatrix.get('chunks')} chunks of {imatrix.get('ctx')}, {imatrix.get('entries')} entries; artifact {imatrix.get('artifact')}. "
                   "No held-out document is in the calibration folder.")
    for name, art in arts.items():
        m = (art.lineage[-1].get("metrics") or {}) if name != "base" else {}
        if m:
            types = ", ".join(f"{k} ×{n}" for k, n in (m.get("tensor_types") or {}).items())
            out.append(f"- {name}: quantizer {m.get('quantizer')}; 2-D tensor types {types}; tensors_fallback {m.get('tensors_fallback')}.")
    runs = ", ".join(f"{n} {' '.join(f'{x:.1f}' for x in table.speed_stats(res['speed'][n])['all'])}" for n in arts)
    loads = [la for n in arts for la in table.speed_stats(res["speed"][n])["loadavg"]]
    out.append(f"- decode runs (tok/s, 1 thread, every run): {runs}. 1-min load average after each process: "
               f"{min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} cores (shared machine: speeds are noisy; compare within this run).")
    name, limit = TARGET
    if name in ratios and "Q4_K_M" in ratios:
        got = ratios[name]["heldout_en"]["ppl_ratio"]
        plain = ratios["Q4_K_M"]["heldout_en"]["ppl_ratio"]
        out.append(f"- target {name} held-out ppl× en ≤ {limit} (Q4_K_M without imatrix: {plain:.4f}): measured {got:.4f} → "
                   f"{'PASS' if got <= limit else 'FAIL'}; ja {ratios[name]['heldout_ja']['ppl_ratio']:.4f} (Q4_K_M {ratios['Q4_K_M']['heldout_ja']['ppl_ratio']:.4f}).")
    for q8 in [n for n in ratios if n.startswith("Q8_0")]:
        got = ratios[q8]["heldout_ja"]["ppl_ratio"]
        out.append(f"- target Q8_0 held-out ppl× ja ≤ 1.01 (the Gemma-3-270M row): {q8} {got:.4f} → {'PASS' if got <= 1.01 else 'FAIL'}, "
                   f"{arts[q8].bytes / 2**20:.1f} MiB.")
    out.append(f"- {table.versions()}; CPU {table.cpu_model()}.")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=3, help="decode rounds; each runs every variant once, side by side")
    ap.add_argument("--repeats", type=int, default=2, help="timed decode runs per process (after one warm-up)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--build-threads", type=int, default=2, help="threads for llama-imatrix / quantization")
    ap.add_argument("--variants", help="semicolon-separated variant names (default: all but the Q8_0 override rows); "
                    "base is always measured. Known: " + "; ".join(VARIANTS))
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from kogata.core.settings import set_threads

    started = time.time()
    set_threads(args.build_threads)
    calib = calibration_folder()
    variants = [v.strip() for v in args.variants.split(";") if v.strip()] if args.variants else DEFAULT_VARIANTS
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {unknown[0]!r}; choose from: {'; '.join(VARIANTS)}")
    arts = build(args.model, calib, variants)
    res = measure(arts, args)
    text = report(arts, res, calib, md=False)
    print(text)
    if args.markdown:
        args.markdown.write_text(report(arts, res, calib, md=True) + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({"artifacts": {n: a.id for n, a in arts.items()}, **res}, indent=1, default=str), encoding="utf-8")
    log(f"done in {time.time() - started:.0f}s; median decode tok/s: "
        + ", ".join(f"{n} {statistics.median(table.speed_stats(res['speed'][n])['all']):.1f}" for n in arts))


if __name__ == "__main__":
    main()
