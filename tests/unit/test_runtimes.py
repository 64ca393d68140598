"""The torch and llamacpp runtimes on tiny random models: scoring against a brute-force reference,
agreement between runtimes on the same fp32 model, generation, timing and the registry's errors."""

from __future__ import annotations

import math

import pytest
import torch

import kogata.core.settings as settings
from kogata.core.errors import KogataError
from kogata.runtimes import get_runtime_class, open_runtime, runtime_names
from kogata.runtimes.base import GenerateRequest, LoglikelihoodRequest, Runtime
from kogata.runtimes.scoring import render_plain_chat, rolling_windows
from tests.unit._tiny import DOCS, gguf_artifact, hf_artifact

REQUESTS = [
    LoglikelihoodRequest("Hello, how can I", " help you today?"),
    LoglikelihoodRequest("", "Shipping takes three days."),
    LoglikelihoodRequest("The refrigerator ", "SK-R450"),  # trailing space moves to the continuation
    LoglikelihoodRequest("The refrigerator ", "SK-R451"),
    LoglikelihoodRequest("冷蔵庫の保証期間は", "一年間です。"),
    LoglikelihoodRequest("Customer message: The app crashes.\nTopic:", " technical"),
    LoglikelihoodRequest("Customer message: The app crashes.\nTopic:", " billing"),
]


@pytest.fixture(scope="module", autouse=True)
def _one_runtime_thread():
    settings.set_threads(1)


@pytest.fixture(scope="module")
def torch_llama(tiny_llama_dir):
    rt = open_runtime("torch", hf_artifact(tiny_llama_dir), max_length=48)
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def llamacpp_llama(tiny_llama_gguf):
    pytest.importorskip("llama_cpp")
    rt = open_runtime("llamacpp", gguf_artifact(tiny_llama_gguf), n_ctx=48, kv_type="f32")
    yield rt
    rt.close()


