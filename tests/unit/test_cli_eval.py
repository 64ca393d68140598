"""`kogata eval`: end to end on tiny models (real runtimes, real subprocess probe), and every bad input.

The fake-runtime tests replace the three seams of :mod:`kogata.eval.run` (open runtime, quality, probe) so that
the run's bookkeeping — verdicts, exit codes, atomic output, failing entries — is checked in milliseconds.
"""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from kogata.artifacts.importer import import_local
from kogata.artifacts.store import Store
from tests.cli_helpers import run_cli

QUIET = {"log": lambda m: None}


def write_suite(folder, kpis="", efficiency=None, price="cloud-2vcpu-usd"):
    folder.mkdir(parents=True, exist_ok=True)
    faq = [
        {"context": "The refrigerator SK-R450 has a one-year warranty.", "question": "How long is the warranty?", "answer": "one-year"},
        {"context": "Shipping takes three to five business days.", "question": "How long does shipping take?", "answer": "three to five business days"},
        {"context": "Please restart the SakuraHome app and try again.", "question": "What should I restart?", "answer": "the SakuraHome app"},
    ]
    intents = [{"text": "Where is my parcel?", "label": 1}, {"text": "I was charged twice.", "label": 0},
               {"text": "The app crashes.", "label": 2}]
    (folder / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in faq), encoding="utf-8")
    (folder / "intents.jsonl").write_text("\n".join(json.dumps(r) for r in intents), encoding="utf-8")
    (folder / "docs.txt").write_text("Hello, how can I help you today?\n\nShipping takes three to five business days. "
                                     "Please restart the SakuraHome app and try again.\n", encoding="utf-8")
    eff = efficiency or {"prompt_tokens": 16, "gen_tokens": 4, "repeats": 2, "warmup": 1, "latency_prompts": 2}
    (folder / "suite.yaml").write_text(textwrap.dedent(f"""\
        name: tiny-desk
        version: 1
        language: en
        description: A three-item support desk for tests.
        seed: 7
        tasks:
          - name: faq
            type: generate
            data: faq.jsonl
            fields: {{context: context, question: question, answer: answer}}
            prompt: "Text: {{context}}\\nQuestion: {{question}}\\nAnswer:"
            target: "{{answer}}"
            max_tokens: 6
            stop: ["\\n"]
            metrics: [exact_match, f1]
          - name: intent
            type: multiple_choice
            data: intents.jsonl
            fields: {{text: text, label: label}}
            prompt: "Message: {{text}}\\nTopic:"
            choices: [" billing", " shipping", " technical"]
            label: "{{label}}"
          - name: docs
            type: perplexity
            data: docs.txt
        {kpis}
        efficiency: {json.dumps(eff)}
        price: {price}
        """), encoding="utf-8")
    return folder / "suite.yaml"


def _assert_user_error(code, out, err, *needles):
    assert code == 2, (code, out, err)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), err
    for n in needles:
        assert n in lines[-1], lines[-1]


