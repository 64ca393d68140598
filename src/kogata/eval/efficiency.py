"""The efficiency probe: how fast and how big one artifact is under one runtime, on this machine.

Each artifact × runtime is measured in its own process (``python -m kogata.eval.efficiency …``) so that
memory and thread state of one measurement never leak into the next, and the process's peak RSS is the
model's real footprint (including loading it). What is measured:

- load time (``open_runtime`` until the model can answer);
- prefill tok/s at a fixed prompt length (text from the suite's own documents, cut to exactly
  ``prompt_tokens`` tokens) and decode tok/s over ``gen_tokens`` new tokens with EOS ignored: ``warmup``
  untimed runs, then ``repeats`` timed runs reported as min / median / max;
- TTFT and end-to-end latency p50 / p95 over ``latency_prompts`` of the suite's own prompts;
- peak RSS of the probe process, bytes on disk and parameter count (from the manifest), threads, and the
  machine and library versions the numbers depend on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError

DEFAULTS = {"prompt_tokens": 128, "gen_tokens": 32, "repeats": 3, "warmup": 1, "latency_prompts": 8}
LIBRARIES = {"kogata": "kogata", "torch": "torch", "transformers": "transformers", "llama_cpp": "llama-cpp-python", "gguf": "gguf", "numpy": "numpy"}
RUNTIME_LIBRARIES = {"torch": ("torch", "transformers"), "llamacpp": ("llama_cpp",)}  # imported before the load timer starts
_FILLER = "The customer asked about the delivery date of the order and the support team answered politely."


# ---- machine and versions ------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("model name", "cpu model", "hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """The facts of this machine that performance numbers depend on."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["usable_cores"] = os.cpu_count()
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001 - psutil is optional here
        info["physical_cores"] = None
        info["ram_gb"] = None
    return info


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in LIBRARIES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


# ---- statistics -----------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), ``q`` in [0, 100]."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    pos = (len(vals) - 1) * q / 100.0
    lo, hi = int(pos), min(int(pos) + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def spread(values: list[float]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"min": None, "median": None, "max": None}
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process's memory so far, MiB.

    Linux: ``VmHWM`` from /proc/self/status. ``ru_maxrss`` is not used there: it survives ``exec``, so a
    process started by a big parent reports the parent's peak (seen: a llama.cpp probe "using" the 1 GiB the
    torch run had in the parent). Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def load_average() -> float | None:
    """The 1-minute load average (how many runnable threads the machine had), None where unknown."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def current_rss_mb() -> float | None:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except Exception:  # noqa: BLE001
        return None


def task_type(task: Any) -> str:
    """A task's type name (``generate``, ``multiple_choice``, ``perplexity``)."""
    return getattr(task, "type_name", None) or getattr(task, "type", None) or ""


# ---- prompts --------------------------------------------------------------------------------------
def _request_text(req: Any) -> str:
    if getattr(req, "prompt", None):
        return req.prompt
    return "\n".join(m.get("content", "") for m in (getattr(req, "messages", None) or []))


def suite_text(suite: Any, limit_chars: int = 200_000) -> str:
    """Running text from the suite: its documents (perplexity tasks) first, then its prompts."""
    parts: list[str] = []
    for task in suite.tasks:
        if task_type(task) == "perplexity" and callable(getattr(task, "text", None)):
            try:
                parts.extend(task.text(r) for r in getattr(task, "records", []))
            except Exception:  # noqa: BLE001 - fall back to prompts
                pass
    if sum(map(len, parts)) < 2000:
        for task in suite.tasks:
            try:
                parts.extend(_request_text(r) for r in task.prompts(32))
            except Exception:  # noqa: BLE001 - a task without prompts adds nothing
                continue
    text = "\n\n".join(p for p in parts if p.strip()) or _FILLER
    return text[:limit_chars]


def fixed_length_prompt(tokenize: Any, text: str, n_tokens: int) -> tuple[str, int]:
    """The longest prefix of ``text`` (repeated if short) that tokenises to at most ``n_tokens`` tokens.

    Returns the prompt and its token count (equal to ``n_tokens`` unless a single character spans two tokens
    at the boundary).
    """
    while len(tokenize(text)) < n_tokens:
        text = text + "\n\n" + text
    lo, hi = 0, len(text)
    while lo < hi:  # largest k with len(tokenize(text[:k])) <= n_tokens
        mid = (lo + hi + 1) // 2
        if len(tokenize(text[:mid])) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    prompt = text[:lo]
    return prompt, len(tokenize(prompt))


