"""Cross-validated trim-vocab: held-out cost and decode speed of a vocabulary trimmed blindly to a corpus vs one
whose kept set was chosen to meet a held-out bits/byte target (``heldout_target``), both as Q8_0 GGUF.

    python benchmarks/trim_vocab_cv.py [--model gemma3-270m] [--docs examples/company-docs/ja] [--target 1.01]
                                       [--outer-fraction 0.2] [--rounds 2] [--repeats 3] [--markdown FILE] [--json FILE]

Data: the files under ``--docs`` (default the Japanese company handbook). Whole files are split, by the SHA-256 of
their path relative to ``--docs``, into a trim corpus and an OUTER held-out set (``--outer-fraction`` of the files)
that no trim ever sees (the cross-validation holds out part of the trim corpus itself, on top). The trim corpus is
copied to a stable folder (``$TMPDIR/kogata-bench-trimcv/<docs name>``), so the configs — which name it — repeat and
a rerun reuses the artifacts.

Variants, built with kogata's methods (identical earlier artifacts are reused): ``Q8_0`` (export-gguf F32 of the
float HF model → quantize Q8_0: the reference), ``trim`` (trim-vocab to every corpus token → export → Q8_0),
``trim-cv`` (trim-vocab with ``heldout_target`` → export → Q8_0); ``--keep`` adds keep-lists to both trims.

Measured, each in its own process: bits/byte of the outer held-out documents and of the first ``--corpus-docs``
trim-corpus documents (llamacpp rolling log-likelihood, F32 KV cache; ratio = NLL_v / NLL_Q8_0 on the same bytes);
decode with ``benchmarks/compression_table.py``'s speed child (greedy, ``--new-tokens`` after a fixed prompt from
the trim corpus, EOS ignored, prefill excluded, 1 warm-up + ``--repeats`` runs per process, ``--rounds`` rounds
that run every variant side by side) and the peak RSS of that process. tok/s: median [min–max] over all runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compression_table as table  # noqa: E402  (its speed child, stats and formatting, one copy)

log = table.log
VARIANTS = ("Q8_0", "trim", "trim-cv")
TARGETS = {"heldout": 1.02, "speed": 1.5}


def split_files(docs: Path, fraction: float) -> tuple[list[Path], list[Path]]:
    """(trim corpus files, outer held-out files): the first ``fraction`` of the files by SHA-256 of their path."""
    files = sorted(f for f in docs.rglob("*") if f.is_file() and not f.name.startswith("."))
    key = lambda f: hashlib.sha256(str(f.relative_to(docs)).encode()).hexdigest()  # noqa: E731
    ranked = sorted(files, key=key)
    n_out = min(len(files) - 1, max(1, round(fraction * len(files))))
    outer = set(ranked[:n_out])
    return [f for f in files if f not in outer], [f for f in files if f in outer]


def trim_folder(docs: Path, files: list[Path]) -> Path:
    folder = Path(tempfile.gettempdir()) / "kogata-bench-trimcv" / docs.name
    if folder.exists():
        shutil.rmtree(folder)
    for f in files:
        dst = folder / f.relative_to(docs)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)
    return folder


# ---- child process: one measurement of one artifact ----------------------------------------------------------
def measure_one(path: str, what: str, args: argparse.Namespace) -> dict[str, Any]:
    from kogata.core.settings import set_threads
    from kogata.runtimes import open_runtime

    set_threads(args.threads)
    if what == "speed":
        table.PROMPT = args.prompt  # the speed child reads its prompt from the module
        out = table.measure_one(path, "speed", args.threads, args)
        out["peak_rss_kib"] = peak_rss_kib()
        return out
    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    rt = open_runtime("llamacpp", path, kv_type="f32")
    out = {}
    for name, docs in texts.items():
        res = rt.loglikelihood_rolling(docs)
        out[name] = {"nll": -sum(r.logprob for r in res), "tokens": sum(r.n_tokens for r in res),
                     "bytes": sum(len(d.encode("utf-8")) for d in docs)}
    rt.close()
    return out


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM). Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the parent's
    high-water mark across fork + exec into it, so every child would report the (large) benchmark process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_child(path: Path, what: str, args: argparse.Namespace, texts: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--measure-one", str(path), "--what", what, "--out", str(out),
               "--threads", str(args.threads), "--repeats", str(args.repeats), "--new-tokens", str(args.new_tokens),
               "--prompt", args.prompt]
        if texts:
            cmd += ["--texts", str(texts)]
        env = dict(os.environ, KOGATA_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"measurement {what} of {path} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


# ---- building ----------------------------------------------------------------------------------------------
def build(model: str, corpus: Path, args: argparse.Namespace) -> dict[str, Any]:
    from kogata.artifacts.store import Store
    from kogata.methods.registry import MethodContext, apply_method

    store = Store()
    hf = store.get(model)
    ctx = MethodContext(store=store, log=lambda m: log(f"{model}: {m}"))
    data_ctx = MethodContext(store=store, data=[corpus], log=ctx.log)
    keep = {"keep": args.keep.split(",")} if args.keep else {}
    hf_variants = {
        "trim": apply_method(hf, "trim-vocab", dict(keep), data_ctx),
        "trim-cv": apply_method(hf, "trim-vocab", {**keep, "heldout_target": args.target, "cv_fraction": args.cv_fraction,
                                                   "cv_max_tokens": args.cv_max_tokens}, data_ctx),
    }
    arts: dict[str, Any] = {"Q8_0": apply_method(apply_method(hf, "export-gguf", {"out_type": "f32"}, ctx), "quantize", {"type": "Q8_0"}, ctx)}
    for name, art in hf_variants.items():
        arts[name] = apply_method(apply_method(art, "export-gguf", {"out_type": "f32"}, ctx), "quantize", {"type": "Q8_0"}, ctx)
    return {"gguf": arts, "hf": hf_variants}


def trim_metrics(art: Any) -> dict[str, Any]:
    return next(s for s in reversed(art.lineage) if s.get("method") == "trim-vocab").get("metrics") or {}


# ---- report ------------------------------------------------------------------------------------------------
def report(model: str, built: dict[str, Any], ppl: dict[str, Any], speed: dict[str, list], split: dict[str, Any], args: argparse.Namespace, md: bool) -> str:
    ref = ppl["Q8_0"]
    sref = table.speed_stats(speed["Q8_0"])
    rss_ref = max(r["peak_rss_kib"] for r in speed["Q8_0"])
    header = ["variant", "kept tokens", "MiB", "outer held-out bpb× Q8_0", "trim-corpus bpb× Q8_0", "CV estimate",
              "decode tok/s 1T median [min–max]", "speed×", "peak RSS MiB", "RSS×"]
    rows, checks = [], []
    for v in VARIANTS:
        art = built["gguf"][v]
        m = trim_metrics(built["hf"][v]) if v in built["hf"] else {}
        s = table.speed_stats(speed[v])
        rss = max(r["peak_rss_kib"] for r in speed[v])
        held = ppl[v]["outer"]["nll"] / ref["outer"]["nll"]
        corp = ppl[v]["corpus"]["nll"] / ref["corpus"]["nll"]
        est = m.get("crossval", {}).get("heldout_bpb_ratio")
        rows.append([v, str(m.get("vocab_after", m.get("vocab_before", "all"))) if m else "all", f"{art.bytes / 2**20:.1f}",
                     "1 (ref)" if v == "Q8_0" else f"{held:.4f}", "1 (ref)" if v == "Q8_0" else f"{corp:.4f}",
                     f"{est:.4f}" if est else "–", f"{s['median']:.1f} [{s['min']:.1f}–{s['max']:.1f}]",
                     f"{s['median'] / sref['median']:.2f}×", f"{rss / 1024:.0f}", f"{rss / rss_ref:.2f}×"])
        if v == "trim-cv":
            checks += [(f"trim-cv outer held-out bpb× ≤ {TARGETS['heldout']}", f"{held:.4f}", held <= TARGETS["heldout"]),
                       (f"trim-cv decode ≥ {TARGETS['speed']}× Q8_0", f"{s['median'] / sref['median']:.2f}×", s["median"] / sref["median"] >= TARGETS["speed"])]
    bits = lambda p, n: p[n]["nll"] / (p[n]["bytes"] * math.log(2))  # noqa: E731
    notes = [f"model {model}; docs {args.docs}: {split['trim_files']} trim-corpus files, {split['outer_files']} outer held-out files "
             f"({ref['outer']['bytes']} B, Q8_0 {ref['outer']['tokens']} tokens, {bits(ref, 'outer'):.4f} bits/byte); trim-corpus "
             f"sample {args.corpus_docs} docs ({ref['corpus']['bytes']} B, {bits(ref, 'corpus'):.4f} bits/byte)."]
    cvm = trim_metrics(built["hf"]["trim-cv"]).get("crossval", {})
    notes.append(f"cross-validation: target {cvm.get('target')}, met {cvm.get('met')}, fit/held-out docs {cvm.get('fit_docs')}/"
                 f"{cvm.get('heldout_docs')}, {cvm.get('heldout_tokens')} held-out tokens, corpus tokens kept "
                 f"{cvm.get('corpus_tokens_kept')} of {cvm.get('fit_distinct_tokens')} seen in the fit part, keep-lists "
                 f"{cvm.get('keep')}, {cvm.get('seconds')} s; tried (fit tokens → kept, ratio): "
                 + ", ".join(f"{t['fit_tokens']}→{t['kept']} ×{t['ratio']}" for t in cvm.get("tried", [])) + ".")
    loads = [la for v in VARIANTS for la in table.speed_stats(speed[v])["loadavg"]]
    notes.append(f"decode: {args.new_tokens} new tokens, {args.rounds} rounds × (1 warm-up + {args.repeats}) per variant, "
                 f"{args.threads} thread(s); 1-min load average {min(loads):.1f}–{max(loads):.1f}; {table.versions()}; CPU {table.cpu_model()}.")
    lines = [f"{'PASS' if ok else 'FAIL'}  {name}: {got}" for name, got, ok in checks]
    out = [table.render(rows, header, md), "", *(f"- {n}" for n in notes), "", *(f"- {x}" if md else x for x in lines)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma3-270m", help="an hf artifact in the store (gemma3-270m, smollm2-135m)")
    ap.add_argument("--docs", type=Path, default=ROOT / "examples" / "company-docs" / "ja")
    ap.add_argument("--outer-fraction", type=float, default=0.2, help="share of the files held out from every trim")
    ap.add_argument("--target", type=float, default=1.01, help="heldout_target of the trim-cv variant")
    ap.add_argument("--cv-fraction", type=float, default=0.2)
    ap.add_argument("--cv-max-tokens", type=int, default=4096)
    ap.add_argument("--keep", default="", help="keep-lists for both trims, comma-separated (default none)")
    ap.add_argument("--corpus-docs", type=int, default=8, help="trim-corpus documents scored (the first N)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--measure-one", help=argparse.SUPPRESS)
    ap.add_argument("--what", choices=["ppl", "speed"], help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--texts", help=argparse.SUPPRESS)
    ap.add_argument("--prompt", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_one:
        args.out.write_text(json.dumps(measure_one(args.measure_one, args.what, args)))
        return
    from kogata.methods._shared.texts import read_texts

    started = time.time()
    docs = args.docs.resolve()
    trim_files, outer_files = split_files(docs, args.outer_fraction)
    corpus = trim_folder(docs, trim_files)
    outer = read_texts(outer_files)
    sample = read_texts([corpus])[: args.corpus_docs]
    args.prompt = sample[0][:120]
    built = build(args.model, corpus, args)
    with tempfile.TemporaryDirectory() as tmp:
        texts = Path(tmp) / "texts.json"
        texts.write_text(json.dumps({"outer": outer, "corpus": sample}, ensure_ascii=False), encoding="utf-8")
        ppl = {}
        for v in VARIANTS:
            log(f"bits/byte of {v}")
            ppl[v] = run_child(built["gguf"][v].path, "ppl", args, texts)
    speed: dict[str, list] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for v in VARIANTS:
            log(f"decode round {r + 1}/{args.rounds}: {v}")
            speed[v].append(run_child(built["gguf"][v].path, "speed", args))
    split = {"trim_files": len(trim_files), "outer_files": len(outer_files)}
    print(report(args.model, built, ppl, speed, split, args, md=False))
    if args.markdown:
        args.markdown.write_text(report(args.model, built, ppl, speed, split, args, md=True) + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({"artifacts": {v: a.id for v, a in built["gguf"].items()}, "ppl": ppl, "speed": speed,
                                         "split": split}, indent=1, default=str), encoding="utf-8")
    log(f"done in {time.time() - started:.0f}s; median decode tok/s: "
        + ", ".join(f"{v} {statistics.median(table.speed_stats(speed[v])['all']):.1f}" for v in VARIANTS))


if __name__ == "__main__":
    main()