# ---- end to end on tiny models ------------------------------------------------------------------
def test_eval_end_to_end_on_tiny_models(kogata_home, tmp_path, tiny_llama_dir, tiny_llama_gguf, capsys, monkeypatch):
    store = Store()
    hf = import_local(store, tiny_llama_dir, name="tiny", **QUIET)
    gg = import_local(store, tiny_llama_gguf, name="tiny-gguf", **QUIET)
    suite = write_suite(tmp_path / "suite", kpis="kpis: {min: {faq.f1: 0.99}, max: {peak_rss_mb: 100000}}")
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, monkeypatch, "eval", "tiny", "tiny-gguf", "--suite", str(suite), "--runtime", "torch,llamacpp",
                                "--limit", "2", "--threads", "1", "--out", str(out))
    assert code == 0, (stdout, err)  # a failing KPI alone does not change the exit code (--fail-on-kpi: below)
    assert "FAIL" in stdout and "report.html" in stdout
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert res["schema_version"] == 2
    assert res["suite"]["name"] == "tiny-desk" and len(res["suite"]["sha256"]) == 64 and res["suite"]["seed"] == 7
    assert res["settings"]["limit"] == 2 and res["settings"]["threads"] == 1
    assert [e["key"] for e in res["entries"]] == ["tiny@torch", "tiny-gguf@llamacpp"]  # each on its native runtime
    assert {s["runtime"] for s in res["settings"]["skipped"]} == {"llamacpp", "torch"}
    assert res["baseline"] == "tiny@torch"
    assert res["machine"]["cpu"] and res["versions"]["torch"] and res["versions"]["llama_cpp"]
    for e, art in zip(res["entries"], (hf, gg)):
        assert e["status"] == "ok", e["error"]
        assert e["artifact"]["id"] == art.id and e["artifact"]["params"] == art.params and e["artifact"]["bytes"] == art.bytes
        assert e["artifact"]["lineage"][0]["method"] == "import"
        assert e["runtime"]["info"]["threads"] == 1 and e["threads"] == 1
        assert set(e["quality"]) == {"faq", "intent", "docs"} and e["quality"]["faq"]["n"] == 2
        faq, docs = e["quality"]["faq"], e["quality"]["docs"]
        assert faq["per_item"]["id"] == ["#1", "#2"] and len(faq["per_item"]["f1"]) == 2
        assert sum(faq["per_item"]["f1"]) / 2 == pytest.approx(faq["metrics"]["f1"]["value"])
        assert set(docs["per_item"]) == {"id", "logprob", "n_tokens", "n_bytes", "n_words"}
        assert docs["window"] == e["runtime"]["info"]["max_length"] and docs["docs_over_window"] == 0
        eff = e["efficiency"]
        assert eff["threads"] == 1 and eff["settings"]["prompt_tokens_actual"] == 16 and len(eff["runs"]) == 2
        assert all(r["new_tokens"] == 4 for r in eff["runs"])  # EOS ignored
        assert eff["peak_rss_mb"] > 0 and eff["latency"]["n"] == 2
        assert e["cost"]["currency"] == "USD" and e["cost"]["machines"] >= 1
        assert e["kpi"]["verdict"] == "FAIL" and e["kpi"]["failed"] == ["faq.f1"] and e["verdict"] == "FAIL"
        assert {"faq.f1", "intent.acc", "docs.bits_per_byte", "decode_tok_s", "cost_per_month"} <= set(e["metrics"])
    assert res["entries"][1]["cost"]["saving"]["vs"] == "tiny@torch"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=[\"']?http", html) and "tiny-desk" in html
    assert (out / "summary.md").is_file() and list((out / "logs").glob("efficiency-*.log"))
    assert "llama.cpp: llama_model_loader" in (out / "eval.log").read_text(encoding="utf-8")
    assert not list(tmp_path.glob(".out.*"))  # no staging folder left behind


def test_eval_keeps_library_output_off_the_terminal(kogata_home, tmp_path, tiny_gemma3_gguf, capfd, monkeypatch):
    """llama.cpp's C log (this sliding-window GGUF makes it warn) and Python warnings land in eval.log only."""
    import sys

    from kogata.cli import main

    import_local(Store(), tiny_gemma3_gguf, name="tiny-gemma-gguf", **QUIET)
    suite = write_suite(tmp_path / "suite")
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["kogata", "eval", "tiny-gemma-gguf", "--suite", str(suite), "--runtime", "llamacpp",
                                      "--limit", "2", "--threads", "1", "--out", str(out)])
    with _no_exit():
        main()
    stdout, stderr = capfd.readouterr()
    terminal = stdout + stderr
    assert "report.html" in stdout
    for noise in ("llama_", "ggml_", "Warning:", "warnings.warn", "RuntimeWarning"):
        assert noise not in terminal, (noise, terminal[-2000:])
    log = (out / "eval.log").read_text(encoding="utf-8")
    assert "llama_kv_cache_iswa: using full-size SWA cache" in log


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is SystemExit and exc.code in (0, None):
            return True
        return False