def reference_logprob(model, ctx: list[int], cont: list[int]) -> float:
    """Brute force: full logits of the whole sequence, then log_softmax."""
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont])).logits[0].double()
    lp = torch.log_softmax(logits, dim=-1)
    return sum(float(lp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_protocol(torch_llama):
    assert {"torch", "llamacpp", "embedder"} <= set(runtime_names())
    assert isinstance(torch_llama, Runtime)


@pytest.mark.parametrize(("name", "kind", "formats"), [("torch", "lm", {"hf", "gguf"}), ("llamacpp", "lm", {"gguf"}), ("embedder", "embedder", {"hf"})])
def test_every_runtime_declares_kind_formats_options(name, kind, formats):
    cls = get_runtime_class(name)
    assert cls.name == name and cls.kind == kind and set(cls.formats) == formats
    assert isinstance(cls.options, tuple)


def test_unknown_runtime(tiny_llama_dir):
    with pytest.raises(KogataError, match=r"unknown runtime 'torh'.*did you mean 'torch'.*llamacpp"):
        open_runtime("torh", hf_artifact(tiny_llama_dir))


def test_llamacpp_refuses_hf_artifact(tiny_llama_dir):
    with pytest.raises(KogataError) as err:
        open_runtime("llamacpp", hf_artifact(tiny_llama_dir, name="tiny-hf"))
    assert "GGUF" in str(err.value) and "kogata compress tiny-hf --method export-gguf" in str(err.value)


def test_path_without_manifest_is_refused(tmp_path):
    with pytest.raises(KogataError, match="not an artifact folder"):
        open_runtime("torch", tmp_path)


def test_unknown_option_and_bad_values(tiny_llama_dir):
    with pytest.raises(KogataError, match="no option 'n_ctx'"):
        open_runtime("torch", hf_artifact(tiny_llama_dir), n_ctx=8)
    with pytest.raises(KogataError, match="dtype"):
        open_runtime("torch", hf_artifact(tiny_llama_dir), dtype="float8")
    with pytest.raises(KogataError, match="int8 needs dtype float32"):
        open_runtime("torch", hf_artifact(tiny_llama_dir), dtype="bfloat16", int8=True)


# ----------------------------------------------------------------------------- torch scoring


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_torch_loglikelihood_matches_brute_force(arch, tiny_llama_dir, tiny_gemma3_dir):
    folder = {"llama": tiny_llama_dir, "gemma3": tiny_gemma3_dir}[arch]
    rt = open_runtime("torch", hf_artifact(folder), batch_size=3)
    try:
        results = rt.loglikelihood(REQUESTS)
        for req, res in zip(REQUESTS, results):
            ctx, cont = rt.encode_pair(req.context, req.continuation)
            assert res.n_tokens == len(cont)
            assert res.logprob == pytest.approx(reference_logprob(rt.model, ctx, cont), abs=1e-4)
        # batching and order do not change the numbers
        singles = [rt.loglikelihood([r])[0].logprob for r in REQUESTS]
        assert singles == pytest.approx([r.logprob for r in results], abs=1e-4)
    finally:
        rt.close()


def test_trailing_space_and_empty_context_split(torch_llama):
    ctx, cont = torch_llama.encode_pair("The refrigerator ", "SK-R450")
    whole = torch_llama.encode("The refrigerator SK-R450")
    assert ctx + cont == whole and ctx == torch_llama.encode("The refrigerator")
    ctx, cont = torch_llama.encode_pair("", "Shipping")
    assert ctx == [torch_llama.prefix_token_id] and cont == torch_llama.encode("Shipping", add_special_tokens=False)


def test_softcapping_is_applied(tiny_gemma3_dir):
    rt = open_runtime("torch", hf_artifact(tiny_gemma3_dir))
    try:
        rt.model.config.final_logit_softcapping = 2.0  # the model's forward applies it too
        rt._softcap = 2.0
        req = REQUESTS[0]
        ctx, cont = rt.encode_pair(req.context, req.continuation)
        assert rt.loglikelihood([req])[0].logprob == pytest.approx(reference_logprob(rt.model, ctx, cont), abs=1e-4)
    finally:
        rt.close()


def test_rolling_windows_predict_every_token_once():
    tokens = list(range(100, 123))
    windows = list(rolling_windows(tokens, prefix_token=1, max_len=5))
    assert [t for _, cont in windows for t in cont] == tokens
    assert windows[0] == ([1], tokens[:5])
    assert all(len(ctx) + len(cont) - 1 <= 5 for ctx, cont in windows)
    assert windows[-1][0] + windows[-1][1] == tokens[-6:]  # the last window keeps a full context


def test_rolling_loglikelihood_matches_windowed_brute_force(torch_llama):
    text = DOCS[2]
    tokens = torch_llama.encode(text, add_special_tokens=False)
    assert len(tokens) > 2 * torch_llama.max_length  # several windows
    expected = sum(reference_logprob(torch_llama.model, c, k) for c, k in rolling_windows(tokens, torch_llama.prefix_token_id, 48))
    (res,) = torch_llama.loglikelihood_rolling([text])
    assert res.n_tokens == len(tokens)
    assert res.logprob == pytest.approx(expected, abs=1e-3)


def test_int8_and_bfloat16_run(tiny_llama_dir, torch_llama):
    ref = torch_llama.loglikelihood(REQUESTS[:2])
    for opts in ({"int8": "true"}, {"dtype": "bfloat16"}):
        rt = open_runtime("torch", hf_artifact(tiny_llama_dir), **opts)
        try:
            got = rt.loglikelihood(REQUESTS[:2])
            assert all(math.isfinite(g.logprob) for g in got)
            assert [g.logprob for g in got] == pytest.approx([r.logprob for r in ref], rel=0.1)
            assert rt.info()["int8"] == bool(opts.get("int8")) and rt.info()["dtype"] == opts.get("dtype", "float32")
        finally:
            rt.close()


def test_torch_runs_a_gguf_artifact(tiny_llama_gguf, torch_llama):
    rt = open_runtime("torch", gguf_artifact(tiny_llama_gguf), max_length=48)
    try:
        assert [r.logprob for r in rt.loglikelihood(REQUESTS)] == pytest.approx([r.logprob for r in torch_llama.loglikelihood(REQUESTS)], abs=1e-4)
    finally:
        rt.close()


# ----------------------------------------------------------------------------- generation


def test_generate_stops_and_cuts(torch_llama):
    free = torch_llama.generate([GenerateRequest(prompt="Hello, how", max_tokens=12)])[0]
    assert free
    stop = free[3:5] if len(free) >= 5 else free[-1]
    cut = torch_llama.generate([GenerateRequest(prompt="Hello, how", max_tokens=12, stop=[stop])])[0]
    assert stop not in cut and free.startswith(cut)


def test_chat_and_plain_rendering(torch_llama):
    out = torch_llama.chat([{"role": "user", "content": "Hi"}], max_tokens=4)
    assert isinstance(out, str)
    assert render_plain_chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]) == "System: Be brief.\nUser: Hi\nAssistant:"


