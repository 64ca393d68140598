"""Suite loading, task types and their validation; reruns give identical numbers."""

from __future__ import annotations

import json
import math

import pytest

from kogata.core.errors import KogataError
from kogata.eval.quality import evaluate_quality
from kogata.eval.suite import builtin_suites, load_suite
from kogata.eval.tasks import TASK_TYPES
from kogata.runtimes.base import LoglikelihoodResult, RollingResult
from tests.unit._tiny import SUITE_YAML, hf_artifact, write_jsonl, write_tiny_suite

METRIC_KEYS = {"value", "stderr", "ci_low", "ci_high", "n"}


class FakeRuntime:
    """Deterministic stand-in: prefers the choice whose keyword is in the context, answers 'one year'."""

    KEYWORDS = {"billing": "charged", "shipping": "parcel", "returns": "back", "technical": "crashes", "account": "e-mail"}

    name = "fake"

    def __init__(self):
        self.prompts: list[str] = []

    def loglikelihood(self, requests):
        out = []
        for r in requests:
            bonus = 50.0 if self.KEYWORDS.get(r.continuation.strip(), "?") in r.context.split("\n")[-2] else 0.0
            out.append(LoglikelihoodResult(logprob=-len(r.continuation) + bonus, is_greedy=False, n_tokens=len(r.continuation)))
        return out

    def loglikelihood_rolling(self, texts):
        return [RollingResult(logprob=-0.5 * len(t), n_tokens=len(t)) for t in texts]

    def generate(self, requests):
        self.prompts += [r.prompt for r in requests]
        return ["one year\n" for _ in requests]


@pytest.fixture()
def suite_path(tmp_path):
    return write_tiny_suite(tmp_path / "suite")


def test_registry_has_the_three_types():
    assert {"perplexity", "multiple_choice", "generate"} <= set(TASK_TYPES)


def test_load_suite_fields(suite_path):
    suite = load_suite(suite_path)
    assert (suite.name, suite.version, suite.language, suite.seed) == ("tiny-suite", 1, "en", 7)
    assert [t.type_name for t in suite.tasks] == ["generate", "multiple_choice", "perplexity"]
    assert suite.kpis == {"min": {"faq_qa.f1": 0.0, "intent.acc": 0.0}, "max": {"docs_ppl.bits_per_byte": 100.0, "latency_p95_ms": 100000.0}}
    assert len(suite.sha256) == 64 and suite.path == suite_path
    assert suite.price == "cloud-2vcpu-jpy" and suite.baseline is None
    assert len(suite.task("docs_ppl").records) == 3  # blank-line separated documents
    assert load_suite(suite_path.parent).sha256 == suite.sha256  # folder works too


def test_run_with_fake_runtime(suite_path):
    suite = load_suite(suite_path)
    results = evaluate_quality(FakeRuntime(), suite)
    assert list(results) == ["faq_qa", "intent", "docs_ppl"]
    faq = results["faq_qa"]
    assert faq["type"] == "generate" and faq["n"] == 4 and set(faq["metrics"]) == {"exact_match", "f1", "rouge_l"}
    assert faq["metrics"]["exact_match"]["value"] == pytest.approx(0.25)  # only f1 has answer "one year"
    assert all(set(m) == METRIC_KEYS for r in results.values() for m in r["metrics"].values())
    assert faq["samples"][0]["prediction"] == "one year" and faq["samples"][0]["target"] == "one year"
    intent = results["intent"]
    assert intent["metrics"]["acc"]["value"] == pytest.approx(1.0)  # the fake finds each keyword
    ppl = results["docs_ppl"]["metrics"]
    assert ppl["token_perplexity"]["value"] == pytest.approx(math.exp(0.5))
    assert set(ppl) == {"token_perplexity", "word_perplexity", "bits_per_byte"}


def test_limit_and_prompts(suite_path):
    suite = load_suite(suite_path)
    results = evaluate_quality(FakeRuntime(), suite, limit=2)
    assert all(r["n"] == 2 for r in results.values())
    reqs = suite.task("faq_qa").prompts(3)
    assert len(reqs) == 3 and reqs[0].max_tokens == 6 and reqs[0].stop == ["\n"]
    assert reqs[0].prompt.endswith("Question: How long is the warranty?\nAnswer:")
    # one few-shot example, drawn from the other items (never the item itself)
    shot = reqs[0].prompt.split("\n\n")[0]
    assert shot.startswith("Text: ") and "one-year warranty" not in shot
    assert all(len(t.prompts(2)) == 2 for t in suite.tasks)