def test_embedder_is_refused_on_language_model_tasks(kogata_home, tmp_path, tiny_llama_dir, capsys, monkeypatch):
    from kogata.artifacts.artifact import MANIFEST

    art = import_local(Store(), tiny_llama_dir, name="emb", **QUIET)
    manifest = json.loads((art.path / MANIFEST).read_text(encoding="utf-8"))
    manifest["kind"] = "embedder"  # as the importer records a sentence embedder
    (art.path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    suite = write_suite(tmp_path / "s")
    _assert_user_error(*run_cli(capsys, monkeypatch, "eval", "emb", "--suite", str(suite), "--runtime", "torch",
                                "--out", str(tmp_path / "o")), "emb is an embedder", "task 'faq' (generate) needs a language model")
    assert not (tmp_path / "o").exists()


def test_embedder_runtime_is_refused(tiny_in_store, tmp_path, capsys, monkeypatch):
    from kogata.runtimes.registry import RUNTIMES

    class EmbedOnly:
        name, kind, formats, options = "embed-only", "embedder", ("hf",), ()

    monkeypatch.setitem(RUNTIMES, "embed-only", EmbedOnly)
    suite = write_suite(tmp_path / "s")
    _assert_user_error(*run_cli(capsys, monkeypatch, "eval", "tiny", "--suite", str(suite), "--runtime", "embed-only",
                                "--out", str(tmp_path / "o")), "runtime embed-only is an embedder", "needs a language model")


# ---- bad input ----------------------------------------------------------------------------------
@pytest.fixture()
def tiny_in_store(kogata_home, tiny_llama_dir):
    return import_local(Store(), tiny_llama_dir, name="tiny", **QUIET)


def test_kpi_naming_an_unknown_metric(tiny_in_store, tmp_path, capsys, monkeypatch):
    suite = write_suite(tmp_path / "s", kpis="kpis: {min: {faq.f2: 0.3}}")
    _assert_user_error(*run_cli(capsys, monkeypatch, "eval", "tiny", "--suite", str(suite), "--out", str(tmp_path / "o")), "faq.f2")
    assert not (tmp_path / "o").exists()


def test_runtime_that_cannot_run_the_format(tiny_in_store, tmp_path, capsys, monkeypatch):
    suite = write_suite(tmp_path / "s")
    _assert_user_error(*run_cli(capsys, monkeypatch, "eval", "tiny", "--suite", str(suite), "--runtime", "llamacpp",
                                "--out", str(tmp_path / "o")), "llamacpp", "tiny")
    _assert_user_error(*run_cli(capsys, monkeypatch, "eval", "tiny", "--suite", str(suite), "--runtime", "onnx",
                                "--out", str(tmp_path / "o")), "unknown runtime")
    assert not (tmp_path / "o").exists()


def test_out_dir_not_writable(tiny_in_store, tmp_path, capsys, monkeypatch):
    suite = write_suite(tmp_path / "s")
    (tmp_path / "a-file").write_text("x")
    _assert_user_error(*run_cli(capsys, monkeypatch, "eval", "tiny", "--suite", str(suite), "--out", str(tmp_path / "a-file" / "o")),
                       "cannot write")
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "thesis.tex").write_text("do not delete")
    _assert_user_error(*run_cli(capsys, monkeypatch, "eval", "tiny", "--suite", str(suite), "--out", str(keep)), "not a kogata results folder")
    assert (keep / "thesis.tex").read_text() == "do not delete"


def test_catalog_model_not_pulled_and_unknown_artifact(kogata_home, tmp_path, capsys, monkeypatch):
    suite = write_suite(tmp_path / "s")
    _assert_user_error(*run_cli(capsys, monkeypatch, "eval", "smollm2-135m", "--suite", str(suite), "--out", str(tmp_path / "o")),
                       "kogata models pull smollm2-135m")
    _assert_user_error(*run_cli(capsys, monkeypatch, "eval", "nope", "--suite", str(suite), "--out", str(tmp_path / "o")), "nope")


def test_bad_dtype_and_limit(tiny_in_store, tmp_path, capsys, monkeypatch):
    suite = write_suite(tmp_path / "s")
    _assert_user_error(*run_cli(capsys, monkeypatch, "eval", "tiny", "--suite", str(suite), "--dtype", "int4", "--out", str(tmp_path / "o")),
                       "--dtype")
    _assert_user_error(*run_cli(capsys, monkeypatch, "eval", "tiny", "--suite", str(suite), "--limit", "0", "--out", str(tmp_path / "o")),
                       "--limit")


# ---- the run's bookkeeping with fakes -----------------------------------------------------------
class _FakeRuntime:
    def info(self):
        return {"threads": 1}

    def close(self):
        pass


def _fake_quality(f1):
    def quality(runtime, suite, limit, progress):
        progress("faq", 1, 1)
        return {"faq": {"type": "generate", "version": 1, "n": 1,
                        "metrics": {"f1": {"value": f1, "stderr": 0, "ci_low": f1, "ci_high": f1, "n": 1}}, "samples": []}}
    return quality