def latency_requests(suite: Any, n: int) -> list[Any]:
    """``n`` of the suite's own prompts, taken round-robin over its generate tasks (any task if none)."""
    tasks = [t for t in suite.tasks if task_type(t) == "generate"] or list(suite.tasks)
    pools = []
    for task in tasks:
        try:
            pools.append(list(task.prompts(n)))
        except Exception:  # noqa: BLE001 - tasks that cannot make prompts are skipped
            continue
    out: list[Any] = []
    while len(out) < n and any(pools):
        for pool in pools:
            if pool and len(out) < n:
                out.append(pool.pop(0))
    return out


# ---- the measurement ------------------------------------------------------------------------------
def measure(runtime: Any, suite: Any, settings: dict[str, Any] | None = None, progress: Any = None) -> dict[str, Any]:
    """Throughput and latency of an open runtime (no load time, no memory: see :func:`probe`)."""
    cfg = {**DEFAULTS, **{k: v for k, v in (getattr(suite, "efficiency", None) or {}).items() if v is not None}, **(settings or {})}
    say = progress or (lambda msg: None)
    prompt, n_prompt = fixed_length_prompt(runtime.tokenize, suite_text(suite), int(cfg["prompt_tokens"]))
    gen = int(cfg["gen_tokens"])
    say(f"warm-up ({cfg['warmup']}×)")
    for _ in range(int(cfg["warmup"])):
        runtime.timed_generate(prompt, gen, ignore_eos=True)
    runs = []
    for i in range(int(cfg["repeats"])):
        say(f"throughput run {i + 1}/{cfg['repeats']}")
        tg = runtime.timed_generate(prompt, gen, ignore_eos=True)
        decode_s = tg.total_s - tg.ttft_s
        runs.append(
            {
                "prompt_tokens": tg.prompt_tokens,
                "new_tokens": tg.new_tokens,
                "ttft_s": tg.ttft_s,
                "total_s": tg.total_s,
                "prefill_tok_s": tg.prompt_tokens / tg.ttft_s if tg.ttft_s > 0 else None,
                "decode_tok_s": (tg.new_tokens - 1) / decode_s if tg.new_tokens > 1 and decode_s > 0 else None,
            }
        )
    lat = []
    reqs = latency_requests(suite, int(cfg["latency_prompts"]))
    for i, req in enumerate(reqs):
        say(f"latency prompt {i + 1}/{len(reqs)}")
        # end to end as the task asks for it (its stop sequences, EOS, chat template) …
        started = time.perf_counter()
        runtime.generate([req])
        total_s = time.perf_counter() - started
        # … and the time to the first token of the same prompt (plain prompts; the chat template is the runtime's)
        tg = runtime.timed_generate(req.prompt, 1, ignore_eos=True) if getattr(req, "prompt", None) is not None else None
        lat.append({"prompt_tokens": tg.prompt_tokens if tg else None, "ttft_s": tg.ttft_s if tg else None, "total_s": total_s})
    ttft_ms = [r["ttft_s"] * 1000 for r in lat if r["ttft_s"] is not None]
    total_ms = [r["total_s"] * 1000 for r in lat]
    return {
        "settings": {**cfg, "prompt_tokens_actual": n_prompt},
        "prefill_tok_s": spread([r["prefill_tok_s"] for r in runs]),
        "decode_tok_s": spread([r["decode_tok_s"] for r in runs]),
        "runs": runs,
        "latency": {
            "n": len(lat),
            "ttft_p50_ms": percentile(ttft_ms, 50),
            "ttft_p95_ms": percentile(ttft_ms, 95),
            "latency_p50_ms": percentile(total_ms, 50),
            "latency_p95_ms": percentile(total_ms, 95),
            "runs": lat,
        },
    }


def probe(artifact: Any, runtime_name: str, suite: Any, *, threads: int, options: dict[str, Any] | None = None,
          settings: dict[str, Any] | None = None, open_runtime: Any = None, progress: Any = None) -> dict[str, Any]:
    """Load the artifact with the runtime, measure it, and close it. Meant to run in a fresh process."""
    import importlib

    started = time.perf_counter()
    for mod in RUNTIME_LIBRARIES.get(runtime_name, ()):  # library import time is not model load time
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
    if open_runtime is None:
        from kogata.runtimes import get_runtime_class, open_runtime

        get_runtime_class(runtime_name)  # importing the runtime's module is not loading the model either
    import_s = time.perf_counter() - started
    rss_before = current_rss_mb()
    load_before = load_average()
    started = time.perf_counter()
    runtime = open_runtime(runtime_name, artifact, **(options or {}))
    load_s = time.perf_counter() - started
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    rss_loaded = current_rss_mb()
    try:
        if getattr(runtime, "kind", "lm") == "embedder":
            from kogata.eval.efficiency_embedder import measure_embedder as measure_fn
        else:
            measure_fn = measure
        result = measure_fn(runtime, suite, settings, progress)
        info = runtime.info()
    finally:
        runtime.close()
    params = getattr(artifact, "params", None)
    disk = getattr(artifact, "bytes", None)
    result.update(
        runtime=runtime_name,
        runtime_info=info,
        options=options or {},
        threads=threads,
        load_s=load_s,
        import_s=import_s,
        rss_before_load_mb=rss_before,
        rss_after_load_mb=rss_loaded,
        peak_rss_mb=peak_rss_mb(),
        load_avg={"before": load_before, "after": load_average()},
        disk_bytes=disk,
        params=params,
        machine=machine_info(),
        versions=library_versions(),
    )
    lat = result["latency"]
    result["metrics"] = {
        "load_s": load_s,
        "prefill_tok_s": result["prefill_tok_s"]["median"],
        "decode_tok_s": result["decode_tok_s"]["median"],
        "ttft_p50_ms": lat["ttft_p50_ms"],
        "ttft_p95_ms": lat["ttft_p95_ms"],
        "latency_p50_ms": lat["latency_p50_ms"],
        "latency_p95_ms": lat["latency_p95_ms"],
        "peak_rss_mb": result["peak_rss_mb"],
        "disk_mb": disk / 2**20 if disk else None,
        "params_m": params / 1e6 if params else None,
    }
    return result