def test_fewshot_is_reproducible(suite_path):
    a = [r.prompt for r in load_suite(suite_path).task("faq_qa").prompts(4)]
    b = [r.prompt for r in load_suite(suite_path).task("faq_qa").prompts(4)]
    assert a == b


def test_chat_mode_builds_messages(tmp_path):
    path = write_tiny_suite(tmp_path / "s", SUITE_YAML.replace("    fewshot: 1\n", "    fewshot: 1\n    chat: true\n    description: Answer briefly.\n"))
    req = load_suite(path).task("faq_qa").prompts(1)[0]
    assert req.prompt is None
    assert [m["role"] for m in req.messages] == ["system", "user", "assistant", "user"]
    assert req.messages[0]["content"] == "Answer briefly."


def test_datasets_spec_and_csv(tmp_path):
    path = write_tiny_suite(tmp_path / "s")
    (path.parent / "intents.csv").write_text("id,text,label\nc1,charged twice,billing\nc2,parcel late,shipping\n", encoding="utf-8")
    text = path.read_text().replace("data: faq.jsonl", "data: {datasets: {path: json, data_files: faq.jsonl, split: train}}")
    text = text.replace("data: intents.jsonl", "data: intents.csv")
    path.write_text(text)
    suite = load_suite(path)
    assert len(suite.task("faq_qa").records) == 4
    assert suite.task("intent").golds == [0, 1]


def test_rerun_gives_identical_numbers(suite_path, tiny_llama_dir):
    import kogata.core.settings as settings
    from kogata.runtimes import open_runtime

    settings.set_threads(1)
    runtime = open_runtime("torch", hf_artifact(tiny_llama_dir))
    try:
        first = evaluate_quality(runtime, load_suite(suite_path))
        second = evaluate_quality(runtime, load_suite(suite_path))
    finally:
        runtime.close()
    for name in first:
        first[name].pop("seconds"), second[name].pop("seconds")
    assert first == second


# ----------------------------------------------------------------------------- bad input


def _expect_error(tmp_path, yaml_text: str, *needles: str, files=None):
    path = write_tiny_suite(tmp_path / "bad", yaml_text)
    for name, content in (files or {}).items():
        (path.parent / name).write_text(content, encoding="utf-8")
    with pytest.raises(KogataError) as err:
        load_suite(path)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_unknown_task_type(tmp_path):
    _expect_error(tmp_path, SUITE_YAML.replace("type: perplexity", "type: perplexty"), "docs_ppl", "perplexty", "generate, multiple_choice, perplexity")


def test_missing_field_mapping(tmp_path):
    yaml_text = SUITE_YAML.replace("fields: {context: context, question: question, answer: answer}", "fields: {context: context, answer: answer}")
    _expect_error(tmp_path, yaml_text, "faq_qa", "{question}", "fields")


def test_missing_column_names_item(tmp_path):
    yaml_text = SUITE_YAML.replace("question: question, answer", "question: query, answer")
    _expect_error(tmp_path, yaml_text, "faq_qa", "item f1", "'query'")


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    bad = json.dumps({"id": "i1", "text": "x", "label": "billing"}) + "\n\n" + '{"id": "i2", "text": "y", label: billing}\n'
    _expect_error(tmp_path, SUITE_YAML, "intents.jsonl:3", "malformed JSON", files={"intents.jsonl": bad})


def test_empty_dataset(tmp_path):
    _expect_error(tmp_path, SUITE_YAML, "intent", "empty", files={"intents.jsonl": "\n\n"})


def test_label_out_of_range(tmp_path):
    rows = [{"id": "i1", "text": "x", "label": 1}, {"id": "i9", "text": "y", "label": 7}]
    path = write_tiny_suite(tmp_path / "bad")
    write_jsonl(path.parent / "intents.jsonl", rows)
    with pytest.raises(KogataError, match=r"item i9: label 7 is out of range 0\.\.4"):
        load_suite(path)