def _fake_probe(fail_for=None):
    def probe(artifact, runtime, suite, *, threads, options, work_dir, on_line):
        if artifact.name == fail_for:
            from kogata.core.errors import KogataError

            raise KogataError("efficiency probe failed: boom", "see log")
        m = {"load_s": 1.0, "prefill_tok_s": 100.0, "decode_tok_s": 10.0, "ttft_p50_ms": 10.0, "ttft_p95_ms": 20.0,
             "latency_p50_ms": 100.0, "latency_p95_ms": 200.0, "peak_rss_mb": 300.0, "disk_mb": 1.0, "params_m": 0.1}
        return {"metrics": m, "prefill_tok_s": {"min": 100.0, "median": 100.0, "max": 100.0},
                "decode_tok_s": {"min": 10.0, "median": 10.0, "max": 10.0}, "load_s": 1.0, "peak_rss_mb": 300.0,
                "latency": {"n": 1, "ttft_p50_ms": 10.0, "ttft_p95_ms": 20.0, "latency_p50_ms": 100.0, "latency_p95_ms": 200.0}}
    return probe


@pytest.fixture()
def fake_run(monkeypatch):
    import kogata.eval.run as run

    monkeypatch.setattr(run, "_open_runtime", lambda name, art, **o: _FakeRuntime())

    def install(f1=0.5, fail_for=None):
        monkeypatch.setattr(run, "_evaluate_quality", _fake_quality(f1))
        monkeypatch.setattr(run, "_probe", _fake_probe(fail_for))

    return install


def test_fail_on_kpi_exit_codes(tiny_in_store, tmp_path, capsys, monkeypatch, fake_run):
    fake_run(f1=0.1)
    suite = write_suite(tmp_path / "s", kpis="kpis: {min: {faq.f1: 0.3}}")
    args = ["eval", "tiny", "--suite", str(suite), "--runtime", "torch", "--out", str(tmp_path / "o")]
    code, out, err = run_cli(capsys, monkeypatch, *args)
    assert code == 0 and "FAIL" in out and "faq.f1" in out
    code, out, err = run_cli(capsys, monkeypatch, *args, "--fail-on-kpi")
    assert code == 1
    fake_run(f1=0.9)
    code, out, err = run_cli(capsys, monkeypatch, *args, "--fail-on-kpi")
    assert code == 0 and "PASS" in out


def test_failing_entry_is_kept_and_reported(kogata_home, tiny_llama_dir, tiny_gemma3_dir, tmp_path, capsys, monkeypatch, fake_run):
    store = Store()
    import_local(store, tiny_llama_dir, name="good", **QUIET)
    import_local(store, tiny_gemma3_dir, name="bad", **QUIET)
    fake_run(fail_for="bad")
    suite = write_suite(tmp_path / "s")
    code, out, err = run_cli(capsys, monkeypatch, "eval", "good", "bad", "--suite", str(suite), "--runtime", "torch", "--out", str(tmp_path / "o"))
    assert code == 1
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    bad = res["entries"][1]
    assert bad["verdict"] == "ERROR" and "boom" in bad["error"] and bad["cost"] is None
    assert res["entries"][0]["verdict"] == "PASS" and res["entries"][0]["cost"]["saving"]["per_month"] == 0
    assert (tmp_path / "o" / "logs" / "bad@torch.error.log").is_file()


def test_output_replaced_only_after_success(tiny_in_store, tmp_path, capsys, monkeypatch, fake_run):
    import kogata.eval.run as run

    fake_run()
    suite = write_suite(tmp_path / "s")
    out = tmp_path / "o"
    args = ["eval", "tiny", "--suite", str(suite), "--runtime", "torch", "--out", str(out)]
    assert run_cli(capsys, monkeypatch, *args)[0] == 0
    before = (out / "results.json").read_text()

    def explode(results, folder):
        raise RuntimeError("disk full")

    monkeypatch.setattr("kogata.report.write_reports", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        run_cli(capsys, monkeypatch, *args)
    assert (out / "results.json").read_text() == before  # the previous results are untouched
    assert not list(tmp_path.glob(".o.*"))  # and no staging folder is left
    assert run.SCHEMA_VERSION == 2
