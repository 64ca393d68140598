"""Compression table for the real models: size, perplexity and llama.cpp decode speed of each compressed variant.

    python benchmarks/compression_table.py [--models smollm2-135m,gemma3-270m] [--threads 1] [--repeats 3]
                                           [--markdown FILE] [--json FILE]

For each model (an ``hf`` artifact in the store: ``kogata models pull NAME``) it builds, with kogata's own methods
(an identical earlier artifact is reused, so reruns only measure):

* ``base``            export-gguf F32 of the float HF artifact (the "uncompressed" reference; the HF weights were
                      dequantised from the 4-bit GGUF the model ships as, see docs);
* ``Q8_0``, ``Q4_K_M``  quantize of ``base`` (llama.cpp's quantizer; K-quants fall back per tensor when rows are not
                      a multiple of 256, e.g. SmolLM2's 576-wide rows: the count is printed);
* ``trim-vocab``      trim-vocab on the HF artifact with ``--data`` = ``docs_train.txt`` of the English AND Japanese
                      sample suites and keep-lists ``hiragana,katakana,cjk-common,ascii``, then export-gguf F32;
* ``trim+Q4_K_M``     quantize Q4_K_M of that.

and measures every variant on llama.cpp, each measurement in its own subprocess (``--measure-one``):

* perplexity: rolling log-likelihood (``loglikelihood_rolling``: each document from BOS, every token scored once;
  F32 KV cache) of the held-out documents of the suites (``support-desk-{en,ja}/docs_heldout.txt``, documents split
  at blank lines as the suite does) and of in-domain documents (the first ``--indomain-docs`` documents of each
  ``docs_train.txt``, the texts trim-vocab was built from; scored for base and the trimmed variants, or for every
  variant with ``--indomain-rows all``: scoring is slow on a busy 2-core machine). Ratios are against ``base`` on the same text. "ppl×" is the token-perplexity ratio
  exp(NLL_v/T_v) / exp(NLL_base/T_base); "bpb×" is the bits-per-byte ratio NLL_v / NLL_base (same bytes). They
  agree in direction; when a trimmed tokenizer segments text differently (text it does not cover), the token
  counts differ and only bpb× is like-for-like: such cells are marked with †.
  The trim target ("in-domain ppl ratio ≤ 1.001") is evaluated on in-domain documents whose original tokens are
  all kept (covered; counted per document with the HF tokenizers), where token counts are equal and ppl× is exact.
* decode: ``timed_generate`` (greedy, EOS ignored) of ``--new-tokens`` tokens after a fixed English prompt, one
  warm-up then ``--repeats`` timed runs; tok/s = (new tokens − 1) / (total − time to first token), i.e. prefill and
  the first token are excluded. Median and [min–max] over the repeats; llama.cpp's default F16 KV cache.

Prints one table per model, a notes block (absolute baseline values, quantization fallbacks, trim-vocab facts,
coverage) and a targets section with PASS/FAIL, and writes the same as Markdown to ``--markdown``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "src" / "kogata" / "suites"
LANGS = ("en", "ja")
TRAIN = {lang: SUITES / f"support-desk-{lang}" / "docs_train.txt" for lang in LANGS}
HELDOUT = {lang: SUITES / f"support-desk-{lang}" / "docs_heldout.txt" for lang in LANGS}
KEEP = ["hiragana", "katakana", "cjk-common", "ascii"]
VARIANTS = ("base", "Q8_0", "Q4_K_M", "trim-vocab", "trim+Q4_K_M")
# A fixed English prompt from the in-domain documents (covered by the trimmed vocabularies, so every variant
# reads the same tokens); decode speed excludes its prefill.
PROMPT = ("Sakura Denki Standard Warranty\nEvery Sakura Denki appliance sold in Japan comes with a standard warranty of "
          "1 year from the date of purchase. During this period we repair")
TARGETS = {"Q8_0": 1.01, "Q4_K_M": 1.10, "trim_params": 0.50, "trim_ppl": 1.001, "trim_speed": 1.5}
TRIM_TARGET_MODELS = ("gemma3-270m",)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def documents(path: Path) -> list[str]:
    """The suite's documents of a ``.txt`` file (split at blank lines), exactly as the perplexity task reads them."""
    from kogata.eval.data import load_records

    return [r["text"] for r in load_records(path.name, path.parent, where=str(path))]