def test_label_not_a_choice(tmp_path):
    rows = [{"id": "i1", "text": "x", "label": "refund"}]
    path = write_tiny_suite(tmp_path / "bad")
    write_jsonl(path.parent / "intents.jsonl", rows)
    with pytest.raises(KogataError, match=r"item i1: label 'refund' is not one of the choices"):
        load_suite(path)


def test_unknown_top_level_key_gets_typo_hint(tmp_path):
    _expect_error(tmp_path, SUITE_YAML.replace("seed: 7", "sead: 7"), "unknown top-level key 'sead'", "did you mean 'seed'")


def test_unknown_task_key_and_metric_and_kpi(tmp_path):
    _expect_error(tmp_path, SUITE_YAML.replace("max_tokens: 6", "max_token: 6"), "faq_qa", "'max_token'", "max_tokens")
    _expect_error(tmp_path, SUITE_YAML.replace("[exact_match, f1, rouge_l]", "[exact_match, bleu]"), "unknown metric 'bleu'")
    _expect_error(tmp_path, SUITE_YAML.replace("intent.acc: 0.0", "intent.accuracy: 0.0"), "intent.accuracy", "did you mean")


def test_bad_yaml_names_line(tmp_path):
    _expect_error(tmp_path, SUITE_YAML.replace("seed: 7", "seed: [7"), "suite.yaml:", "invalid YAML")


def test_unknown_suite_name():
    with pytest.raises(KogataError, match="not found"):
        load_suite("support-desk-xx")


@pytest.mark.parametrize("name", ["support-desk-en", "support-desk-ja"])
def test_builtin_suites_load(name):
    if name not in builtin_suites():
        pytest.skip(f"{name}/suite.yaml not written yet")
    try:
        suite = load_suite(name)
    except KogataError as e:
        if "does not exist" in str(e):
            pytest.skip(f"data for {name} not written yet: {e}")
        raise
    assert suite.name == name and suite.language == name[-2:]
    assert {t.type_name for t in suite.tasks} == {"generate", "multiple_choice", "perplexity"}
    for task in suite.tasks:
        assert task.prompts(2)


# ----------------------------------------------------------------------------- per-item scores and perplexity records


class WindowedFake(FakeRuntime):
    max_length = 40


def test_results_carry_per_item_scores(suite_path):
    suite = load_suite(suite_path)
    results = evaluate_quality(WindowedFake(), suite)
    faq, intent, docs = results["faq_qa"], results["intent"], results["docs_ppl"]
    assert faq["per_item"]["id"] == ["f1", "f2", "f3", "f4"]
    assert faq["per_item"]["exact_match"] == [1.0, 0.0, 0.0, 0.0]  # the fake always answers "one year"
    for task in (faq, intent):
        for metric, value in task["metrics"].items():
            scores = task["per_item"][metric]
            assert len(scores) == task["n"] and sum(scores) / len(scores) == pytest.approx(value["value"])
    assert intent["per_item"]["id"] == ["i1", "i2", "i3", "i4", "i5"] and intent["per_item"]["acc"] == [1.0] * 5
    p = docs["per_item"]
    assert p["id"] == ["#1", "#2", "#3"]
    assert p["n_bytes"] == [len(t.encode("utf-8")) for t in (r["text"] for r in suite.task("docs_ppl").records)]
    assert docs["metrics"]["token_perplexity"]["value"] == pytest.approx(math.exp(-sum(p["logprob"]) / sum(p["n_tokens"])))
    assert docs["metrics"]["bits_per_byte"]["value"] == pytest.approx(-sum(p["logprob"]) / (sum(p["n_bytes"]) * math.log(2)))
    assert docs["metrics"]["word_perplexity"]["value"] == pytest.approx(math.exp(-sum(p["logprob"]) / sum(p["n_words"])))
    # the fake counts characters as tokens: the two longer documents exceed its 40-token window
    assert docs["window"] == 40 and docs["docs_over_window"] == sum(n > 40 for n in p["n_tokens"]) == 2
    assert evaluate_quality(FakeRuntime(), suite, tasks=["docs_ppl"])["docs_ppl"]["window"] is None  # unknown window


