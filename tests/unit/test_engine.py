"""The serving engine on tiny random GGUFs: batching must not change results, the ``llamacpp-engine`` eval
runtime must score like the ``llamacpp`` runtime, and the request lifecycle (stop strings, cancel, queue
limits, context limits, asyncio) must behave as the contract in ``kogata.runtimes.engine`` says."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from kogata.core.errors import KogataError
from kogata.runtimes import open_runtime, runtime_names
from kogata.runtimes.base import GenerateRequest, LoglikelihoodRequest
from kogata.runtimes.engine import ContextOverflow, EngineBusy, open_engine
from kogata.runtimes.engine.batched import BatchedLlamaEngine
from tests.unit._tiny import DOCS, gguf_artifact, hf_artifact, write_tiny_suite

PROMPTS = ["Hello, how can", "The refrigerator SK-R450", "冷蔵庫の保証", "Shipping takes three"]


def run(stream) -> dict:
    pieces = list(stream)
    return {
        "ids": [t for p in pieces for t in p.token_ids],
        "text": "".join(p.text for p in pieces),
        "pieces": pieces,
        "finish": pieces[-1].finish_reason,
        "usage": pieces[-1].usage,
    }


@pytest.fixture(scope="module")
def engine(tiny_llama_gguf):
    eng = open_engine(gguf_artifact(tiny_llama_gguf), parallel=4, ctx=128, threads=1)
    assert isinstance(eng, BatchedLlamaEngine)
    eng.start()
    yield eng
    eng.close()


def long_request(**kw) -> GenerateRequest:
    return GenerateRequest(prompt="Hello", max_tokens=100, ignore_eos=True, **kw)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_concurrent_greedy_equals_alone(arch, request):
    gguf = request.getfixturevalue(f"tiny_{arch}_gguf")
    eng = open_engine(gguf_artifact(gguf), parallel=4, ctx=128, threads=1, kv_type="f32")
    eng.start()
    try:
        alone, steps_alone = [], 0
        for p in PROMPTS:
            before = eng.steps
            alone.append(run(eng.submit(GenerateRequest(prompt=p, max_tokens=24, logprobs=True))))
            steps_alone += eng.steps - before
        before = eng.steps
        streams = eng.submit_all([GenerateRequest(prompt=p, max_tokens=24, logprobs=True) for p in PROMPTS])
        together = [run(s) for s in streams]
        steps_together = eng.steps - before
    finally:
        eng.close()
    for a, b in zip(alone, together, strict=True):
        assert a["ids"] == b["ids"]  # same tokens whether decoded alone or in one batch with three others
        assert a["text"] == b["text"]
        for pa, pb in zip(a["pieces"], b["pieces"]):
            assert pa.logprob == pytest.approx(pb.logprob, abs=1e-3)
        assert b["usage"].completion_tokens == len(b["ids"]) == 24 and b["finish"] == "length"
    # four sequences shared each llama_decode call: about a quarter of the steps
    assert steps_together <= steps_alone / 3, (steps_alone, steps_together)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_prompt_cache_reuses_a_shared_prefix_without_changing_results(arch, request):
    """A request whose prompt starts like the previous one's (a retry, a chat's next turn) reuses the slot's
    KV cells for the shared prefix; tokens and log-probabilities equal those of an engine without the cache."""
    art = gguf_artifact(request.getfixturevalue(f"tiny_{arch}_gguf"))
    first = GenerateRequest(prompt="The refrigerator SK-R450 has", max_tokens=12, logprobs=True, ignore_eos=True)
    results = {}
    for cache in (False, True):
        eng = open_engine(art, parallel=2, ctx=128, threads=1, kv_type="f32", prompt_cache=cache)
        eng.start()
        try:
            a = run(eng.submit(first))
            again = run(eng.submit(first))  # the same prompt: all but its last token come from the cache
            reused_again = eng.reused_tokens
            follow = GenerateRequest(prompt="The refrigerator SK-R450 has" + a["text"] + " and", max_tokens=12,
                                     logprobs=True, ignore_eos=True)
            b = run(eng.submit(follow))  # extends the first prompt and its answer, like a chat's next turn
            other = run(eng.submit(GenerateRequest(prompt="冷蔵庫の保証", max_tokens=12, logprobs=True, ignore_eos=True)))
            results[cache] = (a, again, b, other, reused_again, eng.reused_tokens, eng.tokenize(first.prompt))
        finally:
            eng.close()
    plain, cached = results[False], results[True]
    assert plain[5] == 0
    n_first = len(cached[6])
    assert cached[4] == n_first - 1  # the repeated prompt recomputed only its last token
    assert cached[5] > cached[4] + n_first - 1  # the follow-up reused the first prompt and (part of) its answer
    for x, y in zip(plain[:4], cached[:4], strict=True):
        assert x["ids"] == y["ids"]
        for px, py in zip(x["pieces"], y["pieces"]):
            assert px.logprob == pytest.approx(py.logprob, abs=1e-4)


def test_pieces_are_utf8_safe_and_usage_exact(engine):
    m = engine.model
    for p in PROMPTS:
        out = run(engine.submit(GenerateRequest(prompt=p, max_tokens=30)))
        assert all("\ufffd" not in piece.text for piece in out["pieces"])
        assert out["text"] == b"".join(m.piece(t) for t in out["ids"]).decode("utf-8", errors="ignore")
        assert out["usage"].prompt_tokens == len(engine.tokenize(p))
        assert out["usage"].completion_tokens == len(out["ids"])


def test_stop_string_is_never_leaked(engine):
    full = run(engine.submit(GenerateRequest(prompt="The refrigerator", max_tokens=30)))
    text = full["text"]
    assert len(text) >= 6, text
    stop = text[3:6]
    out = run(engine.submit(GenerateRequest(prompt="The refrigerator", max_tokens=30, stop=[stop, "never-there"])))
    assert out["finish"] == "stop"
    assert out["text"] == text[: text.find(stop)]
    emitted = ""
    for piece in out["pieces"]:
        emitted += piece.text
        assert stop not in emitted
    assert out["usage"].completion_tokens == len(out["ids"]) < 30


def test_logprobs_match_scoring(tiny_llama_gguf):
    rt = open_runtime("llamacpp-engine", gguf_artifact(tiny_llama_gguf), n_ctx=128, kv_type="f32")
    try:
        prompt = "Please restart the"
        out = run(rt.engine.submit(GenerateRequest(prompt=prompt, max_tokens=8, logprobs=True)))
        total = sum(p.logprob for p in out["pieces"] if p.token_ids)
        [(scored, greedy)] = rt.score_tokens([(rt.tok_encode(prompt), out["ids"])])
        assert total == pytest.approx(scored, abs=1e-3)
        assert greedy  # greedy decoding picked the argmax every time
        timed = rt.timed_generate("Hello", 5)
        assert timed.new_tokens == 5 and 0 < timed.ttft_s <= timed.total_s
        cancel = threading.Event()
        pieces = []
        for piece in rt.stream(long_request(), cancel=cancel):
            pieces.append(piece)
            cancel.set()
        assert pieces[-1].finish_reason == "cancelled" and len(pieces) < 100
    finally:
        rt.close()


def test_seeded_sampling_is_reproducible_and_batch_independent(engine):
    req = {"prompt": "Hello, how can", "max_tokens": 20, "temperature": 0.9, "top_p": 0.95, "top_k": 50}
    a = run(engine.submit(GenerateRequest(seed=5, **req)))
    b = run(engine.submit(GenerateRequest(seed=5, **req)))
    others = engine.submit_all([GenerateRequest(seed=5, **req), GenerateRequest(seed=6, **req), GenerateRequest(seed=7, **req)])
    c, d, e = (run(s) for s in others)
    assert a["ids"] == b["ids"] == c["ids"]
    assert d["ids"] != a["ids"] or e["ids"] != a["ids"]
    greedy = run(engine.submit(GenerateRequest(prompt="Hello, how can", max_tokens=20)))
    assert greedy["ids"] != a["ids"]  # sampling really sampled


def test_json_schema_output_is_valid(engine):
    schema = {"type": "object", "properties": {"colour": {"enum": ["red", "blue"]}, "n": {"type": "boolean"}},
              "required": ["colour", "n"]}
    out = run(engine.submit(GenerateRequest(prompt="JSON:", max_tokens=80, json_schema=schema)))
    assert out["finish"] == "stop", out["text"]  # the grammar ends the object, then only end-of-text is allowed
    value = json.loads(out["text"])
    assert value["colour"] in ("red", "blue") and isinstance(value["n"], bool)


def test_cancel_frees_the_slot_at_once(tiny_llama_gguf):
    eng = open_engine(gguf_artifact(tiny_llama_gguf), parallel=1, ctx=128, threads=1, max_waiting=4)
    eng.start()
    try:
        first = eng.submit(long_request())
        waiting = eng.submit(long_request())
        it = iter(first)
        next(it), next(it)
        waiting.cancel()
        first.cancel()
        rest = list(it)
        assert rest[-1].finish_reason == "cancelled" and rest[-1].usage.completion_tokens < 100
        assert run(waiting)["finish"] == "cancelled"
        deadline = time.monotonic() + 5
        while eng.stats()["running"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert eng.stats() == {"running": 0, "waiting": 0, "parallel": 1}
        assert run(eng.submit(GenerateRequest(prompt="Hi", max_tokens=3)))["usage"].completion_tokens == 3
    finally:
        eng.close()


def test_bounded_queue_and_queue_timeout(tiny_llama_gguf):
    """Deterministic: the engine thread is held between decode steps while the slot is taken, so the queued
    request cannot be admitted before its queue timeout, however fast the machine decodes."""
    eng = open_engine(gguf_artifact(tiny_llama_gguf), parallel=1, ctx=256, threads=1, max_waiting=1)
    eng.start()
    entered, gate = threading.Event(), threading.Event()

    def hold(_engine):
        entered.set()
        gate.wait(10)

    holder = threading.Thread(target=eng.call, args=(hold,), daemon=True)
    try:
        busy = eng.submit(GenerateRequest(prompt="Hello", max_tokens=240, ignore_eos=True))
        pieces = iter(busy)
        next(pieces)  # busy is running: the only slot is taken
        holder.start()
        assert entered.wait(10)
        queued = eng.submit(GenerateRequest(prompt="Hello", max_tokens=2), queue_timeout_s=0.05)
        with pytest.raises(EngineBusy):
            eng.submit(GenerateRequest(prompt="Hello", max_tokens=2))
        time.sleep(0.2)
        gate.set()
        with pytest.raises(EngineBusy, match="waited"):
            list(queued)
        busy.cancel()
        assert list(pieces)[-1].finish_reason in ("cancelled", "length")
    finally:
        gate.set()
        eng.close()


def test_context_overflow_names_the_limit(engine):
    with pytest.raises(ContextOverflow, match="128 tokens"):
        engine.submit(GenerateRequest(prompt="Hello " * 40, max_tokens=100))
    assert run(engine.submit(GenerateRequest(prompt="Hi", max_tokens=0)))["finish"] == "length"


def test_async_iteration_and_disconnect(engine):
    blocking = run(engine.submit(GenerateRequest(prompt="Shipping takes", max_tokens=12)))

    async def read(stream):
        return [t async for p in stream for t in p.token_ids]

    async def collect():
        streams = [engine.submit(GenerateRequest(prompt="Shipping takes", max_tokens=12)) for _ in range(4)]
        together = await asyncio.gather(*(read(s) for s in streams))  # four readers on one event loop
        stream = engine.submit(long_request())
        async for _ in stream:  # a client that goes away after the first piece
            break
        return together, stream

    together, dropped = asyncio.run(collect())
    assert together == [blocking["ids"]] * 4
    deadline = time.monotonic() + 5
    while not dropped.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dropped.cancelled and dropped.finish_reason == "cancelled"


def test_chat_uses_the_gguf_template(engine):
    text = engine.render_chat([{"role": "user", "content": "こんにちは"}])
    assert text == "<|im_start|>user\nこんにちは<|im_end|>\n<|im_start|>assistant\n"
    out = run(engine.submit(GenerateRequest(messages=[{"role": "user", "content": "こんにちは"}], max_tokens=5)))
    assert out["usage"].prompt_tokens == len(engine.tokenize(text, add_special=False))


def test_close_drains_in_flight_requests(tiny_llama_gguf):
    eng = open_engine(gguf_artifact(tiny_llama_gguf), parallel=2, ctx=128, threads=1)
    eng.start()
    streams = [eng.submit(GenerateRequest(prompt=p, max_tokens=10, ignore_eos=True)) for p in PROMPTS[:3]]
    eng.close(drain=True)
    assert [run(s)["usage"].completion_tokens for s in streams] == [10, 10, 10]
    assert not eng.ready()


def test_engine_runtime_is_registered_and_refuses_hf(tiny_llama_dir):
    assert "llamacpp-engine" in runtime_names()
    with pytest.raises(KogataError, match="cannot run hf"):
        open_runtime("llamacpp-engine", hf_artifact(tiny_llama_dir))


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_engine_runtime_scores_equal_llamacpp(arch, request, tmp_path):
    """The served build is the evaluated build: scoring through the engine equals the llamacpp runtime."""
    from kogata.eval.quality import evaluate_quality
    from kogata.eval.suite import load_suite

    art = gguf_artifact(request.getfixturevalue(f"tiny_{arch}_gguf"))
    reference = open_runtime("llamacpp", art)
    served = open_runtime("llamacpp-engine", art)
    try:
        reqs = [LoglikelihoodRequest("Question: warranty?\nAnswer:", " one year"),
                LoglikelihoodRequest("Question: warranty?\nAnswer:", " three days"),
                LoglikelihoodRequest("", "Hello"), LoglikelihoodRequest("冷蔵庫の", "保証期間")]
        for a, b in zip(reference.loglikelihood(reqs), served.loglikelihood(reqs), strict=True):
            assert b.logprob == pytest.approx(a.logprob, abs=1e-4) and (a.is_greedy, a.n_tokens) == (b.is_greedy, b.n_tokens)
        for a, b in zip(reference.loglikelihood_rolling(DOCS), served.loglikelihood_rolling(DOCS), strict=True):
            assert b.logprob == pytest.approx(a.logprob, abs=1e-3) and a.n_tokens == b.n_tokens
        suite = load_suite(write_tiny_suite(tmp_path / "suite"))
        ref, got = evaluate_quality(reference, suite), evaluate_quality(served, suite)
        for name in ref:
            ref[name].pop("seconds"), got[name].pop("seconds")
        assert json.dumps(got, sort_keys=True) == json.dumps(ref, sort_keys=True)
        gen = [GenerateRequest(prompt=p, max_tokens=10) for p in PROMPTS]
        assert served.generate(gen) == reference.generate(gen)
    finally:
        reference.close()
        served.close()


def test_serial_engine_for_hf_artifacts(tiny_llama_dir):
    eng = open_engine(hf_artifact(tiny_llama_dir), ctx=128)
    eng.start()
    try:
        streams = [eng.submit(GenerateRequest(prompt=p, max_tokens=6)) for p in PROMPTS[:2]]
        outs = [run(s) for s in streams]
        expected = eng.runtime.generate([GenerateRequest(prompt=p, max_tokens=6) for p in PROMPTS[:2]])
        assert [o["text"] for o in outs] == expected
        assert all(o["usage"].prompt_tokens == len(eng.tokenize(p)) for o, p in zip(outs, PROMPTS))
        with pytest.raises(ContextOverflow):
            eng.submit(GenerateRequest(prompt="Hello", max_tokens=500))
        with pytest.raises(KogataError, match="JSON schema"):  # refused at submit, not mid-stream
            eng.submit(GenerateRequest(prompt="Hello", max_tokens=5, json_schema={"type": "object"}))
        assert eng.stats() == {"running": 0, "waiting": 0, "parallel": 1}
    finally:
        eng.close()


def test_flash_attention_is_an_option_of_the_served_and_the_evaluated_engine(tiny_llama_gguf):
    """``kogata serve --flash-attn`` and ``kogata eval --runtime llamacpp-engine --flash-attn`` build the same
    engine; flash attention changes only float rounding, not what is scored or generated greedily."""
    from kogata.serve.config import ServeConfig
    from kogata.serve.models import default_engine_factory

    art = gguf_artifact(tiny_llama_gguf)
    for on in (True, False):
        served = default_engine_factory(art, ServeConfig(flash_attn=on, parallel=2, ctx=256))
        try:
            assert served.info()["flash_attn"] is on
        finally:
            served.close()
    plain, fa = open_runtime("llamacpp-engine", art), open_runtime("llamacpp-engine", art, flash_attn=True)
    try:
        assert fa.engine.info()["flash_attn"] is True and plain.engine.info()["flash_attn"] is False
        reqs = [LoglikelihoodRequest("Question: warranty?\nAnswer:", " one year"), LoglikelihoodRequest("冷蔵庫の", "保証期間")]
        for a, b in zip(plain.loglikelihood(reqs), fa.loglikelihood(reqs), strict=True):
            assert b.logprob == pytest.approx(a.logprob, abs=1e-2) and a.n_tokens == b.n_tokens
        gen = [GenerateRequest(prompt=p, max_tokens=10) for p in PROMPTS]
        assert fa.generate(gen) == plain.generate(gen)
    finally:
        plain.close()
        fa.close()
