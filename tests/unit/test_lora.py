"""``lora`` / ``merge`` / ``export-lora-gguf`` on tiny models: data formatting, training, resume, merge + GGUF
equivalence with the adapter on its base, the CLI recipe, and bad input."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch

import kogata.methods.lora.data as ld
from kogata.artifacts.importer import import_local
from kogata.artifacts.store import Store
from kogata.core.errors import KogataError
from kogata.methods.lora.method import LoraMethodConfig
from kogata.methods.registry import MethodContext, apply_method
from tests.cli_helpers import run_cli
from tests.tiny_models import make_tiny_model, make_tokenizer
from tests.unit._tiny import FAQ, write_jsonl

FAST = {"steps": 2, "batch_size": 2, "eval_fraction": 0.25, "lr": 1e-2, "init": "random", "save_every": 0}


def _err_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture()
def faq(tmp_path) -> Path:
    return write_jsonl(tmp_path / "faq.jsonl", FAQ)


@pytest.fixture()
def store(kogata_home, tiny_llama_dir) -> Store:
    s = Store()
    import_local(s, tiny_llama_dir, name="tiny", log=lambda m: None)
    return s


def _ctx(store: Store, data: list[Path] | None = None, out: str | None = None) -> MethodContext:
    return MethodContext(store=store, data=data or [], seed=0, log=lambda m: None, out_name=out)


# ------------------------------------------------------------------------------------------ data
def test_record_formats_are_detected(tmp_path):
    rows = {
        "a.jsonl": [{"instruction": "Translate", "input": "hello", "output": "konnichiwa"}],
        "b.jsonl": [{"id": 1, "context": "C.", "question": "Q?", "answer": "A"}, {"question": "Q2?", "answer": "B"}],
        "c.jsonl": [{"prompt": "P", "response": "R"}],
        "d.jsonl": [{"prompt": "P", "completion": "C"}],
        "e.jsonl": [{"text": "plain words"}],
    }
    for name, recs in rows.items():
        write_jsonl(tmp_path / name, recs)
    (tmp_path / "f.txt").write_text("a text file\n")
    recs = ld.read_records([tmp_path])
    got = [(r.user, r.answer) for r in recs]
    assert got == [
        ("Translate\n\nhello", "konnichiwa"),
        ("Context: C.\n\nQuestion: Q?", "A"),
        ("Question: Q2?", "B"),
        ("P", "R"),
        ("P", "C"),
        ("plain words", None),
        ("a text file\n", None),
    ]
    assert recs[1].where.endswith("b.jsonl:1")
    tickets = write_jsonl(tmp_path / "t.jsonl", [{"ticket": "It broke.", "summary": "Broken."}])
    (r,) = ld.read_records([tickets], prompt_fields=["ticket"], answer_field="summary")
    assert (r.user, r.answer) == ("It broke.", "Broken.")


@pytest.mark.parametrize(
    "lines,needles",
    [
        (['{"question": "Q?", "answer": "A"}', '{"question": "Q2?", "answer": "B"}', '{"question": "Q3?"}'], ["line 3", "'answer'"]),
        (['{"question": "Q?", "answer": "A"}', '{"question": "Q2?", "answer": ""}'], ["line 2", "'answer'"]),
        (['{"ticket": "T", "summary": "S"}'], ["line 1", "ticket, summary", "prompt_field"]),
        (['{"question": "Q?", "answer": "A"}', "{not json"], ["line 2", "not valid JSON"]),
        (['["a list"]'], ["line 1", "JSON object"]),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, lines, needles):
    f = tmp_path / "bad.jsonl"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(KogataError) as exc:
        ld.read_records([f])
    text = str(exc.value)
    assert "bad.jsonl" in text
    for needle in needles:
        assert needle in text


def test_chat_formatting_puts_loss_on_answers_only():
    tok = make_tokenizer()
    fmt = ld.Formatter(tok)
    (ex,), _ = ld.tokenize_records([ld.Record("How long is the warranty?", "one year", "x")], fmt, max_length=256)
    n_prompt = ex.labels.index(next(t for t in ex.labels if t != ld.IGNORE))
    prompt, answer = ex.input_ids[:n_prompt], ex.input_ids[n_prompt:]
    assert all(t == ld.IGNORE for t in ex.labels[:n_prompt]) and ex.labels[n_prompt:] == answer
    assert tok.decode(prompt) == "<|im_start|>user\nHow long is the warranty?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(answer) == "one year<|im_end|>\n"
    (full,), _ = ld.tokenize_records([ld.Record("How long is the warranty?", "one year", "x")], fmt, max_length=256, loss_on="all")
    assert full.labels == full.input_ids


def test_plain_formatting_without_chat_template():
    tok = make_tokenizer()
    fmt = ld.Formatter(tok, system_prompt="Be brief.", use_chat_template=False)
    (ex,), _ = ld.tokenize_records([ld.Record("Q?", "one year", "x")], fmt, max_length=256)
    n_prompt = sum(1 for t in ex.labels if t == ld.IGNORE)
    assert tok.decode(ex.input_ids[:n_prompt]).endswith("System: Be brief.\nUser: Q?\nAssistant:")
    assert ex.input_ids[-1] == tok.eos_token_id and tok.decode(ex.input_ids[n_prompt:-1]) == " one year"


def test_plain_prompt_is_the_whole_input_even_with_a_chat_template():
    """plain_prompt (base models sent one completion prompt, e.g. rag_qa's grounded prompt): no template, no
    transcript; the prompt as it is, then " answer" + EOS, loss on the answer only."""
    tok = make_tokenizer()  # it has a chat template: plain_prompt ignores it
    fmt = ld.Formatter(tok, plain_prompt=True)
    assert not fmt.chat
    prompt = "Passages:\n[1] Returns within 30 days.\n\nQuestion: How long?\nAnswer:"
    (ex,), _ = ld.tokenize_records([ld.Record(prompt, "30 days [1]", "x")], fmt, max_length=256)
    n_prompt = sum(1 for t in ex.labels if t == ld.IGNORE)
    assert ex.input_ids[:n_prompt] == list(tok(prompt).input_ids)
    assert ex.input_ids[-1] == tok.eos_token_id and tok.decode(ex.input_ids[n_prompt:-1]) == " 30 days [1]"
    with pytest.raises(KogataError, match="system_prompt has no effect with plain_prompt"):
        LoraMethodConfig(plain_prompt=True, system_prompt="Be brief.").validate()


def test_truncation_packing_and_batches():
    tok = make_tokenizer()
    fmt = ld.Formatter(tok)
    long_prompt = "Shipping takes three to five business days. " * 10
    (ex,), stats = ld.tokenize_records([ld.Record(long_prompt, "one year", "x")], fmt, max_length=32)
    assert len(ex.input_ids) == 32 and stats["truncated_prompts"] == 1
    assert tok.decode([t for t in ex.labels if t != ld.IGNORE]) == "one year<|im_end|>\n"  # the answer is kept whole
    exs = [ld.Example(list(range(i, i + 5)), [ld.IGNORE, 1, 2, 3, 4], str(i)) for i in range(7)]
    blocks = ld.pack(exs, 8)
    assert [len(b.input_ids) for b in blocks] == [8, 8, 8, 8, 3]
    assert [t for b in blocks for t in b.input_ids] == [t for e in exs for t in e.input_ids]
    assert [t for b in blocks for t in b.labels] == [t for e in exs for t in e.labels]
    sched = ld.BatchSchedule(5, 2, seed=3)
    first_epoch = [i for g in range(5) for i in sched.indices(g)][:5]
    assert sorted(first_epoch) == list(range(5))
    assert ld.BatchSchedule(5, 2, seed=3).indices(7) == sched.indices(7)  # a pure function of (seed, g)


# ------------------------------------------------------------------------------------------ lora + merge
def _llama(path: Path, lora: Path | None = None):
    import llama_cpp

    return llama_cpp.Llama(
        model_path=str(path), lora_path=str(lora) if lora else None, n_ctx=128, n_batch=128, n_threads=1,
        logits_all=True, type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, verbose=False,
    )


def _logprobs(scores: np.ndarray) -> np.ndarray:
    m = scores.max(-1, keepdims=True)
    return scores - m - np.log(np.exp(scores - m).sum(-1, keepdims=True))


# gemma3: llama.cpp's tabulated GELU alone moves logits by ~2e-4 relative (see test_gguf_export)
TOL = {"llama": 1e-3, "gemma3": 2e-2}


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_merged_gguf_and_gguf_adapter_match_adapter_on_base(kogata_home, tmp_path, faq, arch):
    from kogata.methods.lora.method import load_adapter_model

    store = Store()
    base = import_local(store, make_tiny_model(tmp_path / arch, arch), name="tiny", log=lambda m: None)
    adapter = apply_method(base, "lora", FAST, _ctx(store, [faq]))
    assert adapter.kind == "lora-adapter" and adapter.format == "hf" and adapter.parent == base.id
    assert {"adapter_model.safetensors", "adapter_config.json", "kogata_adapter.json"} <= {p.name for p in adapter.path.iterdir()}
    meta = json.loads((adapter.path / "kogata_adapter.json").read_text())
    assert meta["base_id"] == base.id and "q_proj" in meta["target_modules"] and "lm_head" not in meta["target_modules"]
    assert json.loads((adapter.path / "adapter_config.json").read_text())["base_model_name_or_path"] == base.id
    m = adapter.lineage[-1]["metrics"]
    assert m["steps_done"] == 2 and m["train_examples"] == 3 and m["eval_examples"] == 1 and m["eval_loss_end"] is not None
    assert adapter.params == m["trainable_params"] and adapter.verify() == []

    merged = apply_method(adapter, "merge", {}, _ctx(store))
    assert merged.kind == "causal-lm" and merged.parent == adapter.id
    assert [s["method"] for s in merged.lineage] == ["import", "lora", "merge"]
    merged_gguf = apply_method(merged, "export-gguf", {}, _ctx(store))
    base_gguf = apply_method(base, "export-gguf", {}, _ctx(store))
    adapter_gguf = apply_method(adapter, "export-lora-gguf", {}, _ctx(store))
    assert adapter_gguf.format == "gguf" and adapter_gguf.kind == "lora-adapter"

    pm, tok = load_adapter_model(adapter, base)
    ids = tok("Shipping takes three to five business days. The SK-R450 has a one-year warranty.").input_ids[:48]
    with torch.no_grad():
        ref = torch.log_softmax(pm(input_ids=torch.tensor([ids])).logits[0], -1).numpy()
    runs = {"merged": (merged_gguf.gguf_path, None), "gguf adapter": (base_gguf.gguf_path, adapter_gguf.gguf_path), "base": (base_gguf.gguf_path, None)}
    diffs = {}
    for name, (model_path, lora_path) in runs.items():
        with closing(_llama(model_path, lora_path)) as llm:
            llm.eval(ids)
            diffs[name] = float(np.abs(_logprobs(np.asarray(llm.scores[: len(ids)])) - ref).max())
    assert diffs["merged"] < TOL[arch] and diffs["gguf adapter"] < TOL[arch], diffs
    assert diffs["base"] > 20 * TOL[arch], diffs  # the adapter really changes the model


def test_resume_continues_exactly(store, faq, tmp_path):
    from safetensors.torch import load_file

    cfg = {**FAST, "schedule": "constant", "dropout": 0.1}
    straight = apply_method(store.get("tiny"), "lora", {**cfg, "steps": 4, "checkpoint_dir": str(tmp_path / "a")}, _ctx(store, [faq], "a"))
    first = apply_method(store.get("tiny"), "lora", {**cfg, "steps": 2, "checkpoint_dir": str(tmp_path / "b")}, _ctx(store, [faq], "b"))
    assert (tmp_path / "b" / "latest" / "state.json").is_file()
    logs: list[str] = []
    ctx = MethodContext(store=store, data=[faq], seed=0, log=logs.append, out_name="c")
    resumed = apply_method(store.get("tiny"), "lora", {**cfg, "steps": 4, "checkpoint_dir": str(tmp_path / "b"), "resume": True}, ctx)
    assert any("resuming from step 2" in line for line in logs), logs
    # (bit-identical weights give the same content id: the store then keeps the first manifest)
    a, b, c = (load_file(str(x.path / "adapter_model.safetensors")) for x in (straight, resumed, first))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(a[k], c[k]) for k in a)
    # a checkpoint made with other data / config is refused
    with pytest.raises(KogataError, match="another base model, data or training config"):
        apply_method(store.get("tiny"), "lora", {**cfg, "rank": 4, "steps": 4, "checkpoint_dir": str(tmp_path / "b"), "resume": True}, _ctx(store, [faq], "d"))


def test_max_minutes_stops_with_a_checkpoint(store, faq, tmp_path):
    art = apply_method(store.get("tiny"), "lora", {**FAST, "steps": 50, "max_minutes": 1e-6, "checkpoint_dir": str(tmp_path / "c")}, _ctx(store, [faq]))
    m = art.lineage[-1]["metrics"]
    assert m["stopped"] == "max_minutes" and m["steps_done"] == 1 and "resume=true" in art.lineage[-1]["note"]
    assert json.loads((tmp_path / "c" / "latest" / "state.json").read_text())["step"] == 1


def test_recipe_lora_merge_export_quantize_through_cli(store, faq, tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "version: 1\nsteps:\n"
        "  - method: lora\n    params: {steps: 2, batch_size: 2, eval_fraction: 0.25, target_modules: [q_proj, v_proj], init: random}\n"
        "  - method: merge\n  - method: export-gguf\n  - method: quantize\n    params: {type: Q8_0}\n"
    )
    code, out, err = run_cli(capsys, monkeypatch, "compress", "tiny", "--recipe", str(recipe), "--data", str(faq), "--out", "tiny-ft-q8")
    assert code == 0, err
    s = Store()
    q8 = s.get("tiny-ft-q8")
    assert [x["method"] for x in q8.lineage] == ["import", "lora", "merge", "export-gguf", "quantize"]
    assert q8.format == "gguf" and q8.kind == "causal-lm"
    assert sorted(json.loads((s.get("tiny.lora").path / "kogata_adapter.json").read_text())["target_modules"]) == ["q_proj", "v_proj"]
    assert "lora: step 2/2" in err and "tok/s" in err


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "sets,needles",
    [
        (["target_modules=q_proj,foo_proj"], ["foo_proj", "not found", "q_proj, k_proj", "gate_proj", "all-linear"]),
        (["target_modules=lm_head"], ["lm_head shares its weights"]),
        (["batch_size=8"], ["3 training examples", "fewer than one batch of 8", "lower batch_size"]),
        (["rank=0"], ["rank must be at least 1"]),
        (["loss_on=prompts"], ["loss_on='prompts'", "answers"]),
    ],
)
def test_bad_lora_input(store, faq, capsys, monkeypatch, sets, needles):
    n = len(Store().list())
    args = [a for s in sets for a in ("-s", s)]
    code, _, err = run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "lora", "--data", str(faq), *args)
    assert code == 2, err
    line = _err_line(err)
    for needle in needles:
        assert needle in line
    assert len(Store().list()) == n


def test_bad_jsonl_line_through_cli(store, tmp_path, capsys, monkeypatch):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"question": "Q?", "answer": "A"}\n{"question": "Q2?", "answer": "B"}\n{"question": "Q3?", "reply": "C"}\n')
    code, _, err = run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "lora", "--data", str(f))
    assert code == 2
    line = _err_line(err)
    assert "qa.jsonl line 3" in line and "'answer'" in line


def test_lora_needs_data(store, capsys, monkeypatch):
    code, _, err = run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "lora")
    assert code == 2 and "--data" in _err_line(err)


def test_adapter_on_the_wrong_base(store, faq, tmp_path, capsys, monkeypatch):
    other = import_local(store, make_tiny_model(tmp_path / "other", "llama", seed=1), name="other", log=lambda m: None)
    adapter = apply_method(store.get("tiny"), "lora", FAST, _ctx(store, [faq]))
    base_id = store.get("tiny").id
    n = len(Store().list())
    for args in (["tiny.lora", "-m", "merge", "-s", "base=other"], ["other", "-m", "merge", "-s", "adapter=tiny.lora"]):
        code, _, err = run_cli(capsys, monkeypatch, "compress", *args)
        assert code == 2
        line = _err_line(err)
        assert adapter.id in line and base_id in line and other.id in line, line
    code, _, err = run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "merge")
    assert code == 2 and "adapter=" in _err_line(err)
    code, _, err = run_cli(capsys, monkeypatch, "compress", "tiny.lora", "-m", "lora", "--data", str(faq))
    assert code == 2 and "already a LoRA adapter" in _err_line(err)
    for method in ("quantize", "export-gguf", "prune-depth"):  # methods for models refuse an adapter, saying what to do
        code, _, err = run_cli(capsys, monkeypatch, "compress", "tiny.lora", "-m", method, "--data", str(faq))
        assert code == 2 and "is a LoRA adapter" in _err_line(err) and "-m merge" in _err_line(err), err
    assert len(Store().list()) == n
    # the right base, named explicitly or given the other way round, is fine
    code, _, err = run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "merge", "-s", "adapter=tiny.lora", "-o", "tiny-merged")
    assert code == 0, err
    assert Store().get("tiny-merged").lineage[-1]["metrics"]["adapter_id"] == adapter.id


def test_a_prepared_dataset_mixing_qa_and_text_records_reads_per_record(tmp_path):
    f = write_jsonl(tmp_path / "train.jsonl", [{"id": "a#1", "text": "A memo paragraph.", "lang": "en"},
                                                {"id": "b:2", "question": "Q?", "answer": "A", "context": "C."}])
    recs = ld.read_records([f])
    assert [(r.user, r.answer) for r in recs] == [("A memo paragraph.", None), ("Context: C.\n\nQuestion: Q?", "A")]
