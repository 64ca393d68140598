"""The efficiency probe: fixed-length prompts, the measurement protocol, percentiles, the subprocess path.

Fake runtimes report made-up times; nothing here asserts on how fast anything really ran.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from kogata.core.errors import KogataError
from kogata.eval import efficiency as eff
from kogata.eval.kpi import EFFICIENCY_METRICS
from kogata.runtimes.base import GenerateRequest, TimedGeneration


class FakeRuntime:
    """Words are tokens; prefill takes 0.01 s per token, each new token 0.1 s."""

    name = "fake"

    def __init__(self):
        self.calls = []
        self.closed = False

    def tokenize(self, text):
        return text.split()

    def timed_generate(self, prompt, max_new_tokens, *, ignore_eos=True):
        self.calls.append((prompt, max_new_tokens, ignore_eos))
        n = len(self.tokenize(prompt))
        new = max_new_tokens if ignore_eos else max(1, max_new_tokens // 2)
        ttft = 0.01 * n + 0.1
        return TimedGeneration(prompt_tokens=n, new_tokens=new, ttft_s=ttft, total_s=ttft + 0.1 * (new - 1))

    def generate(self, requests):
        for r in requests:
            self.calls.append(("generate", r.prompt if r.prompt is not None else "chat", r.max_tokens))
        return ["ok" for _ in requests]

    def chat(self, messages, max_tokens=256, stop=None):
        return self.generate([GenerateRequest(messages=messages, max_tokens=max_tokens)])[0]

    def info(self):
        return {"runtime": "fake", "threads": 1}

    def close(self):
        self.closed = True


class FakeTask:
    def __init__(self, name, type_, prompts):
        self.name, self.type, self._prompts = name, type_, prompts

    def prompts(self, n):
        return self._prompts[:n]


def _suite(**efficiency):
    qa = FakeTask("qa", "generate", [GenerateRequest(prompt=f"question number {i} about the fridge", max_tokens=8) for i in range(5)])
    chat = FakeTask("chat", "generate", [GenerateRequest(messages=[{"role": "user", "content": "hello there"}], max_tokens=4)])
    mc = FakeTask("intent", "multiple_choice", [GenerateRequest(prompt="never timed")])
    return SimpleNamespace(tasks=[qa, chat, mc], efficiency={"prompt_tokens": 16, "gen_tokens": 5, "repeats": 3, "warmup": 2,
                                                             "latency_prompts": 4, **efficiency})


def test_percentile_matches_linear_interpolation():
    assert eff.percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert eff.percentile([10, 20, 30, 40, 50], 95) == pytest.approx(48.0)
    assert eff.percentile([7], 95) == 7
    assert eff.percentile([], 50) is None
    assert eff.spread([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0}


@pytest.mark.parametrize("n", [1, 7, 16, 200])
def test_fixed_length_prompt_has_exactly_n_tokens(n):
    tokenize = lambda s: s.split()  # noqa: E731
    prompt, count = eff.fixed_length_prompt(tokenize, "alpha beta gamma delta epsilon", n)
    assert count == n and len(prompt.split()) == n


def test_measure_runs_warmup_repeats_and_latency_prompts():
    rt = FakeRuntime()
    res = eff.measure(rt, _suite())
    throughput = [c for c in rt.calls if c[0] != "generate" and c[1] == 5]
    assert len(throughput) == 2 + 3 and all(c[2] is True for c in throughput)  # warm-up + timed repeats, EOS ignored
    assert all(c[1] == 5 and len(c[0].split()) == 16 for c in throughput)
    assert len(res["runs"]) == 3 and res["settings"]["prompt_tokens_actual"] == 16
    ttft = 0.01 * 16 + 0.1
    assert res["prefill_tok_s"]["median"] == pytest.approx(16 / ttft)
    assert res["decode_tok_s"]["median"] == pytest.approx(10.0)
    lat = res["latency"]
    assert lat["n"] == 4  # round-robin over the generate tasks: qa, chat, qa, qa
    served = [c for c in rt.calls if c[0] == "generate"]
    assert [c[1] for c in served] == ["question number 0 about the fridge", "chat", "question number 1 about the fridge",
                                      "question number 2 about the fridge"]
    ttft_probes = [c for c in rt.calls if c[0] != "generate" and c[1] == 1]
    assert len(ttft_probes) == 3  # plain prompts only; a chat prompt's first token is the runtime's business
    assert not any("never timed" in str(c) for c in rt.calls)
    assert lat["latency_p50_ms"] > 0 and lat["ttft_p95_ms"] >= lat["ttft_p50_ms"]


def test_probe_adds_load_memory_size_and_machine(monkeypatch):
    rt = FakeRuntime()
    artifact = SimpleNamespace(params=2_000_000, bytes=3 * 2**20, path="/nowhere", id="x", name="x")
    res = eff.probe(artifact, "fake", _suite(), threads=1, open_runtime=lambda name, art, **o: rt)
    assert rt.closed
    assert set(res["metrics"]) == set(EFFICIENCY_METRICS)
    m = res["metrics"]
    assert m["params_m"] == pytest.approx(2.0) and m["disk_mb"] == pytest.approx(3.0)
    assert m["peak_rss_mb"] > 0 and m["load_s"] >= 0
    assert res["threads"] == 1 and res["runtime_info"]["runtime"] == "fake"
    assert {"cpu", "logical_cores", "os", "python", "ram_gb"} <= set(res["machine"])
    assert {"torch", "transformers", "llama_cpp", "gguf", "python"} <= set(res["versions"])
    json.dumps(res)  # everything is JSON-serialisable


def test_subprocess_failure_is_one_line(tmp_path):
    art = SimpleNamespace(path=tmp_path / "missing-artifact", id="abc", name="ghost")
    with pytest.raises(KogataError) as err:
        eff.run_probe_subprocess(art, "torch", tmp_path / "no-suite.yaml", threads=1, work_dir=tmp_path / "logs", timeout=300)
    msg = str(err.value)
    assert "efficiency probe failed for ghost on torch" in msg and "Traceback" not in msg and "\n" not in msg
    assert "full log:" in msg and list((tmp_path / "logs").glob("*.log"))


def test_peak_rss_is_the_childs_own_not_the_parents():
    """ru_maxrss survives exec: a probe started by a big parent must not report the parent's peak."""
    import subprocess
    import sys

    ballast = bytearray(400 * 2**20)  # the parent holds 400 MiB resident
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    out = subprocess.run([sys.executable, "-c", "from kogata.eval.efficiency import peak_rss_mb; print(peak_rss_mb())"],
                         capture_output=True, text=True, check=True)
    assert float(out.stdout) < 300, out.stdout
    del ballast