def text_sets(indomain_docs: int = 0) -> dict[str, list[str]]:
    """Held-out documents of both suites, and the first ``indomain_docs`` (0: all) in-domain training documents."""
    out = {}
    for lang in LANGS:
        out[f"heldout_{lang}"] = documents(HELDOUT[lang])
    for lang in LANGS:
        docs = documents(TRAIN[lang])
        out[f"train_{lang}"] = docs[:indomain_docs] if indomain_docs else docs
    return out


# ---- child process: one measurement of one artifact ----------------------------------------------------------
def measure_one(path: str, what: str, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    from kogata.core.settings import set_threads
    from kogata.runtimes import open_runtime

    set_threads(threads)
    if what == "ppl":
        rt = open_runtime("llamacpp", path, kv_type="f32")
        out: dict[str, Any] = {"info": rt.info()}
        for name, texts in text_sets(args.indomain_docs).items():
            if name not in args.sets.split(","):
                continue
            started = time.perf_counter()
            res = rt.loglikelihood_rolling(texts)
            out[name] = {"logprob": [r.logprob for r in res], "n_tokens": [r.n_tokens for r in res],
                         "seconds": time.perf_counter() - started}
        rt.close()
        return out
    rt = open_runtime("llamacpp", path)
    runs = []
    for i in range(args.warmup + args.repeats):
        g = rt.timed_generate(PROMPT, args.new_tokens, ignore_eos=True)
        decode_s = g.total_s - g.ttft_s
        run = {"new_tokens": g.new_tokens, "prompt_tokens": g.prompt_tokens, "ttft_s": g.ttft_s, "total_s": g.total_s,
               "decode_tok_s": (g.new_tokens - 1) / decode_s if decode_s > 0 and g.new_tokens > 1 else float("nan"),
               "warmup": i < args.warmup}
        runs.append(run)
    info = rt.info()
    rt.close()
    return {"info": info, "runs": runs, "loadavg": os.getloadavg()}


def run_child(path: Path, what: str, threads: int, args: argparse.Namespace, sets: str = "") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--measure-one", str(path), "--what", what,
               "--threads", str(threads), "--repeats", str(args.repeats), "--warmup", str(args.warmup),
               "--new-tokens", str(args.new_tokens), "--indomain-docs", str(args.indomain_docs), "--out", str(out)]
        if sets:
            cmd += ["--sets", sets]
        env = dict(os.environ, KOGATA_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"measurement {what} of {path} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


# ---- building the variants -----------------------------------------------------------------------------------
def build_variants(model: str) -> tuple[dict[str, Any], Any]:
    from kogata.artifacts.store import Store
    from kogata.methods.registry import MethodContext, apply_method

    store = Store()
    hf = store.get(model)
    ctx = MethodContext(store=store, log=lambda m: log(f"{model}: {m}"))
    data_ctx = MethodContext(store=store, data=[TRAIN["en"], TRAIN["ja"]], log=ctx.log)
    base = apply_method(hf, "export-gguf", {"out_type": "f32"}, ctx)
    q8 = apply_method(base, "quantize", {"type": "Q8_0"}, ctx)
    q4 = apply_method(base, "quantize", {"type": "Q4_K_M"}, ctx)
    trim_hf = apply_method(hf, "trim-vocab", {"keep": KEEP}, data_ctx)
    trim = apply_method(trim_hf, "export-gguf", {"out_type": "f32"}, ctx)
    trim_q4 = apply_method(trim, "quantize", {"type": "Q4_K_M"}, ctx)
    arts = {"base": base, "Q8_0": q8, "Q4_K_M": q4, "trim-vocab": trim, "trim+Q4_K_M": trim_q4, "_trim_hf": trim_hf}
    src = source_gguf(store, hf)
    if src is not None:
        arts["_source"] = src
    return arts, hf


def coverage(hf: Any, trim_hf: Any, sets: dict[str, list[str]]) -> dict[str, list[bool]]:
    """Per document: are all of its original tokens kept by the trimmed vocabulary (and tokenised identically)?"""
    from tokenizers import Tokenizer

    from kogata.methods.trim_vocab.tokenizer import compare_segmentation

    orig = Tokenizer.from_file(str(hf.path / "tokenizer.json"))
    trimmed = Tokenizer.from_file(str(trim_hf.path / "tokenizer.json"))
    kept = json.loads((trim_hf.path / "vocab_map.json").read_text())["new_to_old"]
    out = {}
    for name, texts in sets.items():
        out[name] = [bool(compare_segmentation(orig, trimmed, kept, [t])["docs_identical"]) for t in texts]
    return out


# ---- aggregation ---------------------------------------------------------------------------------------------
def nll(ppl: dict[str, Any], name: str, mask: list[bool] | None = None) -> tuple[float, int]:
    lp, nt = ppl[name]["logprob"], ppl[name]["n_tokens"]
    keep = mask or [True] * len(lp)
    return -sum(x for x, k in zip(lp, keep) if k), sum(n for n, k in zip(nt, keep) if k)


def n_bytes(texts: list[str], mask: list[bool] | None = None) -> int:
    keep = mask or [True] * len(texts)
    return sum(len(t.encode("utf-8")) for t, k in zip(texts, keep) if k)


def compare(v: dict[str, Any], b: dict[str, Any], name: str, mask: list[bool] | None = None) -> dict[str, Any]:
    nv, tv = nll(v, name, mask)
    nb, tb = nll(b, name, mask)
    if not tb or not tv:
        return {"ppl_ratio": float("nan"), "bpb_ratio": float("nan"), "same_tokens": True, "tokens": (tv, tb)}
    return {"ppl_ratio": math.exp(nv / tv - nb / tb), "bpb_ratio": nv / nb, "same_tokens": tv == tb, "tokens": (tv, tb),
            "docs": sum(mask) if mask else len(v[name]["logprob"])}


def speed_stats(results: list[dict[str, Any]]) -> dict[str, Any]:
    xs = [r["decode_tok_s"] for res in results for r in res["runs"] if not r["warmup"]]
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs), "all": xs,
            "new_tokens": results[0]["runs"][-1]["new_tokens"], "prompt_tokens": results[0]["runs"][-1]["prompt_tokens"], "loadavg": [res["loadavg"][0] for res in results]}