# ---- running it in its own process ----------------------------------------------------------------
def thread_env(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "KOGATA_THREADS"):
        env[var] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def run_probe_subprocess(artifact: Any, runtime_name: str, suite_path: str | Path, *, threads: int,
                         options: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
                         work_dir: Path, timeout: float | None = None, on_line: Any = None) -> dict[str, Any]:
    """Run :func:`probe` in a fresh Python process; raise :class:`KogataError` with its error on failure.

    The child's output goes to ``work_dir/efficiency-<runtime>-<id>.log``; ``on_line`` gets its progress lines.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    stem = f"efficiency-{runtime_name}-{getattr(artifact, 'id', 'artifact')}".replace("/", "_").replace(":", "_")
    out, log = work_dir / f"{stem}.json", work_dir / f"{stem}.log"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "kogata.eval.efficiency", "--artifact", str(getattr(artifact, "path", artifact)),
           "--runtime", runtime_name, "--threads", str(threads), "--suite", str(suite_path), "--json-out", str(out),
           "--options", json.dumps(options or {}), "--settings", json.dumps(settings or {})]
    with open(log, "w", encoding="utf-8") as log_f:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_f, text=True, env=thread_env(threads))
        assert proc.stdout is not None
        for line in proc.stdout:  # progress lines from the child
            log_f.write(line)
            log_f.flush()
            if on_line is not None:
                on_line(line.rstrip("\n"))
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise KogataError(f"efficiency probe ({runtime_name}) ran past {timeout:.0f} s", f"see {log}") from None
    data = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else None
    if rc != 0 or data is None or not data.get("ok"):
        if data and data.get("error"):
            message = data["error"]
        else:
            tail = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
            message = tail[-1].strip() if tail else f"exited with code {rc}"
        raise KogataError(f"efficiency probe failed for {getattr(artifact, 'name', artifact)} on {runtime_name}: {message}",
                          f"full log: {log}")
    return data["result"]


def _load_artifact(ref: str) -> Any:
    from kogata.artifacts.artifact import MANIFEST, Artifact

    path = Path(ref)
    if (path / MANIFEST).is_file():
        return Artifact.read(path)
    from kogata.artifacts.store import Store

    return Store().get(ref)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kogata.eval.efficiency", description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", required=True, help="artifact folder, name or id")
    ap.add_argument("--runtime", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--suite", required=True, help="suite file or built-in name")
    ap.add_argument("--json-out", required=True)
    ap.add_argument("--options", default="{}", help="runtime options as JSON")
    ap.add_argument("--settings", default="{}", help="overrides of the suite's efficiency settings as JSON")
    args = ap.parse_args(argv)
    os.environ.update(thread_env(args.threads, {}))
    out = Path(args.json_out)
    try:
        from kogata.eval.suite import load_suite

        suite = load_suite(args.suite)
        result = probe(_load_artifact(args.artifact), args.runtime, suite, threads=args.threads,
                       options=json.loads(args.options), settings=json.loads(args.settings),
                       progress=lambda msg: print(msg, flush=True))
        payload: dict[str, Any] = {"ok": True, "result": result}
        rc = 0
    except BaseException as exc:  # noqa: BLE001 - everything is reported as one line to the parent
        traceback.print_exc(file=sys.stderr)
        first = (str(exc).strip().splitlines() or [""])[0]
        payload = {"ok": False, "error": f"{type(exc).__name__}: {first}" if not isinstance(exc, KogataError) else str(exc)}
        rc = 1
    tmp = out.with_suffix(out.suffix + ".part")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