@pytest.mark.parametrize("which", ["torch", "llamacpp"])
def test_timed_generate_and_info(which, torch_llama, request):
    rt = torch_llama if which == "torch" else request.getfixturevalue("llamacpp_llama")
    timed = rt.timed_generate("Hello, how can I help", 6)
    assert timed.new_tokens == 6 and timed.prompt_tokens == len(rt.tokenize("Hello, how can I help"))
    assert 0 < timed.ttft_s <= timed.total_s
    info = rt.info()
    assert info["runtime"] == which and info["threads"] == 1


# ----------------------------------------------------------------------------- torch vs llama.cpp


def test_llamacpp_tokenizes_like_torch(torch_llama, llamacpp_llama):
    for req in REQUESTS:
        assert llamacpp_llama.encode_pair(req.context, req.continuation) == torch_llama.encode_pair(req.context, req.continuation)


def test_llamacpp_loglikelihood_agrees_with_torch(torch_llama, llamacpp_llama):
    a, b = torch_llama.loglikelihood(REQUESTS), llamacpp_llama.loglikelihood(REQUESTS)
    for x, y in zip(a, b):
        assert x.n_tokens == y.n_tokens and x.is_greedy == y.is_greedy
        assert abs(x.logprob - y.logprob) < 1e-3
    ra, rb = torch_llama.loglikelihood_rolling(DOCS), llamacpp_llama.loglikelihood_rolling(DOCS)
    for x, y in zip(ra, rb):
        assert x.n_tokens == y.n_tokens and abs(x.logprob - y.logprob) < 1e-3


def test_llamacpp_prefix_reuse_does_not_change_scores(llamacpp_llama):
    together = [r.logprob for r in llamacpp_llama.loglikelihood(REQUESTS)]
    alone = [llamacpp_llama.loglikelihood([r])[0].logprob for r in REQUESTS]
    assert together == pytest.approx(alone, abs=1e-5)


def test_llamacpp_default_kv_cache_agrees_within_tolerance(tiny_gemma3_dir, tiny_gemma3_gguf):
    pytest.importorskip("llama_cpp")
    rt = open_runtime("torch", hf_artifact(tiny_gemma3_dir))
    lc = open_runtime("llamacpp", gguf_artifact(tiny_gemma3_gguf))  # f16 KV cache, default context
    try:
        for x, y in zip(rt.loglikelihood(REQUESTS), lc.loglikelihood(REQUESTS)):
            assert abs(x.logprob - y.logprob) < 2e-3
    finally:
        rt.close(), lc.close()


def test_llamacpp_generation_matches_torch_greedy(torch_llama, llamacpp_llama):
    reqs = [GenerateRequest(prompt="Please restart the", max_tokens=8, stop=["\n"])]
    assert llamacpp_llama.generate(reqs) == torch_llama.generate(reqs)
    assert isinstance(llamacpp_llama.chat([{"role": "user", "content": "Hi"}], max_tokens=4), str)