def fallback_of(art: Any) -> dict[str, Any] | None:
    last = art.lineage[-1] if art.lineage else {}
    if last.get("method") != "quantize":
        return None
    m = last.get("metrics") or {}
    return {"fallback": m.get("tensors_fallback"), "native": m.get("tensors_native")}


def tensor_types(path: Path) -> dict[str, str]:
    """Storage type of every 2-D tensor of a GGUF file (what llama.cpp actually chose), read from the header only.

    (``gguf.GGUFReader`` also parses every metadata array, which takes half a minute for Gemma's 262k-token
    vocabulary on a busy machine; this skips them.)"""
    import struct

    from gguf import GGMLQuantizationType

    scalar = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type -> bytes
    with open(path, "rb") as f:
        read = lambda fmt: struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]  # noqa: E731

        def skip(vtype: int) -> None:
            if vtype == 8:  # string
                f.seek(read("Q"), 1)
            elif vtype == 9:  # array
                etype, count = read("I"), read("Q")
                if etype in scalar:
                    f.seek(scalar[etype] * count, 1)
                else:
                    for _ in range(count):
                        skip(etype)
            else:
                f.seek(scalar[vtype], 1)

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        read("I")
        n_tensors, n_kv = read("Q"), read("Q")
        for _ in range(n_kv):
            f.seek(read("Q"), 1)
            skip(read("I"))
        out = {}
        for _ in range(n_tensors):
            name = f.read(read("Q")).decode()
            n_dims = read("I")
            f.seek(8 * n_dims, 1)
            ttype = read("I")
            read("Q")
            if n_dims >= 2:
                out[name] = GGMLQuantizationType(ttype).name
    return out


