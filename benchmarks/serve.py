"""``kogata serve`` benchmarks (issue 12), every configuration in its own process, loopback only.

1. single stream: decode tok/s through ``kogata serve`` ÷ raw llama-cpp-python on the same GGUF and threads;
2. gateway overhead: a 1-token non-streaming request over HTTP vs the same request on the engine directly
   (p50 / p99 in ms);
3. concurrency 1/4/8/16 clients (``--clients``): aggregate tok/s and TTFT p50/p95, ``kogata serve`` vs
   ``python -m llama_cpp.server`` (needs ``llama-cpp-python[server]``; skipped with a note when missing);
4. gateway RSS serving the GGUF;
5. ``--load``: 16 clients for 60 s — errors other than 429, RSS growth, p95 latency;
6. ``--guard POLICY``: aggregate tok/s at ``--guard-clients`` clients with the guard policy + audit log on ÷ both
   off (``--no-audit``), the two servers measured in alternation, ``--repeat`` pairs (target ≥ 0.95).

    python benchmarks/serve.py --gguf model.gguf --threads 2            # or --artifact NAME from the store
    python benchmarks/serve.py --gguf model.gguf --load --duration 60
    python benchmarks/serve.py --gguf tiny.gguf --quick                 # a few seconds: a smoke run
    python benchmarks/serve.py --artifact NAME --guard examples/policy-support-desk.yaml --repeat 5

The three servers of 1 and 3 run at the same time and are measured side by side: each repeat runs every client
count on each of them in turn, the order rotating. Medians over ``--repeat`` runs with min/max spread; threads, versions and the machine are in the JSON written to
``--out``. Run it on a quiet machine: two threads collapse when another process takes a core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write a short note to a customer about the shipping time of their refrigerator order."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)} if values else {}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


# ---- servers -------------------------------------------------------------------------------------
class Server:
    def __init__(self, cmd: list[str], port: int, env: dict[str, str], health: str):
        self.port, self.health = port, health
        self.log = tempfile.NamedTemporaryFile(prefix="serve-bench-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited ({self.proc.returncode}); log: {self.log.name}")
            try:
                if httpx.get(self.url + health, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"server did not become healthy; log: {self.log.name}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def kogata_server(home: Path, ref: str, threads: int, parallel: int, ctx: int, max_waiting: int = 64,
                  extra: list[str] | None = None) -> Server:
    port = free_port()
    env = {**os.environ, "KOGATA_HOME": str(home), "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "kogata", "serve", ref, "--alias", "bench", "--port", str(port), "--threads", str(threads),
           "--parallel", str(parallel), "--ctx", str(ctx), "--max-waiting", str(max_waiting), *(extra or [])]
    return Server(cmd, port, env, "/health")


def guard_ratio(home: Path, ref: str, args: argparse.Namespace) -> dict:
    """Aggregate tok/s with the guard policy and audit log on ÷ off, servers measured in alternation."""
    modes = {"off": ["--no-audit"], "on": ["--policy", str(Path(args.guard).resolve())]}
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for r in range(args.repeat):
        for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):  # alternate who goes first
            srv = kogata_server(home, ref, args.threads, args.parallel, args.ctx, extra=modes[mode])
            try:
                asyncio.run(concurrent(srv.url, 1, 8))  # warm-up
                runs[mode].append(asyncio.run(concurrent(srv.url, args.guard_clients, args.tokens)))
            finally:
                srv.stop()
    ratios = [on["aggregate_tok_s"] / off["aggregate_tok_s"] for on, off in zip(runs["on"], runs["off"])]
    return {"policy": args.guard, "clients": args.guard_clients, "pairs": args.repeat, "ratio_on_off": spread(ratios),
            "on_tok_s": spread([x["aggregate_tok_s"] for x in runs["on"]]),
            "off_tok_s": spread([x["aggregate_tok_s"] for x in runs["off"]]),
            "errors": {m: sum(x["errors"] for x in v) for m, v in runs.items()}}


def llama_cpp_server(gguf: Path, threads: int, ctx: int) -> Server | None:
    try:
        import llama_cpp.server.app  # noqa: F401  (needs the [server] extras)
    except ImportError:
        return None
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "bench", "--n_threads", str(threads),
           "--n_threads_batch", str(threads), "--n_ctx", str(ctx), "--host", "127.0.0.1", "--port", str(port)]
    return Server(cmd, port, {**os.environ, "OMP_NUM_THREADS": str(threads)}, "/v1/models")


def llama_server(gguf: Path, threads: int, ctx: int, parallel: int) -> Server | None:
    """llama.cpp's own ``llama-server``, built by ``make llama-tools`` from the same llama.cpp source the pinned
    llama-cpp-python ships (None when not built). ``-c`` is the total context: ``parallel`` slots of ``ctx``."""
    from kogata.core.errors import KogataError
    from kogata.methods.gguf.llamacpp_tools import find_tool

    try:
        binary = find_tool("llama-server")
    except KogataError:
        return None
    port = free_port()
    cmd = [str(binary), "-m", str(gguf), "-t", str(threads), "-tb", str(threads), "-c", str(ctx * parallel), "-np", str(parallel),
           "--host", "127.0.0.1", "--port", str(port), "-a", "bench", "--no-webui"]
    return Server(cmd, port, {**os.environ, "OMP_NUM_THREADS": str(threads)}, "/health")


# ---- clients -------------------------------------------------------------------------------------
async def one_stream(http: httpx.AsyncClient, url: str, tokens: int) -> dict:
    body = {"model": "bench", "prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    first = None
    n = 0
    usage = None
    status = None
    async with http.stream("POST", url + "/v1/completions", json=body) as r:
        status = r.status_code
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                n += 1
                if first is None:
                    first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    gen = (usage or {}).get("completion_tokens") or n
    return {"status": status, "ttft": first if first is not None else total, "total": total, "tokens": gen}


async def concurrent(url: str, clients: int, tokens: int) -> dict:
    async with httpx.AsyncClient(timeout=600) as http:
        t0 = time.perf_counter()
        got = await asyncio.gather(*(one_stream(http, url, tokens) for _ in range(clients)), return_exceptions=True)
        wall = time.perf_counter() - t0
    failures = [repr(r) for r in got if isinstance(r, BaseException)]
    runs = [r for r in got if not isinstance(r, BaseException)]
    if not runs:
        return {"errors": clients, "error": failures[0][:200]}
    ttfts = [r["ttft"] for r in runs]
    return {"aggregate_tok_s": sum(r["tokens"] for r in runs) / wall, "ttft_p50_s": pct(ttfts, 0.5),
            "ttft_p95_s": pct(ttfts, 0.95), "wall_s": wall,
            "errors": sum(r["status"] != 200 for r in runs) + len(failures)}


async def single_stream_decode(url: str, tokens: int) -> float:
    async with httpx.AsyncClient(timeout=600) as http:
        r = await one_stream(http, url, tokens)
    return (r["tokens"] - 1) / max(1e-9, r["total"] - r["ttft"])  # decode rate after the first token


def one_token_latencies(url: str, n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=60) as http:
        body = {"model": "bench", "prompt": "Hi", "max_tokens": 1, "temperature": 0}
        for _ in range(5):
            http.post(url + "/v1/completions", json=body)
        for _ in range(n):
            t0 = time.perf_counter()
            http.post(url + "/v1/completions", json=body).raise_for_status()
            out.append(time.perf_counter() - t0)
    return out


async def load(url: str, clients: int, duration: float, tokens: int, pid: int) -> dict:
    rss0 = rss_mb(pid)
    lat: list[float] = []
    codes: dict[int, int] = {}
    stop_at = time.monotonic() + duration

    async def worker(http: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            try:
                r = await one_stream(http, url, tokens)
                codes[r["status"]] = codes.get(r["status"], 0) + 1
                if r["status"] == 200:
                    lat.append(r["total"])
            except httpx.HTTPError:
                codes[-1] = codes.get(-1, 0) + 1

    async with httpx.AsyncClient(timeout=600) as http:
        await asyncio.gather(*(worker(http) for _ in range(clients)))
    rss1 = rss_mb(pid)
    errors = sum(v for k, v in codes.items() if k not in (200, 429))
    return {"clients": clients, "duration_s": duration, "status_counts": codes, "errors_other_than_429": errors,
            "latency_p50_s": pct(lat, 0.5), "latency_p95_s": pct(lat, 0.95), "rss_start_mb": rss0, "rss_end_mb": rss1,
            "rss_growth_pct": 100 * (rss1 - rss0) / rss0}


# ---- in-process baselines (run in a child process: `--_raw` / `--_engine`) -------------------------
def raw_llama_decode(gguf: str, threads: int, tokens: int, ctx: int) -> float:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=gguf, n_ctx=ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    ids = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
    rates = []
    for _ in range(2):
        llm.reset()
        first, n = None, 0
        for _tok in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            n += 1
            if first is None:
                first = time.perf_counter()
            if n >= tokens:
                break
        rates.append((n - 1) / max(1e-9, time.perf_counter() - first))
    llm.close()
    return max(rates)


def engine_one_token(gguf: str, threads: int, ctx: int, n: int) -> list[float]:
    from kogata.artifacts.artifact import Artifact
    from kogata.runtimes.base import GenerateRequest
    from kogata.runtimes.engine import open_engine

    path = Path(gguf)
    art = Artifact(path=path.parent, manifest={"id": "bench", "name": "bench", "format": "gguf", "model_file": path.name})
    eng = open_engine(art, parallel=4, ctx=ctx, threads=threads)
    eng.start()
    out = []
    try:
        for i in range(n + 5):
            t0 = time.perf_counter()
            eng.submit(GenerateRequest(prompt="Hi", max_tokens=1)).text()
            if i >= 5:
                out.append(time.perf_counter() - t0)
    finally:
        eng.close()
    return out


def child(flag: str, *args: str) -> object:
    out = subprocess.run([sys.executable, __file__, flag, *args], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- main ----------------------------------------------------------------------------------------
def prepare_store(args: argparse.Namespace) -> tuple[Path, str, Path]:
    """(KOGATA_HOME, artifact ref, GGUF path)."""
    from kogata.artifacts.store import Store

    if args.artifact:
        store = Store()
        art = store.get(args.artifact)
        return store.home, art.id, Path(art.gguf_path)
    from kogata.artifacts.importer import import_path

    home = Path(tempfile.mkdtemp(prefix="serve-bench-home-"))
    art = import_path(Store(home), str(args.gguf), name="bench-model", log=lambda m: None)
    return home, art.id, Path(art.gguf_path)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_raw":
        print(json.dumps(raw_llama_decode(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--_engine":
        print(json.dumps(engine_one_token(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", type=Path, help="a GGUF file (imported into a temporary store)")
    src.add_argument("--artifact", help="an artifact name or id in $KOGATA_HOME")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=64, help="tokens per request")
    p.add_argument("--clients", default="1,4,8,16")
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--ctx", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--requests", type=int, default=200, help="1-token requests for the overhead measurement")
    p.add_argument("--load", action="store_true", help="run the 16-client load test instead")
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 repeat, 1/4 clients, 20 requests")
    p.add_argument("--guard", metavar="POLICY", help="only measure throughput with this guard policy + audit on ÷ off")
    p.add_argument("--guard-clients", type=int, default=8)
    p.add_argument("--flash-attn", action="store_true", help="serve with `kogata serve --flash-attn` (llama-server's "
                   "default `-fa auto` turns it on where supported)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.quick:
        args.repeat, args.clients, args.requests, args.duration = 1, "1,4", 20, min(args.duration, 5)
    home, ref, gguf = prepare_store(args)
    clients = [int(c) for c in args.clients.split(",")]
    result: dict = {"gguf": str(gguf), "threads": args.threads, "tokens": args.tokens, "parallel": args.parallel,
                    "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
                    "python": sys.version.split()[0]}
    try:
        from importlib.metadata import version

        result["llama_cpp_python"] = version("llama-cpp-python")
    except Exception:  # noqa: BLE001
        pass

    if args.guard:
        result["guard"] = guard_ratio(home, ref, args)
        text = json.dumps(result, indent=2, default=str)
        print(text)
        if args.out:
            args.out.write_text(text + "\n", encoding="utf-8")
        return
    result["flash_attn"] = args.flash_attn
    if args.load:
        srv = kogata_server(home, ref, args.threads, 16, args.ctx, extra=["--flash-attn"] if args.flash_attn else None)
        try:
            result["gateway_rss_mb"] = rss_mb(srv.proc.pid)
            result["load"] = asyncio.run(load(srv.url, 16, args.duration, args.tokens, srv.proc.pid))
        finally:
            srv.stop()
    else:
        compare(result, home, ref, gguf, clients, args)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if not args.load:
        print("\n" + summary(result))
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


def compare(result: dict, home: Path, ref: str, gguf: Path, clients: list[int], args: argparse.Namespace) -> None:
    """kogata serve, llama-server and llama_cpp.server, all three started at once and measured side by side:
    every repeat runs each client count on each server in turn (the order rotates), so a slow spell of the
    machine hits all three alike. Idle servers wait in poll/sleep, not spinning."""
    servers: dict[str, Server] = {}
    try:
        servers["kogata_serve"] = kogata_server(home, ref, args.threads, args.parallel, args.ctx,
                                                extra=["--flash-attn"] if args.flash_attn else None)
        http_1 = one_token_latencies(servers["kogata_serve"].url, args.requests)  # alone: the others not started yet
        native = llama_server(gguf, args.threads, args.ctx, args.parallel)
        if native is None:
            result["llama_server"] = "skipped: make llama-tools"
        else:
            servers["llama_server"] = native
        other = llama_cpp_server(gguf, args.threads, args.ctx)
        if other is None:
            result["llama_cpp_server"] = "skipped: pip install 'llama-cpp-python[server]'"
        else:
            servers["llama_cpp_server"] = other
        ours = servers["kogata_serve"]
        result["gateway_rss_mb"] = rss_mb(ours.proc.pid)
        names = list(servers)
        single: dict[str, list[float]] = {n: [] for n in names}
        conc: dict[str, dict[int, list[dict]]] = {n: {c: [] for c in clients} for n in names}
        for r in range(args.repeat):
            order = names[r % len(names):] + names[: r % len(names)]
            for n in order:
                single[n].append(asyncio.run(single_stream_decode(servers[n].url, args.tokens)))
            for c in clients:
                for n in order:
                    conc[n][c].append(asyncio.run(concurrent(servers[n].url, c, args.tokens)))
            print(f"round {r + 1}/{args.repeat} done", file=sys.stderr, flush=True)
        result["gateway_rss_mb_after"] = rss_mb(ours.proc.pid)
        for n in names:
            result[n] = {"single_stream_decode_tok_s": spread(single[n]), "concurrency": conc[n]}
    finally:
        for srv in servers.values():
            srv.stop()
    served = single["kogata_serve"]
    raw = [child("--_raw", str(gguf), str(args.threads), str(args.tokens), str(args.ctx)) for _ in range(args.repeat)]
    direct = child("--_engine", str(gguf), str(args.threads), str(args.ctx), str(args.requests))
    result["raw_llama_cpp"] = {"single_stream_decode_tok_s": spread(raw)}
    result["single_stream_ratio"] = spread([s / r for s, r in zip(sorted(served), sorted(raw))])
    over = [h - d for h, d in zip(sorted(http_1), sorted(direct))]
    result["gateway_overhead_ms"] = {"p50": 1000 * pct(over, 0.5), "p99": 1000 * pct(over, 0.99),
                                     "http_p50": 1000 * pct(http_1, 0.5), "engine_p50": 1000 * pct(direct, 0.5)}
    for key in ("llama_server", "llama_cpp_server"):
        if isinstance(result.get(key), dict):
            result[f"kogata_vs_{key}"] = {
                c: statistics.median(x["aggregate_tok_s"] for x in conc["kogata_serve"][c])
                / statistics.median(y["aggregate_tok_s"] for y in conc[key][c]) for c in clients}


def summary(result: dict) -> str:
    """A markdown table: aggregate tok/s median [min–max] and TTFT p95 per client count for each server."""
    def cell(runs: list[dict]) -> str:
        tok = [x["aggregate_tok_s"] for x in runs if "aggregate_tok_s" in x]
        if not tok:
            return "–"
        ttft = statistics.median(x["ttft_p95_s"] for x in runs if "ttft_p95_s" in x)
        errors = sum(x.get("errors", 0) for x in runs)
        return (f"{statistics.median(tok):.1f} [{min(tok):.1f}–{max(tok):.1f}], TTFT p95 {ttft:.2f} s"
                + (f", {errors} errors" if errors else ""))

    servers = [(n, result[k]) for n, k in (("kogata serve", "kogata_serve"), ("llama-server", "llama_server"),
                                           ("llama_cpp.server", "llama_cpp_server")) if isinstance(result.get(k), dict)]
    lines = [f"threads {result['threads']}, {result['tokens']} tokens/request, parallel {result['parallel']}, "
             f"flash_attn {result.get('flash_attn', False)}, {Path(result['gguf']).name}",
             "", "| clients | " + " | ".join(n for n, _ in servers) + " | kogata ÷ llama-server | kogata ÷ llama_cpp.server |",
             "|---|" + "---|" * (len(servers) + 2)]
    for c in result["kogata_serve"]["concurrency"]:
        row = [cell(s["concurrency"].get(c, [])) for _, s in servers]

        ratios = [result.get(f"kogata_vs_{k}", {}).get(c) for k in ("llama_server", "llama_cpp_server")]
        lines.append(f"| {c} | " + " | ".join(row) + " | " + " | ".join("–" if x is None else f"{x:.2f}×" for x in ratios) + " |")
    single = result["single_stream_ratio"]
    over = result["gateway_overhead_ms"]
    lines += ["", f"single stream ÷ raw llama-cpp-python: {single['median']:.2f}× [{single['min']:.2f}–{single['max']:.2f}]; "
              f"gateway overhead on a 1-token request: p50 {over['p50']:.2f} ms, p99 {over['p99']:.2f} ms; "
              f"gateway RSS {result['gateway_rss_mb']:.0f} MiB ({result.get('gateway_rss_mb_after', 0):.0f} after)"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
