"""Streaming, sampling, logprobs, cancellation and JSON-schema output of the torch and llamacpp runtimes on the
tiny random models; the stop-string/UTF-8 rules of the shared assembler; a GGUF served without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import kogata.core.settings as settings
from kogata.core.errors import KogataError
from kogata.runtimes import get_runtime_class, open_runtime
from kogata.runtimes.base import GenerateRequest, StreamPiece
from kogata.runtimes.streaming import StreamAssembler
from tests.unit._tiny import gguf_artifact, hf_artifact

PROMPTS = ["Hello, how", "Please restart the", "冷蔵庫の保証期間は", "0123456789 ¥1,980"]
JAPANESE = "冷蔵庫の保証期間は一年間です。アプリを再起動してください。"


@pytest.fixture(scope="module", autouse=True)
def _one_runtime_thread():
    settings.set_threads(1)


@pytest.fixture(scope="module")
def torch_rt(tiny_llama_dir):
    rt = open_runtime("torch", hf_artifact(tiny_llama_dir), max_length=64)
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def llama_rt(tiny_llama_gguf):
    pytest.importorskip("llama_cpp")
    rt = open_runtime("llamacpp", gguf_artifact(tiny_llama_gguf), n_ctx=256, kv_type="f32")
    yield rt
    rt.close()


@pytest.fixture(params=["torch", "llamacpp"])
def rt(request):
    return request.getfixturevalue({"torch": "torch_rt", "llamacpp": "llama_rt"}[request.param])


def collect(pieces) -> tuple[str, list[StreamPiece]]:
    pieces = list(pieces)
    return "".join(p.text for p in pieces), pieces


# ----------------------------------------------------------------------------- the assembler


def test_assembler_holds_back_a_possible_stop_string_and_cuts_at_it():
    asm = StreamAssembler(["\nUser:"], prompt_tokens=5)
    steps = ["Hi", "Hi\n", "Hi\nUs", "Hi\nUsa", "Hi\nUsa\nUse", "Hi\nUsa\nUser: more"]
    pieces = [asm.step(i, text) for i, text in enumerate(steps)]
    assert [p.text for p in pieces] == ["Hi", "", "", "\nUsa", "", ""]
    assert pieces[-1].finish_reason == "stop" and pieces[-1].token_ids == [5]
    assert asm.text == "Hi\nUsa" and "".join(p.text for p in pieces) == asm.text
    assert pieces[-1].usage.prompt_tokens == 5 and pieces[-1].usage.completion_tokens == 6
    assert all(p.finish_reason is None and p.usage is None for p in pieces[:-1])


def test_assembler_flushes_held_text_when_generation_ends_otherwise():
    asm = StreamAssembler(["END"], prompt_tokens=1)
    assert asm.step(1, "ok E").text == "ok "
    last = asm.finish("length")
    assert last.text == "E" and last.finish_reason == "length" and last.usage.completion_tokens == 1
    assert asm.text == "ok E"


def test_assembler_earliest_of_several_stops_wins():
    asm = StreamAssembler(["b", "zz", ""], prompt_tokens=0)
    piece = asm.step(1, "a zz b")
    assert piece.finish_reason == "stop" and asm.text == "a " and piece.text == "a "


# ----------------------------------------------------------------------------- greedy = what generate() gave before


def test_torch_greedy_equals_transformers_generate(torch_rt):
    for prompt in PROMPTS:
        ids = torch_rt.tok_encode(prompt)
        with torch.no_grad():
            out = torch_rt.model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                          attention_mask=torch.ones(1, len(ids), dtype=torch.long), pad_token_id=0)
        new = out[0, len(ids):].tolist()
        new = new[: next((i for i, t in enumerate(new) if t in torch_rt._eos), len(new))]
        expected = torch_rt.tokenizer.decode(new, skip_special_tokens=True).rstrip("\ufffd")
        assert torch_rt.generate([GenerateRequest(prompt=prompt, max_tokens=12)]) == [expected]


def test_llamacpp_greedy_equals_create_completion(llama_rt):
    for prompt in PROMPTS:
        for stop in ([], ["e"], ["\n"]):
            ids = llama_rt.tok_encode(prompt)
            old = llama_rt.llm.create_completion(prompt=ids, max_tokens=12, temperature=0.0, top_k=1, repeat_penalty=1.0, stop=stop or None)
            new = llama_rt.generate([GenerateRequest(prompt=prompt, max_tokens=12, stop=stop)])[0]
            if old["usage"]["completion_tokens"] <= 12:
                assert new == old["choices"][0]["text"]
            else:  # create_completion ran past max_tokens to finish a multi-byte character; kogata stops at the limit
                assert old["choices"][0]["text"].startswith(new)


def test_llamacpp_chat_equals_create_chat_completion(llama_rt, torch_rt):
    for content in ("Hi", "冷蔵庫の保証期間は?"):
        msgs = [{"role": "user", "content": content}]
        old = llama_rt.llm.create_chat_completion(messages=msgs, max_tokens=10, temperature=0.0, top_k=1, repeat_penalty=1.0)
        if old["usage"]["completion_tokens"] <= 10:
            assert llama_rt.chat(msgs, max_tokens=10) == (old["choices"][0]["message"]["content"] or "")
        pieces = list(llama_rt.stream(GenerateRequest(messages=msgs, max_tokens=2)))
        assert pieces[-1].usage.prompt_tokens == old["usage"]["prompt_tokens"]
        # the GGUF's template as llama-cpp-python renders it = the HF tokenizer's template, token for token
        assert llama_rt._prompt_ids(GenerateRequest(messages=msgs))[0] == torch_rt._prompt_ids(GenerateRequest(messages=msgs))[0]


def test_runtimes_agree_on_greedy_stream(torch_rt, llama_rt):
    for prompt in PROMPTS:
        req = GenerateRequest(prompt=prompt, max_tokens=10, logprobs=True, ignore_eos=True)
        a, b = list(torch_rt.stream(req)), list(llama_rt.stream(req))
        assert [t for p in a for t in p.token_ids] == [t for p in b for t in p.token_ids]
        for x, y in zip(a, b):
            if x.logprob is not None:
                assert y.logprob == pytest.approx(x.logprob, abs=1e-3)


# ----------------------------------------------------------------------------- stream contract


def test_stream_concatenates_to_generate_with_exact_usage(rt):
    for prompt in PROMPTS:
        req = GenerateRequest(prompt=prompt, max_tokens=9, ignore_eos=True)
        text, pieces = collect(rt.stream(req))
        assert text == rt.generate([req])[0]
        last = pieces[-1]
        assert last.finish_reason == "length" and all(p.finish_reason is None for p in pieces[:-1])
        assert last.usage.prompt_tokens == len(rt.tokenize(prompt))
        assert last.usage.completion_tokens == 9 == sum(len(p.token_ids) for p in pieces)
        assert "\ufffd" not in text


def test_stop_string_never_leaks_into_a_piece(rt):
    free = rt.generate([GenerateRequest(prompt="Hello, how", max_tokens=16, ignore_eos=True)])[0]
    assert len(free) >= 6
    stop = free[3:6]
    text, pieces = collect(rt.stream(GenerateRequest(prompt="Hello, how", max_tokens=16, stop=[stop], ignore_eos=True)))
    assert text == free[: free.index(stop)] and pieces[-1].finish_reason == "stop"
    seen = ""
    for p in pieces:  # what was handed out is always part of the final text: no partial stop string leaked
        seen += p.text
        assert text.startswith(seen)
    assert stop not in text


@pytest.mark.parametrize("which", ["torch", "llamacpp"])
def test_multibyte_characters_are_never_split(which, request, monkeypatch):
    """Feed the real decode path the tokens of a Japanese text (byte-level BPE splits its characters)."""
    rt = request.getfixturevalue({"torch": "torch_rt", "llamacpp": "llama_rt"}[which])
    tokens = rt.encode(JAPANESE, add_special_tokens=False)
    if which == "torch":
        monkeypatch.setattr(rt, "_decode_steps", lambda ids, req, cancel: iter([(t, None) for t in tokens]))
    else:
        monkeypatch.setattr(rt.llm, "generate", lambda *a, **k: (t for t in tokens))
    text, pieces = collect(rt.stream(GenerateRequest(prompt="x", max_tokens=len(tokens))))
    assert text == JAPANESE
    assert all("\ufffd" not in p.text for p in pieces)
    assert any(p.text == "" for p in pieces[:-1])  # some tokens ended inside a character and were held back
    assert sum(len(p.token_ids) for p in pieces) == len(tokens)


# ----------------------------------------------------------------------------- sampling


def test_seeded_sampling_is_reproducible_and_seeds_differ(rt):
    def run(seed, **kw):
        req = GenerateRequest(prompt="Hello, how", max_tokens=12, temperature=1.0, seed=seed, ignore_eos=True, **kw)
        return [t for p in rt.stream(req) for t in p.token_ids]

    assert run(3) == run(3)
    assert len({tuple(run(s)) for s in range(5)}) > 1
    greedy = [t for p in rt.stream(GenerateRequest(prompt="Hello, how", max_tokens=12, ignore_eos=True)) for t in p.token_ids]
    assert run(11, top_k=1) == greedy  # top-k 1 leaves only the argmax
    assert run(11, top_p=1e-6) == greedy  # so does a tiny nucleus


def test_sampled_tokens_stay_inside_top_k(torch_rt):
    req = GenerateRequest(prompt="Please restart the", max_tokens=8, temperature=1.5, top_k=3, seed=5, ignore_eos=True)
    tokens = [t for p in torch_rt.stream(req) for t in p.token_ids]
    ids = torch_rt.tok_encode("Please restart the")
    with torch.no_grad():
        logits = torch_rt.model(torch.tensor([ids + tokens])).logits[0]
    for i, t in enumerate(tokens):
        assert t in torch.topk(logits[len(ids) - 1 + i], 3).indices.tolist()


def test_bad_sampling_settings_are_refused_at_call_time(rt):
    for bad in ({"temperature": -1.0}, {"top_p": 0.0}, {"top_k": -2}, {"max_tokens": -1}):
        with pytest.raises(KogataError):
            rt.stream(GenerateRequest(prompt="Hi", **bad))


# ----------------------------------------------------------------------------- logprobs, cancellation, schema


def test_torch_logprobs_match_a_full_forward(torch_rt):
    ids = torch_rt.tok_encode("Hello, how")
    pieces = list(torch_rt.stream(GenerateRequest(prompt="Hello, how", max_tokens=6, logprobs=True, ignore_eos=True)))
    tokens = [t for p in pieces for t in p.token_ids]
    with torch.no_grad():
        lp = torch.log_softmax(torch_rt.model(torch.tensor([ids + tokens])).logits[0].double(), dim=-1)
    expected = [float(lp[len(ids) - 1 + i, t]) for i, t in enumerate(tokens)]
    assert [p.logprob for p in pieces if p.token_ids] == pytest.approx(expected, abs=1e-4)
    assert all(p.logprob is None for p in torch_rt.stream(GenerateRequest(prompt="Hi", max_tokens=3)))


def test_cancel_stops_between_tokens(rt):
    cancel = threading.Event()
    pieces = []
    for piece in rt.stream(GenerateRequest(prompt="Hello, how", max_tokens=50, ignore_eos=True), cancel=cancel):
        pieces.append(piece)
        cancel.set()
    assert pieces[-1].finish_reason == "cancelled" and pieces[-1].usage.completion_tokens == 1
    early = threading.Event()
    early.set()
    (only,) = list(rt.stream(GenerateRequest(prompt="Hello, how", max_tokens=50), cancel=early))
    assert only.finish_reason == "cancelled" and only.usage.completion_tokens == 0 and only.text == ""


def test_threads_sharing_an_instance_under_its_lock_get_sequential_results(rt):
    reqs = [GenerateRequest(prompt=p, max_tokens=8, ignore_eos=True) for p in PROMPTS]
    expected = rt.generate(reqs)
    got: dict[int, str] = {}

    def work(i: int) -> None:
        with rt.lock:  # held for the whole stream, as the contract says
            got[i] = "".join(p.text for p in rt.stream(reqs[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [got[i] for i in range(len(reqs))] == expected


def test_llamacpp_json_schema_constrains_output(llama_rt):
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}}, "required": ["answer"]}
    for seed in (0, 1):
        text, pieces = collect(llama_rt.stream(GenerateRequest(prompt="Is it cold?", max_tokens=120, json_schema=schema, temperature=0.8, seed=seed)))
        assert pieces[-1].finish_reason == "stop"
        assert json.loads(text)["answer"] in ("yes", "no")


def test_torch_refuses_json_schema(torch_rt):
    with pytest.raises(KogataError, match="JSON schema"):
        torch_rt.stream(GenerateRequest(prompt="Hi", json_schema={"type": "object"}))


def test_kind_and_lock(torch_rt, llama_rt):
    for r in (torch_rt, llama_rt):
        assert r.kind == "lm" and get_runtime_class(r.name).kind == "lm"
        assert r.lock.acquire(blocking=False)
        r.lock.release()
    assert get_runtime_class("embedder").kind == "embedder"


# ----------------------------------------------------------------------------- serving a GGUF without torch

TORCH_FREE = r"""
import json, sys
from kogata.runtimes import open_runtime
from kogata.runtimes.base import GenerateRequest
rt = open_runtime("llamacpp", sys.argv[1], n_ctx=64)
pieces = list(rt.stream(GenerateRequest(prompt="Hello, how", max_tokens=5, ignore_eos=True)))
print(json.dumps({
    "finish": pieces[-1].finish_reason,
    "heavy": sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules),
    "modules": len(sys.modules),
    # VmHWM: this process's peak RSS (ru_maxrss would include the forking pytest parent's)
    "peak_rss_mib": round(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024, 1),
}))
"""


def test_serving_a_gguf_does_not_import_torch(tiny_llama_gguf, tmp_path):
    pytest.importorskip("llama_cpp")
    folder = tmp_path / "art"
    folder.mkdir()
    (folder / tiny_llama_gguf.name).write_bytes(Path(tiny_llama_gguf).read_bytes())
    manifest = {"id": "tinygguf", "name": "tiny-gguf", "format": "gguf", "model_file": tiny_llama_gguf.name}
    (folder / "kogata.json").write_text(json.dumps(manifest), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE, str(folder)], capture_output=True, text=True, timeout=120,
                          env={"KOGATA_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    print("torch-free GGUF serving process:", facts)
    assert facts["finish"] == "length" and facts["heavy"] == []