def type_counts(types: dict[str, str]) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(types.values()).most_common())


def source_gguf(store: Any, hf: Any) -> Any:
    """The GGUF artifact the float HF baseline was dequantised from (its parent), if any."""
    parent = store.find(hf.parent) if hf.parent else None
    return parent if parent is not None and parent.format == "gguf" else None


def trim_facts(trim_hf: Any) -> dict[str, Any]:
    step = next(s for s in reversed(trim_hf.lineage) if s.get("method") == "trim-vocab")
    return step.get("metrics") or {}


# ---- formatting ----------------------------------------------------------------------------------------------
def f_ratio(c: dict[str, Any] | None, key: str) -> str:
    if c is None:
        return "–"
    x = c[key]
    if math.isnan(x):
        return "n/a"
    mark = "†" if key == "ppl_ratio" and not c["same_tokens"] else ""
    return f"{x:.4f}{mark}"


def render(rows: list[list[str]], header: list[str], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def versions() -> str:
    out = []
    for dist in ("kogata", "llama-cpp-python", "torch", "transformers", "gguf", "tokenizers", "numpy"):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return f"Python {platform.python_version()}; " + ", ".join(out)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def model_section(model: str, res: dict[str, Any], threads: list[int], md: bool) -> tuple[str, list[tuple[str, str, Any, str]]]:
    """The table and notes of one model, and its target checks (name, measured, pass, detail)."""
    sets, ppl, speed, arts, cov = res["sets"], res["ppl"], res["speed"], res["arts"], res["coverage"]
    base = ppl["base"]
    header = ["variant", "params", "MiB", "held-out ppl× en", "held-out ppl× ja", "held-out bpb× en / ja", "in-domain ppl× en / ja"]
    for t in threads:
        header += [f"decode tok/s {t}T median [min–max]", f"speed× base {t}T"]
    rows = []
    cmp: dict[str, dict[str, Any]] = {}
    for v in VARIANTS:
        p = ppl[v]
        c = {} if v == "base" else {n: compare(p, base, n) for n in sets if n in p}
        cmp[v] = c
        g = lambda n, k: "1 (ref)" if v == "base" else f_ratio(c.get(n), k)  # noqa: E731, B023 (called within this iteration)
        row = [v, f"{arts[v]['params'] / 1e6:.1f}M", f"{arts[v]['bytes'] / 2**20:.1f}", g("heldout_en", "ppl_ratio"),
               g("heldout_ja", "ppl_ratio"),
               "1 (ref)" if v == "base" else f"{g('heldout_en', 'bpb_ratio')} / {g('heldout_ja', 'bpb_ratio')}",
               "1 (ref)" if v == "base" else f"{g('train_en', 'ppl_ratio')} / {g('train_ja', 'ppl_ratio')}"]
        for t in threads:
            s, sb = speed[t][v], speed[t]["base"]
            row += [f"{s['median']:.1f} [{s['min']:.1f}–{s['max']:.1f}]", f"{s['median'] / sb['median']:.2f}×"]
        rows.append(row)
    table = render(rows, header, md)

    notes = []
    bp = lambda n: math.exp(nll(base, n)[0] / nll(base, n)[1])  # noqa: E731
    bb = lambda n: nll(base, n)[0] / (n_bytes(sets[n]) * math.log(2))  # noqa: E731
    notes.append(
        f"base (F32 GGUF) absolute: held-out token ppl en {bp('heldout_en'):.3f} / ja {bp('heldout_ja'):.3f}, "
        f"bpb en {bb('heldout_en'):.4f} / ja {bb('heldout_ja'):.4f}; in-domain token ppl en {bp('train_en'):.3f} / "
        f"ja {bp('train_ja'):.3f}. Documents: held-out en {len(sets['heldout_en'])} ({n_bytes(sets['heldout_en'])} B, "
        f"{nll(base, 'heldout_en')[1]} tok), ja {len(sets['heldout_ja'])} ({n_bytes(sets['heldout_ja'])} B, "
        f"{nll(base, 'heldout_ja')[1]} tok); in-domain en {len(sets['train_en'])} ({nll(base, 'train_en')[1]} tok), "
        f"ja {len(sets['train_ja'])} ({nll(base, 'train_ja')[1]} tok)."
    )
    for v in ("Q8_0", "Q4_K_M", "trim+Q4_K_M"):
        fb = arts[v]["fallback"]
        if fb:
            types = ", ".join(f"{k} ×{n}" for k, n in type_counts(arts[v]["types"]).items())
            notes.append(f"{v}: tensors_fallback = {fb['fallback']} of {fb['fallback'] + fb['native']} 2-D tensors "
                         f"(rows not a multiple of the {'256' if '_K' in v else '32'}-wide block; llama.cpp picks a "
                         f"compatible type for them); 2-D tensor types in the file: {types}.")
    src = res.get("source")
    if src:
        st = src["types"]
        line = (f"provenance: the float baseline is {model} dequantised from {src['file']} "
                f"({', '.join(f'{k} ×{n}' for k, n in type_counts(st).items())}); the ratios are vs that float model, not vs "
                f"the original 16-bit weights.")
        for v in ("Q8_0", "Q4_K_M"):
            vt = arts[v]["types"]
            same = sum(1 for k, t in vt.items() if st.get(k) == t)
            if vt and same == len(vt):
                line += (f" {v} gives every 2-D tensor the same type as that file ({same}/{len(vt)}), so quantizing"
                         f" re-creates (nearly) the same grid and its ratio is close to a round trip: it understates the"
                         f" loss a fresh {v} of the original weights would have.")
            elif vt:
                line += f" {v} shares the storage type of {same}/{len(vt)} 2-D tensors with that file."
        notes.append(line)
    tf = res["trim"]
    notes.append(
        f"trim-vocab: vocabulary {tf.get('vocab_before')} → {tf.get('vocab_after')} tokens; HF params "
        f"{tf.get('params_before', 0) / 1e6:.1f}M → {tf.get('params_after', 0) / 1e6:.1f}M "
        f"(−{100 * (tf.get('params_reduction') or 0):.1f}%); probability the original puts on dropped ids on "
        f"{tf.get('dropped_mass_tokens')} corpus tokens: mean {tf.get('dropped_mass_mean')}, max {tf.get('dropped_mass_max')} "
        f"(on covered text the trimmed model renormalises that mass onto the kept ids, so its ratios there are below 1)."
    )
    cov_txt = []
    for n in ("heldout_en", "heldout_ja", "train_en", "train_ja"):
        cov_txt.append(f"{n} {sum(cov[n])}/{len(cov[n])}")
    notes.append("documents covered by the trimmed vocabulary (all original tokens kept, identical segmentation): " + ", ".join(cov_txt) + ".")
    for v in ("trim-vocab", "trim+Q4_K_M"):
        parts = []
        for n in ("heldout_en", "heldout_ja", "train_en", "train_ja"):
            if n not in ppl[v]:
                continue
            c = compare(ppl[v], base, n, cov[n])
            full = cmp[v][n]
            tok = f"tokens {full['tokens'][0]} vs base {full['tokens'][1]}"
            cv = f"covered docs ppl× {c['ppl_ratio']:.5f} bpb× {c['bpb_ratio']:.5f}" if any(cov[n]) else "no covered docs"
            parts.append(f"{n}: all docs ppl× {full['ppl_ratio']:.5f} bpb× {full['bpb_ratio']:.5f} ({tok}); {cv}")
        notes.append(f"{v} vs base: " + "; ".join(parts) + ".")
    for t in threads:
        per = ", ".join(f"{v} {' '.join(f'{x:.1f}' for x in speed[t][v]['all'])}" for v in VARIANTS)
        la = ", ".join(f"{v} {speed[t][v]['loadavg'][0]:.1f}" for v in VARIANTS)
        pt = "/".join(str(speed[t][v]["prompt_tokens"]) for v in VARIANTS)
        notes.append(f"decode runs {t}T ({speed[t]['base']['new_tokens']} new tokens each after a {pt}-token prompt, tok/s): "
                     f"{per}. 1-min load average after each: {la}.")
    notes.append("† token counts differ from base on that text (trimmed segmentation), so ppl× is not like-for-like there; bpb× is.")

    checks: list[tuple[str, str, bool | str | None, str]] = []
    for v in ("Q8_0", "Q4_K_M"):
        lim = TARGETS[v]
        for lang in LANGS:
            r = cmp[v][f"heldout_{lang}"]["ppl_ratio"]
            checks.append((f"{model} {v} held-out ppl ratio {lang} ≤ {lim}", f"{r:.5f}", r <= lim, ""))
    if model in TRIM_TARGET_MODELS:
        red = 1 - arts["trim-vocab"]["params"] / arts["base"]["params"]
        checks.append((f"{model} trim-vocab ≥ {TARGETS['trim_params']:.0%} fewer parameters", f"−{red:.1%} "
                       f"({arts['base']['params'] / 1e6:.1f}M → {arts['trim-vocab']['params'] / 1e6:.1f}M)", red >= TARGETS["trim_params"], ""))
        for lang in LANGS:
            n = f"train_{lang}"
            c = compare(ppl["trim-vocab"], base, n, cov[n])
            ok = c["ppl_ratio"] <= TARGETS["trim_ppl"] and c["same_tokens"] if any(cov[n]) else None
            checks.append((f"{model} trim-vocab in-domain (covered) ppl ratio {lang} ≤ {TARGETS['trim_ppl']}",
                           f"{c['ppl_ratio']:.5f} on {sum(cov[n])}/{len(cov[n])} docs", ok,
                           "same token count as base" if c["same_tokens"] else "token counts differ"))
        held = [f"{lang} {cmp['trim-vocab'][f'heldout_{lang}']['bpb_ratio']:.4f} ({sum(cov[f'heldout_{lang}'])}/"
                f"{len(cov[f'heldout_{lang}'])} docs covered)" for lang in LANGS]
        checks.append((f"{model} trim-vocab held-out bpb ratio (outside the target's scope: text the kept vocabulary "
                       f"need not cover)", ", ".join(held), "info", ""))
        for t in threads:
            for trimmed, untrimmed in (("trim-vocab", "base"), ("trim+Q4_K_M", "Q4_K_M")):
                r = speed[t][trimmed]["median"] / speed[t][untrimmed]["median"]
                checks.append((f"{model} {trimmed} decode ≥ {TARGETS['trim_speed']}× {untrimmed} ({t}T)",
                               f"{r:.2f}× ({speed[t][trimmed]['median']:.1f} vs {speed[t][untrimmed]['median']:.1f} tok/s)",
                               r >= TARGETS["trim_speed"], ""))
    return table + "\n\n" + "\n".join(f"- {n}" for n in notes), checks


def report(results: dict[str, Any], threads: list[int], args: argparse.Namespace, wall: float, md: bool) -> str:
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    head = "# Compression table\n\n" if md else "COMPRESSION TABLE\n\n"
    meta = [f"date: {now}", f"CPU: {cpu_model()} ({os.cpu_count()} logical cores; shared machine, 1-min load average "
            f"at start {results['_load_start']:.1f}, end {os.getloadavg()[0]:.1f})",
            f"threads: {','.join(map(str, threads))} (perplexity scored with {threads[0]}); decode: {args.new_tokens} new tokens, "
            f"{args.warmup} warm-up + {args.repeats} repeats, each variant in its own process",
            f"versions: {versions()}", f"wall time of this run: {wall / 60:.1f} min"]
    out = [head + "\n".join(f"- {m}" if md else m for m in meta)]
    all_checks = []
    for model in results["_models"]:
        section, checks = model_section(model, results[model], threads, md)
        all_checks += checks
        out.append(("## " if md else "== ") + model + ("" if md else " ==") + "\n\n" + section)
    lines = []
    for name, measured, ok, detail in all_checks:
        verdict = "n/a " if ok is None else "INFO" if ok == "info" else ("PASS" if ok else "FAIL")
        lines.append(f"{verdict}  {name}: {measured}" + (f" ({detail})" if detail else ""))
    out.append(("## Targets\n\n" if md else "== targets ==\n\n") + "\n".join(f"- {line}" if md else line for line in lines))
    return "\n\n".join(out) + "\n"


# ---- main ----------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--threads", default="1", help="decode thread count(s), comma-separated (e.g. 1,2); perplexity uses the first")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--indomain-docs", type=int, default=8,
                    help="in-domain documents per language scored (the first N of docs_train.txt; 0: all)")
    ap.add_argument("--indomain-rows", choices=["trim", "all"], default="trim",
                    help="variants scored on in-domain text: base and the trimmed ones (default), or all")
    ap.add_argument("--markdown", type=Path, help="also write the report as Markdown to this file")
    ap.add_argument("--json", type=Path, help="write every raw measurement as JSON to this file")
    ap.add_argument("--measure-one", help=argparse.SUPPRESS)
    ap.add_argument("--what", choices=["ppl", "speed"], help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--sets", default="heldout_en,heldout_ja,train_en,train_ja", help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = [int(t) for t in str(args.threads).split(",") if t.strip()]
    if args.repeats < 1 or not threads or min(threads) < 1:
        ap.error("--repeats and --threads must be positive")

    if args.measure_one:
        args.out.write_text(json.dumps(measure_one(args.measure_one, args.what, threads[0], args)))
        return

    started = time.time()
    results: dict[str, Any] = {"_models": [m.strip() for m in args.models.split(",") if m.strip()], "_load_start": os.getloadavg()[0]}
    sets = text_sets(args.indomain_docs)
    for model in results["_models"]:
        log(f"{model}: building variants")
        arts, hf = build_variants(model)
        info = {v: {"id": arts[v].id, "name": arts[v].name, "path": str(arts[v].path), "params": arts[v].params,
                    "bytes": arts[v].gguf_path.stat().st_size, "fallback": fallback_of(arts[v]),
                    "types": tensor_types(arts[v].gguf_path) if fallback_of(arts[v]) else {}} for v in VARIANTS}
        src = arts.get("_source")
        source = {"name": src.name, "file": src.gguf_path.name, "types": tensor_types(src.gguf_path)} if src is not None else None
        res = {"sets": sets, "arts": info, "source": source, "trim": trim_facts(arts["_trim_hf"]), "coverage": coverage(hf, arts["_trim_hf"], sets),
               "ppl": {}, "speed": {t: {} for t in threads}}
        for v in VARIANTS:
            log(f"{model}: perplexity of {v} ({arts[v].name})")
            t0 = time.time()
            names = [n for n in sets if n.startswith("heldout") or args.indomain_rows == "all" or v in ("base", "trim-vocab", "trim+Q4_K_M")]
            res["ppl"][v] = run_child(arts[v].path, "ppl", threads[0], args, ",".join(names))
            log(f"{model}: perplexity of {v} done in {time.time() - t0:.0f}s")
        for t in threads:
            for v in VARIANTS:
                log(f"{model}: decode speed of {v}, {t} thread(s)")
                res["speed"][t][v] = speed_stats([run_child(arts[v].path, "speed", t, args)])
                log(f"{model}: {v} {res['speed'][t][v]['median']:.1f} tok/s")
        results[model] = res
    wall = time.time() - started
    print(report(results, threads, args, wall, md=False))
    if args.markdown:
        args.markdown.write_text(report(results, threads, args, wall, md=True), encoding="utf-8")
        log(f"wrote {args.markdown}")
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in results.items()}, default=str, indent=1), encoding="utf-8")
    log(f"done in {wall / 60:.1f} min")


if __name__ == "__main__":
    main()