JA_DOCS = [
    "冷蔵庫の保証期間はご購入日から一年間です。延長保証に加入すると五年間になります。",
    "アプリが起動しない場合は、スマートフォンを再起動してから、もう一度お試しください。",
    "配送には通常三日から五日かかります。離島の場合は一週間ほどかかることがあります。",
]
JA_SUITE = """\
name: ja-ppl
language: ja
tasks:
  - name: docs
    type: perplexity
    data: docs.jsonl
{extra}"""


def _ja_suite(tmp_path, extra="", docs=JA_DOCS):
    folder = tmp_path / "ja"
    folder.mkdir(exist_ok=True)
    write_jsonl(folder / "docs.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(docs)])
    (folder / "suite.yaml").write_text(JA_SUITE.format(extra=extra), encoding="utf-8")
    return folder / "suite.yaml"


class SteepFake(FakeRuntime):
    """Log-likelihoods so low that exp(-Σ logprob / Σ whitespace words) overflows a float."""

    def loglikelihood_rolling(self, texts):
        return [RollingResult(logprob=-800.0 * len(t), n_tokens=len(t)) for t in texts]


def test_japanese_perplexity_reports_bits_per_byte_not_word_perplexity(tmp_path):
    import warnings

    suite = load_suite(_ja_suite(tmp_path))
    assert "word_perplexity" not in suite.task("docs").produced_metrics()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow (or any other) warning while scoring
        res = evaluate_quality(SteepFake(), suite)["docs"]
    wpl = res["metrics"]["word_perplexity"]
    assert wpl["value"] is None and "CJK" in wpl["reason"] and wpl["n"] == 3
    assert res["metrics"]["bits_per_byte"]["value"] == pytest.approx(800.0 * sum(map(len, JA_DOCS)) / (sum(len(t.encode()) for t in JA_DOCS) * math.log(2)))
    assert res["metrics"]["token_perplexity"]["value"] == math.inf  # exp(800) is beyond float: inf (JSON null), silently
    assert "n_words" not in res["per_item"]


def test_japanese_perplexity_on_a_tiny_model(tmp_path, tiny_llama_dir):
    import warnings

    import kogata.core.settings as settings
    from kogata.runtimes import open_runtime

    settings.set_threads(1)
    runtime = open_runtime("torch", hf_artifact(tiny_llama_dir))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            res = evaluate_quality(runtime, load_suite(_ja_suite(tmp_path)))["docs"]
    finally:
        runtime.close()
    m = res["metrics"]
    assert m["word_perplexity"]["value"] is None and m["word_perplexity"]["reason"]
    assert 0 < m["bits_per_byte"]["value"] < 100 and m["bits_per_byte"]["ci_low"] <= m["bits_per_byte"]["value"] <= m["bits_per_byte"]["ci_high"]
    assert 1 < m["token_perplexity"]["value"] < 1e6 and math.isfinite(m["token_perplexity"]["stderr"])
    assert res["window"] == runtime.max_length == 256  # the tiny model's own context (below the 2048 cap)


def test_language_key_decides_word_counting(tmp_path):
    ja_as_en = load_suite(_ja_suite(tmp_path, "    language: en\n")).task("docs")
    assert ja_as_en.words_countable and "word_perplexity" in ja_as_en.produced_metrics()
    en_docs = ["Shipping takes three to five days.", "Please restart the app."]
    en_as_ja = load_suite(_ja_suite(tmp_path, "    language: ja\n", docs=en_docs)).task("docs")
    assert not en_as_ja.words_countable and "language is ja" in en_as_ja.no_words_reason
    assert load_suite(_ja_suite(tmp_path, docs=en_docs)).task("docs").words_countable  # detected: no CJK
    with pytest.raises(KogataError, match="language 'fr' is not supported"):
        load_suite(_ja_suite(tmp_path, "    language: fr\n"))


def test_kpi_on_word_perplexity_of_japanese_text_fails_at_load(tmp_path):
    path = _ja_suite(tmp_path)
    path.write_text(path.read_text(encoding="utf-8") + "kpis: {max: {docs.word_perplexity: 100}}\n", encoding="utf-8")
    with pytest.raises(KogataError, match="unknown metric 'docs.word_perplexity'"):
        load_suite(path)
